"""The daemon's peak RSS (VmHWM) stays at most 64 MiB through a mixed workload (issue 18).

The workload is what bench/run's seq, small and rand groups do at a smaller scale: a
256 MiB sequential write in 1 MiB blocks and its read back cold, 2,000 small files written
and read back, then random reads from several threads at once (so several FUSE workers
run together). Both volumes use the default chunk size; the passphrase volume is made with
the real (default) Argon2id parameters, 256 MiB: if the derivation ran in the daemon again,
its peak alone would fail the test. bench/run's small-file workload (20,000 files of
32 KiB) is checked on its own: the daemon once kept each closed file's last chunk.
"""

import os
import platform
import random
import threading

from wardfs_harness import (BIN, SEED, WardfsTestCase, describe, drop_cache,
                            drop_tree_cache, main, run, wait_for)

LIMIT_MIB = 64
SEQ_MIB = 256
SMALL_FILES = 2000
SMALL_SIZE = 32 * 1024
READERS = 4
READS_PER_READER = 500
# daemon/worker_pool.h: kMaxIdleReaders
MAX_IDLE_READERS = 2
READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine())


def vm_hwm_mib(pid):
    """The process's peak resident set (VmHWM) in MiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmHWM in /proc/%d/status" % pid)


def seq_write(path, mib):
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(mib):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)


def seq_read(path):
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            got = f.read(1 << 20)
            if not got:
                return total
            total += len(got)


def small_files(root, count, size, dirs=20):
    payload = os.urandom(size)
    for i in range(count):
        d = os.path.join(root, "d%02d" % (i % dirs))
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(payload)
    os.sync()
    drop_tree_cache(root)
    for i in random.Random(SEED).sample(range(count), count):
        with open(os.path.join(root, "d%02d" % (i % dirs), "f%05d" % i), "rb") as f:
            if len(f.read()) != size:
                raise AssertionError("short read of small file %d" % i)


def random_reads(path, size, seed):
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(READS_PER_READER):
            length = rng.choice((4096, 65536, 1 << 20))
            off = rng.randrange(0, size - length) & ~4095
            if len(os.pread(fd, length, off)) != length:
                raise AssertionError("short random read at %d" % off)
    finally:
        os.close(fd)


def threads_reading(pid, fd):
    """Threads of pid blocked in read(2) on fd."""
    n = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/syscall" % (pid, tid)) as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) > 1 and fields[0] == str(READ_SYSCALL) and int(fields[1], 16) == fd:
            n += 1
    return n


def dev_fuse_fd(pid):
    for name in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, name)) == "/dev/fuse":
                return int(name)
        except OSError:
            pass
    raise AssertionError("daemon %d has no /dev/fuse open" % pid)


class PeakRssTest(WardfsTestCase):
    def mixed_workload(self, vol):
        big = vol.p("seq")
        seq_write(big, SEQ_MIB)
        drop_cache(big)
        self.assertEqual(seq_read(big), SEQ_MIB << 20)
        os.mkdir(vol.p("small"))
        small_files(vol.p("small"), SMALL_FILES, SMALL_SIZE)
        drop_cache(big)
        errors = []

        def reader(n):
            try:
                random_reads(big, SEQ_MIB << 20, SEED + n)
            except Exception as e:  # noqa: BLE001 - reported by the main thread
                errors.append(e)
        threads = [threading.Thread(target=reader, args=(n,)) for n in range(READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def check_peak(self, vol, what):
        pids = vol.daemon_pids()
        self.assertEqual(len(pids), 1, "one daemon: %r" % pids)
        after_mount = vm_hwm_mib(pids[0])
        self.mixed_workload(vol)
        peak = vm_hwm_mib(pids[0])
        self.assertLessEqual(
            peak, LIMIT_MIB,
            "%s: daemon peak RSS %.1f MiB (%.1f MiB right after mounting) is over %d MiB"
            % (what, peak, after_mount, LIMIT_MIB))

    def test_key_file_volume(self):
        vol = self.new_volume()
        self._volumes_for_watchdog = (vol,)
        p = run([BIN, "init", vol.cipher_dir, "--keyfile", vol.keyfile])
        self.assertEqual(p.returncode, 0, describe(p))
        vol.mount()
        self.check_peak(vol, "key file volume")

    def test_many_small_files(self):
        # bench/run's small-file workload: 20,000 files of 32 KiB in 100 dirs, read back.
        # The daemon held each closed file's last chunk in plaintext (80 MiB here).
        vol = self.new_volume()
        self._volumes_for_watchdog = (vol,)
        p = run([BIN, "init", vol.cipher_dir, "--keyfile", vol.keyfile])
        self.assertEqual(p.returncode, 0, describe(p))
        vol.mount()
        pid = vol.daemon_pids()[0]
        os.mkdir(vol.p("small"))
        small_files(vol.p("small"), 20000, SMALL_SIZE, dirs=100)
        peak = vm_hwm_mib(pid)
        self.assertLessEqual(peak, LIMIT_MIB, "20,000 small files: daemon peak RSS %.1f MiB is "
                                              "over %d MiB" % (peak, LIMIT_MIB))

    def test_idle_workers_do_not_all_wait_on_dev_fuse(self):
        # The kernel gives each request to the reader that waited longest: with every idle
        # worker in read(), a stream of large writes touched every worker's receive buffer.
        if READ_SYSCALL is None:
            self.skipTest("read(2)'s number on %s is not known here" % platform.machine())
        vol = self.new_volume()
        self._volumes_for_watchdog = (vol,)
        p = run([BIN, "init", vol.cipher_dir, "--keyfile", vol.keyfile])
        self.assertEqual(p.returncode, 0, describe(p))
        vol.mount()
        pid = vol.daemon_pids()[0]
        seq_write(vol.p("f"), 32)
        self.assertEqual(seq_read(vol.p("f")), 32 << 20)
        fd = dev_fuse_fd(pid)
        # Idle again: the readers are back in read(), the others parked.
        self.assertTrue(wait_for(lambda: threads_reading(pid, fd) >= 1, timeout=5))
        with open("/proc/%d/status" % pid) as f:
            threads = int([ln for ln in f if ln.startswith("Threads:")][0].split()[1])
        self.assertGreater(threads, MAX_IDLE_READERS + 4, "the worker pool is there")
        self.assertLessEqual(threads_reading(pid, fd), MAX_IDLE_READERS)

    def test_passphrase_volume_with_the_default_kdf(self):
        vol = self.new_volume(passphrase="correct horse battery staple")
        self._volumes_for_watchdog = (vol,)
        # No --kdf-* options: the default Argon2id parameters (256 MiB).
        p = run([BIN, "init", vol.cipher_dir, "--passfile", vol.passfile], timeout=120)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("argon2id", open(os.path.join(vol.cipher_dir, "wardfs.conf")).read())
        vol.mount()
        self.check_peak(vol, "passphrase volume (default Argon2id)")


if __name__ == "__main__":
    main()
