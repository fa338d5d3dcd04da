"""fallocate PUNCH_HOLE and ZERO_RANGE through a real mount, against a plain directory:
the same calls on both must leave the same contents and sizes, and punching whole chunks
must free the backing file's blocks (docs/FORMAT.md §4.6.2). COLLAPSE_RANGE and
INSERT_RANGE stay EOPNOTSUPP."""

import ctypes
import errno
import os
import shutil
import tempfile

from wardfs_harness import (HEADER_FLAG_HAS_HOLES, drop_cache, header_flags, main, parametrize,
                            pattern, read_file, read_uncached, run, write_file)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_COLLAPSE_RANGE = 0x08
FALLOC_FL_ZERO_RANGE = 0x10
FALLOC_FL_INSERT_RANGE = 0x20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(path, mode, offset, length):
    fd = os.open(path, os.O_RDWR)
    try:
        if _libc.fallocate(fd, mode, offset, length) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "fallocate(%s, mode=%#x, %d, %d): %s"
                          % (path, mode, offset, length, os.strerror(err)))
    finally:
        os.close(fd)


def allocated(path):
    return os.stat(path).st_blocks * 512


class Punch:
    def setUp(self):
        super().setUp()
        self.plain_dir = tempfile.mkdtemp(prefix="wardfs-punch-ref-")
        self.addCleanup(shutil.rmtree, self.plain_dir, True)

    def pair(self, name, data):
        """The same file in the mount and in a plain directory."""
        ours, ref = self.p(name), os.path.join(self.plain_dir, name)
        write_file(ours, data)
        write_file(ref, data)
        return ours, ref

    def both(self, ours, ref, mode, offset, length):
        fallocate(ref, mode, offset, length)
        fallocate(ours, mode, offset, length)

    def assertSame(self, ours, ref, what):
        self.assertEqual(os.stat(ours).st_size, os.stat(ref).st_size, "size after " + what)
        want = read_file(ref)
        self.assertBytesEqual(read_file(ours), want, what + " (cached)")
        self.assertBytesEqual(read_uncached(ours), want, what + " (from the daemon)")

    def test_punch_and_zero_like_a_plain_directory(self):
        c = self.chunk
        ours, ref = self.pair("f", pattern(9 * c + 321, 4))
        ops = [
            (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, c + 17, 3 * c),   # whole chunks + edges
            (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20),          # inside one chunk
            (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8 * c + 5, 4 * c),  # across the tail
            (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 5 * c - 3, 2 * c),
            (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 9 * c, 5 * c),    # past the end
            (FALLOC_FL_ZERO_RANGE, 7 * c + 1, 6 * c),                      # grows the file
        ]
        for mode, offset, length in ops:
            what = "fallocate(mode=%#x, %d, %d)" % (mode, offset, length)
            self.both(ours, ref, mode, offset, length)
            self.assertSame(ours, ref, what)
        # a write into a punched chunk still works, and reads back through the holes
        for path in (ours, ref):
            fd = os.open(path, os.O_RDWR)
            try:
                os.pwrite(fd, b"refill", 2 * c + 100)
            finally:
                os.close(fd)
        self.assertSame(ours, ref, "a write into a punched chunk")

    def test_punching_whole_chunks_frees_backing_blocks(self):
        c = self.chunk
        n = 64 * c + 5
        ours, _ = self.pair("big", pattern(n, 8))
        drop_cache(ours)
        bpath = self.only_backing_file(self.bd)
        before = allocated(bpath)
        self.assertEqual(header_flags(bpath) & HEADER_FLAG_HAS_HOLES, 0)
        fallocate(ours, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, c, 60 * c)
        after = allocated(bpath)
        self.assertLessEqual(after + 50 * c, before,
                             "du of the backing file: %d bytes before, %d after" % (before, after))
        self.assertNotEqual(header_flags(bpath) & HEADER_FLAG_HAS_HOLES, 0,
                            "punched slots read as zeros only under has-holes")
        self.assertEqual(os.stat(ours).st_size, n)
        want = bytearray(pattern(n, 8))
        want[c:61 * c] = bytes(60 * c)
        self.assertBytesEqual(read_uncached(ours), bytes(want), "after the punch")
        self.assertBackingSizes(self.bd, [n])

    def test_punch_without_keep_size_and_collapse_insert_are_refused(self):
        c = self.chunk
        ours, _ = self.pair("f", pattern(4 * c, 2))
        for mode in (FALLOC_FL_PUNCH_HOLE, FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE):
            with self.assertRaises(OSError, msg="mode %#x" % mode) as cm:
                fallocate(ours, mode, 0, c)
            self.assertIn(cm.exception.errno, (errno.EOPNOTSUPP, errno.EINVAL), repr(cm.exception))
        self.assertBytesEqual(read_uncached(ours), pattern(4 * c, 2), "refused calls change nothing")

    def test_util_linux_fallocate_dig_holes(self):
        """`fallocate -d` punches the zero blocks of a file: here the chunks written as zeros."""
        c = self.chunk
        data = pattern(c, 1) + bytes(8 * c) + pattern(c + 9, 2)
        ours, ref = self.pair("dig", data)
        drop_cache(ours)
        before = allocated(self.only_backing_file(self.bd))
        for path in (ref, ours):
            r = run(["fallocate", "--dig-holes", path])
            self.assertEqual(r.returncode, 0, r.stderr)
        self.assertSame(ours, ref, "fallocate --dig-holes")
        self.assertLess(allocated(self.only_backing_file(self.bd)) + 4 * c, before)


class PunchNever:
    def test_punch_under_holes_never_reads_zeros_and_sets_no_flag(self):
        c = self.chunk
        n = 6 * c + 1
        path = self.p("f")
        write_file(path, pattern(n, 3))
        fallocate(path, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 7, 4 * c)
        want = bytearray(pattern(n, 3))
        want[7:4 * c + 7] = bytes(4 * c)
        self.assertBytesEqual(read_uncached(path), bytes(want), "after the punch")
        bpath = self.only_backing_file(self.bd)
        self.assertEqual(header_flags(bpath) & HEADER_FLAG_HAS_HOLES, 0)


parametrize(Punch, globals(), "diag")
parametrize(PunchNever, globals(), "one", holes="never")

if __name__ == "__main__":
    main()
