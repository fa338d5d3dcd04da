"""Random operations for the model-based tester: a seeded generator and an executor that
applies each operation to a root directory (the wardfs mount, or a plain reference directory
on the host file system) and returns a comparable outcome.

An operation is a plain tuple (name, args...) so a failing sequence prints as Python and can be
replayed verbatim. File descriptors are referred to by slot numbers (0..SLOTS-1): an operation
on a slot that is not open is skipped on both sides, so any subsequence of a recorded sequence
is again a valid sequence (what the shrinker needs)."""

import ctypes
import errno
import hashlib
import mmap
import os
import random
import stat

SLOTS = 4
NAMES = ("a", "b", "c", "d", "e", "f")
XATTR_NAMES = ("user.k0", "user.k1", "user.long-attribute-name-2")
OPEN_FLAGS = (
    ("rdwr", os.O_RDWR),
    ("rdonly", os.O_RDONLY),
    ("wronly", os.O_WRONLY),
    ("append", os.O_WRONLY | os.O_APPEND),
    ("rdwr-append", os.O_RDWR | os.O_APPEND),
    ("creat", os.O_RDWR | os.O_CREAT),
    ("creat-trunc", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    ("creat-excl", os.O_RDWR | os.O_CREAT | os.O_EXCL),
    ("trunc", os.O_RDWR | os.O_TRUNC),
)
FLAG_BY_NAME = dict(OPEN_FLAGS)


def data_for(seed, n):
    """n deterministic bytes for a write; seed is part of the recorded operation."""
    return random.Random(seed).randbytes(n)


def outcome(fn):
    """('ok', value) or ('err', errno name): what both sides must agree on."""
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, str(e.errno)))


class Side:
    """One root directory and its open slots."""

    def __init__(self, root):
        self.root = root
        self.fds = [None] * SLOTS

    def path(self, rel):
        return os.path.join(self.root, rel)

    def close_all(self):
        for i, fd in enumerate(self.fds):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                self.fds[i] = None

    def apply(self, op):
        """Runs op; returns its outcome, or None when it was skipped (slot not open)."""
        name, args = op[0], op[1:]
        if name == "close":
            slot = args[0]
            if self.fds[slot] is None:
                return None
            fd, self.fds[slot] = self.fds[slot], None
            return outcome(lambda: os.close(fd))
        if name in SLOT_OPS:
            slot = args[0]
            if self.fds[slot] is None:
                return None
            return outcome(lambda: SLOT_OPS[name](self, self.fds[slot], *args[1:]))
        return outcome(lambda: PATH_OPS[name](self, *args))


# ---------------------------------------------------------------- path operations

def _open(side, slot, rel, flag_name):
    if side.fds[slot] is not None:
        os.close(side.fds[slot])
        side.fds[slot] = None
    side.fds[slot] = os.open(side.path(rel), FLAG_BY_NAME[flag_name], 0o644)
    return None


def _truncate(side, rel, size):
    os.truncate(side.path(rel), size)


def _mmap_write(side, rel, off, n, seed):
    """Writes through a shared mapping: FUSE must turn dirty pages into writes."""
    fd = os.open(side.path(rel), os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return "empty"
        off = off % size
        n = min(n, size - off)
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[off:off + n] = data_for(seed, n)
            m.flush()
        return n
    finally:
        os.close(fd)


def _read_path(side, rel):
    with open(side.path(rel), "rb") as f:
        return f.read()


PATH_OPS = {
    "open": _open,
    "truncate": _truncate,
    "rename": lambda s, a, b: os.rename(s.path(a), s.path(b)),
    "link": lambda s, a, b: os.link(s.path(a), s.path(b)),
    "unlink": lambda s, a: os.unlink(s.path(a)),
    "mkdir": lambda s, a: os.mkdir(s.path(a), 0o755),
    "rmdir": lambda s, a: os.rmdir(s.path(a)),
    "chmod": lambda s, a, m: os.chmod(s.path(a), m),
    "setxattr": lambda s, a, k, seed, n: os.setxattr(s.path(a), k, data_for(seed, n)),
    "getxattr": lambda s, a, k: os.getxattr(s.path(a), k),
    "removexattr": lambda s, a, k: os.removexattr(s.path(a), k),
    "mmap_write": _mmap_write,
    "read_path": _read_path,
}

# ---------------------------------------------------------------- slot operations


def _write(side, fd, n, seed):
    return os.write(fd, data_for(seed, n))


# fallocate modes the model compares (linux/falloc.h); the host file system must be one that
# does both (ext4, xfs, btrfs), as the reference directory's is.
FALLOC_MODES = {
    "punch": 0x02 | 0x01,      # PUNCH_HOLE | KEEP_SIZE
    "zero": 0x10,              # ZERO_RANGE: may grow the file
    "zero-keep": 0x10 | 0x01,  # ZERO_RANGE | KEEP_SIZE
}
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def _fallocate(side, fd, mode_name, off, n):
    if _libc.fallocate(fd, FALLOC_MODES[mode_name], off, n) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _copy_range(side, fd, rel, off_in, off_out, n):
    """copy_file_range from the slot's file into the file at rel (which may be the same one:
    overlapping ranges fail alike). Offsets are explicit, so no file position moves."""
    out = os.open(side.path(rel), os.O_WRONLY)
    try:
        return os.copy_file_range(fd, out, n, off_in, off_out)
    finally:
        os.close(out)


SLOT_OPS = {
    "copy_range": _copy_range,
    "fallocate": _fallocate,
    "write": _write,
    "pwrite": lambda s, fd, off, n, seed: os.pwrite(fd, data_for(seed, n), off),
    "pread": lambda s, fd, off, n: os.pread(fd, n, off),
    "read": lambda s, fd, n: os.read(fd, n),
    "seek": lambda s, fd, off: os.lseek(fd, off, os.SEEK_SET),
    "ftruncate": lambda s, fd, size: os.ftruncate(fd, size),
    "fsync": lambda s, fd: os.fsync(fd),
    "fstat_size": lambda s, fd: os.fstat(fd).st_size,
}


# ---------------------------------------------------------------- generator

class Generator:
    """Chooses the next operation from the reference tree's current state, so most
    operations are valid, while some are deliberately not (both sides must fail alike)."""

    def __init__(self, seed, chunk):
        self.rng = random.Random(seed)
        self.chunk = chunk

    def _entries(self, ref_root):
        files, dirs = [], [""]
        for dirpath, dirnames, filenames in os.walk(ref_root):
            rel = os.path.relpath(dirpath, ref_root)
            rel = "" if rel == "." else rel
            dirs += [os.path.join(rel, d) for d in dirnames]
            files += [os.path.join(rel, f) for f in filenames]
        return sorted(files), sorted(dirs)

    def _new_path(self, dirs):
        parent = self.rng.choice(dirs)
        depth = parent.count("/") + 1 if parent else 0
        if depth >= 2:
            parent = ""
        return os.path.join(parent, self.rng.choice(NAMES))

    def _size(self):
        c = self.chunk
        return self.rng.choice([0, 1, 100, c - 1, c, c + 1, 2 * c + 7, 3 * c,
                                self.rng.randrange(0, 3 * c + 100)])

    def _len(self):
        c = self.chunk
        return self.rng.choice([1, 7, 512, c - 1, c, c + 1, self.rng.randrange(1, 2 * c + 50)])

    def _any_path(self, files, dirs):
        pool = files + dirs[1:]
        if pool and self.rng.random() < 0.85:
            return self.rng.choice(pool)
        return self._new_path(dirs)

    def next(self, ref_root, open_slots):
        files, dirs = self._entries(ref_root)
        r = self.rng
        slot = r.randrange(SLOTS)
        seed = r.randrange(1 << 30)
        table = [
            (12, lambda: ("open", slot, r.choice(files) if files and r.random() < 0.6
                          else self._new_path(dirs), r.choice(OPEN_FLAGS)[0])),
            (14, lambda: ("write", slot, self._len(), seed)),
            (14, lambda: ("pwrite", slot, self._size(), self._len(), seed)),
            (8, lambda: ("pread", slot, self._size(), self._len())),
            (3, lambda: ("read", slot, self._len())),
            (3, lambda: ("seek", slot, self._size())),
            (5, lambda: ("ftruncate", slot, self._size())),
            (4, lambda: ("truncate", self._any_path(files, dirs), self._size())),
            (3, lambda: ("fsync", slot)),
            (3, lambda: ("fstat_size", slot)),
            (4, lambda: ("fallocate", slot, r.choice(sorted(FALLOC_MODES)), self._size(),
                         self._len())),
            (4, lambda: ("copy_range", slot, r.choice(files) if files and r.random() < 0.8
                         else self._any_path(files, dirs), self._size(), self._size(), self._len())),
            (5, lambda: ("close", slot)),
            (5, lambda: ("rename", self._any_path(files, dirs), self._any_path(files, dirs)
                         if r.random() < 0.3 else self._new_path(dirs))),
            (4, lambda: ("link", self._any_path(files, dirs), self._new_path(dirs))),
            (4, lambda: ("unlink", self._any_path(files, dirs))),
            (4, lambda: ("mkdir", self._new_path(dirs))),
            (3, lambda: ("rmdir", self._any_path(files, dirs))),
            (2, lambda: ("chmod", self._any_path(files, dirs), r.choice([0o600, 0o644, 0o755, 0o400]))),
            (4, lambda: ("setxattr", self._any_path(files, dirs), r.choice(XATTR_NAMES), seed,
                         r.choice([0, 1, 40, 300]))),
            (3, lambda: ("getxattr", self._any_path(files, dirs), r.choice(XATTR_NAMES))),
            (2, lambda: ("removexattr", self._any_path(files, dirs), r.choice(XATTR_NAMES))),
            (3, lambda: ("mmap_write", self._any_path(files, dirs), self._size(), self._len(), seed)),
            (2, lambda: ("read_path", self._any_path(files, dirs))),
        ]
        if not open_slots:  # slot operations would be skipped: mostly open something first
            table[0] = (60, table[0][1])
        total = sum(w for w, _ in table)
        pick = r.uniform(0, total)
        for w, make in table:
            pick -= w
            if pick <= 0:
                op = make()
                break
        else:
            op = table[-1][1]()
        if op[0] in SLOT_OPS or op[0] == "close":
            if open_slots and r.random() < 0.9:
                op = (op[0], r.choice(sorted(open_slots))) + op[2:]
        return op


# ---------------------------------------------------------------- tree comparison

def snapshot(root):
    """relpath -> (type, mode, size, nlink, sha of content, xattrs) for every entry."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            rec = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)),
                   "nlink": st.st_nlink}
            if stat.S_ISREG(st.st_mode):
                rec["size"] = st.st_size
                fd = os.open(p, os.O_RDONLY) if st.st_mode & 0o400 else None
                if fd is not None:
                    try:
                        data = b""
                        while True:
                            b = os.read(fd, 1 << 20)
                            if not b:
                                break
                            data += b
                    finally:
                        os.close(fd)
                    rec["len_read"] = len(data)
                    rec["sha"] = hashlib.sha256(data).hexdigest()[:16]
            names = sorted(x for x in os.listxattr(p, follow_symlinks=False) if x.startswith("user."))
            rec["xattrs"] = {x: hashlib.sha256(os.getxattr(p, x, follow_symlinks=False)).hexdigest()[:12]
                             for x in names}
            out[rel] = rec
    return out


def diff_snapshots(got, want):
    lines = []
    for k in sorted(set(got) | set(want)):
        if k not in got:
            lines.append("missing in wardfs: %s %r" % (k, want[k]))
        elif k not in want:
            lines.append("extra in wardfs: %s %r" % (k, got[k]))
        elif got[k] != want[k]:
            fields = sorted(f for f in set(got[k]) | set(want[k]) if got[k].get(f) != want[k].get(f))
            lines.append("%s: " % k + ", ".join("%s wardfs=%r ref=%r" % (f, got[k].get(f), want[k].get(f))
                                                for f in fields))
    return lines
