"""Shared helpers for the wardfs integration tests: they really mount the filesystem.

Each test module is run by ctest as `/usr/bin/python3 <module>.py` with WARDFS_BIN set to
the built CLI. Only the Python standard library is used.

Environment knobs:
  WARDFS_BIN            the wardfs binary (default: <repo>/build/cli/wardfs)
  WARDFS_IT_CIPHER      comma list of ciphers to test (default: both)
  WARDFS_IT_CHUNK       comma list of chunk sizes, e.g. "4K,64K" (default)
  WARDFS_IT_MATRIX      "full" runs every module over every cipher x chunk combination
  WARDFS_IT_LARGE=1     also run the 1 GiB file test
  WARDFS_IT_SEED        seed for the randomized tests (default: random, printed on failure)
  WARDFS_IT_TEST_TIMEOUT  seconds before the watchdog kills a hung daemon (default 300)
  WARDFS_IT_KEEP=1      keep the temporary directories of volumes
"""

import atexit
import ctypes
import errno
import hashlib
import itertools
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("WARDFS_BIN") or os.path.join(REPO, "build", "cli", "wardfs")

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
BACKING_META = {CONFIG_NAME, DIRID_NAME, LOCK_NAME}
LONG_NAME_RE = re.compile(r"^L\.[A-Za-z0-9_-]{43}$")
SIDECAR_RE = re.compile(r"^L\.[A-Za-z0-9_-]{43}\.n$")
B64URL_RE = re.compile(r"^[A-Za-z0-9_-]+$")

TEST_TIMEOUT = float(os.environ.get("WARDFS_IT_TEST_TIMEOUT", "300"))
KEEP = os.environ.get("WARDFS_IT_KEEP") == "1"
LARGE = os.environ.get("WARDFS_IT_LARGE") == "1"


def _seed():
    s = os.environ.get("WARDFS_IT_SEED")
    return int(s) if s else random.SystemRandom().randrange(1 << 31)


SEED = _seed()


# Audit logs of test volumes go to a private directory, not /var/log/wardfs.
if not os.environ.get("WARDFS_AUDIT_DIR"):
    os.environ["WARDFS_AUDIT_DIR"] = tempfile.mkdtemp(prefix="wardfs-test-audit-", dir="/tmp")
    atexit.register(shutil.rmtree, os.environ["WARDFS_AUDIT_DIR"], True)


class HarnessError(Exception):
    """The harness could not set up a volume: reported as a test error, with details."""


# ---------------------------------------------------------------- sizes and configs

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


# ---------------------------------------------------------------- processes and mounts

def run(args, input=None, timeout=120, env=None, via_files=False):
    """Runs a command, returns CompletedProcess with text stdout/stderr. via_files=True
    captures output through temp files, so a daemon child that keeps stdout open cannot
    make us wait (test_cli_errors checks that separately)."""
    args = [str(a) for a in args]
    if isinstance(input, str):
        input = input.encode()
    stdin = None if input is not None else subprocess.DEVNULL
    try:
        if via_files:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                p = subprocess.run(args, input=input, stdout=out, stderr=err, timeout=timeout,
                                   env=env, stdin=stdin)
                out.seek(0)
                err.seek(0)
                p.stdout, p.stderr = out.read(), err.read()
        else:
            p = subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout, env=env, stdin=stdin)
    except subprocess.TimeoutExpired as e:
        raise HarnessError("command timed out after %ss: %s" % (timeout, " ".join(args))) from e
    p.stdout = p.stdout.decode(errors="replace")
    p.stderr = p.stderr.decode(errors="replace")
    return p


def describe(p):
    return "rc=%s\n$ %s\nstdout: %s\nstderr: %s" % (
        p.returncode, " ".join(p.args), p.stdout.strip()[-2000:], p.stderr.strip()[-2000:])


def _unescape_mount_field(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts():
    """Entries of /proc/self/mountinfo as dicts: mountpoint, fstype, source, majmin, options."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            out.append({"majmin": lf[2], "mountpoint": _unescape_mount_field(lf[4]),
                        "options": lf[5], "fstype": rf[0],
                        "source": _unescape_mount_field(rf[1]) if len(rf) > 1 else "",
                        "superopts": rf[2] if len(rf) > 2 else ""})
    return out


def mount_entry(path):
    path = os.path.realpath(path)
    found = [m for m in mounts() if m["mountpoint"] == path]
    return found[-1] if found else None


def is_fuse_mounted(path):
    m = mount_entry(path)
    return m is not None and m["fstype"].startswith("fuse")


def proc_mounts_text():
    with open("/proc/mounts") as f:
        return f.read()


def wardfs_pids(tag):
    """PIDs of wardfs processes whose command line mentions `tag` (a unique temp path)."""
    real_bin = os.path.realpath(BIN)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            exe = os.readlink("/proc/%s/exe" % d)
        except OSError:
            continue
        if tag.encode() in cmd and (os.path.basename(exe.replace(" (deleted)", "")) ==
                                     os.path.basename(real_bin)):
            pids.append(int(d))
    return pids


def wait_for(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


_LIVE_VOLUMES = set()


def _cleanup_all():
    for v in list(_LIVE_VOLUMES):
        try:
            v.destroy()
        except Exception as e:  # noqa: BLE001 - best effort at exit
            sys.stderr.write("wardfs harness: cleanup of %s failed: %s\n" % (v.root, e))


atexit.register(_cleanup_all)


def _on_sigterm(signum, frame):
    _cleanup_all()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_sigterm)


class Volume:
    """A temp dir with cipher/ (backing), plain/ (mount point) and a key or pass file."""

    def __init__(self, cipher="aes-256-gcm", chunk=4096, holes=None, passphrase=None):
        self.cipher = cipher
        self.chunk = chunk
        self.holes = holes
        self.passphrase = passphrase
        self.root = tempfile.mkdtemp(prefix="wardfs-it-", dir="/tmp")
        self.cipher_dir = os.path.join(self.root, "cipher")
        self.plain = os.path.join(self.root, "plain")
        self.keyfile = os.path.join(self.root, "key")
        self.passfile = os.path.join(self.root, "pass")
        self.logfile = os.path.join(self.root, "wardfs.log")
        os.mkdir(self.plain)
        if passphrase is None:
            self.key = os.urandom(32)
            fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (self.key.hex() + "\n").encode())
            os.close(fd)
        else:
            self.key = None
            fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (passphrase + "\n").encode())
            os.close(fd)
        _LIVE_VOLUMES.add(self)

    # -- commands
    def cred_args(self):
        if self.passphrase is None:
            return ["--keyfile", self.keyfile]
        return ["--passfile", self.passfile]

    def init_args(self):
        args = [BIN, "init", self.cipher_dir, "--cipher", self.cipher,
                "--chunk-size", str(self.chunk)] + self.cred_args()
        if self.holes:
            args += ["--holes", self.holes]
        if self.passphrase is not None:
            args += ["--kdf-ops", "1", "--kdf-mem", "8388608"]
        return args

    def init(self):
        p = run(self.init_args())
        if p.returncode != 0:
            raise HarnessError("wardfs init failed\n" + describe(p))
        return p

    def mount_args(self, options=None, mountpoint=None):
        args = [BIN, "mount", self.cipher_dir, mountpoint or self.plain] + self.cred_args()
        args += ["--log-file", self.logfile]
        if options:
            args += ["-o", options]
        return args

    def mount(self, options=None):
        p = run(self.mount_args(options), timeout=60, via_files=True)
        if p.returncode != 0:
            raise HarnessError("wardfs mount failed\n" + describe(p) + self.log_tail())
        if not is_fuse_mounted(self.plain):
            raise HarnessError("wardfs mount returned 0 but %s is not a FUSE mount\n%s"
                               % (self.plain, describe(p)))
        return p

    def log_tail(self, n=30):
        try:
            with open(self.logfile, errors="replace") as f:
                lines = f.readlines()[-n:]
            return "\n--- wardfs log tail ---\n" + "".join(lines)
        except OSError:
            return ""

    def daemon_pids(self):
        return wardfs_pids(self.root)

    def alive(self):
        """Mounted, a daemon running, and it answers (readdir always reaches the daemon;
        stat may be answered from the kernel's attribute cache)."""
        if not is_fuse_mounted(self.plain) or not self.daemon_pids():
            return False
        try:
            os.listdir(self.plain)
            return True
        except OSError:
            return False

    @staticmethod
    def _try(args, timeout):
        try:
            return run(args, timeout=timeout)
        except HarnessError as e:
            sys.stderr.write("wardfs harness: %s\n" % e)
            return None

    def unmount(self):
        """wardfs unmount, falling back to fusermount3 -uz; waits for the daemon to exit, and
        kills it if it does not. Returns the CompletedProcess of `wardfs unmount` (None if
        nothing was mounted or it timed out)."""
        p = None
        if is_fuse_mounted(self.plain):
            p = self._try([BIN, "unmount", self.plain], 60)
            for _ in range(3):  # a buggy mount may have stacked a second mount on top
                if is_fuse_mounted(self.plain):
                    self._try(["fusermount3", "-uz", self.plain], 30)
                if is_fuse_mounted(self.plain):
                    self._try(["umount", "-l", self.plain], 30)
        if not wait_for(lambda: not self.daemon_pids(), timeout=10):
            self.kill_daemons()
        return p

    def kill_daemons(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in self.daemon_pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if wait_for(lambda: not self.daemon_pids(), timeout=5):
                break
        # a killed daemon leaves a dead mount behind
        for _ in range(3):
            if is_fuse_mounted(self.plain):
                self._try(["fusermount3", "-uz", self.plain], 30)

    def remount(self, options=None):
        self.unmount()
        if is_fuse_mounted(self.plain):
            raise HarnessError("could not unmount " + self.plain)
        return self.mount(options)

    def destroy(self):
        _LIVE_VOLUMES.discard(self)
        self.unmount()
        for path in (self.plain,):
            if is_fuse_mounted(path):
                run(["umount", "-l", path], timeout=30)
        if is_fuse_mounted(self.plain):
            sys.stderr.write("wardfs harness: %s is still mounted; keeping %s\n" % (self.plain, self.root))
            return
        if not KEEP:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- paths
    def p(self, *parts):
        return os.path.join(self.plain, *parts)

    def b(self, *parts):
        return os.path.join(self.cipher_dir, *parts)


# ---------------------------------------------------------------- file helpers

def write_file(path, data, fsync=True, mode="wb"):
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def drop_cache(path):
    """Flushes and evicts a file's pages so the next read goes to the daemon."""
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            os.fsync(fd)
        except OSError:
            pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_uncached(path):
    drop_cache(path)
    return read_file(path)


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                return h.hexdigest()
            h.update(b)


def backing_entries(bdir):
    """Names in a backing dir that stand for plaintext entries or their long-name sidecars.
    Per docs/FORMAT.md every other dotted name belongs to wardfs itself."""
    return sorted(n for n in os.listdir(bdir)
                  if B64URL_RE.match(n) or LONG_NAME_RE.match(n) or SIDECAR_RE.match(n))


def backing_data_entries(bdir):
    """Backing names that stand for plaintext entries (no metadata, no long-name sidecars)."""
    return [n for n in backing_entries(bdir) if not SIDECAR_RE.match(n)]


def pattern(n, seed):
    """n deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else -1


def read_header(backing_file):
    with open(backing_file, "rb") as f:
        return f.read(HEADER_SIZE)


def header_flags(backing_file):
    h = read_header(backing_file)
    return int.from_bytes(h[6:8], "little")


def walk_backing(top):
    """Every path below top (dirs, files, symlinks), not following symlinks."""
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            yield os.path.join(dirpath, n)


_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(src, dst, flags):
    """renameat2(2) through ctypes; raises OSError. Raises NotImplementedError if libc lacks it."""
    try:
        fn = _libc.renameat2
    except AttributeError as e:
        raise NotImplementedError("libc has no renameat2") from e
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    AT_FDCWD = -100
    r = fn(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags)
    if r != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), src, None, dst)


# ---------------------------------------------------------------- test case bases

class WardfsTestCase(unittest.TestCase):
    """Common assertions and a watchdog that kills a hung daemon so the suite never hangs."""

    maxDiff = 2000
    _volumes_for_watchdog = ()

    def setUp(self):
        self._watchdog_fired = False
        self._watchdog = threading.Timer(TEST_TIMEOUT, self._watchdog_fire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def tearDown(self):
        self._watchdog.cancel()
        if self._watchdog_fired:
            self.fail("watchdog: test ran over %ss; the wardfs daemon was killed (hang?)" % TEST_TIMEOUT)

    def watched_volumes(self):
        return list(self._volumes_for_watchdog)

    def _watchdog_fire(self):
        self._watchdog_fired = True
        sys.stderr.write("\nwatchdog: %s ran over %ss, killing its wardfs daemons\n"
                         % (self.id(), TEST_TIMEOUT))
        for v in list(_LIVE_VOLUMES):
            for pid in v.daemon_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    # -- assertions
    def assertBytesEqual(self, got, want, what="data"):
        if got != want:
            i = first_diff(got, want)
            self.fail("%s differs: len got %d want %d, first difference at offset %d "
                      "(got %r want %r)" % (what, len(got), len(want), i,
                                            got[i:i + 16], want[i:i + 16]))

    def assertErrno(self, err, fn, *args, **kwargs):
        with self.assertRaises(OSError) as cm:
            fn(*args, **kwargs)
        codes = err if isinstance(err, (tuple, list, set)) else (err,)
        self.assertIn(cm.exception.errno, codes,
                      "expected %s, got %r" % ("/".join(errno.errorcode.get(c, str(c)) for c in codes),
                                               cm.exception))
        return cm.exception

    def new_volume(self, cipher=None, chunk=None, **kw):
        v = Volume(cipher or getattr(self, "CIPHER", CIPHERS[0]),
                   chunk or getattr(self, "CHUNK", 4096), **kw)
        self.addCleanup(v.destroy)
        return v


class MountedTestCase(WardfsTestCase):
    """One volume per class (CIPHER, CHUNK, HOLES), mounted once; each test works in its
    own fresh directory self.d whose backing directory is self.bd."""

    CIPHER = CIPHERS[0]
    CHUNK = 4096
    HOLES = None
    vol = None

    @classmethod
    def setUpClass(cls):
        cls.vol = Volume(cls.CIPHER, cls.CHUNK, holes=cls.HOLES)
        cls._volumes_for_watchdog = (cls.vol,)
        try:
            cls.vol.init()
            cls.vol.mount()
        except Exception:
            cls.vol.destroy()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.vol is not None:
            cls.vol.destroy()

    def setUp(self):
        super().setUp()
        vol = self.vol
        if not vol.alive():
            # an earlier test crashed or hung the daemon; that test already failed
            sys.stderr.write("\n%s: volume was not alive, remounting\n" % self.id())
            vol.kill_daemons()
            vol.unmount()
            vol.mount()
        self.chunk = self.CHUNK
        self.cipher = self.CIPHER
        self.d, self.bd = self.fresh_dir(self._testMethodName, parent=vol.plain,
                                         bparent=vol.cipher_dir)

    def tearDown(self):
        try:
            if not self._watchdog_fired and not self.vol.alive():
                self.fail("the wardfs daemon died or the mount went away during this test"
                          + self.vol.log_tail())
        finally:
            super().tearDown()

    def fresh_dir(self, name=None, parent=None, bparent=None):
        """mkdir a new plaintext dir; returns (plain path, its backing dir)."""
        parent = parent or self.d
        bparent = bparent or self.bd
        name = name or "d%06d" % random.randrange(10 ** 6)
        before = set(os.listdir(bparent))
        path = os.path.join(parent, name)
        os.mkdir(path)
        new = [n for n in set(os.listdir(bparent)) - before
               if os.path.isdir(os.path.join(bparent, n))]
        self.assertEqual(len(new), 1, "mkdir %s should add exactly one backing directory, "
                                      "added %r" % (path, new))
        return path, os.path.join(bparent, new[0])

    def p(self, *parts):
        return os.path.join(self.d, *parts)

    def only_backing_file(self, bdir):
        names = backing_data_entries(bdir)
        self.assertEqual(len(names), 1, "expected one backing entry in %s, got %r" % (bdir, names))
        return os.path.join(bdir, names[0])

    def expected_size(self, n):
        return expected_backing_size(n, self.CHUNK, self.CIPHER)

    def assertBackingSizes(self, bdir, plain_sizes, timeout=2.0):
        """The backing files in bdir have exactly the sizes the format predicts."""
        want = sorted(self.expected_size(n) for n in plain_sizes)

        def got():
            return sorted(os.lstat(os.path.join(bdir, n)).st_size for n in backing_data_entries(bdir))
        wait_for(lambda: got() == want, timeout=timeout)
        self.assertEqual(got(), want, "backing sizes (chunk %d, %s) for plaintext sizes %r"
                         % (self.CHUNK, self.CIPHER, sorted(plain_sizes)))


def parametrize(base, namespace, kind="full", holes=None):
    """Creates one TestCase class per config in `namespace` from mixin `base`."""
    for cipher, chunk in config_matrix(kind):
        name = "%s_%s_%s" % (base.__name__, short_cipher(cipher), chunk_label(chunk))
        if holes:
            name += "_holes_" + holes
        cls = type(name, (base, MountedTestCase), {"CIPHER": cipher, "CHUNK": chunk, "HOLES": holes,
                                                     "__module__": namespace["__name__"]})
        namespace[name] = cls


def main():
    if not os.path.exists(BIN):
        sys.stderr.write("wardfs binary not found: %s (set WARDFS_BIN)\n" % BIN)
        sys.exit(1)
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        sys.stderr.write("these tests need root and /dev/fuse\n")
    sys.stderr.write("wardfs integration: bin=%s seed=%d (WARDFS_IT_SEED to repeat)\n" % (BIN, SEED))
    unittest.main(verbosity=2)


# ---------------------------------------------------------------- tree snapshots

def tree_snapshot(top, mtime=True, xattrs=True, owner=True, dir_mtime=True):
    """relpath -> tuple describing the entry, plus the hard-link groups, for comparing trees."""
    entries = {}
    by_ino = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for n in sorted(dirnames + filenames):
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            rec = {"type": kind, "mode": stat.S_IMODE(st.st_mode)}
            if owner:
                rec["owner"] = (st.st_uid, st.st_gid)
            if stat.S_ISREG(kind):
                rec["size"] = st.st_size
                rec["sha256"] = sha256_file(path)
                by_ino.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(kind):
                rec["target"] = os.readlink(path)
                rec.pop("mode")  # symlink modes are always 0777 and not settable
            if mtime and (dir_mtime or not stat.S_ISDIR(kind)):
                rec["mtime_ns"] = st.st_mtime_ns
            if xattrs and not stat.S_ISLNK(kind):
                try:
                    names = sorted(n for n in os.listxattr(path, follow_symlinks=False)
                                   if n.startswith("user."))
                    rec["xattrs"] = {n: os.getxattr(path, n, follow_symlinks=False) for n in names}
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP,):
                        raise
            entries[rel] = rec
    links = sorted(tuple(sorted(v)) for v in by_ino.values() if len(v) > 1)
    return {"entries": entries, "hardlinks": links}


def snapshot_diff(a, b):
    """Human-readable differences between two tree snapshots ([] when equal)."""
    out = []
    ea, eb = a["entries"], b["entries"]
    for k in sorted(set(ea) - set(eb)):
        out.append("only in first: %r" % k)
    for k in sorted(set(eb) - set(ea)):
        out.append("only in second: %r" % k)
    for k in sorted(set(ea) & set(eb)):
        if ea[k] != eb[k]:
            fields = sorted(f for f in set(ea[k]) | set(eb[k]) if ea[k].get(f) != eb[k].get(f))
            out.append("%r: %s" % (k, ", ".join("%s %r != %r" % (f, ea[k].get(f), eb[k].get(f))
                                                 for f in fields)))
    if a["hardlinks"] != b["hardlinks"]:
        out.append("hard links %r != %r" % (a["hardlinks"], b["hardlinks"]))
    return out


def build_sample_tree(top, chunk=4096, with_special=True, with_xattrs=True):
    """A small tree with the interesting sizes, symlinks, subdirs, modes and times."""
    os.makedirs(top)
    sizes = sorted({0, 1, 4095, 4096, 4097, chunk - 1, chunk, chunk + 1, 3 * chunk + 5, 1 << 20})
    for i, n in enumerate(sizes):
        write_file(os.path.join(top, "file-%d" % n), pattern(n, 1000 + i), fsync=False)
    os.makedirs(os.path.join(top, "sub", "deeper", "deepest"))
    os.mkdir(os.path.join(top, "empty-dir"))
    write_file(os.path.join(top, "sub", "a.txt"), b"alpha\n" * 100, fsync=False)
    write_file(os.path.join(top, "sub", "deeper", "b.bin"), pattern(12345, 7), fsync=False)
    write_file(os.path.join(top, "sub", "deeper", "deepest", "c"), b"c", fsync=False)
    write_file(os.path.join(top, "exec.sh"), b"#!/bin/sh\necho hi\n", fsync=False)
    os.chmod(os.path.join(top, "exec.sh"), 0o755)
    write_file(os.path.join(top, "private"), b"secret-ish", fsync=False)
    os.chmod(os.path.join(top, "private"), 0o600)
    write_file(os.path.join(top, "unicode-ñ-日本"), "ünïcødé".encode(), fsync=False)
    os.symlink("sub/a.txt", os.path.join(top, "link-rel"))
    os.symlink("../file-1", os.path.join(top, "sub", "link-up"))
    os.symlink("/etc/hostname", os.path.join(top, "link-abs"))
    os.symlink("does/not/exist", os.path.join(top, "link-dangling"))
    os.symlink("sub", os.path.join(top, "link-dir"))
    os.link(os.path.join(top, "sub", "a.txt"), os.path.join(top, "hardlink-to-a"))
    if with_special:
        os.mkfifo(os.path.join(top, "fifo"), 0o644)
    if with_xattrs:
        try:
            os.setxattr(os.path.join(top, "sub", "a.txt"), "user.note", b"xattr value")
            os.setxattr(os.path.join(top, "sub"), "user.dirnote", b"on a directory")
        except OSError as e:
            if e.errno != errno.ENOTSUP:
                raise
    t = 1_600_000_000_000_000_000
    for i, (dirpath, dirnames, filenames) in enumerate(sorted(os.walk(top, topdown=False))):
        for j, n in enumerate(sorted(filenames + dirnames)):
            os.utime(os.path.join(dirpath, n), ns=(t + i * 10**9 + j, t + i * 10**9 + j * 1000 + 7),
                     follow_symlinks=False)
    return top


def drop_tree_cache(top):
    for dirpath, _, filenames in os.walk(top):
        for n in filenames:
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                drop_cache(p)
