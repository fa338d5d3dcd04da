"""Tampering at script level, beyond tests/integration/test_tamper.py (which checks the EIO of
flipped, cut, zeroed, swapped and transplanted slots): here every case must also leave a daemon
log line naming the plaintext path (and chunk), bump the integrity counter in
`wardfs status --json`, and never return plaintext other than the authentic one. Added cases:
chunks swapped between two files at different positions, a zeroed last chunk, an encrypted
name moved into another backing directory, and config edits offline and while mounted."""

import errno
import json
import os

import reliability_env  # noqa: F401
from wardfs_harness import (BIN, WardfsTestCase, backing_data_entries, config_matrix, main, patch_file,
                            pattern, read_file, run, short_cipher, chunk_label, slot_offset,
                            slot_size, wait_for, write_file)


class TamperLogCases:
    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume(self.CIPHER, self.CHUNK)
        self.c = self.CHUNK
        self.ss = slot_size(self.c, self.CIPHER)
        self._dirs = {}

    # ------------------------------------------------------------ helpers
    def make(self, rel, data):
        """Writes plaintext file rel (its parent must exist); returns its backing path."""
        parent = os.path.dirname(rel)
        bdir = self.backing_dir(parent)
        before = set(backing_data_entries(bdir))
        write_file(self.vol.p(rel), data)
        new = set(backing_data_entries(bdir)) - before
        self.assertEqual(len(new), 1)
        return os.path.join(bdir, new.pop())

    def backing_dir(self, rel_dir):
        if not rel_dir:
            return self.vol.cipher_dir
        parent = self.backing_dir(os.path.dirname(rel_dir))
        before = set(backing_data_entries(parent))
        if not os.path.isdir(self.vol.p(rel_dir)):
            os.mkdir(self.vol.p(rel_dir))
            new = set(backing_data_entries(parent)) - before
            self.assertEqual(len(new), 1)
            self._dirs[rel_dir] = os.path.join(parent, new.pop())
        return self._dirs[rel_dir]

    def slot(self, bpath, i):
        with open(bpath, "rb") as f:
            f.seek(slot_offset(i, self.c, self.CIPHER))
            return f.read(self.ss)

    def offline(self, fn):
        self.vol.unmount()
        fn()
        self.vol.mount()

    def assertLogged(self, *needles):
        ok = wait_for(lambda: all(n in self.vol.log_text() for n in needles), timeout=5)
        self.assertTrue(ok, "daemon log lacks a line with %r\n%s" % (needles, self.vol.log_tail(10)))

    def integrity_failures(self):
        p = run([BIN, "status", self.vol.plain, "--json"], timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)["counters"]["integrity_failures"]

    def assertChunkEIO(self, rel, chunk, data):
        """Chunk `chunk` of rel fails with EIO; every other chunk reads authentic or EIO."""
        fd = os.open(self.vol.p(rel), os.O_RDONLY)
        try:
            for i in range((len(data) + self.c - 1) // self.c):
                try:
                    got = os.pread(fd, self.c, i * self.c)
                except OSError as e:
                    self.assertEqual(e.errno, errno.EIO, "%s chunk %d: %r" % (rel, i, e))
                    continue
                self.assertNotEqual(i, chunk, "%s: tampered chunk %d read %d bytes" % (rel, i, len(got)))
                self.assertBytesEqual(got, data[i * self.c:(i + 1) * self.c], "%s chunk %d" % (rel, i))
        finally:
            os.close(fd)

    def check_control(self, rel, data):
        self.assertBytesEqual(read_file(self.vol.p(rel)), data, "untouched file " + rel)

    # ------------------------------------------------------------ cases
    def test_chunks_swapped_between_files_and_positions(self):
        a, b = pattern(4 * self.c, 1), pattern(4 * self.c, 2)
        ctl = pattern(2 * self.c + 9, 3)
        ba = self.make("a", a)
        bb = self.make("b", b)
        self.make("control", ctl)

        def swap():
            sa1, sb2 = self.slot(ba, 1), self.slot(bb, 2)
            patch_file(ba, slot_offset(1, self.c, self.CIPHER), sb2)
            patch_file(bb, slot_offset(2, self.c, self.CIPHER), sa1)
        self.offline(swap)  # the new daemon's counters start at 0
        self.assertChunkEIO("a", 1, a)
        self.assertChunkEIO("b", 2, b)
        self.assertLogged("integrity failure in /a at chunk 1")
        self.assertLogged("integrity failure in /b at chunk 2")
        self.assertGreaterEqual(self.integrity_failures(), 2)
        self.check_control("control", ctl)

    def test_chunks_swapped_within_file_logged(self):
        a = pattern(4 * self.c + 100, 4)
        ba = self.make("a", a)

        def swap():
            s0, s3 = self.slot(ba, 0), self.slot(ba, 3)
            patch_file(ba, slot_offset(0, self.c, self.CIPHER), s3)
            patch_file(ba, slot_offset(3, self.c, self.CIPHER), s0)
        self.offline(swap)
        self.assertChunkEIO("a", 0, a)
        self.assertChunkEIO("a", 3, a)
        self.assertLogged("integrity failure in /a at chunk 0")
        self.assertLogged("integrity failure in /a at chunk 3")

    def test_zeroed_last_chunk(self):
        a = pattern(2 * self.c + 77, 5)
        ba = self.make("a", a)
        self.offline(lambda: patch_file(ba, slot_offset(2, self.c, self.CIPHER),
                                      bytes(os.path.getsize(ba) - slot_offset(2, self.c, self.CIPHER))))
        self.assertChunkEIO("a", 2, a)
        self.assertLogged("integrity failure in /a at chunk 2")

    def test_flipped_byte_logged(self):
        a = pattern(3 * self.c, 6)
        ba = self.make("a", a)
        off = slot_offset(1, self.c, self.CIPHER) + 50
        self.offline(lambda: patch_file(ba, off, bytes([self.slot(ba, 1)[50] ^ 0x10])))
        self.assertChunkEIO("a", 1, a)
        self.assertLogged("integrity failure in /a at chunk 1")
        self.assertGreaterEqual(self.integrity_failures(), 1)

    def test_truncations_logged(self):
        mid, edge = pattern(3 * self.c + 500, 7), pattern(3 * self.c, 8)
        bmid, bedge = self.make("mid", mid), self.make("edge", edge)
        ctl = pattern(self.c + 1, 9)
        self.make("control", ctl)

        def cut():
            os.truncate(bmid, os.path.getsize(bmid) - 200)                   # mid-chunk
            os.truncate(bedge, slot_offset(2, self.c, self.CIPHER))          # chunk boundary
        self.offline(cut)
        for rel in ("mid", "edge"):
            with self.assertRaises(OSError) as cm:
                read_file(self.vol.p(rel))
            self.assertEqual(cm.exception.errno, errno.EIO, rel)
            self.assertLogged("integrity failure in /" + rel)
        self.check_control("control", ctl)

    def test_name_moved_between_directories(self):
        data = b"moved file content"
        bfile = self.make("src/file", data)
        self.make("dst/neighbour", b"neighbour")
        bdst = self.backing_dir("dst")
        self.offline(lambda: os.rename(bfile, os.path.join(bdst, os.path.basename(bfile))))
        self.assertEqual(os.listdir(self.vol.p("src")), [], "the moved entry is gone from src")
        try:
            names = os.listdir(self.vol.p("dst"))
        except OSError as e:
            self.assertEqual(e.errno, errno.EIO, repr(e))
            names = None
        if names is not None:
            self.assertEqual(names, ["neighbour"], "a name sealed for another directory is hidden")
        self.assertLogged("integrity failure in directory /dst")
        for rel in ("src/file", "dst/file"):
            with self.assertRaises(OSError) as cm:
                read_file(self.vol.p(rel))
            self.assertIn(cm.exception.errno, (errno.ENOENT, errno.EIO), rel)
        self.assertEqual(read_file(self.vol.p("dst", "neighbour")), b"neighbour")

    def edit_config(self, fn):
        path = self.vol.b("wardfs.conf")
        with open(path) as f:
            cfg = json.load(f)
        fn(cfg)
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)

    def test_config_edited_offline(self):
        write_file(self.vol.p("f"), b"data")
        self.vol.unmount()
        for field, value in (("holes", "never"), ("chunk_size", self.c * 2), ("cipher",
                             "xchacha20-poly1305" if self.CIPHER == "aes-256-gcm" else "aes-256-gcm")):
            original = read_file(self.vol.b("wardfs.conf"))
            self.edit_config(lambda cfg: cfg.__setitem__(field, value))
            p = run(self.vol.mount_args(), timeout=60, via_files=True)
            self.assertNotEqual(p.returncode, 0, "mount with an edited %s must fail" % field)
            self.assertIn(p.returncode, (2, 3), field + ": " + p.stderr)
            self.assertTrue(p.stderr.strip(), "the refusal says why")
            with open(self.vol.b("wardfs.conf"), "wb") as f:
                f.write(original)
        self.vol.mount()
        self.assertEqual(read_file(self.vol.p("f")), b"data")

    def test_config_edited_while_mounted(self):
        write_file(self.vol.p("f"), b"data")
        self.edit_config(lambda cfg: cfg.__setitem__("holes", "never" if cfg["holes"] == "allow" else "allow"))
        p = run([BIN, "rotate", self.vol.plain], timeout=60)
        self.assertNotEqual(p.returncode, 0, "rotate must refuse a config edited under it")
        self.assertTrue((p.stderr + p.stdout).strip(), "and say why")
        with open(self.vol.b("wardfs.conf")) as f:
            self.assertEqual(len(json.load(f)["keys"]), 1, "no generation was added")
        self.assertEqual(read_file(self.vol.p("f")), b"data")
        self.assertTrue(self.vol.alive())


for _cipher, _chunk in config_matrix("diag"):
    _name = "TamperLog_%s_%s" % (short_cipher(_cipher), chunk_label(_chunk))
    globals()[_name] = type(_name, (TamperLogCases, WardfsTestCase), {"CIPHER": _cipher, "CHUNK": _chunk})

if __name__ == "__main__":
    main()
