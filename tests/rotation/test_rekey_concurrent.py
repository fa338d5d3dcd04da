"""Online rekey while 4 threads rewrite random ranges of the same 3 files. Each thread owns
interleaved stripes of every file (stripes are not chunk-aligned, so two threads often
write into the same chunk at once), and keeps the reference copy of its stripes. After
the rekey and the writers finish, every file equals the reference, through the mount and
after a remount; the backing dir holds only the new generation (headers and chunks);
every entry was renamed (names are deterministic per generation)."""

import json
import os
import threading
import time

from rot_harness import (RotationTestCase, describe, log, main, read_file, read_uncached,
                         top_level_names, write_file)

NTHREADS = 4
STRIPE = 5000                     # bytes; thread k owns stripes s with s % NTHREADS == k
SIZES = [1 << 20, 777_777, 1_500_001]


class RekeyWhileRewriting(RotationTestCase):
    def test_rekey_with_concurrent_rewrites(self):
        vol = self.new_volume("xchacha20-poly1305", 4096)
        names = ["f%d.dat" % i for i in range(len(SIZES))]
        refs = []
        for name, size in zip(names, SIZES):
            data = bytearray(self.rng.randbytes(size))
            write_file(vol.p(name), data)
            refs.append(data)
        os.mkdir(vol.p("sub"))
        write_file(vol.p("sub", "nested.txt"), b"nested content\n" * 500)
        names_gen1 = top_level_names(vol)
        entries_gen1 = {os.path.basename(e) for e in vol.scan().entries}
        self.assertEqual(len(entries_gen1), len(names) + 2)

        stop = threading.Event()
        errors = []
        counts = [0] * NTHREADS
        rekey_done = threading.Event()
        writes_during_rekey = [0] * NTHREADS

        def worker(k):
            import random
            rng = random.Random(self.rng.random() + k)
            fds = [os.open(vol.p(n), os.O_RDWR) for n in names]
            try:
                while not stop.is_set():
                    fi = rng.randrange(len(names))
                    size = SIZES[fi]
                    nstripes = (size + STRIPE - 1) // STRIPE
                    mine = [s for s in range(k, nstripes, NTHREADS)]
                    s = rng.choice(mine)
                    lo, hi = s * STRIPE, min(size, (s + 1) * STRIPE)
                    off = rng.randrange(lo, hi)
                    length = rng.randrange(1, hi - off + 1)
                    data = rng.randbytes(length)
                    n = os.pwrite(fds[fi], data, off)
                    if n != length:
                        raise OSError("short pwrite %d of %d" % (n, length))
                    refs[fi][off:off + length] = data
                    counts[k] += 1
                    if counts[k] % 16 == 0:
                        os.fsync(fds[fi])
                    if not rekey_done.is_set():
                        writes_during_rekey[k] += 1
            except Exception as e:  # noqa: BLE001
                errors.append("thread %d: %r" % (k, e))
            finally:
                for fd in fds:
                    os.close(fd)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(NTHREADS)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            p = vol.wardfs("rotate", vol.plain, timeout=60)
            self.assertCmd(p, 0, vol)
            names_gen2_before_rekey = top_level_names(vol)
            time.sleep(0.3)
            t0 = time.monotonic()
            # ~3.5 MB of backing data at 2 MB/s: the rekey overlaps the writers for ~2 s.
            rk = vol.wardfs("rekey", vol.plain, "--rate", "2", "--json", timeout=240)
            rekey_secs = time.monotonic() - t0
            rekey_done.set()
            time.sleep(0.3)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertCmd(rk, 0, vol)
        self.assertEqual(errors, [], "writer errors" + vol.log_tail())
        log("\nrekey took %.2f s; writes: %r total, %r during rekey"
            % (rekey_secs, counts, writes_during_rekey))
        self.assertTrue(all(c > 0 for c in writes_during_rekey),
                        "every writer should have written while the rekey ran: %r" % writes_during_rekey)
        self.assertEqual(names_gen2_before_rekey, names_gen1, "rotate alone must not rename anything")

        lines = [json.loads(line) for line in rk.stdout.splitlines() if line.strip().startswith("{")]
        self.assertTrue(lines, "rekey --json printed no JSON lines\n" + describe(rk))
        self.assertFalse(lines[-1]["running"], lines[-1])
        self.assertEqual(lines[-1]["errors"], 0, lines[-1])
        self.assertGreaterEqual(lines[-1]["files_done"], 4, lines[-1])
        self.assertGreaterEqual(lines[-1]["names_done"], 5, lines[-1])

        st = vol.status()
        self.assertFalse(st["rekey"]["running"], st)
        self.assertEqual(st["rekey"]["errors"], 0, st)
        self.assertEqual(st["rekey"]["target_generation"], 2, st)
        self.assertEqual(st["counters"]["integrity_failures"], 0, st)

        # Contents through the mount (page cache dropped: the daemon decrypts again).
        for name, ref in zip(names, refs):
            self.assertBytesEqual(read_uncached(vol.p(name)), bytes(ref), name + " after rekey")
        self.assertEqual(read_uncached(vol.p("sub", "nested.txt")), b"nested content\n" * 500)

        # Backing: only generation 2, no layout problems, every top-level name changed.
        sc = self.assertOnlyGeneration(vol, 2, "after rekey")
        self.assertEqual(len(sc.files), len(names) + 1, sc.summary())
        names_gen2 = top_level_names(vol)
        self.assertEqual(len(names_gen2), len(names_gen1), (names_gen1, names_gen2))
        self.assertEqual(set(names_gen1) & set(names_gen2), set(),
                         "rekey should rename every entry to its generation-2 name")
        entries_gen2 = {os.path.basename(e) for e in sc.entries}
        self.assertEqual(len(entries_gen2), len(entries_gen1))
        self.assertEqual(entries_gen1 & entries_gen2, set(), "nested entries keep generation-1 names")

        vol.remount()
        for name, ref in zip(names, refs):
            self.assertBytesEqual(read_file(vol.p(name)), bytes(ref), name + " after remount")
        self.assertEqual(read_file(vol.p("sub", "nested.txt")), b"nested content\n" * 500)
        self.assertEqual(sorted(os.listdir(vol.plain)), sorted(names + ["sub"]))
        self.assertOnlyGeneration(vol, 2, "after remount")

    def test_rekey_with_concurrent_resizes(self):
        """Same, but the writers also extend (past EOF too, leaving holes), truncate and
        append while the rekey walks the files; a per-file lock keeps the reference exact."""
        vol = self.new_volume("aes-256-gcm", 4096)
        names = ["g%d.dat" % i for i in range(3)]
        refs = []
        for name in names:
            data = bytearray(self.rng.randbytes(self.rng.randrange(300_000, 900_000)))
            write_file(vol.p(name), data)
            refs.append(data)
        locks = [threading.Lock() for _ in names]
        stop = threading.Event()
        errors = []
        ops = [0] * NTHREADS

        def worker(k):
            import random
            rng = random.Random(self.rng.random() + k)
            fds = [os.open(vol.p(n), os.O_RDWR) for n in names]
            try:
                while not stop.is_set():
                    fi = rng.randrange(len(names))
                    with locks[fi]:
                        ref = refs[fi]
                        op = rng.random()
                        if op < 0.6:                      # rewrite or extend
                            off = rng.randrange(0, len(ref) + 20_000)
                            data = rng.randbytes(rng.randrange(1, 12_000))
                            if os.pwrite(fds[fi], data, off) != len(data):
                                raise OSError("short pwrite")
                            if off > len(ref):
                                ref.extend(bytes(off - len(ref)))
                            ref[off:off + len(data)] = data
                        elif op < 0.8:                    # truncate, down or up
                            size = max(0, len(ref) + rng.randrange(-40_000, 30_000))
                            os.ftruncate(fds[fi], size)
                            if size < len(ref):
                                del ref[size:]
                            else:
                                ref.extend(bytes(size - len(ref)))
                        else:                             # append at EOF
                            data = rng.randbytes(rng.randrange(1, 9000))
                            if os.pwrite(fds[fi], data, len(ref)) != len(data):
                                raise OSError("short append")
                            ref.extend(data)
                        if len(ref) > 1_500_000:          # keep the files small
                            os.ftruncate(fds[fi], 400_000)
                            del ref[400_000:]
                    ops[k] += 1
            except Exception as e:  # noqa: BLE001
                errors.append("thread %d: %r" % (k, e))
            finally:
                for fd in fds:
                    os.close(fd)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(NTHREADS)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.2)
            self.assertCmd(vol.wardfs("rotate", vol.plain, timeout=60), 0, vol)
            rk = vol.wardfs("rekey", vol.plain, "--rate", "1", timeout=240)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertCmd(rk, 0, vol)
        self.assertEqual(errors, [], "writer errors" + vol.log_tail())
        log("\nresize variant: %r operations" % ops)
        for name, ref in zip(names, refs):
            self.assertBytesEqual(read_uncached(vol.p(name)), bytes(ref), name + " after rekey")
        self.assertOnlyGeneration(vol, 2, "after rekey")
        vol.remount()
        for name, ref in zip(names, refs):
            self.assertBytesEqual(read_file(vol.p(name)), bytes(ref), name + " after remount")
        self.assertEqual(vol.status()["counters"]["integrity_failures"], 0)


if __name__ == "__main__":
    main()
