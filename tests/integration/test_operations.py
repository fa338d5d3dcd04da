"""Operating wardfs: `wardfs status` shows a dead mount as dead (exit 4, with the fix), says
"permission denied" to another user, and reads an unmounted backing directory's config
without unlocking it; the background daemon logs somewhere even without syslog, at a chosen
level, to a file given as a mount option, and reopens that file on SIGHUP; the mount point
can be made unwritable for when nothing is mounted; unknown -o options list every known one;
rekey progress reports whole bytes."""

import json
import os
import re
import signal
import stat
import subprocess
import tempfile

from wardfs_harness import (BIN, CONFIG_NAME, WardfsTestCase, describe, is_fuse_mounted, main, read_file,
                            run, wait_for, write_file)

NOBODY = 65534
MOUNT_FAILURE = 4


def as_nobody(args):
    return subprocess.run(args, user=NOBODY, group=NOBODY, extra_groups=[], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, cwd="/",
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


class Operations(WardfsTestCase):
    def vol(self, **kw):
        v = self.new_volume(**kw)
        self._volumes_for_watchdog = (v,)
        return v

    def own_entry(self, v, p):
        entries = [m for m in json.loads(p.stdout)["mounts"] if m["mount_point"] == v.plain]
        self.assertEqual(len(entries), 1, describe(p))
        return entries[0]

    # ------------------------------------------------------------ status
    def test_status_shows_a_dead_mount_as_dead(self):
        v = self.vol()
        v.init()
        v.mount()
        p = run([BIN, "status", "--json"])
        self.assertEqual(self.own_entry(v, p)["state"], "live")
        self.kill_daemon(v)
        self.assertTrue(is_fuse_mounted(v.plain), "a killed daemon leaves its mount behind")
        p = run([BIN, "status"])
        self.assertEqual(p.returncode, MOUNT_FAILURE, "a dead mount is a failure\n" + describe(p))
        line = [ln for ln in p.stdout.splitlines() if ln.startswith(v.plain + " ")]
        self.assertTrue(line and "DEAD" in line[0], describe(p))
        self.assertIn("fusermount3 -uz " + v.plain, p.stdout)
        self.assertIn("not connected", p.stdout)
        p = run([BIN, "status", "--json"])
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertEqual(self.own_entry(v, p)["state"], "dead")
        p = run([BIN, "status", v.plain])
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertIn("dead", p.stderr)
        self.assertIn("wardfs unmount " + v.plain, p.stderr)
        p = run([BIN, "unmount", v.plain])
        self.assertEqual(p.returncode, 0, "the suggested fix works\n" + describe(p))
        self.assertFalse(is_fuse_mounted(v.plain))

    def test_status_as_another_user_says_permission_denied(self):
        v = self.vol()
        v.init()
        v.mount()
        os.chmod(v.root, 0o755)
        p = as_nobody([BIN, "status", v.plain])
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertIn("permission denied", p.stderr)
        self.assertNotIn("no wardfs daemon answers", p.stderr)
        self.assertIn("root", p.stderr)

    def test_status_of_an_unmounted_backing_dir_reads_its_config(self):
        v = self.vol(cipher="xchacha20-poly1305", chunk=16384)
        v.init()
        cfg = json.loads(read_file(v.b(CONFIG_NAME)))
        p = run([BIN, "status", v.cipher_dir, "--json"], input="")
        self.assertEqual(p.returncode, 0, describe(p))
        s = json.loads(p.stdout)
        self.assertEqual(s["volume_id"], cfg["volume_id"])
        self.assertEqual(s["cipher"], "xchacha20-poly1305")
        self.assertEqual(s["chunk_size"], 16384)
        self.assertEqual(s["keystore"], "keyfile")
        self.assertEqual(s["active_generation"], 1)
        self.assertEqual([g["generation"] for g in s["generations"]], [1])
        self.assertIs(s["audit_key"], "audit_key" in cfg)
        self.assertFalse(s["mounted"])
        text = json.dumps(s)
        for secret in [k.get("wrapped") for k in cfg.get("keys", [])] + [v.key.hex()]:
            if secret:
                self.assertNotIn(secret, text, "no wrapped or plain key material in the offline view")
        p = run([BIN, "status", v.cipher_dir], input="")
        self.assertEqual(p.returncode, 0, describe(p))
        for want in (cfg["volume_id"], "xchacha20-poly1305", "16384", "keyfile", "1 (active)", "audit key"):
            self.assertIn(want, p.stdout)
        v.mount()
        s = json.loads(run([BIN, "status", v.cipher_dir, "--json"]).stdout)
        self.assertEqual((s["mounted"], s["mount_point"]), (True, v.plain))
        p = run([BIN, "status", v.root])
        self.assertEqual(p.returncode, MOUNT_FAILURE, "neither a mount nor a volume\n" + describe(p))

    # ------------------------------------------------------------ daemon log
    def background_mount(self, v, extra, env_extra):
        env = dict(os.environ, **env_extra)
        return run([BIN, "mount", v.cipher_dir, v.plain] + v.cred_args() + extra, env=env, timeout=60,
                   via_files=True)

    def test_without_syslog_the_daemon_logs_to_a_private_file_and_says_where(self):
        v = self.vol()
        v.init()
        logdir = os.path.join(v.root, "logs")
        p = self.background_mount(v, [], {"WARDFS_SYSLOG_SOCKET": os.path.join(v.root, "no-such-socket"),
                                          "WARDFS_LOG_DIR": logdir})
        self.assertEqual(p.returncode, 0, describe(p))
        logfile = os.path.join(logdir, "wardfs.log")
        self.assertIn("warning", p.stderr)
        self.assertIn(logfile, p.stderr, "the mount says where the log goes")
        self.assertEqual(stat.S_IMODE(os.stat(logdir).st_mode), 0o700)
        self.assertEqual(stat.S_IMODE(os.stat(logfile).st_mode), 0o600)
        self.assertTrue(wait_for(lambda: b"mounted " in read_file(logfile), 10), read_file(logfile))

    def test_log_level_and_log_file_as_mount_options(self):
        v = self.vol()
        v.init()
        debug_log = os.path.join(v.root, "debug.log")
        p = run([BIN, "mount", v.cipher_dir, v.plain] + v.cred_args() +
                ["-o", "log_file=%s,log_level=debug" % debug_log], timeout=60, via_files=True)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(stat.S_IMODE(os.stat(debug_log).st_mode), 0o600)
        self.assertTrue(wait_for(lambda: b"[debug]" in read_file(debug_log), 10), read_file(debug_log))
        v.unmount()
        v.mount()  # the harness's --log-file, default level info
        v.unmount()
        self.assertIn("mounted ", v.log_text())
        self.assertNotIn("[debug]", v.log_text())
        os.unlink(v.logfile)
        p = run(v.mount_args() + ["--log-level", "warn"], timeout=60, via_files=True)
        self.assertEqual(p.returncode, 0, describe(p))
        v.unmount()
        self.assertNotIn("mounted ", v.log_text(), "info lines are below --log-level warn")
        for bad in (["--log-level", "loud"], ["-o", "log_level=loud"]):
            p = run(v.mount_args() + bad)
            self.assertEqual(p.returncode, 1, describe(p))
            self.assertFalse(is_fuse_mounted(v.plain))

    def test_a_log_file_that_cannot_be_opened_fails_the_mount_with_its_name(self):
        v = self.vol()
        v.init()
        # Missing parents are created (0700): a path under a regular file cannot be.
        bad = os.path.join(v.keyfile, "wardfs.log")
        p = run([BIN, "mount", v.cipher_dir, v.plain] + v.cred_args() + ["--log-file", bad], timeout=60,
                via_files=True)
        self.assertEqual(p.returncode, 5, describe(p))
        self.assertIn(bad, p.stderr)
        self.assertFalse(is_fuse_mounted(v.plain))

    def test_sighup_reopens_the_log_file_and_keeps_the_mount(self):
        v = self.vol()
        v.init()
        v.mount()
        write_file(v.p("f"), b"before")
        rotated = v.logfile + ".1"
        os.rename(v.logfile, rotated)
        pids = v.daemon_pids()
        self.assertEqual(len(pids), 1, pids)
        os.kill(pids[0], signal.SIGHUP)
        self.assertTrue(wait_for(lambda: os.path.exists(v.logfile), 10), "SIGHUP opens the log file anew")
        self.assertTrue(wait_for(lambda: "reopened" in v.log_text(), 10), v.log_text())
        self.assertEqual(stat.S_IMODE(os.stat(v.logfile).st_mode), 0o600)
        self.assertTrue(v.alive(), "SIGHUP must not unmount")
        self.assertEqual(read_file(v.p("f")), b"before")
        v.unmount()
        self.assertIn("unmounted ", v.log_text(), "later lines go to the new file")
        self.assertNotIn("unmounted ", read_file(rotated).decode(errors="replace"))

    # ------------------------------------------------------------ the mount point underneath
    def test_protected_mount_point_refuses_plaintext_while_unmounted(self):
        for how in (["--protect-mountpoint"], ["-o", "protect_mountpoint"]):
            v = self.vol()
            v.init()
            os.chmod(v.root, 0o755)
            os.chmod(v.plain, 0o777)
            p = run(v.mount_args() + ["-o", "allow_other"] + how, timeout=60, via_files=True)
            self.assertEqual(p.returncode, 0, describe(p))
            os.chmod(v.plain, 0o1777)  # the volume's root, not the directory underneath
            probe = "import sys; open(sys.argv[1], 'w').write('x'); print('ok')"
            r = as_nobody(["/usr/bin/python3", "-c", probe, v.p("mounted-file")])
            self.assertEqual(r.stdout.strip(), "ok", "while mounted the volume is used normally: " + r.stderr)
            v.unmount()
            self.assertFalse(is_fuse_mounted(v.plain))
            self.assertEqual(stat.S_IMODE(os.stat(v.plain).st_mode), 0, how)
            r = as_nobody(["/usr/bin/python3", "-c", probe, v.p("plaintext")])
            self.assertNotEqual(r.returncode, 0, "nobody may write into an unmounted mount point")
            self.assertIn("PermissionError", r.stderr)
            self.assertEqual(os.listdir(v.plain), [])
            v.mount()  # mode 000 underneath does not keep root from mounting again
            self.assertEqual(read_file(v.p("mounted-file")), b"x")

    # ------------------------------------------------------------ usage and progress
    def test_unknown_mount_option_lists_every_option(self):
        v = self.vol()
        v.init()
        p = run(v.mount_args(options="frobnicate"))
        self.assertEqual(p.returncode, 1, describe(p))
        o_help = run([BIN, "mount", "--help"]).stdout.split("Comma-separated mount options:", 1)[1]
        names = re.findall(r"^\s+([a-z_]+=?[A-Z_|0-9]*)\s{2}", o_help, re.M)
        self.assertGreaterEqual(len(names), 16, names)
        for name in names:
            self.assertIn(name, p.stderr, "the unknown -o message lists " + name)

    def test_rekey_progress_is_whole_bytes(self):
        v = self.vol()
        v.init()
        v.mount()
        write_file(v.p("small"), b"x" * 47)
        self.assertEqual(run([BIN, "rotate", v.plain]).returncode, 0)
        p = run([BIN, "rekey", v.plain, "--json"])
        self.assertEqual(p.returncode, 0, describe(p))
        lines = [json.loads(ln) for ln in p.stdout.splitlines() if ln.strip()]
        self.assertTrue(lines, describe(p))
        for line in lines:
            for key in ("bytes_done", "bytes_total", "rate", "eta_seconds"):
                self.assertIsInstance(line[key], int, "%s in %r" % (key, line))
            self.assertLessEqual(line["bytes_done"], line["bytes_total"], line)
        self.assertEqual(run([BIN, "rotate", v.plain]).returncode, 0)
        p = run([BIN, "rekey", v.plain])
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertNotRegex(p.stdout, r"\d\.\d B\b", "whole bytes below 1 KB")
        self.assertNotRegex(p.stdout, r"100 ?% (\d+) B of (?!\1 )", "100 % only when all of it is done")
        self.assertIn("done", p.stdout.splitlines()[-1])


if __name__ == "__main__":
    main()
