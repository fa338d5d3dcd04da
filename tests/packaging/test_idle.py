"""`wardfs mount --idle DURATION` (and -o idle=): the daemon unmounts itself after that
long with no FUSE requests and nothing open, and never while a file is open."""

import os
import time
import unittest

from pkg_common import BIN, assert_round_trip, cleanup_volume, h, init_volume, mounted


class IdleTest(h.WardfsTestCase):
    def setUp(self):
        super().setUp()
        self.vol = init_volume()
        self.addCleanup(cleanup_volume, self.vol)

    def mount(self, *extra):
        p = h.run([BIN, "mount", self.vol["cipher"], self.vol["plain"], "--keyfile", self.vol["key"],
                   "--log-file", os.path.join(self.vol["root"], "log"), *extra], via_files=True)
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertTrue(mounted(self.vol["plain"]))

    def log(self):
        with open(os.path.join(self.vol["root"], "log")) as f:
            return f.read()

    def assert_unmounts_within(self, seconds):
        gone = h.wait_for(lambda: not mounted(self.vol["plain"]), timeout=seconds)
        self.assertTrue(gone, "still mounted after %ss of idleness\n%s" % (seconds, self.log()))
        self.assertTrue(h.wait_for(lambda: not h.wardfs_pids(self.vol["root"]), timeout=10),
                        "the daemon did not exit after the idle unmount")

    def test_unused_mount_unmounts(self):
        self.mount("--idle", "2s")
        start = time.monotonic()  # before the last request, so at least 2 s must pass
        payload = assert_round_trip(self, self.vol)
        self.assert_unmounts_within(10)
        self.assertGreaterEqual(time.monotonic() - start, 2.0, "unmounted before 2 s of idleness")
        self.assertIn("unmounted " + self.vol["plain"], self.log())
        # Nothing was lost: remount without --idle and read the data back.
        self.mount()
        with open(os.path.join(self.vol["plain"], "data.bin"), "rb") as f:
            self.assertEqual(f.read(), payload)

    def test_open_file_keeps_it_mounted(self):
        self.mount("-o", "idle=2s")
        assert_round_trip(self, self.vol)
        fd = os.open(os.path.join(self.vol["plain"], "data.bin"), os.O_RDONLY)
        try:
            time.sleep(6)  # three idle periods without a single request
            self.assertTrue(mounted(self.vol["plain"]), "unmounted with a file open\n" + self.log())
            self.assertEqual(os.pread(fd, 4, 0), b"ward")
        finally:
            os.close(fd)
        self.assert_unmounts_within(8)

    def test_requests_keep_it_mounted(self):
        self.mount("--idle", "2s")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.listdir(self.vol["plain"])  # readdir always reaches the daemon
            time.sleep(0.3)
        self.assertTrue(mounted(self.vol["plain"]), "unmounted while in use\n" + self.log())
        self.assert_unmounts_within(8)

    def test_bad_duration_is_a_usage_error(self):
        for args in (["--idle", "soon"], ["-o", "idle=5x"], ["-o", "idle="]):
            p = h.run([BIN, "mount", self.vol["cipher"], self.vol["plain"], "--keyfile", self.vol["key"], *args])
            self.assertEqual(p.returncode, 1, h.describe(p))
            self.assertIn("idle", p.stderr)
            self.assertFalse(mounted(self.vol["plain"]))


if __name__ == "__main__":
    h.main()
