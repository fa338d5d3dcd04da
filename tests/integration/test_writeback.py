#!/usr/bin/python3
"""The opt-in kernel writeback cache (-o writeback_cache=1), through a real mount.

With it the kernel owns file sizes and O_APPEND offsets and sends dirty pages in batches,
possibly through another open handle than the one written to. Each test compares the
plaintext with the same operations done on a plain reference file, and checks that the
backing files hold ciphertext of the expected size."""
import json
import mmap
import os
import tempfile

from wardfs_harness import (BIN, MountedTestCase, main, pattern, read_uncached, run)


class WritebackCache(MountedTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vol.remount("writeback_cache=1")

    def setUp(self):
        super().setUp()
        self.ref_dir = tempfile.mkdtemp(prefix="wardfs-wb-ref-")

    def tearDown(self):
        for name in os.listdir(self.ref_dir):
            os.unlink(os.path.join(self.ref_dir, name))
        os.rmdir(self.ref_dir)
        super().tearDown()

    def both(self, name):
        return self.p(name), os.path.join(self.ref_dir, name)

    def assertSameContent(self, name):
        ours, ref = self.both(name)
        with open(ref, "rb") as f:
            want = f.read()
        self.assertBytesEqual(read_uncached(ours), want, name)
        backing = self.only_backing_file(self.bd)
        self.assertEqual(os.path.getsize(backing),
                         self.expected_size(len(want)))
        with open(backing, "rb") as f:
            raw = f.read()
        if len(want) >= 64:
            self.assertNotIn(want[:64], raw, "plaintext in the backing file")

    def test_status_reports_it(self):
        p = run([BIN, "status", self.vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIs(json.loads(p.stdout)["writeback_cache"], True)

    def test_append_uses_the_kernels_offsets(self):
        # The kernel resolves O_APPEND offsets and writes dirty pages back through whichever
        # writable handle it holds, here an O_APPEND one, also for pages in the middle of
        # the file: the daemon must write them where the kernel says, not at its own end.
        for path in self.both("log"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            for i in range(12):
                os.write(fd, pattern(1000 + 37 * i, i))
                if i % 4 == 3:
                    with mmap.mmap(fd, 4096) as m:
                        m[10 * i:10 * i + 300] = b"X" * 300
                        m.flush()
                    os.fsync(fd)
            os.close(fd)
        self.assertSameContent("log")

    def test_partial_overwrites_through_a_write_only_handle(self):
        # Unaligned writes make the kernel read the page first, through a write-only open.
        for path in self.both("f"):
            with open(path, "wb") as f:
                f.write(pattern(3 * self.CHUNK + 123, 1))
            fd = os.open(path, os.O_WRONLY)
            for off in (1, self.CHUNK - 5, 2 * self.CHUNK + 77, 5 * self.CHUNK):
                os.pwrite(fd, pattern(333, off), off)
            os.close(fd)
        self.assertSameContent("f")

    def test_truncate_and_mmap_while_open(self):
        for path in self.both("m"):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            os.write(fd, pattern(4 * self.CHUNK, 2))
            os.ftruncate(fd, 2 * self.CHUNK + 10)
            os.ftruncate(fd, 3 * self.CHUNK)
            with mmap.mmap(fd, 3 * self.CHUNK) as m:
                m[100:200] = b"m" * 100
                m[-50:] = b"e" * 50
                m.flush()
            os.pwrite(fd, b"tail", 3 * self.CHUNK)
            os.close(fd)
        self.assertSameContent("m")

    def test_times_set_after_writing_stick(self):
        # tar and rsync set mtime after writing; pages written back later must not move it.
        path = self.p("t")
        with open(path, "wb") as f:
            f.write(pattern(100000, 3))
            f.flush()
            os.utime(f.fileno(), ns=(1_000_000_000, 2_000_000_000))
        self.vol.remount("writeback_cache=1")
        self.assertEqual(os.stat(path).st_mtime_ns, 2_000_000_000)
        self.assertBytesEqual(read_uncached(path), pattern(100000, 3), "after remount")


if __name__ == "__main__":
    main()
