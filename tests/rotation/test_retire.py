"""retire: refused (exit 1, naming how many items still use the generation) while old
chunks, headers or names exist; accepted after a rekey, and the config then no longer lists
the generation. `retire --force --yes` of a generation that still seals files shreds them:
reading such a file gives EIO, never other data, while data written after the rotate
still reads fine."""

import errno
import os
import re

from rot_harness import (EXIT_USAGE, RotationTestCase, describe, drop_cache, main, read_file,
                         read_uncached, write_file)


def build_tree(vol, rng):
    """A few files, a directory and a symlink; returns {relpath: bytes}."""
    data = {
        "a.bin": rng.randbytes(3 * vol.chunk + 100),
        "b.txt": b"hello retire\n" * 50,
        "empty": b"",
        "d/c.bin": rng.randbytes(vol.chunk),
    }
    os.mkdir(vol.p("d"))
    for rel, content in data.items():
        write_file(vol.p(rel), content)
    os.symlink("a.bin", vol.p("link"))
    return data


class Retire(RotationTestCase):
    def test_retire_refused_until_rekeyed(self):
        vol = self.new_volume("aes-256-gcm", 4096)
        data = build_tree(vol, self.rng)
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)

        sc = vol.scan()
        # Everything in the tree is still sealed under 1: chunks + headers + the symlink
        # target + every entry name (files, the directory, the symlink).
        uses = sc.chunks.get(1, 0) + sc.headers.get(1, 0) + sc.symlinks.get(1, 0) + len(sc.entries)
        p = self.assertCmd(vol.wardfs("retire", vol.plain, "1"), EXIT_USAGE, vol)
        msg = p.stdout + p.stderr
        counts = [int(n) for n in re.findall(r"\b(\d+)\b", msg)]
        self.assertIn(uses, counts, "retire's refusal should name the %d items still under "
                                    "generation 1 (%s)\n%s" % (uses, sc.summary(), describe(p)))
        self.assertEqual(vol.config_generations(), ([1, 2], 2), "a refused retire changed the config")

        # The active generation and an unknown one are refused too.
        self.assertCmd(vol.wardfs("retire", vol.plain, "2"), EXIT_USAGE, vol)
        self.assertCmd(vol.wardfs("retire", vol.plain, "7"), EXIT_USAGE, vol)
        self.assertEqual(vol.config_generations(), ([1, 2], 2))

        self.assertCmd(vol.wardfs("rekey", vol.plain, timeout=120), 0, vol)
        self.assertOnlyGeneration(vol, 2, "after rekey")
        p = self.assertCmd(vol.wardfs("retire", vol.plain, "1"), 0, vol)
        self.assertIn("retired", p.stdout, describe(p))
        gens, active = vol.config_generations()
        self.assertEqual((gens, active), ([2], 2), "the config should list only generation 2 now")
        st = vol.status()
        self.assertEqual([g["generation"] for g in st["generations"]], [2], st)

        for rel, content in data.items():
            self.assertEqual(read_uncached(vol.p(rel)), content, rel)
        vol.remount()
        for rel, content in data.items():
            self.assertEqual(read_file(vol.p(rel)), content, rel + " after remount")
        self.assertEqual(os.readlink(vol.p("link")), "a.bin")
        # Retiring it again: it no longer exists.
        self.assertCmd(vol.wardfs("retire", vol.plain, "1"), EXIT_USAGE, vol)

    def test_force_retire_shreds(self):
        vol = self.new_volume("xchacha20-poly1305", 4096)
        old = self.rng.randbytes(4 * vol.chunk + 10)
        write_file(vol.p("old-kept-open"), old)
        write_file(vol.p("old-renamed"), old[::-1])
        write_file(vol.p("old-appended"), old[:5000])
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)

        new = self.rng.randbytes(3 * vol.chunk + 1)
        write_file(vol.p("new"), new)
        # Renamed after the rotate: its name is under 2, its header and chunks under 1.
        os.rename(vol.p("old-renamed"), vol.p("renamed-after"))
        # Appended after the rotate: the tail chunks under 2, the header and head under 1.
        with open(vol.p("old-appended"), "ab") as f:
            f.write(b"tail after rotate" * 1000)
        held = os.open(vol.p("old-kept-open"), os.O_RDONLY)
        os.mkdir(vol.p("newdir"))
        os.rename(vol.p("new"), vol.p("newdir", "new"))

        p = self.assertCmd(vol.wardfs("retire", vol.plain, "1", "--force", "--yes"), 0, vol)
        self.assertRegex(p.stdout, r"\d+ items", describe(p))
        self.assertEqual(vol.config_generations(), ([2], 2))

        def expect_eio(what, fn):
            try:
                got = fn()
            except OSError as e:
                self.assertEqual(e.errno, errno.EIO, "%s: expected EIO, got %r%s"
                                 % (what, e, vol.log_tail()))
                return
            self.fail("%s: read %d bytes (%r...) from data sealed under a retired generation"
                      % (what, len(got), got[:16]))

        def pread_held():
            os.posix_fadvise(held, 0, 0, os.POSIX_FADV_DONTNEED)
            return os.pread(held, 4096, 0)

        try:
            expect_eio("pread of a file kept open across the retire", pread_held)
        finally:
            os.close(held)

        def read_renamed():
            drop_cache(vol.p("renamed-after"))
            return read_file(vol.p("renamed-after"))

        expect_eio("read of a file renamed after the rotate", read_renamed)
        # The appended file: its header and first chunks are under the retired generation.
        name = vol.p("old-appended")
        if os.path.exists(name):   # its name is under 1: it may no longer be found at all
            expect_eio("read of a file appended after the rotate", lambda: read_uncached(name))

        # Written after the rotate: unaffected.
        self.assertEqual(read_uncached(vol.p("newdir", "new")), new)

        # After a remount (no cached state at all): the same.
        vol.remount()
        self.assertEqual(read_file(vol.p("newdir", "new")), new)
        self.assertIn("renamed-after", os.listdir(vol.plain))
        expect_eio("read of the renamed file after remount", lambda: read_file(vol.p("renamed-after")))
        listing = sorted(os.listdir(vol.plain))
        for gone in ("old-kept-open", "old-appended"):
            self.assertNotIn(gone, listing, "names sealed under a retired generation cannot be listed")
        st = vol.status()
        self.assertGreater(st["counters"]["integrity_failures"], 0, st)


if __name__ == "__main__":
    main()
