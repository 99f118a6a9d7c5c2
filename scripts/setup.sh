#!/usr/bin/env bash
# Installs what building and booting the kernel needs on Debian 12, and does
# nothing when it is all there:
#   rustc-web (>= 1.96, /usr/bin/rustc) and rust-web-src (its library source,
#   which -Zbuild-std compiles for aarch64-unknown-none), rust-web-llvm (the
#   /usr/bin/rust-lld link) and lld-22 (what it links to), rust-web-clippy
#   (clippy for the aarch64 target, matching rustc-web), qemu-system-arm
#   (qemu-system-aarch64).
# cargo itself is rustup's; this script only checks that it is there.
# Recommended packages are left out (on a minimal Debian 12 that is 107
# packages instead of 438: qemu-system-arm recommends GUI, firmware and
# block drivers); the kernel boots with -kernel and no NIC.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MIN_RUSTC_MINOR=96
missing=()

rustc_ok() {
    [[ -x /usr/bin/rustc ]] || return 1
    local version
    version=$(/usr/bin/rustc --version 2>/dev/null | awk '{print $2}') || return 1
    local major=${version%%.*} rest=${version#*.}
    local minor=${rest%%.*}
    [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
    (( major > 1 || (major == 1 && minor >= MIN_RUSTC_MINOR) ))
}

rustc_ok || missing+=(rustc-web)
[[ -d /usr/lib/rustlib/src/rust/library/core ]] || missing+=(rust-web-src)
[[ -e /usr/bin/rust-lld ]] || missing+=(rust-web-llvm)
[[ -x /usr/bin/clippy-driver ]] || missing+=(rust-web-clippy)
command -v lld-22 >/dev/null || missing+=(lld-22)
command -v qemu-system-aarch64 >/dev/null || missing+=(qemu-system-arm)

if (( ${#missing[@]} )); then
    if [[ $(id -u) -eq 0 ]]; then
        as_root=()
    elif command -v sudo >/dev/null; then
        as_root=(sudo)
    else
        echo "setup.sh: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Refresh the package lists only if one of the packages is unknown to them.
    for pkg in "${missing[@]}"; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            echo "setup.sh: apt-get update (no candidate for $pkg)" >&2
            "${as_root[@]}" apt-get update -q
            break
        fi
    done
    echo "setup.sh: installing ${missing[*]}" >&2
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    rustc_ok || { echo "setup.sh: /usr/bin/rustc is still not rustc-web >= 1.$MIN_RUSTC_MINOR" >&2; exit 1; }
fi

if ! command -v cargo >/dev/null; then
    echo "setup.sh: cargo not found; install rustup's stable toolchain (https://rustup.rs)" >&2
    exit 1
fi
