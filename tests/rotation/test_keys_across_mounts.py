"""Keys across mounts: two -o shared mounts of one volume stand for two machines.
- retire is refused while the other, live mount has not yet followed the rotation (it
  still seals new data under the generation), naming that mount; accepted once it has,
  and no file written through either mount is lost;
- one rekey at a time on a volume: a second one, through the other mount, is refused
  naming the first;
- a rekey whose daemon is killed with SIGKILL is resumed by the other mount, which takes
  it to the end: nothing is left sealed under the old generation;
- the CLI offline and a daemon online record the same audit events for rotate, rekey and
  retire, through the same code (service/key_admin): only the "online" flag differs."""

import json
import os
import signal

from rot_harness import (BIN, EXIT_USAGE, RotationTestCase, describe, main, read_file, run,
                         wait_for, write_file)

KEY_EVENTS = ("rotate", "config_change", "rekey_start", "rekey_finish", "retire")


def daemon_of(vol, mount_point):
    """The pid of the daemon serving `mount_point` (vol.daemon_pids() lists them all)."""
    for pid in vol.daemon_pids():
        with open("/proc/%d/cmdline" % pid) as f:
            if mount_point + "\0" in f.read():
                return pid
    raise AssertionError("no daemon serves " + mount_point)


def status_of(mount_point):
    p = run([BIN, "status", mount_point, "--json"], timeout=30)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)


def key_events(vol):
    p = run([BIN, "audit", vol.cipher_dir, "show", "--json", "--event", ",".join(KEY_EVENTS)],
            timeout=60)
    if p.returncode != 0:
        raise AssertionError(describe(p))
    return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


class KeysAcrossMounts(RotationTestCase):
    def shared_pair(self):
        vol = self.new_volume(mount=False)
        vol.mount("shared")
        other = vol.mount_point_beside("other", self.addCleanup)
        self.assertCmd(vol.mount_at(other, "shared"), 0, vol)
        return vol, other

    def test_retire_waits_for_every_mount_to_follow_the_rotation(self):
        vol, other = self.shared_pair()
        write_file(vol.p("a"), b"written through the first mount" * 300)
        write_file(os.path.join(other, "b"), b"written through the other mount" * 300)
        # The other mount cannot follow while stopped: it still seals under generation 1.
        stopped = daemon_of(vol, other)
        os.kill(stopped, signal.SIGSTOP)
        self.addCleanup(lambda: os.kill(stopped, signal.SIGCONT))
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        self.assertCmd(vol.wardfs("rekey", vol.plain, timeout=120), 0, vol)
        p = vol.wardfs("retire", vol.plain, "1")
        self.assertEqual(p.returncode, EXIT_USAGE, describe(p) + vol.log_tail())
        self.assertIn("still active on the mount " + other, p.stdout + p.stderr)
        self.assertIn("pid %d" % stopped, p.stdout + p.stderr)
        self.assertEqual(vol.config_generations(), ([1, 2], 2), "a refused retire changed nothing")

        os.kill(stopped, signal.SIGCONT)
        self.assertTrue(wait_for(lambda: (status_of(other) or {}).get("active_generation") == 2, 15),
                        "the other mount follows the rotation")
        write_file(os.path.join(other, "c"), b"written after following" * 300)
        self.assertCmd(vol.wardfs("retire", vol.plain, "1"), 0, vol)
        for name, want in (("a", b"written through the first mount" * 300),
                           ("b", b"written through the other mount" * 300),
                           ("c", b"written after following" * 300)):
            self.assertEqual(read_file(vol.p(name)), want, name)
            self.assertEqual(read_file(os.path.join(other, name)), want, name)
        self.assertOnlyGeneration(vol, 2, "after retire")

    def test_one_rekey_at_a_time_and_resumed_after_a_crash(self):
        vol, other = self.shared_pair()
        for i in range(6):
            write_file(vol.p("f%d" % i), bytes([i]) * (1 << 20))
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        # Slow enough (6 MiB at 0.5 MB/s) to still run when the other mount asks.
        self.assertCmd(vol.wardfs("rekey", vol.plain, "--rate", "0.5", "--background"), 0, vol)
        p = vol.wardfs("rekey", other)
        self.assertNotEqual(p.returncode, 0, "a second rekey beside a running one\n" + describe(p))
        self.assertIn("already running: `wardfs rekey` at " + vol.plain, p.stdout + p.stderr)

        os.kill(daemon_of(vol, vol.plain), signal.SIGKILL)
        vol.lazy_unmount()

        def finished_on_other():
            st = status_of(other)
            return st is not None and not st["rekey"]["running"] and st["rekey"]["files_done"] > 0
        self.assertTrue(wait_for(finished_on_other, 60),
                        "the other mount resumes and finishes the rekey: %r" % (status_of(other),))
        self.assertOnlyGeneration(vol, 2, "after the resumed rekey")
        starts = [e for e in key_events(vol) if e["event"] == "rekey_start"]
        self.assertEqual([(e["result"], e["detail"].get("resumed")) for e in starts],
                         [("ok", False), ("refused", None), ("ok", True)], starts)
        for i in range(6):
            self.assertEqual(read_file(os.path.join(other, "f%d" % i)), bytes([i]) * (1 << 20))
        self.assertCmd(vol.wardfs("retire", other, "1"), 0, vol)

    def test_offline_and_online_key_commands_record_the_same_events(self):
        def run_key_commands(online):
            vol = self.new_volume()
            write_file(vol.p("f"), b"some data" * 1000)
            if online:
                target, extra = vol.plain, []
            else:
                vol.unmount()
                target, extra = vol.cipher_dir, ["--keyfile", vol.keyfile]
            self.assertCmd(vol.wardfs("rotate", target, *extra), 0, vol)
            self.assertCmd(vol.wardfs("rekey", target, *extra, timeout=120), 0, vol)
            self.assertCmd(vol.wardfs("retire", target, "1", *extra), 0, vol)
            if online:
                vol.unmount()
            events = key_events(vol)
            for e in events:
                self.assertIs(e["detail"]["online"], online, e)
            return [(e["event"], e["result"], e.get("generation"),
                     sorted(k for k in e["detail"] if k != "online")) for e in events]

        offline, online = run_key_commands(False), run_key_commands(True)
        self.assertEqual(offline, online)
        self.assertEqual([e[0] for e in online], ["rotate", "config_change", "rekey_start",
                                                  "rekey_finish", "retire", "config_change"])


if __name__ == "__main__":
    main()
