//! Memory management: address spaces, page tables, ASIDs, gathers and flush
//! strategies. Plain Rust that compiles and is tested on the host; the
//! hardware sits behind `crate::arch`.

pub mod asid;
pub mod aspace;
pub mod device;
#[cfg(target_os = "none")]
pub mod family;
pub mod frame;
pub mod gather;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod hw;
#[cfg(target_os = "none")]
pub mod ipi;
#[cfg(target_os = "none")]
pub mod kernel;
pub mod pagetable;
#[cfg(target_os = "none")]
pub mod phys;
pub mod pte;
#[cfg(target_os = "none")]
pub mod reclaim;
pub mod rmap;
pub mod space;
pub mod swap;
pub mod tlb;
#[cfg(target_os = "none")]
pub mod user;
pub mod vma;
