"""Names during an online rekey: while the rekey renames every entry of a large directory
to its new-generation name, other programs keep listing and looking up that directory.
Every listing must show every entry exactly once, every stat/open of an existing file must
succeed, and no integrity failure may be reported (the rekey must not make live entries,
or their long-name sidecars, disappear from under a reader)."""

import errno
import os
import threading
import time

from rot_harness import RotationTestCase, log, main

NSHORT = 2000      # FIFOs: cheap to create and to rekey, so the rename phase dominates
NLONG = 200        # long-named symlinks (L.<hash> entries with sidecars)
NFILES = 20
CYCLES = 2


class RekeyNamesConcurrent(RotationTestCase):
    def _populate(self, vol):
        os.mkdir(vol.p("big"))
        names = []
        for i in range(NSHORT):
            names.append("s%05d" % i)
            os.mkfifo(vol.p("big", names[-1]))
        for i in range(NLONG):
            names.append("L%04d-" % i + "l" * 180)
            os.symlink("target-%d" % i, vol.p("big", names[-1]))
        for i in range(NFILES):
            names.append("f%02d" % i)
            with open(vol.p("big", names[-1]), "wb") as f:
                f.write(b"file %d\n" % i)
        return names

    def test_listing_and_lookup_during_rekey(self):
        vol = self.new_volume("aes-256-gcm", 4096)
        names = self._populate(vol)
        expected = set(names)
        listing_problems = []
        lookup_problems = []
        listings = [0]
        lookups = [0]
        for cycle in range(CYCLES):
            self._rotate_and_rekey(vol, names, expected, listing_problems, lookup_problems, listings, lookups)
        log("\n%d listings, %d lookups during %d rekeys; %d listing problems, %d lookup problems"
            % (listings[0], lookups[0], CYCLES, len(listing_problems), len(lookup_problems)))
        st = vol.status()
        log("integrity_failures counter: %d; first listing problems: %r"
            % (st["counters"]["integrity_failures"], [p[:160] for p in listing_problems[:3]]))
        self.assertEqual(listing_problems[:5], [], "listings during the rekey were wrong (%d of %d)"
                         % (len(listing_problems), listings[0]))
        self.assertEqual(lookup_problems[:5], [], "lookups during the rekey failed (%d of %d)"
                         % (len(lookup_problems), lookups[0] + len(lookup_problems)))
        self.assertEqual(st["counters"]["integrity_failures"], 0,
                         "integrity failures reported during the rekey\n" + vol.log_tail(10))
        self.assertEqual(set(os.listdir(vol.p("big"))), expected)
        self.assertOnlyGeneration(vol, CYCLES + 1, "after rekey")
        self.assertEqual(len(vol.scan().sidecars), NLONG)

    def _rotate_and_rekey(self, vol, names, expected, listing_problems, lookup_problems, listings, lookups):
        self.assertCmd(vol.wardfs("rotate", vol.plain), 0, vol)
        time.sleep(1.2)   # let the kernel's cached entries expire (entry_timeout 1 s): lookups reach the daemon
        stop = threading.Event()

        def lister():
            while not stop.is_set():
                try:
                    got = os.listdir(vol.p("big"))
                except OSError as e:
                    listing_problems.append("listdir failed: %r" % e)
                    continue
                listings[0] += 1
                s = set(got)
                if len(got) != len(s) or s != expected:
                    listing_problems.append(
                        "listing %d: %d entries (%d distinct), missing %d (e.g. %r), extra %r"
                        % (listings[0], len(got), len(s), len(expected - s),
                           sorted(expected - s)[:3], sorted(s - expected)[:3]))

        def looker(start):
            i = start
            while not stop.is_set():
                n = names[i % len(names)]
                i += 7
                try:
                    os.lstat(vol.p("big", n))
                    lookups[0] += 1
                except OSError as e:
                    lookup_problems.append("stat %s: %s" % (n[:12], errno.errorcode.get(e.errno, e.errno)))

        threads = [threading.Thread(target=lister)] + [
            threading.Thread(target=looker, args=(k * 997,)) for k in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.2)
            rk = vol.wardfs("rekey", vol.plain, timeout=240)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join(60)
        self.assertCmd(rk, 0, vol)


if __name__ == "__main__":
    main()
