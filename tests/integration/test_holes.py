"""Zeroed-chunk detection in files that were created with a gap and then filled in: the way
numpy.memmap / numpy.lib.format.open_memmap make files (seek past the end or truncate up,
then write every page through mmap). Once every chunk has been written the has-holes flag
must be gone (docs/FORMAT.md §4.6), so a chunk slot zeroed in the backing file reads as EIO
and the daemon logs the file and the chunk. A file whose gap is only partly written keeps
the flag and still reads its holes as zeros.

The numpy case needs the Debian python3-numpy (scripts/install-deps); the others use only
the standard library."""

import errno
import mmap
import os
import re

from wardfs_harness import (HEADER_FLAG_HAS_HOLES, WardfsTestCase, backing_data_entries,
                            chunk_label, config_matrix, header_flags, main, patch_file, pattern,
                            read_file, short_cipher, slot_offset, slot_size)


class HoleCases:
    CIPHER = "aes-256-gcm"
    CHUNK = 4096

    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume(self.CIPHER, self.CHUNK)
        self.c = self.CHUNK

    def backing_of_only_file(self):
        names = backing_data_entries(self.vol.cipher_dir)
        self.assertEqual(len(names), 1, "one file in the volume root: %r" % names)
        return self.vol.b(names[0])

    def zero_slot(self, bpath, index):
        """Unmounts, zeroes chunk slot `index` of the backing file, mounts again."""
        self.vol.unmount()
        patch_file(bpath, slot_offset(index, self.c, self.CIPHER), b"\0" * slot_size(self.c, self.CIPHER))
        self.vol.mount()

    def assertZeroedChunkIsEIO(self, name, index):
        path = self.vol.p(name)
        fd = os.open(path, os.O_RDONLY)
        try:
            with self.assertRaises(OSError, msg="reading zeroed chunk %d of %s" % (index, name)) as cm:
                os.pread(fd, self.c, index * self.c)
            self.assertEqual(cm.exception.errno, errno.EIO, repr(cm.exception))
        finally:
            os.close(fd)
        line = re.compile(r"integrity failure in \S*%s at chunk %d:" % (re.escape(name), index))
        self.assertRegex(self.vol.log_text(), line, "the daemon must log the file and the chunk"
                         + self.vol.log_tail())

    def assertFlagCleared(self, name, bpath, how):
        fd = os.open(self.vol.p(name), os.O_RDONLY)
        try:
            os.fsync(fd)  # every page the kernel still holds reaches the daemon first
        finally:
            os.close(fd)
        self.assertEqual(header_flags(bpath) & HEADER_FLAG_HAS_HOLES, 0,
                         "%s, every chunk written: has-holes must be cleared" % how)

    # ------------------------------------------------------------ the cases
    def test_numpy_open_memmap_filled_then_zeroed(self):
        import numpy  # python3-numpy, from scripts/install-deps
        n = 9 * self.c + 123
        want = numpy.frombuffer(pattern(n, 1), dtype=numpy.uint8)
        arr = numpy.lib.format.open_memmap(self.vol.p("array.npy"), mode="w+",
                                           dtype=numpy.uint8, shape=(n,))
        arr[:] = want
        arr.flush()
        del arr
        bpath = self.backing_of_only_file()
        self.assertFlagCleared("array.npy", bpath, "open_memmap")
        self.assertTrue((numpy.load(self.vol.p("array.npy")) == want).all())

        self.zero_slot(bpath, 4)
        self.assertZeroedChunkIsEIO("array.npy", 4)
        # the chunks before it still read, and right
        header_len = os.stat(self.vol.p("array.npy")).st_size - n
        fd = os.open(self.vol.p("array.npy"), os.O_RDONLY)
        try:
            got = os.pread(fd, 4 * self.c, 0)
        finally:
            os.close(fd)
        self.assertBytesEqual(got[header_len:], want[:4 * self.c - header_len].tobytes(),
                              "the array before the zeroed chunk")

    def test_truncate_up_and_mmap_fill_then_zeroed(self):
        size = 6 * self.c + 77
        data = pattern(size, 2)
        fd = os.open(self.vol.p("mapped"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, size)
            with mmap.mmap(fd, size) as m:
                # back to front, as page writeback need not go in order
                for off in reversed(range(0, size, self.c)):
                    m[off:off + self.c] = data[off:off + self.c]
                m.flush()
        finally:
            os.close(fd)
        bpath = self.backing_of_only_file()
        self.assertFlagCleared("mapped", bpath, "ftruncate + mmap")
        self.assertBytesEqual(read_file(self.vol.p("mapped")), data, "the mapped file")

        self.zero_slot(bpath, 2)
        self.assertZeroedChunkIsEIO("mapped", 2)

    def test_partly_filled_gap_keeps_holes(self):
        size = 6 * self.c + 5
        fd = os.open(self.vol.p("sparse"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, size)
            os.pwrite(fd, pattern(self.c, 3), 3 * self.c)  # chunks 1, 2, 4 and 5 stay holes
            os.fsync(fd)
        finally:
            os.close(fd)
        bpath = self.backing_of_only_file()
        self.vol.remount()
        self.assertEqual(header_flags(bpath) & HEADER_FLAG_HAS_HOLES, HEADER_FLAG_HAS_HOLES,
                         "holes never written keep the flag")
        got = read_file(self.vol.p("sparse"))
        self.assertEqual(len(got), size)
        self.assertEqual(got[self.c:3 * self.c], b"\0" * (2 * self.c), "the holes read as zeros")
        self.assertBytesEqual(got[3 * self.c:4 * self.c], pattern(self.c, 3), "the written chunk")


for _cipher, _chunk in config_matrix("diag"):
    _name = "Holes_%s_%s" % (short_cipher(_cipher), chunk_label(_chunk))
    globals()[_name] = type(_name, (HoleCases, WardfsTestCase), {"CIPHER": _cipher, "CHUNK": _chunk})

if __name__ == "__main__":
    main()
