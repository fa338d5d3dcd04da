"""Offline rotation on an unmounted CIPHERDIR with the key file: rotate, rekey, retire,
then mount and verify every file, link and xattr. Also: a wrong key is refused (exit 2)
without touching the config, and an offline retire is refused before the rekey."""

import os

from rot_harness import (EXIT_USAGE, EXIT_WRONG_KEY, RotationTestCase, describe, main,
                         read_file, write_file)


class Offline(RotationTestCase):
    def test_offline_rotate_rekey_retire(self):
        vol = self.new_volume("xchacha20-poly1305", 65536)
        data = {
            "big.bin": self.rng.randbytes(3 * 65536 + 999),
            "small.txt": b"offline\n",
            "empty": b"",
            "dir/sub/deep.bin": self.rng.randbytes(70000),
            "x" * 200: b"long name\n",
        }
        os.makedirs(vol.p("dir", "sub"))
        for rel, content in data.items():
            write_file(vol.p(rel), content)
        os.symlink("dir/sub/deep.bin", vol.p("link"))
        os.setxattr(vol.p("small.txt"), "user.tag", b"offline xattr")
        vol.unmount()
        self.assertOnlyGeneration(vol, 1, "before the rotate")
        entries_before = sorted(os.path.basename(e) for e in vol.scan().entries)

        # A wrong key file: exit 2, config unchanged.
        bad = os.path.join(vol.root, "badkey")
        fd = os.open(bad, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (os.urandom(32).hex() + "\n").encode())
        os.close(fd)
        with open(os.path.join(vol.cipher_dir, "wardfs.conf"), "rb") as f:
            conf_before = f.read()
        self.assertCmd(vol.wardfs("rotate", vol.cipher_dir, "--keyfile", bad), EXIT_WRONG_KEY)
        with open(os.path.join(vol.cipher_dir, "wardfs.conf"), "rb") as f:
            self.assertEqual(f.read(), conf_before, "a refused rotate changed the config")

        p = self.assertCmd(vol.wardfs("rotate", vol.cipher_dir, "--keyfile", vol.keyfile))
        self.assertIn("generation 2", p.stdout, describe(p))
        self.assertEqual(vol.config_generations(), ([1, 2], 2))
        self.assertOnlyGeneration(vol, 1, "after an offline rotate (it re-seals nothing)")

        p = self.assertCmd(vol.wardfs("retire", vol.cipher_dir, "1", "--keyfile", vol.keyfile), EXIT_USAGE)
        self.assertRegex(p.stdout + p.stderr, r"\d+", describe(p))
        self.assertEqual(vol.config_generations(), ([1, 2], 2))

        p = self.assertCmd(vol.wardfs("rekey", vol.cipher_dir, "--keyfile", vol.keyfile, timeout=120))
        sc = self.assertOnlyGeneration(vol, 2, "after an offline rekey")
        self.assertEqual(sc.symlinks, {2: 1}, sc.summary())
        self.assertEqual(sc.xattrs, {2: 1}, sc.summary())
        self.assertEqual(len(sc.long_names), 1, sc.summary())
        self.assertEqual(len(sc.sidecars), 1, "one sidecar per long name, no orphans: %r" % sc.sidecars)
        entries_after = sorted(os.path.basename(e) for e in sc.entries)
        self.assertEqual(len(entries_after), len(entries_before))
        self.assertEqual(set(entries_before) & set(entries_after), set(), "offline rekey renamed nothing")
        # Rerunning is a no-op.
        self.assertCmd(vol.wardfs("rekey", vol.cipher_dir, "--keyfile", vol.keyfile, timeout=120))
        self.assertEqual(sorted(os.path.basename(e) for e in vol.scan().entries), entries_after)

        p = self.assertCmd(vol.wardfs("retire", vol.cipher_dir, "1", "--keyfile", vol.keyfile))
        self.assertEqual(vol.config_generations(), ([2], 2))

        vol.mount()
        for rel, content in data.items():
            self.assertEqual(read_file(vol.p(rel)), content, rel)
        self.assertEqual(os.readlink(vol.p("link")), "dir/sub/deep.bin")
        self.assertEqual(os.getxattr(vol.p("small.txt"), "user.tag"), b"offline xattr")
        self.assertEqual(sorted(os.listdir(vol.plain)), sorted(["big.bin", "small.txt", "empty", "dir", "link", "x" * 200]))
        st = vol.status()
        self.assertEqual(st["active_generation"], 2)
        self.assertEqual([g["generation"] for g in st["generations"]], [2])
        self.assertEqual(st["counters"]["integrity_failures"], 0, st)


if __name__ == "__main__":
    main()
