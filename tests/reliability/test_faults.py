"""Faults of the backing file system, through real mounts:

- the backing dir on an 8 MiB tmpfs that fills up: writes fail with ENOSPC (not EIO), nothing
  written and fsync'd before is lost, the file being written when space ran out still reads
  (a prefix of what was written, at least what was fsync'd), and once space is freed the
  mount works again;
- a backing file whose header is cut short, or replaced by a directory: that entry fails with
  EIO and the daemon logs it, every other file keeps working;
- a backing file bind-mounted read-only over itself: writes to it fail cleanly, its content is
  unchanged, reads and other files keep working."""

import errno
import hashlib
import json
import os
import socket

import reliability_env
from wardfs_harness import (BIN, WardfsTestCase, backing_data_entries, config_matrix, main,
                            pattern, read_file, read_uncached, run, wait_for, write_file)

MiB = 1 << 20


class FaultCases:
    def setUp(self):
        super().setUp()
        cipher, chunk = config_matrix("one")[0]
        self.vol = self.new_volume(cipher, chunk)
        self._volumes_for_watchdog = (self.vol,)

    def start(self):
        self.vol.init()
        self.vol.mount()

    # ------------------------------------------------------------ full disk
    def test_enospc(self):
        reliability_env.backing_on_tmpfs(self, self.vol, "8m")
        self.start()
        keep = pattern(2 * MiB + 123, 1)
        write_file(self.vol.p("keep"), keep, fsync=True)
        os.mkdir(self.vol.p("dir"))
        write_file(self.vol.p("dir", "small"), b"small file", fsync=True)

        # fill the disk through the mount, fsyncing every 256 KiB
        fd = os.open(self.vol.p("filler"), os.O_WRONLY | os.O_CREAT, 0o644)
        block = pattern(256 * 1024, 2)
        written = synced = 0
        err = None
        try:
            while written < 64 * MiB:
                try:
                    n = os.write(fd, block)
                    written += n
                    os.fsync(fd)
                    synced = written
                except OSError as e:
                    err = e
                    break
        finally:
            try:
                os.close(fd)
            except OSError as e:
                err = err or e
        self.assertIsNotNone(err, "8 MiB of tmpfs must fill up")
        self.assertEqual(err.errno, errno.ENOSPC, "a full backing disk is ENOSPC, got %r" % err)
        self.assertGreater(synced, 2 * MiB)

        # more writes fail the same way, and nothing breaks
        with self.assertRaises(OSError) as cm:
            write_file(self.vol.p("another"), pattern(MiB, 3), fsync=True)
        self.assertEqual(cm.exception.errno, errno.ENOSPC)

        # what was there before is intact, through this daemon and after a remount (which
        # sizes files from their backing files, so a write torn by ENOSPC must not leave an
        # invalid backing size behind)
        for when in ("on a full disk", "after a remount on the full disk"):
            self.assertBytesEqual(read_uncached(self.vol.p("keep")), keep, "fsynced file " + when)
            self.assertEqual(read_uncached(self.vol.p("dir", "small")), b"small file", when)
            got = read_uncached(self.vol.p("filler"))
            self.assertGreaterEqual(len(got), synced, "the filler lost fsynced bytes " + when)
            whole = block * (len(got) // len(block) + 1)
            self.assertBytesEqual(got, whole[:len(got)], "the filler is a prefix of what was written")
            if os.path.exists(self.vol.p("another")):  # its creation may have failed already
                another = read_uncached(self.vol.p("another"))
                self.assertBytesEqual(another, pattern(MiB, 3)[:len(another)], "the file that hit ENOSPC")
            if when.startswith("on"):
                self.vol.remount()

        # free space: the mount works again
        os.unlink(self.vol.p("filler"))
        try:
            os.unlink(self.vol.p("another"))
        except FileNotFoundError:
            pass
        fresh = pattern(3 * MiB, 4)
        write_file(self.vol.p("after"), fresh, fsync=True)
        self.assertBytesEqual(read_uncached(self.vol.p("after")), fresh, "written after freeing space")
        with open(self.vol.p("keep"), "ab") as f:
            f.write(b"appended")
        self.assertBytesEqual(read_uncached(self.vol.p("keep")), keep + b"appended", "append after")
        self.vol.remount()
        self.assertBytesEqual(read_file(self.vol.p("keep")), keep + b"appended", "after remount")
        self.assertBytesEqual(read_file(self.vol.p("after")), fresh, "after remount")

    # ------------------------------------------------------------ unreadable backing files
    def make_files(self):
        """Three top-level files; returns {name: (data, backing path)}."""
        out = {}
        for i, name in enumerate(("victim", "other1", "other2")):
            before = set(backing_data_entries(self.vol.cipher_dir))
            data = pattern(3 * self.vol.chunk + 11 * i, 10 + i)
            write_file(self.vol.p(name), data, fsync=True)
            new = set(backing_data_entries(self.vol.cipher_dir)) - before
            self.assertEqual(len(new), 1)
            out[name] = (data, self.vol.b(new.pop()))
        return out

    def check_others(self, files):
        for name in ("other1", "other2"):
            self.assertBytesEqual(read_file(self.vol.p(name)), files[name][0], name + " still reads")
        write_file(self.vol.p("new"), b"new file", fsync=True)
        self.assertEqual(read_uncached(self.vol.p("new")), b"new file")
        self.assertTrue(self.vol.alive())

    def assertEIO(self, fn, what):
        with self.assertRaises(OSError, msg=what) as cm:
            fn()
        self.assertEqual(cm.exception.errno, errno.EIO, "%s: %r" % (what, cm.exception))

    def test_header_cut_short(self):
        self.start()
        files = self.make_files()
        self.vol.unmount()
        os.truncate(files["victim"][1], 10)
        self.vol.mount()
        self.assertEIO(lambda: read_file(self.vol.p("victim")), "a backing file with a 10-byte header")
        self.assertIn("victim", self.vol.log_text(), "the daemon logs the damaged file's path")
        self.check_others(files)

    def test_backing_file_replaced_by_directory(self):
        self.start()
        files = self.make_files()
        self.vol.unmount()
        bpath = files["victim"][1]
        os.unlink(bpath)
        os.mkdir(bpath)
        self.vol.mount()
        # the entry shows as a directory (types are the backing's, FORMAT.md §1) with no
        # directory id: listing it must fail with EIO, not list garbage or crash
        self.assertEIO(lambda: os.listdir(self.vol.p("victim")), "a directory without wardfs.dirid")
        with self.assertRaises(OSError) as cm:
            read_file(self.vol.p("victim"))
        self.assertIn(cm.exception.errno, (errno.EIO, errno.EISDIR), repr(cm.exception))
        self.assertEIO(lambda: write_file(self.vol.p("victim", "x"), b"x"),
                       "creating inside a directory without an id")
        self.check_others(files)

    def test_read_only_bind_mount_over_backing_file(self):
        self.start()
        files = self.make_files()
        data, bpath = files["victim"]
        self.vol.unmount()  # the daemon would otherwise keep using the fd it has open
        p = run(["mount", "--bind", bpath, bpath])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.addCleanup(run, ["umount", "-l", bpath])
        p = run(["mount", "-o", "remount,bind,ro", bpath])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.vol.mount()
        self.assertBytesEqual(read_file(self.vol.p("victim")), data, "a read-only backing file reads")
        with self.assertRaises(OSError) as cm:
            with open(self.vol.p("victim"), "r+b") as f:
                f.seek(5)
                f.write(b"overwrite")
                f.flush()
                os.fsync(f.fileno())
        self.assertIn(cm.exception.errno, (errno.EROFS, errno.EIO, errno.EACCES), repr(cm.exception))
        self.assertBytesEqual(read_uncached(self.vol.p("victim")), data, "a failed write changes nothing")
        self.check_others(files)
        self.vol.unmount()
        p = run(["umount", bpath])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.vol.mount()
        self.assertBytesEqual(read_file(self.vol.p("victim")), data, "after the bind mount goes")
        write_file(self.vol.p("victim"), b"writable again")
        self.assertEqual(read_uncached(self.vol.p("victim")), b"writable again")


    # ------------------------------------------------------------ a rekey that would take days
    def test_unmount_stops_a_slow_rekey(self):
        """`wardfs rekey --rate` throttles by sleeping; an unmount must not wait for it."""
        self.start()
        write_file(self.vol.p("f"), pattern(300_000, 5))
        for cmd in (["rotate", self.vol.plain], ["rekey", self.vol.plain, "--rate", "0.000001", "--background"]):
            p = run([BIN] + cmd, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(wait_for(lambda: "rekey started" in self.vol.log_text(), 10))
        p = run([BIN, "unmount", self.vol.plain], timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(wait_for(lambda: not self.vol.daemon_pids(), 15),
                        "the daemon must exit after unmount even while a throttled rekey sleeps")
        self.vol.mount()
        self.assertEqual(read_file(self.vol.p("f")), pattern(300_000, 5))


    # ------------------------------------------------------------ a hostile control client
    def control_socket(self):
        digest = hashlib.sha256(os.path.realpath(self.vol.plain).encode()).hexdigest()[:24]
        return "/run/wardfs/%s.sock" % digest  # daemon/control.cc, for root

    def test_control_socket_survives_malformed_requests(self):
        """Whatever bytes a (permitted) client sends, the daemon answers one JSON line and
        keeps serving: found by fuzz_control, a non-UTF-8 request used to kill the daemon."""
        self.start()
        write_file(self.vol.p("f"), b"still here")
        requests = [b'{"op": "\xff"}\n', b"\xc3\x28 not json\n", b'{"op": "rekey", "rate": "fast"}\n',
                    b'{"op": "retire", "generation": "x"}\n', b"[1, 2]\n", b"\n", b"x" * 60000,
                    b'{"op": "status"']
        for req in requests:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(self.control_socket())
                s.sendall(req)
                s.shutdown(socket.SHUT_WR)
                reply = b""
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    reply += b
            self.assertTrue(reply.endswith(b"\n"), "one reply line for %r: %r" % (req[:40], reply[:200]))
            j = json.loads(reply)
            self.assertIn("error", j, "%r is refused" % req[:40])
            self.assertIn(j["code"], (1, 2, 3, 4, 5))
            self.assertTrue(self.vol.alive(), "the daemon survives %r" % req[:40])
        p = run([BIN, "status", self.vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_file(self.vol.p("f")), b"still here")


class Faults(FaultCases, WardfsTestCase):
    pass


if __name__ == "__main__":
    main()
