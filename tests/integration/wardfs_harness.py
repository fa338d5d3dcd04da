"""Shared helpers for the wardfs integration tests: they really mount the filesystem.

Each test module is run by ctest as `/usr/bin/python3 <module>.py` with WARDFS_BIN set to
the built CLI. Only the Python standard library is used.

Tests import everything from this module; the helpers live in
  wardfs_format  format facts and the (cipher, chunk) configurations
  wardfs_proc    running commands, the mount table, finding daemons, polling
  wardfs_volume  Volume: init, mount, unmount, cleanup at exit
  wardfs_files   file, backing-directory and tree helpers
and this module keeps the test case bases and main().

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

import errno
import os
import random
import signal
import sys
import threading
import unittest

# Re-exported: the tests import these names from here.
from wardfs_format import (B64URL_RE, BACKING_META, CIPHERS, CONFIG_NAME, DIRID_NAME,  # noqa: F401
                           GENERATION_SIZE, HEADER_FLAG_HAS_HOLES, HEADER_SIZE, LEASE_NAME,
                           LOCK_NAME, LONG_NAME_RE, MOUNTS_DIR_NAME, NONCE_SIZE, OVERHEAD, REKEY_NAME,
                           SIDECAR_RE, TAG_SIZE, chunk_label,
                           config_matrix, expected_backing_size, parse_size, selected_chunks,
                           selected_ciphers, short_cipher, slot_offset, slot_size)
from wardfs_proc import (BIN, HERE, REPO, HarnessError, describe, is_fuse_mounted,  # noqa: F401
                         kill_and_wait, mount_entry, mounts, proc_mounts_text, run, wait_for,
                         wardfs_pids)
from wardfs_volume import _LIVE_VOLUMES, KEEP, Volume  # noqa: F401
from wardfs_files import (RENAME_EXCHANGE, RENAME_NOREPLACE, backing_data_entries,  # noqa: F401
                          backing_entries, build_sample_tree, drop_cache, drop_tree_cache,
                          first_diff, header_flags, patch_file, pattern, read_file, read_header,
                          read_uncached, renameat2, scan_backing, sha256_file, snapshot_diff,
                          tree_snapshot, walk_backing, write_file)

TEST_TIMEOUT = float(os.environ.get("WARDFS_IT_TEST_TIMEOUT", "300"))
LARGE = os.environ.get("WARDFS_IT_LARGE") == "1"


def _seed():
    s = os.environ.get("WARDFS_IT_SEED")
    return int(s) if s else random.SystemRandom().randrange(1 << 31)


SEED = _seed()


def _backing_skips():
    """WARDFS_IT_BACKING_SKIP: "test_name=reason;..." for tests whose subject the backing
    file system of WARDFS_IT_BACKING_ROOT lacks (tests/storage: sshfs has no xattrs,
    device nodes or hard link counts). Each is reported as skipped with its reason."""
    out = {}
    for item in os.environ.get("WARDFS_IT_BACKING_SKIP", "").split(";"):
        name, _, reason = item.partition("=")
        if name.strip():
            out[name.strip()] = reason.strip()
    return out


BACKING_SKIPS = _backing_skips()


class WardfsTestCase(unittest.TestCase):
    """Common assertions and a watchdog that kills a hung daemon so the suite never hangs."""

    maxDiff = 2000
    _volumes_for_watchdog = ()

    def setUp(self):
        if self._testMethodName in BACKING_SKIPS:
            self.skipTest("the backing file system cannot: " + BACKING_SKIPS[self._testMethodName])
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

    def mounted_volume(self, cipher=None, chunk=None, **kw):
        """A new volume of this test's own, initialised and mounted; destroyed after it."""
        v = self.new_volume(cipher, chunk, **kw)
        self._volumes_for_watchdog = (v,)
        v.init()
        v.mount()
        return v

    def kill_daemon(self, vol):
        """SIGKILLs the volume's one daemon as a crash would, leaving its mount dead."""
        pids = vol.daemon_pids()
        self.assertEqual(len(pids), 1, "one daemon: %r" % pids)
        self.assertTrue(kill_and_wait(pids), "the daemon exits on SIGKILL")


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
