"""wardfs fsck: a healthy volume is clean (exit 0); every damage the tamper and crash suites
make is reported with its kind and the plaintext path (exit 3); crash leftovers alone give
exit 6 and --repair removes them; undecryptable entries go to /lost+found; an unneeded
has-holes flag is cleared; --json lines parse; --repair is refused while mounted; --scrub
reads through the mount point at a bounded rate and reports a tampered file."""

import base64
import hashlib
import json
import os
import pty
import subprocess
import threading
import time

from wardfs_harness import (BIN, OVERHEAD, SIDECAR_RE, WardfsTestCase, backing_data_entries,
                            build_sample_tree, chunk_label, config_matrix, header_flags, main,
                            patch_file, pattern, read_file, run, short_cipher, slot_offset,
                            slot_size, write_file)
from wardfs_format import TARGET_SIDECAR_RE
from test_punch import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate

LONG_NAME = "n" * 200             # encodes past 255 bytes: an L. entry and its sidecar
LONG_TARGET = "t/" * 1750         # 3500 bytes: the T. sidecar form


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def flip(path, offset):
    patch_file(path, offset, bytes([read_file(path)[offset] ^ 0x20]))


class FsckCases:
    CIPHER = "aes-256-gcm"
    CHUNK = 4096

    def volume(self, **kw):
        vol = self.mounted_volume(self.CIPHER, self.CHUNK, **kw)
        self.vol = vol
        return vol

    def fsck(self, *args, target=None, creds=True):
        """Runs fsck --json; returns (exit code, problems, summary), every line parsed."""
        cmd = [BIN, "fsck", target or self.vol.cipher_dir, "--json"] + list(args)
        if creds:
            cmd += self.vol.cred_args()
        p = run(cmd, timeout=300)
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        self.assertTrue(lines, "fsck printed nothing\n%s" % p.stderr)
        summary = lines[-1]
        self.assertIn("result", summary, "the last line is the summary: %r" % summary)
        problems = lines[:-1]
        for pr in problems:
            self.assertEqual(set(pr), {"severity", "kind", "path", "backing", "detail", "fix",
                                       "repaired"}, pr)
            self.assertIn(pr["severity"], ("leftover", "warning", "damage"))
        self.assertEqual(summary["exit_code"], p.returncode, p.stderr)
        return p.returncode, problems, summary

    def new_dir(self, name):
        """mkdir /name through the mount; returns its backing directory."""
        before = set(os.listdir(self.vol.cipher_dir))
        os.mkdir(self.vol.p(name))
        new = sorted(set(os.listdir(self.vol.cipher_dir)) - before)
        self.assertEqual(len(new), 1, new)
        return self.vol.b(new[0])

    def only_entry(self, bdir):
        entries = backing_data_entries(bdir)
        self.assertEqual(len(entries), 1, entries)
        return os.path.join(bdir, entries[0])

    def victim(self, name, data):
        """/name/victim holding data; returns its backing file."""
        bdir = self.new_dir(name)
        write_file(self.vol.p(name, "victim"), data)
        return self.only_entry(bdir)

    def assertKinds(self, problems, want):
        """want: {(kind, plaintext path or None)}; each must be among the problems."""
        got = {(p["kind"], p["path"]) for p in problems}
        missing = {w for w in want if w not in got}
        self.assertFalse(missing, "not reported: %r\nall problems:\n%s"
                         % (missing, "\n".join(json.dumps(p) for p in problems)))

    # ------------------------------------------------------------------ healthy
    def test_healthy_volume_is_clean(self):
        vol = self.volume()
        build_sample_tree(vol.p("tree"), self.CHUNK)
        write_file(vol.p(LONG_NAME), b"long name")
        os.mkdir(vol.p("d" * 180))
        write_file(vol.p("d" * 180, "inside"), b"inside a long-named dir")
        os.symlink(LONG_TARGET, vol.p("long-link"))
        os.symlink(LONG_TARGET, vol.p("d" * 180, "long-link-2"))
        with open(vol.p("sparse"), "wb") as f:  # a gap: has-holes, a hole
            f.truncate(3 * self.CHUNK)
            f.seek(3 * self.CHUNK)
            f.write(b"end")
        os.setxattr(vol.p(LONG_NAME), "user.k", b"v" * 100)
        write_file(vol.p("punched"), pattern(4 * self.CHUNK, 3))
        fallocate(vol.p("punched"), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, self.CHUNK,
                  self.CHUNK)
        vol.unmount()
        rc, problems, summary = self.fsck()
        self.assertEqual(problems, [])
        self.assertEqual(rc, 0)
        self.assertEqual(summary["result"], "clean")
        vol.mount()
        online = self.fsck(target=vol.plain, creds=False)
        self.assertEqual(online[:2], (0, []), "online, through the daemon")
        self.assertEqual(online[2]["files"], summary["files"])
        vol.unmount()
        self.assertGreaterEqual(summary["files"], 15)
        self.assertGreaterEqual(summary["symlinks"], 7)
        self.assertGreaterEqual(summary["xattrs"], 3)
        self.assertGreaterEqual(summary["holes"], 2, "the gap and the punched chunk")
        # The human report says so too.
        p = run([BIN, "fsck", vol.cipher_dir] + vol.cred_args())
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("clean", p.stdout)

    def test_progress_only_on_a_terminal(self):
        vol = self.volume()
        build_sample_tree(vol.p("tree"), self.CHUNK)
        vol.unmount()
        master, slave = pty.openpty()
        try:
            p = subprocess.run([BIN, "fsck", vol.cipher_dir] + vol.cred_args(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                               timeout=120)
        finally:
            os.close(slave)
        err = b""
        try:
            while True:
                chunk = os.read(master, 4096)
                if not chunk:
                    break
                err += chunk
        except OSError:
            pass  # EIO: the other end is closed and drained
        os.close(master)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b"\rfsck: ", err.replace(b"\x1b[K", b""), "a progress line on a terminal")
        self.assertNotIn(b"directories", p.stdout.splitlines()[-1], "the verdict is last")
        piped = run([BIN, "fsck", vol.cipher_dir] + vol.cred_args())
        self.assertNotIn("fsck: ", piped.stderr, "no progress line into a pipe")

    # ------------------------------------------------------------------ damage
    def test_every_damage_is_reported_and_repair_quarantines_names(self):
        vol = self.volume()
        c, ss = self.CHUNK, slot_size(self.CHUNK, self.CIPHER)
        data = pattern(3 * c + 10, 1)
        damage = {}
        damage["flip"] = self.victim("flip", data)
        damage["cut"] = self.victim("cut", data)
        damage["cutmid"] = self.victim("cutmid", data)
        damage["cutshort"] = self.victim("cutshort", data)
        damage["zero"] = self.victim("zero", data)
        damage["swap"] = self.victim("swap", data)
        damage["header"] = self.victim("header", data)
        damage["xattr"] = self.victim("xattr", b"x")
        os.setxattr(vol.p("xattr", "victim"), "user.note", b"sealed value")
        bdir_rename = self.new_dir("rename")
        write_file(vol.p("rename", "victim"), b"renamed")
        victim_b = os.path.basename(self.only_entry(bdir_rename))
        write_file(vol.p("rename", "neighbour"), b"fine")
        bdir_long = self.new_dir("longgone")
        write_file(vol.p("longgone", LONG_NAME), b"x")
        bdir_longedit = self.new_dir("longedit")
        write_file(vol.p("longedit", LONG_NAME), b"x")
        bdir_noid = self.new_dir("noid")
        write_file(vol.p("noid", "f"), b"x")
        bdir_link = self.new_dir("link")
        os.symlink("some/target", vol.p("link", "victim"))
        bdir_tlink = self.new_dir("tlink")
        os.symlink(LONG_TARGET, vol.p("tlink", "victim"))
        write_file(vol.p("control"), data)
        vol.unmount()

        flip(damage["flip"], slot_offset(1, c, self.CIPHER) + 40)
        os.truncate(damage["cut"], slot_offset(2, c, self.CIPHER))          # at a chunk boundary
        os.truncate(damage["cutmid"], slot_offset(1, c, self.CIPHER) + 10)        # mid-slot
        # Cut where a shorter final chunk could end: that chunk no longer authenticates.
        os.truncate(damage["cutshort"], slot_offset(1, c, self.CIPHER) + ss // 2)
        patch_file(damage["zero"], slot_offset(1, c, self.CIPHER), b"\0" * ss)
        raw = read_file(damage["swap"])
        s0, s1 = (raw[slot_offset(i, c, self.CIPHER):slot_offset(i, c, self.CIPHER) + ss]
                  for i in (0, 1))
        patch_file(damage["swap"], slot_offset(0, c, self.CIPHER), s1)
        patch_file(damage["swap"], slot_offset(1, c, self.CIPHER), s0)
        flip(damage["header"], 40)                                           # header tag
        xname = [n for n in os.listxattr(damage["xattr"]) if n.startswith("user.")][0]
        value = bytearray(os.getxattr(damage["xattr"], xname))
        value[-3] ^= 1
        os.setxattr(damage["xattr"], xname, bytes(value))
        # An edited name (as test_tamper makes it).
        edited = victim_b[:10] + ("A" if victim_b[10] != "A" else "B") + victim_b[11:]
        os.rename(os.path.join(bdir_rename, victim_b), os.path.join(bdir_rename, edited))
        long_entry = [n for n in os.listdir(bdir_long) if SIDECAR_RE.match(n)][0]
        os.unlink(os.path.join(bdir_long, long_entry))
        long_edit = [n for n in os.listdir(bdir_longedit) if SIDECAR_RE.match(n)][0]
        flip(os.path.join(bdir_longedit, long_edit), 20)
        os.unlink(os.path.join(bdir_noid, "wardfs.dirid"))
        blink = self.only_entry(bdir_link)
        t = os.readlink(blink)
        os.unlink(blink)
        os.symlink(t[:20] + ("A" if t[20] != "A" else "B") + t[21:], blink)
        tside = [n for n in os.listdir(bdir_tlink) if TARGET_SIDECAR_RE.match(n)][0]
        os.unlink(os.path.join(bdir_tlink, tside))

        rc, problems, summary = self.fsck()
        self.assertEqual(rc, 3, problems)
        self.assertEqual(summary["result"], "damage")
        self.assertKinds(problems, {
            ("chunk_auth", "/flip/victim"),
            ("file_cut", "/cut/victim"),
            ("file_cut", "/cutmid/victim"),
            ("chunk_auth", "/cutshort/victim"),
            ("chunk_zeroed", "/zero/victim"),
            ("chunk_auth", "/swap/victim"),
            ("file_header", "/header/victim"),
            ("xattr_value", "/xattr/victim"),
            ("name_undecryptable", None),
            ("name_sidecar_missing", None),
            ("name_sidecar_mismatch", None),
            ("dir_id_missing", "/noid"),
            ("symlink_target", "/link/victim"),
            ("symlink_sidecar_missing", "/tlink/victim"),
        })
        swapped = [p for p in problems if p["path"] == "/swap/victim"]
        self.assertEqual(len(swapped), 2, "both swapped chunks: %r" % swapped)
        self.assertFalse([p for p in problems if p["path"] == "/control"], "control is fine")
        names = [p for p in problems if p["kind"].startswith("name_")]
        self.assertEqual(len(names), 3, names)
        self.assertIn(os.path.relpath(os.path.join(bdir_rename, edited), vol.cipher_dir),
                      [p["backing"] for p in names])

        # --repair moves the undecryptable entries to /lost+found, and nothing else of
        # the damage changes; a second fsck no longer reports them.
        rc, problems, summary = self.fsck("--repair")
        self.assertEqual(rc, 3)
        moved = [p for p in problems if p["kind"].startswith("name_")]
        self.assertEqual(len(moved), 3)
        self.assertTrue(all(p["repaired"] and "lost+found" in p["fix"] for p in moved), moved)
        self.assertFalse(os.path.exists(os.path.join(bdir_rename, edited)))
        rc, problems, summary = self.fsck()
        self.assertEqual(rc, 3)
        self.assertFalse([p for p in problems if p["kind"].startswith("name_")], problems)
        self.assertEqual(summary["quarantined"], 3)
        self.assertKinds(problems, {("chunk_auth", "/flip/victim"), ("dir_id_missing", "/noid")})
        vol.mount()
        # Online, the daemon finds the same damage with its own keys.
        rc, problems, _ = self.fsck(target=vol.plain, creds=False)
        self.assertEqual(rc, 3, problems)
        self.assertKinds(problems, {("chunk_auth", "/flip/victim"), ("file_cut", "/cut/victim"),
                                    ("dir_id_missing", "/noid"), ("xattr_value", "/xattr/victim")})
        self.assertIn("lost+found", os.listdir(vol.plain))
        self.assertEqual(os.listdir(vol.p("rename")), ["neighbour"])
        self.assertEqual(read_file(vol.p("control")), data)

    def test_audit_chain_edit_is_reported(self):
        vol = self.volume()
        write_file(vol.p("f"), b"x")
        vol.unmount()
        p = run([BIN, "audit", vol.cipher_dir, "verify", "--json"] + vol.cred_args())
        log = json.loads(p.stdout)["log"]
        lines = read_file(log).splitlines(keepends=True)
        at = lines[0].index(b'"event":"') + len(b'"event":"')
        edit = b"X" if lines[0][at:at + 1] != b"X" else b"Y"
        lines[0] = lines[0][:at] + edit + lines[0][at + 1:]
        with open(log, "wb") as f:
            f.write(b"".join(lines))
        rc, problems, _ = self.fsck()
        self.assertEqual(rc, 3, problems)
        self.assertEqual([p["kind"] for p in problems], ["audit_chain"])

    def test_planted_fifos_do_not_hang(self):
        """A FIFO planted as a long name's sidecar or as a directory id must be refused, not
        waited on (fsck, and the daemon listing the directory, would hang forever)."""
        vol = self.volume()
        blong = self.new_dir("long")
        write_file(vol.p("long", LONG_NAME), b"x")
        bnoid = self.new_dir("noid")
        vol.unmount()
        sidecar = [n for n in os.listdir(blong) if SIDECAR_RE.match(n)][0]
        os.unlink(os.path.join(blong, sidecar))
        os.mkfifo(os.path.join(blong, sidecar), 0o600)
        os.unlink(os.path.join(bnoid, "wardfs.dirid"))
        os.mkfifo(os.path.join(bnoid, "wardfs.dirid"), 0o600)
        p = run([BIN, "fsck", vol.cipher_dir, "--json"] + vol.cred_args(), timeout=30)
        kinds = sorted(json.loads(line)["kind"] for line in p.stdout.splitlines()[:-1])
        self.assertEqual((p.returncode, kinds), (3, ["dir_id_missing", "name_sidecar_mismatch"]),
                         p.stdout + p.stderr)
        vol.mount()
        self.assertEqual(os.listdir(vol.p("long")), [])

    # ------------------------------------------------------------------ leftovers
    def test_crash_leftovers_alone_exit_6_and_repair_removes_them(self):
        vol = self.volume()
        os.mkdir(vol.p("sub"))
        write_file(vol.p("sub", "f"), b"data")
        os.symlink(LONG_TARGET, vol.p("sub", "l"))
        vol.unmount()
        bsub = [vol.b(n) for n in backing_data_entries(vol.cipher_dir)][0]
        # What an interrupted mkdir, create or long-name/long-target operation leaves.
        tmpdir = os.path.join(bsub, "wardfs.tmp." + "ab" * 12)
        os.mkdir(tmpdir, 0o700)
        write_file(os.path.join(tmpdir, "wardfs.dirid"), os.urandom(16))
        write_file(vol.b("wardfs.tmp." + "cd" * 12), b"")
        write_file(vol.b("wardfs.conf.tmp"), b"{")  # a config replacement cut short
        write_file(os.path.join(bsub, "L." + b64(hashlib.sha256(b"gone").digest()) + ".n"), b"x")
        write_file(os.path.join(bsub, "T." + b64(hashlib.sha256(b"gone").digest())), b"x" * 60)
        write_file(vol.b("notes.txt"), b"not wardfs's")
        rc, problems, summary = self.fsck()
        self.assertEqual(rc, 6, problems)
        self.assertEqual(summary["result"], "leftovers")
        kinds = sorted(p["kind"] for p in problems)
        self.assertEqual(kinds, ["orphan_name_sidecar", "orphan_target_sidecar", "temp_leftover",
                                 "temp_leftover", "temp_leftover", "unknown_entry"])
        self.assertTrue(all(p["severity"] != "damage" for p in problems))
        self.assertIn("/sub", [p["path"] for p in problems])
        rc, problems, _ = self.fsck("--repair")
        self.assertEqual(rc, 6, "the unknown entry stays: %r" % problems)
        self.assertTrue(all(p["repaired"] for p in problems if p["severity"] == "leftover"))
        shown = run([BIN, "audit", vol.cipher_dir, "show", "--json", "--event", "fsck_repair"])
        records = [json.loads(line) for line in shown.stdout.splitlines()]
        self.assertEqual([r["detail"]["repaired"] for r in records], [5], shown.stderr)
        os.unlink(vol.b("notes.txt"))
        rc, problems, _ = self.fsck()
        self.assertEqual((rc, problems), (0, []))
        self.assertFalse(os.path.exists(tmpdir))
        vol.mount()
        self.assertEqual(os.readlink(vol.p("sub", "l")), LONG_TARGET)
        self.assertEqual(read_file(vol.p("sub", "f")), b"data")

    def test_unneeded_has_holes_flag_is_cleared(self):
        vol = self.volume()
        c = self.CHUNK
        with open(vol.p("f"), "wb") as f:
            f.seek(2 * c)
            f.write(b"tail")      # chunks 0 and 1 are a gap: has-holes set
        # Filled across daemon runs, so no one run knows every chunk is sealed.
        for index in (0, 1):
            vol.remount()
            with open(vol.p("f"), "r+b") as f:
                f.seek(index * c)
                f.write(pattern(c, index))
        vol.unmount()
        bfile = self.only_entry(vol.cipher_dir)
        self.assertTrue(header_flags(bfile) & 1, "setup: the flag outlived the gap")
        rc, problems, _ = self.fsck()
        self.assertEqual(rc, 6)
        self.assertEqual([(p["kind"], p["path"]) for p in problems], [("has_holes_unneeded", "/f")])
        rc, problems, _ = self.fsck("--repair")
        self.assertEqual(rc, 0)
        self.assertTrue(problems[0]["repaired"])
        self.assertFalse(header_flags(bfile) & 1)
        rc, problems, _ = self.fsck()
        self.assertEqual((rc, problems), (0, []))
        # Without the flag a zeroed chunk is damage again.
        patch_file(bfile, slot_offset(0, c, self.CIPHER), b"\0" * slot_size(c, self.CIPHER))
        rc, problems, _ = self.fsck()
        self.assertEqual((rc, [p["kind"] for p in problems]), (3, ["chunk_zeroed"]))

    # ------------------------------------------------------------------ mounted
    def test_repair_refused_while_mounted(self):
        vol = self.volume()
        p = run([BIN, "fsck", vol.cipher_dir, "--repair"] + vol.cred_args())
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("is mounted at " + vol.plain, p.stderr)
        self.assertIn("unmount the volume first", p.stderr)
        self.assertEqual(p.stdout, "", "nothing was checked or repaired")
        p = run([BIN, "fsck", vol.plain, "--repair"])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("unmount", p.stderr)
        p = run([BIN, "fsck", "--scrub", vol.cipher_dir])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)

    def test_online_fsck_beside_busy_writers_finds_nothing(self):
        """The daemon checks each directory and file under the locks its own writers take,
        so appends, overwrites, truncates, long names and mkdirs in flight are never
        reported as damage or leftovers."""
        vol = self.volume()
        stop = threading.Event()
        errors = []

        def writer(n):
            try:
                path = vol.p("w%d" % n)
                os.mkdir(path)
                k = 0
                while not stop.is_set():
                    k += 1
                    f = os.path.join(path, ("long-%d-" % (k % 5)).ljust(200, "x"))
                    with open(f, "ab") as fh:
                        fh.write(pattern(3000 + k % 9000, k))
                    if k % 7 == 0:
                        os.truncate(f, (k * 977) % (3 * self.CHUNK))
                    if k % 11 == 0:
                        d = os.path.join(path, "d%d" % (k % 3))
                        if os.path.isdir(d):
                            os.rmdir(d)
                        else:
                            os.mkdir(d)
                    if k % 13 == 0:
                        os.unlink(f)
            except OSError as e:
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        try:
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                rc, problems, summary = self.fsck(target=vol.plain, creds=False)
                self.assertEqual((rc, problems), (0, []))
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(errors, [])
        self.assertGreater(summary["files"], 0)

    def test_wrong_key_and_bad_usage(self):
        vol = self.volume()
        vol.unmount()
        wrong = os.path.join(vol.root, "wrong.key")
        fd = os.open(wrong, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (os.urandom(32).hex() + "\n").encode())
        os.close(fd)
        p = run([BIN, "fsck", vol.cipher_dir, "--keyfile", wrong])
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertNotIn("damage", p.stdout, "nothing was checked")
        p = run([BIN, "fsck", "--scrub", vol.plain])
        self.assertEqual(p.returncode, 1, "--scrub needs a mount point: " + p.stderr)
        p = run([BIN, "fsck", vol.cipher_dir, "--bogus"] + vol.cred_args())
        self.assertEqual(p.returncode, 1, p.stderr)

    def test_scrub_reports_tampered_file_at_bounded_rate(self):
        vol = self.volume()
        os.mkdir(vol.p("d"))
        write_file(vol.p("d", "victim"), pattern(3 * self.CHUNK, 5))
        write_file(vol.p("big"), pattern(2 << 20, 6))
        os.setxattr(vol.p("big"), "user.a", b"b")
        os.symlink(LONG_TARGET, vol.p("link"))
        start = time.monotonic()
        rc, problems, summary = self.fsck("--scrub", "--rate", "1M", target=vol.plain, creds=False)
        elapsed = time.monotonic() - start
        self.assertEqual((rc, problems), (0, []))
        self.assertGreaterEqual(summary["bytes"], (2 << 20) + 3 * self.CHUNK)
        self.assertGreaterEqual(elapsed, 1.5, "2 MiB at 1 MiB/s")
        vol.unmount()
        bdir = [vol.b(n) for n in backing_data_entries(vol.cipher_dir)
                if os.path.isdir(vol.b(n))][0]
        flip(self.only_entry(bdir), slot_offset(1, self.CHUNK, self.CIPHER) + OVERHEAD[self.CIPHER])
        vol.mount()
        rc, problems, _ = self.fsck("--scrub", "--rate", "1G", target=vol.plain, creds=False)
        self.assertEqual(rc, 3)
        self.assertEqual([(p["kind"], p["path"]) for p in problems],
                         [("scrub_eio", "/d/victim")])


for _cipher, _chunk in config_matrix("diag"):
    _name = "Fsck_%s_%s" % (short_cipher(_cipher), chunk_label(_chunk))
    globals()[_name] = type(_name, (FsckCases, WardfsTestCase),
                            {"CIPHER": _cipher, "CHUNK": _chunk})

if __name__ == "__main__":
    main()
