//! The kernel binary. On the host this is an empty program so that a plain
//! `cargo build`/`cargo test` of the workspace works; the real entry point is
//! `_start` in `kernel::arch::boot`.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
use kernel as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the kernel binary is built for aarch64-unknown-none; see scripts/run.sh");
}
