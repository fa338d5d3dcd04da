"""Audit levels and failure policies: at level `access` 1,000 opens of one file by one
process make one record; a log that cannot be written refuses opens (EACCES) under
fail-closed and keeps serving, counting dropped records, under fail-open."""

import errno
import json
import os
import shutil
import subprocess
import time

from audit_harness import AuditTestCase, BIN, describe, main, wait_for, write_file


class AuditPolicy(AuditTestCase):
    def test_access_level_records_first_open_per_process(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol, "--audit-level", "access")
        write_file(vol.p("data"), b"payload" * 100)
        code = "import sys\nfor _ in range(1000):\n    open(sys.argv[1], 'rb').read()\n"
        child = subprocess.Popen(["/usr/bin/python3", "-c", code, vol.p("data")])
        self.assertEqual(child.wait(), 0)
        vol.unmount()
        opens = [r for r in self.records(vol) if r["event"] == "open" and r["principal"]["pid"] == child.pid]
        self.assertEqual(len(opens), 1, opens)
        self.assertEqual((opens[0]["path"], opens[0]["detail"]["mode"]), ("/data", "read"))

    def test_keys_level_records_no_opens(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol)
        write_file(vol.p("data"), b"x")
        with open(vol.p("data"), "rb") as f:
            f.read()
        vol.unmount()
        self.assertNotIn("open", self.events(vol))

    def _break_log_dir(self, log_dir):
        shutil.rmtree(log_dir)
        with open(log_dir, "w") as f:  # a file where the directory was: every open fails
            f.write("not a directory\n")

    def _mount_with_private_log(self, vol, policy):
        log_dir = os.path.join(vol.root, "auditlog")
        os.mkdir(log_dir)
        self.mount_with(vol, "--audit-level", "access", "--audit-on-failure", policy,
                        "--audit-log", os.path.join(log_dir, "audit.jsonl"))
        return log_dir

    def test_fail_closed_refuses_opens(self):
        vol = self.new_volume(mount=False)
        log_dir = self._mount_with_private_log(vol, "fail-closed")
        write_file(vol.p("a"), b"a")
        self._break_log_dir(log_dir)
        # This open is recorded; writing the record fails, and from then on opens are refused.
        subprocess.run(["cat", vol.p("a")], stdout=subprocess.DEVNULL)

        def refused():
            r = subprocess.run(["/usr/bin/python3", "-c", "import sys; open(sys.argv[1]).read()", vol.p("a")],
                               capture_output=True, text=True)
            return r.returncode != 0 and "Permission denied" in r.stderr
        self.assertTrue(wait_for(refused, timeout=10), "opens still allowed with a broken log\n" + vol.log_tail())
        self.assertIn("CANNOT BE WRITTEN", vol.log_text())
        self.assertIn("refusing to open /a", vol.log_text())
        self.assertFalse(vol.status()["audit"]["healthy"])
        # Once the log can be written again, access comes back and nothing was lost.
        os.unlink(log_dir)
        os.mkdir(log_dir)
        self.assertTrue(wait_for(lambda: not refused(), timeout=10), "access did not come back\n" + vol.log_tail())
        self.assertTrue(vol.status()["audit"]["healthy"])
        with open(vol.p("a"), "rb") as f:
            self.assertEqual(f.read(), b"a")

    def test_fail_open_keeps_serving_and_counts(self):
        vol = self.new_volume(mount=False)
        log_dir = self._mount_with_private_log(vol, "fail-open")
        write_file(vol.p("a"), b"a")
        self._break_log_dir(log_dir)
        for _ in range(3):
            subprocess.run(["cat", vol.p("a")], stdout=subprocess.DEVNULL)
        self.assertTrue(wait_for(lambda: vol.status()["audit"]["records_dropped"] > 0, timeout=10),
                        json.dumps(vol.status()["audit"]))
        with open(vol.p("a"), "rb") as f:
            self.assertEqual(f.read(), b"a")
        self.assertIn("CANNOT BE WRITTEN", vol.log_text())


if __name__ == "__main__":
    main()
