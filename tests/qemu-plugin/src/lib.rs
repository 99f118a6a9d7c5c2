//! `tlbcount`: a QEMU TCG plugin (API version 1, QEMU 7.2) that counts, per
//! vCPU, the guest instructions executed, the TLBI instructions by kind
//! and the DSBs by option, for the whole run and for the regions a guest
//! marks with `HINT #abi::marker::BEGIN` / `#END`, and writes them as JSON
//! to a file when QEMU exits.
//!
//! ```sh
//! qemu-system-aarch64 ... -plugin libtlbcount.so,out=counts.json[,count=tb|insn]
//! ```
//!
//! - [`decode`]: which encodings are TLBIs, DSBs and markers;
//! - [`plan`]: which callbacks a translation block gets, and what they do;
//! - [`counts`]: per-vCPU counters and regions;
//! - [`report`]: the JSON file.
//!
//! The harness builds it (`ktest_harness::tcg_plugin`) and the benchmark
//! tool loads it for every measurement.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod config;
pub mod counts;
pub mod decode;
pub mod plan;
pub mod report;

// The QEMU side: not in unit tests, whose executables have no QEMU to
// resolve the plugin API's symbols against.
#[cfg(not(test))]
mod glue;
