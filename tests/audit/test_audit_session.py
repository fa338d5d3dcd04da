"""A session of init, mount, opens by known processes, rotate, an integrity failure and
unmount writes exactly the expected audit records, in order, with the right principals;
`wardfs audit show` and `verify` read them back."""

import json
import os
import shutil
import subprocess

from audit_harness import AuditTestCase, drop_cache, main, run, BIN, describe


class AuditSession(AuditTestCase):
    def test_session_records(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol, "--audit-level", "access")
        probe = os.path.join(vol.root, "audit-probe")  # a program with a name we know
        shutil.copy("/bin/cat", probe)
        src = os.path.join(vol.root, "src")
        with open(src, "wb") as f:
            f.write(b"first file\n")
        self.assertEqual(subprocess.run(["cp", src, vol.p("f1")]).returncode, 0)
        reader = subprocess.Popen([probe, vol.p("f1"), vol.p("f1")], stdout=subprocess.PIPE)
        out, _ = reader.communicate()
        self.assertEqual(out, b"first file\nfirst file\n")
        self.assertEqual(subprocess.run(["cp", src, vol.p("f2")]).returncode, 0)
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)

        # Flip a byte of f2's only chunk in the backing dir; the next uncached read fails.
        backing = [os.path.join(vol.cipher_dir, n) for n in os.listdir(vol.cipher_dir)
                   if os.path.isfile(os.path.join(vol.cipher_dir, n)) and os.path.getsize(os.path.join(vol.cipher_dir, n)) > 64
                   and not n.startswith("wardfs.")]
        self.assertEqual(len(backing), 2, backing)
        victim = None
        for b in backing:
            with open(b, "r+b") as f:
                f.seek(64 + 30)
                c = f.read(1)
                f.seek(64 + 30)
                f.write(bytes([c[0] ^ 1]))
            drop_cache(vol.p("f2"))
            bad = subprocess.run([probe, vol.p("f2")], capture_output=True)
            if bad.returncode != 0:
                victim = b
                break
            with open(b, "r+b") as f:  # it was f1's: put it back
                f.seek(64 + 30)
                f.write(c)
        self.assertIsNotNone(victim, "tampering with f2's chunk did not make reading it fail")
        vol.unmount()

        records = self.records(vol)
        events = [r["event"] for r in records]
        # Collapse repeated integrity failures (the kernel may retry a failed read).
        collapsed = [e for i, e in enumerate(events) if i == 0 or not (e == "integrity_failure" == events[i - 1])]
        expected = ["init", "unwrap", "unwrap", "mount",
                    "open",             # cp creates f1
                    "open",             # audit-probe reads f1 (twice, one record)
                    "open",             # cp creates f2
                    "unwrap", "wrap", "wrap", "rotate", "config_change"]
        # The tampering loop may have read f1 through audit-probe before finding f2.
        tail = [e for e in collapsed[len(expected):]]
        self.assertEqual(collapsed[:len(expected)], expected, json.dumps(records, indent=1)[:6000])
        self.assertEqual(tail[-1], "unmount")
        self.assertIn("integrity_failure", tail)
        self.assertTrue(set(tail) <= {"open", "integrity_failure", "unmount"}, tail)

        self.assertEqual([r["seq"] for r in records], list(range(1, len(records) + 1)))
        vid = vol.config()["volume_id"]
        self.assertTrue(all(r["volume"] == vid for r in records))
        opens = [r for r in records if r["event"] == "open"]
        self.assertEqual((opens[0]["principal"]["program"], opens[0]["path"], opens[0]["detail"]["mode"],
                          opens[0]["detail"]["created"]), ("cp", "/f1", "write", True))
        self.assertEqual((opens[1]["principal"]["program"], opens[1]["principal"]["pid"], opens[1]["path"],
                          opens[1]["detail"]["mode"]), ("audit-probe", reader.pid, "/f1", "read"))
        self.assertEqual(opens[1]["principal"]["uid"], os.getuid())
        rotate = next(r for r in records if r["event"] == "rotate")
        self.assertEqual((rotate["generation"], rotate["principal"]["program"], rotate["result"]), (2, "wardfs", "ok"))
        self.assertTrue(rotate["keystore"].startswith("keyfile:"))
        failure = next(r for r in records if r["event"] == "integrity_failure")
        self.assertEqual((failure["path"], failure["result"], failure["detail"]["chunk"]), ("/f2", "failed", 0))
        unwraps = [r for r in records if r["event"] == "unwrap"]
        self.assertTrue(all(r["keystore"].startswith("keyfile:") and r["result"] == "ok" for r in unwraps))
        self.assertEqual(os.stat(self.log_path(vol)).st_mode & 0o777, 0o600)

        # Nothing about the plaintext or the volume's layout leaks into the backing dir.
        self.assertEqual([n for n in os.listdir(vol.cipher_dir) if "audit" in n], [])

        shown = run([BIN, "audit", vol.cipher_dir, "show", "--event", "rotate,integrity_failure"])
        self.assertEqual(shown.returncode, 0, describe(shown))
        lines = shown.stdout.strip().splitlines()
        self.assertIn("EVENT", lines[0])
        self.assertTrue(any("rotate" in l and "/" in l for l in lines[1:]))
        self.assertTrue(all("rotate" in l or "integrity_failure" in l for l in lines[1:]), lines)
        as_json = run([BIN, "audit", vol.cipher_dir, "show", "--json", "--path", "/f1"])
        self.assertEqual(as_json.returncode, 0, describe(as_json))
        parsed = [json.loads(l) for l in as_json.stdout.splitlines()]
        self.assertEqual({r["path"] for r in parsed}, {"/f1"})
        self.assertEqual(len(parsed), 2)

        ok = self.verify(vol)
        self.assertEqual(ok.returncode, 0, describe(ok))
        self.assertIn("intact", ok.stdout)

    def test_online_verify_and_status(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol)
        st = vol.status()
        self.assertEqual(st["audit"]["log"], self.log_path(vol))
        self.assertEqual((st["audit"]["level"], st["audit"]["healthy"], st["audit"]["enabled"]), ("keys", True, True))
        p = run([BIN, "audit", vol.plain, "verify", "--json"])
        self.assertEqual(p.returncode, 0, describe(p))
        report = json.loads(p.stdout)
        self.assertTrue(report["ok"])
        self.assertGreaterEqual(report["records"], 4)  # init, 2 unwraps, mount


if __name__ == "__main__":
    main()
