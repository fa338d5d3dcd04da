"""Crash consistency: a writer process appends, overwrites, truncates and fsyncs several files
while the daemon is killed with SIGKILL at a random moment; the dead mount is cleaned up
(`wardfs unmount`, falling back to fusermount3 -uz / umount -l), the volume is mounted again,
and every file is read chunk by chunk:

- every byte acknowledged by fsync, in a chunk no later operation touched, reads back intact;
- every other byte is one the writer put there (before or after the fsync) or a zero past the
  shortest length the file had since its fsync: never bytes that were not written there;
- a chunk may fail with EIO only if an operation after the file's last fsync touched it
  (a torn chunk is a clean EIO, FORMAT.md §10), never a chunk holding only fsynced data.

The writer's operations come from a seeded generator that this test replays to know exactly
what was written; the writer only reports how far it got."""

import errno
import json
import os
import random
import subprocess
import sys
import time

import reliability_env
from wardfs_harness import (BIN, SEED, WardfsTestCase, chunk_label, config_matrix, main, run,
                            short_cipher)

NFILES = 4

# The writer imports this very file for plan(), so the plan it follows is the one checked.
WRITER = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from test_crash import plan, data
top, seed, chunk = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fds = [os.open(os.path.join(top, "f%d" % i), os.O_RDWR | os.O_CREAT, 0o644) for i in range(%(n)d)]
k = 0
try:
    for k, (i, kind, off, n) in enumerate(plan(seed, chunk)):
        if kind == "write":
            os.pwrite(fds[i], data(seed, k, n), off)
        elif kind == "truncate":
            os.ftruncate(fds[i], off)
        else:
            os.fsync(fds[i])
        if k == 40:
            print("started", flush=True)
except OSError as e:
    print("stopped %%d %%s" %% (k, e.errno), flush=True)
""".replace("%(n)d", str(NFILES)).replace("%%", "%")


def data(seed, k, n):
    """The bytes of operation k; never contains a zero byte, so zeros are told apart."""
    r = random.Random(seed * 1_000_003 + k)
    return bytes(1 + (b % 255) for b in r.randbytes(n))


def plan(seed, chunk, count=200_000):
    """(file, kind, offset, length) operations: pwrite appends and overwrites, an occasional
    truncate down, fsync every few operations per file."""
    r = random.Random(seed)
    sizes = [0] * NFILES
    for _ in range(count):
        i = r.randrange(NFILES)
        x = r.random()
        if x < 0.15:
            yield (i, "fsync", 0, 0)
        elif x < 0.2 and sizes[i] > 0:
            sizes[i] = r.randrange(sizes[i])
            yield (i, "truncate", sizes[i], 0)
        elif x < 0.45 and sizes[i] > 0:
            off = r.randrange(sizes[i])
            n = r.choice([1, 100, chunk, r.randrange(1, 2 * chunk)])
            yield (i, "write", off, n)
            sizes[i] = max(sizes[i], off + n)
        else:
            n = r.choice([1, 17, 1000, chunk - 1, chunk + 1, 3 * chunk, r.randrange(1, 4 * chunk)])
            gap = r.choice([0, 0, 0, 0, chunk + 5])
            yield (i, "write", sizes[i] + gap, n)
            sizes[i] += gap + n
        if sizes[i] > 40 * chunk:  # keep files small enough to check quickly
            sizes[i] = chunk // 2
            yield (i, "truncate", sizes[i], 0)


class FileModel:
    """What one file may contain after the crash, from the replayed plan."""

    def __init__(self, seed):
        self.seed = seed
        self.content = bytearray()
        self.synced = bytearray()
        self.since_sync = []  # (kind, off, n, k) after the last fsync

    def apply(self, seed, k, kind, off, n):
        if kind == "fsync":
            self.synced = bytearray(self.content)
            self.since_sync = []
            return
        self.since_sync.append((kind, off, n, k))
        if kind == "truncate":
            del self.content[off:]
        else:
            if len(self.content) < off:
                self.content.extend(bytes(off - len(self.content)))
            self.content[off:off + n] = data(seed, k, n)

    def window(self):
        """Lengths the file had since its fsync, and every (offset -> values) written since."""
        lengths = [len(self.synced)]
        size = len(self.synced)
        written, resealed = {}, set()
        for kind, off, n, k in self.since_sync:
            if kind == "truncate":
                resealed.add(off // self.chunk)
                size = off
            else:
                if off >= size and size > 0:  # an extend re-seals the old last chunk
                    resealed.add((size - 1) // self.chunk)
                size = max(size, off + n)
                for p, b in zip(range(off, off + n), self._data_of(k, n)):
                    written.setdefault(p, set()).add(b)
            lengths.append(size)
        touched = resealed | {p // self.chunk for p in written}
        return lengths, written, touched

    def _data_of(self, k, n):
        return data(self.seed, k, n)

    @property
    def chunk(self):
        return self._chunk


class CrashCases:
    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume(self.CIPHER, self.CHUNK)

    def run_round(self, rnd, seed):
        top = self.vol.p("round%d" % rnd)
        os.mkdir(top)
        w = subprocess.Popen([sys.executable, "-c", WRITER, reliability_env.HERE, top, str(seed),
                              str(self.CHUNK)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(w.stdout.readline().strip(), b"started", w.stderr.read() if w.poll() else "")
        time.sleep(random.Random(seed).uniform(0.05, 1.5))
        self.kill_daemon(self.vol)
        out, err = w.communicate(timeout=60)
        self.assertIn("stopped", out.decode(), "the writer must see the mount die: %r" % err[-500:])
        last = int(out.decode().split("stopped")[1].split()[0])
        self.vol.unmount()  # wardfs unmount, then fusermount3 -uz / umount -l on a dead mount
        self.vol.mount()
        models = [FileModel(seed) for _ in range(NFILES)]
        for m in models:
            m._chunk = self.CHUNK
        for k, (i, kind, off, n) in enumerate(plan(seed, self.CHUNK)):
            if k > last or (k == last and kind == "fsync"):
                break  # a failed fsync acknowledged nothing
            # the operation that failed may have reached the daemon in part: it is unsynced
            models[i].apply(seed, k, kind, off, n)
        return [self.check_file(os.path.join(top, "f%d" % i), models[i], "round %d f%d" % (rnd, i))
                for i in range(NFILES)]

    def check_file(self, path, model, what):
        """Returns the number of chunks that read as EIO (all of them allowed)."""
        c = self.CHUNK
        lengths, written, touched = model.window()
        synced = model.synced
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            self.assertEqual(e.errno, errno.EIO, what + ": %r" % e)
            self.assertTrue(model.since_sync, what + ": a file untouched since its fsync is EIO")
            self.fail(what + ": open fails with EIO, losing %d fsynced bytes" % len(synced))
        eio = 0
        try:
            size = os.fstat(fd).st_size
            self.assertTrue(min(lengths) <= size <= max(lengths),
                            "%s: size %d outside %d..%d" % (what, size, min(lengths), max(lengths)))
            for ci in range((size + c - 1) // c):
                try:
                    got = os.pread(fd, c, ci * c)
                except OSError as e:
                    self.assertEqual(e.errno, errno.EIO, "%s chunk %d: %r" % (what, ci, e))
                    self.assertIn(ci, touched, "%s: chunk %d holds only fsynced data and is EIO"
                                  % (what, ci))
                    eio += 1
                    continue
                self.check_bytes(got, ci * c, model, written, min(lengths), what)
        finally:
            os.close(fd)
        return eio

    def check_bytes(self, got, base, model, written, minlen, what):
        if got == bytes(model.content[base:base + len(got)]):
            return  # the common case: everything the writer did reached the backing file
        synced = model.synced
        for j, b in enumerate(got):
            p = base + j
            allowed = set(written.get(p, ()))
            if p < len(synced):
                allowed.add(synced[p])
            if p >= minlen or p not in written and p >= len(synced):
                allowed.add(0)
            if b not in allowed:
                self.fail("%s: byte %d is %d, allowed %s (fsynced %d bytes; %s)"
                          % (what, p, b, sorted(allowed)[:6], len(synced),
                             "written after the fsync" if p in written else "not written since"))

    def check_fsck(self, eio_files):
        """fsck, through the daemon, finds damage in exactly the files whose reads hit a torn
        chunk, and nothing but chunk damage: a crash leaves no other kind."""
        p = run([BIN, "fsck", self.vol.plain, "--json"], timeout=300)
        lines = [json.loads(line) for line in p.stdout.splitlines()]
        self.assertTrue(lines and "result" in lines[-1], p.stdout + p.stderr)
        damaged = set()
        for pr in lines[:-1]:
            if pr["severity"] == "damage":
                self.assertIn(pr["kind"], ("chunk_auth", "file_cut"), pr)
                damaged.add(pr["path"])
        self.assertEqual(damaged, eio_files, "fsck's damage vs the torn chunks reads found:\n"
                         + p.stdout)
        self.assertEqual(p.returncode, 3 if eio_files else lines[-1]["exit_code"])
        self.assertIn(p.returncode, (3,) if eio_files else (0, 6))

    def test_kill_during_writes(self):
        eio = []
        eio_files = set()
        for rnd in range(reliability_env.CRASH_ROUNDS):
            seed = SEED * 100 + rnd
            counts = self.run_round(rnd, seed)
            eio += [(rnd, i, n) for i, n in enumerate(counts) if n]
            eio_files |= {"/round%d/f%d" % (rnd, i) for i, n in enumerate(counts) if n}
            # the volume keeps working after recovery
            p = self.vol.p("round%d" % rnd, "after")
            with open(p, "wb") as f:
                f.write(b"after recovery")
            with open(p, "rb") as f:
                self.assertEqual(f.read(), b"after recovery")
            self.check_fsck(eio_files)
        if eio:
            print("\n  torn chunks read as EIO (allowed, FORMAT.md §10): %r" % eio, flush=True)


for _cipher, _chunk in config_matrix("diag"):
    _name = "Crash_%s_%s" % (short_cipher(_cipher), chunk_label(_chunk))
    globals()[_name] = type(_name, (CrashCases, WardfsTestCase), {"CIPHER": _cipher, "CHUNK": _chunk})

if __name__ == "__main__":
    main()
