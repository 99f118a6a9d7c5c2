//! The hardware half of the TLB protocol ([`MmHw`]) and of the ASID
//! allocator ([`AsidHw`]) on this CPU, built from the arch layer's TTBR0 and
//! TLBI primitives. Flush decisions go to the TLB decision trace
//! (`mm::tlb::trace`) on their way.

use core::sync::atomic::{AtomicU64, Ordering};

use super::asid::AsidHw;
use super::pagetable::Format;
use super::space::{Invalidation, Mm, MmHw, Shootdown};
use super::tlb::trace::{hook as trace, Decision, Reason};
use super::tlb::{Event, Scope, TlbiOp, TLB_STATS};
use crate::arch::cpu::{self, cpu_id};
use crate::arch::tlbi;

/// Physical address of the all-invalid table TTBR0 points at when no user
/// address space is loaded (set once at boot).
static RESERVED_TTBR0: AtomicU64 = AtomicU64::new(0);

/// Sets the reserved table ([`MmHw::load_reserved`] loads it).
///
/// # Safety
/// `pa` is an all-invalid, 4096-aligned level-0 table that stays so for the
/// life of the kernel.
pub unsafe fn set_reserved_ttbr0(pa: u64) {
    RESERVED_TTBR0.store(pa, Ordering::Release);
}

/// This CPU, as the protocol sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hw;

impl AsidHw for Hw {
    fn cpu_id(&self) -> usize {
        cpu_id()
    }

    /// Called only for the flush a rollover owes this CPU.
    fn flush_local_tlb_all(&self) {
        trace::decision(Decision::op(&TlbiOp::All, Scope::Local, Reason::AsidRollover));
        tlbi::local_flush_all();
        // Local: the repeat-TLBI errata do not concern it (`space::repeat`).
        if super::user::config().repeat_tlbi.is_on() {
            TLB_STATS.record_event(cpu_id(), Event::RepeatLocalExempt);
        }
    }
}

impl MmHw for Hw {
    fn issue(&self, ops: &[TlbiOp], scope: Scope) {
        tlbi::issue_all(ops, scope);
    }

    fn complete(&self, scope: Scope) {
        tlbi::sync(scope);
    }

    fn repeat_tlbi(&self, op: &TlbiOp) {
        tlbi::repeat_tlbi(op);
    }

    fn repeat_dsb(&self) {
        tlbi::repeat_dsb();
    }

    unsafe fn load_ttbr0(&self, root: u64, asid: u16) {
        // SAFETY: forwarded from the caller (a tree that stays allocated
        // while loaded).
        unsafe { cpu::set_ttbr0(root, asid) };
    }

    fn load_reserved(&self) {
        // SAFETY: the reserved table is all-invalid and permanent
        // (`set_reserved_ttbr0`).
        unsafe { cpu::set_ttbr0(RESERVED_TTBR0.load(Ordering::Acquire), 0) };
    }

    fn event(&self, e: Event) {
        TLB_STATS.record_event(cpu_id(), e);
    }

    #[inline(always)]
    fn decision(&self, d: Decision<'_>) {
        trace::decision(d);
    }

    fn publish_tables(&self) {
        tlbi::publish_tables();
    }

    fn send<F: Format>(&self, mm: &Mm<F>, targets: u64, req: &Shootdown) {
        super::ipi::send(mm, targets, req);
    }

    fn acked(&self) -> bool {
        super::ipi::acked()
    }

    fn poll(&self) {
        super::ipi::poll();
    }

    fn notify_secondary<F: Format>(&self, _mm: &Mm<F>, devices: u64, inv: &Invalidation) {
        super::device::notify::notify(devices, inv);
    }

    fn secondary_acked(&self) -> bool {
        super::device::notify::acked()
    }
}
