//! Host-side harness for the kernel: builds it for `aarch64-unknown-none`,
//! turns the ELF into a raw arm64 `Image`, reads the in-kernel test list from
//! the ELF's `.ktests` section, boots QEMU once per suite of tests that share
//! a machine, and parses the kernel's KTAP output.
//!
//! `tests/kernel.rs` reports the results through libtest (`cargo test NAME`,
//! `-- --list`, `--exact`, `--skip`); `ktool` (`src/bin/ktool.rs`) boots the
//! kernel by hand.
//!
//! Environment of a test run:
//! - `KTEST_TIMEOUT_SCALE`: multiplies every time limit (slow hosts);
//! - `KTEST_JOBS`: QEMU boots at once (default: the host's parallelism);
//! - `KTEST_VERBOSE=1`: echo every console line to stderr as it arrives;
//! - `KTEST_QEMU`: the QEMU binary (default `qemu-system-aarch64`).
#![forbid(unsafe_code)]

pub mod bench;
pub mod build;
pub mod image;
pub mod ktap;
pub mod ktests;
pub mod qemu;
pub mod stress;
pub mod suite;
pub mod tcg_plugin;
pub mod tlbtrace;
pub mod trials;

#[cfg(test)]
mod testelf;
