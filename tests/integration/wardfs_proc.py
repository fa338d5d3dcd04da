"""Processes and the mount table, for the wardfs integration harness (wardfs_harness
re-exports all of it): running the CLI, reading /proc/self/mountinfo, finding a volume's
daemons by the temp path on their command line, polling.

Environment knobs: WARDFS_BIN (see wardfs_harness).
"""

import os
import re
import signal
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("WARDFS_BIN") or os.path.join(REPO, "build", "cli", "wardfs")


class HarnessError(Exception):
    """The harness could not set up a volume: reported as a test error, with details."""


def run(args, input=None, timeout=120, env=None, via_files=False):
    """Runs a command, returns CompletedProcess with text stdout/stderr. via_files=True
    captures output through temp files, so a daemon child that keeps stdout open cannot
    make us wait (test_cli_errors checks that separately)."""
    args = [str(a) for a in args]
    if isinstance(input, str):
        input = input.encode()
    stdin = None if input is not None else subprocess.DEVNULL
    try:
        if via_files:
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                p = subprocess.run(args, input=input, stdout=out, stderr=err, timeout=timeout,
                                   env=env, stdin=stdin)
                out.seek(0)
                err.seek(0)
                p.stdout, p.stderr = out.read(), err.read()
        else:
            p = subprocess.run(args, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout, env=env, stdin=stdin)
    except subprocess.TimeoutExpired as e:
        raise HarnessError("command timed out after %ss: %s" % (timeout, " ".join(args))) from e
    p.stdout = p.stdout.decode(errors="replace")
    p.stderr = p.stderr.decode(errors="replace")
    return p


def describe(p, tail=2000):
    """A failed command for an assertion message: its rc, argv and the last `tail`
    characters of stdout and stderr."""
    return "rc=%s\n$ %s\nstdout: %s\nstderr: %s" % (
        p.returncode, " ".join(p.args), p.stdout.strip()[-tail:], p.stderr.strip()[-tail:])


def _unescape_mount_field(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mounts():
    """Entries of /proc/self/mountinfo as dicts: mountpoint, fstype, source, majmin, options."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            out.append({"majmin": lf[2], "mountpoint": _unescape_mount_field(lf[4]),
                        "options": lf[5], "fstype": rf[0],
                        "source": _unescape_mount_field(rf[1]) if len(rf) > 1 else "",
                        "superopts": rf[2] if len(rf) > 2 else ""})
    return out


def mount_entry(path):
    path = os.path.realpath(path)
    found = [m for m in mounts() if m["mountpoint"] == path]
    return found[-1] if found else None


def is_fuse_mounted(path):
    m = mount_entry(path)
    return m is not None and m["fstype"].startswith("fuse")


def proc_mounts_text():
    with open("/proc/mounts") as f:
        return f.read()


def wardfs_pids(tag):
    """PIDs of wardfs processes whose command line mentions `tag` (a unique temp path)."""
    real_bin = os.path.realpath(BIN)
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                cmd = f.read()
            exe = os.readlink("/proc/%s/exe" % d)
        except OSError:
            continue
        if tag.encode() in cmd and (os.path.basename(exe.replace(" (deleted)", "")) ==
                                     os.path.basename(real_bin)):
            pids.append(int(d))
    return pids


def exited(pid):
    """True once every thread of `pid` is gone. A killed process's leader turns zombie
    (empty cmdline, so wardfs_pids no longer sees it) while its other threads still
    exit, and its files, /dev/fuse among them, close only with the last thread."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X") and len(os.listdir("/proc/%d/task" % pid)) <= 1
    except (FileNotFoundError, ProcessLookupError):
        return True


def kill_and_wait(pids, sig=signal.SIGKILL, timeout=10.0):
    """Sends `sig` to each pid and waits until all their threads have exited."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return wait_for(lambda: all(exited(pid) for pid in pids), timeout)


def wait_for(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
