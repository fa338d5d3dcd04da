"""copy_file_range(2) inside one mount is served by the daemon (FUSE_COPY_FILE_RANGE), not
by the kernel's read/write fallback: the same calls on a plain directory and on the mount
must return the same counts and leave the same bytes, the daemon's copy counters must
show it did the copying, the backing files must not hold the plaintext, stale cached pages
of the destination must not be served, and a tampered source chunk must fail with EIO
without writing anything unauthentic into the destination."""

import errno
import json
import os
import shutil
import tempfile

from wardfs_harness import (BIN, MountedTestCase, main, parametrize, pattern, patch_file,
                            read_file, read_uncached, run, scan_backing, slot_offset, write_file)


def copy_range(src, dst, length, off_in, off_out):
    """One copy_file_range call between two paths (the same path: one fd each way)."""
    fd_in = os.open(src, os.O_RDONLY)
    try:
        fd_out = os.open(dst, os.O_WRONLY)
        try:
            return os.copy_file_range(fd_in, fd_out, length, off_in, off_out)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def copy_all(src, dst, length, off_in=0, off_out=0):
    """copy_file_range in a loop until `length` bytes or the source's end, as cp does."""
    done = 0
    while done < length:
        n = copy_range(src, dst, length - done, off_in + done, off_out + done)
        if n == 0:
            break
        done += n
    return done


def outcome(fn):
    try:
        return ("ok", fn())
    except OSError as e:
        return ("errno", errno.errorcode.get(e.errno, e.errno))


class CopyRange:
    MOUNT_OPTIONS = None  # -o for the mount, kept when a test remounts

    def setUp(self):
        super().setUp()
        self.plain_dir = tempfile.mkdtemp(prefix="wardfs-copy-ref-")
        self.addCleanup(shutil.rmtree, self.plain_dir, True)

    def status_json(self):
        p = run([BIN, "status", self.vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def counters(self):
        return self.status_json()["counters"]

    def pair(self, name, data):
        """The same file in the mount and in a plain directory."""
        ours, ref = self.p(name), os.path.join(self.plain_dir, name)
        write_file(ours, data)
        write_file(ref, data)
        return ours, ref

    def assertSame(self, ours, ref, what):
        self.assertEqual(os.stat(ours).st_size, os.stat(ref).st_size, "size after " + what)
        want = read_file(ref)
        # read_file first: the destination's pages were cached before the copy (keep_cache),
        # so this read sees stale bytes unless they were dropped.
        self.assertBytesEqual(read_file(ours), want, what + " (cached)")
        self.assertBytesEqual(read_uncached(ours), want, what + " (from the daemon)")

    def test_copies_like_a_plain_directory(self):
        c = self.chunk
        n = 9 * c + 321
        cases = [  # (what, source offset, destination offset, length)
            ("aligned whole chunks", c, 2 * c, 3 * c),
            ("unaligned around the chunk size", c - 1, 2 * c + 1, c + 2),
            ("within one chunk", 5, c - 5, 10),
            ("into the middle of the file", 7, 3 * c + 11, 2 * c),
            ("past the destination's end: a hole", 2 * c, 20 * c + 3, c + 9),
            ("from inside to past the end", 0, 8 * c, 3 * c),
            ("length past the source's end", 8 * c, 1, 10 * c),
            ("at the source's end", n, 0, 100),
            ("zero length", 0, 0, 0),
        ]
        before = self.counters()
        copied = 0
        requests = 0
        for i, (what, off_in, off_out, length) in enumerate(cases):
            src, src_ref = self.pair("src%d" % i, pattern(n, 10 + i))
            dst, dst_ref = self.pair("dst%d" % i, pattern(4 * c + 17, 40 + i))
            read_file(dst)  # cache the destination's pages in the kernel
            want = outcome(lambda: copy_range(src_ref, dst_ref, length, off_in, off_out))
            got = outcome(lambda: copy_range(src, dst, length, off_in, off_out))
            self.assertEqual(got, want, what)
            self.assertSame(dst, dst_ref, what)
            self.assertSame(src, src_ref, what + " (source unchanged)")
            if want[0] == "ok" and want[1] > 0:
                copied += want[1]
                requests += 1
        after = self.counters()
        # Had the kernel fallen back to READ and WRITE, the daemon would have copied nothing.
        self.assertEqual(after["bytes_copied"] - before["bytes_copied"], copied, after)
        self.assertGreaterEqual(after["copy_ranges"] - before["copy_ranges"], requests, after)

    def test_same_file_apart_ranges_and_overlap(self):
        c = self.chunk
        ours, ref = self.pair("same", pattern(6 * c + 5, 3))
        for off_in, off_out, length in [(0, 3 * c + 7, 2 * c), (4 * c, 10, c + 1),
                                        (c, 6 * c + 5, 2 * c), (0, c, 2 * c)]:
            what = "same file %d -> %d, %d bytes" % (off_in, off_out, length)
            want = outcome(lambda: copy_range(ref, ref, length, off_in, off_out))
            got = outcome(lambda: copy_range(ours, ours, length, off_in, off_out))
            self.assertEqual(got, want, what)
            self.assertSame(ours, ref, what)
        self.assertEqual(want, ("errno", "EINVAL"), "the last, overlapping copy")

    def test_large_copy_and_no_plaintext_in_backing(self):
        n = 20 * 1024 * 1024 + 7
        data = pattern(n, 77)
        src, dst = self.p("big"), self.p("big.copy")
        write_file(src, data)
        write_file(dst, b"")
        before = self.counters()
        self.assertEqual(copy_all(src, dst, n), n)
        after = self.counters()
        self.assertEqual(after["bytes_copied"] - before["bytes_copied"], n, after)
        self.assertBytesEqual(read_uncached(dst), data, "20 MiB copy")
        needles = [data[i:i + 48] for i in (0, 5 * 1024 * 1024 + 3, n - 48)]
        self.assertEqual(scan_backing(self.bd, needles), [], "plaintext in the backing dir")

    def test_unsynced_writes_are_copied_and_later_writes_kept(self):
        """Writes still in flight (with writeback_cache=1: dirty pages in the kernel) are
        what gets copied, and a write after the copy lands on the copied bytes."""
        c = self.chunk
        results = []
        for root in (self.d, self.plain_dir):
            src, dst = os.path.join(root, "u-src"), os.path.join(root, "u-dst")
            fs = os.open(src, os.O_RDWR | os.O_CREAT, 0o644)
            fd = os.open(dst, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.write(fs, pattern(5 * c + 3, 1))
                os.write(fd, pattern(2 * c, 2))
                os.pwrite(fs, b"dirty" * 100, c + 7)
                n = os.copy_file_range(fs, fd, 4 * c, 10, c + 1)
                os.pwrite(fd, b"after", 3 * c)
                results.append((n, os.pread(fd, 10 * c, 0)))
            finally:
                os.close(fs)
                os.close(fd)
        (n, got), (want_n, want) = results
        self.assertEqual(n, want_n)
        self.assertBytesEqual(got, want, "read through the same fd")
        self.assertBytesEqual(read_uncached(self.p("u-dst")), want, "from the daemon")

    def test_cp_copies_in_the_daemon(self):
        """coreutils 9 cp copies with copy_file_range (unless --reflink=never)."""
        n = 3 * 1024 * 1024 + 5
        data = pattern(n, 21)
        src, dst = self.p("cp-src"), self.p("cp-dst")
        write_file(src, data)
        before = self.counters()
        r = run(["cp", src, dst])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertBytesEqual(read_uncached(dst), data, "cp")
        version = run(["cp", "--version"]).stdout.split("\n")[0].split()[-1]
        if tuple(int(x) for x in version.split(".")[:2]) >= (9, 0):
            after = self.counters()
            self.assertEqual(after["bytes_copied"] - before["bytes_copied"], n,
                             "cp %s should copy with copy_file_range: %r" % (version, after))

    def test_tampered_source_is_eio_and_writes_nothing_unauthentic(self):
        c = self.chunk
        n = 2 * 1024 * 1024 + 3 * c
        data, old = pattern(n, 5), pattern(n, 6)
        src_dir, src_bdir = self.fresh_dir("src")
        src, dst = os.path.join(src_dir, "s"), self.p("d")
        write_file(src, data)
        write_file(dst, old)
        bad_chunk = (n // c) - 2  # in the last block the daemon copies
        bpath = self.only_backing_file(src_bdir)
        off = slot_offset(bad_chunk, c, self.CIPHER) + 40
        self.vol.unmount()  # no page cache may hide the change
        raw = read_file(bpath)
        patch_file(bpath, off, bytes([raw[off] ^ 0x10]))
        self.vol.mount(self.MOUNT_OPTIONS)

        done = 0
        with self.assertRaises(OSError) as cm:
            while True:
                got = copy_range(src, dst, n - done, done, done)
                self.assertGreater(got, 0, "the copy ended without reaching the tampered chunk")
                done += got
        self.assertEqual(cm.exception.errno, errno.EIO, repr(cm.exception))
        self.assertGreater(done, 0, "the blocks before the bad one are copied first")
        self.assertLessEqual(done, bad_chunk * c)
        # The destination holds the source's bytes before the bad block, its own after.
        self.assertBytesEqual(read_uncached(dst), data[:done] + old[done:], "after the EIO")
        counters = self.counters()  # this daemon's, since the remount
        self.assertGreaterEqual(counters["integrity_failures"], 1, counters)
        self.assertEqual(counters["bytes_copied"], done, "the daemon did the copying")


parametrize(CopyRange, globals(), "diag")


class CopyRangeWritebackCache(CopyRange, MountedTestCase):
    """The same with -o writeback_cache=1: the kernel writes dirty pages of both ranges
    back before it asks, and owns the destination's size afterwards."""

    MOUNT_OPTIONS = "writeback_cache=1"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vol.remount(cls.MOUNT_OPTIONS)

    def setUp(self):
        super().setUp()
        self.assertTrue(self.status_json()["writeback_cache"], "mounted with the writeback cache")

if __name__ == "__main__":
    main()
