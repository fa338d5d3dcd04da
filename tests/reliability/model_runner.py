"""Runs random operation sequences against a wardfs mount and a plain reference directory,
compares every outcome and the whole tree after every step, and shrinks a failing sequence
(delta debugging, each candidate replayed on a fresh volume) to the shortest it can find."""

import os
import shutil
import sys
import time

import reliability_env  # noqa: F401 - puts tests/integration on sys.path
from model_ops import Generator, Side, diff_snapshots, snapshot
from wardfs_harness import Volume, config_matrix

STEPS_PER_SEQUENCE = int(os.environ.get("WARDFS_MODEL_STEPS", "150"))
SHRINK_SECONDS = float(os.environ.get("WARDFS_MODEL_SHRINK_SECONDS", "150"))
# e.g. "readdirplus=always": the same sequences through a mount with other options. Unset:
# every other (cipher, chunk) configuration mounts with writeback_cache=1, so that both
# the default (writing through) and the kernel writeback cache see random sequences.
MOUNT_OPTIONS = os.environ.get("WARDFS_MODEL_MOUNT_OPTIONS") or None


def mount_options_for(cipher, chunk):
    if MOUNT_OPTIONS:
        return MOUNT_OPTIONS
    return "writeback_cache=1" if config_matrix("full").index((cipher, chunk)) % 2 else None


class Mismatch(Exception):
    def __init__(self, step, op, detail):
        super().__init__("step %d %r: %s" % (step, op, detail))
        self.step, self.op, self.detail = step, op, detail


def _compare_step(i, op, wardfs_side, ref_side):
    got = wardfs_side.apply(op)
    want = ref_side.apply(op)
    if got != want:
        raise Mismatch(i, op, "outcome wardfs=%s ref=%s" % (_short(got), _short(want)))
    diff = diff_snapshots(snapshot(wardfs_side.root), snapshot(ref_side.root))
    if diff:
        raise Mismatch(i, op, "trees differ after the step:\n    " + "\n    ".join(diff[:12]))


def _short(result):
    text = repr(result)
    return text if len(text) < 160 else text[:150] + "...(%d chars)" % len(text)


class Session:
    """A mounted volume plus a reference directory beside it; sequences run in fresh
    sub-directories of both, so one volume serves many sequences."""

    def __init__(self, cipher, chunk):
        self.cipher, self.chunk = cipher, chunk
        self.vol = Volume(cipher, chunk)
        self.options = mount_options_for(cipher, chunk)
        self.vol.init()
        self.vol.mount(self.options)
        self.count = 0

    def close(self):
        self.vol.destroy()

    def sides(self):
        self.count += 1
        name = "seq%d" % self.count
        wroot = self.vol.p(name)
        rroot = os.path.join(self.vol.root, "ref", name)
        os.mkdir(wroot)
        os.makedirs(rroot)
        return Side(wroot), Side(rroot)

    def generate(self, seed, steps):
        """Generates and checks `steps` operations from `seed`; returns the ops. Raises
        Mismatch with the ops so far in .ops on the first difference."""
        w, r = self.sides()
        gen = Generator(seed, self.chunk)
        ops = []
        try:
            for i in range(steps):
                op = gen.next(r.root, [s for s, fd in enumerate(r.fds) if fd is not None])
                ops.append(op)
                _compare_step(i, op, w, r)
            w.close_all()
            r.close_all()
            self.vol.remount(self.options)  # what reached the daemon survives an unmount
            diff = diff_snapshots(snapshot(w.root), snapshot(r.root))
            if diff:
                raise Mismatch(len(ops), ("remount",), "trees differ after remount:\n    "
                               + "\n    ".join(diff[:12]))
        except Mismatch as m:
            m.ops = ops
            raise
        finally:
            w.close_all()
            r.close_all()
        return ops


def replay(ops, cipher, chunk):
    """Runs ops on a fresh volume; returns the Mismatch it raises, or None."""
    s = Session(cipher, chunk)
    try:
        w, r = s.sides()
        try:
            for i, op in enumerate(ops):
                _compare_step(i, op, w, r)
            w.close_all()
            r.close_all()
            s.vol.remount(s.options)
            diff = diff_snapshots(snapshot(w.root), snapshot(r.root))
            if diff:
                return Mismatch(len(ops), ("remount",), "trees differ after remount: " + "; ".join(diff[:5]))
        except Mismatch as m:
            return m
        finally:
            w.close_all()
            r.close_all()
        return None
    finally:
        s.close()


def shrink(ops, cipher, chunk, budget=SHRINK_SECONDS, log=sys.stderr):
    """ddmin: removes ever smaller chunks of the sequence while the replay still fails.
    Returns (shortest failing ops, its Mismatch); stops when the time budget runs out."""
    deadline = time.monotonic() + budget
    first = replay(ops, cipher, chunk)
    if first is None:
        log.write("model: the failure did not reproduce on a fresh volume (timing-dependent?)\n")
        return ops, None
    ops, best = ops[:first.step + 1], first
    n = 2
    while len(ops) >= 2 and time.monotonic() < deadline:
        size = max(1, len(ops) // n)
        reduced = False
        for start in range(0, len(ops), size):
            if time.monotonic() >= deadline:
                break
            candidate = ops[:start] + ops[start + size:]
            m = replay(candidate, cipher, chunk)
            if m is not None:
                ops, best, reduced = candidate[:m.step + 1], m, True
                log.write("model: shrunk to %d ops\n" % len(ops))
                n = max(n - 1, 2)
                break
        if not reduced:
            if size == 1:
                break
            n = min(len(ops), n * 2)
    return ops, best


def run_for(cipher, chunk, seconds, base_seed, log=sys.stderr):
    """Random sequences until `seconds` pass. Returns (sequences, ops) run, or raises
    AssertionError with the seed and the shrunk sequence on a mismatch."""
    deadline = time.monotonic() + seconds
    session = Session(cipher, chunk)
    sequences = total = 0
    try:
        while time.monotonic() < deadline or sequences == 0:
            seed = base_seed + sequences
            try:
                total += len(session.generate(seed, STEPS_PER_SEQUENCE))
            except Mismatch as m:
                session.close()
                session = None
                report = ["model mismatch: cipher=%s chunk=%d sequence seed=%d (first of this run: %d; "
                          "WARDFS_IT_SEED, printed at the start, reruns the run)"
                          % (cipher, chunk, seed, base_seed), str(m)]
                small, sm = shrink(m.ops, cipher, chunk, log=log)
                report.append("shortest failing sequence (%d ops, replay with model_runner.replay):"
                              % len(small))
                report += ["    %r," % (op,) for op in small]
                if sm is not None:
                    report.append("which fails with: %s" % sm)
                raise AssertionError("\n".join(report)) from None
            sequences += 1
    finally:
        if session is not None:
            session.close()
            shutil.rmtree(session.vol.root, ignore_errors=True)
    return sequences, total
