#!/usr/bin/python3
"""The FUSE transport (daemon/transport.h): FUSE over io_uring when the kernel allows it,
/dev/fuse otherwise, and `wardfs status` saying which.

The kernel offers io_uring to new mounts only while the fuse module's enable_uring
parameter is Y. These tests set it as each needs and put back the value they found (the
daemon itself changes it only for -o io_uring=force). Mounts of other tests that start
meanwhile are unaffected: the kernel offers io_uring, but only a daemon that asks uses it."""
import json
import os
import unittest

from wardfs_harness import (BIN, WardfsTestCase, backing_data_entries, expected_backing_size,
                            main, pattern, read_uncached, run)

PARAM = "/sys/module/fuse/parameters/enable_uring"


def read_param():
    with open(PARAM) as f:
        return f.read().strip()


def write_param(value):
    with open(PARAM, "w") as f:
        f.write(value)


@unittest.skipUnless(os.path.exists(PARAM), "kernel without CONFIG_FUSE_IO_URING")
class Transport(WardfsTestCase):
    def setUp(self):
        super().setUp()
        original = read_param()
        self.addCleanup(write_param, "1" if original == "Y" else "0")

    def status(self, vol):
        p = run([BIN, "status", vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        text = run([BIN, "status", vol.plain], timeout=30)
        self.assertEqual(text.returncode, 0, text.stderr)
        return json.loads(p.stdout), text.stdout

    def exercise(self, vol):
        """Writes files through the mount and reads them back; their backing files hold
        ciphertext of exactly the size the format predicts, with no plaintext in it."""
        data = {"small": pattern(100, 1), "chunks": pattern(3 * 4096 + 17, 2),
                "big": pattern(1 << 20, 3)}
        os.mkdir(vol.p("d"))
        bdir = os.path.join(vol.cipher_dir, backing_data_entries(vol.cipher_dir)[0])
        for name, want in data.items():
            with open(vol.p("d", name), "wb") as f:
                f.write(want)
        for name, want in data.items():
            self.assertBytesEqual(read_uncached(vol.p("d", name)), want, name)
        backing = [os.path.join(bdir, n) for n in backing_data_entries(bdir)]
        self.assertEqual(
            sorted(os.path.getsize(p) for p in backing),
            sorted(expected_backing_size(len(w), vol.chunk, vol.cipher) for w in data.values()))
        for path in backing:
            with open(path, "rb") as f:
                raw = f.read()
            for want in data.values():
                self.assertNotIn(want[:64], raw, "plaintext in " + path)

    def test_force_turns_io_uring_on_and_serves_over_it(self):
        write_param("0")
        vol = self.new_volume()
        vol.init()
        vol.mount("io_uring=force")
        self.assertEqual(read_param(), "Y", "io_uring=force sets enable_uring")
        self.exercise(vol)
        status, text = self.status(vol)
        self.assertEqual(status["transport"], "io_uring")
        self.assertIn("transport io_uring", text)

    def test_auto_falls_back_to_dev_fuse_silently(self):
        write_param("0")
        vol = self.new_volume()
        vol.init()
        vol.mount()  # io_uring=auto
        self.assertEqual(read_param(), "N", "auto never changes the kernel setting")
        self.exercise(vol)
        status, text = self.status(vol)
        self.assertEqual(status["transport"], "/dev/fuse")
        self.assertIn("transport /dev/fuse", text)
        self.assertNotIn("io_uring", vol.log_text())

    def test_auto_uses_io_uring_when_the_admin_enabled_it(self):
        write_param("1")
        vol = self.new_volume()
        vol.init()
        vol.mount()
        self.exercise(vol)
        self.assertEqual(self.status(vol)[0]["transport"], "io_uring")

    def test_off_keeps_dev_fuse(self):
        write_param("1")
        vol = self.new_volume()
        vol.init()
        vol.mount("io_uring=off")
        self.exercise(vol)
        self.assertEqual(self.status(vol)[0]["transport"], "/dev/fuse")
        self.assertEqual(read_param(), "Y")


if __name__ == "__main__":
    main()
