"""An sshfs backend on loopback for the storage tests: a private sshd on a free port, with
its own host key, config and authorized key in a temp directory, and two sshfs mounts of
one directory through it (client-a and client-b stand for two machines).

sshfs passes no locks between its mounts (SFTP has none), so the lease of a second
read-write mount can only see the first through its heartbeat.

Everything it starts is stopped again by stop(), which the tests call at exit, on SIGTERM
and on failure alike; an error part way through start() stops what had started.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

SSHD = "/usr/sbin/sshd"


class SshfsUnavailable(Exception):
    """sshd, ssh-keygen or sshfs is missing, or sshd cannot start here."""


def _run(args, timeout=60):
    return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, text=True)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


class SshfsExport:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="wardfs-sshfs-", dir="/tmp")
        os.chmod(self.root, 0o755)  # sshd refuses keys under group/world-writable dirs
        self.export = os.path.join(self.root, "export")
        self.client_a = os.path.join(self.root, "client-a")
        self.client_b = os.path.join(self.root, "client-b")
        self.keys = os.path.join(self.root, "keys")
        self.log = os.path.join(self.root, "sshd.log")
        self.port = None
        self.sshd = None

    def start(self):
        try:
            self._start()
        except Exception:
            self.stop()
            raise

    def _start(self):
        for tool in (SSHD, shutil.which("ssh-keygen"), shutil.which("sshfs"),
                     shutil.which("ssh")):
            if not tool or not os.path.exists(tool):
                raise SshfsUnavailable("sshd, ssh, ssh-keygen or sshfs not installed "
                                       "(Debian: openssh-server, sshfs; scripts/install-deps)")
        for d in (self.export, self.client_a, self.client_b, self.keys):
            os.mkdir(d, 0o700)
        host_key = os.path.join(self.keys, "host")
        user_key = os.path.join(self.keys, "user")
        for key in (host_key, user_key):
            p = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
            if p.returncode != 0:
                raise SshfsUnavailable("ssh-keygen failed: " + p.stdout)
        authorized = os.path.join(self.keys, "authorized_keys")
        shutil.copy(user_key + ".pub", authorized)
        os.chmod(authorized, 0o600)
        self.port = _free_port()
        config = os.path.join(self.keys, "sshd_config")
        with open(config, "w") as f:
            f.write("\n".join([
                "ListenAddress 127.0.0.1:%d" % self.port,
                "HostKey " + host_key,
                "AuthorizedKeysFile " + authorized,
                "PidFile none",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "Subsystem sftp internal-sftp",
                ""]))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation dir
        self.sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.sshd.poll() is not None or time.monotonic() > deadline:
                raise SshfsUnavailable("sshd did not start: " + self._log_tail())
            time.sleep(0.1)
        known = os.path.join(self.keys, "known_hosts")
        with open(host_key + ".pub") as f:
            with open(known, "w") as k:
                k.write("[127.0.0.1]:%d %s" % (self.port, f.read()))
        for client in (self.client_a, self.client_b):
            p = _run(["sshfs", "root@127.0.0.1:" + self.export, client,
                      "-p", str(self.port), "-o", "IdentityFile=" + user_key,
                      "-o", "UserKnownHostsFile=" + known, "-o", "BatchMode=yes",
                      # No client caches: each wardfs daemon must see the other's writes.
                      "-o", "cache=no", "-o", "dir_cache=no",
                      "-o", "allow_other"], timeout=30)
            if p.returncode != 0 or not _is_mounted(client):
                raise SshfsUnavailable("sshfs mount failed: %s %s" % (p.stdout,
                                                                       self._log_tail()))

    def _listening(self):
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        for client in (self.client_a, self.client_b):
            if _is_mounted(client):
                _run(["fusermount3", "-u", client], timeout=30)
            if _is_mounted(client):
                _run(["fusermount3", "-uz", client], timeout=30)
        if self.sshd is not None and self.sshd.poll() is None:
            # Our own listener; its sessions ended with the sshfs clients unmounted above.
            self.sshd.send_signal(signal.SIGTERM)
            try:
                self.sshd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.sshd.kill()
                self.sshd.wait(timeout=10)
        self.sshd = None
        shutil.rmtree(self.root, ignore_errors=True)
