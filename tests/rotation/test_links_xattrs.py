"""Symlinks and xattrs (and long names) survive an online rotate + rekey + retire:
readlink, listxattr and getxattr equal the originals; the backing symlink targets and
xattr values are re-sealed under the new generation; long names keep exactly one sidecar."""

import os

from rot_harness import RotationTestCase, main, read_file, write_file

LONG = "n" * 180   # a long name (L.<hash> + sidecar)


def snapshot(vol):
    """relpath -> (readlink or None, {xattr name: value})."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(vol.plain):
        for n in dirnames + filenames:
            path = os.path.join(dirpath, n)
            rel = os.path.relpath(path, vol.plain)
            target = os.readlink(path) if os.path.islink(path) else None
            xattrs = {}
            if target is None:
                for x in sorted(os.listxattr(path)):
                    xattrs[x] = os.getxattr(path, x)
            out[rel] = (target, xattrs)
    return out


class LinksAndXattrs(RotationTestCase):
    def test_links_and_xattrs_survive_rotation(self):
        vol = self.new_volume("aes-256-gcm", 4096)
        os.makedirs(vol.p("dir", "sub"))
        write_file(vol.p("file"), b"data\n")
        write_file(vol.p("dir", LONG), b"long-named file\n")
        links = {
            "rel-link": "file",
            "dir/up-link": "../file",
            "abs-link": "/etc/hostname",
            "dangling": "no/such/target",
            "long-target": "t/" * 500 + "end",
            # Too long for a backing symlink: sealed into a target sidecar (FORMAT.md 7.1).
            "longer-target": "u/" * 1520,
            "dir/longest-target": ("../" + "v" * 200 + "/") * 19 + "w" * 219,
            "dir/sub/" + LONG + "-link": "../" + LONG,
            "unicode-link": "ziel-\u00fc\u65e5\u672c",
        }
        for rel, target in links.items():
            os.symlink(target, vol.p(rel))
        xattrs = {
            "file": {"user.a": b"1", "user.binary": bytes(range(256)), "user.empty": b""},
            "dir": {"user.on-dir": b"directory attribute"},
            "dir/" + LONG: {"user." + "k" * 150: b"v" * 600},
            "dir/sub": {"user.x": b"nested dir"},
        }
        for rel, attrs in xattrs.items():
            for name, value in attrs.items():
                os.setxattr(vol.p(rel), name, value)
        before = snapshot(vol)
        for rel, target in links.items():
            self.assertEqual(before[rel][0], target)
        sc = self.assertOnlyGeneration(vol, 1, "before the rotate")
        self.assertEqual(sc.symlinks, {1: len(links)})
        self.assertEqual(sc.xattrs, {1: sum(len(a) for a in xattrs.values())})
        self.assertEqual(len(sc.long_names), 2, sc.long_names)
        self.assertEqual(len(links["dir/longest-target"]), 4095)
        self.assertEqual(len(sc.linked_targets), 2, sc.linked_targets)
        self.assertEqual(sorted(sc.target_sidecars), sorted(sc.linked_targets))
        for rel, target in links.items():
            self.assertEqual(os.lstat(vol.p(rel)).st_size, len(target.encode()), rel)

        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        # Added after the rotate, on an old file: sealed under 2 straight away.
        os.setxattr(vol.p("file"), "user.after", b"set after rotate")
        xattrs["file"]["user.after"] = b"set after rotate"
        before = snapshot(vol)
        self.assertEqual(vol.scan().xattrs, {1: sum(len(a) for a in xattrs.values()) - 1, 2: 1})

        self.assertCmd(vol.wardfs("rekey", vol.plain, timeout=120), 0, vol)
        self.assertEqual(snapshot(vol), before, "after rekey")
        sc = self.assertOnlyGeneration(vol, 2, "after rekey")
        self.assertEqual(sc.symlinks, {2: len(links)}, sc.summary())
        self.assertEqual(sc.xattrs, {2: sum(len(a) for a in xattrs.values())}, sc.summary())
        self.assertEqual(len(sc.long_names), 2, sc.long_names)
        self.assertEqual(sorted(s[:-2] for s in sc.sidecars), sorted(sc.long_names),
                         "every long name has exactly its own sidecar, and no orphan is left")
        self.assertEqual(len(sc.linked_targets), 2, sc.linked_targets)
        self.assertEqual(sorted(sc.target_sidecars), sorted(sc.linked_targets),
                         "the re-sealed long targets have new sidecars; the old ones are gone")
        for rel, target in links.items():
            self.assertEqual(os.lstat(vol.p(rel)).st_size, len(target.encode()), rel)

        self.assertCmd(vol.wardfs("retire", vol.plain, "1"), 0, vol)
        self.assertEqual(vol.config_generations(), ([2], 2))
        self.assertEqual(snapshot(vol), before, "after retire")
        for rel, target in links.items():
            self.assertEqual(os.readlink(vol.p(rel)), target, rel)
        for rel, attrs in xattrs.items():
            for name, value in attrs.items():
                self.assertEqual(os.getxattr(vol.p(rel), name), value, "%s %s" % (rel, name))

        vol.remount()
        self.assertEqual(snapshot(vol), before, "after retire + remount")
        self.assertEqual(read_file(vol.p("rel-link")), b"data\n")
        self.assertEqual(read_file(vol.p("dir", "sub", LONG + "-link")), b"long-named file\n")

    def test_large_xattr_rekey(self):
        """An xattr value the backing file system (ext4: one 4 KiB block for all of an
        inode's xattrs) holds once, but not twice: the rekey must still re-seal it, and
        must never lose it."""
        vol = self.new_volume("aes-256-gcm", 4096)
        write_file(vol.p("f"), b"x")
        value = self.rng.randbytes(3000)
        os.setxattr(vol.p("f"), "user.big", value)
        os.setxattr(vol.p("f"), "user.small", b"s")
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        rk = vol.wardfs("rekey", vol.plain, timeout=120)
        # Whatever the outcome, the attribute must still be there, unchanged.
        self.assertEqual(os.getxattr(vol.p("f"), "user.big"), value, "xattr lost or changed by rekey")
        self.assertEqual(sorted(os.listxattr(vol.p("f"))), ["user.big", "user.small"])
        self.assertCmd(rk, 0, vol)
        sc = self.assertOnlyGeneration(vol, 2, "after rekey")
        self.assertEqual(sc.xattrs, {2: 2}, sc.summary())
        self.assertCmd(vol.wardfs("retire", vol.plain, "1"), 0, vol)
        vol.remount()
        self.assertEqual(os.getxattr(vol.p("f"), "user.big"), value)

    def test_large_xattr_replace_after_rotate(self):
        """Replacing a large xattr works before a rotate; it must keep working after one
        (the new value is sealed under a new backing name)."""
        vol = self.new_volume("aes-256-gcm", 4096)
        write_file(vol.p("f"), b"x")
        os.setxattr(vol.p("f"), "user.big", b"a" * 3000)
        os.setxattr(vol.p("f"), "user.big", b"b" * 3000)   # a replace under the same generation
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        try:
            os.setxattr(vol.p("f"), "user.big", b"c" * 3000)
        finally:
            self.assertIn(os.getxattr(vol.p("f"), "user.big"), (b"b" * 3000, b"c" * 3000),
                          "a failed replace must leave the old value")
            self.assertEqual(os.listxattr(vol.p("f")), ["user.big"])
        self.assertEqual(os.getxattr(vol.p("f"), "user.big"), b"c" * 3000)
        self.assertEqual(vol.scan().xattrs, {2: 1})


if __name__ == "__main__":
    main()
