"""Audit history cannot be reset in silence. A volume whose wardfs.conf lost its audit key
while its audit log lives on is refused a mount (or, with --audit-key-missing=recreate,
starts a new history loudly, the old log set aside). The anchor command gets every new
checkpoint (public data only), and `verify --anchor` finds what the local chain cannot:
a log cut back to an earlier checkpoint, or deleted and started again."""

import glob
import json
import os
import stat

from audit_harness import AuditTestCase, BIN, describe, is_fuse_mounted, main, run, wait_for, write_file

EXIT_CORRUPT = 3


class AuditAnchor(AuditTestCase):
    def _drop_audit_key(self, vol):
        path = os.path.join(vol.cipher_dir, "wardfs.conf")
        with open(path) as f:
            config = json.load(f)
        self.assertIn("audit_key", config)
        del config["audit_key"]
        with open(path, "w") as f:
            json.dump(config, f)

    def _anchor_script(self, vol, sink, fail_flag=None):
        """A tiny anchor command: appends what it reads on stdin to `sink`; exits 1 while
        `fail_flag` exists."""
        script = os.path.join(vol.root, "anchor.sh")
        body = "#!/bin/sh\n"
        if fail_flag:
            body += '[ -e "%s" ] && exit 1\n' % fail_flag
        body += 'cat >> "%s"\n' % sink
        with open(script, "w") as f:
            f.write(body)
        os.chmod(script, stat.S_IRWXU)
        return script

    def _anchored(self, sink):
        with open(sink) as f:
            return [json.loads(line) for line in f if line.strip()]

    def _checkpoint(self, vol):
        with open(self.log_path(vol) + ".checkpoint") as f:
            return json.load(f)

    def test_lost_audit_key_refuses_mount(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol)
        vol.unmount()
        self._drop_audit_key(vol)
        p = run([BIN, "mount", vol.cipher_dir, vol.plain, "--keyfile", vol.keyfile, "--log-file", vol.logfile],
                timeout=60)
        self.assertEqual(p.returncode, EXIT_CORRUPT, describe(p))
        self.assertFalse(is_fuse_mounted(vol.plain))
        self.assertIn("audit key is missing", p.stderr)
        self.assertIn("wardfs.conf", p.stderr)
        self.assertIn("--audit-key-missing=recreate", p.stderr)
        self.assertNotIn("audit_key", vol.config(), "a refused mount must not make a new key")
        # Read-only too: it would go unaudited.
        p = run([BIN, "mount", vol.cipher_dir, vol.plain, "--keyfile", vol.keyfile, "-o", "ro"], timeout=60)
        self.assertEqual(p.returncode, EXIT_CORRUPT, describe(p))
        # Offline key commands would make a key as well.
        p = run([BIN, "rotate", vol.cipher_dir, "--keyfile", vol.keyfile], timeout=60)
        self.assertEqual(p.returncode, EXIT_CORRUPT, describe(p))
        self.assertIn("audit key is missing", p.stderr)
        # The old log is untouched and still verifies with the key the config lost... which
        # is gone, so verify says what is wrong instead of calling the records forged.
        p = self.verify(vol)
        self.assertEqual(p.returncode, EXIT_CORRUPT, describe(p))
        self.assertIn("audit key is missing", p.stderr)

    def test_lost_audit_key_recreate_starts_new_history_loudly(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol)
        vol.unmount()
        old_records = len(self.records(vol))
        self._drop_audit_key(vol)
        self.mount_with(vol, "--audit-key-missing", "recreate")
        vol.unmount()
        self.assertIn("AUDIT KEY MISSING", vol.log_text())
        self.assertIn("audit_key", vol.config())
        recs = self.records(vol)
        made = [r for r in recs if r["event"] == "audit_key_recreated"]
        self.assertEqual(len(made), 1, [r["event"] for r in recs])
        self.assertEqual(made[0]["detail"]["previous_last_seq"], old_records)
        self.assertEqual(recs[0]["seq"], 1)
        aside = glob.glob(self.log_path(vol) + "*.lost-key-*")
        self.assertEqual(len(aside), 2, aside)  # the old log and its checkpoint
        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, describe(p))

    def test_anchor_gets_checkpoints_and_verify_anchor_finds_resets(self):
        vol = self.new_volume(mount=False)
        sink = os.path.join(vol.root, "anchored.jsonl")
        script = self._anchor_script(vol, sink)
        self.mount_with(vol, "--audit-anchor-cmd", script)
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        vol.unmount()

        anchored = self._anchored(sink)
        self.assertGreaterEqual(len(anchored), 1)
        for a in anchored:
            self.assertEqual(sorted(a), ["mac", "seq", "time", "volume"], a)
            self.assertEqual(a["volume"], vol.config()["volume_id"])
        cp = self._checkpoint(vol)
        self.assertEqual((anchored[-1]["seq"], anchored[-1]["mac"]), (cp["seq"], cp["mac"]),
                         "the last checkpoint (the unmount) must be anchored")
        by_seq = {r["seq"]: r["mac"] for r in self.records(vol)}
        for a in anchored:
            self.assertEqual(by_seq.get(a["seq"]), a["mac"], a)

        p = self.verify(vol, "--anchor", sink)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("anchored checkpoints match", p.stdout)

        # A consistent earlier state: the log and its checkpoint as after the first session.
        live = self.log_path(vol)
        saved = {}
        for path in (live, live + ".checkpoint"):
            with open(path, "rb") as f:
                saved[path] = f.read()
        self.mount_with(vol, "--audit-anchor-cmd", script)
        write_file(vol.p("f"), b"x")
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        vol.unmount()
        for path, data in saved.items():
            with open(path, "wb") as f:
                f.write(data)
        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, "the local chain alone cannot see a cut-back\n" + describe(p))
        p = self.verify(vol, "--anchor", sink)
        self.assertEqual(p.returncode, EXIT_CORRUPT, "a cut-back went unnoticed\n" + describe(p))
        self.assertIn("FAILED", p.stderr)
        self.assertIn("cut", p.stderr)
        self.assertIn("anchored at", p.stderr)

        # Everything deleted; the next mount starts a fresh log at record 1.
        for path in glob.glob(live + "*"):
            os.unlink(path)
        self.mount_with(vol, "--audit-anchor-cmd", script)
        for _ in range(4):
            self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        vol.unmount()
        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, "the local chain alone cannot see a fresh log\n" + describe(p))
        p = self.verify(vol, "--anchor", sink)
        self.assertEqual(p.returncode, EXIT_CORRUPT, "a deleted and restarted log went unnoticed\n" + describe(p))
        self.assertIn("FAILED", p.stderr)
        self.assertIn("deleted and started again", p.stderr)
        self.assertIn("anchored at", p.stderr)

    def test_failing_anchor_is_loud_and_recorded_but_io_goes_on(self):
        vol = self.new_volume(mount=False)
        sink = os.path.join(vol.root, "anchored.jsonl")
        flag = os.path.join(vol.root, "anchor-down")
        open(flag, "w").close()
        script = self._anchor_script(vol, sink, fail_flag=flag)
        self.mount_with(vol, "--audit-anchor-cmd", script)
        self.assertTrue(wait_for(lambda: "WAS NOT ANCHORED" in vol.log_text(), timeout=15), vol.log_tail())
        write_file(vol.p("a"), b"still served")
        with open(vol.p("a"), "rb") as f:
            self.assertEqual(f.read(), b"still served")
        self.assertFalse(vol.status()["audit"]["anchor"]["healthy"])
        os.unlink(flag)  # the anchor comes back; the retry anchors the latest checkpoint
        self.assertTrue(wait_for(lambda: vol.status()["audit"]["anchor"]["healthy"], timeout=20), vol.log_tail())
        vol.unmount()
        failed = [r for r in self.records(vol) if r["event"] == "anchor_failed"]
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0]["result"], "failed")
        self.assertEqual(self._anchored(sink)[-1]["seq"], self._checkpoint(vol)["seq"])

    def test_failing_anchor_refuses_opens_under_fail_closed(self):
        vol = self.new_volume(mount=False)
        flag = os.path.join(vol.root, "anchor-down")
        script = self._anchor_script(vol, os.path.join(vol.root, "anchored.jsonl"), fail_flag=flag)
        self.mount_with(vol, "--audit-anchor-cmd", script, "--audit-on-failure", "fail-closed")
        write_file(vol.p("a"), b"a")
        open(flag, "w").close()
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)  # a new checkpoint to anchor

        def refused():
            try:
                with open(vol.p("a"), "rb") as f:
                    f.read()
                return False
            except PermissionError:
                return True
        self.assertTrue(wait_for(refused, timeout=15), "opens still allowed\n" + vol.log_tail())
        os.unlink(flag)
        self.assertTrue(wait_for(lambda: not refused(), timeout=20), "access did not come back\n" + vol.log_tail())


if __name__ == "__main__":
    main()
