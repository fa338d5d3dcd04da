"""Bigger workloads through a real mount: 10,000 files in one directory, a 40-deep tree,
a 64 MiB file written with dd (1 GiB with WARDFS_IT_LARGE=1), concurrent writers on one
file (no torn or lost chunks), and cp -a / tar / rsync round trips checked with diff -r
and a metadata snapshot."""

import os
import random
import shutil
import sqlite3
import threading
import time
import zipfile

from wardfs_harness import (LARGE, SEED, backing_data_entries, build_sample_tree,
                            drop_cache, drop_tree_cache, first_diff, main, parametrize, pattern,
                            read_file, read_uncached, run, describe, sha256_file, snapshot_diff,
                            tree_snapshot, write_file)


def timed(label, t0):
    print("  %s: %.2fs" % (label, time.monotonic() - t0), flush=True)


class Scale:
    # ------------------------------------------------------------ many files
    def test_ten_thousand_files(self):
        d, bd = self.fresh_dir()
        n = 10_000
        t0 = time.monotonic()
        for i in range(n):
            with open(os.path.join(d, "file-%05d" % i), "wb") as f:
                f.write(b"%d" % i)
        timed("create %d" % n, t0)
        t0 = time.monotonic()
        names = os.listdir(d)
        timed("list", t0)
        self.assertEqual(len(names), n)
        self.assertEqual(set(names), {"file-%05d" % i for i in range(n)})
        self.assertEqual(len(backing_data_entries(bd)), n)
        t0 = time.monotonic()
        for i in range(n):
            self.assertEqual(os.stat(os.path.join(d, "file-%05d" % i)).st_size, len(b"%d" % i))
        timed("stat", t0)
        for i in range(0, n, 97):
            self.assertEqual(read_uncached(os.path.join(d, "file-%05d" % i)), b"%d" % i)
        t0 = time.monotonic()
        for i in range(n):
            os.unlink(os.path.join(d, "file-%05d" % i))
        timed("unlink", t0)
        self.assertEqual(os.listdir(d), [])
        self.assertEqual(backing_data_entries(bd), [])

    def test_deep_tree(self):
        d, bd = self.fresh_dir()
        depth = 40
        parts = ["level%02d-%s" % (i, "x" * (i % 7)) for i in range(depth)]
        deep = os.path.join(d, *parts)
        os.makedirs(deep)
        write_file(os.path.join(deep, "bottom.txt"), b"at the bottom")
        for i in range(depth):
            write_file(os.path.join(d, *parts[:i], "f%d" % i), b"%d" % i, fsync=False)
        self.assertEqual(read_uncached(os.path.join(deep, "bottom.txt")), b"at the bottom")
        count = sum(len(dn) + len(fn) for _, dn, fn in os.walk(d))
        self.assertEqual(count, depth + depth + 1)
        # a chdir walk down with relative paths
        cwd = os.getcwd()
        try:
            os.chdir(d)
            for p in parts:
                os.chdir(p)
            self.assertEqual(read_file("bottom.txt"), b"at the bottom")
            os.chdir(os.path.join(*([".."] * depth)))
            self.assertEqual(os.path.samefile(".", d), True)
        finally:
            os.chdir(cwd)
        # renaming the top renames the whole tree
        os.rename(os.path.join(d, parts[0]), os.path.join(d, "moved"))
        self.assertEqual(read_uncached(os.path.join(d, "moved", *parts[1:], "bottom.txt")), b"at the bottom")
        # backing depth matches
        bdepth = max(root.count(os.sep) for root, _, _ in os.walk(bd)) - bd.count(os.sep)
        self.assertEqual(bdepth, depth)
        shutil.rmtree(os.path.join(d, "moved"))
        self.assertEqual(os.listdir(d), ["f0"])
        os.unlink(os.path.join(d, "f0"))
        self.assertEqual(backing_data_entries(bd), [])

    # ------------------------------------------------------------ large file
    def _large_file(self, mib):
        d, bd = self.fresh_dir()
        src = os.path.join(self.vol.root, "src-%d.bin" % mib)
        r = run(["dd", "if=/dev/urandom", "of=" + src, "bs=1M", "count=%d" % mib, "status=none"], timeout=600)
        self.assertEqual(r.returncode, 0, describe(r))
        dst = os.path.join(d, "big.bin")
        t0 = time.monotonic()
        r = run(["dd", "if=" + src, "of=" + dst, "bs=1M", "conv=fsync", "status=none"], timeout=900)
        self.assertEqual(r.returncode, 0, describe(r))
        timed("dd write %d MiB" % mib, t0)
        self.assertEqual(os.stat(dst).st_size, mib << 20)
        drop_cache(dst)
        t0 = time.monotonic()
        want, got = sha256_file(src), sha256_file(dst)
        timed("sha256 read", t0)
        self.assertEqual(got, want, "sha256 of the %d MiB file read back" % mib)
        self.assertBackingSizes(bd, [mib << 20])
        # random preads
        rng = random.Random(SEED)
        with open(src, "rb") as fs, open(dst, "rb") as fd:
            for _ in range(200):
                off = rng.randrange(mib << 20)
                n = rng.randrange(1, 3 * self.chunk)
                fs.seek(off)
                fd.seek(off)
                self.assertBytesEqual(fd.read(n), fs.read(n), "pread(%d, %d), seed %d" % (off, n, SEED))
        r = run(["dd", "if=" + dst, "of=/dev/null", "bs=4k", "status=none"], timeout=900)
        self.assertEqual(r.returncode, 0, describe(r))
        os.unlink(dst)
        os.unlink(src)
        self.assertEqual(backing_data_entries(bd), [])

    def test_large_file_64mib(self):
        self._large_file(64)

    def test_large_file_1gib(self):
        if not LARGE:
            self.skipTest("set WARDFS_IT_LARGE=1 for the 1 GiB file")
        self._large_file(1024)

    # ------------------------------------------------------------ concurrency
    def _disjoint(self, prefill):
        c = self.chunk
        path = self.p("disjoint-%s" % prefill)
        rec = 1000  # not a divisor of any chunk size: records straddle chunk boundaries
        nrec = max(240, 24 * c // rec)
        size = nrec * rec
        if prefill:
            write_file(path, b"\xee" * size)
        else:
            open(path, "wb").close()
        errors = []
        barrier = threading.Barrier(4)

        def writer(t):
            try:
                rng = random.Random(SEED + t)
                mine = [i for i in range(nrec) if i % 4 == t]
                rng.shuffle(mine)
                fd = os.open(path, os.O_WRONLY)
                try:
                    barrier.wait()
                    for i in mine:
                        os.pwrite(fd, pattern(rec, i), i * rec)
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append((t, e))

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        self.assertEqual(errors, [])
        want = b"".join(pattern(rec, i) for i in range(nrec))
        got = read_uncached(path)
        if got != want:
            bad = sorted({i * rec // c for i in range(nrec)
                          if got[i * rec:(i + 1) * rec] != want[i * rec:(i + 1) * rec]})
            self.fail("disjoint concurrent writes lost data (prefill=%s, seed %d): records differ in "
                      "chunks %r of %d" % (prefill, SEED, bad[:20], size // c + 1))
        self.assertEqual(os.stat(path).st_size, size)
        self.assertBackingSizes(self.bd, [os.stat(path).st_size], timeout=2)
        os.unlink(path)

    def test_concurrent_disjoint_writes_prefilled(self):
        self._disjoint(True)

    def test_concurrent_disjoint_writes_growing(self):
        self._disjoint(False)

    def test_concurrent_overlapping_writes_and_reader(self):
        c = self.chunk
        path = self.p("overlap")
        size = 8 * c + 123
        write_file(path, b"\0" * size)
        covered = [0] * size  # bitmask of threads that wrote each byte
        lock = threading.Lock()
        errors = []
        stop = threading.Event()
        barrier = threading.Barrier(5)

        def writer(t):
            try:
                rng = random.Random(SEED * 7 + t)
                fd = os.open(path, os.O_WRONLY)
                barrier.wait()
                try:
                    for _ in range(60):
                        off = rng.randrange(size - 1)
                        n = rng.randrange(1, min(3 * c, size - off) + 1)
                        with lock:
                            for k in range(off, off + n):
                                covered[k] |= 1 << t
                        os.pwrite(fd, bytes([t + 1]) * n, off)
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append(("writer", t, e))

        def reader():
            try:
                fd = os.open(path, os.O_RDONLY)
                barrier.wait()
                try:
                    while not stop.is_set():
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        data = os.pread(fd, size + 10, 0)
                        if len(data) != size:
                            errors.append(("reader", "short read %d of %d" % (len(data), size)))
                            return
                        if any(b > 4 for b in set(data)):
                            errors.append(("reader", "foreign bytes %r" % sorted(set(data))))
                            return
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append(("reader", e))

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        rt = threading.Thread(target=reader)
        for th in threads + [rt]:
            th.start()
        for th in threads:
            th.join(120)
        stop.set()
        rt.join(30)
        self.assertEqual(errors, [], "seed %d" % SEED)
        got = read_uncached(path)
        self.assertEqual(len(got), size)
        for k in range(size):
            v = got[k]
            if covered[k] == 0:
                self.assertEqual(v, 0, "byte %d was never written (seed %d)" % (k, SEED))
            else:
                self.assertTrue(v != 0 and covered[k] & (1 << (v - 1)),
                                "byte %d (chunk %d) is %d, which no covering write put there "
                                "(writers %s; seed %d)" % (k, k // c, v, bin(covered[k]), SEED))

    def test_concurrent_metadata(self):
        d, bd = self.fresh_dir()
        errors = []

        def worker(t):
            try:
                sub = os.path.join(d, "w%d" % t)
                os.mkdir(sub)
                for i in range(150):
                    p = os.path.join(d, "shared-%d-%d" % (t, i))
                    write_file(p, pattern(100 + i, t * 1000 + i), fsync=False)
                    if i % 3 == 0:
                        os.rename(p, os.path.join(sub, "moved-%d" % i))
                    elif i % 3 == 1:
                        os.unlink(p)
            except Exception as e:  # noqa: BLE001
                errors.append((t, e))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        self.assertEqual(errors, [])
        top = set(os.listdir(d))
        want_top = {"w%d" % t for t in range(4)} | {"shared-%d-%d" % (t, i) for t in range(4)
                                                     for i in range(150) if i % 3 == 2}
        self.assertEqual(top, want_top)
        for t in range(4):
            self.assertEqual(set(os.listdir(os.path.join(d, "w%d" % t))),
                             {"moved-%d" % i for i in range(0, 150, 3)})
            for i in range(0, 150, 3):
                self.assertEqual(read_file(os.path.join(d, "w%d" % t, "moved-%d" % i)),
                                 pattern(100 + i, t * 1000 + i))
        self.assertEqual(len(backing_data_entries(bd)), len(want_top))

    def test_concurrent_appenders(self):
        """4 threads append whole records with O_APPEND: every record lands intact, once."""
        path = self.p("log")
        open(path, "wb").close()
        errors = []
        per, rec = 200, 997

        def record(t, i):
            head = b"<%d:%04d>" % (t, i)
            return head + bytes([65 + t]) * (rec - len(head) - 1) + b"\n"

        def appender(t):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                try:
                    for i in range(per):
                        self.assertEqual(os.write(fd, record(t, i)), rec)
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append((t, e))

        threads = [threading.Thread(target=appender, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        self.assertEqual(errors, [])
        data = read_uncached(path)
        self.assertEqual(len(data), 4 * per * rec)
        got = [data[k:k + rec] for k in range(0, len(data), rec)]
        want = {record(t, i) for t in range(4) for i in range(per)}
        bad = [k for k, r in enumerate(got) if r not in want]
        self.assertEqual(bad[:10], [], "torn or interleaved O_APPEND records at indexes %r" % bad[:10])
        self.assertEqual(set(got), want)

    def test_reader_follows_appender(self):
        """A tail -f style reader never sees EIO or wrong bytes while a writer appends."""
        path = self.p("growing")
        stream = pattern(3 << 20, 77)
        open(path, "wb").close()
        errors = []
        done = threading.Event()

        def writer():
            try:
                rng = random.Random(SEED)
                with open(path, "ab", buffering=0) as f:
                    off = 0
                    while off < len(stream):
                        n = rng.choice([1, 100, 1000, self.chunk - 1, self.chunk + 1, 50000])
                        f.write(stream[off:off + n])
                        off += n
            except Exception as e:  # noqa: BLE001
                errors.append(("writer", e))
            finally:
                done.set()

        def reader():
            try:
                fd = os.open(path, os.O_RDONLY)
                pos = 0
                try:
                    while True:
                        finished = done.is_set()
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        b = os.pread(fd, 1 << 16, pos)
                        if b:
                            if b != stream[pos:pos + len(b)]:
                                errors.append(("reader", "wrong bytes at %d" % (pos + first_diff(b, stream[pos:pos + len(b)]))))
                                return
                            pos += len(b)
                        elif finished:
                            break
                finally:
                    os.close(fd)
                if pos != len(stream):
                    errors.append(("reader", "stopped at %d of %d" % (pos, len(stream))))
            except Exception as e:  # noqa: BLE001
                errors.append(("reader", e))

        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
        self.assertEqual(errors, [], "seed %d" % SEED)
        self.assertBytesEqual(read_uncached(path), stream)

    def test_readers_during_rewrites_and_truncates(self):
        """Readers racing with overwrites and truncates may see old or new bytes and any size,
        but never EIO: a half-done re-seal must not be visible."""
        c = self.chunk
        path = self.p("churn")
        write_file(path, b"\x11" * (4 * c))
        errors = []
        stop = threading.Event()

        def mutator():
            try:
                rng = random.Random(SEED + 5)
                fd = os.open(path, os.O_RDWR)
                try:
                    for _ in range(400):
                        if rng.random() < 0.3:
                            os.ftruncate(fd, rng.randrange(5 * c))
                        else:
                            os.pwrite(fd, bytes([rng.randrange(1, 255)]) * rng.randrange(1, 2 * c),
                                      rng.randrange(5 * c))
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append(("mutator", e))
            finally:
                stop.set()

        def reader(k):
            try:
                rng = random.Random(SEED + 10 + k)
                fd = os.open(path, os.O_RDONLY)
                try:
                    while not stop.is_set():
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        os.pread(fd, rng.randrange(1, 3 * c), rng.randrange(5 * c))
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001
                errors.append(("reader", k, e))

        threads = [threading.Thread(target=mutator)] + [threading.Thread(target=reader, args=(k,)) for k in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(300)
        self.assertEqual(errors, [], "seed %d" % SEED)
        data = read_uncached(path)
        self.assertEqual(len(data), os.stat(path).st_size)
        self.assertBackingSizes(self.bd, [len(data)])

    # ------------------------------------------------------------ real programs
    def test_sqlite_wal(self):
        db = self.p("data.sqlite")
        con = sqlite3.connect(db)
        try:
            self.assertEqual(con.execute("PRAGMA journal_mode=WAL").fetchone()[0], "wal")
            con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blob BLOB)")
            for batch in range(20):
                with con:
                    con.executemany("INSERT INTO t (name, blob) VALUES (?, ?)",
                                    [("row-%d-%d" % (batch, i), pattern(100 + i * 7, batch * 1000 + i))
                                     for i in range(250)])
            other = sqlite3.connect(db)
            try:
                self.assertEqual(other.execute("SELECT count(*) FROM t").fetchone()[0], 5000)
            finally:
                other.close()
            with con:
                con.execute("UPDATE t SET name = name || '-u' WHERE id % 3 = 0")
                con.execute("DELETE FROM t WHERE id % 10 = 0")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
        finally:
            con.close()
        drop_tree_cache(self.d)
        con = sqlite3.connect(db)
        try:
            self.assertEqual(con.execute("PRAGMA integrity_check").fetchone()[0], "ok")
            self.assertEqual(con.execute("SELECT count(*) FROM t").fetchone()[0], 4500)
            name, blob = con.execute("SELECT name, blob FROM t WHERE id = 4999").fetchone()
            self.assertEqual(name, "row-19-248")
            self.assertEqual(blob, pattern(100 + 248 * 7, 19 * 1000 + 248))
        finally:
            con.close()

    def test_zipfile(self):
        z = self.p("archive.zip")
        members = {"m%03d.bin" % i: pattern(i * 311, i) for i in range(60)}
        with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, data in members.items():
                zf.writestr(n, data)
        drop_cache(z)
        with zipfile.ZipFile(z) as zf:
            self.assertIsNone(zf.testzip())
            for n, data in members.items():
                self.assertEqual(zf.read(n), data)
        with zipfile.ZipFile(z, "a") as zf:
            zf.writestr("appended", b"later")
        with zipfile.ZipFile(z) as zf:
            self.assertEqual(zf.read("appended"), b"later")
            self.assertEqual(len(zf.namelist()), 61)

    # ------------------------------------------------------------ cp -a / tar / rsync
    def _src_tree(self):
        src = os.path.join(self.vol.root, "src-%s" % self._testMethodName)
        if os.path.exists(src):
            shutil.rmtree(src)
        return build_sample_tree(src, self.chunk)

    def assertTreesEqual(self, a, b, **kw):
        diff = snapshot_diff(tree_snapshot(a, **kw), tree_snapshot(b, **kw))
        self.assertEqual(diff, [], "trees %s and %s differ" % (a, b))

    def test_cp_a_and_tar_round_trip(self):
        src = self._src_tree()
        dst = self.p("copy")
        r = run(["cp", "-a", src, dst], timeout=300)
        self.assertEqual(r.returncode, 0, describe(r))
        r = run(["diff", "-r", "--no-dereference", "-x", "fifo", src, dst], timeout=300)
        self.assertEqual(r.returncode, 0, "diff -r after cp -a into the mount\n" + describe(r))
        drop_tree_cache(dst)
        self.assertTreesEqual(src, dst)
        # tar out of the mount
        out = os.path.join(self.vol.root, "tar-out")
        shutil.rmtree(out, ignore_errors=True)
        os.mkdir(out)
        r = run(["sh", "-c", "tar --xattrs --xattrs-include='user.*' -C \"$1\" -cf - . | "
                 "tar --xattrs --xattrs-include='user.*' -C \"$2\" -xpf -", "sh", dst, out], timeout=300)
        self.assertEqual(r.returncode, 0, describe(r))
        r = run(["diff", "-r", "--no-dereference", "-x", "fifo", src, out], timeout=300)
        self.assertEqual(r.returncode, 0, "diff -r after tar out of the mount\n" + describe(r))
        self.assertTreesEqual(src, out)
        # and tar into the mount
        into = self.p("untarred")
        os.mkdir(into)
        r = run(["sh", "-c", "tar --xattrs --xattrs-include='user.*' -C \"$1\" -cf - . | "
                 "tar --xattrs --xattrs-include='user.*' -C \"$2\" -xpf -", "sh", src, into], timeout=300)
        self.assertEqual(r.returncode, 0, describe(r))
        r = run(["diff", "-r", "--no-dereference", "-x", "fifo", src, into], timeout=300)
        self.assertEqual(r.returncode, 0, "diff -r after tar into the mount\n" + describe(r))
        self.assertTreesEqual(src, into)
        shutil.rmtree(out)

    def test_rsync_round_trip(self):
        src = self._src_tree()
        dst = self.p("rs")
        r = run(["rsync", "-aHX", src + "/", dst + "/"], timeout=300)
        self.assertEqual(r.returncode, 0, describe(r))
        self.assertTreesEqual(src, dst)
        r = run(["rsync", "-aHX", "--itemize-changes", src + "/", dst + "/"], timeout=300)
        self.assertEqual(r.returncode, 0, describe(r))
        self.assertEqual(r.stdout.strip(), "", "a second rsync must find nothing to change")
        r = run(["rsync", "-aHX", "--checksum", "--itemize-changes", src + "/", dst + "/"], timeout=300)
        self.assertEqual(r.stdout.strip(), "", "rsync --checksum: contents identical")


parametrize(Scale, globals(), "one")

if __name__ == "__main__":
    main()
