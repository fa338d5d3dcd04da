"""The Debian package end to end: scripts/package builds wardfs_<version>_<arch>.deb,
dpkg -i installs it, the installed binary mounts through mount -t fuse.wardfs and an
fstab line, the systemd unit verifies and its ExecStart speaks sd_notify, and dpkg -r
removes every file it installed. The package is removed again however the test ends;
it refuses to run when a wardfs package or /usr/bin/wardfs is already there, so it
never replaces or removes an installation it did not make."""

import fcntl
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from pkg_common import NotifyListener, assert_round_trip, cleanup_volume, h, init_volume

INSTALLED = "/usr/bin/wardfs"
UNIT = "/usr/lib/systemd/system/wardfs@.service"
VERSION_RE = re.compile(r"^project\(wardfs VERSION ([0-9.]+)", re.M)


def sh(args, **kw):
    return h.run(args, timeout=kw.pop("timeout", 300), **kw)


def package_installed():
    p = sh(["dpkg-query", "-W", "-f", "${Status}", "wardfs"])
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


def remove_package():
    if package_installed() or sh(["dpkg-query", "-W", "wardfs"]).returncode == 0:
        sh(["dpkg", "--purge", "wardfs"])


class PackageGuard:
    """Removes the package when the harness cleans up (exit, SIGTERM)."""

    root = "the wardfs package"

    def daemon_pids(self):  # the harness's watchdog asks every live entry
        return []

    def destroy(self):
        h._LIVE_VOLUMES.discard(self)
        remove_package()


def answers(path, timeout=5.0):
    """True if listing `path` returns within `timeout` (a dead or unready mount hangs)."""
    result = []
    t = threading.Thread(target=lambda: result.append(os.listdir(path)), daemon=True)
    t.start()
    t.join(timeout)
    return bool(result)


class PackageTest(h.WardfsTestCase):
    deb = None
    files = []

    @classmethod
    def setUpClass(cls):
        # Engineers share build machines: a second run of this test waits for the first
        # instead of finding (or removing) its package.
        lock_dir = "/run/lock" if os.path.isdir("/run/lock") else tempfile.gettempdir()
        cls.lock = open(os.path.join(lock_dir, "wardfs-package-test.lock"), "w")
        fcntl.flock(cls.lock, fcntl.LOCK_EX)
        cls.addClassCleanup(cls.lock.close)
        if package_installed() or os.path.lexists(INSTALLED) or os.path.lexists("/usr/sbin/mount.fuse.wardfs"):
            raise h.HarnessError("a wardfs package or /usr/bin/wardfs is already installed on this machine; "
                                 "this test installs and removes its own (dpkg -r wardfs first)")
        with open(os.path.join(h.REPO, "CMakeLists.txt")) as f:
            cls.version = VERSION_RE.search(f.read()).group(1)
        cls.out = tempfile.mkdtemp(prefix="wardfs-deb-")
        env = dict(os.environ, OUT_DIR=cls.out)
        if os.environ.get("WARDFS_BUILD_DIR"):
            env["BUILD_DIR"] = os.environ["WARDFS_BUILD_DIR"]  # package the tree ctest built
        start = time.monotonic()
        p = sh([os.path.join(h.REPO, "scripts", "package")], env=env, timeout=1800)
        if p.returncode != 0:
            raise h.HarnessError("scripts/package failed\n" + h.describe(p))
        print("scripts/package took %.0f s" % (time.monotonic() - start))
        cls.deb = p.stdout.strip().splitlines()[-1]
        # From here on the machine is changed: undo it whatever happens, also at exit and
        # on SIGTERM (ctest's timeout), which the harness handles for its live "volumes".
        h._LIVE_VOLUMES.add(PackageGuard())
        cls.addClassCleanup(remove_package)
        cls.addClassCleanup(shutil.rmtree, cls.out, True)
        p = sh(["dpkg", "-i", cls.deb])
        if p.returncode != 0:
            raise h.HarnessError("dpkg -i failed\n" + h.describe(p))
        cls.files = sh(["dpkg", "-L", "wardfs"]).stdout.split()

    def new_volume(self):
        vol = init_volume(INSTALLED)
        self.addCleanup(cleanup_volume, vol)
        return vol

    # ------------------------------------------------------------ the package itself
    def test_1_package_name_depends_and_contents(self):
        arch = sh(["dpkg", "--print-architecture"]).stdout.strip()
        self.assertEqual(os.path.basename(self.deb), "wardfs_%s_%s.deb" % (self.version, arch))
        depends = sh(["dpkg-deb", "-f", self.deb, "Depends"]).stdout
        # fuse3 for fusermount3; libfuse itself (3.18, third_party/) is linked in statically,
        # with liburing for FUSE over io_uring.
        for dep in ("fuse3", "liburing2", "libsodium23", "libssl3", "libstdc++6", "libc6"):
            self.assertRegex(depends, r"(^|, )%s( |,|$)" % re.escape(dep), "Depends: " + depends)
        self.assertNotRegex(depends, r"(^|, )libfuse3-3( |,|$)", "libfuse is linked in statically")
        for path in (INSTALLED, "/usr/sbin/mount.fuse.wardfs", "/usr/share/man/man1/wardfs.1.gz",
                     "/usr/share/man/man5/wardfs-mount-options.5.gz",
                     "/usr/share/bash-completion/completions/wardfs",
                     "/usr/share/zsh/vendor-completions/_wardfs", UNIT):
            self.assertIn(path, self.files)
        self.assertEqual(os.path.realpath("/usr/sbin/mount.fuse.wardfs"), os.path.realpath(INSTALLED))

    def test_1_lintian_finds_no_errors(self):
        """Debian's own checks: no errors, and none of the warnings the package once had
        (a man page missing for mount.fuse.wardfs, a copyright file without a notice)."""
        p = sh(["lintian", "--no-tag-display-limit", self.deb])
        out = p.stdout + p.stderr
        self.assertNotRegex(out, r"(?m)^E: ", "lintian errors:\n" + out)
        for tag in ("bogus-mail-host", "no-changelog", "no-manual-page", "copyright-without-copyright-notice"):
            self.assertNotIn(tag, out, "lintian:\n" + out)
        for path in ("/usr/share/man/man8/mount.fuse.wardfs.8.gz", "/usr/share/man/man1/wardfs-mount.1.gz",
                     "/usr/share/man/man1/wardfs-status.1.gz", "/usr/share/doc/wardfs/changelog.gz"):
            self.assertIn(path, self.files)

    def test_2_installed_binary_and_docs(self):
        p = sh([INSTALLED, "--version"])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertIn("wardfs " + self.version, p.stdout)
        self.assertEqual(sh(["man", "-w", "wardfs"]).stdout.strip(), "/usr/share/man/man1/wardfs.1.gz")
        self.assertEqual(sh(["man", "-w", "5", "wardfs-mount-options"]).stdout.strip(),
                         "/usr/share/man/man5/wardfs-mount-options.5.gz")
        p = sh(["bash", "-c", "source /usr/share/bash-completion/completions/wardfs && complete -p wardfs"])
        self.assertIn("_wardfs", p.stdout, h.describe(p))

    # ------------------------------------------------------------ mount(8) and fstab
    def test_3_mount_t_fuse_wardfs(self):
        vol = self.new_volume()
        p = sh(["mount", "-t", "fuse.wardfs", vol["cipher"], vol["plain"], "-o", "keyfile=" + vol["key"]])
        self.assertEqual(p.returncode, 0, h.describe(p))
        entry = h.mount_entry(vol["plain"])
        self.assertEqual((entry["fstype"], entry["source"]), ("fuse.wardfs", vol["cipher"]))
        payload = assert_round_trip(self, vol)
        p = sh(["umount", vol["plain"]])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertFalse(h.is_fuse_mounted(vol["plain"]))
        self.assertTrue(h.wait_for(lambda: not h.wardfs_pids(vol["root"]), timeout=10), "daemon still running")
        self.assertEqual(os.listdir(vol["plain"]), [], "the plaintext must not be left behind")
        # The data survived: mount again the same way and read it back.
        p = sh(["mount", "-t", "fuse.wardfs", vol["cipher"], vol["plain"], "-o", "ro,keyfile=" + vol["key"]])
        self.assertEqual(p.returncode, 0, h.describe(p))
        with open(os.path.join(vol["plain"], "data.bin"), "rb") as f:
            self.assertEqual(f.read(), payload)
        self.assertEqual(sh(["umount", vol["plain"]]).returncode, 0)

    def test_4_fstab_mount_a_and_umount(self):
        vol = self.new_volume()
        fstab = os.path.join(vol["root"], "fstab")
        with open(fstab, "w") as f:
            f.write("# test fstab\n%s %s fuse.wardfs keyfile=%s,nofail,_netdev 0 0\n"
                    % (vol["cipher"], vol["plain"], vol["key"]))
        p = sh(["mount", "--fstab", fstab, "-a"])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertTrue(h.is_fuse_mounted(vol["plain"]), "mount -a did not mount the fstab line")
        assert_round_trip(self, vol)
        p = sh(["umount", vol["plain"]])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertFalse(h.is_fuse_mounted(vol["plain"]))
        # umount(8) returns before the daemon has exited and let go of the volume's lease
        # (wardfs unmount waits for it); a mount right away would be refused as a second one.
        self.assertTrue(h.wait_for(lambda: not h.wardfs_pids(vol["root"]), timeout=10))
        # By mount point alone, as `mount /mnt/work` does with an fstab entry.
        p = sh(["mount", "-T", fstab, vol["plain"]])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertTrue(answers(vol["plain"]))
        self.assertEqual(sh(["umount", vol["plain"]]).returncode, 0)
        self.assertTrue(h.wait_for(lambda: not h.wardfs_pids(vol["root"]), timeout=10))

    # ------------------------------------------------------------ systemd
    def test_5_systemd_analyze_verify(self):
        units = tempfile.mkdtemp(prefix="wardfs-units-")
        self.addCleanup(shutil.rmtree, units, True)
        instance = sh(["systemd-escape", "--path", "--template=wardfs@.service", "/mnt/work data"]).stdout.strip()
        self.assertEqual(instance, "wardfs@mnt-work\\x20data.service")
        shutil.copy(UNIT, units)
        os.symlink("wardfs@.service", os.path.join(units, instance))
        examples = "/usr/share/doc/wardfs/examples"
        shutil.copy(os.path.join(examples, "mnt-work.mount.example"), os.path.join(units, "mnt-work.mount"))
        shutil.copy(os.path.join(examples, "mnt-work.automount.example"), os.path.join(units, "mnt-work.automount"))
        for unit in (instance, "mnt-work.mount", "mnt-work.automount"):
            p = sh(["systemd-analyze", "verify", os.path.join(units, unit)])
            self.assertEqual(p.returncode, 0, h.describe(p))
            self.assertEqual(p.stderr.strip(), "", "systemd-analyze verify %s: %s" % (unit, p.stderr))

    def exec_start(self, vol, creds):
        """The unit's ExecStart line with systemd's substitutions done by hand."""
        with open(UNIT) as f:
            line = next(l for l in f if l.startswith("ExecStart="))[len("ExecStart="):].strip()
        line = (line.replace("${CIPHERDIR}", shlex.quote(vol["cipher"]))
                    .replace("%f", shlex.quote(vol["plain"]))
                    .replace("${WARDFS_KEY_OPTION}", "--keyfile")
                    .replace("%d", shlex.quote(creds))
                    .replace("$WARDFS_OPTIONS", ""))
        self.assertNotRegex(line, r"[%$]", "unhandled substitution in ExecStart: " + line)
        return shlex.split(line)

    def run_unit_with_notify(self, abstract):
        vol = self.new_volume()
        creds = os.path.join(vol["root"], "credentials")  # what systemd's %d holds
        os.mkdir(creds, 0o700)
        shutil.copy(vol["key"], os.path.join(creds, "key"))
        os.chmod(os.path.join(creds, "key"), 0o400)
        listener = NotifyListener(abstract=abstract)
        self.addCleanup(listener.close)
        env = dict(os.environ, NOTIFY_SOCKET=listener.address, INVOCATION_ID="0" * 32)
        stderr_path = os.path.join(vol["root"], "stderr")
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(self.exec_start(vol, creds), env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())

        ready, seen = listener.wait_for_key("READY", timeout=60)
        self.assertIsNotNone(ready, "no READY=1 (got %r)" % seen)
        # READY=1 only once the mount answers: it must be live at the moment it arrives.
        self.assertTrue(h.is_fuse_mounted(vol["plain"]), "READY=1 before the mount existed")
        self.assertTrue(answers(vol["plain"]), "READY=1 before the mount point answered")
        self.assertEqual(ready["READY"], "1")
        self.assertIn(vol["plain"], ready.get("STATUS", ""), "STATUS= names the mount point")
        self.assertIsNone(proc.poll(), "with --foreground the service's main process keeps serving")
        assert_round_trip(self, vol)

        proc.send_signal(signal.SIGTERM)
        stopping, seen = listener.wait_for_key("STOPPING", timeout=30)
        self.assertIsNotNone(stopping, "no STOPPING=1 after SIGTERM (got %r)" % seen)
        self.assertFalse(h.is_fuse_mounted(vol["plain"]), "STOPPING=1 sent, but still mounted")
        self.assertEqual(proc.wait(timeout=30), 0)
        with open(stderr_path) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        self.assertTrue(lines, "the daemon logs to stderr (the journal) under systemd")
        for line in lines:
            self.assertRegex(line, r"^<[0-7]>", "journal priority prefix")
            self.assertIn(vol["plain"], line, "every journal line names the mount point")

    def test_6_notify_path_socket(self):
        self.run_unit_with_notify(abstract=False)

    def test_7_notify_abstract_socket(self):
        self.run_unit_with_notify(abstract=True)

    # ------------------------------------------------------------ removal
    def test_z_remove_leaves_nothing(self):
        kinds = {path: os.path.isdir(path) and not os.path.islink(path) for path in self.files}
        p = sh(["dpkg", "-r", "wardfs"])
        self.assertEqual(p.returncode, 0, h.describe(p))
        self.assertFalse(package_installed())
        for path, is_dir in kinds.items():
            if not is_dir:
                self.assertFalse(os.path.lexists(path), "dpkg -r left %s behind" % path)
            elif os.path.exists(path):
                # A directory may stay only because another package owns it too.
                self.assertEqual(sh(["dpkg", "-S", path]).returncode, 0,
                                 "dpkg -r left the directory %s that only wardfs used" % path)


if __name__ == "__main__":
    h.main()
