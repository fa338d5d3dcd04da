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
