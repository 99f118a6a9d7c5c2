#!/usr/bin/env bash
# Runs the benchmark suite: builds the kernel, the bench_* programs and the
# TCG plugin (tests/qemu-plugin), boots QEMU once per measurement with the
# plugin loaded (as many at a time as the host has cores), and writes
# records.jsonl, records.csv, summary.md and SVG plots into
# results/<timestamp>/ (or --out DIR).
# Usage: scripts/bench.sh [--quick] [--workload NAME]... [--out DIR] [--jobs N]
#                         [--verify] [--no-plugin] [--plugin-count tb|insn] [--trace]
#   --trace: boot every measurement with the kernel's TLB decision trace
#   (trace=tlb) and keep it as trace-<point>.json in the results directory.
#        scripts/bench.sh --list [--quick] [--workload NAME]...
#        scripts/bench.sh --table-only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo run -q --release -p ktest-harness --bin bench -- "$@"
