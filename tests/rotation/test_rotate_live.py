"""Online rotate while a writer appends (fsync'ing every few writes) and a reader verifies
checksums of a static file: no error, the writer does not stall around the rotate, the
content survives unmount + mount, status reports the new active generation, and new data
is sealed under it."""

import os
import threading
import time

from rot_harness import (RotationTestCase, backing_files_of_size, describe, drop_cache, log,
                         main, read_file, read_uncached, sha256, sha256_file, wait_for, write_file)

RECORD = 3001          # not a divisor of the chunk size: every append re-seals a tail
FSYNC_EVERY = 4
PAUSE_BOUND = 1.0      # seconds; the goal is 100 ms, this bound only avoids flakes


def record(seq):
    head = ("rec %08d|" % seq).encode()
    body = bytes((seq * 7 + i) & 0xFF for i in range(256))
    return (head + body * (RECORD // len(body) + 1))[:RECORD]


class RotateWhileWriting(RotationTestCase):
    def test_rotate_aes_4k(self):
        self._rotate_while_appending_and_reading("aes-256-gcm", 4096, rotations=1)

    def test_rotate_twice_xchacha_64k(self):
        self._rotate_while_appending_and_reading("xchacha20-poly1305", 65536, rotations=2)

    def _rotate_while_appending_and_reading(self, cipher, chunk, rotations):
        vol = self.new_volume(cipher, chunk)
        final = 1 + rotations
        static = self.rng.randbytes(2 * 1024 * 1024 + 123)
        static_path = vol.p("static.bin")
        write_file(static_path, static)
        static_sha = sha256(static)
        log_path = vol.p("append.log")

        stop = threading.Event()
        write_times = []          # monotonic time after each successful write (fsync included)
        writer_errors = []
        reader_errors = []
        reads = [0]
        written = [0]

        def writer():
            try:
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                try:
                    seq = 0
                    while not stop.is_set():
                        data = record(seq)
                        n = os.write(fd, data)
                        if n != len(data):
                            raise OSError("short write %d of %d" % (n, len(data)))
                        if seq % FSYNC_EVERY == FSYNC_EVERY - 1:
                            os.fsync(fd)
                        seq += 1
                        written[0] = seq
                        write_times.append(time.monotonic())
                        time.sleep(0.002)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                writer_errors.append(repr(e))

        def reader():
            try:
                while not stop.is_set():
                    drop_cache(static_path)
                    got = sha256_file(static_path)
                    if got != static_sha:
                        reader_errors.append("checksum mismatch on read %d" % reads[0])
                        return
                    reads[0] += 1
            except Exception as e:  # noqa: BLE001
                reader_errors.append(repr(e))

        threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
        for t in threads:
            t.start()
        spans = []                # (start, end, CompletedProcess) of each rotate
        try:
            time.sleep(1.0)
            # The checks below need the log's first chunk full, so sealed under generation 1
            # for good (appends re-seal only the partial tail chunk), before the first rotate:
            # one second is ~300 appends here, but only a handful on a slow, loaded machine.
            self.assertTrue(wait_for(lambda: written[0] * RECORD >= 2 * chunk or writer_errors,
                                     timeout=120), "the writer did not fill two chunks")
            for _ in range(rotations):
                t0 = time.monotonic()
                p = vol.wardfs("rotate", vol.plain, timeout=60)
                spans.append((t0, time.monotonic(), p))
                time.sleep(0.7)
            time.sleep(0.3)
            # And an append that started after the last rotate returned (it seals the tail
            # under the final generation), however slowly the writer runs.
            after = written[0] + 1
            self.assertTrue(wait_for(lambda: written[0] > after or writer_errors, timeout=120),
                            "the writer made no progress after the last rotate")
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "writer/reader threads hung")
        for i, (_, _, p) in enumerate(spans):
            self.assertCmd(p, 0, vol)
            self.assertIn("generation %d" % (i + 2), p.stdout, describe(p))
        self.assertEqual(writer_errors, [], "writer failed" + vol.log_tail())
        self.assertEqual(reader_errors, [], "reader failed" + vol.log_tail())
        self.assertGreater(reads[0], 0, "the reader never finished a pass")

        # The writer's pauses: around the rotate (from 0.5 s before until 0.5 s after) and overall.
        def max_gap(lo, hi):
            ts = [t for t in write_times if lo <= t <= hi]
            return max((b - a for a, b in zip(ts, ts[1:])), default=None), len(ts)

        baseline, _ = max_gap(write_times[0], spans[0][0] - 0.5)
        overall, _ = max_gap(write_times[0], write_times[-1])
        for t0, t1, _ in spans:
            around, n_around = max_gap(t0 - 0.5, t1 + 0.5)
            log("\n[%s %dK] rotate took %.1f ms; writer max gap around it %.1f ms (%d writes in "
                "window); before any rotate %.1f ms; overall %.1f ms; %d writes, %d reader passes"
                % (cipher, chunk // 1024, (t1 - t0) * 1e3, (around or 0) * 1e3, n_around,
                   (baseline or 0) * 1e3, overall * 1e3, written[0], reads[0]))
            self.assertIsNotNone(around, "no writes completed around the rotate")
            self.assertGreater(n_around, 5, "the writer barely ran around the rotate")
            # The writer must have made progress while the rotate ran or right after it.
            self.assertTrue(any(t0 <= t <= t1 + 0.25 for t in write_times),
                            "no write completed between the rotate's start and 250 ms after it ended")
            self.assertLess(around, PAUSE_BOUND, "writer stalled %.3f s around the rotate" % around)

        # status and config: the last generation active, the older ones still there.
        st = vol.status()
        self.assertEqual(st["active_generation"], final, st)
        gens = sorted((g["generation"], g["active"]) for g in st["generations"])
        self.assertEqual(gens, [(g, g == final) for g in range(1, final + 1)], st)
        self.assertEqual(st["counters"]["integrity_failures"], 0, st)
        self.assertEqual(vol.config_generations(), (list(range(1, final + 1)), final))

        # Expected content of the log: records 0..written-1.
        expected_log = b"".join(record(i) for i in range(written[0]))
        self.assertBytesEqual(read_uncached(log_path), expected_log, "append.log through the mount")

        # New files are sealed under the new generation, header and chunks.
        new = self.rng.randbytes(5 * chunk + 77)
        write_file(vol.p("new-after-rotate"), new)
        rels, sc = backing_files_of_size(vol, len(new))
        self.assertEqual(len(rels), 1, "cannot find the new file's backing file: %s" % sc.summary())
        info = sc.files[rels[0]]
        self.assertEqual(info["header"], final, "header generation of a file created after rotate")
        self.assertEqual(set(info["chunks"]), {final}, "chunk generations of a file created after rotate")
        # The static file, written before, is still all generation 1 (rotate re-seals nothing).
        rels, sc = backing_files_of_size(vol, len(static))
        self.assertEqual(len(rels), 1, sc.summary())
        self.assertEqual(sc.files[rels[0]]["header"], 1)
        self.assertEqual(set(sc.files[rels[0]]["chunks"]), {1})
        # The log mixes: its early chunks were sealed under 1, later ones under newer generations.
        rels, sc = backing_files_of_size(vol, len(expected_log))
        self.assertEqual(len(rels), 1, sc.summary())
        log_chunks = sc.files[rels[0]]["chunks"]
        self.assertEqual(sc.files[rels[0]]["header"], 1, "the log was created before the rotate")
        self.assertEqual(log_chunks[-1], final, "the log's tail was written after the rotate")
        self.assertIn(1, log_chunks, "the log's head was written before the rotate")
        self.assertEqual(log_chunks, sorted(log_chunks), "generations must not go back along an append-only file")

        # Unmount + mount: everything identical.
        vol.remount()
        self.assertEqual(sha256_file(static_path), static_sha, "static file after remount")
        self.assertBytesEqual(read_file(log_path), expected_log, "append.log after remount")
        self.assertBytesEqual(read_file(vol.p("new-after-rotate")), new, "new file after remount")
        st = vol.status()
        self.assertEqual(st["active_generation"], final, st)


if __name__ == "__main__":
    main()
