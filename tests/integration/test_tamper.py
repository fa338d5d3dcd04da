"""Tampering with the backing dir between mounts (so no page cache hides it): a flipped byte,
a cut at a chunk boundary or mid-slot, a zeroed slot, a file cut to its header, swapped or
transplanted slots, an edited header, an edited name. Reads of the damaged file must fail with
EIO (errno 5); undamaged parts and other files must keep working."""

import errno
import os

from wardfs_harness import (HEADER_SIZE, OVERHEAD, WardfsTestCase, backing_data_entries,
                            config_matrix, main, patch_file, pattern, read_file, short_cipher,
                            chunk_label, slot_offset, slot_size, write_file)


class TamperCases:
    CIPHER = "aes-256-gcm"
    CHUNK = 4096
    HOLES = None

    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume(self.CIPHER, self.CHUNK, holes=self.HOLES)
        self.c = self.CHUNK
        self.files = {}

    def make(self, name, data):
        """Creates plaintext file `name` in its own directory; remembers its backing path."""
        before = set(os.listdir(self.vol.cipher_dir))
        os.mkdir(self.vol.p("dir-" + name))
        new = sorted(set(os.listdir(self.vol.cipher_dir)) - before)
        self.assertEqual(len(new), 1)
        write_file(self.vol.p("dir-" + name, name), data)
        bdir = self.vol.b(new[0])
        entries = backing_data_entries(bdir)
        self.assertEqual(len(entries), 1)
        self.files[name] = (self.vol.p("dir-" + name, name), os.path.join(bdir, entries[0]), data)
        return self.files[name]

    def tamper(self, fn):
        """Unmount, run fn() on the backing dir, mount again."""
        self.vol.unmount()
        fn()
        self.vol.mount()

    def assertEIO(self, path, what, offset=0, length=None):
        """Opening+reading path[offset:offset+length] (default: to EOF) fails with EIO."""
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                got = f.read() if length is None else f.read(length)
        except OSError as e:
            self.assertEqual(e.errno, errno.EIO, "%s: expected EIO, got %r" % (what, e))
            return
        self.fail("%s: read returned %d bytes instead of failing with EIO" % (what, len(got)))

    def assertReads(self, path, want, what, offset=0, length=None):
        fd = os.open(path, os.O_RDONLY)
        try:
            got = os.pread(fd, len(want) if length is None else length, offset)
        except OSError as e:
            self.fail("%s: read failed with %r" % (what, e))
        finally:
            os.close(fd)
        self.assertBytesEqual(got, want, what)

    def control(self):
        return self.make("control", pattern(3 * self.c + 17, 99))

    def check_control(self):
        path, _, data = self.files["control"]
        self.assertReads(path, data, "an untouched file must still read fine")
        self.assertTrue(self.vol.alive(), "the daemon must survive tampered data")

    # ------------------------------------------------------------ the cases
    def test_flipped_byte_in_middle_chunk(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c, 1))
        self.control()
        off = slot_offset(1, c, self.CIPHER) + 4 + (OVERHEAD[self.CIPHER] - 20) + 10

        def flip():
            raw = bytearray(read_file(bpath))
            raw[off] ^= 0x01
            patch_file(bpath, off, bytes(raw[off:off + 1]))
        self.tamper(flip)
        self.assertReads(path, data[:c], "chunk 0 is intact", 0, c)
        self.assertEIO(path, "the chunk with the flipped byte", c, c)
        self.assertReads(path, data[2 * c:], "chunk 2 is intact", 2 * c, c)
        self.assertEIO(path, "reading the whole file")
        self.check_control()

    def test_flipped_byte_in_tag_of_last_chunk(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(2 * c + 100, 2))
        self.control()
        self.tamper(lambda: patch_file(bpath, os.stat(bpath).st_size - 1,
                                       bytes([read_file(bpath)[-1] ^ 0x80])))
        self.assertReads(path, data[:c], "chunk 0 is intact", 0, c)
        self.assertEIO(path, "the last chunk with a flipped tag byte", 2 * c, 100)
        self.check_control()

    def test_cut_at_chunk_boundary_full_chunks(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c, 3))
        self.control()
        self.tamper(lambda: os.truncate(bpath, slot_offset(2, c, self.CIPHER)))
        self.assertEIO(path, "a file whose last full slot was cut off (chunk 1 has no final flag)")
        self.check_control()

    def test_cut_partial_tail_slot(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c + 100, 4))
        self.control()
        self.tamper(lambda: os.truncate(bpath, slot_offset(3, c, self.CIPHER)))
        self.assertEIO(path, "a file whose short last slot was cut off")
        self.check_control()

    def test_cut_mid_slot(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c + 100, 5))
        self.control()
        self.tamper(lambda: os.truncate(bpath, os.stat(bpath).st_size - 10))
        self.assertEIO(path, "a file cut in the middle of its last slot")
        self.check_control()

    def test_cut_to_header(self):
        path, bpath, data = self.make("victim", pattern(2 * self.c + 5, 6))
        self.control()
        self.tamper(lambda: os.truncate(bpath, HEADER_SIZE))
        self.assertEIO(path, "a file cut down to its 64-byte header")
        self.check_control()

    def test_zeroed_middle_slot(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c, 7))
        self.control()
        self.tamper(lambda: patch_file(bpath, slot_offset(1, c, self.CIPHER),
                                       b"\0" * slot_size(c, self.CIPHER)))
        self.assertReads(path, data[:c], "chunk 0 is intact", 0, c)
        self.assertEIO(path, "an all-zero slot in a file without holes", c, c)
        self.check_control()

    def test_swapped_slots(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c + 50, 8))
        self.control()
        ss = slot_size(c, self.CIPHER)

        def swap():
            raw = read_file(bpath)
            s0 = raw[slot_offset(0, c, self.CIPHER):slot_offset(0, c, self.CIPHER) + ss]
            s1 = raw[slot_offset(1, c, self.CIPHER):slot_offset(1, c, self.CIPHER) + ss]
            patch_file(bpath, slot_offset(0, c, self.CIPHER), s1)
            patch_file(bpath, slot_offset(1, c, self.CIPHER), s0)
        self.tamper(swap)
        self.assertEIO(path, "chunk 0 holding chunk 1's slot", 0, c)
        self.assertEIO(path, "chunk 1 holding chunk 0's slot", c, c)
        self.assertReads(path, data[2 * c:], "chunks 2.. are intact", 2 * c)
        self.check_control()

    def test_slot_transplanted_from_another_file(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c, 9))
        _, bother, _ = self.make("donor", pattern(3 * c, 10))
        self.control()
        ss = slot_size(c, self.CIPHER)

        def transplant():
            s1 = read_file(bother)[slot_offset(1, c, self.CIPHER):slot_offset(1, c, self.CIPHER) + ss]
            patch_file(bpath, slot_offset(1, c, self.CIPHER), s1)
        self.tamper(transplant)
        self.assertEIO(path, "a slot copied from the same position of another file", c, c)
        self.assertReads(self.files["donor"][0], self.files["donor"][2], "the donor file is fine")
        self.check_control()

    def test_extra_slot_appended(self):
        c = self.c
        path, bpath, data = self.make("victim", pattern(2 * c, 11))
        self.control()
        ss = slot_size(c, self.CIPHER)

        def append():
            last = read_file(bpath)[slot_offset(1, c, self.CIPHER):slot_offset(1, c, self.CIPHER) + ss]
            with open(bpath, "ab") as f:
                f.write(last)
        self.tamper(append)
        self.assertEIO(path, "a duplicated final slot appended as chunk 2", 2 * c, c)
        self.check_control()

    def test_header_edits(self):
        path, bpath, data = self.make("victim", pattern(self.c + 1, 12))
        path2, bpath2, _ = self.make("victim2", pattern(self.c + 1, 13))
        path3, bpath3, _ = self.make("victim3", pattern(self.c + 1, 14))
        self.control()

        def edit():
            raw = read_file(bpath)
            patch_file(bpath, 10, bytes([raw[10] ^ 0x04]))        # file id
            patch_file(bpath2, 6, bytes([read_file(bpath2)[6] ^ 0x01]))  # has-holes flag
            patch_file(bpath3, 40, bytes([read_file(bpath3)[40] ^ 0x20]))  # header tag
        self.tamper(edit)
        self.assertEIO(path, "an edited file id")
        self.assertEIO(path2, "a flipped has-holes flag")
        self.assertEIO(path3, "an edited header tag")
        self.check_control()

    def test_edited_name(self):
        path, bpath, data = self.make("victim", b"victim data")
        bdir = os.path.dirname(bpath)
        write_file(os.path.join(os.path.dirname(path), "neighbour"), b"neighbour data")
        self.control()

        def edit():
            name = os.path.basename(bpath)
            i = len(name) // 2
            new = name[:i] + ("A" if name[i] != "A" else "B") + name[i + 1:]
            os.rename(bpath, os.path.join(bdir, new))
        self.tamper(edit)
        d = os.path.dirname(path)
        try:
            names = os.listdir(d)
        except OSError as e:
            self.assertEqual(e.errno, errno.EIO, "listing a dir with a bad name: %r" % e)
            names = None
        if names is not None:
            self.assertEqual(names, ["neighbour"], "an undecryptable name must not be listed as garbage")
        try:
            got = read_file(path)
            self.fail("the renamed backing file still opens under its old name: %r" % got[:20])
        except OSError as e:
            self.assertIn(e.errno, (errno.ENOENT, errno.EIO), repr(e))
        self.assertEqual(read_file(os.path.join(d, "neighbour")), b"neighbour data")
        self.check_control()

    def test_tamper_while_mounted_after_cache_drop(self):
        """Same as the flipped byte, but while mounted."""
        c = self.c
        path, bpath, data = self.make("victim", pattern(3 * c, 15))
        off = slot_offset(1, c, self.CIPHER) + 30
        raw = read_file(bpath)
        patch_file(bpath, off, bytes([raw[off] ^ 0xFF]))
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        # a daemon may still serve authentic plaintext it cached; it must never return the
        # tampered chunk's garbage
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                got = os.pread(fd, c, c)
            finally:
                os.close(fd)
        except OSError as e:
            self.assertEqual(e.errno, errno.EIO, repr(e))
        else:
            self.assertBytesEqual(got, data[c:2 * c], "chunk flipped while mounted: EIO or the "
                                  "authentic (cached) plaintext, never anything else")


# Run the whole set for every cipher and chunk size, and once on a --holes never volume.
for _cipher, _chunk in config_matrix("diag"):
    _name = "Tamper_%s_%s" % (short_cipher(_cipher), chunk_label(_chunk))
    globals()[_name] = type(_name, (TamperCases, WardfsTestCase), {"CIPHER": _cipher, "CHUNK": _chunk})
_never = config_matrix("one")[0]
Tamper_holes_never = type("Tamper_holes_never", (TamperCases, WardfsTestCase),
                          {"CIPHER": _never[0], "CHUNK": _never[1], "HOLES": "never"})

if __name__ == "__main__":
    main()
