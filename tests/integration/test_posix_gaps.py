"""POSIX behaviour a local file system has and wardfs must match, compared with a plain
directory: "." and ".." listed with their inode numbers (ls -a shows them), and symlink
targets up to PATH_MAX - 1 bytes, whose sealed form no longer fits in a backing symlink
and lives in a target sidecar beside the link (docs/FORMAT.md 7.1)."""

import ctypes
import ctypes.util
import errno
import os
import shutil
import subprocess
import tempfile

from wardfs_format import TARGET_SIDECAR_RE
from wardfs_harness import WardfsTestCase, main, backing_data_entries

LONG_LENGTHS = (3040, 4000, 4095)


def ls_inodes(path):
    """name -> inode number, as `ls -ai` lists the directory (glibc's readdir hides
    entries whose d_ino is 0, so "." and ".." appear only with real numbers)."""
    out = subprocess.run(["ls", "-a", "-i", "-1", "--quoting-style=literal", path],
                         check=True, capture_output=True, text=True).stdout
    entries = {}
    for line in out.splitlines():
        ino, name = line.strip().split(" ", 1)
        entries[name] = int(ino)
    return entries


class _Dirent(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


def readdir_inodes(path):
    """name -> d_ino straight from readdir(3), which `ls` may replace by a stat."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.opendir.restype = ctypes.c_void_p
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.readdir.restype = ctypes.POINTER(_Dirent)
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.closedir.argtypes = [ctypes.c_void_p]
    d = libc.opendir(os.fsencode(path))
    if not d:
        raise OSError(ctypes.get_errno(), "opendir", path)
    out = {}
    try:
        while True:
            e = libc.readdir(d)
            if not e:
                break
            out[os.fsdecode(e.contents.d_name)] = e.contents.d_ino
    finally:
        libc.closedir(d)
    return out


def target_of_length(n, seed=0):
    """A relative path of exactly n bytes, components of at most 255 bytes."""
    parts = []
    while sum(len(p) + 1 for p in parts) < n:
        parts.append("%c%d" % (chr(ord("a") + (len(parts) + seed) % 26), len(parts)) * 20)
    return "/".join(parts)[:n].rstrip("/").ljust(n, "x")


def target_sidecars(bdir):
    return sorted(n for n in os.listdir(bdir) if TARGET_SIDECAR_RE.match(n))


class PosixGapsTest(WardfsTestCase):
    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume()
        self.plain = tempfile.mkdtemp(prefix="wardfs-plain-")
        self.addCleanup(shutil.rmtree, self.plain, True)

    def backing_dir_of(self, rel):
        """The backing directory of mount-relative directory `rel` (same inode number)."""
        ino = os.stat(self.vol.p(rel)).st_ino
        for dirpath, dirnames, _ in os.walk(self.vol.cipher_dir):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                if os.stat(full).st_ino == ino:
                    return full
        self.fail("no backing directory for %s" % rel)

    # ------------------------------------------------------------ . and ..
    def check_dots(self, top, where):
        """In a directory `top` and its subdirectory, "." and ".." are listed with the
        inode numbers stat shows for the directory and its parent, as on a local fs."""
        sub = os.path.join(top, "sub")
        os.makedirs(os.path.join(sub, "deeper"), exist_ok=True)
        with open(os.path.join(sub, "file"), "w") as f:
            f.write("x")
        os.symlink("file", os.path.join(sub, "link"))
        listed = ls_inodes(sub)
        self.assertEqual(sorted(listed), [".", "..", "deeper", "file", "link"], where)
        self.assertEqual(readdir_inodes(sub), listed, where + ": readdir and ls agree")
        self.assertEqual(listed["."], os.stat(sub).st_ino, where + ": . of sub")
        self.assertEqual(listed[".."], os.stat(top).st_ino, where + ": .. of sub")
        self.assertEqual(listed[".."], os.stat(os.path.join(sub, "..")).st_ino, where)
        for name in ("deeper", "file", "link"):
            self.assertEqual(listed[name], os.lstat(os.path.join(sub, name)).st_ino,
                             "%s: listed inode of %s must be what lstat shows" % (where, name))
        self.assertEqual(ls_inodes(os.path.join(sub, "deeper"))[".."], os.stat(sub).st_ino, where)

    def test_dot_entries_listed_like_a_plain_directory(self):
        self.check_dots(self.plain, "plain directory")
        os.mkdir(self.vol.p("top"))
        self.check_dots(self.vol.p("top"), "wardfs")
        # os.scandir never shows dots; `ls -a` does on both.
        self.assertEqual(sorted(os.listdir(self.vol.p("top", "sub"))), ["deeper", "file", "link"])

    def test_dot_entries_of_the_mount_root(self):
        # readdir of a file system's root lists ".." as the root itself (tmpfs, ext4 alike);
        # `ls -a` shows a mount point's ".." as what stat finds there, the parent outside.
        raw = readdir_inodes(self.vol.plain)
        self.assertEqual(raw["."], os.stat(self.vol.plain).st_ino)
        self.assertEqual(raw[".."], raw["."])
        listed = ls_inodes(self.vol.plain)
        self.assertEqual(listed["."], os.stat(self.vol.plain).st_ino)
        self.assertEqual(listed[".."], os.stat(os.path.join(self.vol.plain, "..")).st_ino)

    # ------------------------------------------------------------ long symlink targets
    def test_long_targets_round_trip_like_a_plain_directory(self):
        os.mkdir(self.vol.p("links"))
        bdir = self.backing_dir_of("links")
        targets = {n: target_of_length(n, n) for n in (1, 3039) + LONG_LENGTHS}
        for n, t in targets.items():
            self.assertEqual(len(t.encode()), n)
            os.symlink(t, os.path.join(self.plain, "l%d" % n))
            os.symlink(t, self.vol.p("links", "l%d" % n))
        for n, t in targets.items():
            for top in (self.plain, self.vol.p("links")):
                p = os.path.join(top, "l%d" % n)
                self.assertEqual(os.readlink(p), t, "%s: %d-byte target" % (top, n))
                self.assertEqual(os.lstat(p).st_size, n, "%s: lstat size of %d-byte target" % (top, n))
        # PATH_MAX: refused the same way in both.
        for top in (self.plain, self.vol.p("links")):
            self.assertErrno(errno.ENAMETOOLONG, os.symlink, "y" * 4096, os.path.join(top, "too"))
        self.assertEqual(sorted(os.listdir(self.vol.p("links"))), sorted(os.listdir(self.plain)))
        # The long ones point at a sidecar each; the short ones are unchanged.
        sidecars = target_sidecars(bdir)
        self.assertEqual(len(sidecars), len(LONG_LENGTHS), os.listdir(bdir))
        pointed = sorted(os.readlink(os.path.join(bdir, n)) for n in backing_data_entries(bdir)
                         if TARGET_SIDECAR_RE.match(os.readlink(os.path.join(bdir, n))))
        self.assertEqual(pointed, sidecars)
        for s in sidecars:
            st = os.lstat(os.path.join(bdir, s))
            self.assertTrue(os.path.isfile(os.path.join(bdir, s)) and st.st_mode & 0o777 == 0o600)
        self.vol.remount()
        for n, t in targets.items():
            p = self.vol.p("links", "l%d" % n)
            self.assertEqual(os.readlink(p), t, "after remount: %d-byte target" % n)
            self.assertEqual(os.lstat(p).st_size, n)

    def test_sidecar_follows_the_link(self):
        os.makedirs(self.vol.p("a"))
        os.makedirs(self.vol.p("b"))
        ba, bb = self.backing_dir_of("a"), self.backing_dir_of("b")
        t1, t2, t3 = target_of_length(4095, 1), target_of_length(3500, 2), target_of_length(4000, 3)
        os.symlink(t1, self.vol.p("a", "one"))
        os.symlink(t2, self.vol.p("a", "two"))
        self.assertEqual(len(target_sidecars(ba)), 2)
        # unlink: its sidecar goes, the other stays
        os.unlink(self.vol.p("a", "two"))
        self.assertEqual(len(target_sidecars(ba)), 1)
        # rename across directories: the sidecar moves with the link
        os.rename(self.vol.p("a", "one"), self.vol.p("b", "one"))
        self.assertEqual(target_sidecars(ba), [])
        self.assertEqual(len(target_sidecars(bb)), 1)
        self.assertEqual(os.readlink(self.vol.p("b", "one")), t1)
        # rename over another long link: the replaced link's sidecar goes
        os.symlink(t3, self.vol.p("b", "three"))
        os.rename(self.vol.p("b", "three"), self.vol.p("b", "one"))
        self.assertEqual(len(target_sidecars(bb)), 1)
        self.assertEqual(os.readlink(self.vol.p("b", "one")), t3)
        # a hard link of the link in another directory reads there too
        os.link(self.vol.p("b", "one"), self.vol.p("a", "hard"), follow_symlinks=False)
        self.assertEqual(os.readlink(self.vol.p("a", "hard")), t3)
        os.unlink(self.vol.p("b", "one"))
        self.assertEqual(os.readlink(self.vol.p("a", "hard")), t3)
        os.unlink(self.vol.p("a", "hard"))
        self.assertEqual(target_sidecars(ba), [])
        # rmdir cleans an orphan sidecar (a crash between sidecar and link leaves one)
        with open(os.path.join(bb, "T." + "A" * 43), "wb") as f:
            f.write(b"orphan")
        os.rmdir(self.vol.p("b"))
        self.assertFalse(os.path.exists(bb))
        self.vol.remount()
        self.assertEqual(sorted(os.listdir(self.vol.plain)), ["a"])

    def test_tampered_target_sidecar_reads_as_eio(self):
        os.mkdir(self.vol.p("t"))
        bdir = self.backing_dir_of("t")
        t1, t2 = target_of_length(4000, 4), target_of_length(4000, 5)
        os.symlink(t1, self.vol.p("t", "one"))
        os.symlink(t2, self.vol.p("t", "two"))
        by_link = {os.readlink(self.vol.p("t", n)): n for n in ("one", "two")}
        self.assertEqual(sorted(by_link.values()), ["one", "two"])
        s1 = os.readlink(os.path.join(bdir, [n for n in backing_data_entries(bdir)
                                            if os.lstat(os.path.join(bdir, n)).st_ino
                                            == os.lstat(self.vol.p("t", "one")).st_ino][0]))
        s2 = [s for s in target_sidecars(bdir) if s != s1][0]
        p1, p2 = os.path.join(bdir, s1), os.path.join(bdir, s2)
        with open(p1, "rb") as f:
            good1 = f.read()
        with open(p2, "rb") as f:
            good2 = f.read()
        # one bit flipped
        with open(p1, "wb") as f:
            f.write(good1[:100] + bytes([good1[100] ^ 1]) + good1[101:])
        self.assertErrno(errno.EIO, os.readlink, self.vol.p("t", "one"))
        # another link's sidecar in its place: a valid blob, but not this link's
        with open(p1, "wb") as f:
            f.write(good2)
        self.assertErrno(errno.EIO, os.readlink, self.vol.p("t", "one"))
        # a symlink to the right contents is never followed
        os.unlink(p1)
        with open(os.path.join(bdir, "elsewhere"), "wb") as f:
            f.write(good1)
        os.symlink("elsewhere", p1)
        self.assertErrno(errno.EIO, os.readlink, self.vol.p("t", "one"))
        os.unlink(os.path.join(bdir, "elsewhere"))
        # a FIFO does not hang the daemon
        os.unlink(p1)
        os.mkfifo(p1)
        self.assertErrno(errno.EIO, os.readlink, self.vol.p("t", "one"))
        os.unlink(p1)
        self.assertErrno(errno.EIO, os.readlink, self.vol.p("t", "one"))
        # restored: reads again; the other link was never affected
        with open(p1, "wb") as f:
            f.write(good1)
        self.assertEqual(os.readlink(self.vol.p("t", "one")), t1)
        self.assertEqual(os.readlink(self.vol.p("t", "two")), t2)
        self.assertIn("symlink target failed authentication", self.vol.log_text())


if __name__ == "__main__":
    main()
