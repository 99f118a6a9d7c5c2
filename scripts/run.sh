#!/usr/bin/env bash
# Builds the kernel and boots it under QEMU on this terminal.
# Usage: scripts/run.sh [--cpus N] [--cpu MODEL] [--mem MB] [--el2] [--gdb] [-- KERNEL ARGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
if (( $# == 0 )); then
    # No arguments: the banner and self-check, then a short table from a
    # quick benchmark, so the first thing one sees is the kernel at work.
    cargo run -q --release -p ktest-harness --bin ktool -- run
    echo
    echo "Quick benchmark (scripts/bench.sh --quick for more):"
    exec cargo run -q --release -p ktest-harness --bin bench -- --table-only
fi
exec cargo run -q --release -p ktest-harness --bin ktool -- run "$@"
