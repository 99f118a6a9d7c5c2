#!/usr/bin/env bash
# Runs the benchmark suite: builds the kernel, the bench_* programs and the
# TCG plugin (tests/qemu-plugin), boots QEMU once per measurement with the
# plugin loaded (as many at a time as the host has cores), and writes
# records.jsonl, records.csv, summary.md and SVG plots into
# results/<timestamp>/ (or --out DIR).
# Usage: scripts/bench.sh [--quick] [--workload NAME]... [--sweep configs|strategies|repeat]...
#                         [--out DIR] [--jobs N] [--verify] [--no-plugin]
#                         [--plugin-count tb|insn] [--trace]
#        scripts/bench.sh --list [--quick] [--workload NAME]... [--sweep NAME]...
#        scripts/bench.sh --table-only
#   --quick: fewer sizes, repetitions and configurations, and the strategy
#     sweep on 1, 2 and 4 CPUs of a 4-CPU machine (a few minutes); without
#     it, everything, and the strategy sweep on 1, 2, 4 and 8 CPUs of an
#     8-CPU machine.
#   --workload NAME: only this workload (repeatable): mmap, mprotect, reclaim,
#     madvise, fork, exit, mprotect-threads, pingpong, asid-pressure, device,
#     pages-mmap, pages-madvise, pages-split (2 MiB to 1 GiB regions of 4 KiB
#     pages, 64 KiB contiguous runs and 2 MiB blocks, on 2 GiB machines).
#   --sweep configs: each workload's sizes and configurations (policies,
#     CPU models, exit elision, nested fix, ASID width, reclaim batching) under the default
#     strategy; --sweep strategies: every flush strategy (broadcast, ipi,
#     local, auto) x the CPUs the workload's address space runs on;
#     --sweep repeat: the repeat-TLBI errata workaround (tlb.repeat_tlbi=
#     off|once|each) x strategy x the CPUs the address space runs on, on
#     -cpu cortex-a76 (--quick: mmap, mprotect and fork; broadcast, ipi and
#     local; 1 and 2 CPUs). All three by default.
#   --verify: check the kernel's TLBI and DSB counters against the plugin's
#     counts in every record; fail with a diff otherwise.
#   --no-plugin: measure without the TCG plugin (no instruction counts).
#   --plugin-count insn: count each instruction instead of each block.
#   --trace: boot every measurement with the kernel's TLB decision trace
#     (trace=tlb) and keep it as trace-<point>.json in the results directory.
#   --list: print the measurements a run would make; --table-only: a short
#     table of a few measurements on stdout, no files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo run -q --release -p ktest-harness --bin bench -- "$@"
