"""The generated man pages render with man(1) and cover every subcommand and option that
`wardfs --help` lists (they are generated from it at build time); the completions know
every subcommand and option too."""

import os
import re
import subprocess
import unittest

from pkg_common import BIN, h

GEN = os.environ.get("WARDFS_GEN_DIR") or os.path.join(h.REPO, "build", "packaging", "generated")


def help_of(*args):
    p = h.run([BIN, *args, "--help"])
    assert p.returncode == 0, h.describe(p)
    return p.stdout


def subcommands():
    text = help_of().split("Subcommands:", 1)[1]
    return [m.group(1) for m in re.finditer(r"^  ([a-z]+)", text, re.M)]


def options(cmd):
    """Every -x / --long option in `wardfs CMD --help`."""
    found = set()
    for m in re.finditer(r"^  (-[^ ]+)", help_of(cmd), re.M):
        found.update(n for n in m.group(1).split(",") if n.startswith("-"))
    return found


def render(page):
    env = dict(os.environ, MANWIDTH="2000", MAN_KEEP_FORMATTING="0", LANG="C.UTF-8")
    p = subprocess.run(["man", "-l", os.path.join(GEN, page)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=env, check=False)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def plain(text):
    # man may still overstrike for bold; drop "X\bX" sequences and hyphenation.
    return re.sub(r".\x08", "", text)


class ManPageTest(unittest.TestCase):
    maxDiff = 500

    def test_wardfs_1_covers_help(self):
        rc, out, err = render("wardfs.1.gz")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err.strip(), "", "man/groff warnings: " + err)
        text = plain(out)
        self.assertIn("WARDFS(1)", text)
        cmds = subcommands()
        self.assertGreaterEqual(len(cmds), 7, cmds)
        for cmd in cmds:
            self.assertTrue(re.search(r"\n\s*wardfs %s\n" % re.escape(cmd), text), "no section for " + cmd)
            for opt in options(cmd) - {"-h", "--help"}:
                self.assertIn(opt, text, "wardfs %s %s missing from wardfs(1)" % (cmd, opt))
        for opt in ("--version", "EXIT STATUS"):
            self.assertIn(opt, text)
        self.assertTrue(re.search(r"\n\s*4\s+mount failure", text), "exit status 4 documented")

    def test_mount_options_5_covers_every_option(self):
        rc, out, err = render("wardfs-mount-options.5.gz")
        self.assertEqual(rc, 0, err)
        self.assertEqual(err.strip(), "", "man/groff warnings: " + err)
        text = plain(out)
        o_help = help_of("mount").split("Comma-separated mount options:", 1)[1]
        names = re.findall(r"^\s+([a-z_]+=?[A-Z]*)\s{2}", o_help, re.M)
        for name in ("ro", "allow_other", "keyfile=FILE", "passfile=FILE", "keystore=SPEC",
                     "idle=DURATION", "audit=LEVEL"):
            self.assertIn(name, names, "the -o help lists " + name)
        for name in names:
            self.assertTrue(re.search(r"\n\s+%s(\n|\s{2,})" % re.escape(name), text),
                            "option %s not in the man page" % name)
        self.assertIn("fuse.wardfs", text)
        self.assertIn("nofail", text)


    def test_no_cli11_labels_and_examples(self):
        """The pages read as man pages: no CLI11 internals ("TEXT REQUIRED", "Excludes:"),
        an EXAMPLES section, the dead-mount fix and the mount point protection documented."""
        rc, out, err = render("wardfs.1.gz")
        text = plain(out)
        for label in ("TEXT REQUIRED", " TEXT", "UINT", "Excludes:", "TEXT:{"):
            self.assertNotIn(label, text, "CLI11 label %r in wardfs(1)" % label)
        self.assertIn("Not together with --passfile", text)
        self.assertIn("--cipher {aes-256-gcm,xchacha20-poly1305}", text)
        self.assertRegex(text, r"\nEXAMPLES\n")
        self.assertIn("fusermount3 -uz", text)
        self.assertIn("--protect-mountpoint", text)

    def test_a_page_per_command_and_for_the_mount_helper(self):
        for cmd in subcommands():
            rc, out, err = render(os.path.join("man1", "wardfs-%s.1.gz" % cmd))
            self.assertEqual((rc, err.strip()), (0, ""), cmd)
            text = plain(out)
            self.assertIn("WARDFS-%s(1)" % cmd.upper(), text)
            for opt in options(cmd) - {"-h", "--help"}:
                self.assertIn(opt, text, "wardfs-%s(1) lacks %s" % (cmd, opt))
        rc, out, err = render("mount.fuse.wardfs.8.gz")
        self.assertEqual((rc, err.strip()), (0, ""))
        text = plain(out)
        self.assertIn("MOUNT.FUSE.WARDFS(8)", text)
        self.assertIn("protect_mountpoint", text)


class CompletionTest(unittest.TestCase):
    def complete(self, line):
        words = line.split(" ")
        script = ('source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _wardfs; printf "%%s\\n" "${COMPREPLY[@]}"'
                  % (os.path.join(GEN, "wardfs.bash"), " ".join("'%s'" % w for w in words), len(words) - 1))
        p = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, check=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        return set(p.stdout.split())

    def test_bash_subcommands_and_options(self):
        self.assertEqual(self.complete("wardfs "), set(subcommands()) | {"--help", "--version"})
        self.assertEqual(self.complete("wardfs mount --"),
                         {o for o in options("mount") if o.startswith("--")})
        self.assertIn("--idle", self.complete("wardfs mount --i"))

    def test_bash_values_of_options_and_nested_commands(self):
        self.assertEqual(self.complete("wardfs init /tmp/x --cipher "), {"aes-256-gcm", "xchacha20-poly1305"})
        self.assertIn("debug", self.complete("wardfs mount a b --log-level "))
        o_names = self.complete("wardfs mount a b -o ")
        for name in ("ro", "allow_other", "keyfile=", "log_level=", "protect_mountpoint", "nofail"):
            self.assertIn(name, o_names)
        self.assertIn("ro,allow_other", self.complete("wardfs mount a b -o ro,allow"))
        self.assertTrue({"show", "verify"} <= self.complete("wardfs audit /tmp "), "audit show|verify")

    def test_zsh_completion_lists_everything(self):
        with open(os.path.join(GEN, "_wardfs")) as f:
            text = f.read()
        self.assertTrue(text.startswith("#compdef wardfs"))
        self.assertIn("(aes-256-gcm xchacha20-poly1305)", text)
        self.assertIn("'2:action:(show verify)'", text)
        self.assertIn("protect_mountpoint", text)
        for cmd in subcommands():
            self.assertIn("'%s:" % cmd, text)
            for opt in options(cmd) - {"-h", "--help"}:
                self.assertIn("'%s[" % opt, text)


if __name__ == "__main__":
    unittest.main(verbosity=2)
