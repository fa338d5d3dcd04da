"""Local leaks: what the daemon and the CLI leave for other local users to read or fake.
The --log-file and the audit log's directories are private whatever the umask; a control
socket answered by another user is refused; `audit show` does not let file names drive
the reader's terminal; weak Argon2id is refused at init and warned about at mount;
passphrase files must be private; the daemon's memory is locked as root."""

import hashlib
import json
import os
import socket
import stat
import subprocess
import tempfile

from wardfs_harness import BIN, WardfsTestCase, describe, is_fuse_mounted, main, run

CLIENT_UID = 4242  # the non-root user running the CLI
STRANGER_UID = 65534  # another local user (nobody)


def mode_of(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def as_user(uid):
    def drop():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return drop


class LocalLeaks(WardfsTestCase):
    def setUp(self):
        super().setUp()
        self._old_umask = os.umask(0o022)  # what a user's shell has
        self.addCleanup(os.umask, self._old_umask)

    def vol(self, **kw):
        v = self.new_volume(**kw)
        self._volumes_for_watchdog = (v,)
        return v

    def tempdir(self):
        d = tempfile.mkdtemp(prefix="wardfs-leaks-", dir="/tmp")
        self.addCleanup(run, ["rm", "-rf", d])
        return d

    def assertExit(self, p, code, what):
        self.assertEqual(p.returncode, code, "%s: expected exit %s\n%s" % (what, code, describe(p)))

    # ------------------------------------------------------------ files the daemon makes
    def test_log_file_and_missing_parents_are_private(self):
        v = self.vol()
        v.init()
        base = self.tempdir()
        v.logfile = os.path.join(base, "logs", "deep", "wardfs.log")
        audit_log = os.path.join(base, "audit", "deep", "vol.audit.jsonl")
        p = run(v.mount_args() + ["--audit-log", audit_log], timeout=60, via_files=True)
        self.assertExit(p, 0, "mount")
        with open(os.path.join(v.plain, "secret-name.txt"), "w") as f:
            f.write("x")
        os.setxattr(os.path.join(v.plain, "secret-name.txt"), "user.secret-attr", b"v")
        v.unmount()
        self.assertEqual(mode_of(v.logfile), 0o600, "the --log-file names files in plaintext")
        for d in ("logs", "logs/deep", "audit", "audit/deep"):
            self.assertEqual(mode_of(os.path.join(base, d)), 0o700,
                             "%s: a directory the daemon creates is private" % d)
        self.assertEqual(mode_of(audit_log), 0o600)

    def test_log_file_wider_mode_is_tightened(self):
        v = self.vol()
        v.init()
        with open(v.logfile, "w") as f:
            f.write("earlier run\n")
        os.chmod(v.logfile, 0o644)
        v.mount()
        self.assertEqual(mode_of(v.logfile), 0o600)
        v.unmount()
        with open(v.logfile) as f:
            self.assertTrue(f.read().startswith("earlier run\n"), "appended, not truncated")

    def test_log_file_symlink_or_foreign_owner_is_refused(self):
        v = self.vol()
        v.init()
        target = os.path.join(v.root, "elsewhere")
        os.symlink(target, v.logfile)
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 1, "--log-file through a symlink")
        self.assertIn(v.logfile, p.stderr)
        self.assertFalse(os.path.exists(target), "nothing is created through the link")
        self.assertFalse(is_fuse_mounted(v.plain))
        os.unlink(v.logfile)
        with open(v.logfile, "w"):
            pass
        os.chown(v.logfile, STRANGER_UID, STRANGER_UID)
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 1, "--log-file of another user")
        self.assertIn("owned by uid %d" % STRANGER_UID, p.stderr)
        self.assertFalse(is_fuse_mounted(v.plain))

    # ------------------------------------------------------------ control socket
    def fake_daemon(self, socket_path, uid):
        """A listener at socket_path whose listen() ran as `uid`: SO_PEERCRED reports that
        uid to clients. Returns (pid, read end): the child writes there the request it got."""
        r, w = os.pipe()
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.close(ready_r)
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(socket_path)
                os.chmod(socket_path, 0o666)
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                s.listen(1)
                os.write(ready_w, b"x")
                s.settimeout(20)
                conn, _ = s.accept()
                conn.settimeout(5)
                request = b""
                try:
                    while not request.endswith(b"\n"):
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                except OSError:
                    pass
                reply = {"mount_point": "/fake", "cipher_dir": "/fake", "pid": 1}
                try:
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                except OSError:
                    pass
                os.write(w, request or b"<none>")
            finally:
                os._exit(0)
        os.close(w)
        os.close(ready_w)
        self.addCleanup(self.reap, pid, r)
        ready = os.read(ready_r, 1)
        os.close(ready_r)
        self.assertEqual(ready, b"x", "the fake daemon did not start")
        return pid, r

    def reap(self, pid, fd):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)

    def client_setup(self):
        """A live wardfs mount point (root's daemon) and an XDG_RUNTIME_DIR for CLIENT_UID;
        the socket path its CLI tries first, where the tests put their own listeners."""
        base = self.tempdir()
        os.chmod(base, 0o755)
        mount_point = os.path.join(base, "mnt")
        os.mkdir(mount_point)
        # `status` asks a daemon only for a wardfs mount point.
        v = self.vol()
        v.init()
        p = run(v.mount_args(mountpoint=mount_point), timeout=60, via_files=True)
        self.assertEqual(p.returncode, 0, describe(p))
        self.addCleanup(run, [BIN, "unmount", mount_point], timeout=60)
        runtime = os.path.join(base, "runtime")
        os.mkdir(runtime, 0o700)
        os.chown(runtime, CLIENT_UID, CLIENT_UID)
        sock_dir = os.path.join(runtime, "wardfs")
        os.mkdir(sock_dir, 0o700)
        os.chown(sock_dir, CLIENT_UID, CLIENT_UID)
        digest = hashlib.sha256(os.path.realpath(mount_point).encode()).hexdigest()[:24]
        env = dict(os.environ, XDG_RUNTIME_DIR=runtime, HOME=base)
        return mount_point, sock_dir, os.path.join(sock_dir, digest + ".sock"), env

    def client_status(self, mount_point, env):
        p = subprocess.run([BIN, "status", mount_point, "--json"], env=env, timeout=30,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, preexec_fn=as_user(CLIENT_UID))
        p.stdout = p.stdout.decode(errors="replace")
        p.stderr = p.stderr.decode(errors="replace")
        return p

    def test_control_socket_answered_by_another_user_is_refused(self):
        mount_point, _, sock, env = self.client_setup()
        _, result = self.fake_daemon(sock, STRANGER_UID)
        p = self.client_status(mount_point, env)
        self.assertNotEqual(p.returncode, 0, "a stranger's answer was trusted\n" + describe(p))
        self.assertIn("uid %d" % STRANGER_UID, p.stderr)
        self.assertNotIn("/fake", p.stdout)
        self.assertEqual(os.read(result, 65536), b"<none>",
                         "the client sends nothing to a listener it does not trust")

    def test_control_socket_of_the_user_is_trusted(self):
        # The check above refuses strangers, not every listener.
        mount_point, _, sock, env = self.client_setup()
        _, result = self.fake_daemon(sock, CLIENT_UID)
        p = self.client_status(mount_point, env)
        self.assertExit(p, 0, "status from the user's own daemon")
        self.assertIn("/fake", p.stdout)
        self.assertIn(b"status", os.read(result, 65536))

    def test_control_socket_directory_must_be_private(self):
        mount_point, sock_dir, sock, env = self.client_setup()
        for owner, mode in ((STRANGER_UID, 0o755), (CLIENT_UID, 0o777)):
            os.chown(sock_dir, owner, owner)
            os.chmod(sock_dir, mode)
            if os.path.exists(sock):
                os.unlink(sock)
            # Whoever controls the directory could put any listener there, even one that
            # looks like the user's own.
            self.fake_daemon(sock, CLIENT_UID)
            p = self.client_status(mount_point, env)
            self.assertExit(p, 4, "socket directory owned by %d, mode %o" % (owner, mode))
            self.assertIn("control socket directory " + sock_dir, p.stderr)

    # ------------------------------------------------------------ audit show
    def test_audit_show_escapes_control_characters(self):
        log = os.path.join(self.tempdir(), "forged.audit.jsonl")
        nasty = "/a\x1b]0;owned\x07\x1b[2J\x7fb\u009b31mc\\d"
        record = {"seq": 1, "time": "2026-01-01T00:00:00.000000Z", "event": "create",
                  "result": "ok", "path": nasty,
                  "principal": {"uid": 0, "pid": 1, "program": "x\x1b[1m"},
                  "detail": {"note": "\x9b\u0085"}}
        with open(log, "w") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        p = run([BIN, "audit", "/nonexistent", "--audit-log", log, "show"])
        self.assertExit(p, 0, "audit show")
        for bad in ("\x1b", "\x07", "\x7f", "\u009b", "\u0085"):
            self.assertNotIn(bad, p.stdout, "raw control character %r printed" % bad)
        self.assertIn("/a\\x1b]0;owned\\x07\\x1b[2J\\x7fb\\u009b31mc\\\\d", p.stdout)
        p = run([BIN, "audit", "/nonexistent", "--audit-log", log, "show", "--json"])
        self.assertExit(p, 0, "audit show --json")
        self.assertEqual(json.loads(p.stdout)["path"], nasty, "JSON output keeps the exact name")
        self.assertNotIn("\x1b", p.stdout, "JSON escapes C0 itself")

    # ------------------------------------------------------------ secrets
    def test_weak_argon2id_refused_at_init_and_warned_at_mount(self):
        v = self.vol(passphrase="correct horse")
        args = [a for a in v.init_args() if a != "--insecure-kdf"]
        p = run(args)
        self.assertExit(p, 1, "init with 1 pass over 8 MiB")
        self.assertIn("too weak", p.stderr)
        v.init()  # the harness asks for --insecure-kdf explicitly
        p = v.mount()
        self.assertIn("WARNING", p.stderr)
        self.assertIn("Argon2id 1 passes over 8192 KiB", p.stderr)
        v.unmount()

    def test_passfile_must_be_private(self):
        v = self.vol(passphrase="correct horse")
        os.chmod(v.passfile, 0o644)
        p = run(v.init_args())
        self.assertExit(p, 1, "init with a world-readable passfile")
        self.assertIn("chmod 600 " + v.passfile, p.stderr)
        os.chmod(v.passfile, 0o600)
        os.chown(v.passfile, STRANGER_UID, STRANGER_UID)
        p = run(v.init_args())
        self.assertExit(p, 1, "init with another user's passfile")
        self.assertIn("owned by uid %d" % STRANGER_UID, p.stderr)

    def test_daemon_memory_is_locked_as_root(self):
        # OpenSSL keeps expanded AES keys in its own heap: only mlockall covers them.
        v = self.vol()
        v.init()
        v.mount()
        with open(os.path.join(v.plain, "f"), "wb") as f:
            f.write(os.urandom(1 << 20))
        status = {}
        for pid in v.daemon_pids():
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    status[key] = value.strip()
        v.unmount()
        locked_kb = int(status["VmLck"].split()[0])
        size_kb = int(status["VmSize"].split()[0])
        self.assertGreater(locked_kb, size_kb // 2, "VmLck %s of VmSize %s" % (locked_kb, size_kb))


if __name__ == "__main__":
    main()
