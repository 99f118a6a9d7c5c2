//! Per-CPU, per-kind counters of every TLB invalidation the kernel issues.
//!
//! Lock-free (relaxed atomics: they are statistics, read after the fact by
//! tests and benchmarks that synchronise by other means).

use core::sync::atomic::{AtomicU64, Ordering};

use super::op::OpKind;

/// Upper bound on CPUs the kernel supports.
pub const MAX_CPUS: usize = abi::MAX_CPUS;

/// Counters for one CPU.
pub struct CpuTlbStats {
    ops: [AtomicU64; OpKind::COUNT],
    /// DSBs issued to complete TLB maintenance.
    dsb: AtomicU64,
    /// The repeat-TLBI workaround's own TLBIs, by the kind they were
    /// issued as (`tlb.repeat_tlbi`, `mm::space::repeat`): not in `ops`.
    repeat: [AtomicU64; OpKind::COUNT],
    /// The workaround's own `DSB ISH`s: not in `dsb`.
    repeat_dsb: AtomicU64,
    /// Flush decisions that are not instructions, by [`Event`].
    events: [AtomicU64; Event::COUNT],
}

/// TLB-maintenance decisions worth counting that issue no instruction (or
/// change which one is issued).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Event {
    /// An exit-mode teardown whose flush was elided (docs/mechanisms.md §4).
    ExitElided = 0,
    /// A gather that finished while another was in flight on the same mm
    /// and therefore flushed the whole ASID (docs/mechanisms.md §5).
    NestedFullFlush,
    /// A call that holds the mm lock throughout (mprotect, mmap with FIXED,
    /// fork), or a fault about to install an entry, found a zap in flight
    /// and flushed the whole ASID first (docs/mechanisms.md §3, §5).
    RacingFullFlush,
    /// A CPU left an address space whose last thread was exiting with a
    /// local `TLBI ASIDE1` of its ASID and `DSB NSH` (docs/mechanisms.md §4; the
    /// TLBI itself is counted as `aside1`).
    ExitLocalFlush,
    /// The strategy (`tlb.strategy`, docs/mechanisms.md §6–7) chose local TLBIs:
    /// the mm's one user runs here.
    DecideLocal,
    /// The strategy chose IPIs to the CPUs that hold the mm.
    DecideIpi,
    /// The strategy chose broadcast TLBIs (always, under `broadcast`).
    DecideBroadcast,
    /// An IPI sent for a flush or to make a lazy CPU leave (per target).
    IpiSent,
    /// A flush IPI this CPU received and served.
    IpiReceived,
    /// A lazy CPU (a kernel thread on the mm's tables) was not sent an
    /// IPI: it catches up when it next runs a thread of the mm.
    LazySkip,
    /// A lazy CPU left the mm for the reserved table because tables were
    /// being freed (or the mm was being torn down).
    LazyLeave,
    /// One generation behind: the CPU flushed the request's range locally.
    CatchUpPartial,
    /// Further behind (or a whole-ASID request): one local `TLBI ASIDE1`.
    CatchUpFull,
    /// Already current: nothing to flush.
    CatchUpNone,
    /// A CPU whose entries of the mm may be stale (a local-only or IPI
    /// flush happened elsewhere while it did not run the mm) flushed the
    /// ASID locally before running the mm again.
    StaleFlush,
    /// A shootdown whose acknowledgements did not come within the time
    /// limit: the flush was repeated as a broadcast of the whole ASID.
    IpiTimeout,
    /// Operations that changed a subscribed mm's entries inside invalidate-range start and end (counted at the start).
    MnRange,
    /// Invalidations sent to secondary MMUs (one per device and flush).
    SecondaryInval,
    /// Mappings reclaim unmapped (one per mm and page), their TLBIs issued without a DSB.
    ReclaimUnmap,
    /// Reclaim batches completed by one DSB on the CPU that issued their TLBIs.
    ReclaimBatch,
    /// Calls that found a reclaim batch pending on their mm and flushed its ASID first.
    BatchedPendingFlush,
    /// Pages read back from swap on a fault.
    SwapIn,
    /// A local TLB flush completed while a repeat-TLBI mode was on
    /// (`tlb.repeat_tlbi`): not repeated, as the errata concern broadcast
    /// invalidation only (`mm::space::repeat`).
    RepeatLocalExempt,
    /// First touches that mapped a whole block (2 MiB) of zeroes.
    BlockFill,
    /// First touches that mapped a whole contiguous run (64 KiB) of zeroes.
    RunFill,
    /// Blocks split into pages (break-before-make: cleared, flushed, then the table linked).
    BlockSplit,
    /// Contiguous runs unfolded into plain pages (cleared, flushed, rewritten).
    RunUnfold,
    /// Splits and unfolds made without the break, as FEAT_BBM level 2 permits (counted as well as the split).
    SplitNoBreak,
    /// Regions collapsed into one block or run (MADV_COLLAPSE).
    Collapse,
    /// Copy-on-write faults that copied a whole block (`mm.block_cow=copy`).
    BlockCowCopy,
}

// The user-space names are the kernel's, in order.
/// Whether `a` and `b` are the same string (usable in constants).
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut j = 0;
    while j < a.len() {
        if a[j] != b[j] {
            return false;
        }
        j += 1;
    }
    true
}

const _: () = {
    let mut i = 0;
    while i < Event::COUNT {
        assert!(same(Event::ALL[i].name(), abi::stats::EVENT_NAMES[i]));
        i += 1;
    }
};

impl Event {
    pub const COUNT: usize = 30;
    pub const ALL: [Event; Self::COUNT] = [
        Event::ExitElided,
        Event::NestedFullFlush,
        Event::RacingFullFlush,
        Event::ExitLocalFlush,
        Event::DecideLocal,
        Event::DecideIpi,
        Event::DecideBroadcast,
        Event::IpiSent,
        Event::IpiReceived,
        Event::LazySkip,
        Event::LazyLeave,
        Event::CatchUpPartial,
        Event::CatchUpFull,
        Event::CatchUpNone,
        Event::StaleFlush,
        Event::IpiTimeout,
        Event::MnRange,
        Event::SecondaryInval,
        Event::ReclaimUnmap,
        Event::ReclaimBatch,
        Event::BatchedPendingFlush,
        Event::SwapIn,
        Event::RepeatLocalExempt,
        Event::BlockFill,
        Event::RunFill,
        Event::BlockSplit,
        Event::RunUnfold,
        Event::SplitNoBreak,
        Event::Collapse,
        Event::BlockCowCopy,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            Event::ExitElided => "exit_elided",
            Event::NestedFullFlush => "nested_full_flush",
            Event::RacingFullFlush => "racing_full_flush",
            Event::ExitLocalFlush => "exit_local_flush",
            Event::DecideLocal => "decide_local",
            Event::DecideIpi => "decide_ipi",
            Event::DecideBroadcast => "decide_broadcast",
            Event::IpiSent => "ipi_sent",
            Event::IpiReceived => "ipi_received",
            Event::LazySkip => "lazy_skip",
            Event::LazyLeave => "lazy_leave",
            Event::CatchUpPartial => "catch_up_partial",
            Event::CatchUpFull => "catch_up_full",
            Event::CatchUpNone => "catch_up_none",
            Event::StaleFlush => "stale_flush",
            Event::IpiTimeout => "ipi_timeout",
            Event::MnRange => "mn_range",
            Event::SecondaryInval => "sec_inval",
            Event::ReclaimUnmap => "reclaim_unmap",
            Event::ReclaimBatch => "reclaim_batch",
            Event::BatchedPendingFlush => "batched_pending_flush",
            Event::SwapIn => "swap_in",
            Event::RepeatLocalExempt => "repeat_local_exempt",
            Event::BlockFill => "block_fill",
            Event::RunFill => "run_fill",
            Event::BlockSplit => "block_split",
            Event::RunUnfold => "run_unfold",
            Event::SplitNoBreak => "split_no_break",
            Event::Collapse => "collapse",
            Event::BlockCowCopy => "block_cow_copy",
        }
    }
}

// User programs read the events by these indices (`stats(EVENTS)`).
const _: () = {
    use abi::events as e;
    assert!(Event::COUNT == e::COUNT);
    let pairs = [
        (Event::ExitElided, e::EXIT_ELIDED),
        (Event::NestedFullFlush, e::NESTED_FULL_FLUSH),
        (Event::RacingFullFlush, e::RACING_FULL_FLUSH),
        (Event::ExitLocalFlush, e::EXIT_LOCAL_FLUSH),
        (Event::DecideLocal, e::DECIDE_LOCAL),
        (Event::DecideIpi, e::DECIDE_IPI),
        (Event::DecideBroadcast, e::DECIDE_BROADCAST),
        (Event::IpiSent, e::IPI_SENT),
        (Event::IpiReceived, e::IPI_RECEIVED),
        (Event::LazySkip, e::LAZY_SKIP),
        (Event::LazyLeave, e::LAZY_LEAVE),
        (Event::CatchUpPartial, e::CATCH_UP_PARTIAL),
        (Event::CatchUpFull, e::CATCH_UP_FULL),
        (Event::CatchUpNone, e::CATCH_UP_NONE),
        (Event::StaleFlush, e::STALE_FLUSH),
        (Event::IpiTimeout, e::IPI_TIMEOUT),
        (Event::MnRange, e::MN_RANGE),
        (Event::SecondaryInval, e::SEC_INVAL),
        (Event::ReclaimUnmap, e::RECLAIM_UNMAP),
        (Event::ReclaimBatch, e::RECLAIM_BATCH),
        (Event::BatchedPendingFlush, e::BATCHED_PENDING_FLUSH),
        (Event::SwapIn, e::SWAP_IN),
        (Event::RepeatLocalExempt, e::REPEAT_LOCAL_EXEMPT),
        (Event::BlockFill, e::BLOCK_FILL),
        (Event::RunFill, e::RUN_FILL),
        (Event::BlockSplit, e::BLOCK_SPLIT),
        (Event::RunUnfold, e::RUN_UNFOLD),
        (Event::SplitNoBreak, e::SPLIT_NO_BREAK),
        (Event::Collapse, e::COLLAPSE),
        (Event::BlockCowCopy, e::BLOCK_COW_COPY),
    ];
    let mut i = 0;
    while i < pairs.len() {
        assert!(pairs[i].0 as usize == pairs[i].1 && Event::ALL[i] as usize == i);
        i += 1;
    }
};

impl CpuTlbStats {
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: AtomicU64 = AtomicU64::new(0);
    pub const fn new() -> Self {
        Self {
            ops: [Self::ZERO; OpKind::COUNT],
            dsb: AtomicU64::new(0),
            repeat: [Self::ZERO; OpKind::COUNT],
            repeat_dsb: AtomicU64::new(0),
            events: [Self::ZERO; Event::COUNT],
        }
    }
}

impl Default for CpuTlbStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters for every CPU.
pub struct TlbStats {
    cpus: [CpuTlbStats; MAX_CPUS],
}

/// A snapshot of the counters, summed or for one CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlbCounts {
    pub ops: [u64; OpKind::COUNT],
    pub dsb: u64,
    /// The repeat-TLBI workaround's TLBIs by kind, apart from `ops`.
    pub repeat: [u64; OpKind::COUNT],
    /// The workaround's DSBs, apart from `dsb`.
    pub repeat_dsb: u64,
    pub events: [u64; Event::COUNT],
}

impl TlbCounts {
    pub fn get(&self, kind: OpKind) -> u64 {
        self.ops[kind as usize]
    }
    /// Broadcast (`...IS`) operations.
    pub fn broadcast(&self) -> u64 {
        OpKind::ALL.iter().filter(|k| k.is_broadcast()).map(|&k| self.get(k)).sum()
    }

    /// TLBIs of the flushes themselves (the workaround's not included).
    pub fn total(&self) -> u64 {
        self.ops.iter().sum()
    }

    /// The repeat-TLBI workaround's TLBIs.
    pub fn repeat_total(&self) -> u64 {
        self.repeat.iter().sum()
    }

    /// Every TLBI the CPU executed: the flushes' and the workaround's (what
    /// an independent count of the instructions sees).
    pub fn executed(&self) -> u64 {
        self.total() + self.repeat_total()
    }
    /// Counts accumulated since `earlier` (saturating, counters only grow).
    pub fn since(&self, earlier: &TlbCounts) -> TlbCounts {
        let mut d = TlbCounts::default();
        for i in 0..OpKind::COUNT {
            d.ops[i] = self.ops[i].saturating_sub(earlier.ops[i]);
        }
        d.dsb = self.dsb.saturating_sub(earlier.dsb);
        for i in 0..OpKind::COUNT {
            d.repeat[i] = self.repeat[i].saturating_sub(earlier.repeat[i]);
        }
        d.repeat_dsb = self.repeat_dsb.saturating_sub(earlier.repeat_dsb);
        for i in 0..Event::COUNT {
            d.events[i] = self.events[i].saturating_sub(earlier.events[i]);
        }
        d
    }

    pub fn event(&self, e: Event) -> u64 {
        self.events[e as usize]
    }
}

impl core::fmt::Display for TlbCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for k in OpKind::ALL {
            let n = self.get(k);
            if n != 0 {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}={}", k.name(), n)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        write!(f, " dsb={}", self.dsb)?;
        for k in OpKind::ALL {
            if self.repeat[k as usize] != 0 {
                write!(f, " repeat_{}={}", k.name(), self.repeat[k as usize])?;
            }
        }
        if self.repeat_dsb != 0 {
            write!(f, " repeat_dsb={}", self.repeat_dsb)?;
        }
        for e in Event::ALL {
            if self.event(e) != 0 {
                write!(f, " {}={}", e.name(), self.event(e))?;
            }
        }
        Ok(())
    }
}

impl TlbStats {
    #[allow(clippy::declare_interior_mutable_const)]
    const CPU: CpuTlbStats = CpuTlbStats::new();
    pub const fn new() -> Self {
        Self { cpus: [Self::CPU; MAX_CPUS] }
    }

    pub fn record(&self, cpu: usize, kind: OpKind) {
        self.cpus[cpu % MAX_CPUS].ops[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_event(&self, cpu: usize, e: Event) {
        self.cpus[cpu % MAX_CPUS].events[e as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_dsb(&self, cpu: usize) {
        self.cpus[cpu % MAX_CPUS].dsb.fetch_add(1, Ordering::Relaxed);
    }

    /// One TLBI of the repeat-TLBI workaround, issued as `kind`.
    pub fn record_repeat(&self, cpu: usize, kind: OpKind) {
        self.cpus[cpu % MAX_CPUS].repeat[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One DSB of the repeat-TLBI workaround.
    pub fn record_repeat_dsb(&self, cpu: usize) {
        self.cpus[cpu % MAX_CPUS].repeat_dsb.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cpu(&self, cpu: usize) -> TlbCounts {
        let c = &self.cpus[cpu % MAX_CPUS];
        let mut out = TlbCounts::default();
        for (o, a) in out.ops.iter_mut().zip(c.ops.iter()) {
            *o = a.load(Ordering::Relaxed);
        }
        out.dsb = c.dsb.load(Ordering::Relaxed);
        for (o, a) in out.repeat.iter_mut().zip(c.repeat.iter()) {
            *o = a.load(Ordering::Relaxed);
        }
        out.repeat_dsb = c.repeat_dsb.load(Ordering::Relaxed);
        for (o, a) in out.events.iter_mut().zip(c.events.iter()) {
            *o = a.load(Ordering::Relaxed);
        }
        out
    }

    pub fn total(&self) -> TlbCounts {
        let mut out = TlbCounts::default();
        for cpu in 0..MAX_CPUS {
            let c = self.cpu(cpu);
            for i in 0..OpKind::COUNT {
                out.ops[i] += c.ops[i];
            }
            out.dsb += c.dsb;
            for i in 0..OpKind::COUNT {
                out.repeat[i] += c.repeat[i];
            }
            out.repeat_dsb += c.repeat_dsb;
            for i in 0..Event::COUNT {
                out.events[i] += c.events[i];
            }
        }
        out
    }
}

impl Default for TlbStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's counters (the host model keeps its own `TlbStats`).
pub static TLB_STATS: TlbStats = TlbStats::new();

/// The by-address kinds ([`OpKind`] `vae1` .. `rvale1` and their `...is`
/// forms) in the order of [`TtlStats`]' words: eight kinds, each with four
/// words.
pub const TTL_KINDS: [OpKind; 8] = [
    OpKind::Vae1,
    OpKind::Vale1,
    OpKind::Rvae1,
    OpKind::Rvale1,
    OpKind::Vae1is,
    OpKind::Vale1is,
    OpKind::Rvae1is,
    OpKind::Rvale1is,
];

/// Words of [`TtlStats`]: for each of [`TTL_KINDS`], the ops issued with
/// no TTL hint, then with the hint level 1, 2 and 3 (word `4 * kind +
/// level`).
pub const TTL_WORDS: usize = 4 * TTL_KINDS.len();

/// Per-CPU counts of the by-address TLBIs by kind and the level of their
/// TTL hint (FEAT_TTL: the level of the leaf entries they invalidate), next
/// to [`TlbStats`]' counts by kind, which they add up to for those kinds.
pub struct TtlStats {
    cpus: [[AtomicU64; TTL_WORDS]; MAX_CPUS],
}

impl TtlStats {
    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: AtomicU64 = AtomicU64::new(0);
    #[allow(clippy::declare_interior_mutable_const)]
    const CPU: [AtomicU64; TTL_WORDS] = [Self::ZERO; TTL_WORDS];

    pub const fn new() -> Self {
        Self { cpus: [Self::CPU; MAX_CPUS] }
    }

    /// Counts one op of `kind` with hint `ttl` (nothing for the kinds
    /// without an address).
    pub fn record(&self, cpu: usize, kind: OpKind, ttl: Option<u8>) {
        let Some(k) = TTL_KINDS.iter().position(|&t| t == kind) else { return };
        let level = usize::from(ttl.unwrap_or(0).min(3));
        self.cpus[cpu % MAX_CPUS][4 * k + level].fetch_add(1, Ordering::Relaxed);
    }

    /// The words of every CPU together.
    pub fn total(&self) -> [u64; TTL_WORDS] {
        let mut out = [0; TTL_WORDS];
        for c in &self.cpus {
            for (o, a) in out.iter_mut().zip(c) {
                *o += a.load(Ordering::Relaxed);
            }
        }
        out
    }
}

impl Default for TtlStats {
    fn default() -> Self {
        Self::new()
    }
}

/// The kernel's counts by TTL level.
pub static TTL_STATS: TtlStats = TtlStats::new();

// The user-space names of the kinds are the kernel's, in order.
const _: () = {
    let mut i = 0;
    while i < TTL_KINDS.len() {
        assert!(same(TTL_KINDS[i].name(), abi::stats::TTL_KINDS[i]));
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_cpu_and_total() {
        let s = TlbStats::new();
        s.record(0, OpKind::Vae1is);
        s.record(1, OpKind::Vae1is);
        s.record(1, OpKind::Aside1);
        s.record_dsb(1);
        assert_eq!(s.cpu(0).get(OpKind::Vae1is), 1);
        assert_eq!(s.cpu(1).get(OpKind::Aside1), 1);
        let t = s.total();
        assert_eq!(t.get(OpKind::Vae1is), 2);
        assert_eq!(t.total(), 3);
        assert_eq!(t.dsb, 1);
        let before = t;
        s.record(2, OpKind::Vmalle1is);
        let d = s.total().since(&before);
        assert_eq!(d.total(), 1);
        assert_eq!(d.get(OpKind::Vmalle1is), 1);
        assert_eq!(format!("{d}"), "vmalle1is=1 dsb=0");
        s.record_event(3, Event::ExitElided);
        let e = s.total().since(&before);
        assert_eq!(e.event(Event::ExitElided), 1);
        assert_eq!(e.total(), 1, "events are not TLBI instructions");
        assert_eq!(format!("{e}"), "vmalle1is=1 dsb=0 exit_elided=1");
        s.record_repeat(1, OpKind::Vale1is);
        s.record_repeat_dsb(1);
        let r = s.total().since(&before);
        assert_eq!(r.total(), 1, "the workaround's TLBIs are not the flushes' own");
        assert_eq!((r.repeat_total(), r.repeat_dsb, r.dsb), (1, 1, 0));
        assert_eq!(r.executed(), 2);
        assert_eq!(s.cpu(1).repeat[OpKind::Vale1is as usize], 1);
        assert_eq!(format!("{r}"), "vmalle1is=1 dsb=0 repeat_vale1is=1 repeat_dsb=1 exit_elided=1");
    }

    #[test]
    fn counts_by_ttl_level_per_kind() {
        let s = TtlStats::new();
        s.record(0, OpKind::Vale1is, Some(2));
        s.record(1, OpKind::Vale1is, Some(2));
        s.record(1, OpKind::Rvae1, None);
        s.record(2, OpKind::Aside1is, None);
        let t = s.total();
        assert_eq!(t[4 * 5 + 2], 2, "vale1is at level 2");
        assert_eq!(t[4 * 2], 1, "rvae1 without a hint");
        assert_eq!(t.iter().sum::<u64>(), 3, "ASID flushes have no level");
    }
}
