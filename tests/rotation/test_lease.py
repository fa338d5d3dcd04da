"""The volume lease (wardfs.lease) and the key commands' reach:
- an offline rotate, rekey or retire given the backing directory of a mounted volume is
  refused, names the mount point to use instead, and changes nothing;
- a second read-write mount of a volume is refused (exit 4, naming the first); a read-only
  one alongside is accepted, and still keeps offline key commands out;
- a mount while an offline rekey runs is refused;
- after the daemon is killed with SIGKILL (no stale lease) the volume mounts again;
- rotate, rekey and retire count and convert the root directory's own xattrs;
- retire stops when its scan cannot walk the whole tree, online and offline;
- a writer of another host whose heartbeat is fresh keeps the lease even where its lock
  did not reach us (a backend without shared locks): refused, until the heartbeat is
  older than 30 s or with --force; a writer whose lease is taken over stops its mount;
- a read-only mount beside the read-write one follows its rotate, rekey and retire within
  a few seconds (new files readable, status shows the new generations), and each open
  sees what the writer last closed (close-to-open)."""

import json
import os
import signal
import struct
import subprocess
import time

from rot_harness import (BIN, EXIT_MOUNT, EXIT_USAGE, RotationTestCase, backing_xattr_values,
                         describe, is_fuse_mounted, main, read_file, run, wait_for, write_file)

LEASE = "wardfs.lease"


def backing_state(vol):
    """What an offline key command would change: the config and every backing entry."""
    with open(os.path.join(vol.cipher_dir, "wardfs.conf"), "rb") as f:
        config = f.read()
    entries = []
    for dirpath, dirnames, filenames in os.walk(vol.cipher_dir):
        for n in dirnames + filenames:
            if n != LEASE:
                entries.append(os.path.relpath(os.path.join(dirpath, n), vol.cipher_dir))
    return config, sorted(entries), vol.scan().summary()


def open_cmdline(pid):
    with open("/proc/%d/cmdline" % pid) as f:
        return f.read()


def root_xattr_generations(vol):
    """The key generation of each sealed xattr value on the backing root itself."""
    return sorted(struct.unpack_from("<I", v, 0)[0]
                  for v in backing_xattr_values(vol.cipher_dir).values())


class Lease(RotationTestCase):
    def second_mount_point(self, vol, name="second"):
        return vol.mount_point_beside(name, self.addCleanup)

    def mount_at(self, vol, path, *options):
        return vol.mount_at(path, *options)

    def offline(self, vol, *args):
        return vol.wardfs(args[0], vol.cipher_dir, *args[1:], "--keyfile", vol.keyfile, timeout=120)

    def test_offline_key_commands_refused_while_mounted(self):
        vol = self.new_volume()
        write_file(vol.p("f"), b"mounted data" * 500)
        os.setxattr(vol.p("f"), "user.tag", b"kept")
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        lease = os.path.join(vol.cipher_dir, LEASE)
        self.assertEqual(os.stat(lease).st_mode & 0o777, 0o600, "the lease file is private")
        self.assertEqual(sorted(os.listdir(vol.plain)), ["f"], "the lease is no plaintext entry")
        before = backing_state(vol)
        for cmd in (["rotate"], ["rekey"], ["retire", "1"], ["retire", "1", "--force", "--yes"]):
            p = self.offline(vol, *cmd)
            self.assertEqual(p.returncode, EXIT_USAGE, "offline %s of a mounted volume must be "
                             "refused\n%s" % (" ".join(cmd), describe(p)))
            msg = p.stdout + p.stderr
            self.assertIn("mounted at " + vol.plain, msg, describe(p))
            self.assertIn("wardfs %s %s" % (cmd[0], vol.plain), msg, "names the command to run")
            self.assertIn("pid %d" % vol.daemon_pids()[0], msg, describe(p))
            self.assertEqual(backing_state(vol), before, "a refused offline %s changed the volume"
                             % " ".join(cmd))
        st = vol.status()
        self.assertEqual((st["active_generation"], [g["generation"] for g in st["generations"]]),
                         (2, [1, 2]), st)
        self.assertEqual(read_file(vol.p("f")), b"mounted data" * 500)
        # The command the refusal names works.
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        # Once unmounted, the offline commands run again.
        vol.unmount()
        self.assertCmd(self.offline(vol, "rotate"), 0, vol)

    def test_second_read_write_mount_refused_read_only_accepted(self):
        vol = self.new_volume()
        write_file(vol.p("f"), b"first")
        second = self.second_mount_point(vol)
        p = self.mount_at(vol, second)
        self.assertEqual(p.returncode, EXIT_MOUNT, "a second read-write mount must be refused\n"
                         + describe(p))
        self.assertIn("already mounted read-write at " + vol.plain, p.stdout + p.stderr)
        self.assertFalse(is_fuse_mounted(second))

        p = self.mount_at(vol, second, "ro")
        self.assertCmd(p, 0, vol)
        self.assertEqual(read_file(os.path.join(second, "f")), b"first")

        # With only the read-only mount left: a read-write mount is fine again, and an
        # offline key command still is not. (Not vol.unmount(): it takes every daemon
        # naming vol.root for its own, and would kill the read-only one too.)
        first = [pid for pid in vol.daemon_pids() if second not in open_cmdline(pid)]
        self.assertEqual(len(first), 1, first)
        self.assertCmd(run([BIN, "unmount", vol.plain], timeout=60), 0, vol)
        self.assertTrue(wait_for(lambda: not os.path.exists("/proc/%d" % first[0]), 15))
        p = self.offline(vol, "rotate")
        self.assertEqual(p.returncode, EXIT_USAGE, describe(p))
        self.assertIn("read-only", p.stdout + p.stderr)
        self.assertEqual(vol.config_generations(), ([1], 1))
        vol.mount()
        write_file(vol.p("g"), b"second rw mount")
        self.assertCmd(run([BIN, "unmount", second], timeout=60), 0, vol)
        self.assertFalse(is_fuse_mounted(second))

    def test_mount_refused_while_offline_rekey_runs(self):
        vol = self.new_volume()
        data = self.rng.randbytes(4 << 20)
        write_file(vol.p("big"), data)
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        vol.unmount()
        out = open(os.path.join(vol.root, "rekey.out"), "w+")
        self.addCleanup(out.close)
        rekey = subprocess.Popen([BIN, "rekey", vol.cipher_dir, "--keyfile", vol.keyfile,
                                  "--rate", "1"], stdout=out, stderr=subprocess.STDOUT)

        def stop():
            if rekey.poll() is None:
                rekey.kill()
                rekey.wait()
        self.addCleanup(stop)
        lease = os.path.join(vol.cipher_dir, LEASE)
        def lease_names_rekey():
            try:
                with open(lease, "rb") as f:
                    return b'"rekey"' in f.read()
            except FileNotFoundError:
                return False
        self.assertTrue(wait_for(lease_names_rekey, timeout=20),
                        "the offline rekey writes its name into the lease")
        p = run(vol.mount_args(), timeout=60)
        self.assertEqual(p.returncode, EXIT_MOUNT, "a mount during an offline rekey must be "
                         "refused\n" + describe(p))
        self.assertIn("wardfs rekey", p.stdout + p.stderr)
        self.assertFalse(is_fuse_mounted(vol.plain))
        self.assertEqual(rekey.wait(timeout=120), 0, open(out.name).read())
        self.assertOnlyGeneration(vol, 2, "after the offline rekey")
        vol.mount()
        self.assertEqual(read_file(vol.p("big")), data)

    def test_mount_after_daemon_killed(self):
        vol = self.new_volume()
        write_file(vol.p("f"), b"before the crash")
        self.assertTrue(vol.kill_daemons(signal.SIGKILL), "a daemon to kill")
        self.assertTrue(vol.lazy_unmount(), "the dead mount goes with fusermount3 -uz")
        vol.mount()
        self.assertEqual(read_file(vol.p("f")), b"before the crash")
        vol.unmount()
        self.assertCmd(self.offline(vol, "rotate"), 0, vol)

    def test_root_xattrs_rekeyed_and_kept(self):
        vol = self.new_volume()
        os.setxattr(vol.plain, "user.on-root", b"root value")
        write_file(vol.p("f"), b"x")
        self.assertEqual(root_xattr_generations(vol), [1])
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        p = self.assertCmd(vol.wardfs("retire", vol.plain, "1"), EXIT_USAGE, vol)
        self.assertCmd(vol.wardfs("rekey", vol.plain, timeout=120), 0, vol)
        self.assertEqual(root_xattr_generations(vol), [2], "online rekey re-seals the root's xattr")
        p = self.assertCmd(vol.wardfs("retire", vol.plain, "1"), 0, vol)
        self.assertEqual(os.getxattr(vol.plain, "user.on-root"), b"root value", describe(p))

        vol.unmount()
        self.assertCmd(self.offline(vol, "rotate"), 0, vol)
        p = self.assertCmd(self.offline(vol, "retire", "2"), EXIT_USAGE, vol)
        self.assertCmd(self.offline(vol, "rekey"), 0, vol)
        self.assertEqual(root_xattr_generations(vol), [3], "offline rekey re-seals the root's xattr")
        self.assertCmd(self.offline(vol, "retire", "2"), 0, vol)
        vol.mount()
        self.assertEqual(os.getxattr(vol.plain, "user.on-root"), b"root value")
        self.assertEqual(read_file(vol.p("f")), b"x")

    def test_retire_stops_when_the_scan_fails(self):
        for online in (True, False):
            with self.subTest(online=online):
                vol = self.new_volume()
                os.mkdir(vol.p("d"))
                write_file(vol.p("d", "f"), b"in a directory the scan cannot walk")
                write_file(vol.p("top"), b"rekeyed")
                self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
                vol.unmount()
                # The directory loses its id: its entries cannot be listed, so nobody can
                # tell which generation seals them (d/f: still 1, as the rekey skips it).
                sub = [e for e in vol.scan().entries
                       if os.path.isdir(os.path.join(vol.cipher_dir, e))]
                self.assertEqual(len(sub), 1, sub)
                os.unlink(os.path.join(vol.cipher_dir, sub[0], "wardfs.dirid"))
                vol.mount()
                p = vol.wardfs("rekey", vol.plain, timeout=120)
                self.assertNotEqual(p.returncode, 0, "the rekey cannot reach d/f\n" + describe(p))
                if online:
                    p = vol.wardfs("retire", vol.plain, "1")
                else:
                    vol.unmount()
                    p = self.offline(vol, "retire", "1")
                self.assertNotEqual(p.returncode, 0, "retire after a failed scan\n" + describe(p))
                self.assertIn("scan", p.stdout + p.stderr, describe(p))
                self.assertEqual(vol.config_generations(), ([1, 2], 2), "the retire went ahead")
                vol.unmount()

    def plant_foreign_holder(self, vol, age):
        """What a writer on another host leaves in wardfs.lease when the backing file
        system does not share its lock with this machine."""
        record = {"host": "node-b.example", "pid": 4242, "command": "mount",
                  "mount_point": "/mnt/node-b", "started": "2026-12-06T10:00:00Z",
                  "mount_id": "feedface", "heartbeat": int(time.time()) - age}
        # Written over the old record in place, padded as the daemon pads its own (1 KiB,
        # volume/presence.cc), not truncated first: a daemon renewing its heartbeat between
        # a truncate and the write would read an empty lease, report it "cleared" rather
        # than taken over by pid 4242, and the test would wait for the wrong message.
        fd = os.open(os.path.join(vol.cipher_dir, LEASE), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            width = max(1024, os.fstat(fd).st_size)  # covers all of the old record
            os.pwrite(fd, (json.dumps(record).ljust(width - 1) + "\n").encode(), 0)
        finally:
            os.close(fd)

    def lease_record(self, vol):
        with open(os.path.join(vol.cipher_dir, LEASE)) as f:
            text = f.read()
        return json.loads(text) if text.strip() else None

    def test_heartbeat_of_a_writer_on_another_host(self):
        vol = self.new_volume(mount=False)
        self.plant_foreign_holder(vol, age=3)
        p = self.mount_at(vol, vol.plain)
        self.assertEqual(p.returncode, EXIT_MOUNT, describe(p))
        for word in ("node-b.example", "pid 4242", "heartbeat", "--force"):
            self.assertIn(word, p.stderr, describe(p))
        self.assertFalse(is_fuse_mounted(vol.plain))
        p = self.offline(vol, "rotate")
        self.assertEqual(p.returncode, EXIT_USAGE, describe(p))
        self.assertIn("node-b.example", p.stderr, describe(p))
        self.assertEqual(vol.config_generations(), ([1], 1))

        # A heartbeat older than the timeout: that host is gone, the lease is taken over.
        self.plant_foreign_holder(vol, age=31)
        self.assertCmd(self.mount_at(vol, vol.plain), 0, vol)
        ours = self.lease_record(vol)
        self.assertNotEqual(ours["host"], "node-b.example")
        self.assertNotEqual(ours["mount_id"], "feedface")
        self.assertTrue(wait_for(lambda: self.lease_record(vol)["heartbeat"] > ours["heartbeat"],
                                 12), "the heartbeat is renewed")
        self.assertCmd(run([BIN, "unmount", vol.plain], timeout=60), 0, vol)
        self.assertTrue(wait_for(lambda: not vol.daemon_pids(), 15))
        self.assertIsNone(self.lease_record(vol), "a clean unmount clears the record")

        # --force takes over a fresh one.
        self.plant_foreign_holder(vol, age=0)
        self.assertCmd(run([BIN, "mount", vol.cipher_dir, vol.plain, "--keyfile", vol.keyfile,
                            "--log-file", vol.logfile, "--force"], timeout=60), 0, vol)
        write_file(vol.p("f"), b"written after the takeover")

        # Taken over in turn (node-b used --force): this daemon stops at its next
        # heartbeat instead of writing beside the new holder.
        self.plant_foreign_holder(vol, age=0)
        self.assertTrue(wait_for(lambda: not is_fuse_mounted(vol.plain), 15),
                        "the mount that lost its lease goes away" + vol.log_tail())
        self.assertTrue(wait_for(lambda: not vol.daemon_pids(), 15))
        self.assertIn("taken over by pid 4242 on host node-b.example", vol.log_tail())
        self.assertEqual(self.lease_record(vol)["mount_id"], "feedface",
                         "the stopped daemon leaves the new holder's record alone")

    def test_read_only_mount_follows_rotation_and_closed_files(self):
        vol = self.new_volume()
        write_file(vol.p("f"), b"first version")
        second = self.second_mount_point(vol)
        self.assertCmd(self.mount_at(vol, second, "ro"), 0, vol)
        ro = lambda *parts: os.path.join(second, *parts)

        def ro_status():
            p = run([BIN, "status", second, "--json"], timeout=30)
            self.assertEqual(p.returncode, 0, describe(p))
            gens = json.loads(p.stdout)["generations"]
            return (sorted(g["generation"] for g in gens),
                    [g["generation"] for g in gens if g["active"]])

        def ro_reads(name, want):
            try:
                return read_file(ro(name)) == want
            except OSError:
                return False

        self.assertEqual(read_file(ro("f")), b"first version")
        # The same size, so only a dropped page cache shows the new bytes.
        write_file(vol.p("f"), b"second version")
        self.assertEqual(read_file(ro("f")), b"second version", "close-to-open on the reader")
        write_file(vol.p("f"), b"third version, longer than before")
        self.assertTrue(wait_for(lambda: ro_reads("f", b"third version, longer than before"), 5),
                        "a grown file read whole on the reader")
        # Replaced by a rename (as torch.save and editors do), then read at once, within
        # the kernel's entry timeout: the reader must not serve the unlinked old file.
        write_file(vol.p("f.tmp"), b"fourth version, renamed over")
        os.rename(vol.p("f.tmp"), vol.p("f"))
        self.assertEqual(read_file(ro("f")), b"fourth version, renamed over",
                         "a file replaced by rename reads new on the reader")

        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        write_file(vol.p("g"), b"sealed under generation 2")
        self.assertTrue(wait_for(lambda: ro_status() == ([1, 2], [2]), 10),
                        "the reader follows the rotation: %r" % (ro_status(),))
        self.assertTrue(wait_for(lambda: ro_reads("g", b"sealed under generation 2"), 10),
                        "a file sealed under the new generation reads on the reader")

        self.assertCmd(vol.wardfs("rekey", vol.plain, timeout=120), 0, vol)
        self.assertCmd(vol.wardfs("retire", vol.plain, "1"), 0, vol)
        self.assertTrue(wait_for(lambda: ro_status() == ([2], [2]), 10),
                        "the reader forgets the retired generation: %r" % (ro_status(),))
        self.assertTrue(ro_reads("f", b"fourth version, renamed over"))
        self.assertTrue(ro_reads("g", b"sealed under generation 2"))
        self.assertCmd(run([BIN, "unmount", second], timeout=60), 0, vol)


if __name__ == "__main__":
    main()
