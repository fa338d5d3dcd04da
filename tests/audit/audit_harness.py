"""Helpers for the audit log tests: volumes whose audit logs live in a private directory
(WARDFS_AUDIT_DIR), and readers for the JSON-lines records."""

import glob
import json
import os
import shutil
import sys
import tempfile

from rot_harness import (BIN, RotationTestCase, Volume, describe, drop_cache, is_fuse_mounted,  # noqa: E402,F401
                         log, main, read_file, run, wait_for, write_file)


class AuditTestCase(RotationTestCase):
    def setUp(self):
        super().setUp()
        self.audit_dir = tempfile.mkdtemp(prefix="wardfs-audit-", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.audit_dir, True)
        os.environ["WARDFS_AUDIT_DIR"] = self.audit_dir

    def mount_with(self, vol, *extra):
        p = run([BIN, "mount", vol.cipher_dir, vol.plain, "--keyfile", vol.keyfile, "--log-file", vol.logfile]
                + list(extra), timeout=60)
        self.assertEqual(p.returncode, 0, describe(p) + vol.log_tail())
        self.assertTrue(is_fuse_mounted(vol.plain))

    def log_path(self, vol):
        vid = vol.config()["volume_id"]
        return os.path.join(self.audit_dir, vid + ".audit.jsonl")

    def records(self, vol):
        out = []
        live = self.log_path(vol)
        for path in sorted(glob.glob(live + ".[0-9]*")) + [live]:
            if path.endswith(".checkpoint") or path.endswith(".lock") or not os.path.exists(path):
                continue
            with open(path) as f:
                out += [json.loads(line) for line in f if line.strip()]
        return out

    def events(self, vol, skip=()):
        return [r["event"] for r in self.records(vol) if r["event"] not in skip]

    def verify(self, vol, *extra):
        return run([BIN, "audit", vol.cipher_dir, "verify", "--keyfile", vol.keyfile] + list(extra), timeout=60)

    def wait_for_event(self, vol, event, timeout=10):
        ok = wait_for(lambda: event in self.events(vol), timeout=timeout)
        self.assertTrue(ok, "no %r record in the audit log: %r" % (event, self.events(vol)))
