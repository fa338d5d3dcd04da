"""Metadata that archivers and copiers restore reads back exactly as on a local directory:
a tree with owners, modes (setuid, setgid, sticky), nanosecond times, symlinks, hard links
and a FIFO is extracted with `tar -xp` and copied with `rsync -aH` into both a plain
directory and the mount, and the `lstat` of every entry is compared field by field. Also
`touch -a`/`touch -m` and utimensat with UTIME_OMIT/UTIME_NOW, compared the same way."""

import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile

from wardfs_harness import MountedTestCase, main

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
AT_FDCWD = -100

# (relative path, kind, mode, uid, gid, size or target, mtime ns)
TREE = [
    ("top", "dir", 0o755, 0, 0, None, 1_500_000_000_111_111_111),
    ("top/private", "dir", 0o700, 1000, 1000, None, 1_500_000_001_222_222_222),
    ("top/shared", "dir", 0o2775, 0, 4242, None, 1_500_000_002_333_333_333),
    ("top/tmp", "dir", 0o1777, 0, 0, None, 1_500_000_003_444_444_444),
    ("top/empty", "file", 0o644, 0, 0, 0, 1_400_000_000_000_000_001),
    ("top/one", "file", 0o600, 1000, 1000, 1, 1_400_000_001_999_999_999),
    ("top/chunk", "file", 0o640, 1234, 5678, 4096, 1_400_000_002_500_000_000),
    ("top/tool", "file", 0o4755, 0, 0, 10_000, 1_400_000_003_000_000_123),
    ("top/group-tool", "file", 0o2755, 0, 4242, 70_000, 1_400_000_004_000_000_456),
    ("top/private/secret", "file", 0o400, 1000, 1000, 333, 1_400_000_005_000_000_789),
    ("top/shared/report", "file", 0o664, 1000, 4242, 5000, 1_400_000_006_000_000_000),
    ("top/tmp/scratch", "file", 0o666, 65534, 65534, 12, 1_400_000_007_000_000_001),
    ("top/link", "symlink", None, 1234, 5678, "chunk", 1_400_000_008_000_000_002),
    ("top/dangling", "symlink", None, 0, 0, "no/such/target", 1_400_000_009_000_000_003),
    ("top/fifo", "fifo", 0o620, 1000, 1000, None, 1_400_000_010_000_000_004),
]
HARD_LINK = ("top/shared/chunk-again", "top/chunk")


def utimensat(path, atime_ns, mtime_ns, follow=True):
    """utimensat(2) with UTIME_NOW / UTIME_OMIT allowed in either field."""
    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    def ts(ns):
        if ns in (UTIME_NOW, UTIME_OMIT):
            return Timespec(0, ns)
        return Timespec(ns // 1_000_000_000, ns % 1_000_000_000)

    libc = ctypes.CDLL(None, use_errno=True)
    times = (Timespec * 2)(ts(atime_ns), ts(mtime_ns))
    flags = 0 if follow else 0x100  # AT_SYMLINK_NOFOLLOW
    if libc.utimensat(AT_FDCWD, os.fsencode(path), times, flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def build_tree(root):
    for rel, kind, mode, uid, gid, what, _ in TREE:
        path = os.path.join(root, rel)
        if kind == "dir":
            os.mkdir(path)
        elif kind == "file":
            with open(path, "wb") as f:
                f.write((hashlib.sha256(rel.encode()).digest() * (what // 32 + 1))[:what])
        elif kind == "symlink":
            os.symlink(what, path)
        elif kind == "fifo":
            os.mkfifo(path)
        os.lchown(path, uid, gid)
        if mode is not None:
            os.chmod(path, mode)  # after chown, which clears setuid/setgid
    os.link(os.path.join(root, HARD_LINK[1]), os.path.join(root, HARD_LINK[0]))
    for rel, _, _, _, _, _, mtime in reversed(TREE):  # children before their directory
        utimensat(os.path.join(root, rel), mtime - 7_000_000_000, mtime, follow=False)


def snapshot(root):
    """Every entry under root: type, mode, owner, size, link count, mtime (ns), and the
    content hash or link target. atime is left out: extraction itself may read files."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entry = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)),
                     "owner": (st.st_uid, st.st_gid), "nlink": st.st_nlink,
                     "mtime_ns": st.st_mtime_ns}
            if stat.S_ISREG(st.st_mode):
                entry["size"] = st.st_size
                with open(path, "rb") as f:
                    entry["sha256"] = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(path)
                entry["size"] = st.st_size
            out[os.path.relpath(path, root)] = entry
    return out


class Preserve(MountedTestCase):
    def setUp(self):
        super().setUp()
        self.work = tempfile.mkdtemp(prefix="wardfs-preserve-", dir="/var/tmp")
        self.addCleanup(shutil.rmtree, self.work, True)
        self.src = os.path.join(self.work, "src")
        os.mkdir(self.src)
        build_tree(self.src)
        self.want = snapshot(self.src)
        # The source itself must hold what TREE says, or the comparison proves little.
        self.assertEqual(self.want["top/tool"]["mode"], oct(0o4755))
        self.assertEqual(self.want["top/chunk"]["nlink"], 2)
        self.assertEqual(self.want["top/private"]["mtime_ns"], 1_500_000_001_222_222_222)

    def restore_both(self, restore):
        plain = os.path.join(self.work, "plain")
        os.mkdir(plain)
        restore(plain)
        restore(self.d)
        reference = snapshot(plain)
        self.assertEqual(reference, self.want, "the plain directory restores the source")
        self.assertEqual(snapshot(self.d), reference, "the mount restores as a plain directory")
        # And from the daemon, not only from the kernel's caches.
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
        self.assertEqual(snapshot(self.d), reference, "after the kernel dropped its caches")

    def test_tar_extract(self):
        archive = os.path.join(self.work, "tree.tar")
        subprocess.run(["tar", "--numeric-owner", "--format=posix", "-cf", archive, "-C", self.src, "top"],
                       check=True)
        self.restore_both(lambda dest: subprocess.run(
            ["tar", "--numeric-owner", "-xpf", archive, "-C", dest], check=True))

    def test_rsync_archive(self):
        self.restore_both(lambda dest: subprocess.run(
            ["rsync", "-aH", "--numeric-ids", self.src + "/", dest + "/"], check=True))

    def test_touch_and_utime_omit_now(self):
        plain = os.path.join(self.work, "plain")
        os.mkdir(plain)
        results = {}
        for top in (plain, self.d):
            path = os.path.join(top, "f")
            with open(path, "wb") as f:
                f.write(b"x")
            utimensat(path, 1_000_000_000_000_000_001, 1_100_000_000_000_000_002)
            subprocess.run(["touch", "-a", "-d", "@1200000000.5", path], check=True)
            after_a = os.stat(path)
            subprocess.run(["touch", "-m", "-d", "@1300000000.25", path], check=True)
            after_m = os.stat(path)
            utimensat(path, UTIME_OMIT, 1_400_000_000_000_000_003)
            after_omit = os.stat(path)
            utimensat(path, UTIME_NOW, UTIME_OMIT)
            after_now = os.stat(path)
            results[top] = [(after_a.st_atime_ns, after_a.st_mtime_ns),
                            (after_m.st_atime_ns, after_m.st_mtime_ns),
                            (after_omit.st_atime_ns, after_omit.st_mtime_ns),
                            after_now.st_mtime_ns]
            self.assertGreater(after_now.st_atime_ns, 1_700_000_000_000_000_000, top)
        self.assertEqual(results[plain], [(1_200_000_000_500_000_000, 1_100_000_000_000_000_002),
                                          (1_200_000_000_500_000_000, 1_300_000_000_250_000_000),
                                          (1_200_000_000_500_000_000, 1_400_000_000_000_000_003),
                                          1_400_000_000_000_000_003])
        self.assertEqual(results[self.d], results[plain])


if __name__ == "__main__":
    main()
