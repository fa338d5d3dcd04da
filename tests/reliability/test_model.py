"""Model-based random testing: seeded random sequences of open/create/write/pwrite/truncate/
read/rename/link/unlink/mkdir/rmdir/fsync/chmod/xattr/mmap-write/fallocate (punch, zero range)/
copy_file_range run against a wardfs mount and a plain directory on the host file system; every outcome (return
value or errno) and the whole tree (type, mode, size, nlink, content, user.* xattrs, listing)
must agree after every step, and again after a remount. A mismatch prints the seed and a shrunk
failing sequence."""

import reliability_env
from model_runner import run_for
from wardfs_harness import SEED, WardfsTestCase, chunk_label, config_matrix, main, short_cipher


class ModelCases:
    def test_random_sequences(self):
        seconds = reliability_env.MODEL_SECONDS / len(config_matrix("full"))
        seed = SEED * 1000 + 100 * config_matrix("full").index((self.CIPHER, self.CHUNK))
        sequences, ops = run_for(self.CIPHER, self.CHUNK, seconds, seed)
        print("\n  model %s %s: %d sequences, %d operations, seed %d"
              % (self.CIPHER, chunk_label(self.CHUNK), sequences, ops, seed), flush=True)
        self.assertGreater(ops, 0)


for _cipher, _chunk in config_matrix("full"):
    _name = "Model_%s_%s" % (short_cipher(_cipher), chunk_label(_chunk))
    globals()[_name] = type(_name, (ModelCases, WardfsTestCase), {"CIPHER": _cipher, "CHUNK": _chunk})

if __name__ == "__main__":
    main()
