"""A one-node GlusterFS volume on loopback for the storage tests: a private glusterd, a
volume of one brick (`force`: the brick sits on the root file system) and two client
mounts of it, standing for two machines that share the volume.

Everything it starts is stopped again by stop(), which the tests call at exit, on
SIGTERM and on failure alike; an error part way through start() stops what had started.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

GLUSTERD_PORT = 24007


class GlusterUnavailable(Exception):
    """glusterd (or its CLI, or the FUSE client) is missing or cannot start here."""


# The gluster tools live in sbin, which a non-login PATH may lack.
os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"


SHARED_VOLUME_OPTIONS = ("performance.write-behind", "performance.quick-read",
                         "performance.io-cache", "performance.read-ahead",
                         "performance.stat-prefetch", "performance.open-behind",
                         "performance.readdir-ahead")


def _run(args, timeout=60):
    return subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=timeout, text=True)


def _port_in_use(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _is_mounted(path):
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


class GlusterVolume:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="wardfs-gluster-", dir="/tmp")
        self.name = "wardfs-it-%d" % os.getpid()
        self.work = os.path.join(self.root, "glusterd")
        self.brick = os.path.join(self.root, "brick")
        self.pidfile = os.path.join(self.root, "glusterd.pid")
        self.log = os.path.join(self.root, "glusterd.log")
        self.client_a = os.path.join(self.root, "client-a")
        self.client_b = os.path.join(self.root, "client-b")
        self.glusterd_pid = None
        self.created = False

    def gluster(self, *args, timeout=60):
        return _run(["gluster", "--mode=script"] + list(args), timeout=timeout)

    def _check(self, p, what):
        if p.returncode != 0:
            raise RuntimeError("%s failed (exit %d):\n%s" % (what, p.returncode, p.stdout))

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self):
        for tool in ("glusterd", "gluster", "mount.glusterfs"):
            if not shutil.which(tool):
                raise GlusterUnavailable("%s not found: scripts/install-deps installs "
                                         "glusterfs-server and glusterfs-client" % tool)
        if _port_in_use(GLUSTERD_PORT):
            raise GlusterUnavailable("port %d is taken (a glusterd already runs here?); the "
                                     "test starts a private one" % GLUSTERD_PORT)
        for d in (self.work, self.brick, self.client_a, self.client_b):
            os.mkdir(d)
        self._start_glusterd()
        self._create_volume()
        for mnt in (self.client_a, self.client_b):
            log = os.path.join(self.root, os.path.basename(mnt) + ".log")
            self._check(_run(["mount", "-t", "glusterfs", "-o", "log-file=" + log,
                              "127.0.0.1:/" + self.name, mnt]),
                        "mount -t glusterfs on " + mnt)

    def _start_glusterd(self):
        vol = os.path.join(self.root, "glusterd.vol")
        with open(vol, "w") as f:
            f.write("volume management\n"
                    "    type mgmt/glusterd\n"
                    "    option working-directory %s\n"
                    "    option transport-type socket\n"
                    "    option transport.socket.listen-port %d\n"
                    "    option ping-timeout 0\n"
                    "    option event-threads 1\n"
                    "end-volume\n" % (self.work, GLUSTERD_PORT))
        p = _run(["glusterd", "-f", vol, "-p", self.pidfile, "-l", self.log,
                  "--log-level=WARNING"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(self.pidfile):
                with open(self.pidfile) as f:
                    text = f.read().strip()
                if text:
                    self.glusterd_pid = int(text)
            if self.glusterd_pid and self.gluster("volume", "list", timeout=10).returncode == 0:
                return
            time.sleep(0.3)
        raise GlusterUnavailable("glusterd did not start (exit %d): %s%s"
                                 % (p.returncode, p.stdout, self._log_tail()))

    def _create_volume(self):
        # glusterd refuses "localhost" and 127.x for a brick; this host's name (which may
        # well resolve to 127.0.1.1) is accepted and still stays on loopback.
        host = socket.gethostname()
        p = self.gluster("volume", "create", self.name, "%s:%s" % (host, self.brick), "force")
        self._check(p, "gluster volume create")
        self.created = True
        # What the README asks of a volume that wardfs mounts with -o shared from several
        # clients: no client-side caching of data or metadata beyond the kernel's, and
        # writes sent at once (write-behind would hold them past the lock's release).
        for option in SHARED_VOLUME_OPTIONS:
            self._check(self.gluster("volume", "set", self.name, option, "off"),
                        "gluster volume set " + option)
        self._check(self.gluster("volume", "start", self.name), "gluster volume start")

    def _log_tail(self):
        try:
            with open(self.log, errors="replace") as f:
                return "\n--- glusterd log tail ---\n" + "".join(f.readlines()[-15:])
        except OSError:
            return ""

    def stop(self):
        """Unmounts both clients, stops and deletes the volume (which ends its brick
        process), stops glusterd and removes the temp dir. Best effort, never raises."""
        for mnt in (self.client_a, self.client_b):
            for args in (["umount", mnt], ["umount", "-l", mnt]):
                if _is_mounted(mnt):
                    try:
                        _run(args, timeout=30)
                    except Exception as e:  # noqa: BLE001
                        sys.stderr.write("gluster cleanup: %s: %s\n" % (" ".join(args), e))
        if self.created and self.glusterd_pid:
            for args in (("volume", "stop", self.name, "force"), ("volume", "delete", self.name)):
                try:
                    self.gluster(*args, timeout=60)
                except Exception as e:  # noqa: BLE001
                    sys.stderr.write("gluster cleanup: %s: %s\n" % (" ".join(args), e))
            self.created = False
        self._kill_brick()
        if self.glusterd_pid:
            self._kill(self.glusterd_pid)
            self.glusterd_pid = None
        try:  # glusterd leaves the volume's empty run directory behind
            os.rmdir(os.path.join("/var/run/gluster/vols", self.name))
        except OSError:
            pass
        if not any(_is_mounted(m) for m in (self.client_a, self.client_b)):
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill_brick(self):
        # Normally gone with `volume stop`; a brick process left over would keep its port.
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"glusterfsd") and self.brick.encode() in cmd:
                self._kill(int(pid))

    @staticmethod
    def _kill(pid):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
