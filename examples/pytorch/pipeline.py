#!/usr/bin/python3
"""Runs train.py on a wardfs volume while its keys rotate, and on a plain directory (and
gocryptfs, when installed) for comparison. run.sh is the entry point; tests/examples drives
this with --size ci and checks what it leaves in WORKDIR.

On the wardfs volume, while training runs: `wardfs rotate`, then `wardfs rekey --rate R`
in the background, the training is SIGKILLed once and resumed with --resume, and once the
rekey is done the old generation is retired. Every such action is logged with its wall time
to WORKDIR/events.jsonl; WORKDIR/summary.json holds the paths, timings and results.

WORKDIR layout:
  plain/{data,ckpt,metrics.jsonl,train.log}
  wardfs/{cipher,mnt,key,wardfs.log,metrics.jsonl,train.log}   data and ckpt under mnt/
  gocryptfs/...  wardfs-clean/...  (optional comparison runs)
Everything mounted here is unmounted again on exit, error or SIGTERM.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PY = "/usr/bin/python3"
TRAIN = os.path.join(HERE, "train.py")
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"

# Sizes: "ci" fits the 5-minute test on 2 cores, "full" is the realistic run.
PRESETS = {
    "ci": dict(samples=1536, shards=16, big_mib=16, epochs=3, batch=32, workers=3,
               ckpt_every=20, keep=3, rekey_rate=40),
    # 16,000 samples, not 20,000: the daemon holds an fd per remembered inode and some
    # machines cap fds at 20,000 (see RESULTS.md); --samples raises it where that is not so.
    "full": dict(samples=16000, shards=64, big_mib=256, epochs=3, batch=64, workers=4,
                 ckpt_every=50, keep=3, rekey_rate=100),
}


class PipelineError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def run(args, env=None, timeout=600, check=True):
    """Output to temp files: a daemonizing child (wardfs mount) may keep pipes open."""
    args = [str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                           timeout=timeout)
        out.seek(0)
        err.seek(0)
        p.stdout = out.read().decode(errors="replace")
        p.stderr = err.read().decode(errors="replace")
    if check and p.returncode != 0:
        raise PipelineError("failed (rc=%d): %s\n%s%s" % (p.returncode, " ".join(args), p.stdout,
                                                          p.stderr))
    return p


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == path for line in f)


def read_metrics(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                if line.endswith("\n"):
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def audit_available(binary, env=None):
    """`wardfs audit --help` exits 0 even on a build without it (CLI11 prints the main help
    for an unknown word after --help), so look for the audit command's own usage line."""
    p = run([binary, "audit", "--help"], env=env, check=False, timeout=60)
    return p.returncode == 0 and re.search(r"^Usage:.*\baudit\b", p.stdout, re.M) is not None


class Waiter(threading.Thread):
    """Waits for a background command and notes the wall time it ended at."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc, self.output, self.ended = proc, "", None
        self.start()

    def run(self):
        self.output, _ = self.proc.communicate()
        self.ended = time.time()


def daemon_cpu_seconds(cipher_dir):
    """User+system CPU of the wardfs daemon serving cipher_dir (None if not found): the share
    of the machine that encryption, FUSE and the rekey cost."""
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"mount" in argv and cipher_dir.encode() in argv and os.path.basename(argv[0]) == b"wardfs":
            return (int(fields[11]) + int(fields[12])) / tick
    return None


def last_step(path):
    steps = [r["step"] for r in read_metrics(path) if r["event"] == "step"]
    return steps[-1] if steps else 0


class Pipeline:
    def __init__(self, a):
        self.a = a
        self.work = os.path.abspath(a.workdir)
        self.env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.mounts = []        # (kind, mount point) to undo
        self.trainers = []      # Popen objects of running training jobs
        self.events_path = os.path.join(self.work, "events.jsonl")
        self.summary = {"workdir": self.work, "size": a.size, "params": {}, "runs": {}}

    # ------------------------------------------------------------ bookkeeping
    def event(self, name, wall=None, **kw):
        rec = dict(event=name, wall=wall or time.time(), **kw)
        with open(self.events_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        log("[%s] %s %s" % (time.strftime("%H:%M:%S", time.localtime(rec["wall"])), name,
                            " ".join("%s=%s" % kv for kv in kw.items())))
        return rec

    def wardfs(self, *args, check=True, timeout=600):
        return run([self.a.bin] + list(args), env=self.env, timeout=timeout, check=check)

    def cleanup(self):
        for p in self.trainers:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for kind, mnt in reversed(self.mounts):
            if not is_mounted(mnt):
                continue
            if kind == "wardfs":
                run([self.a.bin, "unmount", mnt], env=self.env, check=False, timeout=60)
            if is_mounted(mnt):
                run(["fusermount3", "-u", mnt], check=False, timeout=60)
            if is_mounted(mnt):
                run(["fusermount3", "-uz", mnt], check=False, timeout=60)
        self.mounts = []

    # ------------------------------------------------------------ training jobs
    def gen(self, data, label):
        t0 = time.time()
        run([PY, TRAIN, "gen", "--data", data, "--samples", self.a.samples, "--shards",
             self.a.shards, "--big-mib", self.a.big_mib, "--seed", self.a.seed],
            env=self.env, timeout=3600)
        secs = time.time() - t0
        log("%s: dataset written in %.1f s" % (label, secs))
        return secs

    def start_train(self, run_dir, base, resume=False):
        cmd = [PY, TRAIN, "train", "--data", os.path.join(base, "data"),
               "--ckpt", os.path.join(base, "ckpt"),
               "--metrics", os.path.join(run_dir, "metrics.jsonl"),
               "--epochs", self.a.epochs, "--batch", self.a.batch, "--workers", self.a.workers,
               "--ckpt-every", self.a.ckpt_every, "--keep", self.a.keep, "--seed", self.a.seed]
        if resume:
            cmd.append("--resume")
        out = open(os.path.join(run_dir, "train.log"), "a")
        p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out,
                             stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        out.close()
        self.trainers.append(p)
        return p

    def wait_train(self, p, run_dir, timeout=7200):
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            raise PipelineError("training in %s ran over %d s" % (run_dir, timeout))
        if rc != 0:
            with open(os.path.join(run_dir, "train.log"), errors="replace") as f:
                tail = f.read()[-3000:]
            raise PipelineError("training in %s failed (rc=%d):\n%s" % (run_dir, rc, tail))

    def wait_step(self, p, metrics, step, what):
        while last_step(metrics) < step:
            if p.poll() is not None:
                raise PipelineError("training ended (rc=%s) before step %d (%s)"
                                    % (p.returncode, step, what))
            time.sleep(0.05)

    def simple_run(self, name, base, cipher_dir=None):
        """Gen + uninterrupted training under `base` (a directory or a mount point)."""
        run_dir = os.path.join(self.work, name)
        os.makedirs(run_dir, exist_ok=True)
        gen_secs = self.gen(os.path.join(base, "data"), name)
        cpu0 = daemon_cpu_seconds(cipher_dir) if cipher_dir else None
        self.wait_train(self.start_train(run_dir, base), run_dir)
        info = dict(base=base, gen_seconds=gen_secs, metrics=os.path.join(run_dir, "metrics.jsonl"))
        if cpu0 is not None:
            info.update(daemon_cpu_gen=cpu0, daemon_cpu_train=daemon_cpu_seconds(cipher_dir) - cpu0)
        self.summary["runs"][name] = info

    # ------------------------------------------------------------ wardfs
    def init_wardfs(self, run_dir):
        cipher, mnt = os.path.join(run_dir, "cipher"), os.path.join(run_dir, "mnt")
        os.makedirs(mnt, exist_ok=True)
        info = dict(cipher_dir=cipher, mount_point=mnt, log=os.path.join(run_dir, "wardfs.log"))
        if self.a.softhsm:
            uri = self.setup_softhsm()
            self.wardfs("init", cipher, "--keystore", uri, "--create-key")
            info.update(keystore="pkcs11", uri=uri)
            mount_creds = []
        else:
            key = os.path.join(run_dir, "key")
            self.wardfs("init", cipher, "--keyfile", key, "--create-keyfile")
            info.update(keystore="keyfile", keyfile=key)
            mount_creds = ["--keyfile", key]
        self.wardfs("mount", cipher, mnt, "--log-file", info["log"], *mount_creds)
        self.mounts.append(("wardfs", mnt))
        return info

    def setup_softhsm(self):
        """A private SoftHSM2 token, PIN file and trust file (as tests/keystore does)."""
        hsm = os.path.join(self.work, "softhsm")
        os.makedirs(os.path.join(hsm, "tokens"), exist_ok=True)
        conf = os.path.join(hsm, "softhsm2.conf")
        with open(conf, "w") as f:
            f.write("directories.tokendir = %s/tokens\nobjectstore.backend = file\n"
                    "log.level = ERROR\n" % hsm)
        self.env.update(SOFTHSM2_CONF=conf, XDG_CONFIG_HOME=os.path.join(hsm, "xdg"))
        run(["softhsm2-util", "--init-token", "--free", "--label", "wardfs-ml", "--pin", "1234",
             "--so-pin", "5678"], env=self.env)
        pin = os.path.join(hsm, "pin")
        fd = os.open(pin, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, b"1234\n")
        os.close(fd)
        return ("pkcs11:token=wardfs-ml;object=wardfs-kek?module-path=%s&pin-source=file:%s"
                % (SOFTHSM_MODULE, pin))

    def status_json(self, mnt):
        return json.loads(self.wardfs("status", mnt, "--json").stdout)

    def audit_available(self):
        return audit_available(self.a.bin, self.env)

    def check_fd_limit(self):
        """The daemon holds an O_PATH fd per inode the kernel remembers (fuse/inode_table.h),
        and every file of the dataset gets remembered: past RLIMIT_NOFILE's hard limit
        (which the daemon raises its soft limit to), creating or opening files fails EMFILE."""
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        files = self.a.samples + self.a.shards + 16
        if hard != resource.RLIM_INFINITY and files > hard - 64:
            log("warning: %d files but the wardfs daemon may hold at most %d fds (ulimit -Hn); "
                "expect EMFILE. Use --samples below %d or raise the hard limit."
                % (files, hard, hard - 64 - self.a.shards - 16))

    def rotation_run(self):
        """The proof: train on wardfs through rotate, rekey, a crash + resume, and retire."""
        name = "wardfs"
        self.check_fd_limit()
        run_dir = os.path.join(self.work, name)
        os.makedirs(run_dir, exist_ok=True)
        info = self.init_wardfs(run_dir)
        mnt, metrics = info["mount_point"], os.path.join(run_dir, "metrics.jsonl")
        info["gen_seconds"] = self.gen(os.path.join(mnt, "data"), name)
        old_gen = self.status_json(mnt)["active_generation"]
        total = self.a.epochs * (self.a.samples // self.a.batch)
        rotate_at = max(2, total // 10)
        kill_at = max(rotate_at + 1, total * 45 // 100, self.a.ckpt_every + 2)
        cpu0 = daemon_cpu_seconds(info["cipher_dir"])
        p = self.start_train(run_dir, mnt)
        self.event("train_start", pid=p.pid)

        self.wait_step(p, metrics, rotate_at, "rotate")
        out = self.wardfs("rotate", mnt).stdout
        self.event("rotate", step=last_step(metrics), output=out.strip().splitlines()[0])
        self.event("rekey_start", step=last_step(metrics), rate_mb=self.a.rekey_rate)
        rekey = subprocess.Popen([self.a.bin, "rekey", mnt, "--rate", str(self.a.rekey_rate),
                                  "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=self.env, text=True)
        rekey_wait = Waiter(rekey)

        self.wait_step(p, metrics, kill_at, "kill")
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        self.event("train_killed", step=last_step(metrics), signal="SIGKILL")
        p = self.start_train(run_dir, mnt, resume=True)
        self.event("train_resumed", pid=p.pid)

        rekey_wait.join(timeout=3600)
        if rekey.returncode != 0:
            raise PipelineError("wardfs rekey failed (rc=%s): %s" % (rekey.returncode, rekey_wait.output))
        self.event("rekey_finish", wall=rekey_wait.ended, progress=rekey_wait.output.strip().splitlines()[-1])
        retire = self.wardfs("retire", mnt, old_gen, check=False)
        self.event("retire", generation=old_gen, rc=retire.returncode, training=p.poll() is None,
                   output=(retire.stdout + retire.stderr).strip())
        if retire.returncode != 0:
            raise PipelineError("wardfs retire %d failed:\n%s" % (old_gen, retire.stderr))
        self.wait_train(p, run_dir)
        self.event("train_end", step=last_step(metrics))
        cpu1 = daemon_cpu_seconds(info["cipher_dir"])
        if cpu0 is not None and cpu1 is not None:
            info["daemon_cpu_train"] = cpu1 - cpu0

        info.update(metrics=metrics, old_generation=old_gen, rotate_at=rotate_at, kill_at=kill_at,
                    status=self.status_json(mnt), status_text=self.wardfs("status", mnt).stdout)
        if self.audit_available():
            audit = self.wardfs("audit", mnt, "show", "--json")
            info["audit_jsonl"] = os.path.join(run_dir, "audit.jsonl")
            with open(info["audit_jsonl"], "w") as f:
                f.write(audit.stdout)
            info["audit_text"] = self.wardfs("audit", mnt, "show").stdout
        self.summary["runs"][name] = info

    def clean_wardfs_run(self):
        """A second volume without rotation or crash: the fair overhead figure."""
        run_dir = os.path.join(self.work, "wardfs-clean")
        os.makedirs(run_dir, exist_ok=True)
        cipher, mnt, key = (os.path.join(run_dir, n) for n in ("cipher", "mnt", "key"))
        os.makedirs(mnt, exist_ok=True)
        self.wardfs("init", cipher, "--keyfile", key, "--create-keyfile")
        self.wardfs("mount", cipher, mnt, "--keyfile", key, "--log-file",
                    os.path.join(run_dir, "wardfs.log"))
        self.mounts.append(("wardfs", mnt))
        self.simple_run("wardfs-clean", mnt, cipher_dir=cipher)

    def gocryptfs_run(self):
        run_dir = os.path.join(self.work, "gocryptfs")
        cipher, mnt, pw = (os.path.join(run_dir, n) for n in ("cipher", "mnt", "pass"))
        for d in (cipher, mnt):
            os.makedirs(d, exist_ok=True)
        fd = os.open(pw, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, os.urandom(16).hex().encode() + b"\n")
        os.close(fd)
        run(["gocryptfs", "-init", "-q", "-passfile", pw, cipher])
        run(["gocryptfs", "-q", "-passfile", pw, cipher, mnt])
        self.mounts.append(("gocryptfs", mnt))
        self.simple_run("gocryptfs", mnt)

    # ------------------------------------------------------------ report
    def timings(self, metrics):
        recs = read_metrics(metrics)
        steps = [r for r in recs if r["event"] == "step"]
        epochs = [r["seconds"] for r in recs if r["event"] == "epoch" and not r["partial"]]
        st = [r["step_time"] for r in steps]
        return dict(median_step_ms=1000 * statistics.median(st), mean_step_ms=1000 * statistics.mean(st),
                    mean_io_wait_ms=1000 * statistics.mean(r["io_wait"] for r in steps),
                    epoch_s=statistics.mean(epochs) if epochs else float("nan"), full_epochs=len(epochs))

    def report(self):
        rows = []
        for name, info in self.summary["runs"].items():
            info["timings"] = self.timings(info["metrics"])
            rows.append((name, info["timings"], info["gen_seconds"], info.get("daemon_cpu_train")))
        base = self.summary["runs"]["plain"]["timings"]

        def pct(v, b):
            return "%+.1f%%" % (100.0 * (v - b) / b) if b else "n/a"

        lines = ["%-13s %9s %9s %9s %9s %8s %9s %8s %8s" % (
            "run", "step med", "step mean", "io wait", "epoch", "epoch %", "step %", "gen s",
            "fs cpu s")]
        for name, t, g, cpu in rows:
            lines.append("%-13s %7.1fms %7.1fms %7.1fms %8.2fs %8s %9s %8.1f %8s" % (
                name, t["median_step_ms"], t["mean_step_ms"], t["mean_io_wait_ms"], t["epoch_s"],
                pct(t["epoch_s"], base["epoch_s"]), pct(t["median_step_ms"], base["median_step_ms"]), g,
                "-" if cpu is None else "%.1f" % cpu))
        lines.append("io wait: time a step waited for its batch; fs cpu s: the wardfs daemon's CPU "
                     "time while training ran (the rotation run's includes the rekey)")
        self.summary["table"] = "\n".join(lines)
        return self.summary["table"]

    def main(self):
        os.makedirs(self.work, exist_ok=True)
        open(self.events_path, "w").close()
        self.summary["params"] = {k: getattr(self.a, k) for k in PRESETS["ci"]}
        self.summary["params"].update(seed=self.a.seed, softhsm=self.a.softhsm)
        self.summary["audit_available"] = self.audit_available()
        os.makedirs(os.path.join(self.work, "plain"), exist_ok=True)
        self.simple_run("plain", os.path.join(self.work, "plain"))
        self.rotation_run()
        if self.a.clean_wardfs:
            self.clean_wardfs_run()
        if self.a.gocryptfs == "yes" or (self.a.gocryptfs == "auto" and shutil.which("gocryptfs")):
            self.gocryptfs_run()
        table = self.report()
        w = self.summary["runs"]["wardfs"]
        log("\n$ wardfs status %s\n%s" % (w["mount_point"], w["status_text"].rstrip()))
        if "audit_text" in w:
            log("\n$ wardfs audit %s show   (last 15 records)\n%s" % (
                w["mount_point"], "\n".join(w["audit_text"].rstrip().splitlines()[-15:])))
        log("\n" + table)
        self.summary["events"] = os.path.join(self.work, "events.jsonl")
        with open(os.path.join(self.work, "summary.json"), "w") as f:
            json.dump(self.summary, f, indent=2)
        log("\nsummary: %s" % os.path.join(self.work, "summary.json"))


def parse_args(argv):
    ap = argparse.ArgumentParser(description="train.py on wardfs through key rotation, vs plain")
    ap.add_argument("--workdir", default=None, help="default: a new /tmp/wardfs-ml-* directory")
    ap.add_argument("--size", choices=sorted(PRESETS), default="full")
    for k, v in PRESETS["ci"].items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--softhsm", action="store_true", help="KEK in a SoftHSM2 token (PKCS#11)")
    ap.add_argument("--gocryptfs", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--clean-wardfs", action="store_true",
                    help="also time a wardfs run without rotation or crash")
    ap.add_argument("--bin", default=os.environ.get("WARDFS_BIN",
                                                    os.path.join(REPO, "build", "cli", "wardfs")))
    a = ap.parse_args(argv)
    for k, v in PRESETS[a.size].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.workdir is None:
        a.workdir = tempfile.mkdtemp(prefix="wardfs-ml-", dir="/tmp")
    return a


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    pipe = Pipeline(a)
    signal.signal(signal.SIGTERM, lambda *_: (pipe.cleanup(), os._exit(143)))
    try:
        pipe.main()
    except PipelineError as e:
        log("pipeline: %s" % e)
        return 1
    finally:
        pipe.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
