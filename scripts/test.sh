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
    # The target-only code (arch, task, the kernel binary, the user
    # programs) with Debian's clippy, which matches the rustc-web that
    # builds it (rustup's has no aarch64 core for -Zbuild-std).
    echo "test.sh: clippy -D warnings for aarch64-unknown-none-softfloat" >&2
    target=aarch64-unknown-none-softfloat
    dir=target/clippy-aarch64
    lint=(env -u RUSTFLAGS RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTC_WORKSPACE_WRAPPER=/usr/bin/clippy-driver
          CLIPPY_ARGS=-Dwarnings USERLAND_DIR="$PWD/$dir/$target/kernel")
    opts=(--profile kernel --target "$target" -Zbuild-std=core,alloc -Zbuild-std-features=compiler-builtins-mem
          --target-dir "$dir")
    "${lint[@]}" cargo build -q -p userland --bins "${opts[@]}"
    "${lint[@]}" cargo build -q -p kernel --bin kernel "${opts[@]}"
fi
exec cargo test "$@"
