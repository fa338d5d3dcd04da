#!/usr/bin/python3
"""A small but realistic PyTorch training job, used to prove wardfs under an ML pipeline.

  train.py gen   --data DIR [--samples N] [--shards S] [--big-mib M] [--seed S]
  train.py train --data DIR --ckpt DIR --metrics FILE [--epochs E] [--resume] ...

`gen` writes a synthetic dataset: N `.npy` signal samples of 16-64 KiB (float32, length
varies) sharded into S subdirectories, a manifest with their labels, and one large float32
array (`features.npy`, M MiB) that the loader reads through numpy.memmap, one row per sample.
Everything is derived from the seed, so two `gen` runs write byte-identical trees.

`train` trains a small 1-D CNN (+ an MLP over the memmapped row) with a multi-worker
DataLoader, writes an atomic checkpoint every N steps (temp name, fsync, rename, fsync the
directory), keeps the last K, resumes from the latest with --resume, and at the end loads the
final checkpoint back (mmap=True when this torch supports it). The metrics log is JSON lines:
one {"event": "step", ...} per step (loss as exact float hex, step time, I/O wait, wall time)
plus start / checkpoint / epoch / final_load / end / error events.

Bit-for-bit reproducible for a given seed: fixed thread count, deterministic algorithms, a
data order computed from (seed, epoch) rather than from RNG state, no dropout or random
augmentation, and a resume that skips exactly the batches already done in that epoch.
Only the Debian packages python3-torch (1.13) and python3-numpy are needed; no downloads.
"""

import argparse
import inspect
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CLASSES = 10
SIGNAL_LEN = 1024  # every sample is pooled to this length inside the worker
FEATURE_DIM = 256  # columns of the memmapped feature matrix
CKPT_PREFIX = "ckpt-"
CKPT_SUFFIX = ".pt"


# ---------------------------------------------------------------- dataset generation

def sample_path(i, shards):
    return os.path.join("shard_%03d" % (i % shards), "sample_%06d.npy" % i)


def make_sample(seed, i):
    """A noisy multi-tone signal whose dominant frequency encodes the label."""
    rng = np.random.default_rng([seed, i])
    label = int(rng.integers(CLASSES))
    length = int(rng.integers(4096, 16384 + 1))  # 16..64 KiB of float32
    t = np.arange(length, dtype=np.float32) / length
    freq = 3.0 + 4.0 * label
    x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    x += 0.6 * rng.standard_normal(length).astype(np.float32)
    return x, label


def write_atomic(path, write):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def cmd_gen(args):
    t0 = time.time()
    for s in range(args.shards):
        os.makedirs(os.path.join(args.data, "shard_%03d" % s), exist_ok=True)
    labels = []
    total = 0
    for i in range(args.samples):
        x, label = make_sample(args.seed, i)
        labels.append(label)
        path = os.path.join(args.data, sample_path(i, args.shards))
        with open(path, "wb") as f:
            np.save(f, x)
        total += x.nbytes
    rows = max(1, args.big_mib * 1024 * 1024 // (FEATURE_DIM * 4))
    big = np.lib.format.open_memmap(os.path.join(args.data, "features.npy.tmp"), mode="w+",
                                    dtype=np.float32, shape=(rows, FEATURE_DIM))
    rng = np.random.default_rng([args.seed, 1 << 30])
    step = 4096
    for r in range(0, rows, step):
        big[r:r + step] = rng.standard_normal((min(step, rows - r), FEATURE_DIM), dtype=np.float32)
    big.flush()
    del big
    os.rename(os.path.join(args.data, "features.npy.tmp"), os.path.join(args.data, "features.npy"))
    manifest = {"samples": args.samples, "shards": args.shards, "seed": args.seed,
                "feature_rows": rows, "labels": labels}
    write_atomic(os.path.join(args.data, "manifest.json"),
                 lambda f: f.write(json.dumps(manifest).encode()))
    print("gen: %d samples (%.1f MiB) + features %d x %d in %.1f s"
          % (args.samples, total / 2**20, rows, FEATURE_DIM, time.time() - t0))


# ---------------------------------------------------------------- training

class SignalDataset(torch.utils.data.Dataset):
    def __init__(self, root):
        with open(os.path.join(root, "manifest.json")) as f:
            m = json.load(f)
        self.root = root
        self.shards = m["shards"]
        self.labels = m["labels"]
        self.rows = m["feature_rows"]
        self.features = None  # opened lazily: each worker maps the file itself

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = np.load(os.path.join(self.root, sample_path(i, self.shards)))
        if self.features is None:
            self.features = np.load(os.path.join(self.root, "features.npy"), mmap_mode="r")
        feat = torch.from_numpy(np.array(self.features[i % self.rows]))
        sig = F.adaptive_avg_pool1d(torch.from_numpy(x).view(1, 1, -1), SIGNAL_LEN).view(1, -1)
        return sig, feat, self.labels[i]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(1, 16, 9, stride=2, padding=4)
        self.conv2 = nn.Conv1d(16, 32, 9, stride=2, padding=4)
        self.conv3 = nn.Conv1d(32, 64, 9, stride=2, padding=4)
        self.feat = nn.Linear(FEATURE_DIM, 32)
        self.head = nn.Linear(64 + 32, CLASSES)

    def forward(self, sig, feat):
        h = F.relu(self.conv1(sig))
        h = F.relu(self.conv2(h))
        h = F.relu(self.conv3(h))
        h = h.mean(dim=2)
        return self.head(torch.cat([h, F.relu(self.feat(feat))], dim=1))


def epoch_batches(n, batch, seed, epoch):
    """The batches of one epoch; depends only on (seed, epoch), so a resume can skip ahead."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    return [order[i:i + batch] for i in range(0, n - batch + 1, batch)]  # drop the last partial


def worker_init(_):
    torch.set_num_threads(1)


class Metrics:
    """Appends JSON lines, flushed per record so a killed run keeps what it logged."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def write(self, **rec):
        rec.setdefault("wall", time.time())
        self.f.write(json.dumps(rec) + "\n")


def checkpoints(ckpt_dir):
    names = [n for n in os.listdir(ckpt_dir) if n.startswith(CKPT_PREFIX) and n.endswith(CKPT_SUFFIX)]
    return sorted(names)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(ckpt_dir, step, state, keep):
    """Temp name, fsync, rename, fsync the directory: a crash leaves the old or the new one.
    torch.save gets a file object, so the archive name inside the zip is fixed ("archive")
    and the file is byte-for-byte the same in every run."""
    name = "%s%08d%s" % (CKPT_PREFIX, step, CKPT_SUFFIX)
    tmp = os.path.join(ckpt_dir, ".%s.tmp" % name)
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(ckpt_dir, name))
    fsync_dir(ckpt_dir)
    for old in checkpoints(ckpt_dir)[:-keep]:
        os.unlink(os.path.join(ckpt_dir, old))
    return name


def load_checkpoint(path):
    """mmap=True (torch >= 2.1) maps the tensors instead of reading them; older torch reads."""
    if "mmap" in inspect.signature(torch.load).parameters:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=False), True
    return torch.load(path, map_location="cpu"), False


def setup_determinism(args):
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)


def resume_state(args, model, opt, metrics):
    ckpts = checkpoints(args.ckpt)
    for n in os.listdir(args.ckpt):  # a run killed mid-save leaves its temp file
        if n.endswith(".tmp"):
            os.unlink(os.path.join(args.ckpt, n))
    if not args.resume or not ckpts:
        return 0
    state, mapped = load_checkpoint(os.path.join(args.ckpt, ckpts[-1]))
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    metrics.write(event="resume", checkpoint=ckpts[-1], step=state["step"], mmap=mapped)
    return state["step"]


def verify_final(args, model, metrics):
    """Loads the last checkpoint back and checks it against the model in memory."""
    name = checkpoints(args.ckpt)[-1]
    state, mapped = load_checkpoint(os.path.join(args.ckpt, name))
    live = model.state_dict()
    same = set(live) == set(state["model"]) and all(
        torch.equal(live[k], state["model"][k]) for k in live)
    metrics.write(event="final_load", checkpoint=name, mmap=mapped, matches=same)
    if not same:
        raise RuntimeError("final checkpoint %s does not match the trained model" % name)


def train_loop(args, model, opt, loader_for, steps_per_epoch, start_step, metrics):
    step = start_step
    total = args.epochs * steps_per_epoch
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        epoch_t0 = time.time()
        it = iter(loader_for(epoch, skip))
        while step < (epoch + 1) * steps_per_epoch:
            t0 = time.perf_counter()
            sig, feat, label = next(it)
            t1 = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(model(sig, feat), label)
            loss.backward()
            opt.step()
            step += 1
            t2 = time.perf_counter()
            metrics.write(event="step", step=step, epoch=epoch, loss=float(loss).hex(),
                          loss_value=float(loss), step_time=t2 - t0, io_wait=t1 - t0)
            if step % args.ckpt_every == 0 or step == total:
                state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}
                name = save_checkpoint(args.ckpt, step, state, args.keep)
                metrics.write(event="checkpoint", step=step, name=name)
        metrics.write(event="epoch", epoch=epoch, seconds=time.time() - epoch_t0,
                      partial=skip > 0, steps=steps_per_epoch - skip)
    return step


def cmd_train(args):
    setup_determinism(args)
    os.makedirs(args.ckpt, exist_ok=True)
    metrics = Metrics(args.metrics)
    ds = SignalDataset(args.data)
    steps_per_epoch = len(ds) // args.batch
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    try:
        start = resume_state(args, model, opt, metrics)
        metrics.write(event="start", step=start, resumed=start > 0, pid=os.getpid(),
                      steps_per_epoch=steps_per_epoch, total_steps=args.epochs * steps_per_epoch,
                      torch=torch.__version__)

        def loader_for(epoch, skip):
            batches = epoch_batches(len(ds), args.batch, args.seed, epoch)[skip:]
            return torch.utils.data.DataLoader(ds, batch_sampler=batches, num_workers=args.workers,
                                               worker_init_fn=worker_init,
                                               persistent_workers=False, prefetch_factor=4)

        step = train_loop(args, model, opt, loader_for, steps_per_epoch, start, metrics)
        verify_final(args, model, metrics)
        metrics.write(event="end", step=step, io_errors=0)
    except OSError as e:
        metrics.write(event="error", kind="io", errno=e.errno, message=str(e))
        raise
    except Exception as e:  # noqa: BLE001 - logged, then re-raised
        metrics.write(event="error", kind=type(e).__name__, message=str(e))
        raise


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="write the synthetic dataset")
    g.add_argument("--data", required=True)
    g.add_argument("--samples", type=int, default=20000)
    g.add_argument("--shards", type=int, default=64)
    g.add_argument("--big-mib", type=int, default=256, help="size of features.npy (memmapped)")
    g.add_argument("--seed", type=int, default=1234)
    t = sub.add_parser("train", help="train, checkpoint, resume")
    t.add_argument("--data", required=True)
    t.add_argument("--ckpt", required=True)
    t.add_argument("--metrics", required=True, help="JSON-lines log (appended)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=0.02)
    t.add_argument("--workers", type=int, default=4)
    t.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    t.add_argument("--ckpt-every", type=int, default=50)
    t.add_argument("--keep", type=int, default=3)
    t.add_argument("--seed", type=int, default=1234)
    t.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    if args.cmd == "gen":
        cmd_gen(args)
    else:
        cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
