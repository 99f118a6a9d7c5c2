//! Memory management: address spaces, page tables, ASIDs, gathers and flush
//! strategies. Plain Rust that compiles and is tested on the host; the
//! hardware sits behind `crate::arch`.

pub mod asid;
#[cfg(target_os = "none")]
pub mod family;
pub mod frame;
#[cfg(target_os = "none")]
pub mod heap;
#[cfg(target_os = "none")]
pub mod hw;
#[cfg(target_os = "none")]
pub mod ipi;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod phys;
pub mod pte;
#[cfg(target_os = "none")]
pub mod reclaim;
pub mod rmap;
pub mod swap;
pub mod tlb;
pub mod aspace;
pub mod device;
pub mod gather;
pub mod pagetable;
pub mod space;
#[cfg(target_os = "none")]
pub mod user;
pub mod vma;
