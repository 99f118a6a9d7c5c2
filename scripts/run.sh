#!/usr/bin/env bash
# Builds the kernel and boots it under QEMU on this terminal.
# Usage: scripts/run.sh [--cpus N] [--cpu MODEL] [--mem MB] [--el2] [--gdb] [--trace FILE] [-- KERNEL ARGS...]
#   --trace FILE: the kernel records its TLB flush decisions (trace=tlb is
#   added); FILE gets them as Chrome/Perfetto trace JSON, and a summary of
#   why each flush happened is printed at the end.
set -euo pipefail
# --trace FILE names a file relative to where we were called from.
args=()
while (( $# > 0 )); do
    case "$1" in
        --) args+=("$@"); break ;;
        --trace) args+=("$1"); shift; if (( $# > 0 )); then args+=("$(realpath -m -- "$1")"); shift; fi ;;
        --trace=*) args+=("--trace=$(realpath -m -- "${1#--trace=}")"); shift ;;
        *) args+=("$1"); shift ;;
    esac
done
set -- ${args[@]+"${args[@]}"}
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
