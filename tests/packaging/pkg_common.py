"""Helpers shared by the packaging tests, on top of the integration harness (which gives
mount tables, process helpers and cleanup of volumes at exit)."""

import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

import wardfs_harness as h  # noqa: E402  (tests/integration, on PYTHONPATH)

REPO = h.REPO
BIN = h.BIN
MARKER = b"wardfs-packaging-plaintext-marker-"


def mounted(path):
    """Whether `path` (already absolute and free of symlinks) is a FUSE mount point, from
    /proc/self/mountinfo alone: unlike h.is_fuse_mounted (realpath, which stats the
    path) this sends the daemon no request, so polling with it does not reset --idle."""
    return any(m["mountpoint"] == path and m["fstype"].startswith("fuse") for m in h.mounts())


def init_volume(binary=None, root=None):
    """A fresh volume (cipher/, plain/, key) made with `binary init`; returns its paths."""
    root = os.path.realpath(root or tempfile.mkdtemp(prefix="wardfs-pkg-", dir="/tmp"))
    vol = {"root": root, "cipher": os.path.join(root, "cipher"), "plain": os.path.join(root, "plain"),
           "key": os.path.join(root, "key")}
    os.mkdir(vol["plain"])
    fd = os.open(vol["key"], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (os.urandom(32).hex() + "\n").encode())
    os.close(fd)
    p = h.run([binary or BIN, "init", vol["cipher"], "--keyfile", vol["key"]])
    if p.returncode != 0:
        raise h.HarnessError("wardfs init failed\n" + h.describe(p))
    return vol


def cleanup_volume(vol):
    """Unmounts (lazily if need be) and removes the volume's directory."""
    for _ in range(3):
        if h.is_fuse_mounted(vol["plain"]):
            subprocess.run(["umount", "-l", vol["plain"]], stderr=subprocess.DEVNULL)
    h.wait_for(lambda: not h.wardfs_pids(vol["root"]), timeout=10)
    for pid in h.wardfs_pids(vol["root"]):
        os.kill(pid, 9)
    if not h.is_fuse_mounted(vol["plain"]):
        subprocess.run(["rm", "-rf", vol["root"]])


def assert_round_trip(test, vol, name="data.bin"):
    """Writes through the mount, reads it back, and checks the backing directory holds
    ciphertext only: no plaintext name, no plaintext bytes, sizes as the format says."""
    payload = MARKER + os.urandom(3000) + MARKER
    path = os.path.join(vol["plain"], name)
    with open(path, "wb") as f:
        f.write(payload)
    with open(path, "rb") as f:
        test.assertEqual(f.read(), payload, "plaintext view of " + path)
    test.assertEqual(os.listdir(vol["plain"]), [name])
    backing = h.backing_data_entries(vol["cipher"])
    test.assertEqual(len(backing), 1, "one backing file for one plaintext file: %r" % backing)
    test.assertNotIn(name.split(".")[0], backing[0], "plaintext name in the backing dir")
    with open(os.path.join(vol["cipher"], backing[0]), "rb") as f:
        data = f.read()
    test.assertNotIn(MARKER, data, "plaintext bytes in the backing file")
    test.assertEqual(data[:4], b"WDFS", "backing file starts with the wardfs header")
    test.assertEqual(len(data), h.expected_backing_size(len(payload), 4096, "aes-256-gcm"))
    return payload


class NotifyListener:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET (path or abstract)."""

    def __init__(self, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "wardfs-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.address = "@" + name
            self.dir = None
        else:
            self.dir = tempfile.mkdtemp(prefix="wardfs-notify-")
            self.address = os.path.join(self.dir, "notify.sock")
            self.sock.bind(self.address)

    def receive(self, timeout):
        """The next datagram as a dict of its KEY=VALUE lines, or None on timeout."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return None
        return dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)

    def wait_for_key(self, key, timeout):
        """Messages until one carries `key`; returns (that message, all messages seen)."""
        seen = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.receive(max(0.05, deadline - time.monotonic()))
            if msg is None:
                break
            seen.append(msg)
            if key in msg:
                return msg, seen
        return None, seen

    def close(self):
        self.sock.close()
        if self.dir:
            subprocess.run(["rm", "-rf", self.dir])
