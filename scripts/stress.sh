#!/usr/bin/env bash
# The stress run: the `fuzz` program (random system calls with edge-value
# arguments from several threads and processes, with fork/exit/kill churn
# alongside) and the `churn` program (process lifecycles on every CPU) in
# one boot on 4 CPUs with 4-bit ASIDs; the kernel then checks that every
# resource it counts is back at its baseline. Ends with one line:
#   stress: N calls, M lifecycles, 0 panics, 0 leaks (wall T s)
# Usage: scripts/stress.sh [--quick] [--seed N] [--calls N] [--lifecycles N] [--verbose]
#   (default: the long form, 10^6 calls and 10^5 lifecycles; --quick: about
#   a minute, also run by scripts/test.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo run -q --release -p ktest-harness --bin stress -- "$@"
