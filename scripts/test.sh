#!/usr/bin/env bash
# Runs the workspace's tests: host unit tests and the in-kernel tests under
# QEMU. Arguments go to `cargo test`, e.g. `scripts/test.sh asid`,
# `scripts/test.sh -- --list`, `scripts/test.sh -p ktest-harness --test kernel -- --exact mm::asid`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec cargo test "$@"
