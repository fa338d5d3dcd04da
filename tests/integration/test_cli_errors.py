"""The CLI as users meet it: --version/--help, init options, mount/unmount/status, foreground
mode, and every documented failure with its exit code (1 usage, 2 wrong key or passphrase,
3 corrupt volume, 4 mount failure) while nothing gets mounted."""

import json
import os
import signal
import stat
import subprocess

from wardfs_harness import (BACKING_META, BIN, CONFIG_NAME, DIRID_NAME, WardfsTestCase, describe, expected_backing_size,
                            is_fuse_mounted, main, mount_entry, proc_mounts_text, read_file, run,
                            wait_for, write_file)


class Cli(WardfsTestCase):
    def vol(self, **kw):
        v = self.new_volume(**kw)
        self._volumes_for_watchdog = (v,)
        return v

    def assertExit(self, p, code, what):
        codes = code if isinstance(code, (tuple, list)) else (code,)
        self.assertIn(p.returncode, codes, "%s: expected exit %s\n%s" % (what, code, describe(p)))

    def assertNotMounted(self, v):
        self.assertFalse(is_fuse_mounted(v.plain), "%s must not be mounted" % v.plain)
        self.assertNotIn(v.plain, proc_mounts_text())
        self.assertTrue(wait_for(lambda: not v.daemon_pids(), 5), "no daemon may be left running")

    def message(self, p):
        return (p.stdout + p.stderr).lower()

    # ------------------------------------------------------------ basics
    def test_version_and_help(self):
        p = run([BIN, "--version"])
        self.assertExit(p, 0, "--version")
        self.assertRegex(p.stdout + p.stderr, r"\d+\.\d+")
        for cmd in ([], ["init"], ["mount"], ["unmount"], ["status"]):
            p = run([BIN] + cmd + ["--help"])
            self.assertExit(p, 0, "%s --help" % " ".join(cmd))
            self.assertIn("usage", self.message(p), "%s --help prints a usage" % cmd)
        for c in ("init", "mount", "unmount", "status"):
            self.assertIn(c, self.message(run([BIN, "--help"])))

    def test_usage_errors(self):
        self.assertExit(run([BIN]), 1, "no command")
        self.assertExit(run([BIN, "frobnicate"]), 1, "unknown command")
        self.assertExit(run([BIN, "mount", "--no-such-flag"]), 1, "unknown flag")
        v = self.vol()
        p = run([BIN, "init", v.cipher_dir, "--cipher", "rot13"] + v.cred_args())
        self.assertExit(p, 1, "unknown cipher")
        p = run([BIN, "init", v.cipher_dir, "--chunk-size", "5000"] + v.cred_args())
        self.assertExit(p, 1, "chunk size not a power of two")
        p = run([BIN, "init", v.cipher_dir, "--chunk-size", "2M"] + v.cred_args())
        self.assertExit(p, 1, "chunk size too large")
        p = run([BIN, "init", v.cipher_dir, "--holes", "sometimes"] + v.cred_args())
        self.assertExit(p, 1, "bad --holes")
        self.assertFalse(os.path.exists(os.path.join(v.cipher_dir, CONFIG_NAME)))

    # ------------------------------------------------------------ init
    def test_init_layout_and_options(self):
        for cipher, chunk_arg, chunk in (("aes-256-gcm", "4K", 4096), ("xchacha20-poly1305", "64K", 65536),
                                         ("aes-256-gcm", "1M", 1 << 20), ("aes-256-gcm", "16384", 16384)):
            v = self.vol(cipher=cipher, chunk=chunk)
            p = run([BIN, "init", v.cipher_dir, "--cipher", cipher, "--chunk-size", chunk_arg] + v.cred_args())
            self.assertExit(p, 0, "init")
            cfg = json.loads(read_file(v.b(CONFIG_NAME)))
            self.assertEqual(cfg.get("cipher"), cipher)
            self.assertEqual(cfg.get("chunk_size"), chunk)
            self.assertEqual(os.stat(v.b(DIRID_NAME)).st_size, 16)
            self.assertEqual(sorted(os.listdir(v.cipher_dir)), sorted([CONFIG_NAME, DIRID_NAME]))
            v.mount()
            write_file(v.p("f"), b"x" * (chunk + 1))
            v.unmount()
            data_files = [n for n in os.listdir(v.cipher_dir) if n not in BACKING_META]
            self.assertEqual(len(data_files), 1)
            self.assertEqual(os.stat(v.b(data_files[0])).st_size,
                             expected_backing_size(chunk + 1, chunk, cipher))

    def test_init_creates_missing_dir_and_keyfile(self):
        v = self.vol()
        newkey = os.path.join(v.root, "generated.key")
        p = run([BIN, "init", v.cipher_dir, "--keyfile", newkey, "--create-keyfile"])
        self.assertExit(p, 0, "init --create-keyfile")
        st = os.stat(newkey)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600, "a new key file is private")
        self.assertGreaterEqual(st.st_size, 32)
        v.keyfile = newkey
        v.mount()
        write_file(v.p("f"), b"works")
        v.remount()
        self.assertEqual(read_file(v.p("f")), b"works")

    def test_init_refuses_non_empty_dir(self):
        v = self.vol()
        os.mkdir(v.cipher_dir)
        write_file(os.path.join(v.cipher_dir, "stuff"), b"existing")
        p = run(v.init_args())
        self.assertNotEqual(p.returncode, 0, describe(p))
        self.assertIn(p.returncode, (1, 4), describe(p))
        self.assertTrue(p.stderr.strip() or p.stdout.strip(), "init must say why it refused")
        self.assertEqual(read_file(os.path.join(v.cipher_dir, "stuff")), b"existing")
        self.assertFalse(os.path.exists(os.path.join(v.cipher_dir, CONFIG_NAME)))
        # an existing volume is not overwritten either
        v2 = self.vol()
        v2.init()
        cfg = read_file(v2.b(CONFIG_NAME))
        self.assertNotEqual(run(v2.init_args()).returncode, 0, "init over an existing volume")
        self.assertEqual(read_file(v2.b(CONFIG_NAME)), cfg)

    # ------------------------------------------------------------ mount / unmount / status
    def test_mount_status_unmount(self):
        v = self.vol()
        v.init()
        p = run(v.mount_args(), via_files=True)
        self.assertExit(p, 0, "mount")
        self.assertTrue(is_fuse_mounted(v.plain), "mount returned 0, so the mount must be live now")
        self.assertEqual(mount_entry(v.plain)["fstype"], "fuse.wardfs")
        pids = v.daemon_pids()
        self.assertEqual(len(pids), 1, "one daemon serves the mount: %r" % pids)
        # 4 only when some mount is dead: other tests' may be, this one is not.
        p = run([BIN, "status"])
        self.assertExit(p, (0, 4), "status")
        self.assertIn(v.plain + "  <-  " + v.cipher_dir + "\n", p.stdout)
        p = run([BIN, "status", "--json"])
        self.assertExit(p, (0, 4), "status --json")
        own = [m for m in json.loads(p.stdout)["mounts"] if m["mount_point"] == v.plain]
        self.assertEqual([m["state"] for m in own], ["live"])
        p = run([BIN, "unmount", v.plain])
        self.assertExit(p, 0, "unmount")
        self.assertNotMounted(v)
        self.assertNotIn(v.plain, run([BIN, "status", "--json"]).stdout)
        p = run([BIN, "unmount", v.plain])
        self.assertNotEqual(p.returncode, 0, "unmount of something not mounted must fail")

    def test_mount_returns_with_output_captured_by_pipes(self):
        """`out=$(wardfs mount ...)` must not hang: the daemon may not keep our stdout open."""
        v = self.vol()
        v.init()
        p = run(v.mount_args(), timeout=30)  # pipes; raises HarnessError on a hang
        self.assertExit(p, 0, "mount")
        self.assertTrue(is_fuse_mounted(v.plain))

    def test_foreground_mount(self):
        v = self.vol()
        v.init()
        proc = subprocess.Popen(v.mount_args() + ["-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_for(lambda: is_fuse_mounted(v.plain) or proc.poll() is not None, 30))
            self.assertIsNone(proc.poll(), "mount -f must stay in the foreground")
            write_file(v.p("f"), b"fg")
            self.assertEqual(read_file(v.p("f")), b"fg")
            p = run([BIN, "unmount", v.plain])
            self.assertExit(p, 0, "unmount of a foreground mount")
            self.assertEqual(proc.wait(20), 0, "the foreground process exits 0 after unmount")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertNotMounted(v)

    def test_sigterm_unmounts_foreground_daemon(self):
        v = self.vol()
        v.init()
        proc = subprocess.Popen(v.mount_args() + ["-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.assertTrue(wait_for(lambda: is_fuse_mounted(v.plain) or proc.poll() is not None, 30))
            write_file(v.p("f"), b"flushed before exit")
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.assertTrue(wait_for(lambda: not is_fuse_mounted(v.plain), 5),
                        "SIGTERM must unmount cleanly, not leave a dead mount")
        v.mount()
        self.assertEqual(read_file(v.p("f")), b"flushed before exit")

    def test_passphrase_from_stdin(self):
        v = self.vol(passphrase="stdin secret")
        args = [BIN, "init", v.cipher_dir, "--passfile", "-", "--kdf-ops", "1", "--kdf-mem", "8388608", "--insecure-kdf"]
        self.assertExit(run(args, input="stdin secret\n"), 0, "init with --passfile -")
        p = run([BIN, "mount", v.cipher_dir, v.plain, "--passfile", "-"], input="stdin secret\n", timeout=60, via_files=True)
        self.assertExit(p, 0, "mount with --passfile -")
        write_file(v.p("f"), b"ok")
        v.unmount()
        p = run([BIN, "mount", v.cipher_dir, v.plain, "--passfile", "-"], input="not it\n", timeout=60, via_files=True)
        self.assertExit(p, 2, "wrong passphrase on stdin")
        self.assertNotMounted(v)

    def test_log_file_holds_no_secrets(self):
        v = self.vol(passphrase="log secret phrase")
        v.init()
        v.mount()
        write_file(v.p("f"), b"content")
        v.unmount()
        if os.path.exists(v.logfile):
            log = read_file(v.logfile)
            self.assertNotIn(b"log secret phrase", log)
            self.assertNotIn(v.passfile.encode() + b"\0", log)

    # ------------------------------------------------------------ failures
    def test_wrong_key_file(self):
        v = self.vol()
        v.init()
        with open(v.keyfile, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 2, "mount with the wrong key file")
        self.assertIn("wrong", self.message(p))
        self.assertNotMounted(v)

    def test_wrong_passphrase(self):
        v = self.vol(passphrase="right one")
        v.init()
        with open(v.passfile, "w") as f:
            f.write("wrong one\n")
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 2, "mount with the wrong passphrase")
        self.assertIn("wrong", self.message(p))
        self.assertNotMounted(v)

    def test_key_file_readable_by_others_is_refused(self):
        v = self.vol()
        v.init()
        os.chmod(v.keyfile, 0o644)
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 1, "a world-readable key file")
        self.assertIn("chmod", self.message(p))
        self.assertNotMounted(v)

    def test_corrupt_config_truncated(self):
        v = self.vol()
        v.init()
        cfg = read_file(v.b(CONFIG_NAME))
        write_file(v.b(CONFIG_NAME), cfg[:len(cfg) // 2])
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 3, "mount with a truncated config")
        self.assertIn("wardfs.conf", self.message(p))
        self.assertNotMounted(v)

    def test_corrupt_config_bad_chunk_size(self):
        v = self.vol()
        v.init()
        cfg = json.loads(read_file(v.b(CONFIG_NAME)))
        cfg["chunk_size"] = 12345
        write_file(v.b(CONFIG_NAME), json.dumps(cfg).encode())
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 3, "mount with chunk_size 12345")
        self.assertIn("chunk_size", self.message(p))
        self.assertNotMounted(v)

    def test_config_missing(self):
        v = self.vol()
        v.init()
        os.unlink(v.b(CONFIG_NAME))
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 3, "mount without wardfs.conf")
        self.assertIn("wardfs.conf", self.message(p))
        self.assertNotMounted(v)

    def test_security_fields_are_bound_to_the_key(self):
        """Editing cipher or chunk size to other valid values must not mount a weakened volume."""
        for field, value in (("cipher", "xchacha20-poly1305"), ("chunk_size", 65536), ("holes", "never")):
            v = self.vol()
            v.init()
            cfg = json.loads(read_file(v.b(CONFIG_NAME)))
            if cfg.get(field) == value:
                continue
            cfg[field] = value
            write_file(v.b(CONFIG_NAME), json.dumps(cfg).encode())
            p = run(v.mount_args(), timeout=60, via_files=True)
            if field == "holes":
                # not a sealing parameter in the design; either way nothing may break silently
                if p.returncode == 0:
                    v.unmount()
                continue
            self.assertExit(p, (2, 3), "mount after editing %s in the config" % field)
            self.assertNotMounted(v)

    def test_missing_backing_dir(self):
        v = self.vol()
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 4, "mount of a backing dir that does not exist")
        self.assertNotMounted(v)

    def test_missing_mount_point(self):
        v = self.vol()
        v.init()
        p = run(v.mount_args(mountpoint=os.path.join(v.root, "nope")), timeout=60, via_files=True)
        self.assertExit(p, 4, "mount on a missing mount point")
        self.assertFalse(v.daemon_pids())

    def test_mount_point_busy(self):
        v = self.vol()
        v.init()
        v.mount()
        write_file(v.p("f"), b"first mount")
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 4, "mount on a mount point that is already mounted")
        self.assertEqual(read_file(v.p("f")), b"first mount", "the first mount is untouched")
        self.assertEqual(sum(1 for m in proc_mounts_text().splitlines() if v.plain in m), 1)

    def test_mount_point_not_empty(self):
        v = self.vol()
        v.init()
        write_file(os.path.join(v.plain, "already-here"), b"x")
        p = run(v.mount_args(), timeout=60, via_files=True)
        self.assertExit(p, 4, "mount on a non-empty mount point without -o nonempty")
        self.assertNotMounted(v)
        p = run(v.mount_args(options="nonempty"), timeout=60, via_files=True)
        self.assertExit(p, 0, "mount -o nonempty")
        self.assertTrue(is_fuse_mounted(v.plain))
        self.assertEqual(os.listdir(v.plain), [], "the mount hides the old contents")

    def test_unmount_waits_for_daemon_exit(self):
        v = self.vol()
        v.init()
        v.mount()
        pids = v.daemon_pids()
        self.assertTrue(pids)
        p = run([BIN, "unmount", v.plain])
        self.assertExit(p, 0, "unmount")
        self.assertTrue(wait_for(lambda: not any(os.path.exists("/proc/%d" % x) and
                                                 os.path.exists("/proc/%d/exe" % x) for x in pids), 5),
                        "the daemon exits after unmount")

    def test_unmount_refuses_what_is_not_wardfs(self):
        v = self.vol()
        other = os.path.join(v.root, "tmpfs")
        os.mkdir(other)
        p = run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", other])
        self.assertExit(p, 0, "mount a tmpfs to try unmounting")
        self.addCleanup(lambda: mount_entry(other) and run(["umount", other]))
        write_file(os.path.join(other, "kept"), b"tmpfs data")
        p = run([BIN, "unmount", other])
        self.assertExit(p, 4, "wardfs unmount of a tmpfs")
        self.assertIn("not a wardfs", self.message(p))
        entry = mount_entry(other)
        self.assertTrue(entry and entry["fstype"] == "tmpfs", "the tmpfs must stay mounted")
        self.assertEqual(read_file(os.path.join(other, "kept")), b"tmpfs data")

    def test_two_volumes_at_once(self):
        a, b = self.vol(), self.vol()
        for v in (a, b):
            v.init()
            v.mount()
        write_file(a.p("f"), b"in a")
        write_file(b.p("f"), b"in b")
        self.assertEqual(read_file(a.p("f")), b"in a")
        self.assertEqual(read_file(b.p("f")), b"in b")
        status = run([BIN, "status"]).stdout
        self.assertIn(a.plain, status)
        self.assertIn(b.plain, status)
        # the key of one volume does not open the other
        x = os.path.join(a.root, "x")
        os.mkdir(x)
        self.addCleanup(lambda: is_fuse_mounted(x) and run(["fusermount3", "-uz", x]))
        # Read-only: a second read-write mount of b would be refused before any key is tried.
        p = run([BIN, "mount", b.cipher_dir, x, "--keyfile", a.keyfile, "-o", "ro"], timeout=60,
                via_files=True)
        self.assertExit(p, 2, "volume b with volume a's key")
        self.assertFalse(is_fuse_mounted(x))


if __name__ == "__main__":
    main()
