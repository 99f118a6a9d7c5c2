//! How a flush reaches the CPUs that may hold an mm's entries: the flush
//! strategies of docs/mechanisms.md §6–7 (seeds 002 and 003), chosen with
//! `tlb.strategy`.
//!
//! * **broadcast**: inner-shareable TLBIs (`...IS`), which reach every CPU.
//! * **ipi**: local TLBIs only. The CPUs whose TTBR0 holds the mm
//!   (`Mm::cpus`) are sent an IPI; each flushes locally and acknowledges, and
//!   the initiator frees nothing before every acknowledgement.
//! * **local**: when the mm's one user runs on this CPU (`Mm::users` == 1:
//!   Andrea Arcangeli's arm64 scheme), local TLBIs here and nothing else;
//!   otherwise broadcast.
//! * **auto**: local when alone, IPIs while the mm runs on at most
//!   `tlb.ipi_max` CPUs, broadcast beyond.
//!
//! # Generations (x86's `tlb_gen`)
//!
//! Each mm counts its non-broadcast flushes in `Mm::tlb_gen`; each CPU
//! records in `Mm::cpu_gen` the generation its TLB is clean up to. A flush
//! that does not reach every CPU bumps the generation *before* it reads who
//! holds the mm; a CPU that starts holding the mm (an activation, or a lazy
//! CPU going back to a thread of it) publishes its bit *before* it reads the
//! generation. Of the two, at least one sees the other (both sides are
//! sequentially consistent): the flusher flushes that CPU, or the CPU finds
//! itself behind and flushes the ASID locally, before its TTBR0 holds the
//! tables ([`super::switch::activate`]). That is the "stale CPU" marking of
//! the local scheme: every CPU that did not get this flush is behind now.
//! A target of an IPI that is exactly one generation behind flushes the
//! request's range; further behind, the whole ASID; current, nothing
//! ([`catch_up`], x86's `flush_tlb_func` rules).
//!
//! # Lazy CPUs
//!
//! A CPU that switches from a thread of an mm to a kernel thread keeps the
//! tables loaded (`Mm::lazy`). Flushes skip it: nothing runs there that
//! uses the entries, and it catches up when it goes back to the mm. But
//! when tables are freed it must leave first, for its TTBR0 would let a
//! speculative walk through stale walk-cache entries into a freed table:
//! freeing flushes send it an IPI and it loads the reserved table.
//!
//! # Adopters (use_mm)
//!
//! A kernel thread that works on a process's memory (the asynchronous copy
//! worker) counts itself in `Mm::users` before it loads the tables, with a
//! full barrier between, so the local strategy never thinks the owner alone
//! (seed 002; `tlb.use_mm_mmget=off` removes the count, to show the bug).

use core::sync::atomic::Ordering;

use super::{Mm, MmHw, TlbConfig};
use crate::mm::gather::FlushRange;
use crate::mm::pagetable::Format;
use crate::mm::tlb::trace::{Decision, Reason};
use crate::mm::tlb::{Event, FlushPlan, FlushStrategy, RangePolicy, Scope, TlbiOp};

/// How flushes reach other CPUs (`tlb.strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    Broadcast,
    Ipi,
    Local,
    Auto,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [Strategy::Broadcast, Strategy::Ipi, Strategy::Local, Strategy::Auto];

    pub const fn name(self) -> &'static str {
        match self {
            Strategy::Broadcast => "broadcast",
            Strategy::Ipi => "ipi",
            Strategy::Local => "local",
            Strategy::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// `auto` sends IPIs while the mm runs on at most this many CPUs, and
/// broadcasts beyond (`tlb.ipi_max`). The default follows Linux on x86,
/// which gives an mm a broadcast ASID (INVLPGB flushes) once it is seen
/// running on 4 or more CPUs at once (Rik van Riel, "x86/mm: Enable
/// broadcast TLB invalidation for multi-threaded processes", 6.15; there
/// the limit is also about the scarce broadcast ASIDs). The cost behind
/// it holds here too: IPIs cost one interrupt per target, a broadcast TLBI
/// the same for any number of CPUs; `scripts/bench.sh` measures where they
/// cross on this machine.
pub const IPI_MAX: u32 = 3;

/// What an IPI asks of its target (see [`serve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shootdown {
    /// The generation the initiator's flush made.
    pub new_gen: u64,
    /// The ASID as the initiator read it (for its time-out fallback).
    pub asid: u16,
    /// The range, for a target exactly one generation behind; `None`: the
    /// whole ASID.
    pub range: Option<FlushRange>,
    /// Tables are being freed: a lazy target leaves the mm.
    pub freed_tables: bool,
    /// The mm is being torn down (its last user left): a lazy target leaves
    /// it and drops its entries of the ASID, as an exiting thread's CPU does
    /// (`switch::leave_dying`).
    pub dying: bool,
}

/// Where a flush goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Inner-shareable ops from here.
    Broadcast,
    /// Local ops here if this CPU holds the mm (`here`), and an IPI to each
    /// CPU in `targets`; `new_gen` is the generation this flush made.
    Shoot { new_gen: u64, here: bool, targets: u64 },
}

/// Decides where a flush of `mm` goes, bumping its generation unless it
/// broadcasts (see the module documentation). Counts the decision.
pub fn route<F: Format, H: MmHw>(mm: &Mm<F>, cfg: &TlbConfig, hw: &H, freed_tables: bool) -> Route {
    let strategy = cfg.strategy;
    let me = 1u64 << hw.cpu_id();
    // A first look, before the generation: when it already says broadcast,
    // broadcast (always safe) without a generation every other CPU would
    // then catch up with for nothing.
    let early = match strategy {
        Strategy::Broadcast => true,
        Strategy::Ipi => false,
        Strategy::Local | Strategy::Auto => Holders::read(mm, me).ipi(strategy, cfg.ipi_max).is_none(),
    };
    if early {
        // Everyone gets the flush: no generation to publish.
        hw.event(Event::DecideBroadcast);
        return Route::Broadcast;
    }
    // A CPU that sees the new generation walks the tables next (it flushes
    // and loads TTBR0, or serves our IPI): our page-table writes must be
    // complete for its walks before the generation is.
    hw.publish_tables();
    let new_gen = if cfg.bugs.no_stale_mark {
        mm.tlb_gen.load(Ordering::SeqCst)
    } else {
        mm.tlb_gen.fetch_add(1, Ordering::SeqCst) + 1
    };
    let h = Holders::read(mm, me);
    let Some(ipi) = h.ipi(strategy, cfg.ipi_max) else {
        hw.event(Event::DecideBroadcast);
        return Route::Broadcast;
    };
    let (here, others, lazy, busy) = (h.cpus & me != 0, h.cpus & !me, h.lazy, h.busy);
    hw.event(if ipi { Event::DecideIpi } else { Event::DecideLocal });
    // Alone, the other holders can only be lazy (or an adopter that did
    // not count itself: `tlb.use_mm_mmget=off`, whose CPU this misses).
    let mut targets = if ipi { busy } else { 0 };
    let lazy_others = others & lazy;
    if freed_tables && !cfg.bugs.lazy_skip_on_free {
        targets |= lazy_others;
    } else if lazy_others != 0 {
        if !cfg.bugs.no_stale_mark {
            mm.skipped.fetch_or(lazy_others, Ordering::SeqCst);
        }
        for _ in 0..lazy_others.count_ones() {
            hw.event(Event::LazySkip);
        }
    }
    Route::Shoot { new_gen, here, targets }
}

/// Who holds an mm, as one flush reads it.
struct Holders {
    cpus: u64,
    lazy: u64,
    /// Other CPUs that hold it and are not lazy.
    busy: u64,
    running_here: bool,
    /// Its one user runs on this CPU.
    alone: bool,
}

impl Holders {
    fn read<F: Format>(mm: &Mm<F>, me: u64) -> Holders {
        let cpus = mm.cpus.load(Ordering::SeqCst);
        let lazy = mm.lazy.load(Ordering::SeqCst);
        let users = mm.users.load(Ordering::SeqCst);
        let running_here = cpus & me != 0 && lazy & me == 0;
        Holders { cpus, lazy, busy: cpus & !me & !lazy, running_here, alone: users == 1 && running_here }
    }

    /// What `strategy` makes of them: `Some(true)` IPIs, `Some(false)`
    /// local only, `None` broadcast.
    fn ipi(&self, strategy: Strategy, ipi_max: u32) -> Option<bool> {
        match strategy {
            Strategy::Local | Strategy::Auto if self.alone => Some(false),
            Strategy::Ipi => Some(true),
            Strategy::Auto if self.busy.count_ones() + self.running_here as u32 <= ipi_max => Some(true),
            _ => None,
        }
    }
}

/// How this CPU catches up with `mm`'s generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CatchUp {
    /// Current already.
    None,
    /// One generation behind: the range.
    Partial,
    /// Further behind: the whole ASID.
    Full,
    /// Skipped while lazy: every entry of this CPU (`VMALLE1`; see
    /// [`flush_behind`]).
    All,
}

/// How far behind this CPU is for a flush that made `new_gen` (for an IPI
/// target and for the initiator itself), and the generation it will be at
/// once it flushed as told. `partial_ok`: the request has a range.
pub fn behind<F: Format, H: MmHw>(
    mm: &Mm<F>,
    cfg: &TlbConfig,
    hw: &H,
    new_gen: u64,
    partial_ok: bool,
) -> (CatchUp, u64) {
    let mine = mm.cpu_gen[hw.cpu_id()].load(Ordering::Relaxed);
    let cur = mm.tlb_gen.load(Ordering::SeqCst);
    if mine >= cur {
        return (CatchUp::None, cur);
    }
    let one_behind = new_gen == mine + 1 && cur == new_gen;
    if partial_ok && (one_behind || cfg.bugs.partial_any_gen) {
        (CatchUp::Partial, cur)
    } else {
        (CatchUp::Full, cur)
    }
}

/// Records that this CPU's TLB is clean for `mm` up to `gen` (after the DSB
/// that completed its flush). Only this CPU writes its slot.
pub fn caught_up<F: Format, H: MmHw>(mm: &Mm<F>, hw: &H, gen: u64) {
    let slot = &mm.cpu_gen[hw.cpu_id()];
    if gen > slot.load(Ordering::Relaxed) {
        slot.store(gen, Ordering::Relaxed);
    }
}

/// What [`serve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Served {
    /// This CPU does not hold the mm: it catches up when it next loads it.
    NotHere,
    /// It flushed as far as it was behind (possibly nothing).
    Flushed(CatchUp),
    /// It was lazy and left the mm for the reserved table: the kernel drops
    /// its record of the mm on this CPU.
    Left,
}

/// The target's side of an IPI for `mm`: run by the kernel's interrupt
/// handler (and while it waits for its own acknowledgements), and by the
/// host model as a step of the target CPU. The acknowledgement follows.
pub fn serve<F: Format, H: MmHw>(mm: &Mm<F>, req: &Shootdown, cfg: &TlbConfig, hw: &H) -> Served {
    hw.event(Event::IpiReceived);
    let me = 1u64 << hw.cpu_id();
    if mm.cpus.load(Ordering::Acquire) & me == 0 {
        return Served::NotHere;
    }
    if (req.freed_tables || req.dying) && mm.lazy.load(Ordering::Acquire) & me != 0 {
        hw.load_reserved();
        if skipped_here(mm, hw) {
            // Entries that may conflict stay behind otherwise (see
            // `flush_all_here`); the dying ASID's go with them.
            flush_all_here(cfg, hw, Reason::CatchUp);
        } else if req.dying {
            drop_dying_asid(mm, cfg, hw);
        }
        mm.lazy.fetch_and(!me, Ordering::SeqCst);
        mm.cpus.fetch_and(!me, Ordering::SeqCst);
        hw.event(Event::LazyLeave);
        return Served::Left;
    }
    Served::Flushed(flush_behind(mm, cfg, hw, Some(req), Reason::Shootdown))
}

/// This CPU holds `mm` and catches up with its generation: for an IPI
/// (`req`), or when it starts running the mm again (`None`: the whole ASID
/// if behind at all). Flushes locally and completes.
pub fn flush_behind<F: Format, H: MmHw>(
    mm: &Mm<F>,
    cfg: &TlbConfig,
    hw: &H,
    req: Option<&Shootdown>,
    why: Reason,
) -> CatchUp {
    let (new_gen, range) = match req {
        Some(r) => (r.new_gen, r.range),
        None => (0, None),
    };
    let (mut how, cur) = behind(mm, cfg, hw, new_gen, range.is_some());
    let Some(asid) = mm.ctx.asid() else {
        // Never had an ASID: no TLB holds its entries.
        caught_up(mm, hw, cur);
        return CatchUp::None;
    };
    if skipped_here(mm, hw) {
        how = CatchUp::All;
    }
    let mut plan = FlushPlan::new(Scope::Local);
    match (how, range) {
        (CatchUp::All, _) => {
            flush_all_here(cfg, hw, why);
            caught_up(mm, hw, cur);
            return how;
        }
        (CatchUp::None, _) => {
            hw.event(Event::CatchUpNone);
            return CatchUp::None;
        }
        (CatchUp::Partial, Some(r)) => {
            let req = r.request(asid);
            if RangePolicy::new(cfg.params).plan_into(&req, &cfg.features, &mut plan).is_err() {
                plan.set_whole_asid(asid, Scope::Local);
            }
            plan.set_scope(Scope::Local);
            hw.event(Event::CatchUpPartial);
            hw.decision(Decision::planned("range", &req, &plan, why));
        }
        _ => {
            plan.set_whole_asid(asid, Scope::Local);
            hw.event(if req.is_some() { Event::CatchUpFull } else { Event::StaleFlush });
            hw.decision(Decision::whole_asid(asid, &plan, why));
        }
    }
    super::repeat::run(hw, cfg.repeat_tlbi, plan.ops(), Scope::Local);
    caught_up(mm, hw, cur);
    how
}

/// Whether flushes skipped this CPU while it was lazy on `mm` since it last
/// flushed everything; clears the mark (the caller flushes everything now).
pub(super) fn skipped_here<F: Format, H: MmHw>(mm: &Mm<F>, hw: &H) -> bool {
    let me = 1u64 << hw.cpu_id();
    mm.skipped.load(Ordering::SeqCst) & me != 0 && mm.skipped.fetch_and(!me, Ordering::SeqCst) & me != 0
}

/// Local `TLBI VMALLE1` and `DSB NSH`, for a CPU that was skipped while
/// lazy: its TTBR0 held the live tables meanwhile, so a speculative walk may
/// have cached a new entry for an address whose old entry the skipped flush
/// would have removed. Two entries for one address break break-before-make,
/// and only an invalidation of everything is guaranteed to remove such
/// conflicting entries (Arm ARM DDI 0487, D8.17.3, R_GRVDR and I_JCCRT); a
/// `TLBI ASIDE1` or by VA need not.
fn flush_all_here<H: MmHw>(cfg: &TlbConfig, hw: &H, why: Reason) {
    let op = TlbiOp::All;
    hw.decision(Decision::op(&op, Scope::Local, why));
    super::repeat::run(hw, cfg.repeat_tlbi, &[op], Scope::Local);
    hw.event(Event::StaleFlush);
}

/// A local `TLBI ASIDE1` of a dying mm's ASID and its `DSB NSH` (see
/// `switch::leave_dying` for why each leaving CPU does it).
pub(super) fn drop_dying_asid<F: Format, H: MmHw>(mm: &Mm<F>, cfg: &TlbConfig, hw: &H) {
    if let Some(asid) = mm.ctx.asid() {
        let op = TlbiOp::Asid { asid };
        hw.decision(Decision::op(&op, Scope::Local, Reason::ExitLocal));
        super::repeat::run(hw, cfg.repeat_tlbi, &[op], Scope::Local);
        hw.event(Event::ExitLocalFlush);
    }
}
