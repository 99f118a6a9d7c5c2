//! The actions of the model system, and the `System` impl that the
//! exhaustive search and the random walker drive.

use core::fmt::Write;

use super::{has, inc, spend, Life, Request, Speculation, Unmap, World};
use crate::explore::System;
use crate::machine::{ModelCpu, Ttbr0};
use crate::violation::Violation;
use kernel::mm::asid::{asid_of, generation_of, AsidOp, Phase, Step};
use kernel::mm::tlb::{Scope, TlbiOp};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Start `switch_in` of `slot`'s mm on `cpu` (after loading the reserved
    /// TTBR0, if the configuration says so).
    Switch {
        cpu: usize,
        slot: usize,
    },
    /// Advance `cpu`'s allocator operation by one visible step.
    Step {
        cpu: usize,
    },
    /// Write the ASID `switch_in` returned, and the mm's tables, to TTBR0.
    LoadTtbr {
        cpu: usize,
    },
    /// Load the reserved TTBR0 (as before an exit).
    Idle {
        cpu: usize,
    },
    /// The hardware fills `cpu`'s TLB from what its TTBR0 reaches.
    Speculate {
        cpu: usize,
    },
    Pin {
        cpu: usize,
        slot: usize,
    },
    Unpin {
        cpu: usize,
        slot: usize,
    },
    /// Tear an mm down with no TLBI (no CPU has it in TTBR0).
    Exit {
        slot: usize,
    },
    /// Build a new mm in a dead slot.
    Create {
        slot: usize,
    },
    /// The running mm clears a PTE (then `DSB ISHST`)...
    UnmapClear {
        cpu: usize,
        vpn: u64,
    },
    /// ...issues `TLBI VALE1IS` with its ASID...
    UnmapTlbi {
        cpu: usize,
    },
    /// ...completes it with `DSB ISH`, frees the frame and maps a new one.
    UnmapDsb {
        cpu: usize,
    },
}

impl World {
    /// Advance `cpu`'s op; true if it flushed the local TLB.
    fn step(&mut self, cpu: usize) -> Result<bool, Violation> {
        let (slot, mut op) = self.cpus[cpu].op.expect("step without an op");
        let generation = self.alloc.generation();
        let before = op.phase();
        let hw = ModelCpu::new(cpu, &mut self.machine);
        // One visible step, then every private step after it (see
        // `AsidOp::next_step_is_private`: they commute with everything the
        // other CPUs do, so running them at once loses no interleaving).
        let mut res = self.alloc.step(&mut op, &hw, &self.slots[slot].ctx);
        while res == Step::Ran && op.next_step_is_private(cpu) {
            res = self.alloc.step(&mut op, &hw, &self.slots[slot].ctx);
        }
        let flushed = hw.flushes() > 0;
        let cov = &self.coverage;
        if flushed {
            self.cpus[cpu].flushed_gen = self.alloc.generation();
            inc(&cov.rollover_flushes);
        }
        if self.alloc.generation() != generation {
            inc(&cov.rollovers);
        }
        if before == Phase::FastCas {
            if op.phase() == Phase::WaitLock {
                inc(&cov.cas_lost_to_rollover);
            } else {
                inc(&cov.fast_switches);
                let rolling = self.cpus.iter().any(|c| c.op.is_some_and(|o| o.1.phase() == Phase::Rollover));
                if rolling {
                    inc(&cov.cas_won_during_rollover);
                }
            }
        }
        let res = match res {
            Step::Blocked => unreachable!("blocked steps are not enabled"),
            Step::Ran => {
                self.cpus[cpu].op = Some((slot, op));
                return Ok(flushed);
            }
            Step::Done(res) => res,
        };
        self.cpus[cpu].op = None;
        let Life::Alive { pinned, .. } = &mut self.slots[slot].life else { unreachable!("op on a dead mm") };
        match (op.request(), res) {
            (Request::Switch, Ok(id)) => {
                let flushed_generation = self.cpus[cpu].flushed_gen;
                if self.cfg.bookkeeping_checks && generation_of(id) > flushed_generation {
                    return Err(Violation::NewGenerationBeforeFlush { cpu, id, flushed_generation });
                }
                self.cpus[cpu].ready = Some((slot, asid_of(id)));
            }
            (Request::Pin, Ok(id)) => *pinned = Some(asid_of(id)),
            (Request::Pin, Err(_)) => inc(&cov.pins_refused),
            (Request::Unpin, _) => *pinned = None,
            (req, res) => unreachable!("{req:?} -> {res:?}"),
        }
        Ok(flushed)
    }

    fn unmap_dsb(&mut self, cpu: usize) -> Result<(), Violation> {
        let Some(Unmap::Issued { vpn, pfn, asid }) = self.cpus[cpu].unmap.take() else {
            unreachable!("DSB of an unmap that issued no TLBI")
        };
        let slot = self.cpus[cpu].running.expect("unmap by a running mm");
        let (tag, root, _) = self.alive(slot).expect("running mm is alive");
        self.machine.dsb(cpu);
        // The ASIDs the mm may be running with: the one the TLBI used, the
        // one it has now, and any in a TTBR0 that holds its tables.
        let mut asids = vec![asid];
        asids.extend(self.slots[slot].ctx.asid());
        for c in 0..self.cpus.len() {
            let t = self.machine.ttbr0(c);
            if t.mm == Some(tag) {
                asids.push(t.asid);
            }
        }
        self.machine.check_invalidated(tag, vpn..vpn + 1, &asids)?;
        let mem = self.machine.mem_mut();
        mem.free(pfn);
        mem.map(tag, root, vpn).expect("model memory too small");
        inc(&self.coverage.unmaps);
        Ok(())
    }
}

impl System for World {
    type Action = Action;

    fn actions(&self, out: &mut Vec<Action>) {
        let b = &self.budget;
        let scheduled = self.cfg.speculation == Speculation::Scheduled;
        for (cpu, c) in self.cpus.iter().enumerate() {
            if let Some((_, op)) = &c.op {
                if !self.alloc.would_block(op) {
                    out.push(Action::Step { cpu });
                }
            }
            if c.ready.is_some() {
                out.push(Action::LoadTtbr { cpu });
            }
            if scheduled && c.running.is_some() {
                out.push(Action::Speculate { cpu });
            }
            match c.unmap {
                Some(Unmap::Cleared { .. }) => out.push(Action::UnmapTlbi { cpu }),
                Some(Unmap::Issued { .. }) => out.push(Action::UnmapDsb { cpu }),
                None => {}
            }
            if c.busy() {
                continue;
            }
            for slot in 0..self.slots.len() {
                let Some((_, root, pinned)) = self.alive(slot) else {
                    continue;
                };
                let device_only = self.cfg.pinned_device_only && slot < self.cfg.pinned;
                if c.running != Some(slot) && has(b.switches) && !device_only {
                    out.push(Action::Switch { cpu, slot });
                }
                // One pin/unpin at a time per mm, so the world's view of the
                // pin count stays exact.
                let op_on_slot = self.cpus.iter().any(|c| c.op.is_some_and(|o| o.0 == slot));
                if has(b.pin_ops) && !op_on_slot {
                    out.push(match pinned {
                        None => Action::Pin { cpu, slot },
                        Some(_) => Action::Unpin { cpu, slot },
                    });
                }
                if c.running == Some(slot) && has(b.unmaps) {
                    for &vpn in &self.cfg.pages {
                        if self.machine.mem().translate(root, vpn).is_some() {
                            out.push(Action::UnmapClear { cpu, vpn });
                        }
                    }
                }
            }
            // Going idle matters only to let an mm exit.
            if c.running.is_some() && has(b.exits) {
                out.push(Action::Idle { cpu });
            }
        }
        for slot in 0..self.slots.len() {
            match self.alive(slot) {
                Some((_, _, None)) if has(b.exits) && !self.in_use(slot) => out.push(Action::Exit { slot }),
                None if has(b.creates) => out.push(Action::Create { slot }),
                _ => {}
            }
        }
    }

    fn apply(&mut self, a: &Action) -> Result<(), Violation> {
        let mut flushed = false;
        match *a {
            Action::Switch { cpu, slot } => {
                spend(&mut self.budget.switches);
                if self.cfg.reserved_ttbr0_in_switch {
                    self.machine.set_ttbr0(cpu, Ttbr0::RESERVED);
                    self.cpus[cpu].running = None;
                }
                self.cpus[cpu].op = Some((slot, AsidOp::new(Request::Switch)));
            }
            Action::Step { cpu } => flushed = self.step(cpu)?,
            Action::LoadTtbr { cpu } => {
                let (slot, asid) = self.cpus[cpu].ready.take().expect("nothing to load");
                let (tag, root, _) = self.alive(slot).expect("switched to a dead mm");
                self.machine.set_ttbr0(cpu, Ttbr0::user(root, asid, tag));
                self.cpus[cpu].running = Some(slot);
            }
            Action::Idle { cpu } => {
                self.machine.set_ttbr0(cpu, Ttbr0::RESERVED);
                self.cpus[cpu].running = None;
            }
            Action::Speculate { cpu } => {
                self.machine.speculate(cpu);
            }
            Action::Pin { cpu, slot } | Action::Unpin { cpu, slot } => {
                spend(&mut self.budget.pin_ops);
                let req = if matches!(a, Action::Pin { .. }) { Request::Pin } else { Request::Unpin };
                self.cpus[cpu].op = Some((slot, AsidOp::new(req)));
            }
            Action::Exit { slot } => {
                spend(&mut self.budget.exits);
                let (_, root, _) = self.alive(slot).expect("exit of a dead mm");
                // No TLBI: see the module documentation.
                self.machine.mem_mut().free_all(root);
                // Unpinned, so `release` needs no lock (it could not wait here).
                assert!(!self.slots[slot].ctx.is_pinned(), "exit of a pinned mm");
                let hw = ModelCpu::new(0, &mut self.machine);
                self.alloc.release(&hw, &self.slots[slot].ctx);
                self.slots[slot].life = Life::Dead;
                inc(&self.coverage.exits);
            }
            Action::Create { slot } => {
                spend(&mut self.budget.creates);
                self.create(slot);
            }
            Action::UnmapClear { cpu, vpn } => {
                spend(&mut self.budget.unmaps);
                let slot = self.cpus[cpu].running.expect("unmap by a running mm");
                let (_, root, _) = self.alive(slot).expect("running mm is alive");
                let pfn = self.machine.mem_mut().unmap(root, vpn).expect("page was mapped");
                self.cpus[cpu].unmap = Some(Unmap::Cleared { vpn, pfn });
            }
            Action::UnmapTlbi { cpu } => {
                let Some(Unmap::Cleared { vpn, pfn }) = self.cpus[cpu].unmap else {
                    unreachable!("TLBI of an unmap that cleared nothing")
                };
                let slot = self.cpus[cpu].running.expect("unmap by a running mm");
                let asid = self.slots[slot].ctx.asid().expect("a running mm has an ASID");
                let op = TlbiOp::Va { asid, va: vpn << 12, last_level: true, ttl: Some(3) };
                self.machine.issue(cpu, op, Scope::Broadcast);
                self.cpus[cpu].unmap = Some(Unmap::Issued { vpn, pfn, asid });
            }
            Action::UnmapDsb { cpu } => self.unmap_dsb(cpu)?,
        }
        if self.cfg.speculation == Speculation::Eager {
            // Only what can enable a new fill: a TTBR0 load, entries removed
            // by a flush or a completed TLBI, memory changed. (Clearing a
            // PTE or switching to the reserved TTBR0 enables none.)
            let cpus = match *a {
                Action::LoadTtbr { cpu } => cpu..cpu + 1,
                Action::Step { cpu } if flushed => cpu..cpu + 1,
                Action::Exit { .. } | Action::Create { .. } | Action::UnmapDsb { .. } => 0..self.cpus.len(),
                _ => 0..0,
            };
            for cpu in cpus {
                self.machine.speculate(cpu);
            }
        }
        self.check_state()
    }

    fn check(&self) -> Result<(), Violation> {
        self.check_state()
    }

    /// Everything up to and after the `max_rollovers`-th rollover is
    /// explored; a state where one more has begun is the bound.
    fn expand(&self) -> bool {
        self.cfg.max_rollovers.is_none_or(|max| self.rollovers() <= max)
    }

    /// Random walks: mostly switching and letting operations progress; the
    /// many pin/unpin/exit choices (one per CPU and mm) stay occasional.
    fn weight(&self, a: &Action) -> u64 {
        match a {
            Action::Step { .. } | Action::LoadTtbr { .. } => 40,
            Action::Switch { .. } => 10,
            Action::Speculate { .. } | Action::UnmapTlbi { .. } | Action::UnmapDsb { .. } => 20,
            Action::Create { .. } | Action::UnmapClear { .. } => 5,
            Action::Exit { .. } | Action::Idle { .. } => 3,
            Action::Pin { .. } | Action::Unpin { .. } => 1,
        }
    }

    fn summary(&self) -> String {
        let mut s = format!("gen {}", self.alloc.generation() >> 16);
        for (cpu, c) in self.cpus.iter().enumerate() {
            let t = self.machine.ttbr0(cpu);
            let _ = match t.mm {
                Some(mm) => write!(s, " | cpu{cpu}: mm{mm}/asid{}", t.asid),
                None => write!(s, " | cpu{cpu}: idle"),
            };
            if let Some((slot, op)) = c.op {
                let _ = write!(s, " [{:?} s{slot} {:?}]", op.request(), op.phase());
            }
            if let Some((slot, asid)) = c.ready {
                let _ = write!(s, " [ready s{slot}/asid{asid}]");
            }
            if let Some(u) = c.unmap {
                let _ = write!(s, " [{u:?}]");
            }
            // Whose entries, under which ASID (each pair once).
            let mut tags: Vec<_> = self.machine.tlb(cpu).entries().iter().map(|e| (e.mm(), e.asid())).collect();
            tags.sort_unstable();
            tags.dedup();
            let _ = write!(s, " tlb(mm,asid){tags:?}");
        }
        s += " | mms";
        for (slot, m) in self.slots.iter().enumerate() {
            if let Life::Alive { tag, pinned, .. } = m.life {
                let id = m.ctx.id();
                let _ = write!(s, " s{slot}=mm{tag}:g{}/a{}", id >> 16, asid_of(id));
                if pinned.is_some() {
                    s += "(pinned)";
                }
            }
        }
        s
    }
}
