#!/usr/bin/python3
"""bench/lib/report.py turns samples into the table whose target cells issue 18 reads:
each must say whether wardfs met the target and, when a FUSE system without encryption
ran, the best ratio such a system reached (the floor)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

REPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "lib", "report.py")


def render(samples, workloads):
    """Runs report.py on {system: {metric: value}}; returns ({label: {column: cell}}, its JSON)."""
    systems = list(samples)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "samples.jsonl"), "w") as f:
            for system, metrics in samples.items():
                for metric, value in metrics.items():
                    f.write(json.dumps({"round": 1, "system": system, "metric": metric, "value": value}) + "\n")
        meta = {"rounds": 1, "systems": systems, "workloads": workloads, "seq_mib": 64, "rand_mib": 32,
                "rand_secs": 2, "meta_files": 1000, "ckpt_count": 4, "ckpt_mib": 16, "sf_files": 1000,
                "sf_kib": 32, "sf_dirs": 20, "ml_samples": 1000, "ml_big_mib": 16}
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f)
        out = subprocess.run([sys.executable, REPORT, os.path.join(tmp, "samples.jsonl"),
                              os.path.join(tmp, "meta.json"), os.path.join(tmp, "out.json")],
                             check=True, capture_output=True, text=True).stdout
        with open(os.path.join(tmp, "out.json")) as f:
            doc = json.load(f)
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows, doc


def row(rows, prefix):
    matches = [r for label, r in rows.items() if label.startswith(prefix)]
    assert len(matches) == 1, (prefix, list(rows))
    return matches[0]


class TargetCells(unittest.TestCase):
    def test_target_missed_and_its_floor_named(self):
        # Seconds: gocryptfs 10, hp_uring 5 (2.0x), wardfs 8 (1.25x); asked 2.5x.
        rows, _ = render({"gocryptfs": {"sf_write_s": 10.0}, "hp": {"sf_write_s": 6.0},
                          "hp_uring": {"sf_write_s": 5.0}, "wardfs": {"sf_write_s": 8.0}}, ["small"])
        r = row(rows, "small files: write")
        self.assertEqual(r["target"], ">= 2.5x **no** (floor 2.00x)")
        self.assertEqual(r["hp_uring vs gocryptfs"], "2.00x")
        self.assertEqual(r["wardfs vs gocryptfs"], "1.25x")

    def test_target_met(self):
        rows, _ = render({"gocryptfs": {"sf_write_s": 10.0}, "hp_uring": {"sf_write_s": 3.0},
                          "wardfs": {"sf_write_s": 4.0}}, ["small"])
        self.assertEqual(row(rows, "small files: write")["target"], ">= 2.5x ok (floor 3.33x)")

    def test_no_floor_without_a_fuse_system_without_encryption(self):
        rows, _ = render({"gocryptfs": {"sf_write_s": 10.0}, "wardfs": {"sf_write_s": 8.0}}, ["small"])
        self.assertEqual(row(rows, "small files: write")["target"], ">= 2.5x **no**")

    def test_issue_18_targets_for_create_and_rm(self):
        rows, _ = render({"gocryptfs": {"create_s": 4.0, "delete_s": 3.0},
                          "wardfs": {"create_s": 2.5, "delete_s": 2.5}}, ["meta"])
        self.assertEqual(row(rows, "create")["target"], ">= 2.0x **no**")
        self.assertEqual(row(rows, "rm -rf")["target"], ">= 1.5x **no**")

    def test_ml_target_against_the_plain_directory(self):
        # Plain 10 s; passthrough_hp 19 s (1.9x plain, the best floor), hp 30 s; wardfs 25 s.
        samples = {"raw": {"ml_gen_s": 10.0}, "hp": {"ml_gen_s": 30.0}, "hp_uring": {"ml_gen_s": 19.0},
                   "gocryptfs": {"ml_gen_s": 40.0}, "wardfs": {"ml_gen_s": 25.0}}
        rows, doc = render(samples, ["ml"])
        r = row(rows, "PyTorch dataset write: 1,000 np.save samples + 16 MiB memmap")
        self.assertEqual(r["target"], "<= 2.0x raw **no** (floor 1.90x)")
        self.assertEqual(r["wardfs vs raw"], "0.40x")
        metric = [m for m in doc["metrics"] if m["key"] == "ml_gen_s"][0]
        self.assertAlmostEqual(metric["x_raw"]["wardfs"], 0.4)
        samples["wardfs"]["ml_gen_s"] = 19.5
        rows, _ = render(samples, ["ml"])
        self.assertEqual(row(rows, "PyTorch")["target"], "<= 2.0x raw ok (floor 1.90x)")

    def test_ml_left_out_unless_run(self):
        rows, _ = render({"raw": {"sf_write_s": 1.0}, "wardfs": {"sf_write_s": 2.0}}, ["small"])
        self.assertFalse([label for label in rows if label.startswith("PyTorch")])


if __name__ == "__main__":
    unittest.main(verbosity=2)
