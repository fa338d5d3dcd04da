"""wardfs on a real network file system: a one-node GlusterFS volume on loopback, mounted
twice with its FUSE client (client-a and client-b stand for two machines).

- the basic I/O, metadata and tamper suites of tests/integration, run unchanged with each
  volume's backing directory on client-a (WARDFS_IT_BACKING_ROOT);
- mkdir, nested directories and every kind of rename, although the Gluster client rejects
  RENAME_NOREPLACE and RENAME_EXCHANGE with EINVAL; `wardfs status` names the fallback;
- an online rekey (which renames every name without replacing) on Gluster;
- the single-writer lease across clients: with the volume mounted read-write through
  client-a, a read-write mount of it through client-b is refused, a read-only one is not,
  and once client-a's mount ends client-b mounts read-write;
- -o shared across the two clients: the checks of tests/integration/test_shared.py
  (close-to-open both ways, two mounts writing interleaved stripes of one file while both
  read it, one name created from both at once, online fsck beside a writer; rotate,
  rekey and retire through one while the other writes; a file rewritten under a just
  rotated generation read at once on the other), and an exclusive mount refused beside;
- rename -n races across the clients (no RENAME_NOREPLACE on Gluster: files move by
  link + unlink): of two files moved onto one new name at once, exactly one lands there,
  the other keeps its old name (EEXIST), nothing is lost;
- renames across directories by both mounts at once leave a consistent tree: every file
  once, readable, fsck clean;
- kill -9 of the writer's daemon on client-a: client-b takes the lease over and mounts.

glusterd, the volume and both client mounts are set up here and torn down at the end, on
failure and on SIGTERM. Where glusterd cannot start (not installed, its port taken) the
test exits 77, which ctest reports as skipped, with the reason.
"""

import atexit
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRATION = os.path.join(os.path.dirname(HERE), "integration")  # its suites run here too

import wardfs_volume  # noqa: E402
from gluster import GlusterUnavailable, GlusterVolume  # noqa: E402
from test_shared import (check_close_to_open, check_create_races,  # noqa: E402
                         check_fsck_beside_writer, check_interleaved_writers,
                         check_keys_while_writing, check_rename_races,
                         check_unknown_generation_followed)
from wardfs_harness import (BIN, RENAME_EXCHANGE, RENAME_NOREPLACE, WardfsTestCase,  # noqa: E402
                            describe, is_fuse_mounted, read_file, renameat2, run, wait_for,
                            write_file)

EXIT_MOUNT = 4
SKIP = 77
SUITES = ("test_basic_io", "test_metadata", "test_tamper")
SUITE_TIMEOUT = 150  # each takes about 30 s on 2 cores

GLUSTER = None
SUITE = None  # the integration suite running as a child, if any


def stop_suite():
    """The integration suite running as a child, if any (its harness unmounts its volumes
    on SIGTERM)."""
    if SUITE is not None and SUITE.poll() is None:
        SUITE.terminate()
        try:
            SUITE.wait(timeout=60)
        except subprocess.TimeoutExpired:
            SUITE.kill()


def stop_everything():
    """wardfs mounts first (their backing directories are on the Gluster mounts)."""
    stop_suite()
    wardfs_volume._cleanup_all()
    if GLUSTER is not None:
        GLUSTER.stop()


def on_sigterm(signum, frame):
    stop_everything()
    os._exit(128 + signum)


def backing_walk(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            yield os.path.join(dirpath, n)


def run_integration_suite(tc, name, backing_root, label, skips=None):
    """Runs tests/integration/<name>.py unchanged, its backing directories under
    backing_root; `skips` maps test names the backend cannot pass to the reason."""
    env = dict(os.environ, WARDFS_IT_BACKING_ROOT=backing_root,
               WARDFS_IT_CIPHER="aes-256-gcm", WARDFS_IT_CHUNK="4K",
               WARDFS_IT_BACKING_SKIP=";".join("%s=%s" % kv for kv in (skips or {}).items()))
    started = time.monotonic()
    global SUITE
    p = SUITE = subprocess.Popen(
        [sys.executable, os.path.join(INTEGRATION, name + ".py")], env=env, cwd=INTEGRATION,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = p.communicate(timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.terminate()  # the harness unmounts its volumes on SIGTERM
        out, _ = p.communicate(timeout=120)
        tc.fail("%s ran over %ds on %s:\n%s" % (name, SUITE_TIMEOUT, label, out[-6000:]))
    sys.stderr.write("%s on %s: %.0fs\n" % (name, label, time.monotonic() - started))
    tc.assertEqual(p.returncode, 0, "%s failed with its backing on %s:\n%s"
                   % (name, label, out[-6000:]))
    tc.assertRegex(out, r"\nOK", "%s ran no tests?\n%s" % (name, out[-2000:]))


class OnGluster(WardfsTestCase):
    def backend(self):
        """What holds client_a and client_b (test_sshfs.py swaps in its own)."""
        return GLUSTER

    def gluster_volume(self, client=None):
        v = self.new_volume(backing_root=client or self.backend().client_a)
        self._volumes_for_watchdog = (v,)
        v.init()
        return v

    def status(self, vol):
        p = run([BIN, "status", vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, describe(p))
        return json.loads(p.stdout)

    def other_mount_point(self, vol, name):
        path = os.path.join(vol.root, name)
        os.mkdir(path)

        def cleanup():
            for args in ([BIN, "unmount", path], ["fusermount3", "-uz", path]):
                if is_fuse_mounted(path):
                    run(args, timeout=60)
        self.addCleanup(cleanup)
        return path

    def mount_via_b(self, vol, path, *options, force=False):
        """The same volume, reached through the second client."""
        backend = self.backend()
        cipher_b = os.path.join(backend.client_b, os.path.relpath(vol.cipher_dir,
                                                                  backend.client_a))
        args = [BIN, "mount", cipher_b, path, "--keyfile", vol.keyfile,
                "--log-file", vol.logfile + "." + os.path.basename(path)]
        for o in options:
            args += ["-o", o]
        if force:
            args.append("--force")
        return run(args, timeout=60)


class ExistingSuites(OnGluster):
    """The integration suites, unchanged, with their backing directories on Gluster."""

    def test_basic_io(self):
        run_integration_suite(self, "test_basic_io", GLUSTER.client_a, "GlusterFS")

    def test_metadata(self):
        run_integration_suite(self, "test_metadata", GLUSTER.client_a, "GlusterFS")

    def test_tamper(self):
        run_integration_suite(self, "test_tamper", GLUSTER.client_a, "GlusterFS")


class Directories(OnGluster):
    def test_mkdir_and_renames_without_rename_flags(self):
        vol = self.gluster_volume()
        vol.mount()
        os.makedirs(vol.p("a", "b", "c"))
        write_file(vol.p("a", "b", "c", "f"), b"deep" * 1000)
        self.assertErrno(17, os.mkdir, vol.p("a"))  # EEXIST
        write_file(vol.p("x"), b"x")
        self.assertErrno(17, os.mkdir, vol.p("x"))
        long_name = "L" * 200  # a long name: its sidecar goes with it
        os.mkdir(vol.p(long_name))

        os.rename(vol.p("a", "b"), vol.p("b2"))             # a directory, across directories
        os.rename(vol.p("x"), vol.p("b2", "x2"))            # a file, across directories
        write_file(vol.p("y"), b"y")
        os.rename(vol.p("y"), vol.p("b2", "x2"))            # replacing a file
        os.mkdir(vol.p("empty"))
        os.rename(vol.p(long_name), vol.p("empty"))         # replacing an empty directory
        # rename -n: refused onto an existing name, done onto a free one.
        write_file(vol.p("n1"), b"n1")
        write_file(vol.p("n2"), b"n2")
        self.assertErrno(17, renameat2, vol.p("n1"), vol.p("n2"), RENAME_NOREPLACE)
        self.assertErrno(17, renameat2, vol.p("n1"), vol.p("b2"), RENAME_NOREPLACE)
        renameat2(vol.p("n1"), vol.p("n3"), RENAME_NOREPLACE)
        os.mkdir(vol.p("d1"))
        renameat2(vol.p("d1"), vol.p("d3"), RENAME_NOREPLACE)
        # An exchange has no safe equivalent here: EINVAL, as Gluster itself answers.
        self.assertErrno(22, renameat2, vol.p("n2"), vol.p("n3"), RENAME_EXCHANGE)

        def check():
            self.assertEqual(sorted(os.listdir(vol.plain)),
                             ["a", "b2", "d3", "empty", "n2", "n3"])
            self.assertEqual(os.listdir(vol.p("a")), [])
            self.assertEqual(sorted(os.listdir(vol.p("b2"))), ["c", "x2"])
            self.assertEqual(read_file(vol.p("b2", "c", "f")), b"deep" * 1000)
            self.assertEqual(read_file(vol.p("b2", "x2")), b"y")
            self.assertEqual(read_file(vol.p("n2")), b"n2")
            self.assertEqual(read_file(vol.p("n3")), b"n1")
        check()
        backing = self.status(vol)["backing"]
        self.assertFalse(backing["rename_noreplace"], backing)
        self.assertFalse(backing["rename_exchange"], backing)
        self.assertTrue(any("RENAME_NOREPLACE" in f for f in backing["fallbacks"]), backing)
        p = run([BIN, "status", vol.plain], timeout=30)
        self.assertIn("backing fallback: no RENAME_NOREPLACE", p.stdout, describe(p))
        os.rmdir(vol.p("a"))
        os.rmdir(vol.p("empty"))
        vol.remount()
        self.assertEqual(sorted(os.listdir(vol.plain)), ["b2", "d3", "n2", "n3"])
        self.assertEqual(read_file(vol.p("b2", "c", "f")), b"deep" * 1000)
        leftovers = [p for p in backing_walk(vol.cipher_dir) if "wardfs.tmp." in p]
        self.assertEqual(leftovers, [], "temp entries left in the backing tree")

    def test_online_rekey_renames_every_name(self):
        vol = self.gluster_volume()
        vol.mount()
        os.makedirs(vol.p("d", "e"))
        names = ["f%d" % i for i in range(20)] + ["N" * 180]
        for n in names:
            write_file(vol.p("d", n), n.encode() * 10)
        before = sorted(os.listdir(os.path.join(vol.cipher_dir)))
        for cmd in (["rotate", vol.plain], ["rekey", vol.plain]):
            p = run([BIN] + cmd, timeout=180)
            self.assertEqual(p.returncode, 0, describe(p) + vol.log_tail())
        rekey = self.status(vol)["rekey"]
        self.assertEqual(rekey["errors"], 0, rekey)
        self.assertGreater(rekey["names_done"], len(names), rekey)
        self.assertNotEqual(sorted(os.listdir(vol.cipher_dir)), before, "names re-encrypted")
        vol.remount()
        self.assertEqual(sorted(os.listdir(vol.p("d"))), sorted(names + ["e"]))
        for n in names:
            self.assertEqual(read_file(vol.p("d", n)), n.encode() * 10)


class LeaseAcrossClients(OnGluster):
    def test_second_read_write_mount_from_other_client_refused(self):
        vol = self.gluster_volume()
        vol.mount()
        write_file(vol.p("f"), b"written through client a")
        rw = self.other_mount_point(vol, "rw-b")
        p = self.mount_via_b(vol, rw)
        self.assertEqual(p.returncode, EXIT_MOUNT, "a second read-write mount through another "
                         "client must be refused\n" + describe(p))
        self.assertIn("already mounted read-write at " + vol.plain, p.stderr, describe(p))
        self.assertFalse(is_fuse_mounted(rw))

        ro = self.other_mount_point(vol, "ro-b")
        p = self.mount_via_b(vol, ro, "ro")
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(read_file(os.path.join(ro, "f")), b"written through client a")
        self.assertEqual(run([BIN, "unmount", ro], timeout=60).returncode, 0)

        # The lease goes with client a's mount: client b may then write.
        vol.unmount()
        p = self.mount_via_b(vol, rw)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertTrue(wait_for(lambda: is_fuse_mounted(rw), 10))
        write_file(os.path.join(rw, "g"), b"written through client b")
        self.assertEqual(run([BIN, "unmount", rw], timeout=60).returncode, 0)
        vol.mount()
        self.assertEqual(read_file(vol.p("g")), b"written through client b")


class SharedAcrossClients(OnGluster):
    def shared_pair(self):
        vol = self.gluster_volume()
        vol.mount("shared")
        other = self.other_mount_point(vol, "shared-b")
        p = self.mount_via_b(vol, other, "shared")
        self.assertEqual(p.returncode, 0, describe(p) + vol.log_tail())
        return vol, other

    def test_exclusive_mount_refused_beside_shared_ones(self):
        vol, _ = self.shared_pair()
        rw = self.other_mount_point(vol, "rw-b")
        p = self.mount_via_b(vol, rw)
        self.assertEqual(p.returncode, EXIT_MOUNT, describe(p))
        self.assertIn("-o shared", p.stderr, describe(p))

    def test_close_to_open_across_clients(self):
        vol, other = self.shared_pair()
        check_close_to_open(self, vol.plain, other)

    def test_interleaved_writers_across_clients(self):
        vol, other = self.shared_pair()
        check_interleaved_writers(self, vol.plain, other, vol.cipher_dir)

    def test_create_races_across_clients(self):
        vol, other = self.shared_pair()
        check_create_races(self, vol.plain, other)

    def test_keys_rotated_rekeyed_and_retired_while_the_other_client_writes(self):
        vol, other = self.shared_pair()
        check_keys_while_writing(self, vol.plain, other)

    def test_unknown_generation_followed_at_once_across_clients(self):
        vol, other = self.shared_pair()
        check_unknown_generation_followed(self, vol.plain, other)

    def test_online_fsck_beside_a_writer_on_the_other_client(self):
        vol, other = self.shared_pair()
        check_fsck_beside_writer(self, vol.plain, other)

    def fsck_clean(self, vol):
        p = run([BIN, "fsck", vol.plain, "--json"], timeout=300)
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        self.assertEqual((p.returncode, lines[:-1]), (0, []), p.stderr)

    def test_rename_noreplace_race_onto_one_name(self):
        vol, other = self.shared_pair()
        check_rename_races(self, vol.plain, other)
        self.fsck_clean(vol)
        leftovers = [p for p in backing_walk(vol.cipher_dir) if "wardfs.tmp." in p]
        self.assertEqual(leftovers, [], "rename intents left in the backing tree")

    def test_renames_across_directories_by_both_mounts(self):
        vol, other = self.shared_pair()
        dirs = ["d%d" % i for i in range(4)]
        for d in dirs:
            os.mkdir(vol.p(d))
        # Each mount moves its own files; both change the same four directories at once.
        files = {vol.plain: ["a%d" % i for i in range(15)] + ["A%d" % i + "N" * 170
                                                           for i in range(3)],
                 other: ["b%d" % i for i in range(15)] + ["B%d" % i + "N" * 170
                                                       for i in range(3)]}
        for names in files.values():
            for i, n in enumerate(names):
                write_file(vol.p(dirs[i % 4], n), n.encode() * 30)
        self.assertTrue(wait_for(lambda: sum(len(os.listdir(os.path.join(other, d)))
                                             for d in dirs) == 36, 10))
        errors = []

        def mover(root, names, seed):
            rnd = random.Random(seed)
            where = {n: dirs[i % 4] for i, n in enumerate(names)}
            try:
                for _ in range(120):
                    n = rnd.choice(names)
                    to = rnd.choice([d for d in dirs if d != where[n]])
                    flags = RENAME_NOREPLACE if rnd.random() < 0.5 else 0
                    renameat2(os.path.join(root, where[n], n), os.path.join(root, to, n), flags)
                    where[n] = to
            except OSError as e:
                errors.append((root, e))
        threads = [threading.Thread(target=mover, args=(root, names, i))
                   for i, (root, names) in enumerate(files.items())]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.assertEqual(errors, [])
        for root in (vol.plain, other):
            seen = {}
            for d in dirs:
                for n in os.listdir(os.path.join(root, d)):
                    self.assertNotIn(n, seen, "%s in %s and %s" % (n, seen.get(n), d))
                    seen[n] = d
                    self.assertEqual(read_file(os.path.join(root, d, n)), n.encode() * 30)
            self.assertEqual(sorted(seen), sorted(files[vol.plain] + files[other]))
        self.fsck_clean(vol)


class CrashAcrossClients(OnGluster):
    def test_kill_9_then_the_lease_taken_over_from_the_other_client(self):
        vol = self.gluster_volume()
        vol.mount()
        write_file(vol.p("f"), b"written through client a")
        rw = self.other_mount_point(vol, "rw-b")
        self.assertEqual(self.mount_via_b(vol, rw).returncode, EXIT_MOUNT, "refused while alive")
        # Client a's daemon dies; its mount point stays dead there, as on a crashed node.
        self.kill_daemon(vol)
        p = self.mount_via_b(vol, rw)
        self.assertEqual(p.returncode, 0, "the lease of a dead daemon is taken over\n"
                         + describe(p))
        self.assertTrue(wait_for(lambda: is_fuse_mounted(rw), 10))
        self.assertEqual(read_file(os.path.join(rw, "f")), b"written through client a")
        write_file(os.path.join(rw, "g"), b"written through client b")
        self.assertEqual(run([BIN, "unmount", rw], timeout=60).returncode, 0)
        vol.kill_daemons()  # the dead mount of client a goes
        vol.mount()
        self.assertEqual(read_file(vol.p("g")), b"written through client b")


def main():
    import unittest
    global GLUSTER
    if not os.path.exists(BIN):
        sys.stderr.write("wardfs binary not found: %s (set WARDFS_BIN)\n" % BIN)
        sys.exit(1)
    g = GlusterVolume()
    atexit.register(stop_everything)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        g.start()
    except GlusterUnavailable as e:
        sys.stderr.write("SKIPPED: glusterd cannot start here: %s\n" % e)
        sys.exit(SKIP)
    GLUSTER = g
    sys.stderr.write("GlusterFS volume %s: clients %s and %s\n"
                     % (g.name, g.client_a, g.client_b))
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
