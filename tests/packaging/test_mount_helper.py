"""The mount(8) helper: the wardfs binary run as mount.fuse.wardfs, called the way
mount(8) calls helpers (SOURCE TARGET [-sfnv] [-o OPTIONS]), with fstab-only options.
Runs the build tree's binary through a symlink; test_package covers the installed one."""

import os
import re
import shutil
import tempfile
import unittest

from pkg_common import BIN, assert_round_trip, cleanup_volume, h, init_volume


class MountHelperTest(h.WardfsTestCase):
    @classmethod
    def setUpClass(cls):
        cls.bindir = tempfile.mkdtemp(prefix="wardfs-helper-")
        cls.helper = os.path.join(cls.bindir, "mount.fuse.wardfs")
        os.symlink(os.path.realpath(BIN), cls.helper)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.bindir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.vol = init_volume()
        self.addCleanup(cleanup_volume, self.vol)

    def helper_run(self, options, *flags):
        args = [self.helper, self.vol["cipher"], self.vol["plain"], *flags]
        if options is not None:
            args += ["-o", options]
        return h.run(args, via_files=True)

    def test_mounts_with_fstab_options(self):
        p = self.helper_run("rw,keyfile=%s,nofail,_netdev,noauto,x-systemd.automount,comment=x" % self.vol["key"],
                            "-n", "-v")
        self.assertEqual(p.returncode, 0, h.describe(p))
        entry = h.mount_entry(self.vol["plain"])
        self.assertEqual(entry["fstype"], "fuse.wardfs")
        self.assertEqual(entry["source"], self.vol["cipher"])
        assert_round_trip(self, self.vol)
        p = h.run(["umount", self.vol["plain"]])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertTrue(h.wait_for(lambda: not h.wardfs_pids(self.vol["root"]), timeout=10))

    def test_read_only(self):
        p = self.helper_run("ro,keyfile=" + self.vol["key"])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertIn("ro", h.mount_entry(self.vol["plain"])["options"].split(","))
        with self.assertRaises(OSError):
            open(os.path.join(self.vol["plain"], "x"), "wb").close()

    def test_fake_mode_mounts_nothing(self):
        p = self.helper_run("keyfile=" + self.vol["key"], "-f")
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertFalse(h.is_fuse_mounted(self.vol["plain"]))

    def test_unknown_option_is_named(self):
        p = self.helper_run("keyfile=%s,frobnicate" % self.vol["key"])
        self.assertEqual(p.returncode, 1, h.describe(p))
        self.assertIn("frobnicate", p.stderr)
        self.assertFalse(h.is_fuse_mounted(self.vol["plain"]))

    def test_missing_arguments(self):
        p = h.run([self.helper, self.vol["cipher"]])
        self.assertEqual(p.returncode, 1, h.describe(p))
        self.assertIn("usage", p.stderr)

    def test_keystore_option_must_match(self):
        p = self.helper_run("keyfile=%s,keystore=passphrase" % self.vol["key"])
        self.assertEqual(p.returncode, 1, h.describe(p))
        self.assertIn("keystore", p.stderr)
        self.assertFalse(h.is_fuse_mounted(self.vol["plain"]))
        p = self.helper_run("keystore=keyfile:" + self.vol["key"])
        self.assertEqual(p.returncode, 0, h.describe(p))
        assert_round_trip(self, self.vol)

    def test_audit_level_is_passed_on(self):
        """audit=LEVEL becomes `wardfs mount --audit-level LEVEL`. Where the CLI has that
        flag the mount must succeed; where it does not, the CLI must reject exactly it."""
        p = self.helper_run("keyfile=%s,audit=keys" % self.vol["key"])
        has_flag = re.search(r"^  --audit-level", h.run([BIN, "mount", "--help"]).stdout, re.M) is not None
        if has_flag:
            self.assertEqual(p.returncode, 0, h.describe(p))
            self.assertTrue(h.is_fuse_mounted(self.vol["plain"]))
        else:
            self.assertEqual(p.returncode, 1, h.describe(p))
            self.assertIn("--audit-level", p.stderr)


if __name__ == "__main__":
    h.main()
