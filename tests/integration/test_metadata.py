"""Namespace and metadata through a real mount: rename (incl. renameat2 flags), hard links,
symlinks, FIFOs, device nodes, user xattrs, chmod/chown/utime, mkdir/rmdir/unlink, readdir,
long names (the L. scheme in the backing dir) and unicode names."""

import errno
import json
import os
import stat
import threading

from wardfs_harness import (BIN, DIRID_NAME, LONG_NAME_RE, RENAME_EXCHANGE, RENAME_NOREPLACE,
                            SIDECAR_RE, B64URL_RE, backing_data_entries, backing_entries,
                            drop_cache, main, parametrize, pattern, read_file, read_uncached,
                            renameat2, run, write_file)


class Metadata:
    # ------------------------------------------------------------ rename
    def test_rename_file(self):
        d, bd = self.fresh_dir()
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        data = pattern(2 * self.chunk + 3, 1)
        write_file(a, data)
        before = backing_data_entries(bd)
        os.rename(a, b)
        self.assertEqual(os.listdir(d), ["b"])
        self.assertBytesEqual(read_uncached(b), data)
        after = backing_data_entries(bd)
        self.assertEqual(len(after), 1)
        self.assertNotEqual(before, after, "the backing name must change with the plaintext name")

    def test_rename_over_existing_file(self):
        d, bd = self.fresh_dir()
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        write_file(a, b"new content")
        write_file(b, pattern(3 * self.chunk, 2))
        os.rename(a, b)
        self.assertEqual(os.listdir(d), ["b"])
        self.assertEqual(read_uncached(b), b"new content")
        self.assertEqual(os.stat(b).st_nlink, 1)
        self.assertBackingSizes(bd, [11])

    def test_rename_across_directories(self):
        d1, bd1 = self.fresh_dir("one")
        d2, bd2 = self.fresh_dir("two")
        data = pattern(self.chunk + 1, 3)
        write_file(os.path.join(d1, "f"), data)
        os.rename(os.path.join(d1, "f"), os.path.join(d2, "g"))
        self.assertEqual(os.listdir(d1), [])
        self.assertEqual(os.listdir(d2), ["g"])
        self.assertBytesEqual(read_uncached(os.path.join(d2, "g")), data)
        self.assertEqual(backing_data_entries(bd1), [])
        self.assertEqual(len(backing_data_entries(bd2)), 1)
        # the same plaintext name moved to another directory: name is re-encrypted there
        write_file(os.path.join(d1, "same"), b"1")
        os.rename(os.path.join(d1, "same"), os.path.join(d2, "same"))
        self.assertEqual(read_uncached(os.path.join(d2, "same")), b"1")

    def test_rename_directories(self):
        top = self.p("top")
        os.makedirs(os.path.join(top, "a", "b", "c"))
        write_file(os.path.join(top, "a", "b", "c", "f"), b"deep")
        write_file(os.path.join(top, "a", "x"), b"x")
        os.rename(os.path.join(top, "a"), os.path.join(top, "renamed"))
        self.assertEqual(read_uncached(os.path.join(top, "renamed", "b", "c", "f")), b"deep")
        self.assertEqual(read_file(os.path.join(top, "renamed", "x")), b"x")
        os.mkdir(self.p("other"))
        os.rename(os.path.join(top, "renamed", "b"), self.p("other", "bb"))
        self.assertEqual(read_uncached(self.p("other", "bb", "c", "f")), b"deep")
        self.assertEqual(sorted(os.listdir(os.path.join(top, "renamed"))), ["x"])

    def test_rename_directory_over_empty_directory(self):
        os.makedirs(self.p("src", "c"))
        write_file(self.p("src", "c", "f"), b"deep")
        os.mkdir(self.p("empty"))
        os.rename(self.p("src"), self.p("empty"))
        self.assertEqual(os.listdir(self.d), ["empty"])
        self.assertEqual(read_uncached(self.p("empty", "c", "f")), b"deep")
        os.mkdir(self.p("empty2"))
        os.rename(self.p("empty2"), self.p("empty", "c2"))
        self.assertEqual(sorted(os.listdir(self.p("empty"))), ["c", "c2"])

    def test_rename_type_conflicts(self):
        os.makedirs(self.p("full", "x"))
        os.mkdir(self.p("dir"))
        self.assertErrno((errno.ENOTEMPTY, errno.EEXIST), os.rename, self.p("dir"), self.p("full"))
        write_file(self.p("plainfile"), b"")
        self.assertErrno(errno.EISDIR, os.rename, self.p("plainfile"), self.p("dir"))
        self.assertErrno(errno.ENOTDIR, os.rename, self.p("dir"), self.p("plainfile"))
        self.assertErrno(errno.EINVAL, os.rename, self.p("full"), self.p("full", "x", "inside"))
        self.assertEqual(sorted(os.listdir(self.d)), ["dir", "full", "plainfile"])

    def test_rename_open_file_and_its_directory(self):
        """Descriptors follow the file, not its path: rename the file and then its parent
        directory while writing through an open descriptor."""
        os.mkdir(self.p("dir"))
        fd = os.open(self.p("dir", "f"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"one ")
            os.rename(self.p("dir", "f"), self.p("dir", "g"))
            os.write(fd, b"two ")
            os.mkdir(self.p("elsewhere"))
            os.rename(self.p("dir"), self.p("elsewhere", "moved"))
            os.write(fd, pattern(2 * self.chunk, 5))
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            self.assertEqual(os.pread(fd, 8, 0), b"one two ")
        finally:
            os.close(fd)
        self.assertBytesEqual(read_uncached(self.p("elsewhere", "moved", "g")),
                              b"one two " + pattern(2 * self.chunk, 5))

    def test_replaced_file_stays_readable_through_open_descriptor(self):
        old = pattern(2 * self.chunk + 3, 6)
        write_file(self.p("target"), old)
        write_file(self.p("new"), b"replacement")
        fd = os.open(self.p("target"), os.O_RDONLY)
        try:
            os.rename(self.p("new"), self.p("target"))
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            self.assertBytesEqual(os.pread(fd, len(old) + 10, 0), old,
                                  "an open descriptor keeps reading the file that was replaced")
        finally:
            os.close(fd)
        self.assertEqual(read_uncached(self.p("target")), b"replacement")

    def test_renameat2_noreplace(self):
        a, b = self.p("a"), self.p("b")
        write_file(a, b"A")
        write_file(b, b"B")
        try:
            renameat2(a, b, RENAME_NOREPLACE)
        except NotImplementedError as e:
            self.skipTest(str(e))
        except OSError as e:
            if e.errno == errno.ENOSYS:
                self.skipTest("kernel has no renameat2")
            self.assertEqual(e.errno, errno.EEXIST, "RENAME_NOREPLACE over an existing name: %r" % e)
        else:
            self.fail("RENAME_NOREPLACE replaced an existing file")
        self.assertEqual(read_file(a), b"A")
        self.assertEqual(read_file(b), b"B")
        renameat2(a, self.p("c"), RENAME_NOREPLACE)
        self.assertEqual(sorted(os.listdir(self.d)), ["b", "c"])
        self.assertEqual(read_uncached(self.p("c")), b"A")

    def backing_status(self):
        p = run([BIN, "status", self.vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["backing"]

    def test_renameat2_exchange(self):
        a, b = self.p("a"), self.p("b")
        write_file(a, pattern(self.chunk + 5, 1))
        os.mkdir(b)
        write_file(os.path.join(b, "inside"), b"in")
        try:
            renameat2(a, b, RENAME_EXCHANGE)
        except NotImplementedError as e:
            self.skipTest(str(e))
        except OSError as e:
            if e.errno == errno.ENOSYS:
                self.skipTest("kernel has no renameat2")
            if e.errno == errno.EINVAL and not self.backing_status()["rename_exchange"]:
                # A backing file system without it (GlusterFS, NFS): refused, nothing moved.
                self.assertBytesEqual(read_uncached(a), pattern(self.chunk + 5, 1))
                self.assertEqual(read_uncached(os.path.join(b, "inside")), b"in")
                return
            raise
        self.assertTrue(os.path.isdir(a))
        self.assertEqual(read_uncached(os.path.join(a, "inside")), b"in")
        self.assertBytesEqual(read_uncached(b), pattern(self.chunk + 5, 1))

    # ------------------------------------------------------------ hard links
    def test_hard_links(self):
        d1, bd1 = self.fresh_dir("one")
        d2, _ = self.fresh_dir("two")
        a, b, c = os.path.join(d1, "a"), os.path.join(d1, "b"), os.path.join(d2, "c")
        data = pattern(2 * self.chunk + 9, 4)
        write_file(a, data)
        os.link(a, b)
        os.link(a, c)
        sa, sb, sc = os.stat(a), os.stat(b), os.stat(c)
        self.assertEqual(sa.st_nlink, 3)
        self.assertEqual(sb.st_nlink, 3)
        self.assertEqual(sa.st_ino, sb.st_ino)
        self.assertEqual(sa.st_ino, sc.st_ino)
        self.assertBytesEqual(read_uncached(b), data)
        self.assertBytesEqual(read_uncached(c), data)
        self.assertEqual(len(backing_data_entries(bd1)), 2)
        binos = {os.lstat(os.path.join(bd1, n)).st_ino for n in backing_data_entries(bd1)}
        self.assertEqual(len(binos), 1, "hard links are backing hard links (FORMAT.md)")
        # write via one name, read via the others
        with open(b, "r+b") as f:
            f.seek(self.chunk - 2)
            f.write(b"LINKED")
        want = bytearray(data)
        want[self.chunk - 2:self.chunk + 4] = b"LINKED"
        drop_cache(a)
        self.assertBytesEqual(read_uncached(a), bytes(want), "write via one link, read via another")
        self.assertBytesEqual(read_uncached(c), bytes(want))
        os.unlink(a)
        self.assertEqual(os.stat(b).st_nlink, 2)
        os.rename(c, os.path.join(d2, "c2"))
        self.assertEqual(os.stat(b).st_nlink, 2)
        self.assertBytesEqual(read_uncached(os.path.join(d2, "c2")), bytes(want))
        os.unlink(b)
        self.assertEqual(os.stat(os.path.join(d2, "c2")).st_nlink, 1)
        self.assertEqual(backing_data_entries(bd1), [])

    def test_inode_numbers_stable_after_kernel_forgets(self):
        """st_ino stays the same once the kernel drops its inode (FORGET) and looks it up
        again; tar, rsync -H, git and find -samefile depend on it."""
        write_file(self.p("a"), b"a")
        os.link(self.p("a"), self.p("b"))
        os.makedirs(self.p("d", "e"))
        before = {n: os.lstat(self.p(*n.split("/"))).st_ino for n in ("a", "b", "d", "d/e")}
        self.assertEqual(before["a"], before["b"])
        self.assertEqual(len({before["a"], before["d"], before["d/e"]}), 3, "distinct inodes")
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")  # dentries and inodes: the kernel sends FORGET
        after = {n: os.lstat(self.p(*n.split("/"))).st_ino for n in ("b", "a", "d/e", "d")}
        self.assertEqual(after, before)

    def test_hard_link_to_existing_name_fails(self):
        write_file(self.p("a"), b"a")
        write_file(self.p("b"), b"b")
        self.assertErrno(errno.EEXIST, os.link, self.p("a"), self.p("b"))
        os.mkdir(self.p("dir"))
        self.assertErrno(errno.EPERM, os.link, self.p("dir"), self.p("dirlink"))

    # ------------------------------------------------------------ symlinks
    def test_symlinks(self):
        d, bd = self.fresh_dir()
        write_file(os.path.join(d, "target"), b"target data")
        os.mkdir(os.path.join(d, "sub"))
        long_target = "/".join(["segment%03d" % i for i in range(90)])  # ~990 bytes
        targets = {"rel": "target", "relup": "../target",
                   "abs": os.path.join(d, "target"), "dangling": "no/such/file",
                   "uni": "файл-日本-é", "long": long_target, "dot": ".", "spaces": "a b  c "}
        for name, t in targets.items():
            os.symlink(t, os.path.join(d, "sub", name) if name == "relup" else os.path.join(d, name))
        paths = {n: (os.path.join(d, "sub", n) if n == "relup" else os.path.join(d, n)) for n in targets}
        for name, t in targets.items():
            st = os.lstat(paths[name])
            self.assertTrue(stat.S_ISLNK(st.st_mode), name)
            self.assertEqual(os.readlink(paths[name]), t, name)
            self.assertEqual(st.st_size, len(t.encode()), "st_size of symlink %s must be the target length" % name)
        self.assertEqual(read_file(paths["rel"]), b"target data")
        self.assertEqual(read_file(paths["abs"]), b"target data")
        self.assertEqual(read_file(paths["relup"]), b"target data")
        self.assertFalse(os.path.exists(paths["dangling"]))
        # targets are encrypted in the backing dir
        for n in backing_data_entries(bd):
            bp = os.path.join(bd, n)
            if os.path.islink(bp):
                bt = os.readlink(bp)
                self.assertNotIn(bt, targets.values())
                for t in targets.values():
                    if len(t) > 3:
                        self.assertNotIn(t, bt)
        self.assertEqual(sum(os.path.islink(os.path.join(bd, n)) for n in backing_data_entries(bd)),
                         len(targets) - 1)
        # lchown / lutimes on the link itself
        os.utime(paths["rel"], ns=(1_000_000_123, 2_000_000_456), follow_symlinks=False)
        self.assertEqual(os.lstat(paths["rel"]).st_mtime_ns, 2_000_000_456)
        os.chown(paths["rel"], 4321, 4322, follow_symlinks=False)
        self.assertEqual((os.lstat(paths["rel"]).st_uid, os.lstat(paths["rel"]).st_gid), (4321, 4322))
        self.assertEqual(os.stat(paths["rel"]).st_uid, 0, "lchown must not follow the link")
        os.unlink(paths["rel"])
        self.assertTrue(os.path.exists(os.path.join(d, "target")))

    # ------------------------------------------------------------ special files
    def test_fifo(self):
        path = self.p("fifo")
        os.mkfifo(path, 0o640)
        st = os.lstat(path)
        self.assertTrue(stat.S_ISFIFO(st.st_mode))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        got = []
        t = threading.Thread(target=lambda: got.append(read_file(path)))
        t.start()
        with open(path, "wb") as f:
            f.write(b"through the fifo")
        t.join(10)
        self.assertEqual(got, [b"through the fifo"])
        self.assertTrue(stat.S_ISFIFO(os.lstat(path).st_mode))

    def test_device_node(self):
        path = self.p("null")
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        st = os.lstat(path)
        self.assertTrue(stat.S_ISCHR(st.st_mode))
        self.assertEqual(st.st_rdev, os.makedev(1, 3))

    # ------------------------------------------------------------ xattrs
    def test_user_xattrs(self):
        d, bd = self.fresh_dir()
        f = os.path.join(d, "f")
        write_file(f, b"data")
        vals = {"user.plain": b"hello", "user.binary": bytes(range(256)) * 2, "user.empty": b"",
                "user.utf8-ключ": "значение".encode(), "user.big": pattern(2000, 1)}
        for k, v in vals.items():
            os.setxattr(f, k, v)
        self.assertEqual(sorted(os.listxattr(f)), sorted(vals))
        for k, v in vals.items():
            self.assertEqual(os.getxattr(f, k), v, k)
        self.assertErrno(errno.ENODATA, os.getxattr, f, "user.missing")
        self.assertErrno(errno.EEXIST, os.setxattr, f, "user.plain", b"x", os.XATTR_CREATE)
        self.assertErrno(errno.ENODATA, os.setxattr, f, "user.nothere", b"x", os.XATTR_REPLACE)
        os.setxattr(f, "user.plain", b"replaced", os.XATTR_REPLACE)
        self.assertEqual(os.getxattr(f, "user.plain"), b"replaced")
        os.removexattr(f, "user.binary")
        self.assertErrno(errno.ENODATA, os.getxattr, f, "user.binary")
        self.assertErrno(errno.ENODATA, os.removexattr, f, "user.binary")
        self.assertNotIn("user.binary", os.listxattr(f))
        self.assertEqual(read_uncached(f), b"data", "xattrs must not touch the content")
        # directories carry xattrs too
        os.setxattr(d, "user.dirattr", b"on a dir")
        self.assertEqual(os.getxattr(d, "user.dirattr"), b"on a dir")
        # backing: no plaintext xattr name or value
        bf = self.only_backing_file(bd)
        for name in os.listxattr(bf):
            self.assertNotIn(name, vals)
            self.assertNotIn("plain", name)
            v = os.getxattr(bf, name)
            self.assertNotIn(b"replaced", v)
            self.assertNotIn("значение".encode(), v)

    def test_xattr_survives_rename_and_write(self):
        f = self.p("f")
        write_file(f, b"1")
        os.setxattr(f, "user.tag", b"v1")
        os.rename(f, self.p("g"))
        write_file(self.p("g"), pattern(self.chunk * 2, 2), mode="r+b")
        self.assertEqual(os.getxattr(self.p("g"), "user.tag"), b"v1")
        self.assertEqual(os.listxattr(self.p("g")), ["user.tag"])

    # ------------------------------------------------------------ chmod / chown / utime
    def test_chmod_chown_utime(self):
        f = self.p("f")
        write_file(f, b"x" * 10)
        for mode in (0o600, 0o755, 0o444, 0o4711, 0o2750, 0o000):
            os.chmod(f, mode)
            self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), mode, oct(mode))
        os.chmod(f, 0o644)
        os.chown(f, 1234, 5678)
        st = os.stat(f)
        self.assertEqual((st.st_uid, st.st_gid), (1234, 5678))
        os.chown(f, -1, 42)
        st = os.stat(f)
        self.assertEqual((st.st_uid, st.st_gid), (1234, 42))
        os.utime(f, ns=(1_234_567_890_123_456_789, 987_654_321_987_654_321))
        st = os.stat(f)
        self.assertEqual(st.st_atime_ns, 1_234_567_890_123_456_789)
        self.assertEqual(st.st_mtime_ns, 987_654_321_987_654_321)
        self.assertEqual(st.st_size, 10, "utime must not change the size")
        # a write moves mtime forward
        with open(f, "r+b") as fh:
            fh.write(b"y")
        self.assertGreater(os.stat(f).st_mtime_ns, 987_654_321_987_654_321)
        d = self.p("dir")
        os.mkdir(d, 0o700)
        os.chmod(d, 0o1777)
        self.assertEqual(stat.S_IMODE(os.stat(d).st_mode), 0o1777)
        os.utime(d, ns=(5_000_000_000, 6_000_000_000))
        self.assertEqual(os.stat(d).st_mtime_ns, 6_000_000_000)

    def test_new_file_mode_and_owner(self):
        old = os.umask(0o022)
        try:
            fd = os.open(self.p("f"), os.O_CREAT | os.O_WRONLY, 0o666)
            os.close(fd)
            os.mkdir(self.p("d"), 0o777)
        finally:
            os.umask(old)
        self.assertEqual(stat.S_IMODE(os.stat(self.p("f")).st_mode), 0o644)
        self.assertEqual(stat.S_IMODE(os.stat(self.p("d")).st_mode), 0o755)
        self.assertEqual(os.stat(self.p("f")).st_uid, os.geteuid())

    # ------------------------------------------------------------ mkdir / rmdir / unlink / readdir
    def test_mkdir_rmdir_unlink(self):
        d, bd = self.fresh_dir()
        sub = os.path.join(d, "sub")
        os.mkdir(sub)
        self.assertErrno(errno.EEXIST, os.mkdir, sub)
        write_file(os.path.join(sub, "f"), b"x")
        self.assertErrno(errno.ENOTEMPTY, os.rmdir, sub)
        self.assertErrno(errno.EISDIR, os.unlink, sub)
        self.assertErrno(errno.ENOTDIR, os.rmdir, os.path.join(sub, "f"))
        os.unlink(os.path.join(sub, "f"))
        self.assertErrno(errno.ENOENT, os.unlink, os.path.join(sub, "f"))
        self.assertErrno(errno.ENOENT, os.stat, os.path.join(sub, "f"))
        os.rmdir(sub)
        self.assertFalse(os.path.exists(sub))
        self.assertEqual(backing_data_entries(bd), [], "rmdir must remove the backing directory")
        self.assertErrno(errno.ENOENT, os.rmdir, sub)

    def test_directory_link_count(self):
        d, _ = self.fresh_dir()
        self.assertEqual(os.stat(d).st_nlink, 2)
        for i in range(3):
            os.mkdir(os.path.join(d, "s%d" % i))
        write_file(os.path.join(d, "file"), b"")
        self.assertEqual(os.stat(d).st_nlink, 5, "a directory's st_nlink is 2 + its subdirectories")

    def test_readdir_lists_exactly_created_names(self):
        d, bd = self.fresh_dir()
        names = set()
        for i in range(300):
            n = "entry-%03d%s" % (i, "." * (i % 3))
            names.add(n)
            if i % 10 == 0:
                os.mkdir(os.path.join(d, n))
            elif i % 10 == 1:
                os.symlink("x", os.path.join(d, n))
            else:
                write_file(os.path.join(d, n), b"", fsync=False)
        self.assertEqual(set(os.listdir(d)), names)
        self.assertEqual(len(os.listdir(d)), 300)
        for e in os.scandir(d):
            i = int(e.name[6:9])
            self.assertEqual(e.is_dir(follow_symlinks=False), i % 10 == 0, e.name)
            self.assertEqual(e.is_symlink(), i % 10 == 1, e.name)
            self.assertEqual(e.is_file(follow_symlinks=False), i % 10 > 1, e.name)
        self.assertEqual(len(backing_data_entries(bd)), 300)
        for n in backing_data_entries(bd):
            self.assertTrue(B64URL_RE.match(n) or LONG_NAME_RE.match(n), "backing name %r" % n)

    def test_delete_while_listing(self):
        d, _ = self.fresh_dir()
        for i in range(600):
            write_file(os.path.join(d, "f%04d" % i), b"", fsync=False)
        removed = 0
        with os.scandir(d) as it:
            for e in it:
                os.unlink(e.path)
                removed += 1
        # like rm -rf: a second pass picks up what a changing directory hid
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
            removed += 1
        self.assertEqual(removed, 600, "every entry listed exactly once while deleting")
        self.assertEqual(os.listdir(d), [])
        os.rmdir(d)

    def test_statvfs(self):
        st = os.statvfs(self.vol.plain)
        self.assertGreater(st.f_bsize, 0)
        self.assertGreater(st.f_blocks, 0)
        self.assertGreaterEqual(st.f_namemax, 255)

    # ------------------------------------------------------------ long and unicode names
    def test_long_names(self):
        d, bd = self.fresh_dir()
        ascii255 = "a" * 250 + "b.txt"
        utf255 = "é€" * 51  # 51 * 5 = 255 bytes
        self.assertEqual(len(ascii255.encode()), 255)
        self.assertEqual(len(utf255.encode()), 255)
        write_file(os.path.join(d, ascii255), b"ascii")
        write_file(os.path.join(d, utf255), b"utf8")
        os.mkdir(os.path.join(d, "D" * 255))
        write_file(os.path.join(d, "D" * 255, "c" * 255), b"nested")
        self.assertEqual(sorted(os.listdir(d)), sorted([ascii255, utf255, "D" * 255]))
        self.assertEqual(read_uncached(os.path.join(d, ascii255)), b"ascii")
        self.assertEqual(read_uncached(os.path.join(d, utf255)), b"utf8")
        self.assertEqual(read_uncached(os.path.join(d, "D" * 255, "c" * 255)), b"nested")
        names = backing_entries(bd)
        longs = [n for n in names if LONG_NAME_RE.match(n)]
        sidecars = [n for n in names if SIDECAR_RE.match(n)]
        self.assertEqual(len(longs), 3, "long names use the L. scheme: %r" % names)
        self.assertEqual(sorted(s[:-2] for s in sidecars), sorted(longs), "each L. entry has a .n sidecar")
        self.assertEqual(len(names), 6, names)
        for s in sidecars:
            self.assertTrue(os.path.isfile(os.path.join(bd, s)))
        # rename long -> short -> long, unlink: sidecars follow
        os.rename(os.path.join(d, ascii255), os.path.join(d, "short"))
        self.assertEqual(read_uncached(os.path.join(d, "short")), b"ascii")
        self.assertEqual(len([n for n in backing_entries(bd) if SIDECAR_RE.match(n)]), 2)
        os.rename(os.path.join(d, "short"), os.path.join(d, "z" * 255))
        self.assertEqual(read_uncached(os.path.join(d, "z" * 255)), b"ascii")
        os.unlink(os.path.join(d, "z" * 255))
        os.unlink(os.path.join(d, utf255))
        self.assertEqual(len(backing_entries(bd)), 2, "unlink removes the entry and its sidecar")
        os.symlink("t" * 100, os.path.join(d, "s" * 255))
        self.assertEqual(os.readlink(os.path.join(d, "s" * 255)), "t" * 100)
        os.mkfifo(os.path.join(d, "p" * 255))
        os.link(os.path.join(d, "D" * 255, "c" * 255), os.path.join(d, "h" * 255))
        self.assertEqual(read_file(os.path.join(d, "h" * 255)), b"nested")
        self.assertEqual(sorted(os.listdir(d)), sorted(["D" * 255, "s" * 255, "p" * 255, "h" * 255]))

    def test_name_too_long(self):
        self.assertErrno(errno.ENAMETOOLONG, open, self.p("x" * 256), "wb")
        self.assertErrno(errno.ENAMETOOLONG, os.mkdir, self.p("é" * 128))
        self.assertEqual(os.listdir(self.d), [])

    def test_every_name_length(self):
        d, bd = self.fresh_dir()
        for n in range(1, 256):
            write_file(os.path.join(d, "n" * n), str(n).encode(), fsync=False)
        self.assertEqual(sorted(os.listdir(d), key=len), ["n" * n for n in range(1, 256)])
        for n in range(1, 256):
            self.assertEqual(read_file(os.path.join(d, "n" * n)), str(n).encode(), n)
        names = backing_entries(bd)
        longs = [x for x in names if LONG_NAME_RE.match(x)]
        sidecars = [x for x in names if SIDECAR_RE.match(x)]
        self.assertEqual(len(names) - len(sidecars), 255)
        self.assertEqual(len(sidecars), len(longs))
        self.assertGreater(len(longs), 0)
        for x in names:
            self.assertLessEqual(len(x), 255)

    def test_unicode_and_odd_names(self):
        d, bd = self.fresh_dir()
        names = ["ñandú", "日本語のファイル名", "emoji-😀🚀", "e\u0301", "\u00e9", "with space",
                 " leading", "trailing ", "-dash", ".hidden", "...", "new\nline", "tab\t",
                 "back\\slash", "quote'\"", DIRID_NAME, "wardfs.conf", "L.notlong", "L." + "A" * 43,
                 "L." + "A" * 43 + ".n", "%s", "*?[]", "\x01ctrl"]
        for i, n in enumerate(names):
            write_file(os.path.join(d, n), ("%d" % i).encode(), fsync=False)
        self.assertEqual(sorted(os.listdir(d)), sorted(names), "NFC and NFD spellings are distinct names")
        for i, n in enumerate(names):
            self.assertEqual(read_file(os.path.join(d, n)), ("%d" % i).encode(), repr(n))
        self.assertEqual(len(backing_data_entries(bd)), len(names))
        os.mkdir(os.path.join(d, "каталог"))
        write_file(os.path.join(d, "каталог", "файл"), b"ok")
        self.assertEqual(read_uncached(os.path.join(d, "каталог", "файл")), b"ok")
        for n in names:
            os.unlink(os.path.join(d, n))
        self.assertEqual(os.listdir(d), ["каталог"])


parametrize(Metadata, globals(), "diag")

if __name__ == "__main__":
    main()
