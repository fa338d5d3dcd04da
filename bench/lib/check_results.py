#!/usr/bin/python3
"""Checks a bench/run JSON document: every expected system measured every figure.

  check_results.py RESULTS.json [--systems raw,passthrough,hp,hp_uring,gocryptfs,securefs,wardfs,wardfs_uring]

Exit 1 (listing what is missing) when a system did not run, or a figure is missing,
not a number, or not positive (a time or rate of 0 means the workload did not happen).
Only presence is checked, never speed: CI machines are too noisy for targets.
"""
import argparse
import json
import math
import sys

def main():
    p = argparse.ArgumentParser()
    p.add_argument("json")
    p.add_argument("--systems", default="raw,passthrough,hp,hp_uring,gocryptfs,securefs,wardfs,wardfs_uring")
    a = p.parse_args()
    doc = json.load(open(a.json))
    want = a.systems.split(",")
    problems = ["system %s did not run" % s for s in want if s not in doc["systems"]]
    if not doc["metrics"]:
        problems.append("no figures at all")
    for row in doc["metrics"]:
        for s in want:
            if s not in row["values"]:
                continue  # e.g. daemon CPU has no raw-disk column
            v = row["values"][s]
            if not isinstance(v, (int, float)) or math.isnan(v) or v <= 0:
                problems.append("%s: %s = %r" % (s, row["key"], v))
    workloads = set(doc["meta"].get("workloads", []))
    seen = {row["workload"] for row in doc["metrics"]}
    problems += ["workload %s has no figures" % w for w in sorted(workloads - seen)]
    # bench/run notes a workload group that failed on a system; its earlier figures may exist.
    problems += [n for n in doc["meta"].get("notes", []) if "failed" in n]
    if problems:
        print("bench check FAILED:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("bench check: %d figures for each of %s" % (len(doc["metrics"]), ", ".join(want)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
