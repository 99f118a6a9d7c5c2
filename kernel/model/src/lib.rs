//! Host-side, hardware-faithful TLB model (see docs/mechanisms.md section 10).
//!
//! QEMU flushes its whole TLB whenever the ASID changes, so it never shows
//! stale ASID-tagged entries across context switches; real cores keep them.
//! This model keeps them, the way the architecture allows:
//!
//! * [`mem`]: simulated physical memory holding a reduced page-table format
//!   (a few levels of `fanout`-entry tables, blocks above the leaf level);
//!   freed pages keep their contents and are reused lowest-first.
//! * [`tlb`]: per-CPU TLBs of ASID-tagged leaf and walk-cache entries that
//!   leave only through a matching invalidation (a TTL hint of another
//!   level leaves an entry); a leaf entry covers a page, a whole block or a
//!   whole contiguous run.
//! * [`machine`]: CPUs with TTBR0, speculative walks as an explicit step,
//!   walks still in flight after a TTBR0 write without a DSB, `TlbiOp`
//!   execution with per-issuer pending invalidations completed by that
//!   issuer's DSB (of the right shareability), an inbox of shootdown
//!   requests per CPU, counted in a `TlbStats`; the TLB-level invariants,
//!   TLB conflicts among them (FEAT_BBM level 2 declared or not).
//! * [`device`]: secondary MMUs in the machine: the kernel's own device
//!   cache (`mm::space::DevTlb`) and an inbox of invalidations per device.
//! * [`explore`]: an explicit-state model checker and a seeded random walker
//!   over any [`explore::System`].
//! * [`asid_world`]: the real ASID allocator (`mm::asid`, stepped through its
//!   own resumable operations) in a model system of CPUs switching among
//!   address spaces that are created, exit, unmap pages and get pinned;
//!   checked exhaustively and by random walks in `asid_checks`.
//! * [`bridge`]: the kernel's hardware and memory traits (`AsidHw`, `MmHw`,
//!   `PhysMem`) over one model CPU and the model's memory, so the kernel's
//!   mm code runs unchanged on the model machine.
//! * [`zap_world`]: the kernel's TLB protocol itself (`mm::space`: `Mm`,
//!   its resumable `Op`s for munmap, madvise, mprotect, mmap, fork, faults,
//!   the reaper and the exit teardown, `switch`, and `shootdown` with its
//!   flush strategies), its page tables in a reduced format, stepped at
//!   every interleaving point against readers, writers, speculation, IPIs
//!   served in any order, context switches (lazy CPUs, threads moving
//!   between CPUs), a kernel thread that adopts the address space, and a
//!   second address space reusing freed frames, secondary MMUs bound to
//!   the address space (the mmu notifier's subscribers, reading and
//!   writing its pages through their own caches), and a reclaimer that
//!   sends its pages to swap in batches (`mm::space::reclaim`); checked in
//!   `zap_checks`, `device_checks` and `reclaim_checks`, with each
//!   mechanism switched off (`mm::space::Bugs`, `mmu.notifier=late`,
//!   `reclaim.dsb=remote`) to show a check fail; blocks and contiguous
//!   runs (splits, collapse, mixed-size zaps, fork of a block) in
//!   `pages_checks`, with a split without the break, a block flushed at
//!   level 3 and a nested flush of pages only, each caught.

pub mod asid_world;
pub mod bridge;
pub mod device;
pub mod explore;
pub mod machine;
pub mod mem;
pub mod rng;
pub mod tlb;
pub mod violation;

#[cfg(test)]
mod asid_checks;

pub use explore::{explore, random_walk, Counterexample, Report, System};
pub use machine::{Machine, ModelCpu, Ttbr0};
pub use mem::{Desc, Format, FrameUse, Memory, MmTag, Pfn};
pub use tlb::{Entry, Tlb};
pub use violation::Violation;
pub mod zap_world;

#[cfg(test)]
mod zap_checks;

#[cfg(test)]
mod device_checks;

#[cfg(test)]
mod reclaim_checks;

#[cfg(test)]
mod pages_checks;
