//! The trace's storage: one ring of [`TraceEvent`]s per CPU, allocated once
//! when the trace is turned on.
//!
//! Recording is cheap and never allocates. Off (the default), recording costs
//! one relaxed load of a flag. On, a CPU writes only its own ring, under
//! that ring's lock taken with `try_lock`: uncontended except against a
//! dump, or against itself if an interrupt handler on the same CPU recorded
//! in the middle of a record. Then the event is dropped and counted rather
//! than waited for (no deadlock, no interleaving). A full ring overwrites
//! its oldest event and counts it as dropped, so the end of a run, what is
//! usually wanted, is what stays.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::{Reason, Span, TraceEvent};
use crate::mm::tlb::stats::MAX_CPUS;

/// A blank slot (overwritten before it is ever read).
const BLANK: TraceEvent = TraceEvent::new(0, 0, None, Span::All, Reason::AsidRollover);

/// The events of one CPU, oldest overwritten first.
pub struct CpuRing {
    slots: Vec<TraceEvent>,
    /// Events recorded since the start (`written % len` is the next slot).
    written: u64,
}

impl CpuRing {
    fn with_capacity(size: usize) -> Result<CpuRing, TryReserveError> {
        let mut slots = Vec::new();
        slots.try_reserve_exact(size)?;
        slots.resize(size, BLANK);
        Ok(CpuRing { slots, written: 0 })
    }

    fn push(&mut self, ev: TraceEvent) {
        let len = self.slots.len() as u64;
        if len == 0 {
            return;
        }
        self.slots[(self.written % len) as usize] = ev;
        self.written += 1;
    }

    /// Events the ring holds when full.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Events overwritten because the ring was full.
    pub fn overwritten(&self) -> u64 {
        self.written.saturating_sub(self.slots.len() as u64)
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &TraceEvent> + '_ {
        let len = self.slots.len();
        let kept = (self.written as usize).min(len);
        let first = if self.written as usize > len { (self.written % len as u64) as usize } else { 0 };
        (0..kept).map(move |i| &self.slots[(first + i) % len])
    }
}

/// The rings could not be allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceInitError {
    /// No memory for `bytes` of rings (`trace.size` too large for the heap).
    OutOfMemory { bytes: usize },
    /// The trace was turned on before.
    AlreadyOn,
    /// No CPUs, or more than the kernel supports.
    BadCpuCount { ncpus: usize },
}

impl fmt::Display for TraceInitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TraceInitError::OutOfMemory { bytes } => {
                write!(f, "no kernel heap for {bytes} bytes of trace rings: lower 'trace.size'")
            }
            TraceInitError::AlreadyOn => f.write_str("the TLB trace is on already"),
            TraceInitError::BadCpuCount { ncpus } => write!(f, "CPU count {ncpus} outside 1..={MAX_CPUS}"),
        }
    }
}

/// Every CPU's ring, and whether recording is on.
pub struct TlbTrace {
    on: AtomicBool,
    rings: spin::Once<Vec<spin::Mutex<CpuRing>>>,
    /// Per CPU: events dropped because the ring was in use.
    busy: [AtomicU64; MAX_CPUS],
}

impl TlbTrace {
    pub const fn new() -> Self {
        TlbTrace { on: AtomicBool::new(false), rings: spin::Once::new(), busy: [const { AtomicU64::new(0) }; MAX_CPUS] }
    }

    /// Allocates a ring of `size` events for each of `ncpus` CPUs and turns
    /// recording on. Once only.
    pub fn start(&self, size: usize, ncpus: usize) -> Result<(), TraceInitError> {
        if ncpus == 0 || ncpus > MAX_CPUS {
            return Err(TraceInitError::BadCpuCount { ncpus });
        }
        if self.rings.is_completed() {
            return Err(TraceInitError::AlreadyOn);
        }
        let bytes = size.saturating_mul(ncpus).saturating_mul(core::mem::size_of::<TraceEvent>());
        let oom = |_| TraceInitError::OutOfMemory { bytes };
        let mut rings = Vec::new();
        rings.try_reserve_exact(ncpus).map_err(oom)?;
        for _ in 0..ncpus {
            rings.push(spin::Mutex::new(CpuRing::with_capacity(size).map_err(oom)?));
        }
        self.rings.call_once(|| rings);
        self.on.store(true, Relaxed);
        Ok(())
    }

    /// Whether recording is on: the only cost of recording when it is not.
    #[inline(always)]
    pub fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// Stops recording (the rings keep what they hold).
    pub fn stop(&self) {
        self.on.store(false, Relaxed);
    }

    /// Whether rings were allocated (the trace was turned on at some point).
    pub fn started(&self) -> bool {
        self.rings.is_completed()
    }

    /// CPUs with a ring.
    pub fn cpus(&self) -> usize {
        self.rings.get().map_or(0, Vec::len)
    }

    /// Events per CPU ring.
    pub fn size(&self) -> usize {
        self.rings.get().and_then(|r| r.first()).map_or(0, |r| r.lock().capacity())
    }

    /// Records `ev` in CPU `ev.cpu`'s ring, if recording is on.
    pub fn record(&self, ev: TraceEvent) {
        if !self.is_on() {
            return;
        }
        let cpu = ev.cpu as usize;
        let Some(ring) = self.rings.get().and_then(|r| r.get(cpu)) else { return };
        match ring.try_lock() {
            Some(mut r) => r.push(ev),
            None => {
                self.busy[cpu].fetch_add(1, Relaxed);
            }
        }
    }

    /// Events of `cpu` dropped so far: overwritten in a full ring, or not
    /// recorded because the ring was in use.
    pub fn dropped(&self, cpu: usize) -> u64 {
        let Some(ring) = self.rings.get().and_then(|r| r.get(cpu)) else { return 0 };
        ring.lock().overwritten() + self.busy[cpu].load(Relaxed)
    }

    /// Calls `f` with each CPU's ring in turn (locked meanwhile).
    pub fn for_each_ring(&self, mut f: impl FnMut(usize, &CpuRing)) {
        for (cpu, ring) in self.rings.get().into_iter().flatten().enumerate() {
            f(cpu, &ring.lock());
        }
    }

    /// Locks every ring and calls `f` with all of them, in CPU order.
    pub fn with_rings<R>(&self, f: impl FnOnce(&[&CpuRing]) -> R) -> R {
        let guards: Vec<_> = self.rings.get().into_iter().flatten().map(|r| r.lock()).collect();
        let rings: Vec<&CpuRing> = guards.iter().map(|g| &**g).collect();
        f(&rings)
    }
}

impl Default for TlbTrace {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::tlb::policy::PlanReason;

    fn ev(cpu: u8, ticks: u64) -> TraceEvent {
        TraceEvent::new(ticks, cpu, Some(7), Span::WholeAsid, Reason::Policy(PlanReason::PerPage))
    }

    fn ticks(t: &TlbTrace, cpu: usize) -> Vec<u64> {
        let mut out = Vec::new();
        t.for_each_ring(|c, r| {
            if c == cpu {
                out.extend(r.events().map(|e| e.ticks));
            }
        });
        out
    }

    #[test]
    fn off_until_started_and_after_stopped() {
        let t = TlbTrace::new();
        assert!(!t.is_on() && !t.started());
        t.record(ev(0, 1));
        assert_eq!((t.cpus(), t.dropped(0)), (0, 0), "nothing recorded or counted while off");
        t.start(4, 2).unwrap();
        assert!(t.is_on());
        assert_eq!((t.cpus(), t.size()), (2, 4));
        assert_eq!(t.start(4, 2), Err(TraceInitError::AlreadyOn));
        t.record(ev(1, 5));
        t.stop();
        t.record(ev(1, 6));
        assert_eq!(ticks(&t, 1), [5], "stopped: later events are not kept");
        assert_eq!(t.dropped(1), 0, "nor counted as dropped");
        assert_eq!(TlbTrace::new().start(4, 0), Err(TraceInitError::BadCpuCount { ncpus: 0 }));
        assert_eq!(TlbTrace::new().start(4, MAX_CPUS + 1), Err(TraceInitError::BadCpuCount { ncpus: MAX_CPUS + 1 }));
    }

    #[test]
    fn each_cpu_keeps_its_own_order() {
        let t = TlbTrace::new();
        t.start(8, 3).unwrap();
        for i in 0..5 {
            t.record(ev(2, 100 - i)); // order of recording, not of time
            t.record(ev(0, i));
        }
        t.record(ev(7, 1)); // a CPU without a ring: ignored
        assert_eq!(ticks(&t, 0), [0, 1, 2, 3, 4]);
        assert_eq!(ticks(&t, 1), Vec::<u64>::new());
        assert_eq!(ticks(&t, 2), [100, 99, 98, 97, 96]);
        assert_eq!((t.dropped(0), t.dropped(1), t.dropped(2)), (0, 0, 0));
    }

    #[test]
    fn a_full_ring_keeps_the_newest_and_counts_the_dropped() {
        let t = TlbTrace::new();
        t.start(4, 2).unwrap();
        for i in 0..11 {
            t.record(ev(1, i));
        }
        t.record(ev(0, 99));
        assert_eq!(ticks(&t, 1), [7, 8, 9, 10], "the last 4 of 11, oldest first");
        assert_eq!(t.dropped(1), 7);
        assert_eq!((ticks(&t, 0), t.dropped(0)), (vec![99], 0), "CPU 0 is not affected");
        // Exactly full: nothing dropped yet.
        let t = TlbTrace::new();
        t.start(3, 1).unwrap();
        (0..3).for_each(|i| t.record(ev(0, i)));
        assert_eq!((ticks(&t, 0), t.dropped(0)), (vec![0, 1, 2], 0));
    }

    #[test]
    fn a_ring_in_use_drops_and_counts_instead_of_waiting() {
        let t = TlbTrace::new();
        t.start(4, 1).unwrap();
        t.with_rings(|_| t.record(ev(0, 1))); // as if a dump held it
        assert_eq!((ticks(&t, 0), t.dropped(0)), (vec![], 1));
    }

    #[test]
    fn an_impossible_size_is_an_error() {
        let t = TlbTrace::new();
        match t.start(usize::MAX / 2, 2) {
            Err(TraceInitError::OutOfMemory { .. }) => {}
            other => panic!("expected OutOfMemory, saw {other:?}"),
        }
        assert!(!t.is_on(), "a failed start leaves the trace off");
    }
}
