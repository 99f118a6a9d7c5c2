//! The kernel's TLB protocol (`kernel::mm::space`) run as-is over the TLB
//! model: a [`System`] for `explore` and `random_walk`.
//!
//! The address space `A` is the kernel's own `Mm` over a reduced page-table
//! format, built and changed only by the kernel's code: its VMAs, its page
//! tables (written through [`Bridge`] into the model memory), its gathers,
//! the flush policy and strategy (`TlbConfig::strategy`: broadcast, IPIs,
//! local, auto), and the ASID from the kernel's allocator. Threads run
//! scripts of calls: threads of `A`, and kernel threads (the reaper; an
//! adopter that works on `A`'s memory). A call is an [`Op`] that the
//! checker steps one step at a time, so every interleaving of its steps
//! with other CPUs' steps, user accesses, hardware walks, IPIs and context
//! switches is explored. Nothing of the protocol is written here: only the
//! world around it.
//!
//! Around the operations:
//! * `Read`/`Write`: a user access through the TLB (a miss walks; a
//!   translation or permission fault starts a `Fault` operation, within a
//!   budget of faults per run), by a running thread of `A` or by the
//!   adopter while it holds `A`;
//! * `Speculate`: a hardware walk (or after every action, with
//!   [`Speculation::Eager`]), on any CPU whose TTBR0 holds tables (lazy
//!   ones included);
//! * `Serve`: a CPU takes a shootdown request another CPU sent it (an IPI:
//!   `MmHw::send` leaves it in the machine) and runs the kernel's
//!   `shootdown::serve`; a CPU that left the mm (`Served::Left`) no longer
//!   holds it. Any request may be served at any point, in any order;
//! * context switches, each through `switch_to`, which does what the
//!   kernel's `mm::user::switch_to` does with `space::switch`: to the mm
//!   already loaded, `leave_lazy` if lazy; to another, `activate` then
//!   `drop_bits` of the old; to a kernel thread, `enter_lazy` (or
//!   `deactivate` with `tlb.lazy` off). `Switch` runs a thread of `B` or of
//!   an empty address space that only uses up ASIDs (so the allocator rolls
//!   over when its ASIDs are few); `Idle` switches a thread out for a
//!   kernel thread, leaving its CPU lazy; `Schedule` runs a waiting thread
//!   of `A` on a CPU, the one it ran on last or another (a migration, which
//!   leaves the CPU it came from lazy with whatever its TLB holds);
//! * the adopter's `Adopt` (users += 1 unless `tlb.use_mm_mmget` is off,
//!   then a full barrier and `switch_to(A)`, as `UserMm::adopt`) and
//!   `Unadopt` (`deactivate`, then users -= 1), each two steps;
//! * `MapB`: `B` faults a page in, from whatever frames are free (the
//!   lowest first, so frames `A` freed are reused at once);
//! * `ChildExit`: the fork child tears down (leaving its CPU first if it
//!   ran), dropping its references to the frames it shares copy-on-write;
//! * `ChildAccess` (with `Config::child_runs`): the child, on a CPU of its
//!   own, reads or writes a page, taking its own copy-on-write faults;
//! * `DevServe` and `DevAccess` (with `Config::devices`): a secondary MMU
//!   bound to `A` serves an invalidation a CPU posted it, or reads or
//!   writes a page of `A` through its own cache (the `device` submodule);
//! * the reclaimer's steps (a kernel thread with `Script::Reclaim`, and
//!   `Config::swap_slots`): one batch of the kernel's `space::reclaim`,
//!   each page taken by a `Call::Reclaim` operation (the `reclaim`
//!   submodule); a fault on a swap entry reads the page back.
//!
//! An exit is `space::switch::leave_dying`, then the count of users drops;
//! whoever drops the last reference (the last thread, the reaper, the
//! adopter, or the reclaimer once its batch ran) runs the teardown
//! operation and releases the ASID, as `mm::user` does.
//!
//! Checked in every state: the machine's invariants (no usable entry
//! leading to a frame that is not a live page or table of the running mm;
//! no walk, cached or in flight, through a freed table; a TTBR0 load is
//! checked at once, as a walk may start from it before the kernel's next
//! instruction) and break-before-make (no TLB holds an entry of `A`'s ASID
//! that disagrees with a valid descriptor of `A`'s tables). Checked on
//! every user write: it does not reach a frame shared copy-on-write
//! (outside a fork's own window, from its first write-protect until its
//! flush completes, when a write is simply earlier than the fork). Checked
//! when an operation returns successfully (`TLBEmptyInvalPTE`): no CPU
//! holds a translation of the pages it covered that existed when it
//! started and that the tables no longer have, nor a writable one they no
//! longer grant.
//!
//! A flush that is not broadcast may leave a CPU that does not run `A` (a
//! lazy one, or one on another mm) with stale entries of `A`: the protocol
//! marks it behind (`Mm::cpu_gen` < `Mm::tlb_gen`) and it flushes before it
//! runs `A` again. Such a CPU is *excused*: its leaf entries of `A` are not
//! checked (its walk-cache entries are, while its TTBR0 holds `A`) until it
//! runs `A` or catches up. A CPU that runs `A` (a thread of it, or the
//! adopter) is never excused, nor one the protocol believes current. With
//! [`Checks::OtherMmOnly`] only the damage counts: entries usable under a
//! CPU's TTBR0 that lead into another mm's frames; with
//! [`Checks::UsedOnly`], only those of CPUs running user code, and user
//! accesses through a stale entry.
//!
//! Frames carry ghost owner tags, recomputed after every action from what
//! each address space's tables reach (`A` first, then the child, `B` and
//! the others); a frame reachable from none keeps its tag (it is held by a
//! gather or a copy-on-write step until its flush completes).
#![allow(unsafe_code)] // Mm::snapshot, hash_state and peek, DevTlb::translate: the model is single-threaded

mod device;
mod reclaim;

use core::cell::{Cell, RefCell};
use core::fmt::Write as _;
use core::hash::{Hash, Hasher};
use core::ops::Range;
use std::rc::Rc;

use abi::{advice, map, prot};
use kernel::mm::asid::{AsidAllocator, Bugs as AsidBugs};
use kernel::mm::aspace::{Access, AddressSpace};
use kernel::mm::pagetable::{el0_can_write, Reduced};
use kernel::mm::pte::PAGE_SIZE;
use kernel::mm::space::{shootdown, switch, Call, Hook, Mm, Op, OpError, Outcome, Pc, Served, Step, Then, TlbConfig};
use kernel::mm::tlb::{PolicyParams, TlbFeatures};

use super::bridge::{Bridge, HwBugs};
use super::explore::System;
use super::machine::{Ipi, Machine};
use super::mem::{pa_of, pfn_of, Desc, Format, FrameUse, Memory, MmTag, Pfn};
use super::tlb::Entry;
use super::violation::Violation;

/// The entries a TLB lookup hit (frame, writable) and the frames of the
/// writable ones.
type TlbHits = (Vec<(Pfn, bool)>, Vec<Pfn>);

pub const A: MmTag = 1;
pub const B: MmTag = 2;
pub const CHILD: MmTag = 3;
/// Tag of frames no address space owns (frame 0).
pub const NOBODY: MmTag = 0;
/// Tag of the first empty address space (the others follow).
pub const OTHER: MmTag = 4;

/// Slots of [`World`]'s address spaces: `A`, `B`, then the empty ones.
pub const SLOT_A: usize = 0;
pub const SLOT_B: usize = 1;

const RW: u64 = prot::READ | prot::WRITE;

/// The virtual address of model page `vpn`.
pub fn va(vpn: u64) -> u64 {
    vpn * PAGE_SIZE
}

/// A call a thread's script makes on `A` (pages `[lo, hi)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Script {
    Munmap {
        lo: u64,
        hi: u64,
    },
    /// `MADV_DONTNEED`.
    Madvise {
        lo: u64,
        hi: u64,
    },
    /// To read-only.
    Mprotect {
        lo: u64,
        hi: u64,
    },
    /// Read-write, `MAP_FIXED`: replaces what was there.
    MmapFixed {
        lo: u64,
        hi: u64,
    },
    /// Read-write with `lo` as the hint: lands there when the range is free.
    Mmap {
        lo: u64,
        hi: u64,
    },
    Fork,
    /// This thread exits.
    Exit,
    /// The reaper (a kernel thread) takes `A`'s memory.
    Reap,
    /// A kernel thread adopts `A` (use_mm): it then reads and writes `A`'s
    /// pages as a user thread does.
    Adopt,
    /// The adopter gives `A` back.
    Unadopt,
    /// A kernel thread reclaims `A`'s pages `[lo, hi)` in one batch (those
    /// `A` maps, and alone: see the `reclaim` submodule).
    Reclaim {
        lo: u64,
        hi: u64,
    },
    /// Read-write, `MAP_FIXED` with the size flags `flags` (`map::HUGE`,
    /// `map::CONT`): first touches map whole blocks or runs.
    MmapSized {
        lo: u64,
        hi: u64,
        flags: u64,
    },
    /// `MADV_COLLAPSE`: the level-3 tables of the block-aligned regions in
    /// `[lo, hi)` become blocks.
    Collapse {
        lo: u64,
        hi: u64,
    },
}

impl Script {
    fn call(self) -> Option<Call> {
        let len = |lo: u64, hi: u64| (hi - lo) * PAGE_SIZE;
        Some(match self {
            Script::Munmap { lo, hi } => Call::Munmap { addr: va(lo), len: len(lo, hi) },
            Script::Madvise { lo, hi } => Call::Madvise { addr: va(lo), len: len(lo, hi), advice: advice::DONTNEED },
            Script::Mprotect { lo, hi } => Call::Mprotect { addr: va(lo), len: len(lo, hi), prot: prot::READ },
            Script::MmapFixed { lo, hi } => Call::Mmap { addr: va(lo), len: len(lo, hi), prot: RW, flags: map::FIXED },
            Script::Mmap { lo, hi } => Call::Mmap { addr: va(lo), len: len(lo, hi), prot: RW, flags: 0 },
            Script::MmapSized { lo, hi, flags } => {
                Call::Mmap { addr: va(lo), len: len(lo, hi), prot: RW, flags: map::FIXED | flags }
            }
            Script::Collapse { lo, hi } => Call::Madvise { addr: va(lo), len: len(lo, hi), advice: advice::COLLAPSE },
            Script::Fork => Call::Fork,
            Script::Reap => Call::Reap,
            Script::Exit | Script::Adopt | Script::Unadopt | Script::Reclaim { .. } => return None,
        })
    }

    /// The pages whose translations the call changes.
    fn covered(self, pages: u64) -> Range<u64> {
        match self {
            Script::Munmap { lo, hi }
            | Script::Madvise { lo, hi }
            | Script::Mprotect { lo, hi }
            | Script::MmapFixed { lo, hi }
            | Script::Mmap { lo, hi }
            | Script::MmapSized { lo, hi, .. }
            | Script::Collapse { lo, hi } => lo..hi,
            Script::Fork | Script::Reap => 0..pages,
            // Reclaim promises nothing about pages it did not take; what it
            // took is checked as its frames are freed.
            Script::Exit | Script::Adopt | Script::Unadopt | Script::Reclaim { .. } => 0..0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speculation {
    /// Only when the checker schedules a `Speculate` action.
    Scheduled,
    /// After every action, everything reachable: fills only add entries and
    /// every check only gets harder with more, so this covers every
    /// schedule of fills with far fewer states.
    Eager,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checks {
    All,
    /// Only entries usable under a CPU's TTBR0 that lead into another mm's
    /// frame (on a CPU that is not excused): the damage itself, not what
    /// enables it.
    OtherMmOnly,
    /// Only what user code uses: [`Self::OtherMmOnly`] on CPUs that run
    /// user code of the mm their TTBR0 holds (a lazy CPU makes no user
    /// access), and every user access (which is always checked), but not
    /// TLBEmptyInvalPTE.
    UsedOnly,
}

#[derive(Clone, Debug)]
pub struct Config {
    /// CPUs: thread `t` (of `scripts`) starts on CPU `t`; CPUs beyond the
    /// scripts run kernel threads with nothing to do.
    pub ncpus: usize,
    pub format: Format,
    /// Pages `A` maps and has faulted in at the start (each read-write;
    /// page 0 stays unmapped, as `mmap(MAP_FIXED)` refuses address 0).
    pub pages: Vec<u64>,
    /// Pages user threads access (default: `pages`).
    pub touch: Vec<u64>,
    /// Per thread, the calls it makes in order. A script with `Reap` is the
    /// reaper's, one with `Adopt` the adopter's (kernel threads, which stay
    /// on their CPUs); every other one is a thread of `A`.
    pub scripts: Vec<Vec<Script>>,
    /// User accesses include writes.
    pub writes: bool,
    /// Page faults user accesses may take in a run.
    pub faults: u8,
    /// Pages `B` may fault in (each once).
    pub b_pages: Vec<u64>,
    /// Empty address spaces (a root table each) CPUs may switch to.
    pub others: usize,
    /// Context switches to `B` or the empty address spaces in a run.
    pub switches: u8,
    /// Times in a run a thread is switched out for a kernel thread (`Idle`).
    pub idles: u8,
    /// Times in a run a thread of `A` is scheduled on a CPU other than the
    /// one it ran on last.
    pub migrations: u8,
    /// CPUs without a thread that start lazy on `A` (a thread of `A` ran
    /// there, and a kernel thread runs now).
    pub lazy_cpus: Vec<usize>,
    pub asid_bits: u32,
    pub spare_frames: usize,
    pub speculation: Speculation,
    /// The protocol's configuration: policy, features, the switches users
    /// set on the command line, the gather's batch, and injected bugs.
    pub tlb: TlbConfig,
    /// Bugs of the sequences `arch` implements.
    pub hw: HwBugs,
    pub checks: Checks,
    /// States where every script is done are not expanded (for random
    /// walks: each such state ends an episode and the walk restarts).
    pub stop_when_done: bool,
    /// The fork child runs, on a CPU of its own (one more than `ncpus`):
    /// it reads and writes its pages (its copy-on-write faults within the
    /// fault budget) and leaves before it exits.
    pub child_runs: bool,
    /// `A` has never run: its threads start on `B` and activate `A` (its
    /// first ASID) when they are scheduled onto it.
    pub a_first_run: bool,
    /// Secondary MMUs bound to `A` from the start (the `device` submodule).
    pub devices: usize,
    /// Pages of `A` the devices access (`Config::pages` sets it too).
    pub dev_touch: Vec<u64>,
    /// Device accesses include writes.
    pub dev_writes: bool,
    /// Swap slots (for `Script::Reclaim`).
    pub swap_slots: usize,
    /// Ranges of pages `[lo, hi)` `A` maps at the start with one mmap each,
    /// with the size flags given (`map::HUGE`, `map::CONT`, or 0: one
    /// mapping, as `madvise(COLLAPSE)` needs); `pages` among them are
    /// faulted in as the flags make them (a whole block or run at the first
    /// touch of one).
    pub sized: Vec<(u64, u64, u64)>,
    /// The model CPUs implement FEAT_BBM level 2 (`Machine::set_bbm2`).
    pub bbm2: bool,
}

impl Config {
    /// `scripts.len()` CPUs, a 3-level table of 2-entry tables (8 pages),
    /// `A` mapping pages 2, 3 and 4 (pages 2-3 and 4 in two leaf tables
    /// under two level-1 tables), `B` free to fault in pages 1 and 6, no
    /// context switches, FEAT_TLBIRANGE and FEAT_TTL with the default
    /// policy, batches of 2 frames, eager speculation, no faults, no bugs.
    pub fn new(scripts: Vec<Vec<Script>>) -> Self {
        let mut tlb = TlbConfig::new(PolicyParams::DEFAULT, TlbFeatures::RANGE_AND_TTL);
        tlb.batch = 2;
        Config {
            ncpus: scripts.len(),
            format: Format { levels: 3, fanout: 2 },
            pages: vec![2, 3, 4],
            touch: vec![2, 3, 4],
            scripts,
            writes: false,
            faults: 0,
            b_pages: vec![1, 6],
            others: 0,
            switches: 0,
            idles: 0,
            migrations: 0,
            lazy_cpus: Vec::new(),
            asid_bits: 4,
            spare_frames: 3,
            speculation: Speculation::Eager,
            tlb,
            hw: HwBugs::default(),
            checks: Checks::All,
            stop_when_done: false,
            child_runs: false,
            a_first_run: false,
            devices: 0,
            dev_touch: vec![2, 3, 4],
            dev_writes: false,
            swap_slots: 0,
            sized: Vec::new(),
            bbm2: false,
        }
    }

    /// `pages` for what `A` maps and what its threads and devices touch.
    pub fn pages(mut self, pages: &[u64]) -> Self {
        self.pages = pages.to_vec();
        self.touch = pages.to_vec();
        self.dev_touch = pages.to_vec();
        self
    }
}

/// What the search saw happen, summed over every transition (clones share
/// it). Its `Debug` lists the counters that are not zero.
#[derive(Default)]
pub struct Coverage {
    pub returns: Cell<u64>,
    /// Frames freed.
    pub frees: Cell<u64>,
    /// `B` faulted a page into a frame `A` used before.
    pub reuses: Cell<u64>,
    pub zero_fills: Cell<u64>,
    pub cow_copies: Cell<u64>,
    pub cow_reuses: Cell<u64>,
    /// A gather flushed a full batch in the middle of a zap.
    pub partial_batches: Cell<u64>,
    pub rollovers: Cell<u64>,
    /// A rollover while an operation on `A` was in progress.
    pub rollovers_in_op: Cell<u64>,
    /// A thread of `A` left it while a zap of `A` was in flight.
    pub exits_during_zap: Cell<u64>,
    pub child_exits: Cell<u64>,
    /// Reads and writes the running child made through its TLB.
    pub child_accesses: Cell<u64>,
    /// Faults the running child took.
    pub child_faults: Cell<u64>,
    /// A zap of `A` reached its flush while `A` had no ASID.
    pub flushes_never_active: Cell<u64>,
    /// A thread of `A` ran on a CPU other than the one it ran on last.
    pub migrations: Cell<u64>,
    /// A CPU went lazy on `A` (`switch::enter_lazy`).
    pub lazy_entries: Cell<u64>,
    /// A CPU lazy on `A` ran `A` again (`switch::leave_lazy`).
    pub lazy_returns: Cell<u64>,
    /// Shootdown requests served, and how many of them made a lazy CPU
    /// leave (`Served::Left`).
    pub serves: Cell<u64>,
    pub lefts: Cell<u64>,
    /// The adopter loaded `A`, and accessed its pages.
    pub adoptions: Cell<u64>,
    pub adopter_accesses: Cell<u64>,
    /// Device accesses through a cached entry, and through a walk and a
    /// fill (`DevAccess::Hit`, `Filled`); of those, writes.
    pub dev_hits: Cell<u64>,
    pub dev_fills: Cell<u64>,
    pub dev_writes: Cell<u64>,
    /// Device accesses refused while an invalidate-range was open
    /// (`DevAccess::Retry`), or that found no valid entry (`Fault`).
    pub dev_retries: Cell<u64>,
    pub dev_faults: Cell<u64>,
    /// Invalidations devices served, the cached entries they dropped, and
    /// among them those of a whole ASID (a racing call's) and the releases.
    pub dev_serves: Cell<u64>,
    pub dev_drops: Cell<u64>,
    pub dev_whole_asid: Cell<u64>,
    pub dev_releases: Cell<u64>,
    /// Pages the reclaimer unmapped (its TLBI issued, no DSB), batches it
    /// ran to the end, and pages faulted back in from swap.
    pub reclaim_unmaps: Cell<u64>,
    pub reclaim_batches: Cell<u64>,
    pub swap_ins: Cell<u64>,
    /// User accesses that hit a block's or a contiguous run's entry.
    pub large_hits: Cell<u64>,
}

impl core::fmt::Debug for Coverage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let all = [
            ("returns", &self.returns),
            ("frees", &self.frees),
            ("reuses", &self.reuses),
            ("zero_fills", &self.zero_fills),
            ("cow_copies", &self.cow_copies),
            ("cow_reuses", &self.cow_reuses),
            ("partial_batches", &self.partial_batches),
            ("rollovers", &self.rollovers),
            ("rollovers_in_op", &self.rollovers_in_op),
            ("exits_during_zap", &self.exits_during_zap),
            ("child_exits", &self.child_exits),
            ("child_accesses", &self.child_accesses),
            ("child_faults", &self.child_faults),
            ("flushes_never_active", &self.flushes_never_active),
            ("migrations", &self.migrations),
            ("lazy_entries", &self.lazy_entries),
            ("lazy_returns", &self.lazy_returns),
            ("serves", &self.serves),
            ("lefts", &self.lefts),
            ("adoptions", &self.adoptions),
            ("adopter_accesses", &self.adopter_accesses),
            ("dev_hits", &self.dev_hits),
            ("dev_fills", &self.dev_fills),
            ("dev_writes", &self.dev_writes),
            ("dev_retries", &self.dev_retries),
            ("dev_faults", &self.dev_faults),
            ("dev_serves", &self.dev_serves),
            ("dev_drops", &self.dev_drops),
            ("dev_whole_asid", &self.dev_whole_asid),
            ("dev_releases", &self.dev_releases),
            ("reclaim_unmaps", &self.reclaim_unmaps),
            ("reclaim_batches", &self.reclaim_batches),
            ("swap_ins", &self.swap_ins),
            ("large_hits", &self.large_hits),
        ];
        write!(f, "coverage")?;
        for (name, c) in all.iter().filter(|(_, c)| c.get() > 0) {
            write!(f, " {name}={}", c.get())?;
        }
        Ok(())
    }
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// What a thread is doing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Work {
    /// A call (or a fault) on `A`, in progress.
    Op(Op<Reduced>),
    /// Exit: leave `A` for good.
    Leave,
    /// Exit: count out of `A`'s users.
    CountOut,
    /// The last reference to `A` is gone: its teardown.
    Teardown(Op<Reduced>),
    /// Adopt: count in `A`'s users (unless `tlb.use_mm_mmget` is off).
    AdoptCount,
    /// Adopt: a full barrier, then `A` is loaded here (`switch_to`).
    AdoptLoad,
    /// Unadopt: this CPU leaves `A` (`switch::deactivate`).
    Unadopt,
    /// Unadopt: a full barrier, then count out of `A`'s users.
    UnadoptCount,
    /// `Script::Reclaim`: a batch being collected or run.
    Reclaim(Box<reclaim::Reclaiming>),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Task {
    work: Work,
    /// The pages the call covers, and every translation of them that
    /// existed when it started (page, frame, writable).
    covered: Range<u64>,
    old: Vec<(u64, Pfn, bool)>,
    /// Once the call dropped the mm lock (its changes made): every
    /// translation of the covered pages the tables have held since, the
    /// call's own result first. Other calls may change the pages after it,
    /// and a frame freed and allocated again may make an old translation
    /// anew: an entry that agrees with one of these is not the call's to
    /// remove.
    since: Option<Vec<(u64, Pfn, bool)>>,
}

impl Task {
    fn new(work: Work, covered: Range<u64>, old: Vec<(u64, Pfn, bool)>) -> Self {
        Task { work, covered, old, since: None }
    }
}

/// A scripted thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Thread {
    /// A thread of `A` (else a kernel thread: the reaper or the adopter,
    /// which stays on its CPU).
    user: bool,
    /// Next call of the script.
    next: usize,
    task: Option<Task>,
    /// The thread of `A` exited.
    gone: bool,
    /// The adopter holds `A` (from its `Adopt` until its `Unadopt`).
    adopted: bool,
    /// The CPU it ran on last.
    last: usize,
}

/// What a CPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Runs {
    /// A scripted thread.
    Thread(usize),
    /// A thread of the address space in this slot (not `A`), unscripted.
    Other(usize),
    /// A kernel thread with nothing scripted: lazy on what TTBR0 holds.
    Idle,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cpu {
    runs: Runs,
    /// The address space loaded here (a slot), lazily or not: the kernel's
    /// per-CPU record (`mm::user`'s `LOADED`).
    on: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Start {
        cpu: usize,
        call: Script,
    },
    Step {
        cpu: usize,
        pc: Pc,
    },
    Read {
        cpu: usize,
        vpn: u64,
    },
    Write {
        cpu: usize,
        vpn: u64,
    },
    Speculate {
        cpu: usize,
    },
    /// A thread of the address space in slot `to` (not `A`) runs on `cpu`;
    /// on a kernel thread's CPU, for a while, and the kernel thread runs
    /// again (lazy on `to`).
    Switch {
        cpu: usize,
        to: usize,
    },
    /// The thread on `cpu` is switched out for a kernel thread.
    Idle {
        cpu: usize,
    },
    /// The waiting thread `thread` of `A` runs on `cpu`.
    Schedule {
        cpu: usize,
        thread: usize,
    },
    /// `cpu` serves the shootdown request `from` sent it.
    Serve {
        cpu: usize,
        from: usize,
    },
    MapB {
        vpn: u64,
    },
    ChildExit,
    /// The running child reads or writes a page (`Config::child_runs`).
    ChildAccess {
        vpn: u64,
        write: bool,
    },
    /// Device `dev` serves the oldest invalidation CPU `from` posted it.
    DevServe {
        dev: usize,
        from: usize,
    },
    /// Device `dev` reads or writes page `vpn` of `A`.
    DevAccess {
        dev: usize,
        vpn: u64,
        write: bool,
    },
}

/// One state of the model system.
pub struct World {
    cfg: Rc<Config>,
    coverage: Rc<Coverage>,
    machine: RefCell<Machine>,
    alloc: AsidAllocator,
    /// `A`, `B`, then the empty ones.
    mms: Vec<Mm<Reduced>>,
    /// The fork child, once a fork returned.
    child: Option<Mm<Reduced>>,
    /// The child is loaded on its CPU (`Config::child_runs`).
    child_on: bool,
    threads: Vec<Thread>,
    cpus: Vec<Cpu>,
    /// The reaper holds a reference to `A`.
    reaper: bool,
    /// The adopter holds a reference to `A` (until its script is done).
    adopter: bool,
    /// The reaper marked `A`'s process killed.
    killed: bool,
    /// `A` was torn down and its ASID released.
    a_dead: bool,
    faults: u8,
    switches: u8,
    idles: u8,
    migrations: u8,
    b_mapped: u32,
    /// Frames `A` was built from (the lowest ones).
    a_frames: Pfn,
}

impl Clone for World {
    fn clone(&self) -> Self {
        // SAFETY: the model is single-threaded: nothing uses these mms
        // while they are copied.
        let snap = |m: &Mm<Reduced>| unsafe { m.snapshot() };
        World {
            cfg: self.cfg.clone(),
            coverage: self.coverage.clone(),
            machine: self.machine.clone(),
            alloc: self.alloc.clone(),
            mms: self.mms.iter().map(snap).collect(),
            child: self.child.as_ref().map(snap),
            child_on: self.child_on,
            threads: self.threads.clone(),
            cpus: self.cpus.clone(),
            reaper: self.reaper,
            adopter: self.adopter,
            killed: self.killed,
            a_dead: self.a_dead,
            faults: self.faults,
            switches: self.switches,
            idles: self.idles,
            migrations: self.migrations,
            b_mapped: self.b_mapped,
            a_frames: self.a_frames,
        }
    }
}

impl Hash for World {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.machine.borrow().hash(h);
        self.alloc.hash(h);
        for m in self.mms.iter().chain(&self.child) {
            // SAFETY: single-threaded, as in `clone`.
            unsafe { m.hash_state(h) };
        }
        (self.child.is_some(), self.child_on).hash(h);
        self.threads.hash(h);
        self.cpus.hash(h);
        (self.reaper, self.adopter, self.killed, self.a_dead, self.faults).hash(h);
        (self.switches, self.idles, self.migrations, self.b_mapped).hash(h);
    }
}

/// The page-table format the kernel's code runs with here.
pub fn reduced(f: Format) -> Reduced {
    f.reduced()
}

/// Runs `op` on `mm` to its end for a caller nothing else interleaves with
/// (setup, `B`, the child): a step that would wait is a bug of the model.
fn run_alone(mm: &Mm<Reduced>, op: &mut Op<Reduced>, cfg: &TlbConfig, hw: &Bridge<'_>) {
    loop {
        match op.step(mm, cfg, hw, hw) {
            Step::Ran | Step::Hook(_) => {}
            Step::Blocked => panic!("{:?} of mm{} waits at {:?} with nothing else running", op.call(), mm.id, op.pc()),
            Step::Done => return,
        }
    }
}

impl World {
    pub fn new(cfg: Config) -> Self {
        assert!(cfg.scripts.len() <= cfg.ncpus, "a CPU per thread");
        assert!(cfg.format.pages() <= 32, "page masks are u32");
        assert!(!cfg.pages.contains(&0) && !cfg.b_pages.contains(&0), "page 0 cannot be mapped");
        assert!(cfg.lazy_cpus.iter().all(|&c| (cfg.scripts.len()..cfg.ncpus).contains(&c)), "lazy CPUs run no thread");
        // Enough frames for everything the setup builds, then the spares.
        // (Blocks and runs need aligned runs of frames: room for the gaps.)
        let setup = 2 + cfg.pages.len() * cfg.format.levels as usize + 1 + cfg.others + 2 * cfg.sized.len();
        // The running child gets a CPU of its own after the scripted ones.
        let cpus = cfg.ncpus + cfg.child_runs as usize;
        let machine = RefCell::new(Machine::new(cpus, cfg.format, setup + cfg.spare_frames));
        if cfg.child_runs {
            // Frames the child shares with `A` are tagged `A`'s.
            machine.borrow_mut().share_cow(CHILD, A);
        }
        // Physical address 0 is the kernel's "no tables" (a torn-down
        // address space's root): frame 0 stands for memory that is not RAM.
        machine.borrow_mut().mem_mut().alloc(FrameUse::Data { mm: NOBODY });
        machine.borrow_mut().mem_mut().set_swap(cfg.swap_slots);
        let alloc = AsidAllocator::new(cfg.asid_bits, cpus, AsidBugs::NONE).expect("ASID width for the CPUs");
        let mut tlb = cfg.tlb;
        tlb.bugs = Default::default(); // the setup is not under test
        let mut mms = Vec::new();
        machine.borrow_mut().set_bbm2(cfg.bbm2);
        let mut new_mm = |tag: MmTag, pages: &[u64], fault: bool| {
            let hw = Bridge::new(&machine, 0, tag);
            let mm = Mm::new(tag as u64, AddressSpace::new_in(reduced(cfg.format), &hw).expect("frames for a root"));
            let sized: &[(u64, u64, u64)] = if tag == A { &cfg.sized } else { &[] };
            for &(lo, hi, flags) in sized {
                let call = Call::Mmap { addr: va(lo), len: (hi - lo) * PAGE_SIZE, prot: RW, flags: map::FIXED | flags };
                let mut op = Op::new(call, &tlb);
                run_alone(&mm, &mut op, &tlb, &hw);
                assert_eq!(op.outcome(), Ok(Outcome::Addr(va(lo))), "setup mmap of pages {lo}..{hi}");
            }
            for &vpn in pages {
                if !sized.iter().any(|&(lo, hi, _)| (lo..hi).contains(&vpn)) {
                    let call = Call::Mmap { addr: va(vpn), len: PAGE_SIZE, prot: RW, flags: map::FIXED };
                    let mut op = Op::new(call, &tlb);
                    run_alone(&mm, &mut op, &tlb, &hw);
                    assert_eq!(op.outcome(), Ok(Outcome::Addr(va(vpn))), "setup mmap of page {vpn}");
                }
                if fault {
                    let mut op = Op::new(Call::Fault { va: va(vpn), access: Access::Write }, &tlb);
                    run_alone(&mm, &mut op, &tlb, &hw);
                    assert!(
                        matches!(op.outcome(), Ok(Outcome::Fault(_))),
                        "setup fault of page {vpn}: {:?}",
                        op.outcome()
                    );
                }
            }
            mms.push(mm);
        };
        new_mm(A, &cfg.pages, true);
        let a_frames = {
            let m = machine.borrow();
            (m.mem().frames() - m.mem().free_frames()) as Pfn
        };
        new_mm(B, &cfg.b_pages, false);
        for i in 0..cfg.others {
            new_mm(OTHER + i as MmTag, &[], false);
        }
        let kernel_thread =
            |s: &[Script]| s.iter().any(|c| matches!(c, Script::Reap | Script::Adopt | Script::Reclaim { .. }));
        let threads = (0..cfg.scripts.len())
            .map(|t| Thread {
                user: !kernel_thread(&cfg.scripts[t]),
                next: 0,
                task: None,
                gone: false,
                adopted: false,
                last: t,
            })
            .collect::<Vec<_>>();
        let adopter = cfg.scripts.iter().any(|s| s.contains(&Script::Adopt));
        let mut w = World {
            coverage: Rc::default(),
            machine,
            alloc,
            mms,
            child: None,
            child_on: false,
            threads,
            cpus: vec![Cpu { runs: Runs::Idle, on: None }; cfg.ncpus],
            reaper: false,
            adopter,
            killed: false,
            a_dead: false,
            faults: cfg.faults,
            switches: cfg.switches,
            idles: cfg.idles,
            migrations: cfg.migrations,
            b_mapped: 0,
            a_frames,
            cfg: Rc::new(cfg),
        };
        let mut users = 0;
        for t in 0..w.threads.len() {
            if !w.threads[t].user {
                w.cpus[t].runs = Runs::Thread(t);
            } else if w.cfg.a_first_run {
                // A thread of `B` runs; `A`'s waits to be scheduled here.
                w.cpus[t].runs = Runs::Other(SLOT_B);
                w.switch_to(t, Some(SLOT_B));
                users += 1;
            } else {
                w.cpus[t].runs = Runs::Thread(t);
                w.switch_to(t, Some(SLOT_A));
                users += 1;
            }
        }
        for c in w.cfg.lazy_cpus.clone() {
            w.switch_to(c, Some(SLOT_A));
            w.switch_to(c, None);
        }
        w.mms[SLOT_A].users.store(users, core::sync::atomic::Ordering::Relaxed);
        w.bind_devices();
        w.machine.get_mut().reset_stats();
        w.coverage = Rc::default();
        // Scheduled speculation starts cold (warm states are reachable
        // through `Speculate`); eager speculation fills at once.
        if w.cfg.speculation == Speculation::Eager {
            w.fill_all();
        }
        w
    }

    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// The machine (its statistics count every TLBI and DSB since setup).
    pub fn machine(&self) -> std::cell::Ref<'_, Machine> {
        self.machine.borrow()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn a(&self) -> &Mm<Reduced> {
        &self.mms[SLOT_A]
    }

    fn tag(slot: usize) -> MmTag {
        match slot {
            SLOT_A => A,
            SLOT_B => B,
            n => OTHER + (n - 2) as MmTag,
        }
    }

    /// The address space with `Mm::id` `id`, and its slot (none for the child).
    fn mm_by_id(&self, id: u64) -> (Option<usize>, &Mm<Reduced>) {
        match id as MmTag {
            CHILD => (None, self.child.as_ref().expect("a request for the child, which lives")),
            A => (Some(SLOT_A), &self.mms[SLOT_A]),
            B => (Some(SLOT_B), &self.mms[SLOT_B]),
            n => {
                let slot = (n - OTHER) as usize + 2;
                (Some(slot), &self.mms[slot])
            }
        }
    }

    /// The thread running on `cpu`, if a scripted one.
    fn thread_on(&self, cpu: usize) -> Option<usize> {
        match self.cpus.get(cpu)?.runs {
            Runs::Thread(t) => Some(t),
            _ => None,
        }
    }

    /// Whether thread `t` runs on some CPU.
    fn running(&self, t: usize) -> bool {
        self.cpus.iter().any(|c| c.runs == Runs::Thread(t))
    }

    /// `A`'s root table, unless its teardown took it.
    fn a_root(&self) -> Option<Pfn> {
        // SAFETY: single-threaded; the reference does not outlive this call.
        let pa = unsafe { self.a().peek() }.root_pa();
        (pa != 0).then(|| pfn_of(pa))
    }

    /// `A`'s current leaf for `vpn`: frame and whether EL0 may write.
    fn a_leaf(&self, vpn: u64) -> Option<(Pfn, bool)> {
        let root = self.a_root()?;
        let m = self.machine.borrow();
        let (p, raw, _) = m.mem().lookup(root, vpn)?;
        Some((p, el0_can_write(raw)))
    }

    /// `A`'s ASID, while it has one and lives.
    fn a_asid(&self) -> Option<u16> {
        if self.a_dead {
            return None;
        }
        self.a().ctx.asid()
    }

    fn fill_all(&mut self) {
        let m = self.machine.get_mut();
        for cpu in 0..m.ncpus() {
            m.speculate(cpu);
        }
    }

    /// Every translation of `pages` that exists now: in `A`'s tables, in
    /// any CPU's TLB and in any device's cache.
    fn snapshot(&self, pages: Range<u64>) -> Vec<(u64, Pfn, bool)> {
        let mut old = self.dev_translations(&pages);
        let m = self.machine.borrow();
        for vpn in pages {
            if let Some((p, w)) = self.a_leaf(vpn) {
                old.push((vpn, p, w));
            }
            for cpu in 0..m.ncpus() {
                for e in m.tlb(cpu).entries().iter().filter(|e| e.mm() == A) {
                    if let Some((pfn, writable)) = e.translate(vpn) {
                        old.push((vpn, pfn, writable));
                    }
                }
            }
        }
        old.sort_unstable();
        old.dedup();
        old
    }

    /// The address space (a slot) whose user code runs on `cpu` now, out of
    /// the one TTBR0 holds: a live thread of `A` or the adopter holding
    /// `A`, or a thread of another one. `None` for a kernel thread (lazy
    /// on what TTBR0 holds, if anything) and the child's CPU.
    fn user_slot(&self, cpu: usize) -> Option<usize> {
        let c = self.cpus.get(cpu)?;
        match c.runs {
            Runs::Thread(t) => {
                let th = &self.threads[t];
                (((th.user && !th.gone) || th.adopted) && c.on == Some(SLOT_A)).then_some(SLOT_A)
            }
            Runs::Other(s) => (c.on == Some(s)).then_some(s),
            Runs::Idle => None,
        }
    }

    /// `cpu` runs user code of `A` (a thread of it, or the adopter).
    fn runs_a(&self, cpu: usize) -> bool {
        self.user_slot(cpu) == Some(SLOT_A)
    }

    /// `cpu` may hold stale entries of `A` now: it does not run `A`, and
    /// `A`'s flush generation marks it behind (it flushes the ASID before
    /// it runs `A` again). The child's CPU never holds `A`'s entries.
    fn excused(&self, cpu: usize) -> bool {
        if cpu >= self.cpus.len() || self.runs_a(cpu) {
            return false;
        }
        let a = self.a();
        let order = core::sync::atomic::Ordering::Relaxed;
        a.cpu_gen[cpu].load(order) < a.tlb_gen.load(order)
    }

    /// The translations `A`'s tables hold for `pages` now.
    fn leaves(&self, pages: Range<u64>) -> Vec<(u64, Pfn, bool)> {
        pages.filter_map(|v| self.a_leaf(v).map(|(p, w)| (v, p, w))).collect()
    }

    /// Adds what the tables hold now to `since` of every call that has
    /// dropped the lock and not returned.
    fn note_since(&mut self) {
        for t in 0..self.threads.len() {
            let Some(task) = &self.threads[t].task else { continue };
            if task.since.is_none() {
                continue;
            }
            let now = self.leaves(task.covered.clone());
            let since = self.threads[t].task.as_mut().and_then(|t| t.since.as_mut()).expect("a call's since");
            for l in now {
                if let Err(i) = since.binary_search(&l) {
                    since.insert(i, l);
                }
            }
        }
    }

    /// TLBEmptyInvalPTE when a call returns: no CPU, unless excused, holds
    /// a translation of the covered pages, under `A`'s ASID, that existed
    /// when the call started and that the tables have not held since the
    /// call made its changes (with write access, for a writable one); see
    /// `Task::since`. Not with [`Checks::UsedOnly`].
    fn returned(&self, task: &Task) -> Result<(), Violation> {
        let Some(asid) = self.a_asid() else { return Ok(()) };
        if self.cfg.checks == Checks::UsedOnly {
            return Ok(());
        }
        let now;
        let since = match &task.since {
            Some(s) => s,
            None => {
                now = self.leaves(task.covered.clone());
                &now
            }
        };
        let m = self.machine.borrow();
        for vpn in task.covered.clone() {
            for cpu in (0..m.ncpus()).filter(|&c| !self.excused(c)) {
                for e in m.tlb(cpu).entries().iter().filter(|e| e.mm() == A && e.asid() == asid) {
                    let Some((pfn, writable)) = e.translate(vpn) else { continue };
                    let agrees = since.iter().any(|&(sv, sp, sw)| sv == vpn && sp == pfn && (sw || !writable));
                    if !agrees && task.old.contains(&(vpn, pfn, writable)) {
                        return Err(Violation::TlbEmptyInvalPte { cpu, mm: A, vpn, asid });
                    }
                }
            }
        }
        drop(m);
        self.dev_returned(task, asid, since)
    }

    /// Break-before-make: no TLB, unless excused, holds an entry of `A`'s
    /// ASID that a valid descriptor of `A`'s tables now contradicts.
    fn break_before_make(&self) -> Result<(), Violation> {
        let (Some(asid), Some(root)) = (self.a_asid(), self.a_root()) else { return Ok(()) };
        let m = self.machine.borrow();
        let mem = m.mem();
        for cpu in (0..m.ncpus()).filter(|&c| !self.excused(c)) {
            for e in m.tlb(cpu).entries() {
                match *e {
                    // Each page a leaf entry covers (a block's, a run's).
                    Entry::Leaf { asid: a, mm: A, .. } if a == asid => {
                        for (vpn, cached, _) in e.pages() {
                            let Some((current, _, _)) = mem.lookup(root, vpn) else { continue };
                            if current != cached {
                                return Err(Violation::BreakBeforeMake {
                                    cpu,
                                    mm: A,
                                    asid,
                                    vpn,
                                    level: None,
                                    cached,
                                    current,
                                });
                            }
                        }
                    }
                    // A table where a block is now (a collapse) disagrees too.
                    Entry::Walk { asid: a, level, region, table, mm: A } if a == asid => {
                        let current = match mem.desc_at(root, level, region) {
                            Some(Desc::Page(p) | Desc::Table(p) | Desc::Block(p)) => p,
                            _ => continue,
                        };
                        if current != table {
                            let (vpn, level, cached) = (region, Some(level), table);
                            return Err(Violation::BreakBeforeMake { cpu, mm: A, asid, vpn, level, cached, current });
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Leaf entries usable under a CPU's TTBR0 that lead into another mm's
    /// frame, on CPUs not excused (`users_only`: on CPUs that run user code
    /// of that mm).
    fn other_mm(&self, users_only: bool) -> Result<(), Violation> {
        let m = self.machine.borrow();
        for cpu in 0..m.ncpus() {
            let t = m.ttbr0(cpu);
            let Some(mm) = t.mm else { continue };
            let idle = cpu < self.cpus.len() && self.user_slot(cpu).is_none();
            if self.excused(cpu) || (users_only && idle) {
                continue;
            }
            for e in m.tlb(cpu).entries() {
                let asid = e.asid();
                for (vpn, pfn, _) in e.pages() {
                    let frame = m.mem().use_of(pfn);
                    let owner = match frame {
                        FrameUse::Data { mm } | FrameUse::Table { mm, .. } => Some(mm),
                        FrameUse::Free => None,
                    };
                    if asid == t.asid && owner.is_some_and(|o| o != mm) {
                        return Err(Violation::StaleTranslation { cpu, mm, asid, vpn, pfn, frame });
                    }
                }
            }
        }
        Ok(())
    }

    fn check_state(&self) -> Result<(), Violation> {
        let m = self.machine.borrow();
        if let Some(v) = m.latched() {
            return Err(v.clone());
        }
        match self.cfg.checks {
            Checks::All => {
                let excused = (0..self.cpus.len())
                    .filter(|&c| m.ttbr0(c).mm == Some(A) && self.excused(c))
                    .fold(0, |mask, c| mask | 1 << c);
                m.check_tlbs_excusing(excused)?;
                drop(m);
                self.break_before_make()?;
                self.dev_check(true)
            }
            Checks::OtherMmOnly => {
                drop(m);
                self.other_mm(false)?;
                self.dev_check(false)
            }
            Checks::UsedOnly => {
                drop(m);
                self.other_mm(true)
            }
        }
    }

    /// Owner tags by reachability: `A`'s tables (and the child's while a
    /// fork builds it), the child's, `B`'s, the others'. A data frame `A`
    /// still holds a reference to beyond what its tables show (a
    /// copy-on-write step's old frame) stays `A`'s.
    fn retag(&mut self) {
        let mut roots: Vec<(MmTag, u64)> = Vec::new();
        // SAFETY: single-threaded; the references end in this block.
        unsafe {
            if let Some(r) = self.a_root() {
                roots.push((A, pa_of(r)));
            }
            for th in &self.threads {
                if let Some(Task { work: Work::Op(op), .. }) = &th.task {
                    if let Some(child) = op.child() {
                        roots.push((CHILD, child.root_pa()));
                    }
                }
            }
            if let Some(c) = &self.child {
                roots.push((CHILD, c.peek().root_pa()));
            }
            for (slot, mm) in self.mms.iter().enumerate().skip(1) {
                roots.push((Self::tag(slot), mm.peek().root_pa()));
            }
        }
        let m = self.machine.get_mut();
        let mut seen: Vec<Option<MmTag>> = vec![None; m.mem().frames()];
        let mut links = vec![0u8; seen.len()];
        for &(tag, root) in roots.iter().filter(|r| r.1 != 0) {
            for p in m.mem().reachable(pfn_of(root)) {
                if matches!(m.mem().use_of(p), FrameUse::Data { .. }) {
                    links[p as usize] += 1;
                }
                seen[p as usize].get_or_insert(tag);
            }
        }
        let mem = m.mem_mut();
        for (p, tag) in seen.iter().enumerate() {
            let (p, Some(tag)) = (p as Pfn, *tag) else { continue };
            match mem.use_of(p) {
                FrameUse::Table { level, mm } if mm != tag => mem.reassign(p, FrameUse::Table { mm: tag, level }),
                FrameUse::Data { mm: A } if tag != A && mem.refs(p) > links[p as usize] => {}
                FrameUse::Data { mm } if mm != tag => mem.reassign(p, FrameUse::Data { mm: tag }),
                _ => {}
            }
        }
    }

    fn start(&mut self, cpu: usize, call: Script) {
        let t = self.thread_on(cpu).expect("a thread to start a call");
        self.threads[t].next += 1;
        let covered = call.covered(self.cfg.format.pages());
        let old = self.snapshot(covered.clone());
        let work = match (call, call.call()) {
            (Script::Adopt, _) => Work::AdoptCount,
            (Script::Unadopt, _) => Work::Unadopt,
            (Script::Reclaim { lo, hi }, _) => Work::Reclaim(Box::new(reclaim::Reclaiming::new(lo, hi))),
            (_, None) => Work::Leave,
            (_, Some(c)) => {
                if c == Call::Reap {
                    self.reaper = true;
                }
                Work::Op(Op::new(c, &self.cfg.tlb))
            }
        };
        self.threads[t].task = Some(Task::new(work, covered, old));
    }

    /// `cpu` accesses `vpn` through its TLB (a matching entry, else a walk;
    /// each hit's frame checked): the entries it hit, and the frames of the
    /// writable ones.
    fn tlb_hits(&self, cpu: usize, vpn: u64) -> Result<TlbHits, Violation> {
        let mut m = self.machine.borrow_mut();
        m.access(cpu, vpn)?;
        let asid = m.ttbr0(cpu).asid;
        let mine = || m.tlb(cpu).entries().iter().filter(|e| e.asid() == asid && e.translate(vpn).is_some());
        if mine().any(|e| e.span().count() > 1) {
            inc(&self.coverage.large_hits);
        }
        let hits: Vec<(Pfn, bool)> = mine().filter_map(|e| e.translate(vpn)).collect();
        let writable = hits.iter().filter(|h| h.1).map(|h| h.0).collect();
        Ok((hits, writable))
    }

    /// NoWriteToSharedFrame: a write by `cpu` (running `mm`) through the
    /// writable entries to `frames` reaches none shared copy-on-write.
    fn write_unshared(&self, cpu: usize, mm: MmTag, vpn: u64, frames: &[Pfn]) -> Result<(), Violation> {
        let m = self.machine.borrow();
        for &pfn in frames {
            let refs = m.mem().refs(pfn);
            if refs > 1 {
                return Err(Violation::WriteToSharedFrame { cpu, mm, vpn, pfn, refs });
            }
        }
        Ok(())
    }

    /// A user access by `cpu` to page `vpn` (the adopter's included):
    /// through the TLB, or a walk, or a fault.
    fn access(&mut self, cpu: usize, vpn: u64, write: bool) -> Result<(), Violation> {
        if self.thread_on(cpu).is_some_and(|t| self.threads[t].adopted) {
            inc(&self.coverage.adopter_accesses);
        }
        let (hits, writable) = self.tlb_hits(cpu, vpn)?;
        if hits.is_empty() || (write && writable.is_empty()) {
            return self.fault(cpu, vpn, if write { Access::Write } else { Access::Read });
        }
        // A write while a fork is sharing pages but has not completed its
        // flush lands before the fork takes effect (the child has not run):
        // a concurrent write, not a write through a stale entry.
        if write && !self.fork_unflushed() {
            self.write_unshared(cpu, A, vpn, &writable)?;
        }
        Ok(())
    }

    fn fault(&mut self, cpu: usize, vpn: u64, access: Access) -> Result<(), Violation> {
        if self.faults == 0 {
            return Ok(());
        }
        self.faults -= 1;
        let old = self.snapshot(vpn..vpn + 1);
        let op = Op::new(Call::Fault { va: va(vpn), access }, &self.cfg.tlb);
        let t = self.thread_on(cpu).expect("a thread that faults");
        self.threads[t].task = Some(Task::new(Work::Op(op), vpn..vpn + 1, old));
        Ok(())
    }

    /// No reference to `A` is left: `A`'s users, the reaper, the adopter
    /// and a reclaimer's batch holding pages of it are gone.
    fn unreferenced(&self) -> bool {
        let users = self.a().users.load(core::sync::atomic::Ordering::Acquire);
        let batch = self.threads.iter().any(|th| match &th.task {
            Some(Task { work: Work::Reclaim(r), .. }) => r.holds_a(),
            _ => false,
        });
        !self.reaper && !batch && !self.adopter && users == 0
    }

    /// One step of the task of the thread on `cpu`.
    fn step(&mut self, cpu: usize) -> Result<(), Violation> {
        use core::sync::atomic::{fence, Ordering};
        let in_zap = self.zap_in_flight();
        let t = self.thread_on(cpu).expect("a thread to step");
        let mut task = self.threads[t].task.take().expect("a task to step");
        let mut done = false;
        // The adopter's steps that switch or count after a full barrier.
        let (mut load, mut count_out) = (false, false);
        {
            let hw = Bridge { m: &self.machine, cpu, mm: A, bugs: self.cfg.hw };
            let tlb = &self.cfg.tlb;
            let a = &self.mms[SLOT_A];
            match &mut task.work {
                Work::Op(op) | Work::Teardown(op) => {
                    let before = op.pc();
                    let held = op.holds_lock();
                    if matches!(before, Pc::Flush { .. }) && op.call().zaps() && a.ctx.asid().is_none() {
                        inc(&self.coverage.flushes_never_active);
                    }
                    match op.step(a, tlb, &hw, &hw) {
                        Step::Ran | Step::Blocked => {}
                        Step::Hook(Hook::Reaping) => self.killed = true,
                        Step::Done => done = true,
                    }
                    if held && !op.holds_lock() && task.since.is_none() {
                        task.since = Some(Vec::new()); // filled by `note_since`
                    }
                    if matches!(before, Pc::Flush { then: Then::Zap }) {
                        inc(&self.coverage.partial_batches);
                    }
                }
                Work::Leave => {
                    if in_zap {
                        inc(&self.coverage.exits_during_zap);
                    }
                    switch::leave_dying(a, tlb, &hw);
                    self.cpus[cpu].on = None;
                    task.work = Work::CountOut;
                }
                Work::CountOut => {
                    a.users.fetch_sub(1, Ordering::AcqRel);
                    self.threads[t].gone = true;
                    if self.unreferenced() {
                        task.work = Work::Teardown(Op::new(Call::Teardown, tlb));
                    } else {
                        done = true;
                    }
                }
                Work::AdoptCount => {
                    if tlb.use_mm_mmget {
                        a.users.fetch_add(1, Ordering::SeqCst);
                    }
                    task.work = Work::AdoptLoad;
                }
                Work::AdoptLoad => load = true,
                Work::Reclaim(r) => done = self.reclaim_step(cpu, r),
                Work::UnadoptCount => count_out = true,
                Work::Unadopt => {
                    switch::deactivate(Some(a), &hw);
                    self.cpus[cpu].on = None;
                    self.threads[t].adopted = false;
                    task.work = Work::UnadoptCount;
                }
            }
        }
        if load {
            fence(Ordering::SeqCst);
            self.switch_to(cpu, Some(SLOT_A));
            self.threads[t].adopted = true;
            inc(&self.coverage.adoptions);
            done = true;
        }
        if count_out {
            fence(Ordering::SeqCst);
            if self.cfg.tlb.use_mm_mmget {
                self.a().users.fetch_sub(1, Ordering::SeqCst);
            }
            done = true;
            // The adopter's reference goes with its script's end.
            if self.threads[t].next == self.cfg.scripts[t].len() {
                self.adopter = false;
                if self.unreferenced() && !self.a_dead {
                    task.work = Work::Teardown(Op::new(Call::Teardown, &self.cfg.tlb));
                    done = false;
                }
            }
        }
        self.threads[t].task = Some(task);
        self.note_since();
        // The kernel's transport serves a request to this CPU itself at once.
        while let Some(ipi) = self.machine.get_mut().take_ipi(cpu, cpu) {
            self.serve(cpu, ipi);
        }
        if done {
            self.finish(cpu)?;
        }
        Ok(())
    }

    /// `cpu` serves `ipi` (an interrupt, or its own request): the kernel's
    /// `shootdown::serve`; a CPU that left the mm no longer holds it.
    fn serve(&mut self, cpu: usize, ipi: Ipi) {
        let (slot, mm) = self.mm_by_id(ipi.mm);
        let hw = Bridge { m: &self.machine, cpu, mm: A, bugs: self.cfg.hw };
        let served = shootdown::serve(mm, &ipi.req, &self.cfg.tlb, &hw);
        inc(&self.coverage.serves);
        if served == Served::Left {
            inc(&self.coverage.lefts);
            if let Some(c) = self.cpus.get_mut(cpu) {
                if slot.is_some() && c.on == slot {
                    c.on = None;
                }
            }
        }
    }

    /// A fork runs and has not yet completed the flush of the pages it
    /// write-protected.
    fn fork_unflushed(&self) -> bool {
        self.threads.iter().any(|th| match &th.task {
            Some(Task { work: Work::Op(op), .. }) => {
                op.call() == Call::Fork && !matches!(op.pc(), Pc::Release { .. } | Pc::Unlock { .. } | Pc::Done)
            }
            _ => false,
        })
    }

    /// A zap of `A` (munmap, madvise, the reaper) is in progress somewhere.
    fn zap_in_flight(&self) -> bool {
        self.threads.iter().any(|th| match &th.task {
            Some(Task { work: Work::Op(op), .. }) => {
                matches!(op.call(), Call::Munmap { .. } | Call::Madvise { .. } | Call::Reap) && op.pc() != Pc::BeginZap
            }
            _ => false,
        })
    }

    /// The task of the thread on `cpu` finished its last step.
    fn finish(&mut self, cpu: usize) -> Result<(), Violation> {
        let t = self.thread_on(cpu).expect("a thread that finished");
        let mut task = self.threads[t].task.take().expect("a finished task");
        inc(&self.coverage.returns);
        match &mut task.work {
            Work::Op(op) => {
                match (op.call(), op.outcome()) {
                    (Call::Fork, Ok(_)) => {
                        let child = op.take_child().expect("a fork's child");
                        self.child = Some(Mm::new(CHILD as u64, child));
                    }
                    (Call::Fault { .. }, Ok(Outcome::Fault(f))) => {
                        use kernel::mm::aspace::FaultKind;
                        match f.kind {
                            FaultKind::ZeroFill => inc(&self.coverage.zero_fills),
                            FaultKind::CowCopy => inc(&self.coverage.cow_copies),
                            FaultKind::CowReuse => inc(&self.coverage.cow_reuses),
                            FaultKind::SwapIn => inc(&self.coverage.swap_ins),
                            FaultKind::Spurious => {}
                        }
                    }
                    _ => {}
                }
                // A call that failed (say, madvise over a range a racing
                // munmap has just emptied) promises nothing about it.
                let (ok, call) = (op.outcome().is_ok(), op.call());
                if ok {
                    self.returned(&task)?;
                }
                if call == Call::Reap {
                    self.reaper = false;
                    if self.unreferenced() {
                        let op = Op::new(Call::Teardown, &self.cfg.tlb);
                        self.threads[t].task = Some(Task::new(Work::Teardown(op), 0..0, Vec::new()));
                    }
                }
            }
            // The batch's reference to `A` goes now.
            Work::Reclaim(r) if r.holds_a() && self.unreferenced() && !self.a_dead => {
                let op = Op::new(Call::Teardown, &self.cfg.tlb);
                self.threads[t].task = Some(Task::new(Work::Teardown(op), 0..0, Vec::new()));
            }
            Work::Teardown(op) => {
                if let Err(OpError::StillLoaded { cpus }) = op.outcome() {
                    return Err(Violation::StillLoadedAtTeardown { mm: A, cpus });
                }
                self.alloc.release(&Bridge::new(&self.machine, cpu, A), &self.mms[SLOT_A].ctx);
                self.a_dead = true;
            }
            _ => {}
        }
        // An exited thread's CPU runs a kernel thread (nothing is loaded).
        if self.threads[t].gone && self.threads[t].task.is_none() {
            self.cpus[cpu].runs = Runs::Idle;
        }
        Ok(())
    }

    /// `cpu` switches to a task whose address space is `next` (a slot;
    /// `None`: a kernel thread), as the kernel's `mm::user::switch_to`
    /// does: the same mm stays loaded (a lazy CPU catches up); another is
    /// activated and the previous one's bits dropped; a kernel thread keeps
    /// what is loaded, lazily (or leaves it, with `tlb.lazy` off).
    fn switch_to(&mut self, cpu: usize, next: Option<usize>) {
        let me = 1u64 << cpu;
        let cur = self.cpus[cpu].on;
        let hw = Bridge { m: &self.machine, cpu, mm: next.map_or(A, Self::tag), bugs: self.cfg.hw };
        let tlb = &self.cfg.tlb;
        let lazy = |s: usize| self.mms[s].lazy.load(core::sync::atomic::Ordering::Relaxed) & me != 0;
        match (next, cur) {
            (Some(n), Some(c)) if n == c => {
                if lazy(n) {
                    switch::leave_lazy(&self.mms[n], tlb, &hw);
                    if n == SLOT_A {
                        inc(&self.coverage.lazy_returns);
                    }
                }
            }
            (Some(n), cur) => {
                let generation = self.alloc.generation();
                switch::activate(&self.mms[n], &self.alloc, tlb, &hw);
                if let Some(c) = cur {
                    switch::drop_bits(&self.mms[c], &hw);
                }
                self.cpus[cpu].on = Some(n);
                if self.alloc.generation() != generation {
                    inc(&self.coverage.rollovers);
                    if self.threads.iter().any(|th| matches!(th.task, Some(Task { work: Work::Op(_), .. }))) {
                        inc(&self.coverage.rollovers_in_op);
                    }
                }
            }
            (None, Some(c)) if lazy(c) => {}
            (None, Some(c)) if tlb.lazy => {
                switch::enter_lazy(&self.mms[c], &hw);
                if c == SLOT_A {
                    inc(&self.coverage.lazy_entries);
                }
            }
            (None, Some(c)) => {
                switch::deactivate(Some(&self.mms[c]), &hw);
                self.cpus[cpu].on = None;
            }
            (None, None) => {}
        }
    }

    /// A thread of the address space in slot `to` (not `A`) runs on `cpu`:
    /// the thread of `A` there waits; a kernel thread there runs again
    /// afterwards, lazy on `to`.
    fn switch(&mut self, cpu: usize, to: usize) {
        self.switches -= 1;
        self.switch_to(cpu, Some(to));
        match self.cpus[cpu].runs {
            Runs::Thread(t) if self.threads[t].user => {
                self.threads[t].last = cpu;
                self.cpus[cpu].runs = Runs::Other(to);
            }
            Runs::Thread(_) => self.switch_to(cpu, None),
            Runs::Other(_) | Runs::Idle => self.cpus[cpu].runs = Runs::Other(to),
        }
    }

    /// The thread on `cpu` is switched out for a kernel thread.
    fn idle(&mut self, cpu: usize) {
        self.idles -= 1;
        if let Runs::Thread(t) = self.cpus[cpu].runs {
            self.threads[t].last = cpu;
        }
        self.cpus[cpu].runs = Runs::Idle;
        self.switch_to(cpu, None);
    }

    /// The waiting thread `t` of `A` runs on `cpu`.
    fn schedule(&mut self, cpu: usize, t: usize) {
        if self.threads[t].last != cpu {
            self.migrations -= 1;
            inc(&self.coverage.migrations);
        }
        self.threads[t].last = cpu;
        self.cpus[cpu].runs = Runs::Thread(t);
        self.switch_to(cpu, Some(SLOT_A));
    }

    fn map_b(&mut self, vpn: u64) {
        let hw = Bridge::new(&self.machine, 0, B);
        let mut op = Op::new(Call::Fault { va: va(vpn), access: Access::Write }, &self.cfg.tlb);
        run_alone(&self.mms[SLOT_B], &mut op, &self.cfg.tlb, &hw);
        self.b_mapped |= 1 << vpn;
        if let Ok(Outcome::Fault(f)) = op.outcome() {
            if pfn_of(f.pa) < self.a_frames {
                inc(&self.coverage.reuses);
            }
        }
    }

    fn child_exit(&mut self) {
        let child = self.child.take().expect("a child");
        let cpu = if self.child_on { self.cfg.ncpus } else { 0 };
        let hw = Bridge::new(&self.machine, cpu, CHILD);
        if self.child_on {
            switch::leave_dying(&child, &self.cfg.tlb, &hw);
            self.child_on = false;
        }
        let mut op = Op::new(Call::Teardown, &self.cfg.tlb);
        run_alone(&child, &mut op, &self.cfg.tlb, &hw);
        self.alloc.release(&hw, &child.ctx);
        inc(&self.coverage.child_exits);
    }

    /// The child, on its own CPU, reads or writes `vpn` (activating the
    /// child the first time): through its TLB, or by a fault run to its end
    /// (the child is single-threaded; its faults race `A`'s operations only
    /// through the frames they share).
    fn child_access(&mut self, vpn: u64, write: bool) -> Result<(), Violation> {
        let cpu = self.cfg.ncpus;
        let child = self.child.as_ref().expect("a running child");
        let hw = Bridge::new(&self.machine, cpu, CHILD);
        if !self.child_on {
            switch::activate(child, &self.alloc, &self.cfg.tlb, &hw);
            self.child_on = true;
        }
        let (hits, writable) = self.tlb_hits(cpu, vpn)?;
        if hits.is_empty() || (write && writable.is_empty()) {
            if self.faults == 0 {
                return Ok(());
            }
            self.faults -= 1;
            let access = if write { Access::Write } else { Access::Read };
            let mut op = Op::new(Call::Fault { va: va(vpn), access }, &self.cfg.tlb);
            run_alone(child, &mut op, &self.cfg.tlb, &hw);
            inc(&self.coverage.child_faults);
            return Ok(());
        }
        if write {
            self.write_unshared(cpu, CHILD, vpn, &writable)?;
        }
        inc(&self.coverage.child_accesses);
        Ok(())
    }

    /// A step of `cpu` that would only wait: for the mm lock, or for the
    /// CPUs it sent IPIs to.
    fn blocked(&self, cpu: usize, op: &Op<Reduced>) -> bool {
        match op.pc() {
            Pc::Lock | Pc::Take => self.a().is_locked(),
            Pc::Wait { .. } => !self.machine.borrow().acked(cpu),
            Pc::SecWait { .. } => !self.machine.borrow().secondary_acked(cpu),
            _ => false,
        }
    }
}

impl System for World {
    type Action = Action;

    fn actions(&self, out: &mut Vec<Action>) {
        let m = self.machine.borrow();
        let scheduled = self.cfg.speculation == Speculation::Scheduled;
        // Threads of `A` waiting for a CPU.
        let waiting: Vec<usize> = (0..self.threads.len())
            .filter(|&t| {
                let th = &self.threads[t];
                th.user && !th.gone && !self.a_dead && !self.running(t)
            })
            .collect();
        for (cpu, c) in self.cpus.iter().enumerate() {
            let mut free = true; // no task in progress here
            match c.runs {
                Runs::Thread(t) => {
                    let th = &self.threads[t];
                    match &th.task {
                        Some(task) => {
                            free = false;
                            match &task.work {
                                Work::Op(op) | Work::Teardown(op) if self.blocked(cpu, op) => {}
                                Work::Op(op) | Work::Teardown(op) => out.push(Action::Step { cpu, pc: op.pc() }),
                                Work::Reclaim(r) if self.reclaim_blocked(cpu, r) => {}
                                Work::Reclaim(r) => out.push(Action::Step { cpu, pc: r.pc() }),
                                _ => out.push(Action::Step { cpu, pc: Pc::Done }),
                            }
                        }
                        None => {
                            let runs_a = c.on == Some(SLOT_A);
                            if let Some(&call) = self.cfg.scripts[t].get(th.next) {
                                if (th.user && runs_a && !th.gone) || (!th.user && !self.a_dead) {
                                    out.push(Action::Start { cpu, call });
                                }
                            }
                            if runs_a && ((th.user && !th.gone) || th.adopted) {
                                for &vpn in &self.cfg.touch {
                                    out.push(Action::Read { cpu, vpn });
                                    if self.cfg.writes {
                                        out.push(Action::Write { cpu, vpn });
                                    }
                                }
                            }
                            if th.user && self.idles > 0 {
                                out.push(Action::Idle { cpu });
                            }
                            if th.adopted {
                                free = false; // its CPU holds `A` for it
                            }
                        }
                    }
                }
                Runs::Other(_) => {
                    if self.idles > 0 {
                        out.push(Action::Idle { cpu });
                    }
                }
                Runs::Idle => {}
            }
            if free {
                if self.switches > 0 {
                    for to in 1..self.mms.len() {
                        if c.on != Some(to) && c.runs != Runs::Other(to) {
                            out.push(Action::Switch { cpu, to });
                        }
                    }
                }
                if matches!(c.runs, Runs::Other(_) | Runs::Idle) {
                    for &t in &waiting {
                        if self.threads[t].last == cpu || self.migrations > 0 {
                            out.push(Action::Schedule { cpu, thread: t });
                        }
                    }
                }
            }
            if scheduled && m.ttbr0(cpu).mm.is_some() {
                out.push(Action::Speculate { cpu });
            }
        }
        for cpu in 0..m.ncpus() {
            for r in m.inbox(cpu) {
                if r.from != cpu {
                    out.push(Action::Serve { cpu, from: r.from });
                }
            }
        }
        let enough = m.mem().free_frames() >= self.cfg.format.levels as usize;
        for &vpn in self.cfg.b_pages.iter().filter(|&&v| enough && self.b_mapped & 1 << v == 0) {
            out.push(Action::MapB { vpn });
        }
        if self.child.is_some() {
            out.push(Action::ChildExit);
            if self.cfg.child_runs {
                for &vpn in &self.cfg.touch {
                    out.push(Action::ChildAccess { vpn, write: false });
                    if self.cfg.writes {
                        out.push(Action::ChildAccess { vpn, write: true });
                    }
                }
                if scheduled && self.child_on {
                    out.push(Action::Speculate { cpu: self.cfg.ncpus });
                }
            }
        }
        drop(m);
        self.device_actions(out);
    }

    fn apply(&mut self, a: &Action) -> Result<(), Violation> {
        let free = self.machine.borrow().mem().free_frames();
        match *a {
            Action::Start { cpu, call } => self.start(cpu, call),
            Action::Step { cpu, .. } => self.step(cpu)?,
            Action::Read { cpu, vpn } => self.access(cpu, vpn, false)?,
            Action::Write { cpu, vpn } => self.access(cpu, vpn, true)?,
            Action::Speculate { cpu } => {
                self.machine.get_mut().speculate(cpu);
            }
            Action::Switch { cpu, to } => self.switch(cpu, to),
            Action::Idle { cpu } => self.idle(cpu),
            Action::Schedule { cpu, thread } => self.schedule(cpu, thread),
            Action::Serve { cpu, from } => {
                let ipi = self.machine.get_mut().take_ipi(cpu, from).expect("a request to serve");
                self.serve(cpu, ipi);
            }
            Action::MapB { vpn } => self.map_b(vpn),
            Action::ChildExit => self.child_exit(),
            Action::ChildAccess { vpn, write } => self.child_access(vpn, write)?,
            Action::DevServe { dev, from } => self.dev_serve(dev, from),
            Action::DevAccess { dev, vpn, write } => self.dev_access(dev, vpn, write)?,
        }
        let now = self.machine.borrow().mem().free_frames();
        if now > free {
            self.coverage.frees.set(self.coverage.frees.get() + (now - free) as u64);
        }
        self.retag();
        self.note_since();
        if self.cfg.speculation == Speculation::Eager {
            self.fill_all();
        }
        self.check_state()
    }

    fn check(&self) -> Result<(), Violation> {
        self.check_state()
    }

    fn expand(&self) -> bool {
        let done = |(t, th): (usize, &Thread)| th.task.is_none() && th.next == self.cfg.scripts[t].len();
        !(self.cfg.stop_when_done && self.threads.iter().enumerate().all(done))
    }

    fn weight(&self, a: &Action) -> u64 {
        match a {
            Action::Step { .. } => 8,
            Action::Serve { .. } | Action::DevServe { .. } => 4,
            Action::Start { .. } => 2,
            _ => 1,
        }
    }

    fn summary(&self) -> String {
        let a = self.a();
        let order = core::sync::atomic::Ordering::Relaxed;
        let mut s = format!(
            "A: locked {} pending {} users {} cpus {:#x} lazy {:#x} gen {} {:?} asid {:?}{}{} |",
            a.is_locked(),
            a.pending(),
            a.users.load(order),
            a.cpus.load(order),
            a.lazy.load(order),
            a.tlb_gen.load(order),
            a.cpu_gen[..self.cpus.len()].iter().map(|g| g.load(order)).collect::<Vec<_>>(),
            a.ctx.asid(),
            if self.killed { " killed" } else { "" },
            if self.a_dead { " dead" } else { "" },
        );
        for vpn in 0..self.cfg.format.pages() {
            if let Some((p, w)) = self.a_leaf(vpn) {
                write!(s, " v{vpn}>{p}{}", if w { "" } else { "(ro)" }).unwrap();
            }
        }
        let m = self.machine.borrow();
        for cpu in 0..m.ncpus() {
            let t = m.ttbr0(cpu);
            match t.mm {
                Some(mm) => write!(s, " | cpu{cpu}: mm{mm}/a{}", t.asid).unwrap(),
                None => write!(s, " | cpu{cpu}: reserved").unwrap(),
            }
            match self.cpus.get(cpu).map(|c| c.runs) {
                Some(Runs::Thread(th)) => {
                    write!(s, " t{th}").unwrap();
                    match self.threads[th].task.as_ref().map(|t| &t.work) {
                        Some(Work::Op(op) | Work::Teardown(op)) => {
                            write!(s, " [{:?} at {:?}]", op.call(), op.pc()).unwrap()
                        }
                        Some(Work::Reclaim(r)) => write!(s, " [{r}]").unwrap(),
                        Some(w) => write!(s, " [{w:?}]").unwrap(),
                        None => {}
                    }
                }
                Some(Runs::Other(slot)) => write!(s, " mm{}'s thread", Self::tag(slot)).unwrap(),
                Some(Runs::Idle) => s += " idle",
                None => s += " child",
            }
            if !m.pending(cpu).is_empty() {
                write!(s, " issued {:?}", m.pending(cpu).iter().map(|p| p.0).collect::<Vec<_>>()).unwrap();
            }
            for r in m.inbox(cpu) {
                write!(s, " ipi from cpu{} {:?}", r.from, r.req).unwrap();
            }
            if !m.inflight(cpu).is_empty() {
                write!(s, " walking {:?}", m.inflight(cpu).iter().map(|w| &w.tables).collect::<Vec<_>>()).unwrap();
            }
            s += " tlb{";
            for e in m.tlb(cpu).entries() {
                match *e {
                    Entry::Leaf { asid, vpn, pfn, writable, level, pages, .. } => {
                        write!(s, " a{asid}:v{vpn}>{pfn}{}", if writable { "w" } else { "" }).unwrap();
                        if pages > 1 {
                            write!(s, "[{pages}@L{level}]").unwrap();
                        }
                    }
                    Entry::Walk { asid, level, region, table, .. } => {
                        write!(s, " a{asid}:L{level}@{region}>{table}").unwrap()
                    }
                }
            }
            s += " }";
        }
        drop(m);
        self.dev_summary(&mut s);
        let m = self.machine.borrow();
        let waiting: Vec<usize> = (0..self.threads.len())
            .filter(|&t| !self.running(t) && !self.threads[t].gone && self.threads[t].user)
            .collect();
        if !waiting.is_empty() {
            write!(s, " | waiting {waiting:?}").unwrap();
        }
        s += " | frames";
        let mem: &Memory = m.mem();
        for p in 0..mem.frames() as Pfn {
            match mem.use_of(p) {
                FrameUse::Free => write!(s, " {p}:-").unwrap(),
                FrameUse::Table { mm, level } => write!(s, " {p}:T{mm}.{level}").unwrap(),
                FrameUse::Data { mm } => write!(s, " {p}:D{mm}x{}", mem.refs(p)).unwrap(),
            }
        }
        s
    }
}
