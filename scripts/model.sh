#!/usr/bin/env bash
# The host model's long mode: besides every bounded search `scripts/test.sh`
# runs, one larger system per family, each searched exhaustively (the ASID
# allocator; the TLB protocol's zaps, faults, fork, exit with reap, and one
# system per flush strategy (ipi, local, auto), on 3 CPUs with scheduled
# speculation; a secondary MMU (device) bound to the address space, with the
# reaper against exiting threads on 3 CPUs and with fork on 2, each over a
# million states, coverage printed; a reclaim batch against mprotect, a
# writer and a device on 3 CPUs, about 7.9 million states in ten minutes;
# blocks and contiguous runs: long_pages_zaps, a madvise of a block against
# a munmap of one of its pages and a writer on 3 CPUs, 3,011,678 states,
# and long_pages_fork, a fork of a block with a writer and the child
# running, 1,039,417 states), and the seeded random walks with more steps
# (ZAP_MODEL_STEPS). Takes about 40 minutes on 2 cores.
# Arguments go to the test binary, e.g. `scripts/model.sh long_fork`,
# `scripts/model.sh long_device`, `scripts/model.sh long_reclaim`,
# `scripts/model.sh long_pages`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
export ZAP_MODEL_STEPS="${ZAP_MODEL_STEPS:-2000000}"
exec cargo test -p tlbmodel --release -- --include-ignored --nocapture "$@"
