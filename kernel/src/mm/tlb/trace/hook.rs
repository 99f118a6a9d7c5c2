//! The kernel's end of the TLB decision trace: [`decision`] adds the calling
//! CPU and the time (CNTVCT) to a [`Decision`] and records it in
//! [`TLB_TRACE`]. With the trace off (no `trace=tlb`) that is one relaxed
//! load and a branch.
//!
//! The decisions come from the TLB protocol (`mm::space`, through
//! `MmHw::decision`) and from the ASID allocator's rollover flush, both by
//! way of the kernel's hardware, `mm::hw::Hw`.

use super::{Decision, TlbTrace, TraceInitError, TraceParams};
use crate::arch::cpu::cpu_id;

/// The kernel's trace (off unless `trace=tlb`).
pub static TLB_TRACE: TlbTrace = TlbTrace::new();

/// Turns the trace on with `p.size` events for each of `ncpus` CPUs if
/// `p.tlb` (at boot, before any user mm exists).
pub fn init(p: &TraceParams, ncpus: usize) -> Result<(), TraceInitError> {
    if p.tlb {
        TLB_TRACE.start(p.size as usize, ncpus)?;
    }
    Ok(())
}

/// Records `d`, made now on this CPU, if the trace is on.
#[inline(always)]
pub fn decision(d: Decision<'_>) {
    if TLB_TRACE.is_on() {
        record_now(d);
    }
}

#[inline(never)]
fn record_now(d: Decision<'_>) {
    TLB_TRACE.record(d.event(platform::timer::now(), cpu_id() as u8));
}

/// Stops the trace and prints it (see [`super::line`]); nothing if the
/// trace was never on.
pub fn dump() {
    if !TLB_TRACE.started() {
        return;
    }
    TLB_TRACE.stop();
    let dropped: alloc::vec::Vec<u64> = (0..TLB_TRACE.cpus()).map(|c| TLB_TRACE.dropped(c)).collect();
    let freq = platform::timer::frequency();
    TLB_TRACE.with_rings(|rings| super::line::write_block(rings, &dropped, freq, |l| crate::kprintln!("{l}")));
}
