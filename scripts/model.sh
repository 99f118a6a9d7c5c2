#!/usr/bin/env bash
# The host model's long mode: besides every bounded search `scripts/test.sh`
# runs, one larger system per family of the TLB protocol (zaps, faults, fork,
# exit and reap; 3 CPUs, scheduled speculation), each searched exhaustively,
# and the seeded random walks at ten times their steps. Takes minutes.
# Arguments go to the test binary, e.g. `scripts/model.sh long_fork`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export ZAP_MODEL_STEPS="${ZAP_MODEL_STEPS:-2000000}"
exec cargo test -p tlbmodel --release -- --include-ignored --nocapture "$@"
