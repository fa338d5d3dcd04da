"""wardfs on a second network file system: sshfs (SFTP) to a private sshd on loopback,
mounted twice (client-a and client-b stand for two machines).

- the basic I/O, metadata and tamper suites of tests/integration, run unchanged with each
  volume's backing directory on client-a (WARDFS_IT_BACKING_ROOT);
- the lease heartbeat: sshfs shares no locks between its mounts, so only the heartbeat
  in wardfs.lease shows a writer on another machine. With the volume mounted read-write
  through client-a by a daemon whose host is "node-a" (its own UTS namespace), a
  read-write mount through client-b is refused naming that host; `--force` takes over,
  and node-a's daemon then stops its mount at its next heartbeat.

sshd, both sshfs mounts and every wardfs mount are set up here and torn down at the end,
on failure and on SIGTERM. Where sshd or sshfs is missing or cannot start, the test exits
77, which ctest reports as skipped, with the reason.
"""

import atexit
import os
import shutil
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

import wardfs_volume  # noqa: E402
from sshfs import SshfsExport, SshfsUnavailable  # noqa: E402
from test_gluster import OnGluster, run_integration_suite  # noqa: E402
from wardfs_harness import (BIN, describe, is_fuse_mounted, read_file, run,  # noqa: E402
                            wait_for, write_file)

import test_gluster  # noqa: E402

EXIT_MOUNT = 4
SKIP = 77

EXPORT = None


def stop_everything():
    test_gluster.stop_suite()
    wardfs_volume._cleanup_all()
    if EXPORT is not None:
        EXPORT.stop()


def on_sigterm(signum, frame):
    stop_everything()
    os._exit(128 + signum)


class OnSshfs(OnGluster):
    """The Gluster test helpers, with client-a and client-b on sshfs."""

    def backend(self):
        return EXPORT


# What SFTP (version 3, as OpenSSH speaks it) cannot store or report, so no file system
# stacked on sshfs can: each test is reported as skipped with the reason.
SSHFS_CANNOT = {
    "test_sparse_file": "sshfs reports st_blocks from the size, not the sparse file",
    "test_huge_sparse_truncate": "sshfs reports st_blocks from the size, not the sparse file",
    "test_device_node": "SFTP has no mknod",
    "test_fifo": "SFTP has no mknod",
    "test_long_names": "SFTP has no mknod (the test makes a FIFO with a long name)",
    "test_user_xattrs": "sshfs has no extended attributes",
    "test_xattr_survives_rename_and_write": "sshfs has no extended attributes",
    "test_chmod_chown_utime": "SFTP keeps times in whole seconds",
    "test_symlinks": "SFTP sets the times of a symlink's target, never of the link",
    "test_directory_link_count": "sshfs reports a link count of 1",
    "test_hard_links": "sshfs reports a link count of 1",
    "test_inode_numbers_stable_after_kernel_forgets":
        "sshfs numbers inodes itself, anew once the kernel forgets them",
}


class ExistingSuites(OnSshfs):
    """The integration suites, with their backing directories on sshfs."""

    def run_suite(self, name):
        run_integration_suite(self, name, EXPORT.client_a, "sshfs", SSHFS_CANNOT)

    def test_basic_io(self):
        self.run_suite("test_basic_io")

    def test_metadata(self):
        self.run_suite("test_metadata")

    def test_tamper(self):
        self.run_suite("test_tamper")


class LeaseHeartbeat(OnSshfs):
    def test_second_writer_through_other_client_refused_by_the_heartbeat(self):
        vol = self.gluster_volume(EXPORT.client_a)
        # A daemon of "another machine": its host name is node-a.
        unshare = shutil.which("unshare")
        if unshare is None:
            self.fail("unshare (util-linux) is needed to give the first daemon another host")
        p = run([unshare, "--uts", "sh", "-c", 'hostname node-a && exec "$@"', "sh",
                 BIN, "mount", vol.cipher_dir, vol.plain, "--keyfile", vol.keyfile,
                 "--log-file", vol.logfile], timeout=60)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertTrue(wait_for(lambda: is_fuse_mounted(vol.plain), 10))
        write_file(vol.p("f"), b"written on node-a")

        rw = self.other_mount_point(vol, "rw-b")
        p = self.mount_via_b(vol, rw)
        self.assertEqual(p.returncode, EXIT_MOUNT, "sshfs shares no lock: the heartbeat must "
                         "refuse the second writer\n" + describe(p))
        for word in ("node-a", "heartbeat", "--force"):
            self.assertIn(word, p.stderr, describe(p))
        self.assertFalse(is_fuse_mounted(rw))

        p = self.mount_via_b(vol, rw, force=True)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(read_file(os.path.join(rw, "f")), b"written on node-a")
        self.assertTrue(wait_for(lambda: not is_fuse_mounted(vol.plain), 15),
                        "node-a's daemon stops once its lease is taken over" + vol.log_tail())
        write_file(os.path.join(rw, "g"), b"written after the takeover")
        self.assertEqual(run([BIN, "unmount", rw], timeout=60).returncode, 0)


def main():
    import unittest
    global EXPORT
    if not os.path.exists(BIN):
        sys.stderr.write("wardfs binary not found: %s (set WARDFS_BIN)\n" % BIN)
        sys.exit(1)
    e = SshfsExport()
    atexit.register(stop_everything)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        e.start()
    except SshfsUnavailable as err:
        sys.stderr.write("SKIPPED: no sshfs backend here: %s\n" % err)
        sys.exit(SKIP)
    EXPORT = e
    sys.stderr.write("sshfs export %s on port %d: clients %s and %s\n"
                     % (e.export, e.port, e.client_a, e.client_b))
    unittest.main(verbosity=2)


if __name__ == "__main__":
    main()
