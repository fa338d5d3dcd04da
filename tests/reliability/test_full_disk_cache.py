"""A full backing disk under the kernel writeback cache (-o writeback_cache=1), through real mounts
on a tmpfs just larger than the mount's writeback reserve (fuse/writeback_space.h):

- every write() the kernel accepted lands (from the reserve), and the write() after the
  disk filled fails with ENOSPC itself, not a later fsync() or close();
- a mount made on a full disk, where no reserve fits, writes through and works;
- once space is freed the reserve is whole again and writes are cached again; unmount
  removes the reserve file;
- one write() larger than the reserve, begun before the disk filled: what cannot land is
  reported by fsync() (ENOSPC) and counted, reads of it fail with EIO instead of showing
  zeros, and after a remount the file is an intact prefix of what was written."""

import errno
import json
import os

import reliability_env
from wardfs_harness import (BIN, WardfsTestCase, config_matrix, drop_cache, main, pattern,
                            read_file, read_uncached, run, write_file)

MiB = 1 << 20
FREE = 48 * MiB  # what the tmpfs has beside the reserve
WB = "writeback_cache=1"


class FullDiskCache(WardfsTestCase):
    def setUp(self):
        super().setUp()
        cipher, chunk = config_matrix("one")[0]
        self.vol = self.new_volume(cipher, chunk)
        self._volumes_for_watchdog = (self.vol,)

    def status(self):
        p = run([BIN, "status", self.vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def reserve_size(self):
        """The reserve this machine's mounts hold, from a mount of a scratch volume."""
        probe = self.new_volume(self.vol.cipher, self.vol.chunk)
        probe.init()
        probe.mount(WB)
        try:
            p = run([BIN, "status", probe.plain, "--json"], timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            st = json.loads(p.stdout)
        finally:
            probe.unmount()
        self.assertTrue(st["writeback_cache"], "writeback_cache=1 holds a reserve")
        reserve = st["writeback_reserve"]
        self.assertGreater(reserve["bytes"], 8 * MiB)
        self.assertEqual(reserve["held"], reserve["bytes"], "the whole reserve is held")
        return reserve["bytes"]

    def start_on_tmpfs(self):
        reliability_env.backing_on_tmpfs(self, self.vol, self.reserve_size() + FREE)
        self.vol.init()
        self.vol.mount(WB)
        st = self.status()
        self.assertTrue(st["writeback_cache"], self.vol.log_tail())
        self.assertFalse(st["writeback_reserve"]["backing_full"])
        self.assertTrue(os.path.exists(self.vol.b("wardfs.reserve")))

    def test_cached_writes_land_and_write_fails(self):
        self.start_on_tmpfs()
        keep = pattern(2 * MiB + 123, 1)
        write_file(self.vol.p("keep"), keep, fsync=True)

        # no fsync: the kernel caches, and writes back as its dirty limit makes it
        fd = os.open(self.vol.p("filler"), os.O_WRONLY | os.O_CREAT, 0o644)
        block = pattern(256 * 1024 + 7, 2)
        written = 0
        err = None
        try:
            while written < 4 * FREE:
                try:
                    written += os.write(fd, block)
                except OSError as e:
                    err = e
                    break
            self.assertIsNotNone(err, "%d bytes must fill %d free" % (written, FREE))
            self.assertEqual(err.errno, errno.ENOSPC, "write() itself fails, got %r" % err)
            self.assertGreater(written, FREE // 2)
            os.fsync(fd)  # everything write() accepted has landed: nothing to report
        finally:
            os.close(fd)
        st = self.status()["writeback_reserve"]
        self.assertTrue(st["backing_full"])
        self.assertGreaterEqual(st["times_full"], 1)
        self.assertEqual(st["writes_lost"], 0)
        whole = block * (written // len(block) + 1)
        self.assertBytesEqual(read_uncached(self.vol.p("filler")), whole[:written],
                              "every byte write() accepted")

        # a file opened now writes through: its write() fails, or what it wrote is there
        another = pattern(4 * MiB, 3)
        try:
            write_file(self.vol.p("another"), another, fsync=True)
        except OSError as e:
            self.assertEqual(e.errno, errno.ENOSPC)
        else:
            self.assertBytesEqual(read_uncached(self.vol.p("another")), another, "another")

        # on the full disk no reserve fits: the remounted volume writes through, and works
        self.vol.remount(WB)
        st = self.status()
        self.assertFalse(st["writeback_cache"], "no reserve on a full disk")
        self.assertIn("writeback cache off", self.vol.log_text())
        self.assertBytesEqual(read_file(self.vol.p("keep")), keep, "after a remount")
        self.assertBytesEqual(read_file(self.vol.p("filler")), whole[:written], "after a remount")
        # (unmounting freed what was left of the old reserve: fill that up too)
        more = pattern(MiB, 4)
        fd = os.open(self.vol.p("more"), os.O_WRONLY | os.O_CREAT, 0o644)
        landed = 0
        try:
            with self.assertRaises(OSError) as cm:
                for _ in range(4 * FREE // MiB):
                    landed += os.write(fd, more)
            self.assertEqual(cm.exception.errno, errno.ENOSPC, "write() itself fails")
        finally:
            os.close(fd)
        got = read_uncached(self.vol.p("more"))
        self.assertGreaterEqual(len(got), landed)
        self.assertBytesEqual(got, (more * (len(got) // MiB + 1))[:len(got)], "written through")
        os.unlink(self.vol.p("more"))

        # space freed: the next mount holds its reserve and caches again
        os.unlink(self.vol.p("filler"))
        self.vol.remount(WB)
        st = self.status()
        self.assertTrue(st["writeback_cache"], self.vol.log_tail())
        self.assertEqual(st["writeback_reserve"]["held"], st["writeback_reserve"]["bytes"])
        fresh = pattern(3 * MiB, 5)
        write_file(self.vol.p("after"), fresh, fsync=True)
        self.assertBytesEqual(read_uncached(self.vol.p("after")), fresh, "written after freeing")
        self.vol.unmount()
        self.assertFalse(os.path.exists(self.vol.b("wardfs.reserve")), "unmount frees the reserve")

    def test_freed_space_ends_the_full_state_in_place(self):
        self.start_on_tmpfs()
        fd = os.open(self.vol.p("filler"), os.O_WRONLY | os.O_CREAT, 0o644)
        block = pattern(MiB, 6)
        try:
            with self.assertRaises(OSError) as cm:
                for _ in range(4 * FREE // MiB):
                    os.write(fd, block)
            self.assertEqual(cm.exception.errno, errno.ENOSPC)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.assertTrue(self.status()["writeback_reserve"]["backing_full"])
        os.unlink(self.vol.p("filler"))
        fresh = pattern(5 * MiB, 7)
        write_file(self.vol.p("after"), fresh)  # its open takes the reserve back
        st = self.status()["writeback_reserve"]
        self.assertFalse(st["backing_full"], "freed space ends the full state")
        self.assertEqual(st["held"], st["bytes"])
        self.assertBytesEqual(read_uncached(self.vol.p("after")), fresh)

    def test_one_write_past_the_reserve_is_reported(self):
        self.start_on_tmpfs()
        reserve = self.status()["writeback_reserve"]["bytes"]
        data = pattern(reserve + FREE + 32 * MiB, 8)
        fd = os.open(self.vol.p("big"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # one call, past its check before the disk filled: the kernel takes it all
            self.assertEqual(os.write(fd, data), len(data))
            with self.assertRaises(OSError) as cm:
                os.fsync(fd)
            self.assertEqual(cm.exception.errno, errno.ENOSPC, "fsync reports the loss")
            self.assertGreater(self.status()["writeback_reserve"]["writes_lost"], 0)
            # the kernel still believes in the size: what did not land is EIO, not zeros
            drop_cache(self.vol.p("big"), fsync=False)
            with self.assertRaises(OSError) as cm:
                os.pread(fd, MiB, len(data) - MiB)
            self.assertEqual(cm.exception.errno, errno.EIO)
            self.assertBytesEqual(os.pread(fd, MiB, 0), data[:MiB], "the head landed")
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        self.assertIn("cannot land", self.vol.log_text())
        self.vol.remount(WB)
        got = read_file(self.vol.p("big"))
        self.assertGreater(len(got), FREE // 2)
        self.assertLess(len(got), len(data))
        self.assertBytesEqual(got, data[:len(got)], "an intact prefix after a remount")

    def test_off_by_default_and_warned_on_a_non_local_backing(self):
        self.vol.init()
        self.vol.mount()
        st = self.status()
        self.assertFalse(st["writeback_cache"])
        self.assertEqual(st["writeback_reserve"]["bytes"], 0)
        self.assertFalse(os.path.exists(self.vol.b("wardfs.reserve")))
        # a FUSE file system (this very mount) stands for NFS, GlusterFS and the like
        inner = self.new_volume(self.vol.cipher, self.vol.chunk)
        inner.cipher_dir = self.vol.p("inner-backing")
        os.mkdir(inner.cipher_dir)
        inner.init()
        inner.mount(WB)
        try:
            self.assertIn("not on a local file system", inner.log_text())
            write_file(inner.p("f"), b"through", fsync=True)
            self.assertEqual(read_uncached(inner.p("f")), b"through")
        finally:
            inner.unmount()
        self.vol.unmount()

if __name__ == "__main__":
    main()
