"""Imported first by every reliability test: makes tests/integration/wardfs_harness.py
importable (the harness is shared, not copied) and holds the suite's environment knobs.

  WARDFS_MODEL_SECONDS   seconds of random operations in total, split evenly across the
                         (cipher, chunk) configs (default 280)
  WARDFS_MODEL_STEPS     operations per sequence (default 150)
  WARDFS_MODEL_SHRINK_SECONDS  time the shrinker may spend on a failure (default 150)
  WARDFS_CRASH_ROUNDS    kill -9 rounds per config in test_crash (default 4)
plus the harness's own (WARDFS_BIN, WARDFS_IT_SEED, WARDFS_IT_CIPHER, WARDFS_IT_CHUNK, ...)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

MODEL_SECONDS = float(os.environ.get("WARDFS_MODEL_SECONDS", "280"))
CRASH_ROUNDS = int(os.environ.get("WARDFS_CRASH_ROUNDS", "4"))


def backing_on_tmpfs(tc, vol, size):
    """Mounts a tmpfs of `size` (bytes, or a mount(8) size like "8m") as `vol`'s backing
    directory, for a disk that fills up; test case `tc` unmounts the volume, then the
    tmpfs, at cleanup."""
    from wardfs_harness import run
    os.makedirs(vol.cipher_dir, exist_ok=True)
    p = run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", vol.cipher_dir])
    tc.assertEqual(p.returncode, 0, p.stderr)

    def umount():
        vol.unmount()
        run(["umount", "-l", vol.cipher_dir])
    tc.addCleanup(umount)
