//! The hardware boundary. Everything here builds only for the bare-metal
//! target; the mm logic above it talks to it through small interfaces.

pub mod aarch64;

/// The hardware half of the TLB protocol on this CPU (the one facade other
/// code names).
pub use aarch64::mmu::Hw;
