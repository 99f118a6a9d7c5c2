#!/usr/bin/env bash
# Runs the workspace's tests: host unit tests and the in-kernel tests under
# QEMU. Arguments go to `cargo test`, e.g. `scripts/test.sh asid`,
# `scripts/test.sh -- --list`, `scripts/test.sh -p ktest-harness --test kernel -- --exact mm::asid`.
# Without arguments (the whole suite, as CI runs it) the style checks come
# first: `cargo fmt --check` (rustfmt.toml) and clippy with warnings as
# errors, over every host-compiled crate and target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
if (( $# == 0 )); then
    echo "test.sh: cargo fmt --check" >&2
    cargo fmt --all -- --check
    echo "test.sh: cargo clippy -D warnings" >&2
    cargo clippy -q --workspace --all-targets -- -D warnings
fi
exec cargo test "$@"
