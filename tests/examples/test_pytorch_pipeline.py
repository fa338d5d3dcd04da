"""The ML pipeline proof at CI size (issue 11): examples/pytorch/pipeline.py --size ci trains
a PyTorch model on a real wardfs mount while `wardfs rotate`, `rekey` and `retire` run, kills
and resumes the training once, and repeats the run on a plain directory. This checks what it
leaves behind: the run completed, its loss curve and checkpoints equal the plain run's bit
for bit, no I/O errors, the key operations happened while training ran, the retired
generation seals nothing any more, and the backing directory holds only ciphertext.

Run by ctest as `/usr/bin/python3 test_pytorch_pipeline.py` with WARDFS_BIN set; needs root
(or FUSE access), /dev/fuse and the Debian python3-torch / python3-numpy (scripts/install-deps).
WARDFS_ML_KEEP=1 keeps the work directory.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
import rot_harness as rh  # noqa: E402  (backing-dir scanner, process helpers)

sys.path.insert(0, os.path.join(REPO, "examples", "pytorch"))
import pipeline  # noqa: E402

import torch  # noqa: E402

PIPELINE = os.path.join(REPO, "examples", "pytorch", "pipeline.py")
BIN = rh.BIN
KEEP = os.environ.get("WARDFS_ML_KEEP") == "1"


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def iso_to_epoch(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class PyTorchPipeline(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="wardfs-ml-ci-", dir="/tmp")
        cmd = ["/usr/bin/python3", PIPELINE, "--size", "ci", "--gocryptfs", "no",
               "--workdir", cls.work, "--bin", BIN]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = p.communicate(timeout=540)  # under ctest's 600 s, to clean up first
        except subprocess.TimeoutExpired:
            p.terminate()  # SIGTERM: the pipeline kills its training and unmounts
            out, _ = p.communicate(timeout=60)
            raise AssertionError("pipeline ran over 540 s:\n" + out[-6000:])
        sys.stderr.write(out[-6000:])
        if p.returncode != 0:
            raise AssertionError("pipeline failed (rc=%d):\n%s" % (p.returncode, out[-6000:]))
        with open(os.path.join(cls.work, "summary.json")) as f:
            cls.summary = json.load(f)
        cls.events = {e["event"]: e for e in read_jsonl(cls.summary["events"])}
        cls.plain = cls.summary["runs"]["plain"]
        cls.ward = cls.summary["runs"]["wardfs"]
        cls.plain_log = read_jsonl(cls.plain["metrics"])
        cls.ward_log = read_jsonl(cls.ward["metrics"])
        # The pipeline unmounted everything; mount again to read through wardfs after retire.
        cls.mnt = cls.ward["mount_point"]
        r = rh.run([BIN, "mount", cls.ward["cipher_dir"], cls.mnt, "--keyfile",
                    cls.ward["keyfile"], "--log-file", cls.ward["log"]], timeout=60)
        if r.returncode != 0 or not rh.is_fuse_mounted(cls.mnt):
            raise AssertionError("remount after the pipeline failed\n" + rh.describe(r))

    @classmethod
    def tearDownClass(cls):
        if rh.is_fuse_mounted(cls.mnt):
            rh.run([BIN, "unmount", cls.mnt], timeout=60)
        if rh.is_fuse_mounted(cls.mnt):
            rh.run(["fusermount3", "-uz", cls.mnt], timeout=60)
        if not KEEP and not rh.is_fuse_mounted(cls.mnt):
            shutil.rmtree(cls.work, ignore_errors=True)

    # ------------------------------------------------------------ helpers
    @staticmethod
    def of(log, event):
        return [r for r in log if r["event"] == event]

    def losses(self, log):
        """step -> loss hex; a step logged twice (replayed after the resume) must agree."""
        out = {}
        for r in self.of(log, "step"):
            if r["step"] in out:
                self.assertEqual(out[r["step"]], r["loss"],
                                 "step %d replayed after the resume gave another loss" % r["step"])
            out[r["step"]] = r["loss"]
        return out

    def training_window(self):
        steps = self.of(self.ward_log, "step")
        return steps[0]["wall"], steps[-1]["wall"]

    def ckpt_dirs(self):
        return (os.path.join(self.plain["base"], "ckpt"), os.path.join(self.mnt, "ckpt"))

    # ------------------------------------------------------------ tests
    def test_training_completed_after_a_kill_and_resume(self):
        total = self.of(self.plain_log, "start")[0]["total_steps"]
        for log, what in ((self.plain_log, "plain"), (self.ward_log, "wardfs")):
            ends = self.of(log, "end")
            self.assertEqual(len(ends), 1, "%s run did not finish" % what)
            self.assertEqual(ends[0]["step"], total, what)
            self.assertEqual([r["matches"] for r in self.of(log, "final_load")], [True], what)
        starts = self.of(self.ward_log, "start")
        self.assertEqual([s["resumed"] for s in starts], [False, True], "one kill, one resume")
        killed_at = self.events["train_killed"]["step"]
        resumed_from = starts[1]["step"]
        self.assertGreater(resumed_from, 0)
        self.assertLessEqual(resumed_from, killed_at)
        self.assertLess(killed_at, total, "the kill must land mid-run")

    def test_loss_curve_identical_to_plain_run(self):
        plain, ward = self.losses(self.plain_log), self.losses(self.ward_log)
        self.assertEqual(sorted(ward), list(range(1, len(plain) + 1)))
        diff = [s for s in plain if plain[s] != ward.get(s)]
        self.assertEqual(diff, [], "steps whose loss differs from the plain run")
        first, last = float.fromhex(plain[1]), float.fromhex(plain[len(plain)])
        self.assertLess(last, first * 0.8, "the model should learn something")

    def test_checkpoints_identical_through_the_mount(self):
        plain_dir, ward_dir = self.ckpt_dirs()
        names = sorted(os.listdir(plain_dir))
        self.assertEqual(len(names), self.summary["params"]["keep"], names)
        self.assertEqual(sorted(os.listdir(ward_dir)), names, "kept checkpoints differ")
        for n in names:
            a, b = os.path.join(plain_dir, n), os.path.join(ward_dir, n)
            sa, sb = torch.load(a), torch.load(b)
            self.assertEqual(sa["step"], sb["step"])
            self.assertEqual(list(sa["model"]), list(sb["model"]))
            for k in sa["model"]:
                self.assertTrue(torch.equal(sa["model"][k], sb["model"][k]), "%s %s" % (n, k))
            for k, v in sa["optimizer"]["state"].items():
                self.assertTrue(torch.equal(v["momentum_buffer"],
                                            sb["optimizer"]["state"][k]["momentum_buffer"]), n)
            rh.drop_cache(b)  # read through the daemon, not the page cache
            self.assertEqual(rh.sha256_file(a), rh.sha256_file(b),
                             "checkpoint %s differs byte for byte" % n)

    def test_dataset_reads_back_identical(self):
        plain_data, ward_data = os.path.join(self.plain["base"], "data"), os.path.join(self.mnt, "data")
        for rel in ("manifest.json", "features.npy", "shard_000/sample_000000.npy",
                    "shard_015/sample_001535.npy"):
            self.assertEqual(rh.sha256_file(os.path.join(plain_data, rel)),
                             rh.sha256(rh.read_uncached(os.path.join(ward_data, rel))), rel)

    def test_no_io_errors(self):
        for log in (self.plain_log, self.ward_log):
            self.assertEqual(self.of(log, "error"), [])
            self.assertEqual([e["io_errors"] for e in self.of(log, "end")], [0])
        self.assertEqual(self.ward["status"]["counters"]["integrity_failures"], 0)
        self.assertEqual(self.ward["status"]["rekey"]["errors"], 0)
        with open(self.ward["log"], errors="replace") as f:
            bad = [l for l in f if "integrity failure in" in l or "] [error]" in l]
        self.assertEqual(bad, [], "daemon log")
        with open(os.path.join(self.work, "wardfs", "train.log"), errors="replace") as f:
            text = f.read()
        self.assertNotIn("Error", text)

    def test_rotate_and_rekey_happened_while_training(self):
        first, last = self.training_window()
        for name in ("rotate", "rekey_start", "rekey_finish"):
            t = self.events[name]["wall"]
            self.assertTrue(first < t < last, "%s at %.3f not within training [%.3f, %.3f]"
                            % (name, t, first, last))
        self.assertLess(self.events["rotate"]["wall"], self.events["train_killed"]["wall"])
        self.assertEqual(self.events["retire"]["rc"], 0, self.events["retire"]["output"])

    def test_retired_generation_is_gone(self):
        old = self.ward["old_generation"]
        status = self.ward["status"]
        self.assertNotIn(old, [g["generation"] for g in status["generations"]])
        self.assertNotEqual(status["active_generation"], old)
        with open(os.path.join(self.ward["cipher_dir"], rh.CONFIG_NAME)) as f:
            config = json.load(f)
        self.assertNotIn(old, [k["generation"] for k in config["keys"]])
        sc = rh.scan_backing(self.ward["cipher_dir"], status["chunk_size"],
                             rh.OVERHEAD[status["cipher"]])
        self.assertEqual(sc.problems, [])
        self.assertGreater(len(sc.files), self.summary["params"]["samples"])
        self.assertEqual(sc.uses(old), 0, "backing still uses the retired generation: " + sc.summary())
        self.assertEqual(sc.gens(), [status["active_generation"]], sc.summary())

    def test_backing_holds_only_ciphertext(self):
        leaks = []
        for dirpath, dirnames, filenames in os.walk(self.ward["cipher_dir"]):
            for n in dirnames + filenames:
                # The names the example writes (data/, ckpt/, shard_NNN/, sample_N.npy,
                # features.npy, ckpt-N.pt), whole or by their prefix: "ckpt" anywhere in a
                # name also matched a random base64url backing name (~0.5 % of runs).
                if (n in ("data", "ckpt") or n.startswith(("shard_", "sample_", "ckpt-"))
                        or ".npy" in n or n.endswith(".pt")):
                    leaks.append(n)
            for n in filenames:
                with open(os.path.join(dirpath, n), "rb") as f:
                    head = f.read(1 << 16)
                # A zip's 4-byte magic alone turns up in random ciphertext (~1.5e-5 per
                # 64 KiB head, ~2 % of runs over 1,500 files): look for torch.save's first
                # local header, magic and archive name, as a plaintext checkpoint holds it.
                zip_entry = re.search(rb"PK\x03\x04.{26}archive/", head, re.DOTALL)
                if b"\x93NUMPY" in head or zip_entry or b'"labels"' in head:
                    leaks.append(os.path.join(dirpath, n))
        self.assertEqual(leaks, [])

    def test_audit_log_records_the_rotation(self):
        self.assertTrue(pipeline.audit_available(BIN), "this wardfs has no 'audit' command")
        p = rh.run([BIN, "audit", self.mnt, "show", "--json"])
        self.assertEqual(p.returncode, 0, rh.describe(p))
        recs = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
        by = {}
        for r in recs:
            by.setdefault(r["event"], []).append(r)
        first, last = self.training_window()
        for name in ("rotate", "rekey_start", "rekey_finish"):
            self.assertTrue(by.get(name), "no %s record in the audit log" % name)
            t = iso_to_epoch(by[name][-1]["time"])
            self.assertTrue(first < t < last, "audit %s at %s outside training" % (name, by[name][-1]["time"]))
            self.assertEqual(by[name][-1]["result"], "ok")
        retired = [r for r in by.get("retire", []) if r.get("generation") == self.ward["old_generation"]]
        self.assertEqual(len(retired), 1, by.get("retire"))
        self.assertEqual(retired[0]["result"], "ok")
        self.assertEqual(by.get("integrity_failure", []), [])


if __name__ == "__main__":
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        sys.stderr.write("this test needs root and /dev/fuse\n")
    unittest.main(verbosity=2)
