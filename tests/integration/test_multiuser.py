"""Multi-user safety: under `-o allow_other` another user must not reach anything outside
the volume through the daemon, even while swapping their own backing entries under it.

The attacker is uid 65534 (nobody). The mount gives them a directory of their own; its
backing directory is theirs, as the daemon hands users their own entries. A C program
(swap_attacker.c) watches that backing directory with inotify and swaps every entry the
daemon creates for a symlink or hard link to a root-owned target outside the backing
directory, while a second process of theirs runs mkdir, create, mknod (FIFO and regular
file: the kernel sends MKNOD for the latter), symlink, link,
rename, setxattr and chmod through the mount. Afterwards every target must have the
owner, mode and contents it had.
"""

import hashlib
import os
import stat
import subprocess
import time

import wardfs_harness as h

NOBODY = 65534
NOGROUP = 65534
ATTACK_SECONDS = float(os.environ.get("WARDFS_IT_ATTACK_SECONDS", "8"))
ATTACKER = os.environ.get("WARDFS_ATTACKER",
                          os.path.join(os.path.dirname(h.BIN), "..", "tests", "integration",
                                       "wardfs_swap_attacker"))


def tree_state(top):
    """Owner, mode and contents of everything under `top` (not link counts or times)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [""] + dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            entry = (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode))
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entry += (hashlib.sha256(f.read()).hexdigest(),)
            state[os.path.relpath(path, top)] = entry
    return state


def drive_mount(top, seconds):
    """As the attacker, create and change entries in `top` through the mount (a child)."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setgroups([])
        os.setgid(NOGROUP)
        os.setuid(NOBODY)
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            i += 1
            n = "e%d" % (i % 7)
            p = os.path.join(top, n)
            ops = [
                lambda: os.mkdir(p, 0o755),
                lambda: os.rmdir(p),
                lambda: os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_NONBLOCK, 0o644)),
                lambda: os.unlink(p),
                lambda: os.mkfifo(p, 0o644),
                lambda: os.mknod(p, stat.S_IFREG | 0o644),
                lambda: os.symlink("somewhere", p),
                lambda: os.link(os.path.join(top, "e%d" % ((i + 1) % 7)), p),
                lambda: os.rename(p, os.path.join(top, "e%d" % ((i + 3) % 7))),
                lambda: os.setxattr(p, "user.k", b"v", follow_symlinks=False),
                lambda: os.chmod(p, 0o4755),
                lambda: os.chown(p, NOBODY, NOGROUP, follow_symlinks=False),
            ]
            try:
                ops[i % len(ops)]()
            except OSError:
                pass
    finally:
        os._exit(0)


class SwapAttack(h.WardfsTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(ATTACKER):
            self.fail("the attacker program is not built: %s (set WARDFS_ATTACKER)" % ATTACKER)
        # Hard links to files the attacker does not own, as on a host without this sysctl:
        # the daemon must not rely on it.
        with open("/proc/sys/fs/protected_hardlinks") as f:
            saved = f.read().strip()
        with open("/proc/sys/fs/protected_hardlinks", "w") as f:
            f.write("0")

        def restore():
            with open("/proc/sys/fs/protected_hardlinks", "w") as f:
                f.write(saved)
        self.addCleanup(restore)

    def open_volume(self):
        """A volume mounted with allow_other whose backing tree others may enter, as
        volumes made before `init` created the backing root 0700 are."""
        vol = self.new_volume()
        self._volumes_for_watchdog = (vol,)
        vol.init()
        os.chmod(vol.root, 0o711)
        os.chmod(vol.cipher_dir, 0o755)
        os.chmod(vol.plain, 0o755)
        p = vol.mount("allow_other")
        self.assertIn("not private", p.stderr, "allow_other over an open backing dir warns")
        return vol

    def make_targets(self, vol):
        target = os.path.join(vol.root, "target")
        os.mkdir(target, 0o755)
        os.mkdir(os.path.join(target, "sub"), 0o700)
        secret = os.path.join(target, "secret")
        with open(secret, "wb") as f:
            f.write(b"root's secret\n")
        os.chmod(secret, 0o600)
        return target, secret

    def test_backing_swaps_reach_nothing_outside_the_volume(self):
        vol = self.open_volume()
        target, secret = self.make_targets(vol)
        before = tree_state(target)
        top = vol.p("attacker")
        os.mkdir(top)
        os.chown(top, NOBODY, NOGROUP)
        backing_top = [e.path for e in os.scandir(vol.cipher_dir)
                       if e.is_dir(follow_symlinks=False) and e.stat(follow_symlinks=False).st_uid == NOBODY]
        self.assertEqual(len(backing_top), 1, "the attacker's backing directory is theirs")

        attacker = subprocess.Popen([ATTACKER, str(NOBODY), str(NOGROUP), backing_top[0], target,
                                     secret, str(ATTACK_SECONDS)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)  # the watch is in place
        driver = drive_mount(top, ATTACK_SECONDS)
        os.waitpid(driver, 0)
        out, err = attacker.communicate(timeout=ATTACK_SECONDS + 30)
        self.assertEqual(attacker.returncode, 0, err)
        swaps = int(out.split()[-1])
        self.assertGreater(swaps, 20, "the attacker really swapped entries under the daemon")

        self.assertEqual(tree_state(target), before,
                         "something outside the backing directory changed owner, mode or "
                         "contents" + vol.log_tail())
        self.assertTrue(vol.alive(), "the daemon survived" + vol.log_tail())


class PrivateBacking(h.WardfsTestCase):
    def test_init_makes_the_backing_root_private(self):
        vol = self.new_volume()
        vol.init()
        self.assertEqual(stat.S_IMODE(os.stat(vol.cipher_dir).st_mode), 0o700)

    def test_private_backing_option_refuses_an_open_backing_dir(self):
        vol = self.new_volume()
        vol.init()
        os.chmod(vol.cipher_dir, 0o755)
        p = h.run(vol.mount_args("allow_other,private_backing"), timeout=60)
        self.assertEqual(p.returncode, 4, h.describe(p))
        self.assertIn("chmod 700 " + vol.cipher_dir, p.stderr)
        self.assertFalse(h.is_fuse_mounted(vol.plain))
        os.chmod(vol.cipher_dir, 0o700)
        vol.mount("allow_other,private_backing")
        self.assertTrue(vol.alive())


if __name__ == "__main__":
    h.main()
