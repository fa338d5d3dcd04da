#!/usr/bin/python3
"""Many-file workloads for bench/run. Each subcommand prints one float: elapsed seconds.

  files.py create DIR COUNT SIZE [--dirs N]   write COUNT files of SIZE bytes (open, write, close)
  files.py stat   DIR COUNT [--dirs N]        lstat each of those files by name (no readdir)
  files.py read   DIR COUNT [--dirs N] [--seed S]   read each file whole, in a shuffled order
  files.py text   DIR COUNT [--dirs N] [--seed S]   COUNT text files of 1-12 KiB, each different
                                              (source-tree-like input for the git workload)

File names are predictable (d017/f000123), so stat and read need no directory listing:
the cost measured is lookup + getattr (+ open/read/release), not readdir.
The caller drops caches and syncs; this helper only does the operations it times.
"""
import argparse
import os
import random
import sys
import time


def names(root, count, dirs):
    for i in range(count):
        if dirs <= 1:
            yield os.path.join(root, "f%06d" % i)
        else:
            yield os.path.join(root, "d%03d" % (i % dirs), "f%06d" % i)


def cmd_create(a):
    payload = os.urandom(a.size)
    if a.dirs > 1:
        for d in range(a.dirs):
            os.makedirs(os.path.join(a.dir, "d%03d" % d), exist_ok=True)
    else:
        os.makedirs(a.dir, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    t0 = time.perf_counter()
    for path in names(a.dir, a.count, a.dirs):
        fd = os.open(path, flags, 0o644)
        os.write(fd, payload)
        os.close(fd)
    return time.perf_counter() - t0


def cmd_stat(a):
    t0 = time.perf_counter()
    for path in names(a.dir, a.count, a.dirs):
        os.lstat(path)
    return time.perf_counter() - t0


def cmd_read(a):
    paths = list(names(a.dir, a.count, a.dirs))
    random.Random(a.seed).shuffle(paths)
    t0 = time.perf_counter()
    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            total += len(b)
        os.close(fd)
    dt = time.perf_counter() - t0
    if a.expect_size and total != a.expect_size * a.count:
        sys.exit("read %d bytes, expected %d" % (total, a.expect_size * a.count))
    return dt


def cmd_text(a):
    # Distinct contents, so git stores one loose object per file.
    rng = random.Random(a.seed)
    words = ["alpha", "beta", "gamma", "delta", "tensor", "batch", "epoch", "shard", "layer",
             "return", "static", "const", "int", "void", "struct", "for", "while", "if"]
    if a.dirs > 1:
        for d in range(a.dirs):
            os.makedirs(os.path.join(a.dir, "d%03d" % d), exist_ok=True)
    else:
        os.makedirs(a.dir, exist_ok=True)
    t0 = time.perf_counter()
    for i, path in enumerate(names(a.dir, a.count, a.dirs)):
        lines = ["// file %d" % i]
        for _ in range(rng.randint(20, 300)):
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 9))))
        with open(path + ".c", "w") as f:
            f.write("\n".join(lines) + "\n")
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("create", "stat", "read", "text"):
        s = sub.add_parser(name)
        s.add_argument("dir")
        s.add_argument("count", type=int)
        if name == "create":
            s.add_argument("size", type=int)
        s.add_argument("--dirs", type=int, default=1)
        s.add_argument("--seed", type=int, default=12345)
        s.add_argument("--expect-size", type=int, default=0)
    a = p.parse_args()
    dt = {"create": cmd_create, "stat": cmd_stat, "read": cmd_read, "text": cmd_text}[a.cmd](a)
    print("%.6f" % dt)


if __name__ == "__main__":
    main()
