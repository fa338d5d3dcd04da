"""Leak hygiene: after a session that wrote known plaintext (contents, names, symlink targets,
xattrs, a rotation and a rekey) with a known key file, neither the backing directory nor the
daemon's log file holds the plaintext, the raw key, or the key's hex and base64 forms."""

import base64
import os
import json
import time

import reliability_env  # noqa: F401
from wardfs_harness import (BIN, WardfsTestCase, config_matrix, main, pattern, read_file, run,
                            scan_backing, write_file)


def key_forms(key):
    """The raw key and every text form a careless log line or file could hold."""
    forms = [key, key.hex().encode(), key.hex().upper().encode()]
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        b = enc(key)
        forms += [b, b.rstrip(b"=")]
    return list(dict.fromkeys(forms))


def plaintext_forms(marker, blob):
    """The marker in the encodings a leak would use, and 48-byte windows of a random blob."""
    forms = [marker, marker.hex().encode(), base64.b64encode(marker).rstrip(b"="),
             marker.decode().encode("utf-16-le")]
    forms += [blob[i:i + 48] for i in range(0, len(blob) - 48, len(blob) // 16)]
    return forms


class Leaks(WardfsTestCase):
    def setUp(self):
        super().setUp()
        self.vol = self.mounted_volume(*config_matrix("one")[0])

    def session(self, marker, blob):
        v, m = self.vol, marker.decode()
        os.mkdir(v.p("dir-" + m))
        write_file(v.p("dir-" + m, "file-" + m), blob)
        write_file(v.p("dir-" + m, "x" * 180 + m), marker * 100)  # a long name
        write_file(v.p("small"), marker)
        with open(v.p("small"), "r+b") as f:  # partial-chunk rewrite
            f.seek(3)
            f.write(marker)
        os.symlink("/target/" + m, v.p("link-" + m))
        os.setxattr(v.p("small"), "user.attr-" + m, marker)
        os.setxattr(v.p("dir-" + m), "user.d", marker * 3)
        os.rename(v.p("small"), v.p("renamed-" + m))
        for cmd in (["rotate", v.plain], ["rekey", v.plain], ["status", v.plain, "--json"]):
            p = run([BIN] + cmd, timeout=120)
            self.assertEqual(p.returncode, 0, "%s: %s" % (cmd, p.stderr))
            self.assertEqual(self.hits_in(p.stdout.encode() + p.stderr.encode(), key_forms(v.key)), [],
                             "wardfs %s prints key material" % cmd[0])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # rekey runs in the background
            p = run([BIN, "status", v.plain, "--json"], timeout=30)
            if not json.loads(p.stdout)["rekey"]["running"]:
                break
            time.sleep(0.2)
        self.assertEqual(read_file(v.p("dir-" + m, "file-" + m)), blob)
        v.unmount()

    @staticmethod
    def hits_in(data, needles):
        return [n for n in needles if n in data]

    def test_no_plaintext_or_key_in_backing_dir_or_log(self):
        marker = b"LEAKMARK" + os.urandom(6).hex().encode()
        blob = pattern(5 * self.vol.chunk + 99, 77)
        self.session(marker, blob)
        key = key_forms(self.vol.key)
        plain = plaintext_forms(marker, blob)
        self.assertEqual(scan_backing(self.vol.cipher_dir, key), [], "key material in the backing dir")
        self.assertEqual(scan_backing(self.vol.cipher_dir, plain), [], "plaintext in the backing dir")
        log = read_file(self.vol.logfile)
        self.assertGreater(len(log), 0, "the daemon wrote a log")
        self.assertIn(b"rotated", log, "the log covers the session")
        self.assertEqual(self.hits_in(log, key), [], "key material in the daemon log")
        # the log names plaintext paths by design (README); contents must never appear
        self.assertEqual(self.hits_in(log, plain[4:]), [], "file content in the daemon log")
        self.assertNotIn(marker * 2, log, "file content in the daemon log")
        # the scanners do find what they look for
        self.assertTrue(scan_backing(self.vol.root, [self.vol.key.hex().encode()]))
        self.assertTrue(self.hits_in(blob + b"x", plain[4:]))

    def test_key_forms_cover_the_key_file(self):
        """The needles include the exact form the key file stores (64 hex digits)."""
        with open(self.vol.keyfile, "rb") as f:
            stored = f.read().strip()
        self.assertIn(stored, key_forms(self.vol.key))


if __name__ == "__main__":
    main()
