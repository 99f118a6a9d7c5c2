//! The kernel's TLB protocol (`kernel::mm::space`) run as-is over the TLB
//! model: a [`System`] for `explore` and `random_walk`.
//!
//! The address space `A` is the kernel's own `Mm` over a reduced page-table
//! format, built and changed only by the kernel's code: its VMAs, its page
//! tables (written through [`Bridge`] into the model memory), its gathers,
//! the flush policy, and the ASID from the kernel's allocator. Each CPU runs
//! a thread of `A` (or the reaper's kernel thread) and a script of calls;
//! a call is an [`Op`] that the checker steps one step at a time, so every
//! interleaving of its steps with other CPUs' steps, user accesses,
//! hardware walks and context switches is explored. Nothing of the
//! protocol is written here: only the world around it.
//!
//! Around the operations:
//! * `Read`/`Write`: a user access through the TLB (a miss walks; a
//!   translation or permission fault starts a `Fault` operation, within a
//!   budget of faults per run);
//! * `Speculate`: a hardware walk (or after every action, with
//!   [`Speculation::Eager`]);
//! * `Switch`: a context switch (`space::switch::deactivate` then
//!   `activate`) between `A`, a second address space `B` and empty ones
//!   that only use up ASIDs, so the allocator rolls over when its ASIDs are
//!   few;
//! * `MapB`: `B` faults a page in, from whatever frames are free (the
//!   lowest first, so frames `A` freed are reused at once);
//! * `ChildExit`: the fork child tears down (leaving its CPU first if it
//!   ran), dropping its references to the frames it shares copy-on-write;
//! * `ChildAccess` (with `Config::child_runs`): the child, on a CPU of its
//!   own, reads or writes a page, taking its own copy-on-write faults.
//!
//! An exit is `space::switch::leave_dying`, then the count of users drops;
//! whoever drops the last reference (the last thread, or the reaper) runs
//! the teardown operation and releases the ASID, as `mm::user` does.
//!
//! Checked in every state: the machine's invariants (no usable entry
//! leading to a frame that is not a live page or table of the running mm;
//! no walk in flight through a freed root) and break-before-make (no TLB
//! holds an entry of `A`'s ASID that disagrees with a valid descriptor of
//! `A`'s tables). Checked on every user write: it does not reach a frame
//! shared copy-on-write (outside a fork's own window, from its first
//! write-protect until its flush completes, when a write is simply earlier
//! than the fork). Checked when an operation returns successfully
//! (`TLBEmptyInvalPTE`): no CPU that can still run `A` holds a translation
//! of the pages it covered that existed when it started and that the
//! tables no longer have, nor a writable one they no longer grant.
//!
//! Frames carry ghost owner tags, recomputed after every action from what
//! each address space's tables reach (`A` first, then the child, `B` and
//! the others); a frame reachable from none keeps its tag (it is held by a
//! gather or a copy-on-write step until its flush completes).
#![allow(unsafe_code)] // Mm::snapshot, hash_state and peek: the model is single-threaded

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
use kernel::mm::space::{switch, Call, Hook, Mm, Op, OpError, Outcome, Pc, Step, Then, TlbConfig};
use kernel::mm::tlb::{TlbFeatures, PolicyParams};

use super::bridge::{Bridge, HwBugs};
use super::explore::System;
use super::machine::Machine;
use super::mem::{pa_of, pfn_of, Desc, Format, FrameUse, Memory, MmTag, Pfn};
use super::tlb::Entry;
use super::violation::Violation;

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

/// A call a CPU's script makes on `A` (pages `[lo, hi)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Script {
    Munmap { lo: u64, hi: u64 },
    /// `MADV_DONTNEED`.
    Madvise { lo: u64, hi: u64 },
    /// To read-only.
    Mprotect { lo: u64, hi: u64 },
    /// Read-write, `MAP_FIXED`: replaces what was there.
    MmapFixed { lo: u64, hi: u64 },
    /// Read-write with `lo` as the hint: lands there when the range is free.
    Mmap { lo: u64, hi: u64 },
    Fork,
    /// This thread exits.
    Exit,
    /// The reaper (a kernel thread) takes `A`'s memory.
    Reap,
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
            Script::Fork => Call::Fork,
            Script::Reap => Call::Reap,
            Script::Exit => return None,
        })
    }

    /// The pages whose translations the call changes.
    fn covered(self, pages: u64) -> Range<u64> {
        match self {
            Script::Munmap { lo, hi }
            | Script::Madvise { lo, hi }
            | Script::Mprotect { lo, hi }
            | Script::MmapFixed { lo, hi }
            | Script::Mmap { lo, hi } => lo..hi,
            Script::Fork | Script::Reap => 0..pages,
            Script::Exit => 0..0,
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
    /// frame: the damage itself, not what enables it.
    OtherMmOnly,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub ncpus: usize,
    pub format: Format,
    /// Pages `A` maps and has faulted in at the start (each read-write;
    /// page 0 stays unmapped, as `mmap(MAP_FIXED)` refuses address 0).
    pub pages: Vec<u64>,
    /// Pages user threads access (default: `pages`).
    pub touch: Vec<u64>,
    /// Per CPU, the calls it makes in order. A CPU whose script has `Reap`
    /// is the reaper's kernel thread (no thread of `A`); every other CPU
    /// runs a thread of `A`.
    pub scripts: Vec<Vec<Script>>,
    /// User accesses include writes.
    pub writes: bool,
    /// Page faults user accesses may take in a run.
    pub faults: u8,
    /// Pages `B` may fault in (each once).
    pub b_pages: Vec<u64>,
    /// Empty address spaces (a root table each) CPUs may switch to.
    pub others: usize,
    /// Context switches in a run.
    pub switches: u8,
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
            asid_bits: 4,
            spare_frames: 3,
            speculation: Speculation::Eager,
            tlb,
            hw: HwBugs::default(),
            checks: Checks::All,
            stop_when_done: false,
            child_runs: false,
            a_first_run: false,
        }
    }

    /// `pages` for both what `A` maps and what its threads touch.
    pub fn pages(mut self, pages: &[u64]) -> Self {
        self.pages = pages.to_vec();
        self.touch = pages.to_vec();
        self
    }
}

/// What the search saw happen, summed over every transition (clones share it).
#[derive(Debug, Default)]
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
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// What a CPU is doing.
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
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Task {
    work: Work,
    /// The pages the call covers, and every translation of them that
    /// existed when it started (page, frame, writable).
    covered: Range<u64>,
    old: Vec<(u64, Pfn, bool)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cpu {
    /// Runs a thread of `A` (else the reaper's kernel thread).
    user: bool,
    /// Next call of the script.
    next: usize,
    task: Option<Task>,
    /// The thread of `A` exited.
    gone: bool,
    /// The address space loaded here (a slot), if any.
    on: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Start { cpu: usize, call: Script },
    Step { cpu: usize, pc: Pc },
    Read { cpu: usize, vpn: u64 },
    Write { cpu: usize, vpn: u64 },
    Speculate { cpu: usize },
    Switch { cpu: usize, to: usize },
    MapB { vpn: u64 },
    ChildExit,
    /// The running child reads or writes a page (`Config::child_runs`).
    ChildAccess { vpn: u64, write: bool },
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
    cpus: Vec<Cpu>,
    /// The reaper holds a reference to `A`.
    reaper: bool,
    /// The reaper marked `A`'s process killed.
    killed: bool,
    /// `A` was torn down and its ASID released.
    a_dead: bool,
    faults: u8,
    switches: u8,
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
            cpus: self.cpus.clone(),
            reaper: self.reaper,
            killed: self.killed,
            a_dead: self.a_dead,
            faults: self.faults,
            switches: self.switches,
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
        self.cpus.hash(h);
        (self.reaper, self.killed, self.a_dead, self.faults, self.switches, self.b_mapped).hash(h);
    }
}

/// The page-table format the kernel's code runs with here.
pub fn reduced(f: Format) -> Reduced {
    f.reduced()
}

impl World {
    pub fn new(cfg: Config) -> Self {
        assert_eq!(cfg.scripts.len(), cfg.ncpus, "one script per CPU");
        assert!(cfg.format.pages() <= 32, "page masks are u32");
        assert!(!cfg.pages.contains(&0) && !cfg.b_pages.contains(&0), "page 0 cannot be mapped");
        // Enough frames for everything the setup builds, then the spares.
        let setup = 2 + cfg.pages.len() * cfg.format.levels as usize + 1 + cfg.others;
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
        let alloc = AsidAllocator::new(cfg.asid_bits, cpus, AsidBugs::NONE).expect("ASID width for the CPUs");
        let mut tlb = cfg.tlb;
        tlb.bugs = Default::default(); // the setup is not under test
        let mut mms = Vec::new();
        let mut new_mm = |tag: MmTag, pages: &[u64], fault: bool| {
            let hw = Bridge::new(&machine, 0, tag);
            let mm = Mm::new(tag as u64, AddressSpace::new_in(reduced(cfg.format), &hw).expect("frames for a root"));
            for &vpn in pages {
                let mut op = Op::new(Call::Mmap { addr: va(vpn), len: PAGE_SIZE, prot: RW, flags: map::FIXED }, &tlb);
                mm.run(&mut op, &tlb, &hw, &hw, |_| {});
                assert_eq!(op.outcome(), Ok(Outcome::Addr(va(vpn))), "setup mmap of page {vpn}");
                if fault {
                    let mut op = Op::new(Call::Fault { va: va(vpn), access: Access::Write }, &tlb);
                    mm.run(&mut op, &tlb, &hw, &hw, |_| {});
                    assert!(matches!(op.outcome(), Ok(Outcome::Fault(_))), "setup fault of page {vpn}: {:?}", op.outcome());
                }
            }
            mms.push(mm);
        };
        new_mm(A, &cfg.pages, true);
        let a_frames = { let m = machine.borrow(); (m.mem().frames() - m.mem().free_frames()) as Pfn };
        new_mm(B, &cfg.b_pages, false);
        for i in 0..cfg.others {
            new_mm(OTHER + i as MmTag, &[], false);
        }
        let mut w = World {
            coverage: Rc::default(),
            machine,
            alloc,
            mms,
            child: None,
            child_on: false,
            cpus: Vec::new(),
            reaper: false,
            killed: false,
            a_dead: false,
            faults: cfg.faults,
            switches: cfg.switches,
            b_mapped: 0,
            a_frames,
            cfg: Rc::new(cfg),
        };
        let mut users = 0;
        for cpu in 0..w.cfg.ncpus {
            let user = !w.cfg.scripts[cpu].contains(&Script::Reap);
            let mut on = None;
            if user {
                let slot = if w.cfg.a_first_run { SLOT_B } else { SLOT_A };
                switch::activate(&w.mms[slot], &w.alloc, &w.cfg.tlb, &Bridge::new(&w.machine, cpu, Self::tag(slot)));
                on = Some(slot);
                users += 1;
            }
            w.cpus.push(Cpu { user, next: 0, task: None, gone: false, on });
        }
        w.mms[SLOT_A].users.store(users, core::sync::atomic::Ordering::Relaxed);
        w.machine.get_mut().reset_stats();
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
        let mem = m.mem();
        let leaf = mem.format().levels - 1;
        let table = mem.leaf_table(root, vpn)?;
        let raw = mem.words(table)[mem.format().index(vpn, leaf)];
        match mem.desc_at(root, leaf, vpn)? {
            Desc::Page(p) => Some((p, el0_can_write(raw))),
            _ => None,
        }
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

    /// Every translation of `pages` that exists now: in `A`'s tables and in
    /// any CPU's TLB.
    fn snapshot(&self, pages: Range<u64>) -> Vec<(u64, Pfn, bool)> {
        let mut old = Vec::new();
        let m = self.machine.borrow();
        for vpn in pages {
            if let Some((p, w)) = self.a_leaf(vpn) {
                old.push((vpn, p, w));
            }
            for cpu in 0..m.ncpus() {
                for e in m.tlb(cpu).entries() {
                    if let Entry::Leaf { vpn: v, pfn, mm: A, writable, .. } = *e {
                        if v == vpn {
                            old.push((vpn, pfn, writable));
                        }
                    }
                }
            }
        }
        old.sort_unstable();
        old.dedup();
        old
    }

    /// Whether `cpu` may run `A` again: it has it loaded, or runs a live
    /// thread of it.
    fn may_run_a(&self, cpu: usize) -> bool {
        let Some(c) = self.cpus.get(cpu) else { return false }; // the child's CPU
        c.on == Some(SLOT_A) || (c.user && !c.gone)
    }

    /// TLBEmptyInvalPTE when a call returns: no CPU that may run `A` holds
    /// a translation of the covered pages, under `A`'s ASID, that existed
    /// when the call started and that the tables no longer have (or no
    /// longer grant write access through).
    fn returned(&self, covered: Range<u64>, old: &[(u64, Pfn, bool)]) -> Result<(), Violation> {
        let Some(asid) = self.a_asid() else { return Ok(()) };
        let m = self.machine.borrow();
        for vpn in covered {
            let now = self.a_leaf(vpn);
            for cpu in (0..m.ncpus()).filter(|&c| self.may_run_a(c)) {
                for e in m.tlb(cpu).entries() {
                    let Entry::Leaf { asid: a, vpn: v, pfn, mm: A, writable } = *e else { continue };
                    let stale = match now {
                        Some((p, w)) => p != pfn || (writable && !w),
                        None => true,
                    };
                    if a == asid && v == vpn && stale && old.contains(&(vpn, pfn, writable)) {
                        return Err(Violation::TlbEmptyInvalPte { cpu, mm: A, vpn, asid });
                    }
                }
            }
        }
        Ok(())
    }

    /// Break-before-make: no TLB holds an entry of `A`'s ASID that a valid
    /// descriptor of `A`'s tables now contradicts.
    fn break_before_make(&self) -> Result<(), Violation> {
        let (Some(asid), Some(root)) = (self.a_asid(), self.a_root()) else { return Ok(()) };
        let m = self.machine.borrow();
        let mem = m.mem();
        for cpu in 0..m.ncpus() {
            for e in m.tlb(cpu).entries() {
                let (vpn, level, cached) = match *e {
                    Entry::Leaf { asid: a, vpn, pfn, mm: A, .. } if a == asid => (vpn, mem.format().levels - 1, pfn),
                    Entry::Walk { asid: a, level, region, table, mm: A } if a == asid => (region, level, table),
                    _ => continue,
                };
                let current = match mem.desc_at(root, level, vpn) {
                    Some(Desc::Page(p) | Desc::Table(p)) => p,
                    _ => continue,
                };
                if current != cached {
                    let level = (level + 1 < mem.format().levels).then_some(level);
                    return Err(Violation::BreakBeforeMake { cpu, mm: A, asid, vpn, level, cached, current });
                }
            }
        }
        Ok(())
    }

    /// Leaf entries usable under a CPU's TTBR0 that lead into another mm's frame.
    fn other_mm(&self) -> Result<(), Violation> {
        let m = self.machine.borrow();
        for cpu in 0..m.ncpus() {
            let t = m.ttbr0(cpu);
            let Some(mm) = t.mm else { continue };
            for e in m.tlb(cpu).entries() {
                let Entry::Leaf { asid, vpn, pfn, .. } = *e else { continue };
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
        Ok(())
    }

    fn check_state(&self) -> Result<(), Violation> {
        match self.cfg.checks {
            Checks::All => {
                self.machine.borrow().check_tlbs()?;
                self.break_before_make()
            }
            Checks::OtherMmOnly => self.other_mm(),
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
            for c in &self.cpus {
                if let Some(Task { work: Work::Op(op), .. }) = &c.task {
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
        self.cpus[cpu].next += 1;
        let covered = call.covered(self.cfg.format.pages());
        let old = self.snapshot(covered.clone());
        let work = match call.call() {
            None => Work::Leave,
            Some(c) => {
                if c == Call::Reap {
                    self.reaper = true;
                }
                Work::Op(Op::new(c, &self.cfg.tlb))
            }
        };
        self.cpus[cpu].task = Some(Task { work, covered, old });
    }

    /// `cpu` accesses `vpn` through its TLB (a matching entry, else a walk;
    /// each hit's frame checked): the entries it hit, and the frames of the
    /// writable ones.
    fn tlb_hits(&self, cpu: usize, vpn: u64) -> Result<(Vec<(Pfn, bool)>, Vec<Pfn>), Violation> {
        let mut m = self.machine.borrow_mut();
        m.access(cpu, vpn)?;
        let asid = m.ttbr0(cpu).asid;
        let hits: Vec<(Pfn, bool)> = m
            .tlb(cpu)
            .entries()
            .iter()
            .filter_map(|e| match *e {
                Entry::Leaf { asid: a, vpn: v, pfn, writable, .. } if a == asid && v == vpn => Some((pfn, writable)),
                _ => None,
            })
            .collect();
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

    /// A user access by `cpu` to page `vpn`: through the TLB, or a walk, or
    /// a fault.
    fn access(&mut self, cpu: usize, vpn: u64, write: bool) -> Result<(), Violation> {
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
        self.cpus[cpu].task = Some(Task { work: Work::Op(op), covered: vpn..vpn + 1, old });
        Ok(())
    }

    /// One step of `cpu`'s task.
    fn step(&mut self, cpu: usize) -> Result<(), Violation> {
        let in_zap = self.zap_in_flight();
        let hw = Bridge { m: &self.machine, cpu, mm: A, bugs: self.cfg.hw };
        let tlb = &self.cfg.tlb;
        let a = &self.mms[SLOT_A];
        let c = &mut self.cpus[cpu];
        let task = c.task.as_mut().expect("a task to step");
        let mut done = false;
        match &mut task.work {
            Work::Op(op) | Work::Teardown(op) => {
                let before = op.pc();
                if matches!(before, Pc::Flush { .. }) && op.call().zaps() && a.ctx.asid().is_none() {
                    inc(&self.coverage.flushes_never_active);
                }
                match op.step(a, tlb, &hw, &hw) {
                    Step::Ran | Step::Blocked => {}
                    Step::Hook(Hook::Reaping) => self.killed = true,
                    Step::Done => done = true,
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
                c.on = None;
                task.work = Work::CountOut;
            }
            Work::CountOut => {
                let last = a.users.fetch_sub(1, core::sync::atomic::Ordering::AcqRel) == 1;
                c.gone = true;
                if last && !self.reaper {
                    task.work = Work::Teardown(Op::new(Call::Teardown, tlb));
                } else {
                    done = true;
                }
            }
        }
        if done {
            self.finish(cpu)?;
        }
        Ok(())
    }

    /// A zap of `A` (munmap, madvise, the reaper) is in progress somewhere.
    /// A fork runs and has not yet completed the flush of the pages it
    /// write-protected.
    fn fork_unflushed(&self) -> bool {
        self.cpus.iter().any(|c| match &c.task {
            Some(Task { work: Work::Op(op), .. }) => {
                op.call() == Call::Fork && !matches!(op.pc(), Pc::Release { .. } | Pc::Unlock { .. } | Pc::Done)
            }
            _ => false,
        })
    }

    fn zap_in_flight(&self) -> bool {
        self.cpus.iter().any(|c| match &c.task {
            Some(Task { work: Work::Op(op), .. }) => {
                matches!(op.call(), Call::Munmap { .. } | Call::Madvise { .. } | Call::Reap) && op.pc() != Pc::BeginZap
            }
            _ => false,
        })
    }

    /// `cpu`'s task finished its last step.
    fn finish(&mut self, cpu: usize) -> Result<(), Violation> {
        let mut task = self.cpus[cpu].task.take().expect("a finished task");
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
                            FaultKind::Spurious => {}
                        }
                    }
                    _ => {}
                }
                // A call that failed (say, madvise over a range a racing
                // munmap has just emptied) promises nothing about it.
                if op.outcome().is_ok() {
                    self.returned(task.covered.clone(), &task.old)?;
                }
                if op.call() == Call::Reap {
                    self.reaper = false;
                    if self.a().users.load(core::sync::atomic::Ordering::Acquire) == 0 {
                        let op = Op::new(Call::Teardown, &self.cfg.tlb);
                        self.cpus[cpu].task = Some(Task { work: Work::Teardown(op), covered: 0..0, old: Vec::new() });
                    }
                }
            }
            Work::Teardown(op) => {
                if let Err(OpError::StillLoaded { cpus }) = op.outcome() {
                    return Err(Violation::StillLoadedAtTeardown { mm: A, cpus });
                }
                self.alloc.release(&Bridge::new(&self.machine, cpu, A), &self.mms[SLOT_A].ctx);
                self.a_dead = true;
            }
            Work::Leave | Work::CountOut => {}
        }
        Ok(())
    }

    fn switch(&mut self, cpu: usize, to: usize) {
        let c = &self.cpus[cpu];
        let home = to == SLOT_A && c.user && !c.gone;
        if !home {
            self.switches -= 1;
        }
        let generation = self.alloc.generation();
        let hw = Bridge::new(&self.machine, cpu, Self::tag(to));
        switch::deactivate(self.cpus[cpu].on.map(|s| &self.mms[s]), &hw);
        switch::activate(&self.mms[to], &self.alloc, &self.cfg.tlb, &hw);
        self.cpus[cpu].on = Some(to);
        if self.alloc.generation() != generation {
            inc(&self.coverage.rollovers);
            if self.cpus.iter().any(|c| matches!(c.task, Some(Task { work: Work::Op(_), .. }))) {
                inc(&self.coverage.rollovers_in_op);
            }
        }
    }

    fn map_b(&mut self, vpn: u64) {
        let hw = Bridge::new(&self.machine, 0, B);
        let mut op = Op::new(Call::Fault { va: va(vpn), access: Access::Write }, &self.cfg.tlb);
        self.mms[SLOT_B].run(&mut op, &self.cfg.tlb, &hw, &hw, |_| {});
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
        child.run(&mut op, &self.cfg.tlb, &hw, &hw, |_| {});
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
            child.run(&mut op, &self.cfg.tlb, &hw, &hw, |_| {});
            inc(&self.coverage.child_faults);
            return Ok(());
        }
        if write {
            self.write_unshared(cpu, CHILD, vpn, &writable)?;
        }
        inc(&self.coverage.child_accesses);
        Ok(())
    }

    fn blocked(&self, op: &Op<Reduced>) -> bool {
        matches!(op.pc(), Pc::Lock | Pc::Take) && self.a().is_locked()
    }
}

impl System for World {
    type Action = Action;

    fn actions(&self, out: &mut Vec<Action>) {
        let m = self.machine.borrow();
        let scheduled = self.cfg.speculation == Speculation::Scheduled;
        for (cpu, c) in self.cpus.iter().enumerate() {
            match &c.task {
                Some(t) => match &t.work {
                    Work::Op(op) | Work::Teardown(op) if self.blocked(op) => {}
                    Work::Op(op) | Work::Teardown(op) => out.push(Action::Step { cpu, pc: op.pc() }),
                    Work::Leave | Work::CountOut => out.push(Action::Step { cpu, pc: Pc::Done }),
                },
                None => {
                    let runs_a = c.on == Some(SLOT_A);
                    if let Some(&call) = self.cfg.scripts[cpu].get(c.next) {
                        if (c.user && runs_a && !c.gone) || (!c.user && !self.a_dead) {
                            out.push(Action::Start { cpu, call });
                        }
                    }
                    if c.user && runs_a && !c.gone {
                        for &vpn in &self.cfg.touch {
                            out.push(Action::Read { cpu, vpn });
                            if self.cfg.writes {
                                out.push(Action::Write { cpu, vpn });
                            }
                        }
                    }
                    let home = c.user && !c.gone && !self.a_dead;
                    if self.switches > 0 {
                        for to in 0..self.mms.len() {
                            let may = if to == SLOT_A { home } else { true };
                            if may && c.on != Some(to) {
                                out.push(Action::Switch { cpu, to });
                            }
                        }
                    } else if home && !runs_a {
                        // A live thread of A is scheduled again: free.
                        out.push(Action::Switch { cpu, to: SLOT_A });
                    }
                }
            }
            if scheduled && m.ttbr0(cpu).mm.is_some() {
                out.push(Action::Speculate { cpu });
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
            Action::MapB { vpn } => self.map_b(vpn),
            Action::ChildExit => self.child_exit(),
            Action::ChildAccess { vpn, write } => self.child_access(vpn, write)?,
        }
        let now = self.machine.borrow().mem().free_frames();
        if now > free {
            self.coverage.frees.set(self.coverage.frees.get() + (now - free) as u64);
        }
        self.retag();
        if self.cfg.speculation == Speculation::Eager {
            self.fill_all();
        }
        self.check_state()
    }

    fn check(&self) -> Result<(), Violation> {
        self.check_state()
    }

    fn expand(&self) -> bool {
        let done = |(cpu, c): (usize, &Cpu)| c.task.is_none() && c.next == self.cfg.scripts[cpu].len();
        !(self.cfg.stop_when_done && self.cpus.iter().enumerate().all(done))
    }

    fn weight(&self, a: &Action) -> u64 {
        match a {
            Action::Step { .. } => 8,
            Action::Start { .. } => 2,
            _ => 1,
        }
    }

    fn summary(&self) -> String {
        let a = self.a();
        let mut s = format!(
            "A: locked {} pending {} users {} cpus {:#x} asid {:?}{}{} |",
            a.is_locked(),
            a.pending(),
            a.users.load(core::sync::atomic::Ordering::Relaxed),
            a.cpus.load(core::sync::atomic::Ordering::Relaxed),
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
        for (cpu, c) in self.cpus.iter().enumerate() {
            let t = m.ttbr0(cpu);
            match t.mm {
                Some(mm) => write!(s, " | cpu{cpu}: mm{mm}/a{}", t.asid).unwrap(),
                None => write!(s, " | cpu{cpu}: reserved").unwrap(),
            }
            match c.task.as_ref().map(|t| &t.work) {
                Some(Work::Op(op) | Work::Teardown(op)) => write!(s, " [{:?} at {:?}]", op.call(), op.pc()).unwrap(),
                Some(w) => write!(s, " [{w:?}]").unwrap(),
                None => {}
            }
            if !m.pending(cpu).is_empty() {
                write!(s, " issued {:?}", m.pending(cpu).iter().map(|p| p.0).collect::<Vec<_>>()).unwrap();
            }
            s += " tlb{";
            for e in m.tlb(cpu).entries() {
                match *e {
                    Entry::Leaf { asid, vpn, pfn, writable, .. } => {
                        write!(s, " a{asid}:v{vpn}>{pfn}{}", if writable { "w" } else { "" }).unwrap()
                    }
                    Entry::Walk { asid, level, region, table, .. } => write!(s, " a{asid}:L{level}@{region}>{table}").unwrap(),
                }
            }
            s += " }";
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
