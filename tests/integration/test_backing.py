"""What the backing directory holds: no plaintext names, contents, symlink targets or xattrs
(marker scan), no key material, the documented layout (wardfs.conf, wardfs.dirid, base64url
and L. names, 64-byte WDFS headers, slot sizes), fresh nonces on every seal, per-directory
name encryption; and persistence: everything survives unmount + mount, and ro mounts."""

import errno
import os
import stat
import uuid

from wardfs_harness import (BACKING_META, MOUNTS_DIR_NAME, B64URL_RE, CONFIG_NAME, DIRID_NAME, HEADER_SIZE,
                            LONG_NAME_RE, OVERHEAD, SIDECAR_RE,
                            WardfsTestCase, backing_data_entries, build_sample_tree, config_matrix,
                            drop_cache, main, parametrize, pattern, read_file, read_uncached,
                            scan_backing, slot_offset, slot_size, snapshot_diff, tree_snapshot, walk_backing,
                            write_file)


class Backing:
    def test_no_plaintext_in_backing_dir(self):
        m = "WARDMARK" + uuid.uuid4().hex[:12]
        mb = m.encode()
        d = self.p("dir-" + m)
        os.mkdir(d)
        write_file(os.path.join(d, "file-" + m), (b"content " + mb + b" ") * 1000)
        write_file(os.path.join(d, "small"), mb)
        write_file(os.path.join(d, "x" * 200 + m), b"long name file " + mb)
        write_file(os.path.join(d, "sparse"), b"", fsync=False)
        with open(os.path.join(d, "sparse"), "r+b") as f:
            f.seek(10 * self.chunk)
            f.write(mb)
        os.symlink("/target/" + m, os.path.join(d, "link"))
        os.symlink("t" * 40 + m, os.path.join(d, "link-" + m))
        os.setxattr(os.path.join(d, "small"), "user.attr-" + m, b"value " + mb)
        os.setxattr(os.path.join(d, "small"), "user.plainname", b"value " + mb)
        os.setxattr(d, "user.dir-" + m, mb)
        os.mkfifo(os.path.join(d, "fifo-" + m))
        with open(os.path.join(d, "file-" + m), "r+b") as f:  # rewrite a partial chunk too
            f.seek(self.chunk - 3)
            f.write(mb)
        for p in os.listdir(d):
            if os.path.isfile(os.path.join(d, p)):
                drop_cache(os.path.join(d, p))
        needles = [mb, m.lower().encode(), mb.hex().encode(), b"plainname",
                   m.encode("utf-16-le")]
        hits = scan_backing(self.vol.cipher_dir, needles)
        self.assertEqual(hits, [], "plaintext leaked into the backing dir")
        # sanity: the scanner does find the marker when it is there
        self.assertTrue(scan_backing(self.vol.plain, [mb]))

    def test_no_key_material_in_backing_dir(self):
        write_file(self.p("f"), b"some data")
        key = self.vol.key
        hits = scan_backing(self.vol.cipher_dir, [key, key.hex().encode(), key.hex().upper().encode()])
        self.assertEqual(hits, [], "the key file's key must not be stored in the backing dir")

    def test_backing_layout(self):
        os.makedirs(self.p("a", "b"))
        write_file(self.p("a", "f"), b"x")
        write_file(self.p("a", "b", "y" * 250), b"long")
        os.symlink("t", self.p("a", "l"))
        root = self.vol.cipher_dir
        self.assertTrue(os.path.isfile(os.path.join(root, CONFIG_NAME)))
        dirids = {}
        for dirpath, dirnames, filenames in os.walk(root):
            if dirpath == root:  # the mounts' records are no encrypted directory
                dirnames[:] = [d for d in dirnames if d != MOUNTS_DIR_NAME]
            idpath = os.path.join(dirpath, DIRID_NAME)
            self.assertTrue(os.path.isfile(idpath), "%s must exist" % idpath)
            self.assertEqual(os.stat(idpath).st_size, 16, idpath)
            dirids[dirpath] = read_file(idpath)
            for n in dirnames + filenames:
                if n in BACKING_META:
                    self.assertTrue(n == DIRID_NAME or dirpath == root, "%s outside the root" % n)
                    continue
                self.assertTrue(B64URL_RE.match(n) or LONG_NAME_RE.match(n) or SIDECAR_RE.match(n),
                                "backing name %r is neither base64url nor the L. scheme" % n)
                if SIDECAR_RE.match(n):
                    self.assertIn(n[:-2], dirnames + filenames, "sidecar without its entry")
        self.assertEqual(len(set(dirids.values())), len(dirids), "every directory has its own random id")
        cfg = read_file(os.path.join(root, CONFIG_NAME))
        self.assertIn(b'"wardfs"', cfg)
        self.assertIn(self.cipher.encode(), cfg)

    def test_long_name_sidecar_mode(self):
        d, bd = self.fresh_dir()
        write_file(os.path.join(d, "n" * 240), b"x")
        sidecars = [n for n in os.listdir(bd) if SIDECAR_RE.match(n)]
        self.assertEqual(len(sidecars), 1)
        self.assertEqual(oct(stat.S_IMODE(os.stat(os.path.join(bd, sidecars[0])).st_mode)), oct(0o600),
                         "FORMAT.md §5.3: the sidecar is a regular file of mode 0600 (replaced, never truncated, after a crash)")

    def test_metadata_lives_on_backing_entries(self):
        """FORMAT.md: modes, owners, times and link counts are the backing entries' own;
        hard links are backing hard links; FIFOs are backing FIFOs."""
        d, bd = self.fresh_dir()
        f = os.path.join(d, "f")
        write_file(f, b"x")
        os.chmod(f, 0o640)
        os.chown(f, 1234, 5678)
        os.utime(f, ns=(1_000_000_001, 2_000_000_002))
        bf = self.only_backing_file(bd)
        st = os.stat(bf)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (1234, 5678))
        self.assertEqual(st.st_mtime_ns, 2_000_000_002)
        os.link(f, os.path.join(d, "g"))
        os.mkfifo(os.path.join(d, "p"))
        entries = [os.path.join(bd, n) for n in backing_data_entries(bd)]
        self.assertEqual(len(entries), 3)
        inos = [os.lstat(e).st_ino for e in entries if stat.S_ISREG(os.lstat(e).st_mode)]
        self.assertEqual(len(inos), 2)
        self.assertEqual(inos[0], inos[1], "hard links are backing hard links")
        self.assertEqual(sum(stat.S_ISFIFO(os.lstat(e).st_mode) for e in entries), 1)

    def test_file_header_and_slots(self):
        d, bd = self.fresh_dir()
        c, ovh = self.chunk, OVERHEAD[self.cipher]
        write_file(os.path.join(d, "f"), pattern(3 * c + 1, 1))
        bf = self.only_backing_file(bd)
        raw = read_file(bf)
        self.assertEqual(len(raw), HEADER_SIZE + 3 * (c + ovh) + 1 + ovh)
        self.assertEqual(raw[:4], b"WDFS")
        self.assertEqual(int.from_bytes(raw[4:6], "little"), 1, "format version")
        self.assertEqual(raw[28:32], b"\0\0\0\0", "reserved header bytes")
        for i in range(4):
            off = slot_offset(i, c, self.cipher)
            self.assertEqual(int.from_bytes(raw[off:off + 4], "little"), 1,
                             "chunk %d names key generation 1" % i)
        self.assertNotIn(pattern(3 * c + 1, 1)[:64], raw)

    def test_fresh_nonces_and_file_ids(self):
        c = self.chunk
        same = b"\x42" * c
        d1, bd1 = self.fresh_dir("one")
        d2, bd2 = self.fresh_dir("two")
        f1 = os.path.join(d1, "f")
        write_file(f1, same * 4)
        write_file(os.path.join(d2, "f"), same * 4)
        b1, b2 = self.only_backing_file(bd1), self.only_backing_file(bd2)
        r1, r2 = read_file(b1), read_file(b2)
        self.assertNotEqual(r1[8:24], r2[8:24], "every file gets its own random file id")
        ss = slot_size(c, self.cipher)
        slots = [r[HEADER_SIZE + i * ss:HEADER_SIZE + (i + 1) * ss] for r in (r1, r2) for i in range(4)]
        self.assertEqual(len(set(slots)), 8, "identical plaintext chunks must seal differently")
        nonces = [s[4:4 + OVERHEAD[self.cipher] - 20] for s in slots]
        self.assertEqual(len(set(nonces)), 8, "nonces must not repeat")
        # rewriting the same bytes at the same place seals with a fresh nonce
        with open(f1, "r+b") as f:
            f.write(same)
            f.flush()
            os.fsync(f.fileno())
        after = read_file(b1)
        self.assertEqual(len(after), len(r1))
        self.assertEqual(after[:HEADER_SIZE], r1[:HEADER_SIZE], "an overwrite keeps the header")
        self.assertNotEqual(after[HEADER_SIZE:HEADER_SIZE + ss], r1[HEADER_SIZE:HEADER_SIZE + ss],
                            "re-sealing chunk 0 must use a new nonce")
        self.assertEqual(after[HEADER_SIZE + ss:], r1[HEADER_SIZE + ss:],
                         "an aligned full-chunk overwrite re-seals only that chunk")
        self.assertEqual(read_uncached(f1), same * 4)

    def test_same_name_encrypts_differently_per_directory(self):
        d1, bd1 = self.fresh_dir("one")
        d2, bd2 = self.fresh_dir("two")
        write_file(os.path.join(d1, "same-name"), b"1")
        write_file(os.path.join(d2, "same-name"), b"1")
        n1, n2 = backing_data_entries(bd1), backing_data_entries(bd2)
        self.assertEqual(len(n1), 1)
        self.assertEqual(len(n2), 1)
        self.assertNotEqual(n1, n2, "the parent directory id is part of name encryption")
        # deterministic within one directory: delete and recreate gives the same backing name
        os.unlink(os.path.join(d1, "same-name"))
        write_file(os.path.join(d1, "same-name"), b"2")
        self.assertEqual(backing_data_entries(bd1), n1)


parametrize(Backing, globals(), "full")


class Persistence(WardfsTestCase):
    """Unmount + mount keeps everything; -o ro refuses writes."""

    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume(*config_matrix("one")[0])

    def build(self):
        top = self.vol.p("tree")
        build_sample_tree(top, self.vol.chunk)
        os.setxattr(self.vol.p("tree", "file-1"), "user.k", b"v")
        os.chown(self.vol.p("tree", "private"), 1234, 5678)
        os.chmod(self.vol.p("tree", "exec.sh"), 0o4755)
        write_file(self.vol.p("tree", "sparse"), b"")
        os.truncate(self.vol.p("tree", "sparse"), 5 * self.vol.chunk + 3)
        os.utime(self.vol.p("tree", "sparse"), ns=(1, 1_500_000_000_123_456_789))
        return top

    def test_remount_keeps_everything(self):
        top = self.build()
        before = tree_snapshot(top)
        self.assertGreater(len(before["entries"]), 20)
        p = self.vol.unmount()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.listdir(self.vol.plain), "plaintext must be gone after unmount")
        self.vol.mount()
        after = tree_snapshot(top)
        self.assertEqual(snapshot_diff(before, after), [], "tree changed across unmount/mount")
        # and once more after changing things
        write_file(self.vol.p("tree", "new"), pattern(7777, 3))
        os.rename(self.vol.p("tree", "sub"), self.vol.p("tree", "sub-renamed"))
        os.unlink(self.vol.p("tree", "file-0"))
        before = tree_snapshot(top)
        self.vol.remount()
        self.assertEqual(snapshot_diff(before, tree_snapshot(top)), [])

    def test_read_only_mount(self):
        write_file(self.vol.p("f"), b"data")
        os.mkdir(self.vol.p("d"))
        self.vol.remount(options="ro")
        self.assertEqual(read_file(self.vol.p("f")), b"data")
        self.assertEqual(sorted(os.listdir(self.vol.plain)), ["d", "f"])
        backing_before = sorted((p, os.lstat(p).st_mtime_ns) for p in walk_backing(self.vol.cipher_dir))
        self.assertErrno(errno.EROFS, open, self.vol.p("f"), "r+b")
        self.assertErrno(errno.EROFS, open, self.vol.p("g"), "wb")
        self.assertErrno(errno.EROFS, os.mkdir, self.vol.p("e"))
        self.assertErrno(errno.EROFS, os.unlink, self.vol.p("f"))
        self.assertErrno(errno.EROFS, os.rename, self.vol.p("f"), self.vol.p("h"))
        self.assertErrno(errno.EROFS, os.chmod, self.vol.p("f"), 0o600)
        self.assertErrno(errno.EROFS, os.setxattr, self.vol.p("f"), "user.x", b"1")
        backing_after = sorted((p, os.lstat(p).st_mtime_ns) for p in walk_backing(self.vol.cipher_dir))
        self.assertEqual(backing_before, backing_after, "an ro mount must not touch the backing dir")

    def test_passphrase_volume_remount(self):
        v = self.new_volume(passphrase="correct horse battery staple")
        v.init()
        v.mount()
        write_file(v.p("f"), b"passphrase volume")
        v.remount()
        self.assertEqual(read_file(v.p("f")), b"passphrase volume")
        cfg = read_file(v.b(CONFIG_NAME))
        self.assertNotIn(b"correct horse", cfg, "the passphrase must not be stored")


if __name__ == "__main__":
    main()
