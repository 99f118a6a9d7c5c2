//! The steps of each kernel operation in [`super::zap_world`], one per
//! action, each beside the kernel function it mirrors: `syscall::call`
//! (munmap and madvise zap under the mm lock and finish their gather after
//! dropping it; mprotect finishes under it), `process::fork` with
//! `AddressSpace::fork`, `exit_thread` with `Mm::teardown_exit`, `Mm::reap`,
//! and `Mm::fault` with `AddressSpace::handle_fault` and `cow_copy`.
//!
//! Between two steps anything else may happen: another CPU's step, an
//! access, a speculative walk, `B` taking freed frames. Page-table writes
//! and gather calls come from [`super::zap_kernel`], flush ops from the real
//! `RangePolicy` through [`Flusher`]. A gather fills at 10,000 frames
//! (`gather::BATCH`), far beyond these systems, so no partial flush occurs.

use super::machine::Ttbr0;
use super::mem::{Desc, FrameUse, Pfn};
use super::tlb::Entry;
use super::violation::Violation;
use super::zap_kernel::{self as k, Edit, Flusher, GatherCall};
use super::zap_world::{bit, inc, mask, ExitBug, Op, World, A, ASID_A, CHILD};
use kernel::mm::gather::FlushRange;
use kernel::mm::pagetable::PhysMem;
use kernel::mm::pte::PAGE_SIZE;
use kernel::mm::tlb::{Event, Scope, TlbiOp};

/// A step of a kernel operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pc {
    /// `Mm::begin_zap`: `flush_pending += 1`.
    BeginZap,
    /// Take the mm lock and do the operation's first work under it: plan
    /// the page-table edits, update the VMAs, resolve a fault.
    Lock,
    /// One page-table write and its gather call.
    Edit,
    Unlock,
    /// `Mm::finish_zap` reads `flush_pending`.
    ReadPending,
    /// The gather's flush callback issues its TLBIs (`tlbi::run`).
    Flush,
    /// ...and completes them with a DSB on this CPU.
    Dsb,
    /// `Gather::finish` releases what it held.
    Free,
    /// `finish_zap`: `flush_pending -= 1`.
    EndZap,
    /// `exit_thread`: `deactivate` (TTBR0 to the empty table).
    Deactivate,
    /// `exit_thread`: `live -= 1`; the last one tears down.
    CountOut,
    /// `teardown_exit`: take the address space from under the lock.
    Take,
    /// `cow_copy`: break (clear the leaf), make (map the copy), put the old frame.
    Break,
    Make,
    PutOld,
    /// `Mm::fault`: `TLBI VALE1` + DSB on this CPU after a spurious or
    /// reuse fault.
    LocalInval,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Task {
    pub(super) op: Op,
    /// Steps left, next last.
    pub(super) todo: Vec<Pc>,
    /// Edits left, next last.
    pub(super) edits: Vec<Edit>,
    pub(super) log: Vec<GatherCall>,
    pub(super) nested: bool,
    pub(super) elide: bool,
    /// The operation succeeded (its return is checked).
    pub(super) ok: bool,
    /// Copy-on-write: (old frame, copy).
    pub(super) cow: Option<(Pfn, Pfn)>,
    /// The translations of the pages it covers that existed anywhere (page
    /// table, TLBs, writable TLBs) when the operation started: the ones its
    /// return promises are gone (TLBEmptyInvalPTE). Entries created later,
    /// by faults after its flush, are not its business.
    pub(super) old: Vec<(u64, Pfn, bool)>,
}

impl Task {
    pub(super) fn new(op: Op, steps: &[Pc]) -> Self {
        let todo = steps.iter().rev().copied().collect();
        Task {
            op,
            todo,
            edits: Vec::new(),
            log: Vec::new(),
            nested: false,
            elide: false,
            ok: true,
            cow: None,
            old: Vec::new(),
        }
    }
}

fn fault_page(t: &Task) -> (u64, (Pfn, Pfn)) {
    match (t.op, t.cow) {
        (Op::Fault { vpn, .. }, Some(cow)) => (vpn, cow),
        _ => unreachable!("not a copy-on-write fault: {t:?}"),
    }
}

/// The steps of each scripted operation, from its system call or kernel
/// thread: `syscall::call` (munmap and madvise zap under the lock and
/// finish the gather after dropping it; mprotect finishes under it),
/// `process::fork`, `exit_thread` + `teardown_exit`, `Mm::reap`.
pub(super) fn steps(op: Op) -> &'static [Pc] {
    use Pc::*;
    match op {
        Op::Munmap { .. } | Op::Madvise { .. } | Op::Reap => &[
            BeginZap,
            Lock,
            Edit,
            Unlock,
            ReadPending,
            Flush,
            Dsb,
            Free,
            EndZap,
        ],
        Op::Mprotect { .. } | Op::MmapFixed { .. } | Op::Fork => {
            &[Lock, Edit, Flush, Dsb, Free, Unlock]
        }
        Op::Exit => &[Deactivate, CountOut],
        Op::Fault { .. } => &[Lock],
    }
}

impl World {
    fn flusher(&self) -> Flusher {
        let mut f = Flusher::new(self.cfg.params, self.cfg.features);
        f.leaf_only = self.cfg.bugs.leaf_only_after_free;
        f
    }

    fn range(&self, t: &Task) -> Option<FlushRange> {
        match t.op {
            // `cow_copy`'s one-page break-before-make flush.
            Op::Fault { vpn, .. } => Some(FlushRange {
                start: k::va(vpn),
                end: k::va(vpn) + PAGE_SIZE,
                stride: PAGE_SIZE,
                tables_freed: false,
                leaf_level: Some(3),
            }),
            _ => k::replay(&t.log, self.cfg.format).flush_range(),
        }
    }

    /// The TLBIs the flush callback of `t` issues.
    fn flush_ops(&self, cpu: usize, t: &Task) -> Vec<(TlbiOp, Scope)> {
        if self.cfg.bugs.skip_flush {
            return Vec::new();
        }
        let r = self.range(t);
        let stats = self.machine.stats();
        match t.op {
            // `Mm::finish_zap`.
            Op::Munmap { .. } | Op::Madvise { .. } | Op::Reap
                if t.nested && !self.cfg.bugs.no_nested_fix =>
            {
                stats.record_event(cpu, Event::NestedFullFlush);
                Flusher::whole_asid(ASID_A)
            }
            // `Mm::finish_locked`: a zap in flight may have cleared entries
            // this call then found empty; flush the whole ASID.
            Op::Mprotect { .. } | Op::MmapFixed { .. }
                if self.pending > 0 && !self.cfg.bugs.no_nested_fix =>
            {
                stats.record_event(cpu, Event::NestedFullFlush);
                Flusher::whole_asid(ASID_A)
            }
            // The sink of `Mm::teardown_exit`.
            Op::Exit if r.is_none() => Vec::new(),
            Op::Exit if t.elide => {
                stats.record_event(cpu, Event::ExitElided);
                Vec::new()
            }
            Op::Exit => Flusher::whole_asid(ASID_A),
            // `Mm::flush`.
            _ => self.flusher().range(r, ASID_A),
        }
    }

    /// The work an operation does right after taking the lock.
    fn locked(&mut self, t: &mut Task) {
        let root = self.root_a;
        let mut edits = Vec::new();
        match t.op {
            // `AddressSpace::munmap`: VMAs removed, pages zapped.
            Op::Munmap { lo, hi } if !self.taken => {
                self.vma &= !mask(lo, hi);
                edits = k::zap_edits(self.mem(), root, &[(lo, hi)]);
            }
            Op::Munmap { .. } => {}
            // `AddressSpace::madvise`: the whole range must be mapped.
            Op::Madvise { lo, hi } => {
                t.ok = !self.taken && self.vma & mask(lo, hi) == mask(lo, hi);
                if t.ok {
                    edits = k::zap_edits(self.mem(), root, &[(lo, hi)]);
                }
            }
            // `Mm::reap`: munmap of every VMA into one gather.
            Op::Reap if !self.taken => {
                let runs: Vec<(u64, u64)> = (0..self.pages())
                    .filter(|&v| self.vma & bit(v) != 0 && (v == 0 || self.vma & bit(v - 1) == 0))
                    .map(|lo| (lo, (lo..).find(|&v| self.vma & bit(v) == 0).unwrap()))
                    .collect();
                self.vma = 0;
                edits = k::zap_edits(self.mem(), root, &runs);
            }
            Op::Reap => {}
            // `AddressSpace::mmap` with `FIXED`: VMAs replaced, pages zapped;
            // the syscall finishes this gather under the lock, outside
            // `flush_pending`.
            Op::MmapFixed { lo, hi } if !self.taken => {
                self.vma |= mask(lo, hi);
                self.vma_ro &= !mask(lo, hi);
                edits = k::zap_edits(self.mem(), root, &[(lo, hi)]);
            }
            Op::MmapFixed { .. } => t.ok = false,
            // `AddressSpace::mprotect` to read-only: leaves that lose write.
            Op::Mprotect { lo, hi } => {
                self.vma_ro |= mask(lo, hi);
                let leaves = k::present_leaves(self.mem(), root, lo, hi);
                edits = leaves
                    .into_iter()
                    .filter(|&(v, _)| self.ro & bit(v) == 0)
                    .map(|(vpn, _)| Edit::Protect { vpn })
                    .collect();
            }
            // `AddressSpace::fork`: every present leaf shared, parent's read-only.
            Op::Fork => {
                let leaves = k::present_leaves(self.mem(), root, 0, self.pages());
                edits = leaves
                    .into_iter()
                    .map(|(vpn, pfn)| Edit::Share {
                        vpn,
                        pfn,
                        was_writable: self.ro & bit(vpn) == 0,
                    })
                    .collect();
            }
            Op::Fault { vpn, write } => {
                t.todo = self.resolve(t, vpn, write).iter().rev().copied().collect();
                return;
            }
            Op::Exit => unreachable!("exit takes the lock in `Take`"),
        }
        t.edits = edits.into_iter().rev().collect();
        if t.edits.is_empty() {
            assert_eq!(t.todo.pop(), Some(Pc::Edit));
        }
    }

    /// `AddressSpace::handle_fault` under the lock; returns the steps left.
    fn resolve(&mut self, t: &mut Task, vpn: u64, write: bool) -> &'static [Pc] {
        if self.taken || self.vma & bit(vpn) == 0 || (write && self.vma_ro & bit(vpn) != 0) {
            t.ok = false; // Unmapped or Protection: the thread is killed.
            return &[Pc::Unlock];
        }
        let root = self.root_a;
        let Some(pfn) = self.pte(vpn) else {
            // `zero_fill`.
            let mem = self.machine.mem_mut();
            if mem.free_frames() >= mem.format().levels as usize {
                mem.map(A, root, vpn).expect("frames were counted");
                self.ro &= !bit(vpn);
                self.ro |= self.vma_ro & bit(vpn);
                inc(&self.coverage.zero_fills, 1);
            }
            return &[Pc::Unlock];
        };
        if !write || self.ro & bit(vpn) == 0 {
            return &[Pc::Unlock, Pc::LocalInval]; // Spurious.
        }
        if !self.shared.iter().any(|s| s.0 == pfn) {
            self.ro &= !bit(vpn); // CowReuse: writable in place.
            return &[Pc::Unlock, Pc::LocalInval];
        }
        // `cow_copy`: `duplicate`, then break-before-make.
        let Some(copy) = self.machine.mem_mut().alloc(FrameUse::Data { mm: A }) else {
            return &[Pc::Unlock];
        };
        t.cow = Some((pfn, copy));
        inc(&self.coverage.cow_copies, 1);
        &[
            Pc::Break,
            Pc::Flush,
            Pc::Dsb,
            Pc::Make,
            Pc::PutOld,
            Pc::Unlock,
        ]
    }

    fn set_leaf(&mut self, vpn: u64, d: Desc) {
        let (root, f) = (self.root_a, self.cfg.format);
        let table = self
            .mem()
            .leaf_table(root, vpn)
            .expect("the leaf table is there");
        self.machine
            .mem_mut()
            .set_desc(table, f.index(vpn, f.levels - 1), d);
    }

    fn edit(&mut self, t: &mut Task, e: Edit) {
        match e {
            Edit::Clear { .. } | Edit::Record(_) => {
                t.log.push(k::apply_clear(self.machine.mem_mut(), &e))
            }
            Edit::Protect { vpn } => {
                self.ro |= bit(vpn);
                t.log.push(GatherCall::ProtectLeaf { vpn });
            }
            Edit::Share {
                vpn,
                pfn,
                was_writable,
            } => {
                self.shared.push((pfn, CHILD));
                self.ro |= bit(vpn);
                if was_writable {
                    t.log.push(GatherCall::ProtectLeaf { vpn });
                }
            }
        }
    }

    pub(super) fn step(&mut self, cpu: usize) -> Result<(), Violation> {
        let mut t = self.cpus[cpu].task.take().expect("a step without a task");
        match t.todo.pop().expect("a task with no steps") {
            Pc::BeginZap => self.pending += 1,
            Pc::Lock => {
                assert!(self.lock.is_none(), "lock taken twice");
                self.lock = Some(cpu);
                self.locked(&mut t);
            }
            Pc::Edit => {
                let e = t.edits.pop().expect("an edit");
                self.edit(&mut t, e);
                if !t.edits.is_empty() {
                    t.todo.push(Pc::Edit);
                }
            }
            Pc::Unlock => self.lock = None,
            Pc::ReadPending => t.nested = self.pending > 1,
            Pc::Flush => {
                let ops = self.flush_ops(cpu, &t);
                for &(op, scope) in &ops {
                    self.machine.issue(cpu, op, scope);
                }
                if ops.is_empty() {
                    assert_eq!(
                        t.todo.pop(),
                        Some(Pc::Dsb),
                        "`tlbi::run` of nothing issues no DSB"
                    );
                }
            }
            Pc::Dsb => self.dsb(cpu),
            Pc::Free => {
                let r = self.range(&t);
                let freed = k::finish(&t.log, self.machine.mem_mut(), &mut self.shared, r);
                inc(&self.coverage.frees, freed.len() as u64);
            }
            Pc::EndZap => self.pending -= 1,
            Pc::Deactivate => {
                if self.cfg.bugs.exit.is_none() {
                    self.machine.set_ttbr0(cpu, Ttbr0::RESERVED);
                }
                if self.cfg.bugs.exit != Some(ExitBug::KeepTtbr0Flushed) {
                    self.loaded &= !(1 << cpu);
                }
            }
            Pc::CountOut => {
                self.live -= 1;
                if self.live == 0 {
                    t.todo = [Pc::Free, Pc::Dsb, Pc::Flush, Pc::Edit, Pc::Take].to_vec();
                }
            }
            Pc::Take => {
                assert!(self.lock.is_none());
                t.elide = self.loaded == 0;
                t.edits = k::teardown_edits(self.mem(), self.root_a)
                    .into_iter()
                    .rev()
                    .collect();
                self.taken = true;
                self.vma = 0;
            }
            Pc::Break => {
                let (vpn, _) = fault_page(&t);
                self.set_leaf(vpn, Desc::Invalid);
            }
            Pc::Make => {
                let (vpn, (_, copy)) = fault_page(&t);
                self.set_leaf(vpn, Desc::Page(copy));
                self.ro &= !bit(vpn);
            }
            Pc::PutOld => {
                let (_, (old, _)) = fault_page(&t);
                let frames = k::Frames::new(self.machine.mem_mut(), &mut self.shared, true);
                if frames.put(k::pa(old)) {
                    frames.free(k::pa(old));
                }
            }
            Pc::LocalInval => {
                let Op::Fault { vpn, .. } = t.op else {
                    unreachable!()
                };
                let op = TlbiOp::Va {
                    asid: ASID_A,
                    va: k::va(vpn),
                    last_level: true,
                    ttl: None,
                };
                self.machine.issue(cpu, k::hardware_op(&op), Scope::Local);
                self.dsb(cpu);
            }
        }
        self.resume(cpu, t)
    }

    fn resume(&mut self, cpu: usize, t: Task) -> Result<(), Violation> {
        if !t.todo.is_empty() {
            self.cpus[cpu].task = Some(t);
            return Ok(());
        }
        inc(&self.coverage.returns, 1);
        if !matches!(t.op, Op::Fault { .. }) {
            self.cpus[cpu].next += 1;
        }
        match t.op {
            Op::Exit => self.cpus[cpu].gone = true,
            Op::Munmap { lo, hi }
            | Op::Madvise { lo, hi }
            | Op::Mprotect { lo, hi }
            | Op::MmapFixed { lo, hi }
                if t.ok =>
            {
                self.returned(lo..hi, &t.old)?
            }
            Op::Reap => self.returned(0..self.pages(), &t.old)?,
            // Fork promises no writable entry for what it shared.
            Op::Fork => {
                for c in &t.log {
                    if let GatherCall::ProtectLeaf { vpn } = *c {
                        self.returned(vpn..vpn + 1, &t.old)?;
                    }
                }
            }
            Op::Fault { vpn, .. } if t.cow.is_some() => self.returned(vpn..vpn + 1, &t.old)?,
            _ => {}
        }
        Ok(())
    }

    // User accesses: a write through a writable entry, or a walk; faults
    // start a `Fault` task (at most `Config::faults` in a run).

    /// A user write on `cpu` to `vpn` through its writable entry for `pfn`.
    fn wrote(&self, cpu: usize, vpn: u64, pfn: Pfn) -> Result<(), Violation> {
        let frame = self.mem().use_of(pfn);
        if frame != (FrameUse::Data { mm: A }) {
            return Err(Violation::StaleTranslation {
                cpu,
                mm: A,
                asid: ASID_A,
                vpn,
                pfn,
                frame,
            });
        }
        let forking = self
            .cpus
            .iter()
            .any(|c| c.task.as_ref().is_some_and(|t| t.op == Op::Fork));
        if !forking && self.shared.iter().any(|s| s.0 == pfn) {
            // The child would see the write: fork's write-protect was not flushed.
            return Err(Violation::TlbEmptyInvalPte {
                cpu,
                mm: A,
                vpn,
                asid: ASID_A,
            });
        }
        Ok(())
    }

    fn fault(&mut self, cpu: usize, vpn: u64, write: bool) {
        if self.faults > 0 {
            self.faults -= 1;
            let mut t = Task::new(Op::Fault { vpn, write }, &[Pc::Lock]);
            t.old = self.snapshot(t.op);
            self.cpus[cpu].task = Some(t);
        }
    }

    pub(super) fn access(&mut self, cpu: usize, vpn: u64, write: bool) -> Result<(), Violation> {
        let hit = self.wtlb[cpu].entries().iter().find_map(|e| match *e {
            Entry::Leaf {
                asid: ASID_A,
                vpn: v,
                pfn,
                ..
            } if v == vpn => Some(pfn),
            _ => None,
        });
        if let (true, Some(pfn)) = (write, hit) {
            return self.wrote(cpu, vpn, pfn);
        }
        match self.machine.access(cpu, vpn)? {
            None => self.fault(cpu, vpn, write),
            Some(pfn) if write && self.writable(vpn) == Some(pfn) => {
                self.wtlb[cpu].insert(Entry::Leaf {
                    asid: ASID_A,
                    vpn,
                    pfn,
                    mm: A,
                });
                self.wrote(cpu, vpn, pfn)?;
            }
            Some(_) if write => self.fault(cpu, vpn, true), // Permission fault.
            Some(_) => {}
        }
        Ok(())
    }
}
