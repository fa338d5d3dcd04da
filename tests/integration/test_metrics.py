"""Metrics in the Prometheus text format: `wardfs status MOUNT --prometheus` and the file that
`-o metrics_file=,metrics_interval=` keeps current for node_exporter's textfile collector.
Both are parsed with prometheus_client's own parser (Debian: python3-prometheus-client,
installed by scripts/install-deps), and the values must follow from the I/O done."""

import os
import stat
import time

from prometheus_client.parser import text_string_to_metric_families

from wardfs_harness import BIN, WardfsTestCase, describe, main, read_uncached, run, wait_for

USAGE = 1
TIMED_OPS = ("lookup", "create", "read", "write", "fsync")


def parse(text):
    """{(sample name, frozenset of labels without `mount`): value}, the mount labels seen,
    and {family name: type}."""
    samples, mounts, types = {}, set(), {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            labels = dict(s.labels)
            mounts.add(labels.pop("mount", None))
            samples[(s.name, frozenset(labels.items()))] = s.value
    return samples, mounts, types


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


class Metrics(WardfsTestCase):
    def metrics_dir(self, v):
        d = os.path.join(v.root, "textfile")
        os.mkdir(d)
        return d

    def prometheus(self, v):
        p = run([BIN, "status", v.plain, "--prometheus"])
        self.assertEqual(p.returncode, 0, describe(p))
        return p.stdout

    def do_io(self, v, name, size):
        data = os.urandom(size)
        path = v.p(name)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # from the daemon, not the pages the writeback cache kept
        self.assertEqual(read_uncached(path), data)
        return size

    def assertConsistentHistograms(self, samples):
        for op in TIMED_OPS:
            buckets = sorted(((float(dict(labels)["le"]), v) for (name, labels), v in samples.items()
                              if name == "wardfs_operation_duration_seconds_bucket"
                              and dict(labels)["op"] == op))
            self.assertGreater(len(buckets), 10, op)
            self.assertEqual(buckets[-1][0], float("inf"), "the last bucket is +Inf")
            counts = [c for _, c in buckets]
            self.assertEqual(counts, sorted(counts), "%s buckets are cumulative" % op)
            count = value(samples, "wardfs_operation_duration_seconds_count", op=op)
            self.assertEqual(counts[-1], count, "%s: +Inf bucket == _count" % op)
            self.assertEqual(count, value(samples, "wardfs_operations_total", op=op),
                             "%s: every counted request is timed" % op)
            total = value(samples, "wardfs_operation_duration_seconds_sum", op=op)
            self.assertGreaterEqual(total, 0)
            if count:
                self.assertGreater(total, 0, op)
                self.assertLess(total / count, 5, "%s: a plausible mean latency" % op)

    def test_status_prometheus_follows_the_io(self):
        v = self.mounted_volume()
        written = self.do_io(v, "a", 300_000) + self.do_io(v, "b", 5000)
        text = self.prometheus(v)
        samples, mounts, types = parse(text)
        self.assertEqual(mounts, {v.plain}, "every sample has the mount label")
        self.assertEqual(types["wardfs_operation_duration_seconds"], "histogram")
        self.assertEqual(types["wardfs_written_bytes"], "counter")
        self.assertEqual(types["wardfs_inodes_held"], "gauge")
        self.assertGreaterEqual(value(samples, "wardfs_written_bytes_total"), written)
        self.assertGreaterEqual(value(samples, "wardfs_read_bytes_total"), written)
        for op in TIMED_OPS:
            self.assertGreater(value(samples, "wardfs_operations_total", op=op), 0, op)
        self.assertGreater(value(samples, "wardfs_operations_total", op="release"), 0)
        self.assertConsistentHistograms(samples)
        self.assertEqual(value(samples, "wardfs_integrity_failures_total"), 0)
        self.assertEqual(value(samples, "wardfs_active_generation"), 1)
        self.assertEqual(value(samples, "wardfs_generations"), 1)
        self.assertEqual(value(samples, "wardfs_backing_reachable"), 1)
        self.assertEqual(value(samples, "wardfs_rekey_running"), 0)
        self.assertEqual(value(samples, "wardfs_audit_records_dropped_total"), 0)
        self.assertGreater(value(samples, "wardfs_audit_records_written_total"), 0, "the mount record")
        self.assertGreaterEqual(value(samples, "wardfs_inodes_held"), 2, "the root and the files")
        self.assertTrue(wait_for(lambda: value(parse(self.prometheus(v))[0], "wardfs_open_handles") == 0, 5),
                        "nothing open once the files are closed")
        fd = os.open(v.p("a"), os.O_RDONLY)
        try:
            self.assertEqual(value(parse(self.prometheus(v))[0], "wardfs_open_handles"), 1)
        finally:
            os.close(fd)
        # Counters only grow.
        more = self.do_io(v, "c", 4096)
        later = parse(self.prometheus(v))[0]
        self.assertGreaterEqual(value(later, "wardfs_written_bytes_total"),
                                value(samples, "wardfs_written_bytes_total") + more)
        self.assertGreater(value(later, "wardfs_operations_total", op="write"),
                           value(samples, "wardfs_operations_total", op="write"))

    def test_metrics_file_is_written_at_mount_and_rewritten_every_interval(self):
        v = self.new_volume()
        self._volumes_for_watchdog = (v,)
        v.init()
        path = os.path.join(self.metrics_dir(v), "wardfs.prom")
        v.mount("metrics_file=%s,metrics_interval=1s" % path)
        self.assertTrue(os.path.exists(path), "written before mount returns")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644, "node_exporter may read it")
        # The mtime of what `first` was read from, taken before the I/O: the writer thread may
        # rewrite the file (with the new counts) while do_io still reads back, and an mtime
        # taken after it would then already be that of the rewrite waited for below.
        first_mtime = os.stat(path).st_mtime_ns
        with open(path) as f:
            first, mounts, _ = parse(f.read())
        self.assertEqual(mounts, {v.plain})
        written = self.do_io(v, "f", 200_000)

        def rewritten():
            with open(path) as f:
                samples = parse(f.read())[0]
            return samples if value(samples, "wardfs_written_bytes_total") >= written else None
        self.assertTrue(wait_for(rewritten, 10), "the file shows the new counts within the interval")
        samples = rewritten()
        self.assertGreater(os.stat(path).st_mtime_ns, first_mtime)
        self.assertGreater(value(samples, "wardfs_operations_total", op="write"),
                           value(first, "wardfs_operations_total", op="write"))
        self.assertConsistentHistograms(samples)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)
        self.assertEqual(os.listdir(os.path.dirname(path)), ["wardfs.prom"], "no temp file left")
        v.unmount()
        self.assertTrue(os.path.exists(path), "the file stays after unmount, with the last values")
        with open(path) as f:
            self.assertGreaterEqual(value(parse(f.read())[0], "wardfs_written_bytes_total"), written)
        time.sleep(1.5)
        mtime = os.stat(path).st_mtime_ns
        time.sleep(1.5)
        self.assertEqual(os.stat(path).st_mtime_ns, mtime, "the writer stopped with the daemon")

    def test_bad_metrics_options_are_usage_errors(self):
        v = self.new_volume()
        v.init()
        d = self.metrics_dir(v)
        good = os.path.join(d, "w.prom")
        for opts, want in [
                ("metrics_file=%s,metrics_interval=abc" % good, "metrics_interval=abc"),
                ("metrics_file=%s,metrics_interval=0" % good, "1s"),
                ("metrics_file=%s,metrics_interval=-5s" % good, "metrics_interval=-5s"),
                ("metrics_file=%s,metrics_interval=2d" % good, "1d"),
                ("metrics_interval=15s", "needs metrics_file"),
                ("metrics_file=%s" % os.path.join(d, "missing", "w.prom"), "not an existing directory"),
                ("metrics_file=%s" % d, "is a directory"),
                ("metrics_file=", "needs a value")]:
            p = run(v.mount_args(opts), timeout=60, via_files=True)
            self.assertEqual(p.returncode, USAGE, opts + "\n" + describe(p))
            self.assertIn(want, p.stderr, opts)
            self.assertFalse(os.path.ismount(v.plain))
        self.assertEqual(os.listdir(d), [])
        p = run(v.mount_args("metrics_fil=x"), timeout=60, via_files=True)
        self.assertEqual(p.returncode, USAGE, describe(p))
        for name in ("metrics_file=FILE", "metrics_interval=DURATION"):
            self.assertIn(name, p.stderr, "the unknown-option message lists every option")
        for interval in ("15s", "1m", "30"):
            v.mount("metrics_file=%s,metrics_interval=%s" % (good, interval))
            self.assertTrue(os.path.exists(good), interval)
            v.unmount()

    def test_prometheus_needs_a_live_mount(self):
        v = self.new_volume()
        v.init()
        p = run([BIN, "status", v.plain, "--prometheus"])
        self.assertEqual(p.returncode, 4, describe(p))
        self.assertIn("not mounted", p.stderr)
        p = run([BIN, "status", "--prometheus"])
        self.assertEqual(p.returncode, USAGE, describe(p))
        p = run([BIN, "status", v.plain, "--prometheus", "--json"])
        self.assertEqual(p.returncode, USAGE, describe(p))


if __name__ == "__main__":
    main()
