"""Keystore integration tests: every backend through a real mount, PKCS#11 on a SoftHSM2
token made here, rewrap chains, and a kill -9 during rewrap.

Run by ctest as `/usr/bin/python3 test_keystores.py` with WARDFS_BIN set. Needs root (or
fuse access), softhsm2 and opensc (scripts/install-deps). Standard library only.
"""

import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("WARDFS_BIN") or os.path.join(REPO, "build", "cli", "wardfs")
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
FAST_KDF = ["--kdf-ops", "1", "--kdf-mem", "8M", "--insecure-kdf"]
WRONG_KEY = 2
USAGE = 1


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Workspace:
    """A temp dir with a SoftHSM2 token, a PIN file, and helpers to run wardfs in it."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="wardfs-ks-it-", dir="/tmp")
        self.mounts = []
        tokens = self.path("tokens")
        os.mkdir(tokens)
        self.softhsm_conf = self.path("softhsm2.conf")
        with open(self.softhsm_conf, "w") as f:
            f.write("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n"
                    % tokens)
        # Approvals of command/pkcs11 keystores go to a private trust file.
        self.env = dict(os.environ, SOFTHSM2_CONF=self.softhsm_conf,
                        XDG_CONFIG_HOME=self.path("xdg"))
        self.trust_file = self.path("xdg", "wardfs", "trusted-keystores")
        self.env.pop("WARDFS_PKCS11_PIN", None)
        self.env.pop("WARDFS_COMMAND_TIMEOUT", None)
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "wardfs-test",
                        "--pin", "1234", "--so-pin", "5678"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)
        self.pin_file = self.secret_file("pin", "1234\n")

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def secret_file(self, name, text, mode=0o600):
        path = self.path(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.write(fd, text.encode())
        os.close(fd)
        os.chmod(path, mode)
        return path

    def new_key_file(self, name):
        return self.secret_file(name, os.urandom(32).hex() + "\n")

    def approve(self, keystore):
        """What a user does to let a config's command or pkcs11 keystore run."""
        os.makedirs(os.path.dirname(self.trust_file), exist_ok=True)
        with open(self.trust_file, "a") as f:
            f.write(json.dumps([keystore["type"], keystore["location"]],
                               separators=(",", ":")) + "\n")

    def pkcs11_uri(self, label, pin_source=True):
        uri = "pkcs11:token=wardfs-test;object=%s?module-path=%s" % (label, MODULE)
        return uri + ("&pin-source=file:" + self.pin_file if pin_source else "")

    def run(self, *args, env=None, timeout=120):
        """Runs wardfs with output in temp files (a daemon must not hold our pipes)."""
        full_env = dict(self.env, **(env or {}))
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([BIN] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, env=full_env, timeout=timeout)
            out.seek(0)
            err.seek(0)
            p.stdout = out.read().decode(errors="replace")
            p.stderr = err.read().decode(errors="replace")
        return p

    def mount(self, cipher, plain, *args, env=None):
        os.makedirs(plain, exist_ok=True)
        p = self.run("mount", cipher, plain, "--log-file", self.path("wardfs.log"), *args,
                     env=env, timeout=60)
        if p.returncode == 0:
            self.mounts.append(plain)
        return p

    def unmount(self, plain):
        if is_mounted(plain):
            self.run("unmount", plain, timeout=60)
        if is_mounted(plain):
            subprocess.run(["fusermount3", "-uz", plain], stderr=subprocess.DEVNULL)
        if plain in self.mounts:
            self.mounts.remove(plain)

    def cleanup(self):
        for plain in list(self.mounts):
            self.unmount(plain)
        if not any(is_mounted(m) for m in self.mounts):
            shutil.rmtree(self.root, ignore_errors=True)


def describe(p):
    return "rc=%s\n$ %s\nstdout: %s\nstderr: %s" % (
        p.returncode, " ".join(p.args), p.stdout.strip()[-2000:], p.stderr.strip()[-2000:])


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def load_config(cipher):
    with open(os.path.join(cipher, "wardfs.conf")) as f:
        return json.load(f)


def set_keystore(cipher, keystore):
    """Puts an old keystore section back into the config: the keystore spec is not bound
    into the wrap AD, so this is what someone holding an old key could try."""
    cfg = load_config(cipher)
    cfg["keystore"] = keystore
    with open(os.path.join(cipher, "wardfs.conf"), "w") as f:
        json.dump(cfg, f)


class KeystoreTestCase(unittest.TestCase):
    maxDiff = 2000

    def setUp(self):
        self.ws = Workspace()
        self.addCleanup(self.ws.cleanup)

    def ok(self, p, what):
        self.assertEqual(p.returncode, 0, what + "\n" + describe(p))
        return p

    def refused(self, p, code, text, what):
        self.assertEqual(p.returncode, code, what + "\n" + describe(p))
        self.assertIn(text, p.stderr, what + "\n" + describe(p))

    def write_and_check(self, cipher, plain, files, mount_args=(), env=None, add=None):
        """Mounts, checks `files`, adds `add` (name -> bytes), unmounts, remounts, checks all."""
        p = self.ok(self.ws.mount(cipher, plain, *mount_args, env=env), "mount")
        self.assertIn("wardfs: keystore ", p.stderr, "mount names its keystore")
        for name, data in files.items():
            with open(os.path.join(plain, name), "rb") as f:
                self.assertEqual(f.read(), data, name)
        for name, data in (add or {}).items():
            with open(os.path.join(plain, name), "wb") as f:
                f.write(data)
            files[name] = data
        self.ws.unmount(plain)
        self.ok(self.ws.mount(cipher, plain, *mount_args, env=env), "mount again")
        for name, data in files.items():
            with open(os.path.join(plain, name), "rb") as f:
                self.assertEqual(f.read(), data, name + " after remount")
        self.ws.unmount(plain)


class BackendTests(KeystoreTestCase):
    def roundtrip(self, name, init_args, identity, mount_args=(), env=None):
        cipher, plain = self.ws.path(name, "cipher"), self.ws.path(name, "plain")
        p = self.ok(self.ws.run("init", cipher, *init_args, env=env), "init " + name)
        self.assertIn("Keystore: " + identity, p.stdout)
        files = {}
        self.write_and_check(cipher, plain, files, mount_args, env,
                             add={"a.txt": b"hello " + name.encode(), "big": os.urandom(200000)})
        return cipher

    def test_passphrase(self):
        pass_file = self.ws.secret_file("pass", "correct horse battery\n")
        self.roundtrip("pp", ["--keystore", "passphrase", "--passfile", pass_file] + FAST_KDF,
                       "passphrase:argon2id", ["--passfile", pass_file])

    def test_keyfile_and_shorthand(self):
        key = self.ws.new_key_file("key")
        cipher = self.roundtrip("kf", ["--keystore", "keyfile:" + key], "keyfile:" + key)
        self.assertEqual(load_config(cipher)["keystore"], {"type": "keyfile", "location": key})
        key2 = self.ws.path("key2")
        self.roundtrip("kf2", ["--keyfile", key2, "--create-keyfile"], "keyfile:" + key2)
        self.assertEqual(os.stat(key2).st_mode & 0o777, 0o600)

    def test_command(self):
        key = self.ws.new_key_file("cmdkey")
        self.roundtrip("cmd", ["--keystore", "command:cat " + key], "command:cat")
        self.roundtrip("cmdsh", ["--keystore", "command:sh:tr -d ' ' < '%s'" % key], "command:sh")
        # Wrap mode: a stand-in KMS keeps the per-DEK keys and hands them back on unwrap.
        store = self.ws.path("kms")
        os.mkdir(store)
        kms = self.ws.secret_file("fake-kms", "#!/bin/sh\n"
                                  "case \"$1\" in\n"
                                  "wrap) id=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \\n');"
                                  " cat > %s/$id; echo $id ;;\n"
                                  "unwrap) read id; cat %s/$id ;;\n"
                                  "*) exit 64 ;;\nesac\n" % (store, store), mode=0o700)
        cipher = self.roundtrip("cmdwrap", ["--keystore", "command:wrap:" + kms],
                                "command-wrap:" + kms)
        self.assertEqual(len(os.listdir(store)), 2)  # the data key and the audit key
        shutil.rmtree(store)
        os.mkdir(store)
        p = self.ws.mount(cipher, self.ws.path("cmdwrap", "plain"))
        self.refused(p, WRONG_KEY, "exit status 1", "the KMS lost the key")

    def test_pkcs11(self):
        uri = self.ws.pkcs11_uri("kek-main")
        cipher = self.roundtrip("p11", ["--keystore", uri, "--create-key"],
                                "pkcs11:token=wardfs-test;object=kek-main")
        cfg = load_config(cipher)
        self.assertEqual(cfg["keystore"], {"type": "pkcs11", "location": uri})
        for k in cfg["keys"]:
            self.assertEqual(len(b64url_decode(k["wrapped"])), 12 + 32 + 16)  # iv | dek | tag
        # The KEK stays in the token: sensitive and never extractable.
        listing = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", "wardfs-test",
                                  "--login", "--pin", "1234", "--list-objects", "--type", "secrkey"],
                                 env=self.ws.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True, check=True).stdout
        self.assertIn("label:      kek-main", listing)
        self.assertIn("sensitive", listing)
        self.assertIn("never extractable", listing)
        # PIN from the environment, key made with pkcs11-tool instead of wardfs.
        subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", "wardfs-test",
                        "--login", "--pin", "1234", "--keygen", "--key-type", "AES:32",
                        "--label", "kek-tool", "--sensitive"], env=self.ws.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = {"WARDFS_PKCS11_PIN": "1234"}
        self.roundtrip("p11env", ["--keystore", self.ws.pkcs11_uri("kek-tool", pin_source=False)],
                       "pkcs11:token=wardfs-test;object=kek-tool", env=env)

    def test_pkcs11_errors(self):
        uri = self.ws.pkcs11_uri("kek-a", pin_source=False)
        cipher, plain = self.ws.path("e", "cipher"), self.ws.path("e", "plain")
        good = {"WARDFS_PKCS11_PIN": "1234"}
        self.refused(self.ws.run("init", cipher, "--keystore", uri, env=good), WRONG_KEY,
                     "no AES key labelled 'kek-a'", "init without the key on the token")
        self.ok(self.ws.run("init", cipher, "--keystore", uri, "--create-key", env=good), "init")
        self.refused(self.ws.mount(cipher, plain, env={"WARDFS_PKCS11_PIN": "9999"}), WRONG_KEY,
                     "wrong PIN for PKCS#11 token 'wardfs-test'", "wrong PIN")
        self.refused(self.ws.mount(cipher, plain), USAGE, "WARDFS_PKCS11_PIN", "no PIN at all")
        # Another key on the same token does not unwrap the volume's DEKs.
        other = self.ws.pkcs11_uri("kek-b", pin_source=False)
        self.ok(self.ws.run("init", self.ws.path("o", "cipher"), "--keystore", other, "--create-key",
                            env=good), "init other")
        set_keystore(cipher, {"type": "pkcs11", "location": other})
        self.refused(self.ws.mount(cipher, plain, env=good), WRONG_KEY, "cannot unwrap", "other key")
        gone = {"type": "pkcs11", "location": uri.replace("kek-a", "gone")}
        set_keystore(cipher, gone)
        self.refused(self.ws.mount(cipher, plain, env=good), USAGE, "not approved", "unapproved URI")
        self.ws.approve(gone)
        self.refused(self.ws.mount(cipher, plain, env=good), WRONG_KEY, "no AES key labelled 'gone'",
                     "missing key label")
        absent = {"type": "pkcs11", "location": uri.replace("wardfs-test", "absent")}
        self.ws.approve(absent)
        set_keystore(cipher, absent)
        self.refused(self.ws.mount(cipher, plain, env=good), WRONG_KEY, "no PKCS#11 token 'absent'",
                     "missing token")
        self.assertFalse(is_mounted(plain))

    def test_command_errors(self):
        cipher = self.ws.path("c", "cipher")
        p = self.ws.run("init", cipher, "--keystore", "command:sh:echo 'kms: denied' >&2; exit 3")
        self.refused(p, WRONG_KEY, "exit status 3", "command exits 3")
        self.assertIn("kms: denied", p.stderr, "the command's stderr reaches the user")
        p = self.ws.run("init", cipher, "--keystore", "command:sleep 30", "--command-timeout", "0.5")
        self.refused(p, WRONG_KEY, "did not finish within 500 ms", "command hangs")
        p = self.ws.run("init", cipher, "--keystore", "command:echo 0123abcd")
        self.refused(p, WRONG_KEY, "64 hex digits", "short key")
        self.assertNotIn("0123abcd", p.stderr, "the output is never echoed")
        self.refused(self.ws.run("init", cipher, "--keystore", "command:/nonexistent/kms"), USAGE,
                     "cannot run /nonexistent/kms", "missing program")
        self.assertFalse(os.path.exists(os.path.join(cipher, "wardfs.conf")))
        # A command that works at init and fails at mount: its status and stderr reach the user.
        key = self.ws.new_key_file("k")
        self.ok(self.ws.run("init", cipher, "--keystore", "command:cat " + key), "init")
        os.unlink(key)
        p = self.ws.mount(cipher, self.ws.path("c", "plain"))
        self.refused(p, WRONG_KEY, "exit status 1", "key source gone")
        self.assertIn("No such file", p.stderr)
        p = self.ws.mount(cipher, self.ws.path("c", "plain"), env={"WARDFS_COMMAND_TIMEOUT": "x"})
        self.refused(p, USAGE, "WARDFS_COMMAND_TIMEOUT", "bad timeout")

    def test_config_cannot_pick_a_program_or_module(self):
        """The config is in the untrusted backing dir: a command or PKCS#11 module it names
        runs only if approved on this machine (init and rewrap approve their own)."""
        cipher, plain = self.ws.path("t", "cipher"), self.ws.path("t", "plain")
        key = self.ws.new_key_file("key")
        self.ok(self.ws.run("init", cipher, "--keyfile", key), "init")
        marker = self.ws.path("pwned")
        evil = {"type": "command", "location": "sh:touch %s; cat %s" % (marker, key)}
        set_keystore(cipher, evil)
        self.refused(self.ws.mount(cipher, plain), USAGE, "not approved", "swapped-in command")
        self.assertFalse(os.path.exists(marker), "the command must not have run")
        self.refused(self.ws.run("rewrap", cipher, "--to", "keyfile:" + key), USAGE, "not approved",
                     "rewrap from a swapped-in command")
        self.assertFalse(os.path.exists(marker))
        set_keystore(cipher, {"type": "pkcs11", "location":
                              "pkcs11:token=t;object=k?module-path=" + self.ws.path("evil.so")})
        self.refused(self.ws.mount(cipher, plain), USAGE, "not approved", "swapped-in module")
        # The user approves it: now it runs (and here opens the volume).
        set_keystore(cipher, evil)
        self.ws.approve(evil)
        self.ok(self.ws.mount(cipher, plain), "approved command")
        self.assertTrue(os.path.exists(marker))
        self.ws.unmount(plain)

    def test_keyfile_mode_0644_refused(self):
        key = self.ws.new_key_file("key")
        os.chmod(key, 0o644)
        cipher, plain = self.ws.path("m", "cipher"), self.ws.path("m", "plain")
        self.refused(self.ws.run("init", cipher, "--keystore", "keyfile:" + key), USAGE,
                     "readable by group or others", "init with a 0644 key file")
        os.chmod(key, 0o600)
        self.ok(self.ws.run("init", cipher, "--keyfile", key), "init")
        os.chmod(key, 0o644)
        self.refused(self.ws.mount(cipher, plain), USAGE, "chmod 600", "mount with a 0644 key file")
        self.assertFalse(is_mounted(plain))


class RewrapTests(KeystoreTestCase):
    def rewrap(self, cipher, *args, env=None):
        return self.ws.run("rewrap", cipher, *args, env=env)

    def test_chain_passphrase_keyfile_pkcs11_passphrase(self):
        cipher, plain = self.ws.path("r", "cipher"), self.ws.path("r", "plain")
        pass1 = self.ws.secret_file("pass1", "first passphrase\n")
        pass2 = self.ws.secret_file("pass2", "second passphrase\n")
        key = self.ws.new_key_file("key")
        uri = self.ws.pkcs11_uri("kek-rewrap")
        self.ok(self.ws.run("init", cipher, "--passfile", pass1, *FAST_KDF), "init")
        files = {}
        self.write_and_check(cipher, plain, files, ["--passfile", pass1], add={"f0": b"zero"})
        stages = [
            # (rewrap args, mount args for the new keystore, old mount args)
            (["--passfile", pass1, "--to", "keyfile:" + key], [], ["--passfile", pass1]),
            (["--to", uri, "--create-key"], [], ["--keyfile", key]),
            (["--to", "passphrase", "--to-passfile", pass2] + FAST_KDF, ["--passfile", pass2], []),
        ]
        for i, (args, new_mount, old_mount) in enumerate(stages):
            old_keystore = load_config(cipher)["keystore"]
            p = self.ok(self.rewrap(cipher, *args), "rewrap stage %d" % i)
            self.assertIn("Rewrapped 1 data key", p.stdout)
            self.write_and_check(cipher, plain, files, new_mount, add={"f%d" % (i + 1): os.urandom(5000)})
            # The old credentials no longer open the volume, even with the old keystore
            # section put back into the config.
            new_cfg = load_config(cipher)
            set_keystore(cipher, old_keystore)
            self.refused(self.ws.mount(cipher, plain, *old_mount), WRONG_KEY, "cannot unwrap",
                         "old credentials after stage %d" % i)
            set_keystore(cipher, new_cfg["keystore"])
        # pass1 against the final passphrase volume: refused too.
        self.refused(self.ws.mount(cipher, plain, "--passfile", pass1), WRONG_KEY, "wrong passphrase",
                     "first passphrase at the end")

    def test_rewrap_while_mounted(self):
        cipher, plain = self.ws.path("w", "cipher"), self.ws.path("w", "plain")
        key1, key2 = self.ws.new_key_file("k1"), self.ws.new_key_file("k2")
        self.ok(self.ws.run("init", cipher, "--keyfile", key1), "init")
        self.ok(self.ws.mount(cipher, plain), "mount")
        with open(os.path.join(plain, "before"), "wb") as f:
            f.write(b"written before rewrap")
        self.ok(self.rewrap(cipher, "--to", "keyfile:" + key2), "rewrap while mounted")
        with open(os.path.join(plain, "after"), "wb") as f:
            f.write(b"written after rewrap")
        with open(os.path.join(plain, "before"), "rb") as f:
            self.assertEqual(f.read(), b"written before rewrap")
        self.ws.unmount(plain)
        self.write_and_check(cipher, plain, {"before": b"written before rewrap",
                                             "after": b"written after rewrap"})
        self.refused(self.ws.mount(cipher, plain, "--keyfile", key1), WRONG_KEY, "cannot unwrap",
                     "old key file")

    def test_wrong_current_credentials_change_nothing(self):
        cipher = self.ws.path("n", "cipher")
        pass1 = self.ws.secret_file("pass1", "right\n")
        wrong = self.ws.secret_file("wrong", "wrong\n")
        self.ok(self.ws.run("init", cipher, "--passfile", pass1, *FAST_KDF), "init")
        before = read_bytes(os.path.join(cipher, "wardfs.conf"))
        key = self.ws.new_key_file("key")
        self.refused(self.rewrap(cipher, "--passfile", wrong, "--to", "keyfile:" + key), WRONG_KEY,
                     "wrong passphrase", "rewrap with a wrong passphrase")
        self.refused(self.rewrap(cipher, "--passfile", pass1, "--to", "command:false"), WRONG_KEY,
                     "exit status 1", "rewrap to a failing command")
        self.assertEqual(read_bytes(os.path.join(cipher, "wardfs.conf")), before)

    def test_kill_9_during_rewrap_leaves_old_or_new(self):
        cipher, plain = self.ws.path("k", "cipher"), self.ws.path("k", "plain")
        old_key, new_key = self.ws.new_key_file("old"), self.ws.new_key_file("new")
        self.ok(self.ws.run("init", cipher, "--keyfile", old_key), "init")
        files = {}
        self.write_and_check(cipher, plain, files, add={"data": os.urandom(10000)})
        rng = random.Random(int(os.environ.get("WARDFS_IT_SEED", "0")) or None)
        outcomes = set()
        for attempt in range(10):
            # A slow key command keeps rewrap busy; the kill lands before, during or after
            # the config is replaced. Alternate the direction so both configs get replaced.
            source = load_config(cipher)["keystore"]
            target = ("command:sh:sleep 0.2; cat '%s'" % new_key if source["type"] == "keyfile"
                      else "keyfile:" + old_key)
            proc = subprocess.Popen([BIN, "rewrap", cipher, "--to", target], env=self.ws.env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.0, 0.35))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            cfg = load_config(cipher)  # parses: never a torn file
            outcomes.add((source["type"], cfg["keystore"]["type"]))
            leftovers = [n for n in os.listdir(cipher) if n.startswith("wardfs.conf")]
            p = self.ws.mount(cipher, plain)
            self.assertEqual(p.returncode, 0, "attempt %d: config %s\n%s"
                             % (attempt, cfg["keystore"], describe(p)))
            with open(os.path.join(plain, "data"), "rb") as f:
                self.assertEqual(f.read(), files["data"])
            self.ws.unmount(plain)
            self.assertIn("wardfs.conf", leftovers)
        sys.stderr.write("kill -9 outcomes (from, to): %s\n" % sorted(outcomes))


if __name__ == "__main__":
    if not os.path.exists(MODULE) or shutil.which("softhsm2-util") is None:
        sys.exit("softhsm2 is not installed: run scripts/install-deps")
    unittest.main(verbosity=2)
