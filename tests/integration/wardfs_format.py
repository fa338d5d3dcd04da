"""Format facts (docs/FORMAT.md) and the (cipher, chunk size) configurations the tests run
over, for the wardfs integration harness (wardfs_harness re-exports all of it).

Environment knobs: WARDFS_IT_CIPHER, WARDFS_IT_CHUNK, WARDFS_IT_MATRIX (see wardfs_harness).
"""

import itertools
import os
import re

CIPHERS = ("aes-256-gcm", "xchacha20-poly1305")
HEADER_SIZE = 64
GENERATION_SIZE = 4
TAG_SIZE = 16
NONCE_SIZE = {"aes-256-gcm": 12, "xchacha20-poly1305": 24}
OVERHEAD = {c: GENERATION_SIZE + n + TAG_SIZE for c, n in NONCE_SIZE.items()}  # 32 / 44
HEADER_FLAG_HAS_HOLES = 1
CONFIG_NAME = "wardfs.conf"
DIRID_NAME = "wardfs.dirid"
LOCK_NAME = "wardfs.lock"
LEASE_NAME = "wardfs.lease"
MOUNTS_DIR_NAME = "wardfs.mounts"  # each read-write mount's published record
REKEY_NAME = "wardfs.rekey"  # the volume's one running rekey
RESERVE_NAME = "wardfs.reserve"  # a writeback mount's backing-space reserve
BACKING_META = {CONFIG_NAME, DIRID_NAME, LOCK_NAME, LEASE_NAME, MOUNTS_DIR_NAME, REKEY_NAME,
                RESERVE_NAME}
LONG_NAME_RE = re.compile(r"^L\.[A-Za-z0-9_-]{43}$")
SIDECAR_RE = re.compile(r"^L\.[A-Za-z0-9_-]{43}\.n$")
# A long symlink target's sidecar, and what its backing symlink points at (FORMAT.md 7.1).
TARGET_SIDECAR_RE = re.compile(r"^T\.[A-Za-z0-9_-]{43}$")
B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def parse_size(text):
    text = str(text).strip().upper()
    mult = 1
    for suffix, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if text.endswith(suffix):
            text, mult = text[:-1], m
            break
    return int(text) * mult


def selected_ciphers():
    env = os.environ.get("WARDFS_IT_CIPHER")
    if not env or env == "all":
        return list(CIPHERS)
    out = [c.strip() for c in env.split(",") if c.strip()]
    for c in out:
        if c not in CIPHERS:
            raise SystemExit("WARDFS_IT_CIPHER: unknown cipher %r" % c)
    return out


def selected_chunks():
    env = os.environ.get("WARDFS_IT_CHUNK") or "4K,64K"
    return [parse_size(c) for c in env.split(",") if c.strip()]


def config_matrix(kind="full"):
    """(cipher, chunk) pairs. kind: 'full' = every combination (cheap tests);
    'diag' = every cipher and every chunk size at least once; 'one' = a single config."""
    ciphers, chunks = selected_ciphers(), selected_chunks()
    if os.environ.get("WARDFS_IT_MATRIX") == "full":
        kind = "full"
    if kind == "full":
        return list(itertools.product(ciphers, chunks))
    if kind == "diag":
        n = max(len(ciphers), len(chunks))
        return list(dict.fromkeys((ciphers[i % len(ciphers)], chunks[i % len(chunks)])
                                  for i in range(n)))
    return [(ciphers[0], chunks[0])]


def short_cipher(cipher):
    return {"aes-256-gcm": "aes", "xchacha20-poly1305": "xchacha"}[cipher]


def chunk_label(chunk):
    return "%dk" % (chunk // 1024) if chunk % 1024 == 0 else str(chunk)


def expected_backing_size(plain_size, chunk, cipher):
    ovh = OVERHEAD[cipher]
    if plain_size == 0:
        return HEADER_SIZE + ovh
    full, rest = divmod(plain_size, chunk)
    return HEADER_SIZE + full * (chunk + ovh) + (rest + ovh if rest else 0)


def slot_size(chunk, cipher):
    return chunk + OVERHEAD[cipher]


def slot_offset(index, chunk, cipher):
    return HEADER_SIZE + index * slot_size(chunk, cipher)
