#!/usr/bin/python3
"""Summarises an `strace -ff -y -s 64 -xx -o PREFIX` of a FUSE daemon (see bench/lib/profile, mode sizes).

Prints: FUSE requests by opcode with the sizes the kernel asked for (READ) or sent (WRITE),
reply sizes, every other syscall by count, and syscalls per FUSE request; backing-file
I/O (pread/pwrite and friends on files that are not /dev/fuse) with a size histogram.
"""
import collections
import glob
import re
import sys

OPS = {1: "LOOKUP", 2: "FORGET", 3: "GETATTR", 4: "SETATTR", 5: "READLINK", 6: "SYMLINK", 8: "MKNOD",
       9: "MKDIR", 10: "UNLINK", 11: "RMDIR", 12: "RENAME", 13: "LINK", 14: "OPEN", 15: "READ",
       16: "WRITE", 17: "STATFS", 18: "RELEASE", 20: "FSYNC", 21: "SETXATTR", 22: "GETXATTR",
       23: "LISTXATTR", 24: "REMOVEXATTR", 25: "FLUSH", 26: "INIT", 27: "OPENDIR", 28: "READDIR",
       29: "RELEASEDIR", 30: "FSYNCDIR", 31: "GETLK", 32: "SETLK", 33: "SETLKW", 34: "ACCESS",
       35: "CREATE", 36: "INTERRUPT", 37: "BMAP", 38: "DESTROY", 39: "IOCTL", 40: "POLL",
       41: "NOTIFY_REPLY", 42: "BATCH_FORGET", 43: "FALLOCATE", 44: "READDIRPLUS", 45: "RENAME2",
       46: "LSEEK", 47: "COPY_FILE_RANGE", 50: "SYNCFS", 51: "TMPFILE", 52: "STATX"}

LINE = re.compile(r'^(?:\d+\s+)?(?:(\d+\.\d+)\s+)?(\w+)\((.*)\)\s+=\s+(-?\d+|\?)[^<]*(?:<([\d.]+)>)?')
HEX = re.compile(r'\\x([0-9a-f]{2})')
IO_CALLS = {"pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2", "read", "write", "readv", "writev"}


def hexbytes(arg):
    m = re.search(r'"((?:\\x[0-9a-f]{2})+)"', arg)
    return bytes(int(h, 16) for h in HEX.findall(m.group(1))) if m else b""


def bucket(n):
    if n <= 0:
        return "0"
    for lim, name in ((512, "<=512"), (4096 + 64, "~4K"), (16384 + 256, "<=16K"), (65536 + 1024, "<=64K"),
                      (131072 + 2048, "<=128K"), (262144 + 4096, "<=256K"), (524288 + 8192, "<=512K"),
                      (1048576 + 16384, "<=1M")):
        if n <= lim:
            return name
    return ">1M"


def lines(prefix):
    """strace -ff writes PREFIX.TID per thread: no interleaved 'unfinished' lines.
    A None between files marks a new thread."""
    for path in sorted(glob.glob(glob.escape(prefix) + ".*")) or [prefix]:
        with open(path, errors="replace") as f:
            yield from f
        yield None


def fd_path(args):
    """The /dev/fuse or file name strace -y printed for the first argument (hex under -xx)."""
    m = re.match(r'\d+<([^>]*)>', args)
    if not m:
        return ""
    return HEX.sub(lambda h: chr(int(h.group(1), 16)), m.group(1))


def main():
    prefix = sys.argv[1]
    reqs = collections.Counter()
    req_sizes = collections.defaultdict(collections.Counter)
    reply_sizes = collections.Counter()
    calls = collections.Counter()
    backing = collections.defaultdict(collections.Counter)
    backing_bytes = collections.Counter()
    n_req = 0
    # With -ttt -T: time from a request's arrival to its reply, per opcode, and the
    # syscalls made in between (the daemon's work for that request, in this thread).
    handling = collections.defaultdict(list)
    between = collections.defaultdict(collections.Counter)
    pending = None  # (opcode name, arrival time, Counter of syscalls)
    for raw in lines(prefix):
        if raw is None:
            pending = None
            continue
        m = LINE.match(raw)
        if not m:
            continue
        ts, call, args, ret, dur = m.groups()
        ts = float(ts) if ts else None
        ret = int(ret) if ret != "?" else -1
        if pending and not (fd_path(args) == "/dev/fuse"):
            pending[2][call] += 1
        on_fuse = fd_path(args) == "/dev/fuse"
        if on_fuse and call in ("read", "splice") and ret > 0:
            n_req += 1
            b = hexbytes(args)
            op = int.from_bytes(b[4:8], "little") if len(b) >= 8 else -1
            name = OPS.get(op, "op%d" % op) if op >= 0 else "?"
            reqs[name] += 1
            if ts is not None and dur:
                pending = (name, ts + float(dur), collections.Counter())
            if op == 15 and len(b) >= 60:       # fuse_read_in.size
                req_sizes[name][bucket(int.from_bytes(b[56:60], "little"))] += 1
            elif op == 16:                      # header 40 + fuse_write_in 40 + data
                req_sizes[name][bucket(ret - 80)] += 1
            continue
        if on_fuse and call in ("writev", "write", "splice", "vmsplice"):
            if pending and ts is not None:
                handling[pending[0]].append(ts - pending[1])
                between[pending[0]].update(pending[2])
                pending = None
            reply_sizes[bucket(ret - 16)] += 1
            calls["reply:" + call] += 1
            continue
        if on_fuse and call == "read":
            calls["read /dev/fuse (no request)"] += 1
            continue
        calls[call] += 1
        if call in IO_CALLS and ret >= 0:
            backing[call][bucket(ret)] += 1
            backing_bytes[call] += ret

    print("FUSE requests: %d" % n_req)
    for name, c in reqs.most_common():
        sizes = ", ".join("%s: %d" % kv for kv in sorted(req_sizes[name].items(), key=lambda kv: -kv[1]))
        print("  %-12s %8d  %s" % (name, c, ("sizes " + sizes) if sizes else ""))
    if handling:
        print("time from request to reply, per opcode (under strace: compare, do not trust absolutes):")
        for name, c in reqs.most_common():
            h = sorted(handling.get(name, []))
            if not h:
                continue
            per = ", ".join("%s %.1f" % (k, v / len(h)) for k, v in between[name].most_common(6))
            print("  %-12s n=%-7d median %6.0f us  mean %6.0f us   syscalls/req: %s" % (
                name, len(h), 1e6 * h[len(h) // 2], 1e6 * sum(h) / len(h), per))
    if reply_sizes:
        print("reply payload sizes: " + ", ".join("%s: %d" % kv for kv in reply_sizes.most_common()))
    other = sum(c for k, c in calls.items() if not k.startswith("reply:"))
    print("other syscalls: %d (%.1f per FUSE request)" % (other, other / max(n_req, 1)))
    for call, c in calls.most_common(25):
        extra = ""
        if call in backing:
            extra = "  %.1f MB, sizes %s" % (backing_bytes[call] / 1e6,
                                              ", ".join("%s: %d" % kv for kv in backing[call].most_common(4)))
        print("  %-28s %8d  (%.2f/req)%s" % (call, c, c / max(n_req, 1), extra))


if __name__ == "__main__":
    main()
