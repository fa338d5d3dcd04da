#!/usr/bin/python3
"""Setuid and setgid lost on write, truncate and chown, as on a local filesystem, now that
the daemon clears them itself (FUSE_CAP_HANDLE_KILLPRIV_V2, fuse/fs_killpriv.cc) and the
kernel no longer asks for security.capability before each write.

Every case runs the same operations, as the same users, on a file in the mount and on a
file in a plain directory, and expects the same mode afterwards (the one the VFS rules
give)."""
import errno
import os
import re
import shutil
import stat
import struct
import tempfile

from wardfs_harness import BIN, WardfsTestCase, main, run

NOBODY = 65534
NOGROUP = 65534
# struct vfs_cap_data, revision 2, effective: CAP_NET_RAW permitted.
CAP_VALUE = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)


def as_nobody(fn):
    """Runs fn() in a child as nobody (no capabilities); returns its exit status."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOGROUP)
            os.setuid(NOBODY)
            fn()
        except BaseException:
            code = 1
        os._exit(code)
    return os.waitpid(pid, 0)[1]


def write_some(path):
    with open(path, "r+b") as f:
        f.write(b"changed")


def truncate_some(path):
    os.truncate(path, 3)


def open_truncating(path):
    os.close(os.open(path, os.O_WRONLY | os.O_TRUNC))


class KillPriv(WardfsTestCase):
    def setUp(self):
        super().setUp()
        self.vol = self.new_volume()
        self._volumes_for_watchdog = (self.vol,)
        self.vol.init()
        os.chmod(self.vol.root, 0o711)
        self.vol.mount("allow_other")
        os.chmod(self.vol.plain, 0o755)  # the volume's root, so nobody may enter it
        self.plain = tempfile.mkdtemp(prefix="wardfs-killpriv-ref-")
        os.chmod(self.plain, 0o755)
        self.addCleanup(shutil.rmtree, self.plain, True)
        self.n = 0

    def both(self, mode, group=0):
        """A new file of `mode` and `group` in the mount and one in the plain directory."""
        self.n += 1
        paths = []
        for top in (self.vol.plain, self.plain):
            path = os.path.join(top, "f%d" % self.n)
            with open(path, "wb") as f:
                f.write(b"#!/bin/sh\necho original\n")
            os.chown(path, 0, group)
            os.chmod(path, mode)
            paths.append(path)
        return paths

    def assertSameOutcome(self, paths, want_mode):
        ours, ref = paths
        self.assertEqual(oct(stat.S_IMODE(os.stat(ref).st_mode)), oct(want_mode),
                         "plain directory (the reference)")
        self.assertEqual(oct(stat.S_IMODE(os.stat(ours).st_mode)), oct(want_mode),
                         "wardfs, as the plain directory")

    def test_write_by_another_user_clears_setuid_and_setgid(self):
        paths = self.both(0o6777)
        for p in paths:
            self.assertEqual(as_nobody(lambda: write_some(p)), 0)
        self.assertSameOutcome(paths, 0o0777)

    def test_setgid_without_group_execute_goes_for_a_writer_outside_the_group(self):
        paths = self.both(0o6766)
        for p in paths:
            self.assertEqual(as_nobody(lambda: write_some(p)), 0)
        self.assertSameOutcome(paths, 0o0766)

    def test_setgid_without_group_execute_stays_for_a_writer_in_the_group(self):
        paths = self.both(0o6766, group=NOGROUP)
        for p in paths:
            self.assertEqual(as_nobody(lambda: write_some(p)), 0)
        self.assertSameOutcome(paths, 0o2766)

    def test_truncate_by_another_user_clears_them(self):
        paths = self.both(0o6777)
        for p in paths:
            self.assertEqual(as_nobody(lambda: truncate_some(p)), 0)
        self.assertSameOutcome(paths, 0o0777)

    def test_open_with_o_trunc_by_another_user_clears_them(self):
        paths = self.both(0o6777)
        for p in paths:
            self.assertEqual(as_nobody(lambda: open_truncating(p)), 0)
        self.assertSameOutcome(paths, 0o0777)

    def test_root_keeps_them(self):
        # Root has CAP_FSETID: its writes and truncates leave the bits alone.
        paths = self.both(0o6777)
        for p in paths:
            write_some(p)
            truncate_some(p)
        self.assertSameOutcome(paths, 0o6777)

    def test_chown_clears_them(self):
        paths = self.both(0o6755)
        for p in paths:
            os.chown(p, NOBODY, NOGROUP)
        self.assertSameOutcome(paths, 0o0755)

    def test_no_file_capability_to_clear(self):
        # wardfs keeps only user.* attributes, so no file on it carries a capability the
        # daemon would have to drop on a write.
        path = self.both(0o755)[0]
        self.assertErrno(errno.EOPNOTSUPP, os.setxattr, path, "security.capability", CAP_VALUE)

    def test_writes_no_longer_cost_a_getxattr_each(self):
        # Before HANDLE_KILLPRIV_V2 the kernel asked for security.capability before each
        # write(); now it leaves that to the daemon.
        path = self.vol.p("many-writes")
        before = self.operations("getxattr")
        with open(path, "wb", buffering=0) as f:
            for _ in range(50):
                f.write(b"x" * 100)
        self.assertLess(self.operations("getxattr") - before, 10)

    def operations(self, op):
        p = run([BIN, "status", self.vol.plain, "--prometheus"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        m = re.search(r'^wardfs_operations_total\{[^}]*op="%s"[^}]*\} (\S+)$' % op, p.stdout,
                      re.M)
        self.assertIsNotNone(m, p.stdout)
        return float(m.group(1))


if __name__ == "__main__":
    main()
