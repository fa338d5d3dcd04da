"""Someone who can write the backing directory must not be able to swap in a volume of
their own (DESIGN-NOTES threat model): the machine remembers which volume id it approved
at a path, a key file named by the config is read only once approved, and key files must
be regular files owned by the mounting user or root.

The attacker is simulated: their volume is made with a config home of their own and their
key file is chowned to nobody (65534) before its config replaces the victim's. Every wardfs
run here uses a private XDG_CONFIG_HOME (the victim's machine state).
"""

import json
import os
import shutil
import stat
import tempfile
import time
import unittest

from wardfs_harness import (BIN, CONFIG_NAME, DIRID_NAME, WardfsTestCase, describe, is_fuse_mounted,
                            main, read_file, run, write_file)

USAGE = 1
WRONG_KEY = 2
NOBODY = 65534
FAST_KDF = ["--kdf-ops", "1", "--kdf-mem", "8M", "--insecure-kdf"]


def write_secret(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.write(fd, text.encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


class Machine:
    """A temp dir holding volumes, key files and one user's wardfs config home."""

    def __init__(self, root, name):
        self.root = root
        self.xdg = os.path.join(root, name + "-xdg")
        self.env = dict(os.environ, XDG_CONFIG_HOME=self.xdg)
        self.env.pop("WARDFS_COMMAND_TIMEOUT", None)

    def wardfs(self, *args, timeout=60):
        return run([BIN] + list(args), timeout=timeout, env=self.env, via_files=True)

    def known_volumes(self):
        return os.path.join(self.xdg, "wardfs", "known-volumes")

    def trust_file(self):
        return os.path.join(self.xdg, "wardfs", "trusted-keystores")


class VolumeSwapTest(WardfsTestCase):

    def setUp(self):
        super().setUp()
        self.root = tempfile.mkdtemp(prefix="wardfs-swap-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.mounts = []
        self.addCleanup(self.cleanup)
        self.victim = Machine(self.root, "victim")
        self.attacker = Machine(self.root, "attacker")

    def cleanup(self):
        for m in self.mounts:
            if is_fuse_mounted(m):
                self.victim.wardfs("unmount", m)
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def ok(self, p, what):
        self.assertEqual(p.returncode, 0, what + "\n" + describe(p))
        return p

    def refused(self, p, code, what, *texts):
        self.assertEqual(p.returncode, code, what + "\n" + describe(p))
        for text in texts:
            self.assertIn(text, p.stderr, what + "\n" + describe(p))

    def mount(self, machine, cipher, *args, timeout=60):
        plain = self.path("plain-%d" % len(self.mounts))
        os.makedirs(plain, exist_ok=True)
        self.mounts.append(plain)
        p = machine.wardfs("mount", cipher, plain, "--log-file", self.path("wardfs.log"), *args,
                           timeout=timeout)
        return p, plain

    def unmount(self, plain):
        self.ok(self.victim.wardfs("unmount", plain), "unmount")

    def keyfile_volume(self, machine, name):
        cipher = self.path(name)
        key = self.path(name + ".key")
        self.ok(machine.wardfs("init", cipher, "--keyfile", key, "--create-keyfile"), "init " + name)
        return cipher, key

    def passphrase_volume(self, machine, name, passphrase):
        cipher = self.path(name)
        passfile = write_secret(self.path(name + ".pass"), passphrase + "\n")
        self.ok(machine.wardfs("init", cipher, "--passfile", passfile, *FAST_KDF), "init " + name)
        return cipher, passfile

    @staticmethod
    def volume_id(cipher):
        with open(os.path.join(cipher, CONFIG_NAME)) as f:
            return json.load(f)["volume_id"]

    @staticmethod
    def replace_volume(victim_cipher, attacker_cipher):
        """What someone with write access to the backing directory does."""
        for name in (CONFIG_NAME, DIRID_NAME):
            shutil.copyfile(os.path.join(attacker_cipher, name), os.path.join(victim_cipher, name))

    def assert_swap_refused(self, p, plain, cipher, old_id, new_id):
        self.refused(p, USAGE, "mounting a swapped volume", old_id, new_id, cipher,
                     self.victim.known_volumes())
        self.assertFalse(is_fuse_mounted(plain), "nothing may be mounted")

    # -- the attack of the finding
    def test_keyfile_volume_swapped_for_the_attackers_is_refused(self):
        cipher, _ = self.keyfile_volume(self.victim, "victim")
        p, plain = self.mount(self.victim, cipher)
        self.ok(p, "the victim's first mount")
        write_file(os.path.join(plain, "before"), b"old secret")
        self.unmount(plain)

        evil, evil_key = self.keyfile_volume(self.attacker, "evil")
        os.chown(evil_key, NOBODY, NOBODY)
        old_id, new_id = self.volume_id(cipher), self.volume_id(evil)
        self.replace_volume(cipher, evil)

        p, plain = self.mount(self.victim, cipher)
        self.assert_swap_refused(p, plain, cipher, old_id, new_id)
        self.assertIn("echo", p.stderr, "says how to approve an intended replacement")

    def test_passphrase_volume_swapped_for_another_is_refused(self):
        cipher, passfile = self.passphrase_volume(self.victim, "victim", "victim passphrase")
        evil, evil_pass = self.passphrase_volume(self.attacker, "evil", "attacker passphrase")
        old_id, new_id = self.volume_id(cipher), self.volume_id(evil)
        self.replace_volume(cipher, evil)
        # Refused before any passphrase is asked or tried, whichever one is given.
        for creds in ([], ["--passfile", passfile], ["--passfile", evil_pass]):
            p, plain = self.mount(self.victim, cipher, *creds)
            self.assert_swap_refused(p, plain, cipher, old_id, new_id)

    def test_first_mount_pins_the_volume_and_an_approved_replacement_mounts(self):
        # A volume made elsewhere: this machine learns its id on the first mount.
        made_elsewhere, key = self.keyfile_volume(self.attacker, "shared")
        p, plain = self.mount(self.victim, made_elsewhere, "--keyfile", key)
        self.ok(p, "first mount of a volume made on another machine")
        write_file(os.path.join(plain, "f"), b"data")
        self.unmount(plain)
        with open(self.victim.known_volumes()) as f:
            self.assertIn(json.dumps([made_elsewhere, self.volume_id(made_elsewhere)],
                                     separators=(",", ":")), f.read())

        # Replaced on purpose (a restore of another volume): refused until approved with
        # the line the refusal prints.
        other, other_key = self.keyfile_volume(self.attacker, "other")
        old_id, new_id = self.volume_id(made_elsewhere), self.volume_id(other)
        self.replace_volume(made_elsewhere, other)
        p, plain = self.mount(self.victim, made_elsewhere, "--keyfile", other_key)
        self.assert_swap_refused(p, plain, made_elsewhere, old_id, new_id)
        line = json.dumps([made_elsewhere, new_id], separators=(",", ":"))
        self.assertIn("echo '%s' >> %s" % (line, self.victim.known_volumes()), p.stderr)
        with open(self.victim.known_volumes(), "a") as f:
            f.write(line + "\n")
        p, plain = self.mount(self.victim, made_elsewhere, "--keyfile", other_key)
        self.ok(p, "mount after approving the replacement")
        self.unmount(plain)

    def test_init_over_a_known_path_approves_the_new_volume(self):
        cipher, _ = self.keyfile_volume(self.victim, "victim")
        shutil.rmtree(cipher)
        cipher2, _ = self.keyfile_volume(self.victim, "victim")  # the same path, a new id
        self.assertEqual(cipher, cipher2)
        p, plain = self.mount(self.victim, cipher)
        self.ok(p, "the user's own new volume at a known path")
        self.unmount(plain)

    # -- a key file the config names
    def test_key_file_named_by_the_config_needs_approval(self):
        # A volume this machine has not seen, its config naming a key file: the config is
        # untrusted, so its key file is read only once approved (or given with --keyfile).
        cipher, key = self.keyfile_volume(self.attacker, "unseen")
        p, plain = self.mount(self.victim, cipher)
        self.refused(p, USAGE, "a config's key file not approved here", "not approved",
                     key, self.victim.trust_file(), "--keyfile")
        self.assertFalse(is_fuse_mounted(plain))
        p, plain = self.mount(self.victim, cipher, "--keyfile", key)
        self.ok(p, "the same key file given by the user")
        self.unmount(plain)
        line = json.dumps(["keyfile", key], separators=(",", ":"))
        os.makedirs(os.path.dirname(self.victim.trust_file()), exist_ok=True)
        with open(self.victim.trust_file(), "a") as f:
            f.write(line + "\n")
        p, plain = self.mount(self.victim, cipher)
        self.ok(p, "the config's key file once approved")
        self.unmount(plain)

    def test_config_edited_to_name_another_key_file_is_refused(self):
        # Same volume id, keystore pointed at a key file the attacker wrote: even with the
        # id forged, the key file is not approved here, and is never read.
        cipher, _ = self.keyfile_volume(self.victim, "victim")
        evil_key = write_secret(self.path("evil.key"), os.urandom(32).hex() + "\n")
        os.chown(evil_key, NOBODY, NOBODY)
        path = os.path.join(cipher, CONFIG_NAME)
        with open(path) as f:
            cfg = json.load(f)
        cfg["keystore"] = {"type": "keyfile", "location": evil_key}
        with open(path, "w") as f:
            json.dump(cfg, f)
        p, plain = self.mount(self.victim, cipher)
        self.refused(p, USAGE, "a config naming the attacker's key file", "not approved", evil_key)
        # Approved by mistake: the owner check still refuses it.
        with open(self.victim.trust_file(), "a") as f:
            f.write(json.dumps(["keyfile", evil_key], separators=(",", ":")) + "\n")
        p, plain = self.mount(self.victim, cipher)
        self.refused(p, USAGE, "a key file owned by nobody", "owned by uid %d" % NOBODY)
        self.assertFalse(is_fuse_mounted(plain))

    # -- owner and type of key files
    def test_key_file_owned_by_another_user_is_refused(self):
        cipher, key = self.keyfile_volume(self.victim, "victim")
        os.chown(key, NOBODY, NOBODY)
        for args in ([], ["--keyfile", key]):
            p, plain = self.mount(self.victim, cipher, *args)
            self.refused(p, USAGE, "key file owned by nobody %r" % args, key,
                         "owned by uid %d" % NOBODY)
            self.assertFalse(is_fuse_mounted(plain))
        os.chown(key, 0, 0)
        p, plain = self.mount(self.victim, cipher)
        self.ok(p, "the key file owned by the mounting user again")
        self.unmount(plain)

    def test_key_file_that_is_a_fifo_is_refused_at_once(self):
        cipher, key = self.keyfile_volume(self.victim, "victim")
        os.rename(key, key + ".real")
        os.mkfifo(key, 0o600)
        for args in ([], ["--keyfile", key]):  # named by the config, and given by the user
            start = time.monotonic()
            p, plain = self.mount(self.victim, cipher, *args, timeout=20)
            self.refused(p, USAGE, "a FIFO as key file %r" % args, key, "not a regular file")
            self.assertLess(time.monotonic() - start, 15, "refused without waiting for a writer")
            self.assertFalse(is_fuse_mounted(plain))

    def test_key_file_symlinks_are_checked_at_their_target(self):
        cipher, key = self.keyfile_volume(self.victim, "victim")
        real = key + ".real"
        os.rename(key, real)
        os.symlink(real, key)
        p, plain = self.mount(self.victim, cipher)
        self.ok(p, "a symlink to the user's own 0600 key file")
        self.unmount(plain)
        # A symlink to a FIFO, to a file of another user, to a readable file: refused.
        fifo = self.path("fifo")
        os.mkfifo(fifo, 0o600)
        other = write_secret(self.path("other.key"), read_file(real).decode())
        os.chown(other, NOBODY, NOBODY)
        public = write_secret(self.path("public.key"), read_file(real).decode(), 0o644)
        for target, why in ((fifo, "not a regular file"), (other, "owned by uid %d" % NOBODY),
                            (public, "chmod 600")):
            os.unlink(key)
            os.symlink(target, key)
            p, plain = self.mount(self.victim, cipher, timeout=20)
            self.refused(p, USAGE, "a symlink to " + target, why)
            self.assertFalse(is_fuse_mounted(plain))

    def test_offline_commands_refuse_a_swapped_volume_too(self):
        cipher, key = self.keyfile_volume(self.victim, "victim")
        evil, evil_key = self.keyfile_volume(self.attacker, "evil")
        old_id, new_id = self.volume_id(cipher), self.volume_id(evil)
        self.replace_volume(cipher, evil)
        p = self.victim.wardfs("rewrap", cipher, "--to", "keyfile:" + key, "--keyfile", evil_key)
        self.refused(p, USAGE, "rewrap of a swapped volume", old_id, new_id)
        p = self.victim.wardfs("rotate", cipher, "--keyfile", evil_key)
        self.refused(p, USAGE, "offline rotate of a swapped volume", old_id, new_id)
        self.assertTrue(stat.S_ISREG(os.stat(evil_key).st_mode))


if __name__ == "__main__":
    main()
