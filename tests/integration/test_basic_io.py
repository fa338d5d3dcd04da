"""Data path through a real mount: write/read, append, partial-chunk overwrites, truncate,
sparse files, a random-operation model, mmap, fallocate, copy_file_range.
Runs over every cipher x chunk size. Every check compares the plaintext view (also after
evicting the page cache) and the backing files' sizes as the format predicts."""

import errno
import mmap
import os
import random
import time

from wardfs_harness import (SEED, describe, run, HEADER_FLAG_HAS_HOLES, backing_data_entries,
                            drop_cache, expected_backing_size, header_flags, main, parametrize,
                            pattern, read_file, read_uncached, write_file)


class BasicIO:
    def sizes(self):
        c = self.chunk
        return sorted({0, 1, 2, 15, 16, 17, 100, c - 1, c, c + 1, 2 * c - 1, 2 * c, 2 * c + 1,
                       3 * c + 5, 5 * c + c // 2, 4095, 4096, 4097, 65535, 65536, 65537})

    def check_file(self, path, want, what=None):
        what = what or path
        self.assertEqual(os.stat(path).st_size, len(want), "st_size of " + what)
        self.assertBytesEqual(read_file(path), want, what + " (cached)")
        self.assertBytesEqual(read_uncached(path), want, what + " (from the daemon)")

    # ------------------------------------------------------------ create/write/read
    def test_write_read_many_sizes(self):
        d, bd = self.fresh_dir()
        sizes = self.sizes()
        for n in sizes:
            write_file(os.path.join(d, "f%d" % n), pattern(n, n))
        self.assertEqual(sorted(os.listdir(d)), sorted("f%d" % n for n in sizes))
        for n in sizes:
            self.check_file(os.path.join(d, "f%d" % n), pattern(n, n))
        self.assertBackingSizes(bd, sizes)

    def test_empty_file(self):
        d, bd = self.fresh_dir()
        path = os.path.join(d, "empty")
        open(path, "wb").close()
        self.check_file(path, b"")
        bfile = self.only_backing_file(bd)
        self.assertEqual(os.stat(bfile).st_size, self.expected_size(0),
                         "an empty file holds a header and one sealed empty chunk")
        self.assertEqual(read_file(bfile)[:4], b"WDFS")

    def test_rewrite_with_o_trunc(self):
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        write_file(path, pattern(3 * self.chunk + 7, 1))
        write_file(path, b"short")
        self.check_file(path, b"short")
        self.assertBackingSizes(bd, [5])
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.close(fd)
        self.check_file(path, b"")
        self.assertBackingSizes(bd, [0])

    def test_read_past_eof(self):
        path = self.p("f")
        data = pattern(self.chunk + 10, 2)
        write_file(path, data)
        drop_cache(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            self.assertEqual(os.pread(fd, 100, len(data) + 1000), b"")
            self.assertEqual(os.pread(fd, 100, len(data)), b"")
            self.assertBytesEqual(os.pread(fd, 100, len(data) - 5), data[-5:])
            self.assertBytesEqual(os.pread(fd, 3 * self.chunk, 0), data)
        finally:
            os.close(fd)

    # ------------------------------------------------------------ append
    def test_append(self):
        d, bd = self.fresh_dir()
        path = os.path.join(d, "log")
        want = bytearray()
        rng = random.Random(SEED)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for i in range(40):
                piece = rng.randbytes(rng.choice([1, 7, 100, self.chunk - 1, self.chunk, self.chunk + 3]))
                # O_APPEND must ignore the file offset
                os.lseek(fd, 0, os.SEEK_SET)
                self.assertEqual(os.write(fd, piece), len(piece))
                want += piece
        finally:
            os.close(fd)
        self.check_file(path, bytes(want), "O_APPEND file (seed %d)" % SEED)
        # appends through new opens re-seal the old tail each time
        for i in range(20):
            piece = pattern(i * 37 + 1, i)
            with open(path, "ab") as f:
                f.write(piece)
            want += piece
            if i % 5 == 0:
                self.check_file(path, bytes(want), "reopened append %d" % i)
        self.check_file(path, bytes(want))
        self.assertBackingSizes(bd, [len(want)])

    # ------------------------------------------------------------ overwrite in the middle
    def test_overwrite_partial_chunks(self):
        c = self.chunk
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        model = bytearray(pattern(3 * c + 100, 3))
        write_file(path, bytes(model))
        writes = [(c - 1, 1), (c - 10, 20), (5, 2 * c + 3), (c, c), (0, 1), (3 * c + 99, 1),
                  (2 * c + 1, c - 2), (3 * c + 50, 200), (17, 3)]
        fd = os.open(path, os.O_RDWR)
        try:
            for i, (off, n) in enumerate(writes):
                data = pattern(n, 100 + i)
                self.assertEqual(os.pwrite(fd, data, off), n)
                end = off + n
                if end > len(model):
                    model.extend(b"\0" * (end - len(model)))
                model[off:end] = data
                self.assertBytesEqual(os.pread(fd, len(model) + 10, 0), bytes(model),
                                      "after pwrite(%d, %d)" % (off, n))
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                self.assertBytesEqual(os.pread(fd, len(model) + 10, 0), bytes(model),
                                      "after pwrite(%d, %d), uncached" % (off, n))
        finally:
            os.close(fd)
        self.check_file(path, bytes(model))
        self.assertBackingSizes(bd, [len(model)])

    def test_unaligned_writes_spanning_boundaries(self):
        c = self.chunk
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        model = bytearray()
        # build the file out of order from unaligned pieces that straddle chunk boundaries
        pieces = [(2 * c - 3, 7), (c - 5, c + 10), (0, 3), (3, c - 8), (4 * c - 1, 2), (2 * c + 4, 2 * c - 5)]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for i, (off, n) in enumerate(pieces):
                data = pattern(n, 200 + i)
                os.pwrite(fd, data, off)
                if off + n > len(model):
                    model.extend(b"\0" * (off + n - len(model)))
                model[off:off + n] = data
        finally:
            os.close(fd)
        self.assertEqual(len(model), 4 * c + 1)
        self.check_file(path, bytes(model))
        self.assertBackingSizes(bd, [len(model)])

    # ------------------------------------------------------------ truncate
    def test_truncate_down_and_up(self):
        c = self.chunk
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        orig = pattern(4 * c + 33, 4)
        write_file(path, orig)
        model = bytearray(orig)
        steps = [3 * c + 5, c + 1, c, c - 1, 0, c - 1, c, c + 1, 3 * c + 5, 2 * c, 5 * c + 1, 7]
        for i, size in enumerate(steps):
            if i % 2:
                os.truncate(path, size)
            else:
                fd = os.open(path, os.O_RDWR)
                os.ftruncate(fd, size)
                os.close(fd)
            if size < len(model):
                del model[size:]
            else:
                model.extend(b"\0" * (size - len(model)))
            self.check_file(path, bytes(model), "after truncate to %d" % size)
            self.assertBackingSizes(bd, [size])
        # write after a truncate up lands in the right place and keeps the zeros
        with open(path, "r+b") as f:
            f.seek(3)
            f.write(b"XYZ")
        model[3:6] = b"XYZ"
        self.check_file(path, bytes(model))

    def test_truncate_up_reads_zeros_not_old_data(self):
        c = self.chunk
        path = self.p("f")
        write_file(path, b"\xff" * (2 * c + 10))
        os.truncate(path, c // 2)
        os.truncate(path, 3 * c)
        want = b"\xff" * (c // 2) + b"\0" * (3 * c - c // 2)
        self.check_file(path, want, "stale bytes must not come back after truncate down+up")

    # ------------------------------------------------------------ sparse files
    def test_sparse_file(self):
        c = self.chunk
        d, bd = self.fresh_dir()
        path = os.path.join(d, "sparse")
        gap_chunks = max(256, (8 << 20) // c)
        off = gap_chunks * c + 123
        with open(path, "wb") as f:
            f.write(b"head")
            f.seek(off)
            f.write(b"MARK-tail")
        size = off + 9
        self.assertEqual(os.stat(path).st_size, size)
        data = read_uncached(path)
        self.assertEqual(len(data), size)
        self.assertEqual(data[:4], b"head")
        self.assertEqual(data[off:], b"MARK-tail")
        self.assertEqual(data[4:off].count(0), off - 4, "the gap must read as zeros")
        self.assertBackingSizes(bd, [size])
        bfile = os.path.join(bd, backing_data_entries(bd)[0])
        flags = header_flags(bfile)
        if self.HOLES == "never":
            self.assertFalse(flags & HEADER_FLAG_HAS_HOLES, "--holes never must not set the has-holes flag")
        else:
            self.assertTrue(flags & HEADER_FLAG_HAS_HOLES,
                            "a write past EOF must set the header's has-holes flag (flags=%#x)" % flags)
            st = os.stat(bfile)
            self.assertLess(st.st_blocks * 512, st.st_size // 2,
                            "holes should stay sparse in the backing file (blocks=%d size=%d)"
                            % (st.st_blocks, st.st_size))
        # fill a chunk in the middle of the hole
        mid = (gap_chunks // 2) * c - 2
        with open(path, "r+b") as f:
            f.seek(mid)
            f.write(b"middle")
        model = bytearray(data)
        model[mid:mid + 6] = b"middle"
        self.check_file(path, bytes(model))

    def test_seek_data_and_hole(self):
        """Whether or not the filesystem implements lseek, SEEK_DATA/SEEK_HOLE must never
        report plaintext data as a hole (cp --sparse and tar -S rely on them)."""
        c = self.chunk
        path = self.p("sparse")
        off = 300 * c + 11
        with open(path, "wb") as f:
            f.write(b"head")
            f.seek(off)
            f.write(b"tail-data")
        size = off + 9
        fd = os.open(path, os.O_RDONLY)
        try:
            self.assertEqual(os.lseek(fd, 0, os.SEEK_DATA), 0)
            hole = os.lseek(fd, 0, os.SEEK_HOLE)
            self.assertGreaterEqual(hole, 4, "SEEK_HOLE inside the leading data")
            self.assertLessEqual(hole, size)
            data = os.lseek(fd, 5, os.SEEK_DATA)
            self.assertLessEqual(data, off, "SEEK_DATA skipped over the trailing data")
            self.assertErrno(6, os.lseek, fd, size, os.SEEK_DATA)  # ENXIO at EOF
        finally:
            os.close(fd)
        out = os.path.join(self.vol.root, "sparse-copy")
        r = run(["cp", "--sparse=always", path, out])
        self.assertEqual(r.returncode, 0, describe(r))
        self.assertBytesEqual(read_file(out), read_uncached(path), "cp --sparse=always copy")
        os.unlink(out)

    def test_st_blocks_covers_data(self):
        path = self.p("f")
        write_file(path, pattern(1 << 20, 3))
        st = os.stat(path)
        self.assertGreaterEqual(st.st_blocks * 512, 1 << 20,
                                "st_blocks of a non-sparse file must cover its size (du, cp --sparse)")
        self.assertGreater(st.st_blksize, 0)

    def test_sequential_file_has_no_hole_flag(self):
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        write_file(path, pattern(3 * self.chunk + 1, 5))
        with open(path, "ab") as f:
            f.write(b"x" * 10)
        bfile = self.only_backing_file(bd)
        self.assertFalse(header_flags(bfile) & HEADER_FLAG_HAS_HOLES,
                         "a file written without gaps must not get the has-holes flag")

    # ------------------------------------------------------------ random model
    def test_random_operations_model(self):
        c = self.chunk
        seed = SEED
        rng = random.Random(seed)
        d, bd = self.fresh_dir()
        path = os.path.join(d, "model")
        model = bytearray()
        limit = 4 * c + 17
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        log = []
        try:
            for step in range(300):
                op = rng.random()
                if op < 0.5:
                    off = rng.randrange(limit)
                    n = rng.choice([1, 2, rng.randrange(1, c), c, rng.randrange(1, 2 * c + 2)])
                    data = rng.randbytes(n)
                    log.append("pwrite(off=%d, n=%d)" % (off, n))
                    self.assertEqual(os.pwrite(fd, data, off), n)
                    if off + n > len(model):
                        model.extend(b"\0" * (off + n - len(model)))
                    model[off:off + n] = data
                elif op < 0.65:
                    size = rng.choice([0, c - 1, c, c + 1, rng.randrange(limit + c)])
                    log.append("ftruncate(%d)" % size)
                    os.ftruncate(fd, size)
                    if size < len(model):
                        del model[size:]
                    else:
                        model.extend(b"\0" * (size - len(model)))
                elif op < 0.95:
                    off = rng.randrange(limit + 10)
                    n = rng.randrange(1, 2 * c + 10)
                    log.append("pread(off=%d, n=%d)" % (off, n))
                    got = os.pread(fd, n, off)
                    self.assertBytesEqual(got, bytes(model[off:off + n]),
                                          "seed %d step %d %s; last ops: %s"
                                          % (seed, step, log[-1], log[-8:]))
                else:
                    log.append("fsync+evict")
                    os.fsync(fd)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                self.assertEqual(os.fstat(fd).st_size, len(model),
                                 "st_size, seed %d step %d after %s" % (seed, step, log[-1]))
        finally:
            os.close(fd)
        self.assertBytesEqual(read_uncached(path), bytes(model), "final content, seed %d" % seed)
        self.assertBackingSizes(bd, [len(model)])

    def test_random_model_two_descriptors_and_path_truncate(self):
        """Like the model above, but writes go through two descriptors (one O_APPEND) and
        truncates through the path, so any per-descriptor tail cache must stay coherent."""
        c = self.chunk
        seed = SEED + 1
        rng = random.Random(seed)
        path = self.p("model2")
        model = bytearray()
        fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o600), os.open(path, os.O_RDWR),
               os.open(path, os.O_WRONLY | os.O_APPEND)]
        log = []
        try:
            for step in range(300):
                op = rng.random()
                if op < 0.35:
                    fd = rng.choice(fds[:2])
                    off = rng.randrange(3 * c + 10)
                    data = rng.randbytes(rng.choice([1, 3, c - 1, c + 1, rng.randrange(1, 2 * c)]))
                    log.append("pwrite(fd%d, off=%d, n=%d)" % (fds.index(fd), off, len(data)))
                    os.pwrite(fd, data, off)
                    if off + len(data) > len(model):
                        model.extend(b"\0" * (off + len(data) - len(model)))
                    model[off:off + len(data)] = data
                elif op < 0.55:
                    data = rng.randbytes(rng.choice([1, 5, c // 2, c + 7]))
                    log.append("append(n=%d)" % len(data))
                    os.write(fds[2], data)
                    model += data
                elif op < 0.7:
                    size = rng.choice([0, c - 1, c, c + 1, rng.randrange(4 * c)])
                    log.append("truncate(path, %d)" % size)
                    os.truncate(path, size)
                    if size < len(model):
                        del model[size:]
                    else:
                        model.extend(b"\0" * (size - len(model)))
                else:
                    fd = rng.choice(fds[:2])
                    off = rng.randrange(4 * c)
                    n = rng.randrange(1, 2 * c)
                    log.append("pread(fd%d, off=%d, n=%d)" % (fds.index(fd), off, n))
                    self.assertBytesEqual(os.pread(fd, n, off), bytes(model[off:off + n]),
                                          "seed %d step %d; last ops: %s" % (seed, step, log[-8:]))
        finally:
            for fd in fds:
                os.close(fd)
        self.assertBytesEqual(read_uncached(path), bytes(model), "final, seed %d; last ops %s" % (seed, log[-8:]))
        self.assertBackingSizes(self.bd, [len(model)])

    def test_offsets_beyond_32_bits(self):
        path = self.p("far")
        marks = [(2**31 - 3, b"around-2GiB"), (2**32 - 5, b"around-4GiB"), (6 * 2**30 + 1, b"at-6GiB")]
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for off, data in marks:
                self.assertEqual(os.pwrite(fd, data, off), len(data))
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            for i, (off, data) in enumerate(marks):
                tail = b"" if i == len(marks) - 1 else b"\0\0"
                self.assertEqual(os.pread(fd, len(data) + 4, off - 2), b"\0\0" + data + tail, hex(off))
            self.assertEqual(os.pread(fd, 10, 2**32 + 100), b"\0" * 10)
        finally:
            os.close(fd)
        self.assertEqual(os.stat(path).st_size, marks[-1][0] + len(marks[-1][1]))
        self.assertBackingSizes(self.bd, [marks[-1][0] + len(marks[-1][1])])
        os.truncate(path, 2**32 - 1)
        self.assertEqual(os.stat(path).st_size, 2**32 - 1)
        fd = os.open(path, os.O_RDONLY)
        try:
            self.assertEqual(os.pread(fd, 100, 2**32 - 6), b"\0arou")
        finally:
            os.close(fd)
        os.unlink(path)

    def test_huge_sparse_truncate(self):
        if self.HOLES == "never":
            self.skipTest("holes=never volumes refuse huge truncates (tested separately)")
        path = self.p("huge")
        write_file(path, b"start")
        os.truncate(path, 1 << 40)
        self.assertEqual(os.stat(path).st_size, 1 << 40)
        fd = os.open(path, os.O_RDWR)
        try:
            self.assertEqual(os.pread(fd, 10, 0), b"start\0\0\0\0\0")
            self.assertEqual(os.pread(fd, 100, (1 << 40) - 50), b"\0" * 50)
            os.pwrite(fd, b"end", (1 << 40) - 3)
            self.assertEqual(os.pread(fd, 10, (1 << 40) - 5), b"\0\0end")
        finally:
            os.close(fd)
        bfile = self.only_backing_file(self.bd)
        self.assertLess(os.stat(bfile).st_blocks * 512, 1 << 24, "a 1 TiB hole must cost (almost) nothing")
        os.truncate(path, 3)
        self.assertEqual(read_uncached(path), b"sta")
        self.assertBackingSizes(self.bd, [3])

    # ------------------------------------------------------------ several descriptors
    def test_two_descriptors_see_each_other(self):
        c = self.chunk
        path = self.p("f")
        write_file(path, b"\0" * (2 * c))
        fa = os.open(path, os.O_RDWR)
        fb = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fa, b"A" * 10, c - 5)
            self.assertEqual(os.pread(fb, 10, c - 5), b"A" * 10)
            os.pwrite(fb, b"B" * 3, c - 1)
            self.assertEqual(os.pread(fa, 12, c - 6), b"\0" + b"A" * 4 + b"BBB" + b"A" * 3 + b"\0")
        finally:
            os.close(fa)
            os.close(fb)
        want = b"\0" * (c - 5) + b"AAAABBBAAA" + b"\0" * (c - 5)
        self.check_file(path, want)

    def test_unlinked_open_file_keeps_working(self):
        d, bd = self.fresh_dir()
        path = os.path.join(d, "tmpfile")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, pattern(self.chunk + 50, 6))
            os.unlink(path)
            self.assertFalse(os.path.exists(path))
            os.pwrite(fd, b"after-unlink", self.chunk - 3)
            want = bytearray(pattern(self.chunk + 50, 6))
            want[self.chunk - 3:self.chunk + 9] = b"after-unlink"
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            self.assertBytesEqual(os.pread(fd, 3 * self.chunk, 0), bytes(want))
        finally:
            os.close(fd)
        ok = lambda: os.listdir(d) == [] and backing_data_entries(bd) == []  # noqa: E731
        # The kernel sends RELEASE in the background after close() returns; a loaded machine
        # may take a while to get the daemon to it.
        deadline = time.monotonic() + 15
        while not ok() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(os.listdir(d), [])
        self.assertEqual(backing_data_entries(bd), [], "backing file must go once the last fd closes")

    # ------------------------------------------------------------ mmap
    def test_mmap_read_and_write(self):
        c = self.chunk
        path = self.p("mapped")
        size = 3 * c + 100
        orig = pattern(size, 7)
        write_file(path, orig)
        drop_cache(path)
        model = bytearray(orig)
        with open(path, "r+b") as f:
            with mmap.mmap(f.fileno(), 0) as m:
                self.assertBytesEqual(m[:], orig, "mmap read")
                for off, data in ((c - 2, b"mmap-across-boundary"), (0, b"START"),
                                  (size - 4, b"END!"), (2 * c + 7, pattern(c, 8))):
                    m[off:off + len(data)] = data
                    model[off:off + len(data)] = data
                m.flush()
        self.check_file(path, bytes(model), "after mmap writes")
        self.assertBackingSizes(self.bd, [size])

    def test_mmap_write_without_msync_then_close(self):
        path = self.p("mapped2")
        write_file(path, b"\0" * (2 * self.chunk))
        with open(path, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0)
            m[self.chunk - 1:self.chunk + 1] = b"ZZ"
            m.close()
        want = b"\0" * (self.chunk - 1) + b"ZZ" + b"\0" * (self.chunk - 1)
        self.check_file(path, want, "mmap write flushed at close/munmap")

    # ------------------------------------------------------------ fallocate / copy
    def test_posix_fallocate_extends_with_zeros(self):
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        write_file(path, b"abc")
        fd = os.open(path, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, 2 * self.chunk + 1)
        finally:
            os.close(fd)
        self.check_file(path, b"abc" + b"\0" * (2 * self.chunk - 2))
        self.assertBackingSizes(bd, [2 * self.chunk + 1])

    def test_copy_file_range_and_sendfile(self):
        src, dst, dst2 = self.p("src"), self.p("dst"), self.p("dst2")
        data = pattern(3 * self.chunk + 77, 9)
        write_file(src, data)
        fi = os.open(src, os.O_RDONLY)
        fo = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            done = 0
            while done < len(data):
                n = os.copy_file_range(fi, fo, len(data) - done, done, done)
                self.assertGreater(n, 0)
                done += n
        finally:
            os.close(fi)
            os.close(fo)
        self.check_file(dst, data, "copy_file_range copy")
        fi = os.open(src, os.O_RDONLY)
        fo = os.open(dst2, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            off = 0
            while off < len(data):
                n = os.sendfile(fo, fi, off, len(data) - off)
                self.assertGreater(n, 0)
                off += n
        finally:
            os.close(fi)
            os.close(fo)
        self.check_file(dst2, data, "sendfile copy")


parametrize(BasicIO, globals(), "full")


class HolesNever:
    def test_gap_is_filled_with_sealed_zero_chunks(self):
        c = self.chunk
        d, bd = self.fresh_dir()
        path = os.path.join(d, "f")
        off = 64 * c + 3
        with open(path, "wb") as f:
            f.write(b"a")
            f.seek(off)
            f.write(b"b")
        data = read_uncached(path)
        self.assertEqual(data, b"a" + b"\0" * (off - 1) + b"b")
        bfile = self.only_backing_file(bd)
        st = os.stat(bfile)
        self.assertEqual(st.st_size, expected_backing_size(off + 1, c, self.CIPHER))
        self.assertFalse(header_flags(bfile) & HEADER_FLAG_HAS_HOLES)
        self.assertGreaterEqual(st.st_blocks * 512, st.st_size - 2 * c,
                                "--holes never must write real sealed zero chunks, not holes")

    def test_huge_truncate_up_fails_fast(self):
        path = self.p("f")
        write_file(path, b"keep me")
        t0 = time.monotonic()
        self.assertErrno((errno.EFBIG, errno.ENOSPC), os.truncate, path, 1 << 44)
        self.assertLess(time.monotonic() - t0, 10, "must fail at once, not fill the disk first")
        self.assertEqual(read_uncached(path), b"keep me")
        self.assertEqual(os.stat(path).st_size, 7)

    test_sparse_file = BasicIO.test_sparse_file
    test_truncate_down_and_up = BasicIO.test_truncate_down_and_up
    check_file = BasicIO.check_file


parametrize(HolesNever, globals(), "one", holes="never")

if __name__ == "__main__":
    main()
