#!/usr/bin/env bash
# Builds the kernel and boots it under QEMU on this terminal.
# Usage: scripts/run.sh [--cpus N] [--cpu MODEL] [--mem MB] [--el2] [--gdb] [-- KERNEL ARGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo run -q --release -p ktest-harness --bin ktool -- run "$@"
