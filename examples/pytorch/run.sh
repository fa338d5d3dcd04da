#!/usr/bin/env bash
# The ML pipeline proof (issue 11): trains a PyTorch model on a wardfs volume while its keys
# rotate, rekey and retire, kills and resumes the training once, then compares it with the
# same run on a plain directory on the same disk (and gocryptfs, when installed).
#
#   examples/pytorch/run.sh                 # full size: 20,000 samples, 256 MiB memmap, 3 epochs
#   examples/pytorch/run.sh --size ci       # the CI-sized run (a minute or two)
#   examples/pytorch/run.sh --softhsm       # KEK in a SoftHSM2 token (PKCS#11) instead of a key file
#   examples/pytorch/run.sh --help          # every knob (--samples, --epochs, --rekey-rate, ...)
#
# Needs root (or FUSE access) and /dev/fuse. Installs the Debian packages it needs and builds
# wardfs when WARDFS_BIN is not set. Prints `wardfs status`, the audit log's tail when
# `wardfs audit` exists, and the timing table; everything stays in --workdir (default
# /tmp/wardfs-ml-*), summary.json included.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ -z "${WARDFS_BIN:-}" ]; then
  "$repo/scripts/install-deps"
  (cd "$repo" && TARGETS=wardfs nice -n 10 scripts/build >/dev/null)
  export WARDFS_BIN="$repo/build/cli/wardfs"
fi
# Debian's torch and numpy live in the system interpreter, not in a pyenv one on PATH.
exec /usr/bin/python3 "$here/pipeline.py" "$@"
