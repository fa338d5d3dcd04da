"""File, backing-directory and tree helpers for the wardfs integration harness
(wardfs_harness re-exports all of it): reading and writing through the mount, evicting
the page cache, listing and scanning backing directories, snapshots of whole trees.
"""

import ctypes
import errno
import hashlib
import os
import random
import stat

from wardfs_format import B64URL_RE, HEADER_SIZE, LONG_NAME_RE, SIDECAR_RE


def write_file(path, data, fsync=True, mode="wb"):
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def patch_file(path, offset, data):
    """Overwrites bytes in place, as tampering with a backing file does."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def drop_cache(path, fsync=True):
    """Flushes and evicts a file's pages so the next read goes to the daemon. fsync=False
    only evicts: no FUSE fsync reaches the daemon (tests/rotation reads that way while
    other threads write)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if fsync:
            try:
                os.fsync(fd)
            except OSError:
                pass
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_uncached(path, fsync=True):
    drop_cache(path, fsync)
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


def scan_backing(top, needles):
    """Every place in the backing tree where one of the byte strings in `needles` occurs:
    names, file contents, symlink targets, xattr names and values."""
    hits = []
    for path in [top] + list(walk_backing(top)):
        rel = os.path.relpath(path, top)
        for nd in needles:
            if nd in os.fsencode(rel):
                hits.append("name %r contains %r" % (rel, nd))
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            t = os.fsencode(os.readlink(path))
            hits += ["symlink target of %r contains %r" % (rel, nd) for nd in needles if nd in t]
        elif stat.S_ISREG(st.st_mode):
            data = read_file(path)
            hits += ["content of %r contains %r" % (rel, nd) for nd in needles if nd in data]
        try:
            xnames = os.listxattr(path, follow_symlinks=False)
        except OSError:
            xnames = []
        for xn in xnames:
            hits += ["xattr name %r on %r contains %r" % (xn, rel, nd) for nd in needles
                     if nd in os.fsencode(xn)]
            try:
                v = os.getxattr(path, xn, follow_symlinks=False)
            except OSError:
                continue
            hits += ["xattr %r value on %r contains %r" % (xn, rel, nd) for nd in needles if nd in v]
    return hits


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
