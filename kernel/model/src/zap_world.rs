//! The kernel's zapping operations as steps over the TLB model: munmap,
//! madvise(DONTNEED), mprotect, fork's write-protect (and the
//! copy-on-write fault after it), exit and the reaper, run by CPUs of one
//! address space `A` while its other threads keep accessing memory and the
//! hardware keeps walking. A [`System`] for `explore` and `random_walk`.
//!
//! Each operation is the sequence of steps its kernel function performs
//! ([`super::zap_steps`], each citing the function it mirrors), one per action,
//! so the checker interleaves them with everything else: other CPUs'
//! accesses (`Read`, `Write`, with the page faults they take), speculative
//! walks (`Speculate`, or after every action with [`Speculation::Eager`]),
//! another mm `B` mapping pages out of the frames `A` freed (`MapB`) and
//! idle CPUs switching to `B` (`RunB`). Page-table writes and the gather
//! come from [`super::zap_kernel`]; flushes are the real `RangePolicy`'s
//! plans, issued on the operating CPU and completed by its own DSB.
//!
//! Checked in every state: the machine's TLB invariants (no usable entry
//! leading to a frame that is not a live page or table of the running mm),
//! or with [`Checks::OtherMmOnly`] only entries leading into another mm's
//! frame. Checked when an operation returns (`TLBEmptyInvalPTE`): no CPU
//! holds a leaf of `A` for the pages it covered that differs from the page
//! table now, nor a writable one for a page now read-only. A write through
//! a stale writable entry into a frame shared copy-on-write is reported as
//! that check too.
//!
//! The model's TLB entries carry no permissions, so the world keeps, per
//! CPU, a second TLB of the leaf entries cached *writable* (`wtlb`): filled
//! from walks of TTBR0 that find a writable leaf, emptied by the same
//! invalidations at the same DSB. `A` has ASID 1, `B` ASID 2 (no rollover
//! here: `asid_world` checks the allocator). The fork child's tables are
//! not modelled: it never runs, so no TLB holds its entries; its pages are
//! frames shared with it (`shared`).

use core::fmt::Write as _;
use core::hash::{Hash, Hasher};
use std::cell::Cell;
use std::rc::Rc;

use super::explore::System;
use super::machine::{Machine, Ttbr0};
use super::mem::{Format, FrameUse, Memory, MmTag, Pfn};
use super::tlb::{Entry, Tlb};
use super::violation::Violation;
use super::zap_steps::{steps, Pc, Task};
use kernel::mm::tlb::{CpuFeatures, PolicyParams, Scope};

pub const A: MmTag = 1;
pub const ASID_A: u16 = 1;
pub const B: MmTag = 2;
pub const ASID_B: u16 = 2;
pub const CHILD: MmTag = 3;

/// An operation a CPU runs (pages `[lo, hi)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Munmap {
        lo: u64,
        hi: u64,
    },
    Madvise {
        lo: u64,
        hi: u64,
    },
    /// To read-only.
    Mprotect {
        lo: u64,
        hi: u64,
    },
    /// `mmap(MAP_FIXED)` over `[lo, hi)`: zaps what was there, then a new
    /// (read-write) VMA.
    MmapFixed {
        lo: u64,
        hi: u64,
    },
    Fork,
    /// This thread exits; the last one out tears `A` down.
    Exit,
    /// The reaper (a kernel thread) takes `A`'s memory.
    Reap,
    /// A page fault of a user access (started by the access, not scripted).
    Fault {
        vpn: u64,
        write: bool,
    },
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

/// Deliberate bugs, to show the checks catch them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// `tlb.nested_fix=off`: a zap that finishes while another is in flight
    /// flushes only its own range.
    pub no_nested_fix: bool,
    /// Plan flushes as if no table page was freed: leaf-only ops.
    pub leaf_only_after_free: bool,
    pub exit: Option<ExitBug>,
    /// No TLBI at all (to show each operation's check has teeth).
    pub skip_flush: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitBug {
    /// The exiting CPU keeps the dead mm in TTBR0 but clears its `mm.cpus`
    /// bit as if it had switched: the teardown elides.
    KeepTtbr0Elided,
    /// It keeps TTBR0 and its bit: `teardown_exit` sees the mm loaded and
    /// takes its fallback, one whole-ASID flush.
    KeepTtbr0Flushed,
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
    /// Pages `A` maps (its VMAs).
    pub pages: Vec<u64>,
    /// Per CPU, the operations it runs in order. A CPU whose script has
    /// `Reap` is the reaper's kernel thread (empty TTBR0); every other CPU
    /// runs a thread of `A`.
    pub scripts: Vec<Vec<Op>>,
    /// User accesses include writes.
    pub writes: bool,
    /// Page faults user accesses may take in a run.
    pub faults: u8,
    /// Pages `B` may map (each once), from whatever frames are free.
    pub b_pages: Vec<u64>,
    /// CPUs done with `A` may switch to `B`.
    pub run_b: bool,
    pub spare_frames: usize,
    pub speculation: Speculation,
    pub features: CpuFeatures,
    pub params: PolicyParams,
    pub bugs: Bugs,
    pub checks: Checks,
    /// States where every script is done are not expanded (for random
    /// walks: each such state ends an episode and the walk restarts).
    pub stop_when_done: bool,
}

impl Config {
    /// `ncpus` CPUs, a 3-level table of 2-entry tables (8 pages), `A`
    /// mapping pages 0, 1 and 2 (pages 0-1 and 2 in two leaf tables), `B`
    /// free to map pages 4 and 6, FEAT_TLBIRANGE and FEAT_TTL with the
    /// default policy, eager speculation, no faults, no bugs.
    pub fn new(scripts: Vec<Vec<Op>>) -> Self {
        Config {
            ncpus: scripts.len(),
            format: Format {
                levels: 3,
                fanout: 2,
            },
            pages: vec![0, 1, 2],
            scripts,
            writes: false,
            faults: 0,
            b_pages: vec![4, 6],
            run_b: false,
            spare_frames: 3,
            speculation: Speculation::Eager,
            features: CpuFeatures::RANGE_AND_TTL,
            params: PolicyParams::DEFAULT,
            bugs: Bugs::default(),
            checks: Checks::All,
            stop_when_done: false,
        }
    }
}

/// What the search saw happen, summed over every transition (clones share it).
#[derive(Debug, Default)]
pub struct Coverage {
    pub returns: Cell<u64>,
    pub frees: Cell<u64>,
    /// `B` mapped a page into frames `A` used before.
    pub reuses: Cell<u64>,
    pub zero_fills: Cell<u64>,
    pub cow_copies: Cell<u64>,
}

pub(super) fn inc(c: &Cell<u64>, n: u64) {
    c.set(c.get() + n);
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Cpu {
    /// Runs a thread of `A` (else the reaper's kernel thread).
    pub(super) user: bool,
    /// Next op of the script.
    pub(super) next: usize,
    pub(super) task: Option<Task>,
    /// The thread exited.
    pub(super) gone: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Start { cpu: usize, op: Op },
    Step { cpu: usize, pc: Pc },
    Read { cpu: usize, vpn: u64 },
    Write { cpu: usize, vpn: u64 },
    Speculate { cpu: usize },
    MapB { vpn: u64 },
    RunB { cpu: usize },
}

/// One state of the model system.
#[derive(Clone)]
pub struct World {
    pub(super) cfg: Rc<Config>,
    pub(super) coverage: Rc<Coverage>,
    pub(super) machine: Machine,
    /// Per CPU: the leaf entries cached writable.
    pub(super) wtlb: Vec<Tlb>,
    pub(super) cpus: Vec<Cpu>,
    /// CPU holding `A`'s mm lock.
    pub(super) lock: Option<usize>,
    /// `Mm::flush_pending`.
    pub(super) pending: u8,
    /// Threads of `A` not yet counted out.
    pub(super) live: u8,
    /// `Mm::cpus`: CPUs that have `A` loaded.
    pub(super) loaded: u32,
    /// Bit per page: in a VMA; in a read-only VMA; leaf read-only.
    pub(super) vma: u32,
    pub(super) vma_ro: u32,
    pub(super) ro: u32,
    /// Frames shared copy-on-write with the child.
    pub(super) shared: Vec<(Pfn, MmTag)>,
    /// `teardown_exit` took the address space: `A` is being torn down.
    pub(super) taken: bool,
    pub(super) b_mapped: u32,
    pub(super) faults: u8,
    pub(super) root_a: Pfn,
    /// `B` is created (its root allocated) when it first maps a page.
    pub(super) root_b: Option<Pfn>,
    /// Frames `A` was built from (the lowest ones).
    pub(super) a_frames: Pfn,
}

impl Hash for World {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.machine.hash(h);
        if self.cfg.writes {
            self.wtlb.hash(h);
        }
        self.cpus.hash(h);
        (
            self.lock,
            self.pending,
            self.live,
            self.loaded,
            self.vma,
            self.vma_ro,
            self.ro,
        )
            .hash(h);
        (
            &self.shared,
            self.taken,
            self.b_mapped,
            self.root_b,
            self.faults,
        )
            .hash(h);
    }
}

pub(super) fn bit(vpn: u64) -> u32 {
    1 << vpn
}

pub(super) fn mask(lo: u64, hi: u64) -> u32 {
    (lo..hi).fold(0, |m, v| m | bit(v))
}

impl World {
    pub fn new(cfg: Config) -> Self {
        assert_eq!(cfg.scripts.len(), cfg.ncpus, "one script per CPU");
        assert!(cfg.format.pages() <= 32, "page masks are u32");
        let mut scratch = Memory::new(cfg.format, 64);
        let root = scratch.new_root(A).unwrap();
        for &vpn in &cfg.pages {
            scratch.map(A, root, vpn).expect("scratch memory too small");
        }
        let a_frames = (64 - scratch.free_frames()) as Pfn;
        let mut machine = Machine::new(cfg.ncpus, cfg.format, a_frames as usize + cfg.spare_frames);
        let mem = machine.mem_mut();
        let root_a = mem.new_root(A).unwrap();
        for &vpn in &cfg.pages {
            mem.map(A, root_a, vpn).unwrap();
        }
        let mut w = World {
            coverage: Rc::default(),
            machine,
            wtlb: vec![Tlb::default(); cfg.ncpus],
            cpus: Vec::new(),
            lock: None,
            pending: 0,
            live: 0,
            loaded: 0,
            vma: cfg.pages.iter().fold(0, |m, &v| m | bit(v)),
            vma_ro: 0,
            ro: 0,
            shared: Vec::new(),
            taken: false,
            b_mapped: 0,
            faults: cfg.faults,
            root_a,
            root_b: None,
            a_frames,
            cfg: Rc::new(cfg),
        };
        for cpu in 0..w.cfg.ncpus {
            let user = !w.cfg.scripts[cpu].contains(&Op::Reap);
            if user {
                w.machine.set_ttbr0(cpu, Ttbr0::user(root_a, ASID_A, A));
                w.loaded |= 1 << cpu;
                w.live += 1;
            }
            w.cpus.push(Cpu {
                user,
                next: 0,
                task: None,
                gone: false,
            });
            // Scheduled speculation starts cold (warm states are reachable
            // through `Speculate`); eager speculation fills at once.
            if w.cfg.speculation == Speculation::Eager {
                w.fill(cpu);
            }
        }
        w
    }

    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub(super) fn mem(&self) -> &Memory {
        self.machine.mem()
    }

    fn frames(&self) -> Pfn {
        self.a_frames + self.cfg.spare_frames as Pfn
    }

    pub(super) fn pages(&self) -> u64 {
        self.cfg.format.pages()
    }

    /// `A`'s current translation of `vpn` (none once its address space
    /// was taken for teardown).
    pub(super) fn pte(&self, vpn: u64) -> Option<Pfn> {
        (!self.taken)
            .then(|| self.mem().translate(self.root_a, vpn))
            .flatten()
    }

    pub(super) fn writable(&self, vpn: u64) -> Option<Pfn> {
        self.pte(vpn).filter(|_| self.ro & bit(vpn) == 0)
    }

    /// A speculative walk on `cpu`, and the writable entries it caches.
    pub(super) fn fill(&mut self, cpu: usize) {
        self.machine.speculate(cpu);
        if self.cfg.writes && self.machine.ttbr0(cpu).mm == Some(A) {
            for vpn in 0..self.pages() {
                if let Some(pfn) = self.writable(vpn) {
                    self.wtlb[cpu].insert(Entry::Leaf {
                        asid: ASID_A,
                        vpn,
                        pfn,
                        mm: A,
                    });
                }
            }
        }
    }

    /// `DSB` on `cpu`: its TLBIs complete, in both TLBs of every CPU they reach.
    pub(super) fn dsb(&mut self, cpu: usize) {
        let ops = self.machine.pending(cpu).to_vec();
        self.machine.dsb(cpu);
        let f = self.cfg.format;
        for (op, scope) in ops {
            let reached = match scope {
                Scope::Local => cpu..cpu + 1,
                Scope::Broadcast => 0..self.wtlb.len(),
            };
            for c in reached {
                self.wtlb[c].invalidate(&op, f);
            }
        }
    }

    /// The pages an operation covers.
    fn covered(&self, op: Op) -> core::ops::Range<u64> {
        match op {
            Op::Munmap { lo, hi }
            | Op::Madvise { lo, hi }
            | Op::Mprotect { lo, hi }
            | Op::MmapFixed { lo, hi } => lo..hi,
            Op::Fault { vpn, .. } => vpn..vpn + 1,
            _ => 0..self.pages(),
        }
    }

    /// Every translation of `op`'s pages that exists right now: in the page
    /// table and in any CPU's TLB (`false`) or writable TLB (`true`).
    pub(super) fn snapshot(&self, op: Op) -> Vec<(u64, Pfn, bool)> {
        let mut old = Vec::new();
        for vpn in self.covered(op) {
            old.extend(self.pte(vpn).map(|p| (vpn, p, false)));
            old.extend(self.writable(vpn).map(|p| (vpn, p, true)));
            for cpu in 0..self.cpus.len() {
                for (t, w) in [(self.machine.tlb(cpu), false), (&self.wtlb[cpu], true)] {
                    for e in t.entries() {
                        if let Entry::Leaf {
                            asid: ASID_A,
                            vpn: v,
                            pfn,
                            mm: A,
                        } = *e
                        {
                            if v == vpn && !old.contains(&(vpn, pfn, w)) {
                                old.push((vpn, pfn, w));
                            }
                        }
                    }
                }
            }
        }
        old.sort_unstable();
        old
    }

    /// TLBEmptyInvalPTE when an operation on `vpns` returns: no CPU that
    /// can still use `A`'s ASID holds a translation that existed when the
    /// operation started (`old`) and that the page table no longer has,
    /// nor a writable one the page table no longer grants.
    pub(super) fn returned(
        &self,
        vpns: core::ops::Range<u64>,
        old: &[(u64, Pfn, bool)],
    ) -> Result<(), Violation> {
        for vpn in vpns {
            let (now, now_w) = (self.pte(vpn), self.writable(vpn));
            for cpu in 0..self.cpus.len() {
                if self.live == 0 && self.machine.ttbr0(cpu).mm != Some(A) {
                    continue; // No thread of A is left to run here again.
                }
                let stale = |t: &Tlb, want: Option<Pfn>, w: bool| {
                    t.entries().iter().any(|e| {
                        matches!(*e, Entry::Leaf { asid: ASID_A, vpn: v, pfn, mm: A }
                            if v == vpn && Some(pfn) != want && old.contains(&(vpn, pfn, w)))
                    })
                };
                if stale(self.machine.tlb(cpu), now, false) || stale(&self.wtlb[cpu], now_w, true) {
                    return Err(Violation::TlbEmptyInvalPte {
                        cpu,
                        mm: A,
                        vpn,
                        asid: ASID_A,
                    });
                }
            }
        }
        Ok(())
    }

    /// Leaf entries usable under a CPU's TTBR0 that lead into another mm's frame.
    fn other_mm(&self) -> Result<(), Violation> {
        for cpu in 0..self.cpus.len() {
            let Ttbr0 {
                asid, mm: Some(mm), ..
            } = self.machine.ttbr0(cpu)
            else {
                continue;
            };
            for e in self.machine.tlb(cpu).entries() {
                let Entry::Leaf {
                    asid: a, vpn, pfn, ..
                } = *e
                else {
                    continue;
                };
                let frame = self.mem().use_of(pfn);
                let owner = match frame {
                    FrameUse::Data { mm } | FrameUse::Table { mm, .. } => Some(mm),
                    FrameUse::Free => None,
                };
                if a == asid && owner.is_some_and(|o| o != mm) {
                    return Err(Violation::StaleTranslation {
                        cpu,
                        mm,
                        asid,
                        vpn,
                        pfn,
                        frame,
                    });
                }
            }
        }
        Ok(())
    }

    fn check_state(&self) -> Result<(), Violation> {
        match self.cfg.checks {
            Checks::All => self.machine.check_tlbs(),
            Checks::OtherMmOnly => self.other_mm(),
        }
    }

    fn idle(&self, cpu: usize) -> bool {
        let c = &self.cpus[cpu];
        c.task.is_none() && (c.gone || (!c.user && c.next == self.cfg.scripts[cpu].len()))
    }
}

impl System for World {
    type Action = Action;

    fn actions(&self, out: &mut Vec<Action>) {
        let scheduled = self.cfg.speculation == Speculation::Scheduled;
        for (cpu, c) in self.cpus.iter().enumerate() {
            let ttbr0 = self.machine.ttbr0(cpu);
            match &c.task {
                Some(t) => {
                    let pc = *t.todo.last().unwrap();
                    if !(matches!(pc, Pc::Lock | Pc::Take) && self.lock.is_some()) {
                        out.push(Action::Step { cpu, pc });
                    }
                }
                None if !c.gone => {
                    if let Some(&op) = self.cfg.scripts[cpu].get(c.next) {
                        out.push(Action::Start { cpu, op });
                    }
                    if c.user && ttbr0.mm == Some(A) {
                        for &vpn in &self.cfg.pages {
                            out.push(Action::Read { cpu, vpn });
                            if self.cfg.writes {
                                out.push(Action::Write { cpu, vpn });
                            }
                        }
                    }
                }
                None => {}
            }
            if scheduled && ttbr0.mm.is_some() {
                out.push(Action::Speculate { cpu });
            }
            if self.cfg.run_b && self.root_b.is_some() && self.idle(cpu) && ttbr0.mm != Some(B) {
                out.push(Action::RunB { cpu });
            }
        }
        let needed = self.cfg.format.levels as usize + self.root_b.is_none() as usize;
        let enough = self.mem().free_frames() >= needed;
        for &vpn in self
            .cfg
            .b_pages
            .iter()
            .filter(|&&v| enough && self.b_mapped & bit(v) == 0)
        {
            out.push(Action::MapB { vpn });
        }
    }

    fn apply(&mut self, a: &Action) -> Result<(), Violation> {
        match *a {
            Action::Start { cpu, op } => {
                let mut t = Task::new(op, steps(op));
                t.old = self.snapshot(op);
                self.cpus[cpu].task = Some(t);
            }
            Action::Step { cpu, .. } => self.step(cpu)?,
            Action::Read { cpu, vpn } => self.access(cpu, vpn, false)?,
            Action::Write { cpu, vpn } => self.access(cpu, vpn, true)?,
            Action::Speculate { cpu } => self.fill(cpu),
            Action::MapB { vpn } => {
                let before: Vec<Pfn> = (0..self.a_frames)
                    .filter(|&p| self.mem().use_of(p) == FrameUse::Free)
                    .collect();
                let mem = self.machine.mem_mut();
                let root = *self
                    .root_b
                    .get_or_insert_with(|| mem.new_root(B).expect("frames were counted"));
                mem.map(B, root, vpn).expect("frames were counted");
                self.b_mapped |= bit(vpn);
                if before
                    .iter()
                    .any(|&p| self.mem().use_of(p) != FrameUse::Free)
                {
                    inc(&self.coverage.reuses, 1);
                }
            }
            Action::RunB { cpu } => {
                let root = self.root_b.expect("B exists");
                self.machine.set_ttbr0(cpu, Ttbr0::user(root, ASID_B, B));
            }
        }
        if self.cfg.speculation == Speculation::Eager {
            for cpu in 0..self.cpus.len() {
                self.fill(cpu);
            }
        }
        self.check_state()
    }

    fn check(&self) -> Result<(), Violation> {
        self.check_state()
    }

    fn expand(&self) -> bool {
        let done =
            |(cpu, c): (usize, &Cpu)| c.task.is_none() && c.next == self.cfg.scripts[cpu].len();
        !(self.cfg.stop_when_done && self.cpus.iter().enumerate().all(done))
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "lock {:?} pending {} live {} | A{{",
            self.lock, self.pending, self.live
        );
        for vpn in (0..self.pages()).filter(|&v| self.pte(v).is_some()) {
            write!(
                s,
                " v{vpn}>{}{}",
                self.pte(vpn).unwrap(),
                if self.writable(vpn).is_some() {
                    ""
                } else {
                    "(ro)"
                }
            )
            .unwrap();
        }
        s += " }";
        for (cpu, c) in self.cpus.iter().enumerate() {
            let t = self.machine.ttbr0(cpu);
            match t.mm {
                Some(mm) => write!(s, " | cpu{cpu}: mm{mm}").unwrap(),
                None => write!(s, " | cpu{cpu}: empty").unwrap(),
            }
            if let Some(task) = &c.task {
                write!(s, " [{:?} next {:?}]", task.op, task.todo.last().unwrap()).unwrap();
            }
            if !self.machine.pending(cpu).is_empty() {
                write!(
                    s,
                    " issued {:?}",
                    self.machine
                        .pending(cpu)
                        .iter()
                        .map(|p| p.0)
                        .collect::<Vec<_>>()
                )
                .unwrap();
            }
            s += " tlb{";
            for e in self.machine.tlb(cpu).entries() {
                match *e {
                    Entry::Leaf { asid, vpn, pfn, .. } => {
                        write!(s, " a{asid}:v{vpn}>{pfn}").unwrap()
                    }
                    Entry::Walk {
                        asid,
                        level,
                        region,
                        table,
                        ..
                    } => write!(s, " a{asid}:L{level}@{region}>{table}").unwrap(),
                }
                if self.wtlb[cpu].entries().contains(e) {
                    s += "(w)";
                }
            }
            s += " }";
        }
        s += " | frames";
        for p in 0..self.frames() {
            match self.mem().use_of(p) {
                FrameUse::Free => write!(s, " {p}:-").unwrap(),
                FrameUse::Table { mm, level } => write!(s, " {p}:T{mm}.{level}").unwrap(),
                FrameUse::Data { mm } => write!(s, " {p}:D{mm}").unwrap(),
            }
        }
        s
    }
}
