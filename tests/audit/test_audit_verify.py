"""`wardfs audit verify` passes on an untouched log and fails, naming the record, on each
kind of tampering: a changed byte, a deleted record, two records swapped, a record
forged without the key, and a cut-off tail. Segments of a rotated log keep the chain."""

import json
import os
import shutil
import time

from audit_harness import AuditTestCase, BIN, describe, main, run, write_file

EXIT_CORRUPT = 3


class AuditVerify(AuditTestCase):
    def _session(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol)
        for _ in range(3):
            self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        vol.unmount()
        return vol

    def _snapshot(self, vol):
        live = self.log_path(vol)
        saved = {}
        for path in (live, live + ".checkpoint"):
            with open(path, "rb") as f:
                saved[path] = f.read()
        return saved

    def _restore(self, saved):
        for path, data in saved.items():
            with open(path, "wb") as f:
                f.write(data)

    def _lines(self, vol):
        with open(self.log_path(vol)) as f:
            return f.read().splitlines()

    def _write_lines(self, vol, lines):
        with open(self.log_path(vol), "w") as f:
            f.write("".join(l + "\n" for l in lines))

    def _expect_failure(self, vol, what, must_mention):
        p = self.verify(vol)
        self.assertEqual(p.returncode, EXIT_CORRUPT, "%s went unnoticed\n%s" % (what, describe(p)))
        self.assertIn("FAILED", p.stderr)
        self.assertIn(must_mention, p.stderr, "%s: the message should name %r" % (what, must_mention))

    def test_untouched_and_tampered(self):
        vol = self._session()
        clean = self._snapshot(vol)
        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, describe(p))
        clean = self._snapshot(vol)  # verify's own unwraps are on record now
        lines = self._lines(vol)
        self.assertGreater(len(lines), 12)

        # One byte changed inside record 6 (still valid JSON).
        changed = list(lines)
        rec = json.loads(changed[5])
        old = '"result":"%s"' % rec["result"]
        self.assertIn(old, changed[5])
        changed[5] = changed[5].replace(old, old.replace("ok", "oK"), 1)
        self._write_lines(vol, changed)
        self._expect_failure(vol, "a changed byte", "record 6")
        self._restore(clean)

        # Record 7 deleted.
        self._write_lines(vol, lines[:6] + lines[7:])
        self._expect_failure(vol, "a deleted record", "record 8 where record 7 was expected")
        self._restore(clean)

        # Records 8 and 9 swapped.
        swapped = list(lines)
        swapped[7], swapped[8] = swapped[8], swapped[7]
        self._write_lines(vol, swapped)
        self._expect_failure(vol, "two swapped records", "record 9 where record 8 was expected")
        self._restore(clean)

        # A record forged without the key: the last one with its seq bumped and a new event.
        last = json.loads(lines[-1])
        forged = dict(last)
        forged["seq"] = last["seq"] + 1
        forged["event"] = "rotate"
        del forged["mac"]
        text = json.dumps(forged, separators=(",", ":"), sort_keys=True)[:-1] + ',"mac":"%s"}' % ("ab" * 32)
        self._write_lines(vol, lines + [text])
        self._expect_failure(vol, "a forged record", "record %d" % forged["seq"])
        self._restore(clean)

        # The last three records cut off: the signed checkpoint still pins the old tail.
        self._write_lines(vol, lines[:-3])
        self._expect_failure(vol, "a cut-off tail", "cut off")
        self._restore(clean)

        # The checkpoint deleted: a cut can no longer be ruled out, which verify must say.
        os.unlink(self.log_path(vol) + ".checkpoint")
        self._expect_failure(vol, "a missing checkpoint", "checkpoint")
        self._restore(clean)

        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, "restored log should verify again\n" + describe(p))

    def test_rotated_segments_chain(self):
        vol = self.new_volume(mount=False)
        self.mount_with(vol, "--audit-level", "all", "--audit-rotate-size", "4K")
        for i in range(120):
            write_file(vol.p("f%03d" % i), b"x", fsync=False)
            if i % 10 == 9:
                time.sleep(0.3)  # the writer batches per 200 ms; rotation is checked per batch
        vol.unmount()
        live = self.log_path(vol)
        segments = sorted(n for n in os.listdir(self.audit_dir) if n.startswith(os.path.basename(live) + ".0"))
        self.assertGreaterEqual(len(segments), 3, segments)
        events = [r["event"] for r in self.records(vol)]
        self.assertEqual(events.count("open"), 120)
        self.assertEqual(events.count("log_continued"), len(segments))
        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, describe(p))
        # A segment missing from the middle is found.
        middle = os.path.join(self.audit_dir, segments[1])
        shutil.move(middle, middle + ".away")
        p = self.verify(vol)
        self.assertEqual(p.returncode, EXIT_CORRUPT, describe(p))
        self.assertIn("were deleted, inserted or reordered", p.stderr)
        shutil.move(middle + ".away", middle)
        # Older segments shipped away and deleted: what is left still verifies.
        os.unlink(os.path.join(self.audit_dir, segments[0]))
        p = self.verify(vol)
        self.assertEqual(p.returncode, 0, describe(p))
        self.assertIn("older segments", p.stdout)

    def test_show_lists_records_of_any_shape(self):
        # `show` reads records before anyone verified them: odd field types are shown as
        # JSON, never end the listing (they used to, with a JSON type error and exit 5).
        path = os.path.join(self.audit_dir, "odd.audit.jsonl")
        odd = [{"seq": 1, "event": "open", "generation": "x", "keystore": 7, "time": 5},
               {"seq": "2", "event": ["open"], "principal": "root", "path": 1},
               {"seq": 3, "event": "rotate", "principal": {"pid": "p", "uid": None}, "detail": "d"}]
        with open(path, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in odd) + "not json\n")
        p = run([BIN, "audit", "--audit-log", path, "/nonexistent", "show"])
        self.assertEqual(p.returncode, 0, describe(p))
        rows = p.stdout.splitlines()[1:]
        self.assertEqual(len(rows), 3, p.stdout)
        self.assertIn("rotate", rows[2])
        self.assertIn("1 lines", p.stderr)
        p = run([BIN, "audit", "--audit-log", path, "/nonexistent", "show", "--event", "rotate"])
        self.assertEqual((p.returncode, len(p.stdout.splitlines())), (0, 2), describe(p))


if __name__ == "__main__":
    main()
