"""`wardfs info CIPHERDIR` shows what wardfs.conf states in the clear without a key (and
names the file when it is missing or corrupt, exit 3); `wardfs status --check TARGET` is a
liveness probe: 0 only while the daemon answers and its backing directory is reachable;
`wardfs status --public MOUNT` gives any user the health and counters of an allow_other
mount through a second socket that answers nothing else."""

import hashlib
import json
import os
import socket
import stat
import subprocess

from wardfs_harness import (BIN, CONFIG_NAME, WardfsTestCase, describe, is_fuse_mounted, kill_and_wait, main,
                            read_file, run, wardfs_pids)

USAGE, CORRUPT, MOUNT_FAILURE, IO = 1, 3, 4, 5
NOBODY = 65534


def as_nobody(args):
    return subprocess.run(args, user=NOBODY, group=NOBODY, extra_groups=[], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, cwd="/",
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


def public_socket(mount_point):
    """Where a root daemon serves the public status of `mount_point` (daemon/control.cc)."""
    digest = hashlib.sha256(os.path.realpath(mount_point).encode()).hexdigest()[:24]
    return os.path.join("/run/wardfs-public", digest + ".sock")


def ask_socket(path, request):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall((json.dumps(request) + "\n").encode())
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


class Info(WardfsTestCase):
    def test_info_shows_the_config_facts_without_a_key(self):
        v = self.new_volume(cipher="xchacha20-poly1305", chunk=16384)
        v.init()
        cfg = json.loads(read_file(v.b(CONFIG_NAME)))
        os.rename(v.keyfile, v.keyfile + ".away")  # no key anywhere near
        p = run([BIN, "info", v.cipher_dir, "--json"], input="")
        self.assertEqual(p.returncode, 0, describe(p))
        s = json.loads(p.stdout)
        self.assertEqual(s["format_version"], cfg["version"])
        self.assertEqual(s["volume_id"], cfg["volume_id"])
        self.assertEqual(s["cipher"], "xchacha20-poly1305")
        self.assertEqual(s["chunk_size"], 16384)
        self.assertEqual(s["keystore"], "keyfile")
        self.assertEqual(s["keystore_details"]["type"], "keyfile")
        self.assertIn(s["holes"], ("allow", "never"))
        self.assertEqual(s["active_generation"], 1)
        self.assertEqual([(g["generation"], g["created"]) for g in s["generations"]],
                         [(k["generation"], k["created"]) for k in cfg["keys"]])
        self.assertTrue(all(g["created"] for g in s["generations"]), "creation times shown")
        self.assertIs(s["audit"]["key"], "audit_key" in cfg)
        self.assertIn(s["volume_id"], s["audit"]["default_log"])
        self.assertFalse(s["mounted"])
        text = json.dumps(s)
        self.assertNotIn(v.keyfile, text, "the keystore's location is left out")
        for k in cfg.get("keys", []) + ([cfg["audit_key"]] if "audit_key" in cfg else []):
            self.assertNotIn(k["wrapped"], text, "no wrapped key material")
        p = run([BIN, "info", v.cipher_dir], input="")
        self.assertEqual(p.returncode, 0, describe(p))
        for want in (cfg["volume_id"], "xchacha20-poly1305", "16384", "keyfile", "format version",
                     s["generations"][0]["created"], "audit"):
            self.assertIn(want, p.stdout)
        # The same facts as `status CIPHERDIR`, from the same function.
        st = json.loads(run([BIN, "status", v.cipher_dir, "--json"]).stdout)
        self.assertEqual(st, s)

    def test_info_of_a_mount_point_describes_its_volume(self):
        v = self.mounted_volume()
        p = run([BIN, "info", v.plain, "--json"])
        self.assertEqual(p.returncode, 0, describe(p))
        s = json.loads(p.stdout)
        self.assertEqual((s["cipher_dir"], s["mounted"], s["mount_point"]), (v.cipher_dir, True, v.plain))

    def test_info_of_a_missing_or_corrupt_config_names_the_file(self):
        v = self.new_volume()
        p = run([BIN, "info", v.root])
        self.assertEqual(p.returncode, CORRUPT, describe(p))
        self.assertIn(os.path.join(v.root, CONFIG_NAME), p.stderr)
        v.init()
        conf = v.b(CONFIG_NAME)
        os.chmod(conf, 0o600)
        with open(conf, "w") as f:
            f.write('{"version": 1, "cipher": ')
        p = run([BIN, "info", v.cipher_dir, "--json"])
        self.assertEqual(p.returncode, CORRUPT, describe(p))
        self.assertIn(conf, p.stderr)
        self.assertEqual(p.stdout, "")
        p = run([BIN, "info"])
        self.assertEqual(p.returncode, USAGE, describe(p))


class Check(WardfsTestCase):
    def test_check_is_zero_only_while_the_daemon_answers(self):
        v = self.mounted_volume()
        p = run([BIN, "status", "--check", v.plain], timeout=30)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertEqual(len(p.stdout.splitlines()), 1, describe(p))
        self.assertIn("ok", p.stdout)
        p = run([BIN, "status", "--check", v.cipher_dir], timeout=30)
        self.assertEqual(p.returncode, 0, "a backing directory stands for its mount\n" + describe(p))
        self.kill_daemon(v)
        self.assertTrue(is_fuse_mounted(v.plain))
        p = run([BIN, "status", "--check", v.plain], timeout=30)
        self.assertNotEqual(p.returncode, 0, describe(p))
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, "a one-line reason\n" + describe(p))
        self.assertIn("dead", p.stderr)
        p = run([BIN, "unmount", v.plain])
        self.assertEqual(p.returncode, 0, describe(p))
        p = run([BIN, "status", "--check", v.plain], timeout=30)
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertIn("not mounted", p.stderr)

    def test_check_fails_when_the_backing_directory_stops_answering(self):
        # The backing directory of `inner` lives on the mount `outer`; killing outer's
        # daemon makes it fail as a dead network file system would (ENOTCONN).
        outer = self.mounted_volume()
        inner = self.new_volume(backing_root=outer.plain)
        self._volumes_for_watchdog = (outer, inner)
        inner.init()
        inner.mount()
        p = run([BIN, "status", "--check", inner.plain], timeout=30)
        self.assertEqual(p.returncode, 0, describe(p))
        pids = wardfs_pids(outer.cipher_dir)
        self.assertEqual(len(pids), 1, pids)
        self.assertTrue(kill_and_wait(pids))
        p = run([BIN, "status", "--check", inner.plain], timeout=30)
        self.assertEqual(p.returncode, IO, describe(p))
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, describe(p))
        self.assertIn("backing directory does not", p.stderr)
        self.assertIn("not connected", p.stderr)
        p = run([BIN, "status", inner.plain, "--prometheus"], timeout=30)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn('wardfs_backing_reachable{mount="%s"} 0' % inner.plain, p.stdout.splitlines())

    def test_check_needs_a_target(self):
        p = run([BIN, "status", "--check"])
        self.assertEqual(p.returncode, USAGE, describe(p))


class PublicStatus(WardfsTestCase):
    def test_other_users_get_counters_and_health_but_nothing_secret(self):
        v = self.new_volume()
        self._volumes_for_watchdog = (v,)
        v.init()
        v.mount("allow_other")
        os.chmod(v.root, 0o755)
        data = os.urandom(50_000)
        with open(v.p("f"), "wb") as f:
            f.write(data)
        p = as_nobody([BIN, "status", "--public", v.plain, "--json"])
        self.assertEqual(p.returncode, 0, describe(p))
        s = json.loads(p.stdout)
        self.assertEqual((s["state"], s["public"], s["backing_reachable"]), ("live", True, True))
        self.assertEqual((s["active_generation"], s["generations"]), (1, 1))
        self.assertGreaterEqual(s["counters"]["bytes_written"], len(data))
        self.assertIn("running", s["rekey"])
        cfg = json.loads(read_file(v.b(CONFIG_NAME)))
        for secret in (v.cipher_dir, v.keyfile, v.key.hex(), cfg["volume_id"], "keyfile"):
            self.assertNotIn(secret, p.stdout, "no key, id or backing path in the public view")
        p = as_nobody([BIN, "status", "--public", v.plain])
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("public view", p.stdout)
        self.assertIn("reachable", p.stdout)
        # The full status stays for root and the owner; the refusal points to --public.
        p = as_nobody([BIN, "status", v.plain])
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertIn("permission denied", p.stderr)
        self.assertIn("--public", p.stderr)
        # The public socket answers everyone, and nothing but public_status.
        path = public_socket(v.plain)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o666)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode), 0o755)
        for op in ("status", "metrics", "health", "rotate", "rekey", "audit_verify"):
            reply = ask_socket(path, {"op": op})
            self.assertIn("error", reply, op)
            self.assertNotIn(v.cipher_dir, json.dumps(reply))
        self.assertEqual(ask_socket(path, {"op": "public_status"})["state"], "live")
        v.unmount()
        self.assertFalse(os.path.exists(path), "the public socket goes with the daemon")

    def test_no_public_socket_without_allow_other(self):
        v = self.mounted_volume()
        self.assertFalse(os.path.exists(public_socket(v.plain)))
        p = run([BIN, "status", "--public", v.plain])
        self.assertEqual(p.returncode, MOUNT_FAILURE, describe(p))
        self.assertIn("allow_other", p.stderr)


if __name__ == "__main__":
    main()
