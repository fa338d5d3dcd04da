"""Test volumes for the wardfs integration harness (wardfs_harness re-exports all of it):
a temp dir with a backing dir, a mount point and a key, driven through the CLI, and torn
down on failure, at exit and on SIGTERM so no test leaves a mount behind.

Environment knobs: WARDFS_IT_KEEP (see wardfs_harness); WARDFS_AUDIT_DIR, which defaults
to a private temp dir here so test volumes never log to /var/log/wardfs;
WARDFS_IT_BACKING_ROOT, a directory (e.g. on a network file system) in which each volume
gets its backing directory, the rest staying in /tmp (tests/storage uses it).
"""

import atexit
import os
import shutil
import signal
import sys
import tempfile

from wardfs_proc import (BIN, HarnessError, describe, is_fuse_mounted, kill_and_wait, run, wait_for,
                         wardfs_pids)

KEEP = os.environ.get("WARDFS_IT_KEEP") == "1"
BACKING_ROOT = os.environ.get("WARDFS_IT_BACKING_ROOT") or None

# Audit logs of test volumes go to a private directory, not /var/log/wardfs. Registered
# before the volume cleanup below, so it runs after it at exit.
if not os.environ.get("WARDFS_AUDIT_DIR"):
    os.environ["WARDFS_AUDIT_DIR"] = tempfile.mkdtemp(prefix="wardfs-test-audit-", dir="/tmp")
    atexit.register(shutil.rmtree, os.environ["WARDFS_AUDIT_DIR"], True)


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
    """A temp dir with cipher/ (backing), plain/ (mount point) and a key or pass file.

    Subclasses (tests/rotation's) may set the class attributes: root_prefix names the temp
    dir, write_key=False leaves the key file to `wardfs init --create-keyfile`, and
    log_tail_lines is how much of the daemon log a failure shows."""

    root_prefix = "wardfs-it-"
    write_key = True
    log_tail_lines = 30

    def __init__(self, cipher="aes-256-gcm", chunk=4096, holes=None, passphrase=None,
                 backing_root=None):
        self.cipher = cipher
        self.chunk = chunk
        self.holes = holes
        self.passphrase = passphrase
        self.root = tempfile.mkdtemp(prefix=self.root_prefix, dir="/tmp")
        # The backing directory elsewhere: its own temp dir there, removed with the volume.
        backing_root = backing_root or BACKING_ROOT
        self.backing_root = (tempfile.mkdtemp(prefix=self.root_prefix, dir=backing_root)
                             if backing_root else self.root)
        self.cipher_dir = os.path.join(self.backing_root, "cipher")
        self.plain = os.path.join(self.root, "plain")
        self.keyfile = os.path.join(self.root, "key")
        self.passfile = os.path.join(self.root, "pass")
        self.logfile = os.path.join(self.root, "wardfs.log")
        os.mkdir(self.plain)
        self.key = None
        if passphrase is not None:
            fd = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (passphrase + "\n").encode())
            os.close(fd)
        elif self.write_key:
            self.key = os.urandom(32)
            fd = os.open(self.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, (self.key.hex() + "\n").encode())
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
            args += ["--kdf-ops", "1", "--kdf-mem", "8388608", "--insecure-kdf"]
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

    def mount_point_beside(self, name, add_cleanup):
        """An empty directory root/<name> for a second mount of this volume (standing for
        another machine); `add_cleanup` (a TestCase's addCleanup) unmounts whatever is
        mounted there at the end, lazily if need be."""
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)

        def cleanup():
            if is_fuse_mounted(path):
                run([BIN, "unmount", path], timeout=60)
            if is_fuse_mounted(path):
                run(["fusermount3", "-uz", path], timeout=30)
        add_cleanup(cleanup)
        return path

    def mount_at(self, path, *options):
        """Mounts this volume at `path` too, each -o option given apart; its log goes to
        logfile.<basename of path>. Returns the CompletedProcess."""
        args = self.mount_args(mountpoint=path)
        args[args.index("--log-file") + 1] = self.logfile + "." + os.path.basename(path)
        for o in options:
            args += ["-o", o]
        return run(args, timeout=60)

    def log_text(self):
        """The daemon's log file so far; empty when there is none yet."""
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, n=None):
        n = self.log_tail_lines if n is None else n
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
            if kill_and_wait(self.daemon_pids(), sig, timeout=5):
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
            self.remove_dirs()

    def remove_dirs(self):
        shutil.rmtree(self.root, ignore_errors=True)
        if self.backing_root != self.root:
            shutil.rmtree(self.backing_root, ignore_errors=True)

    # -- paths
    def p(self, *parts):
        return os.path.join(self.plain, *parts)

    def b(self, *parts):
        return os.path.join(self.cipher_dir, *parts)
