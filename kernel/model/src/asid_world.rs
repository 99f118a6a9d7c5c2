//! The real ASID allocator in a model system: CPUs switch among address
//! spaces that are created, exit, have pages unmapped and get pinned, over
//! the TLB model. A [`System`] for `explore` and `random_walk`.
//!
//! Each allocator operation runs as the allocator's own resumable steps
//! (`AsidAllocator::step`), one step per action, so the checker interleaves a
//! fast path on one CPU with a rollover on another at every shared access.
//! Around the allocator, a CPU:
//! * `Switch` starts `switch_in`; `Step` advances it; `LoadTtbr` writes the
//!   returned ASID and the mm's tables to TTBR0 (the caller's job).
//! * `Idle` loads the reserved TTBR0 (ASID 0, empty table), as before an exit.
//! * `Speculate` is the hardware filling entries from the current TTBR0
//!   (in `Speculation::Eager` mode it happens after every action instead).
//! * `UnmapClear`/`UnmapTlbi`/`UnmapDsb`: the running mm clears a PTE, issues
//!   `TLBI VALE1IS` with the mm's ASID, and completes it with a DSB, then
//!   frees the frame and maps a fresh one.
//! * `Pin`/`Unpin` run the allocator's pin/unpin steps.
//!
//! `Exit` tears an mm down with no TLBI at all once no CPU has its TTBR0
//! (section 4: its ASID is not reused before a rollover, and every CPU
//! flushes before it runs a new-generation ASID). `Create` builds a new mm
//! in a dead slot, from the lowest free frames, so freed frames come back at
//! once under another mm.
#![forbid(unsafe_code)]

use core::hash::{Hash, Hasher};
use std::cell::Cell;
use std::rc::Rc;

use super::explore::System;
use super::machine::{Machine, ModelCpu};
use super::mem::{Format, MmTag, Pfn};
use super::violation::Violation;
use kernel::mm::asid::{asid_of, generation_of, AsidAllocator, AsidOp, Bugs, MmContext, Request};

mod system;

pub use system::Action;

/// When the hardware fills TLB entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speculation {
    /// Only when the checker schedules a `Speculate` action.
    Scheduled,
    /// After every action, everything reachable (the worst case: fills only
    /// add entries, and every invariant only gets harder with more entries).
    Eager,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub ncpus: usize,
    pub bits: u32,
    /// Address-space slots, all alive at the start.
    pub mms: usize,
    /// How many of them (the first ones) are pinned, through the real
    /// `pin`, at the start.
    pub pinned: usize,
    /// The pinned mms are used by a device only and never run on a CPU.
    pub pinned_device_only: bool,
    /// Complete switches `(cpu, slot)` run one after another, before the
    /// search starts (through the same checked actions), to start it from a
    /// busy state: e.g. a generation with no free ASID left.
    pub warmup: Vec<(usize, usize)>,
    /// Pages each mm maps.
    pub pages: Vec<u64>,
    pub format: Format,
    /// States in which a rollover beyond this many has begun are not
    /// expanded. `None`: no bound.
    pub max_rollovers: Option<u64>,
    /// Budgets over a whole run. `None`: unbounded.
    pub exits: Option<u32>,
    pub creates: Option<u32>,
    pub unmaps: Option<u32>,
    pub pin_ops: Option<u32>,
    /// Context switches started, over the whole run.
    pub switches: Option<u32>,
    pub speculation: Speculation,
    /// The caller's protocol: load the reserved TTBR0 (ASID 0, empty table)
    /// before `switch_in`, as the allocator's contract requires. Off, TTBR0
    /// keeps the previous mm until the new one is loaded (see the test
    /// `old_ttbr0_during_switch_is_caught`).
    pub reserved_ttbr0_in_switch: bool,
    pub bugs: Bugs,
    /// Also check the allocator's bookkeeping (UniqueASIDPerGeneration,
    /// RunningASIDReserved, FlushBeforeNewGeneration, PinnedASIDStable).
    /// Off, only what the TLB model sees (and SameASIDActiveTask) is checked.
    pub bookkeeping_checks: bool,
}

impl Config {
    /// A small system for exhaustive search: one page per mm, a 2-level
    /// table with 2 entries per table, no budgets beyond `max_rollovers`.
    pub fn small(ncpus: usize, bits: u32, mms: usize) -> Self {
        Config {
            ncpus,
            bits,
            mms,
            pinned: 0,
            pinned_device_only: false,
            warmup: Vec::new(),
            pages: vec![0],
            format: Format { levels: 2, fanout: 2 },
            max_rollovers: Some(2),
            exits: Some(0),
            creates: Some(0),
            unmaps: Some(0),
            pin_ops: Some(0),
            switches: None,
            speculation: Speculation::Eager,
            reserved_ttbr0_in_switch: true,
            bugs: Bugs::NONE,
            bookkeeping_checks: true,
        }
    }

    fn frames(&self) -> usize {
        let tables = 1 + self.pages.len() * (self.format.levels as usize - 1);
        self.mms * (tables + self.pages.len()) + self.ncpus + 2
    }
}

/// What the search saw happen, summed over every transition it took (clones
/// of a world share it).
#[derive(Debug, Default)]
pub struct Coverage {
    /// Fast-path compare-and-swaps that failed because a rollover zeroed
    /// `active` after the fast path read it.
    pub cas_lost_to_rollover: Cell<u64>,
    /// Fast-path compare-and-swaps that succeeded while another CPU was
    /// inside a rollover (so the rollover had to reserve what they wrote).
    pub cas_won_during_rollover: Cell<u64>,
    pub rollovers: Cell<u64>,
    pub fast_switches: Cell<u64>,
    pub rollover_flushes: Cell<u64>,
    pub pins_refused: Cell<u64>,
    pub exits: Cell<u64>,
    pub unmaps: Cell<u64>,
}

fn inc(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Life {
    Dead,
    Alive { tag: MmTag, root: Pfn, pinned: Option<u16> },
}

#[derive(Clone, Hash)]
struct Slot {
    ctx: MmContext,
    life: Life,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Unmap {
    Cleared { vpn: u64, pfn: Pfn },
    Issued { vpn: u64, pfn: Pfn, asid: u16 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct CpuCtl {
    /// Slot whose tables TTBR0 holds; `None`: the reserved TTBR0.
    running: Option<usize>,
    /// An allocator operation in flight, for a slot.
    op: Option<(usize, AsidOp)>,
    /// `switch_in` returned this ASID for this slot; TTBR0 not yet written.
    ready: Option<(usize, u16)>,
    unmap: Option<Unmap>,
    /// Generation at this CPU's last local full flush (ghost).
    flushed_gen: u64,
}

impl CpuCtl {
    fn busy(&self) -> bool {
        self.op.is_some() || self.ready.is_some() || self.unmap.is_some()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Budget {
    exits: Option<u32>,
    creates: Option<u32>,
    unmaps: Option<u32>,
    pin_ops: Option<u32>,
    switches: Option<u32>,
}

fn has(b: Option<u32>) -> bool {
    b != Some(0)
}

fn spend(b: &mut Option<u32>) {
    if let Some(n) = b {
        *n = n.saturating_sub(1);
    }
}

/// One state of the model system.
#[derive(Clone)]
pub struct World {
    cfg: Rc<Config>,
    coverage: Rc<Coverage>,
    alloc: AsidAllocator,
    machine: Machine,
    slots: Vec<Slot>,
    cpus: Vec<CpuCtl>,
    budget: Budget,
    next_tag: MmTag,
}

impl Hash for World {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.alloc.hash(h);
        self.machine.hash(h);
        self.slots.hash(h);
        self.cpus.hash(h);
        self.budget.hash(h);
        self.next_tag.hash(h);
    }
}

impl World {
    pub fn new(cfg: Config) -> Self {
        let alloc = AsidAllocator::new(cfg.bits, cfg.ncpus, cfg.bugs)
            .unwrap_or_else(|e| panic!("bad model config {cfg:?}: {e}"));
        let machine = Machine::new(cfg.ncpus, cfg.format, cfg.frames());
        let flushed_gen = alloc.generation();
        let slot = Slot { ctx: MmContext::new(), life: Life::Dead };
        let mut w = World {
            alloc,
            machine,
            slots: vec![slot; cfg.mms],
            cpus: vec![CpuCtl { flushed_gen, ..CpuCtl::default() }; cfg.ncpus],
            budget: Budget {
                exits: cfg.exits,
                creates: cfg.creates,
                unmaps: cfg.unmaps,
                pin_ops: cfg.pin_ops,
                switches: cfg.switches,
            },
            next_tag: 1,
            coverage: Rc::default(),
            cfg: Rc::new(cfg),
        };
        for slot in 0..w.slots.len() {
            w.create(slot);
        }
        for slot in 0..w.cfg.pinned {
            let hw = ModelCpu::new(0, &mut w.machine);
            let asid = w.alloc.pin(&hw, &w.slots[slot].ctx).expect("initial pin");
            if let Life::Alive { pinned, .. } = &mut w.slots[slot].life {
                *pinned = Some(asid);
            }
        }
        for (cpu, slot) in w.cfg.warmup.clone() {
            let mut actions = vec![Action::Switch { cpu, slot }];
            while let Some(a) = actions.pop() {
                w.apply(&a).unwrap_or_else(|v| panic!("warm-up {a:?}: {v}"));
                if w.cpus[cpu].op.is_some() {
                    actions.push(Action::Step { cpu });
                } else if w.cpus[cpu].ready.is_some() {
                    actions.push(Action::LoadTtbr { cpu });
                }
            }
        }
        w.budget.switches = w.cfg.switches;
        w
    }

    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn rollovers(&self) -> u64 {
        (self.alloc.generation() >> 16) - 1
    }

    fn alive(&self, slot: usize) -> Option<(MmTag, Pfn, Option<u16>)> {
        match self.slots[slot].life {
            Life::Alive { tag, root, pinned } => Some((tag, root, pinned)),
            Life::Dead => None,
        }
    }

    fn create(&mut self, slot: usize) {
        let tag = self.next_tag;
        self.next_tag += 1;
        let mem = self.machine.mem_mut();
        let root = mem.new_root(tag).expect("model memory too small");
        for &vpn in &self.cfg.pages {
            mem.map(tag, root, vpn).expect("model memory too small");
        }
        self.slots[slot] = Slot { ctx: MmContext::new(), life: Life::Alive { tag, root, pinned: None } };
    }

    fn in_use(&self, slot: usize) -> bool {
        self.cpus.iter().any(|c| {
            c.running == Some(slot) || c.op.is_some_and(|o| o.0 == slot) || c.ready.is_some_and(|r| r.0 == slot)
        })
    }

    /// The invariants of the current state.
    fn check_state(&self) -> Result<(), Violation> {
        self.machine.check_tlbs()?;
        // SameASIDActiveTask, over CPUs outside a context switch.
        let settled = |c: usize| !self.cpus[c].busy();
        for c1 in (0..self.cpus.len()).filter(|&c| settled(c)) {
            for c2 in (c1 + 1..self.cpus.len()).filter(|&c| settled(c)) {
                let (t1, t2) = (self.machine.ttbr0(c1), self.machine.ttbr0(c2));
                if let (Some(mm), true) = (t1.mm, t1.mm == t2.mm && t1.asid != t2.asid) {
                    return Err(Violation::SameAsidActiveTask { mm, cpus: (c1, c2), asids: (t1.asid, t2.asid) });
                }
            }
        }
        if self.cfg.bookkeeping_checks {
            self.check_bookkeeping()?;
        }
        Ok(())
    }

    fn check_bookkeeping(&self) -> Result<(), Violation> {
        let generation = self.alloc.generation();
        let live: Vec<(MmTag, u64, Option<u16>)> = (0..self.slots.len())
            .filter_map(|s| self.alive(s).map(|(tag, _, pinned)| (tag, self.slots[s].ctx.id(), pinned)))
            .collect();
        for (i, &(m1, id1, pin1)) in live.iter().enumerate() {
            for &(m2, id2, _) in &live[i + 1..] {
                if id1 != 0 && id2 != 0 && generation_of(id1) == generation_of(id2) && asid_of(id1) == asid_of(id2) {
                    let (asid, generation) = (asid_of(id1), generation_of(id1));
                    return Err(Violation::AsidSharedInGeneration { asid, generation, mms: (m1, m2) });
                }
            }
            if let Some(pinned) = pin1 {
                let now = (id1 != 0).then(|| asid_of(id1));
                let other = live.iter().find(|&&(m, id, _)| {
                    m != m1 && id != 0 && generation_of(id) == generation && asid_of(id) == pinned
                });
                if now != Some(pinned) || other.is_some() {
                    return Err(Violation::PinnedAsid { mm: m1, pinned, now, other: other.map(|o| o.0) });
                }
            }
        }
        // RunningASIDReserved (the rollover rebuilds the bitmap under the lock).
        if !self.alloc.lock_held() {
            for (cpu, c) in self.cpus.iter().enumerate() {
                let t = self.machine.ttbr0(cpu);
                let (Some(mm), false) = (t.mm, c.busy()) else {
                    continue;
                };
                let record = match self.alloc.active_id(cpu) {
                    0 => self.alloc.reserved_id(cpu),
                    id => id,
                };
                let taken = self.alloc.is_taken(t.asid);
                if asid_of(record) != t.asid || !taken {
                    return Err(Violation::RunningAsidNotReserved { cpu, mm, asid: t.asid, record, taken });
                }
            }
        }
        Ok(())
    }
}
