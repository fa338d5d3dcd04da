"""Helpers for the key-rotation tests (rotate, rekey, retire through real FUSE mounts).

Each test module is run by ctest as `/usr/bin/python3 <module>.py` with WARDFS_BIN set to
the built CLI. Only the Python standard library is used. Every volume lives in a fresh
directory under /tmp; mounts are torn down on failure, at exit and on SIGTERM
(`wardfs unmount`, then `fusermount3 -uz`, then killing the volume's own daemon by pid).

The process, mount-table, file and volume helpers are tests/integration's (wardfs_proc,
wardfs_files, wardfs_volume, wardfs_format), imported from there rather than copied; this
module re-exports the names its callers (tests/rotation, tests/audit, tests/examples) use,
and keeps what is the rotation tests' own: the backing-dir generation scanner, the test
case base and the Volume behaviour below that differs from the integration one.

Environment knobs:
  WARDFS_BIN              the wardfs binary (default: <repo>/build-rot/cli/wardfs, then build/)
  WARDFS_ROT_SEED         seed for the randomized parts (default: random, printed)
  WARDFS_ROT_TIMEOUT      seconds before the watchdog kills a hung test's daemons (default 300)
  WARDFS_ROT_KEEP=1       keep the temporary directories
"""

import base64
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import stat
import struct
import sys
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _default_bin():
    for sub in ("build-rot", "build"):
        p = os.path.join(REPO, sub, "cli", "wardfs")
        if os.path.exists(p):
            return p
    return os.path.join(REPO, "build", "cli", "wardfs")


# The shared modules read WARDFS_BIN when imported; give them this suite's default first.
if not os.environ.get("WARDFS_BIN"):
    os.environ["WARDFS_BIN"] = _default_bin()

# Importing wardfs_volume also points WARDFS_AUDIT_DIR at a private temp dir (unless set)
# and installs the at-exit and SIGTERM cleanup of every live volume.
import wardfs_files  # noqa: E402
import wardfs_proc  # noqa: E402
import wardfs_volume  # noqa: E402
from wardfs_files import first_diff, read_file, sha256_file, write_file  # noqa: E402,F401
from wardfs_format import (CONFIG_NAME, HEADER_SIZE, LONG_NAME_RE, OVERHEAD,  # noqa: E402,F401
                           SIDECAR_RE, TARGET_SIDECAR_RE, expected_backing_size)
from wardfs_proc import (BIN, HarnessError, is_fuse_mounted, kill_and_wait, wait_for,  # noqa: E402,F401
                         wardfs_pids)
from wardfs_volume import _LIVE_VOLUMES  # noqa: E402

TEST_TIMEOUT = float(os.environ.get("WARDFS_ROT_TIMEOUT", "300"))
KEEP = os.environ.get("WARDFS_ROT_KEEP") == "1"
SEED = int(os.environ.get("WARDFS_ROT_SEED") or random.SystemRandom().randrange(1 << 31))

# Exit codes of the CLI.
EXIT_OK, EXIT_USAGE, EXIT_WRONG_KEY, EXIT_CORRUPT, EXIT_MOUNT, EXIT_IO = 0, 1, 2, 3, 4, 5

pids_with_tag = wardfs_pids  # rot_harness's name for it, kept for callers


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- processes

def run(args, timeout=120, input=None):
    """Runs a command with output captured through temp files (a daemonizing child may
    keep pipes open). Returns a CompletedProcess with text stdout/stderr."""
    return wardfs_proc.run(args, input=input, timeout=timeout, via_files=True)


def describe(p):
    return wardfs_proc.describe(p, tail=3000)


# ---------------------------------------------------------------- volumes

class Volume(wardfs_volume.Volume):
    """/tmp/wardfs-rot-XXXX/{cipher,plain,key,wardfs.log}; `wardfs init --create-keyfile`
    writes the key. Mounting, the log and the daemon lookup are the integration Volume's;
    unmount, kill_daemons and destroy are this suite's own: no `umount -l`, a 15 s wait for
    the daemon, and kill_daemons(sig) sends one signal, returns the pids and leaves a dead
    mount in place (test_rekey_crash checks that mount, then lazy_unmount()s it)."""

    root_prefix = "wardfs-rot-"
    write_key = False
    log_tail_lines = 40

    def __init__(self, cipher="aes-256-gcm", chunk=4096):
        super().__init__(cipher, chunk)
        self.overhead = OVERHEAD[cipher]

    def init_args(self):
        return super().init_args() + ["--create-keyfile"]

    def init(self):
        super().init()
        return self

    def unmount(self):
        """`wardfs unmount`, then `fusermount3 -uz` if still mounted; waits for the daemon,
        kills it (by pid) if it lingers. Returns the unmount CompletedProcess or None."""
        p = None
        if is_fuse_mounted(self.plain):
            p = self._try([BIN, "unmount", self.plain], 60)
            self.lazy_unmount()
        if not wait_for(lambda: not self.daemon_pids(), timeout=15):
            self.kill_daemons(signal.SIGKILL)
        return p

    def kill_daemons(self, sig=signal.SIGKILL):
        pids = self.daemon_pids()
        kill_and_wait(pids, sig)
        return pids

    def lazy_unmount(self):
        for _ in range(3):
            if not is_fuse_mounted(self.plain):
                return True
            self._try(["fusermount3", "-uz", self.plain], 30)
        return not is_fuse_mounted(self.plain)

    def destroy(self):
        _LIVE_VOLUMES.discard(self)
        self.unmount()
        if is_fuse_mounted(self.plain):
            self.kill_daemons()
            self.lazy_unmount()
        if is_fuse_mounted(self.plain):
            log("rot harness: %s still mounted; keeping %s" % (self.plain, self.root))
            return
        if not KEEP:
            self.remove_dirs()

    # -- CLI
    def wardfs(self, *args, timeout=180):
        return run([BIN] + list(args), timeout=timeout)

    def status(self):
        p = self.wardfs("status", self.plain, "--json", timeout=30)
        if p.returncode != 0:
            raise HarnessError("wardfs status failed\n" + describe(p) + self.log_tail())
        return json.loads(p.stdout)

    def config(self):
        with open(os.path.join(self.cipher_dir, CONFIG_NAME)) as f:
            return json.load(f)

    def config_generations(self):
        c = self.config()
        return sorted(k["generation"] for k in c["keys"]), c["active_generation"]

    def expected_backing_size(self, plain_size):
        return expected_backing_size(plain_size, self.chunk, self.cipher)

    # -- backing scan
    def scan(self):
        return scan_backing(self.cipher_dir, self.chunk, self.overhead)


# ---------------------------------------------------------------- backing scan

def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def is_encrypted_name(name):
    return "." not in name or bool(LONG_NAME_RE.match(name))


class BackingScan:
    def __init__(self):
        self.headers = {}        # generation -> count
        self.chunks = {}         # generation -> count
        self.holes = 0
        self.symlinks = {}       # generation -> count
        self.xattrs = {}         # generation -> count
        self.files = {}          # relpath -> {"header": g, "chunks": [g or 0 per slot], "size": B}
        self.entries = []        # relpaths of every encrypted entry (files, dirs, links, ...)
        self.sidecars = []       # relpaths of L.*.n sidecars
        self.long_names = []     # relpaths of L.* entries
        self.target_sidecars = []  # relpaths of T.* long symlink target sidecars
        self.linked_targets = []   # relpaths of the T.* sidecars that symlinks point at
        self.problems = []       # layout violations found while scanning

    def gens(self):
        """Every generation seen in headers, chunks, symlink targets and xattr values."""
        return sorted(set(self.headers) | set(self.chunks) | set(self.symlinks) | set(self.xattrs))

    def uses(self, g):
        return (self.headers.get(g, 0) + self.chunks.get(g, 0) + self.symlinks.get(g, 0)
                + self.xattrs.get(g, 0))

    def summary(self):
        return ("headers %r chunks %r holes %d symlinks %r xattrs %r entries %d problems %r"
                % (self.headers, self.chunks, self.holes, self.symlinks, self.xattrs,
                   len(self.entries), self.problems[:5]))


def _bump(d, g):
    d[g] = d.get(g, 0) + 1


def scan_file(path, chunk, overhead):
    """(header generation, [slot generation or 0 for an all-zero slot], problems)."""
    problems = []
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER_SIZE + overhead:
        return None, [], ["%s: %d bytes, shorter than header + empty chunk" % (path, len(data))]
    if data[:4] != b"WDFS":
        problems.append("%s: bad magic %r" % (path, data[:4]))
    hgen = struct.unpack_from("<I", data, 24)[0]
    slot = chunk + overhead
    body = len(data) - HEADER_SIZE
    full, rest = divmod(body, slot)
    if rest and rest < overhead:
        problems.append("%s: invalid size %d (tail %d < overhead)" % (path, len(data), rest))
    gens = []
    nslots = full + (1 if rest else 0)
    for i in range(nslots):
        off = HEADER_SIZE + i * slot
        s = data[off:off + slot]
        if not any(s):
            gens.append(0)
        else:
            gens.append(struct.unpack_from("<I", s, 0)[0])
    return hgen, gens, problems


def backing_xattr_values(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    out = {}
    for n in names:
        if n.startswith("user."):
            out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def scan_backing(top, chunk, overhead):
    sc = BackingScan()
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if is_encrypted_name(d)]  # skip wardfs.tmp.*
        for n in sorted(dirnames + filenames):
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, top)
            if SIDECAR_RE.match(n):
                sc.sidecars.append(rel)
                continue
            if TARGET_SIDECAR_RE.match(n):
                sc.target_sidecars.append(rel)
                continue
            if not is_encrypted_name(n):
                continue
            sc.entries.append(rel)
            if LONG_NAME_RE.match(n):
                sc.long_names.append(rel)
            st = os.lstat(path)
            for v in backing_xattr_values(path).values():
                if len(v) >= 4:
                    _bump(sc.xattrs, struct.unpack_from("<I", v, 0)[0])
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(path)
                    if TARGET_SIDECAR_RE.match(target):   # a long target (FORMAT.md 7.1)
                        sc.linked_targets.append(os.path.join(os.path.dirname(rel), target))
                        with open(os.path.join(dirpath, target), "rb") as f:
                            blob = f.read()
                    else:
                        blob = b64url_decode(target)
                    _bump(sc.symlinks, struct.unpack_from("<I", blob, 0)[0])
                except Exception as e:  # noqa: BLE001
                    sc.problems.append("%s: symlink target not a blob: %s" % (rel, e))
            elif stat.S_ISREG(st.st_mode):
                hgen, gens, problems = scan_file(path, chunk, overhead)
                sc.problems += problems
                if hgen is None:
                    continue
                _bump(sc.headers, hgen)
                for g in gens:
                    if g == 0:
                        sc.holes += 1
                    else:
                        _bump(sc.chunks, g)
                sc.files[rel] = {"header": hgen, "chunks": gens, "size": st.st_size}
    return sc


def backing_files_of_size(vol, plain_size):
    want = vol.expected_backing_size(plain_size)
    sc = vol.scan()
    return [rel for rel, info in sc.files.items() if info["size"] == want], sc


def top_level_names(vol):
    return sorted(n for n in os.listdir(vol.cipher_dir) if is_encrypted_name(n))


# ---------------------------------------------------------------- file helpers

def drop_cache(path):
    """Evicts a file's pages, without the fsync the integration helper sends first: the
    rotation tests' readers run alongside writers and a rekey, and were written without
    it, so they keep exactly what they had."""
    wardfs_files.drop_cache(path, fsync=False)


def read_uncached(path):
    return wardfs_files.read_uncached(path, fsync=False)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def find_generation_in(text):
    m = re.search(r"generation (\d+)", text)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- test case base

class RotationTestCase(unittest.TestCase):
    maxDiff = 4000

    def setUp(self):
        self.rng = random.Random("%d-%s" % (SEED, self.id()))
        self._fired = False
        self._watchdog = threading.Timer(TEST_TIMEOUT, self._fire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def tearDown(self):
        self._watchdog.cancel()
        if self._fired:
            self.fail("watchdog: test ran over %ss; its wardfs daemons were killed" % TEST_TIMEOUT)

    def _fire(self):
        self._fired = True
        log("\nwatchdog: %s ran over %ss, killing its wardfs daemons" % (self.id(), TEST_TIMEOUT))
        for v in list(_LIVE_VOLUMES):
            v.kill_daemons(signal.SIGKILL)

    def new_volume(self, cipher="aes-256-gcm", chunk=4096, mount=True):
        v = Volume(cipher, chunk)
        self.addCleanup(v.destroy)
        v.init()
        if mount:
            v.mount()
        return v

    def assertCmd(self, p, rc=0, vol=None):
        self.assertEqual(p.returncode, rc, describe(p) + (vol.log_tail() if vol else ""))
        return p

    def assertBytesEqual(self, got, want, what="data"):
        if got != want:
            i = first_diff(got, want)
            self.fail("%s differs: len got %d want %d, first difference at offset %d (got %r want %r)"
                      % (what, len(got), len(want), i, got[i:i + 16], want[i:i + 16]))

    def assertOnlyGeneration(self, vol, g, what=""):
        sc = vol.scan()
        self.assertEqual(sc.problems, [], "backing layout problems " + what)
        self.assertEqual(sc.gens(), [g], "backing dir %s should hold only generation %d: %s"
                         % (what, g, sc.summary()))
        return sc

    def assertAlive(self, vol):
        try:
            os.listdir(vol.plain)
        except OSError as e:
            self.fail("mount %s is not answering (%s)%s" % (vol.plain, e, vol.log_tail()))


def main():
    if not os.path.exists(BIN):
        log("wardfs binary not found: %s (set WARDFS_BIN)" % BIN)
        sys.exit(1)
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        log("these tests need root and /dev/fuse")
    log("wardfs rotation tests: bin=%s seed=%d (WARDFS_ROT_SEED to repeat)" % (BIN, SEED))
    unittest.main(verbosity=2)
