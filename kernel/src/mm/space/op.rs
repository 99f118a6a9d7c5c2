//! The operations of the TLB protocol as resumable steps (see the parent
//! module for the rules they keep).
//!
//! Each call is a fixed path through [`Pc`]: the zaps (munmap, madvise, the
//! reaper) count themselves in `pending` around everything; the calls that
//! finish under the lock (mprotect, mmap, fork) do not; a fault resolves
//! under the lock and may invalidate locally after it; the exit teardown
//! takes the tables out and frees them with its flush elided. A flush is
//! always three steps, issue, complete (the DSB on this CPU) and release,
//! so whatever runs between them is something the hardware allows.

use core::sync::atomic::{fence, Ordering};

use super::notifier::Invalidation;
use super::shootdown::{self, CatchUp, Route, Shootdown};
use super::{Mm, MmHw, TlbConfig};
use crate::mm::aspace::{Access, AddressSpace, Fault, FaultError, FaultKind, FaultPlan, MmError, Split, ZapTables};
use crate::mm::gather::{FlushRange, Gather};
use crate::mm::pagetable::{Format, LeafCursor, MapHint, PageTable, PhysMem, TableFree, ZapCursor, LEAF_LEVEL};
use crate::mm::tlb::trace::{Cause, Decision, Reason, Span};
use crate::mm::tlb::{Event, FlushPlan, FlushStrategy, RangePolicy, Scope, TlbiOp};

/// A call into the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    Mmap {
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: u64,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: u64,
    },
    /// The child's address space is [`Op::take_child`].
    Fork,
    Fault {
        va: u64,
        access: Access,
    },
    /// The reaper takes every mapping while the process's threads may still
    /// run; the process is marked killed at [`Hook::Reaping`].
    Reap,
    /// The last user is gone: everything goes, flush elided (exit mode).
    Teardown,
    /// Reclaim's unmap of one page: if `va` still maps frame `pa`, its leaf
    /// becomes a swap entry for `slot`, and the page's TLBI is issued
    /// without a DSB: the [`super::reclaim::Batch`] completes it (unless
    /// `TlbConfig::reclaim_batch` is off).
    Reclaim {
        va: u64,
        pa: u64,
        slot: u64,
    },
}

impl Call {
    /// munmap, madvise and the reaper: counted in `pending`, flushed after
    /// the lock is dropped unless they freed tables.
    pub fn zaps(&self) -> bool {
        matches!(self, Call::Munmap { .. } | Call::Madvise { .. } | Call::Reap)
    }

    /// The kind of call, for the reasons of its flush decisions.
    fn cause(&self) -> Cause {
        match self {
            Call::Munmap { .. } | Call::Madvise { .. } => Cause::Zap,
            Call::Mmap { .. } | Call::Mprotect { .. } | Call::Fork => Cause::Locked,
            Call::Fault { .. } => Cause::Fault,
            Call::Reap => Cause::Reaper,
            Call::Teardown => Cause::Exit,
            Call::Reclaim { .. } => Cause::Reclaim,
        }
    }

    /// Calls that change entries and so must first flush a reclaim batch
    /// pending on the mm (Linux's `flush_tlb_batched_pending`, in
    /// `zap_pte_range` and `change_pte_range`), and fork: it copies the
    /// swap entries reclaim left, so a write through a stale entry before
    /// the batch's DSB would reach the child too (Linux's `dup_mmap` ends
    /// with a flush of the whole mm).
    fn flushes_batched(&self) -> bool {
        match self {
            Call::Munmap { .. } | Call::Madvise { .. } | Call::Mprotect { .. } | Call::Fork => true,
            Call::Mmap { flags, .. } => flags & abi::map::FIXED != 0,
            _ => false,
        }
    }
}

/// What a finished operation returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Done,
    /// mmap: the address mapped.
    Addr(u64),
    /// A resolved fault.
    Fault(Fault),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpError {
    Mm(MmError),
    Fault(FaultError),
    /// The teardown found the mm still loaded on these CPUs: nothing was
    /// freed (a live TTBR0 can walk into any table we would free).
    StillLoaded {
        cpus: u64,
    },
}

/// A point where the caller acts on the operation's behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hook {
    /// The reaper holds the mm lock and has not zapped anything: the
    /// kernel marks the process killed now, so its threads learn it only
    /// once the reaper owns the address space.
    Reaping,
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Ran,
    /// Waiting for the mm lock; nothing changed.
    Blocked,
    /// Ran, and the caller must act (see [`Hook`]).
    Hook(Hook),
    /// Finished: see [`Op::outcome`].
    Done,
}

/// Where a flush sequence continues after its release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Then {
    /// Back to the zap (a full gather's batch).
    Zap,
    /// Drop the lock.
    Unlock,
    /// `pending -= 1` (a zap that flushed after dropping the lock).
    EndZap,
}

/// Where an operation continues once every CPU it sent an IPI to
/// acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Next {
    Release(Then),
    /// A fault's racing flush: install the entry.
    Install,
    /// A copy-on-write break: make the new entry.
    Make,
    /// The teardown evicted lazy CPUs: take the tables.
    Take,
    /// The teardown told the secondary MMUs: free the tables.
    TearZap,
    /// A pending reclaim batch was flushed: now the call itself.
    Prepare,
    /// A split's flush is done: write the smaller entries.
    SplitMake,
    /// A collapse's flush is done: map the block.
    CollapseMake,
}

impl Next {
    fn pc(self) -> Pc {
        match self {
            Next::Release(then) => Pc::Release { then },
            Next::Install => Pc::Install,
            Next::Make => Pc::Make,
            Next::Take => Pc::Take,
            Next::TearZap => Pc::TearZap,
            Next::Prepare => Pc::Prepare,
            Next::SplitMake => Pc::SplitMake,
            Next::CollapseMake => Pc::CollapseMake,
        }
    }
}

/// Where a step continues after dropping the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AfterUnlock {
    /// A zap that freed no table: its flush, then `pending -= 1`.
    Finish,
    EndZap,
    /// A fault that changed a leaf only in place: invalidate it locally.
    LocalInval,
    Done,
}

/// Where an operation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pc {
    /// A zap: `pending += 1`.
    BeginZap,
    Lock,
    /// Under the lock: check the arguments, change the mappings.
    Prepare,
    /// A reclaim batch is pending on the mm: flush its ASID first.
    BatchedFlush,
    BatchedComplete,
    /// Reclaim: the leaf becomes a swap entry.
    Unmap,
    /// Reclaim: the page's TLBI, no DSB (the batch's).
    BatchIssue,
    /// The reaper, after [`Hook::Reaping`]: every mapping goes.
    Reaping,
    /// Under the lock, before a call changes part of a block or a
    /// contiguous run: the next one to split (cleared, or with
    /// `TlbConfig::split_no_break` replaced at once).
    Split,
    SplitFlush,
    SplitComplete,
    /// The smaller entries, after the flush.
    SplitMake,
    /// madvise(COLLAPSE): the next block-aligned region of `edges` whose
    /// table goes (unlinked under the lock, then flushed).
    Collapse,
    CollapseFlush,
    CollapseComplete,
    /// The pages copied into the block, the block mapped, the old frames
    /// and table released.
    CollapseMake,
    /// One page-table write of a zap.
    Zap,
    /// One leaf of an mprotect.
    Protect,
    /// One leaf of a fork.
    Share,
    /// Whether a zap is in flight (another one, for a zap).
    ReadPending {
        then: Then,
    },
    Flush {
        then: Then,
    },
    Complete {
        then: Then,
    },
    /// IPIs to the CPUs the strategy chose (`shootdown::route`).
    Send {
        next: Next,
    },
    /// Until every target acknowledged.
    Wait {
        next: Next,
    },
    /// Until every secondary MMU told of the flush acknowledged
    /// ([`super::notifier`]).
    SecWait {
        next: Next,
    },
    Release {
        then: Then,
    },
    Unlock {
        then: AfterUnlock,
    },
    /// `pending -= 1`.
    EndZap,
    /// A fault, under the lock: decide.
    Resolve,
    /// A fault racing a zap: whole-ASID flush before installing.
    RaceFlush,
    RaceComplete,
    Install,
    /// Copy-on-write: clear the leaf, flush it, map the copy, put the old
    /// frame.
    Break,
    CowFlush,
    CowComplete,
    Make,
    PutOld,
    /// After a fault that only changed permissions: `TLBI VALE1` here.
    LocalInval,
    LocalComplete,
    /// The teardown: take the tables (under the lock, briefly).
    Take,
    TearZap,
    FreeRoot,
    TearFlush {
        more: bool,
    },
    TearComplete {
        more: bool,
    },
    TearRelease {
        more: bool,
    },
    Done,
}

/// One call in progress. A plain value (`Clone`, `Hash`) so a model state
/// can hold it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Op<F: Format> {
    call: Call,
    pc: Pc,
    g: Gather,
    zap: ZapCursor,
    leaves: LeafCursor,
    tables: ZapTables,
    /// At the flush: a zap was in flight (another one, for a zap).
    racing: bool,
    /// The ASID as read when the lock was taken (`Bugs::asid_read_early`).
    early_asid: Option<Option<u16>>,
    /// Issued TLBIs awaiting this CPU's DSB.
    issued: Option<Scope>,
    /// The repeat-TLBI workaround its flushes get (`TlbConfig::repeat_tlbi`).
    repeat: crate::mm::tlb::RepeatTlbi,
    /// The generation this CPU's TLB is clean up to once that DSB is done.
    gen_to: Option<u64>,
    /// IPIs to send after this CPU's own flush: targets and request.
    shoot: Option<(u64, Shootdown)>,
    /// The teardown asked lazy CPUs to leave once already.
    evicted: bool,
    /// This operation opened an invalidate-range on the mm's notifier.
    notified: bool,
    /// Secondary MMUs were sent an invalidation: wait for them before
    /// freeing.
    sec: bool,
    /// `mmu.notifier=late`: the invalidation to send after the free.
    late: Option<(u64, Invalidation)>,
    /// The flush in hand is for a pending reclaim batch.
    batched_flush: bool,
    plan: Option<FaultPlan>,
    /// Copy-on-write: (page, copy, old frame, prot).
    cow: (u64, u64, u64, u64),
    /// The copy-on-write is of a whole block (`cow.0` its first address).
    cow_block: bool,
    /// The range whose ends may cut blocks and runs (split first).
    edges: (u64, u64),
    /// A fault's split, to do before it decides again.
    split_at: Option<Split>,
    /// The split in progress, and what its make step writes.
    split: Option<(Split, u64)>,
    /// The collapse in progress: region, its unlinked table, the block.
    collapse: Option<(u64, u64, u64)>,
    /// Where the call goes once nothing is left to split.
    resume: Pc,
    /// The call's edges were looked at for blocks and runs to split.
    split_done: bool,
    /// An event the fault's install counts (the size it mapped).
    filled: Option<Event>,
    child: Option<AddressSpace<F>>,
    /// Where the fork mapped into the child last.
    hint: MapHint,
    /// The teardown's tables, taken out of the address space.
    torn: Option<PageTable<F>>,
    /// The teardown elides its flush; it flushed once already.
    elide: bool,
    flushed: bool,
    /// This operation holds the mm lock.
    locked: bool,
    outcome: Result<Outcome, OpError>,
}

impl<F: Format> Op<F> {
    pub fn new(call: Call, cfg: &TlbConfig) -> Self {
        let pc = match call {
            c if c.zaps() => Pc::BeginZap,
            Call::Teardown => Pc::Take,
            _ => Pc::Lock,
        };
        Op {
            call,
            pc,
            g: Gather::with_batch(cfg.batch),
            zap: ZapCursor::new(0, 0),
            leaves: LeafCursor::new(0, 0),
            tables: ZapTables::Never,
            racing: false,
            early_asid: None,
            issued: None,
            repeat: cfg.repeat_tlbi,
            gen_to: None,
            shoot: None,
            evicted: false,
            notified: false,
            sec: false,
            late: None,
            batched_flush: false,
            plan: None,
            cow: (0, 0, 0, 0),
            cow_block: false,
            edges: (0, 0),
            split_at: None,
            split: None,
            collapse: None,
            resume: Pc::Done,
            split_done: false,
            filled: None,
            child: None,
            hint: MapHint::default(),
            torn: None,
            elide: false,
            flushed: false,
            locked: false,
            outcome: Ok(Outcome::Done),
        }
    }

    pub fn call(&self) -> Call {
        self.call
    }

    pub fn pc(&self) -> Pc {
        self.pc
    }

    pub fn is_done(&self) -> bool {
        self.pc == Pc::Done
    }

    /// Holds the mm lock now.
    pub fn holds_lock(&self) -> bool {
        self.locked
    }

    pub fn gather(&self) -> &Gather {
        &self.g
    }

    /// The result, once [`Self::is_done`].
    pub fn outcome(&self) -> Result<Outcome, OpError> {
        self.outcome
    }

    /// The fork child's address space while the fork builds it.
    pub fn child(&self) -> Option<&AddressSpace<F>> {
        self.child.as_ref()
    }

    /// The fork child's address space, once a fork is done.
    pub fn take_child(&mut self) -> Option<AddressSpace<F>> {
        self.child.take()
    }

    /// Runs the next step. `mm` is the address space the call is on; a
    /// step that needs the lock finds it held by this operation. (Inlined
    /// into [`Mm::run`]'s loop: a step's own work is often smaller than a
    /// call of this function, whose frame holds a flush plan.)
    #[inline(always)]
    pub fn step<H: MmHw, M: PhysMem>(&mut self, mm: &Mm<F>, cfg: &TlbConfig, hw: &H, mem: &M) -> Step {
        match self.pc {
            Pc::BeginZap => {
                mm.pending.fetch_add(1, Ordering::AcqRel);
                self.pc = Pc::Lock;
            }
            Pc::Lock => {
                if !mm.try_lock() {
                    return Step::Blocked;
                }
                self.locked = true;
                if cfg.bugs.asid_read_early && self.call.zaps() {
                    self.early_asid = Some(mm.ctx.asid());
                }
                let batched = self.call.flushes_batched() && mm.batched.load(Ordering::Relaxed);
                self.pc = match self.call {
                    Call::Fault { .. } => Pc::Resolve,
                    _ if batched && !cfg.bugs.no_batched_pending => Pc::BatchedFlush,
                    _ => Pc::Prepare,
                };
            }
            Pc::BatchedFlush => {
                // Reclaim cleared entries of this mm and issued their TLBIs
                // on another CPU; only that CPU's DSB completes them. A call
                // that changes entries (mprotect making a page read-only,
                // say) must not return while a stale entry may still be
                // used: flush the ASID ourselves, completed here. Reclaim
                // sets the flag under the lock we hold, so it may go now.
                mm.batched.store(false, Ordering::Relaxed);
                hw.event(Event::BatchedPendingFlush);
                self.batched_flush = true;
                self.pc = self.flush(mm, cfg, hw, None, true, Pc::BatchedComplete, Next::Prepare);
                self.batched_flush = false;
            }
            Pc::BatchedComplete => {
                self.complete(mm, hw);
                self.pc = self.after_complete(Next::Prepare);
            }
            Pc::Unmap => {
                let Call::Reclaim { va, pa, slot } = self.call else { unreachable!("unmap of {:?}", self.call) };
                // SAFETY: the lock is held (this operation's `Lock` step).
                let a = unsafe { mm.aspace() };
                if a.reclaim_unmap(mem, va, pa, slot) {
                    self.pc = Pc::BatchIssue;
                } else {
                    self.outcome = Err(OpError::Mm(MmError::NotMapped { addr: va }));
                    self.pc = Pc::Unlock { then: AfterUnlock::Done };
                }
            }
            Pc::BatchIssue => self.pc = self.batch_issue(mm, cfg, hw),
            Pc::Prepare => {
                if self.call == Call::Reap {
                    self.pc = Pc::Reaping;
                    return Step::Hook(Hook::Reaping);
                }
                // SAFETY: the lock is held (this operation's `Lock` step).
                let a = unsafe { mm.aspace() };
                if !self.split_done && a.has_large() {
                    self.split_done = true;
                    if let Some(edges) = self.cut_range() {
                        // The call's ends may cut a block or a run: split
                        // those first, before the mappings change (a split
                        // that fails leaves the call undone), then the call.
                        self.edges = edges;
                        self.resume = Pc::Prepare;
                        self.pc = Pc::Split;
                        return Step::Ran;
                    }
                }
                self.prepare(a, cfg, mem);
                if matches!(self.pc, Pc::Zap | Pc::Protect | Pc::Share | Pc::Unmap) {
                    self.open_range(mm, hw);
                }
            }
            Pc::Split => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let next = self
                    .split_at
                    .take()
                    .or_else(|| a.straddler(mem, self.edges.0))
                    .or_else(|| a.straddler(mem, self.edges.1));
                let Some(at) = next else {
                    self.pc = self.resume;
                    return Step::Ran;
                };
                self.open_range(mm, hw);
                match a.split_break(mem, at, cfg.split_no_break) {
                    Ok(made) => {
                        hw.event(match at {
                            Split::Block { .. } => Event::BlockSplit,
                            Split::Run { .. } => Event::RunUnfold,
                        });
                        if cfg.split_no_break {
                            hw.event(Event::SplitNoBreak);
                        }
                        self.split = Some((at, made));
                        self.pc = Pc::SplitFlush;
                    }
                    Err(e) => {
                        self.outcome = Err(match self.call {
                            Call::Fault { .. } => OpError::Fault(FaultError::OutOfMemory),
                            _ => OpError::Mm(e),
                        });
                        let then = if self.call.zaps() { AfterUnlock::EndZap } else { AfterUnlock::Done };
                        self.pc = Pc::Unlock { then };
                    }
                }
            }
            Pc::SplitFlush => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let (at, _) = self.split.expect("a split in progress");
                let r = a.split_flush_range(at);
                self.pc = self.flush(mm, cfg, hw, Some(r), false, Pc::SplitComplete, Next::SplitMake);
            }
            Pc::SplitComplete => {
                self.complete(mm, hw);
                self.pc = self.after_complete(Next::SplitMake);
            }
            Pc::Collapse => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let b = a.page_table().format().block_size().unwrap_or(u64::MAX);
                loop {
                    let (region, hi) = self.edges;
                    if region >= hi {
                        self.pc = Pc::Unlock { then: AfterUnlock::EndZap };
                        break;
                    }
                    self.edges.0 = region.saturating_add(b);
                    match a.collapse_begin(mem, region) {
                        Ok(None) => continue,
                        Ok(Some((table, new))) => {
                            self.open_range(mm, hw);
                            self.collapse = Some((region, table, new));
                            self.pc = Pc::CollapseFlush;
                        }
                        Err(e) => {
                            self.outcome = Err(OpError::Mm(e));
                            self.pc = Pc::Unlock { then: AfterUnlock::EndZap };
                        }
                    }
                    break;
                }
            }
            Pc::CollapseFlush => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let (region, _, _) = self.collapse.expect("a collapse in progress");
                let r = a.collapse_flush_range(region);
                self.pc = self.flush(mm, cfg, hw, Some(r), false, Pc::CollapseComplete, Next::CollapseMake);
            }
            Pc::CollapseComplete => {
                self.complete(mm, hw);
                self.pc = self.after_complete(Next::CollapseMake);
            }
            Pc::CollapseMake => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let (region, table, new) = self.collapse.take().expect("a collapse in progress");
                a.collapse_make(mem, region, table, new);
                hw.event(Event::Collapse);
                self.send_late(mm, hw);
                self.pc = Pc::Collapse;
            }
            Pc::SplitMake => {
                let (at, made) = self.split.take().expect("a split in progress");
                if !cfg.split_no_break {
                    // SAFETY: as above.
                    let a = unsafe { mm.aspace() };
                    a.split_make(mem, at, made);
                }
                self.pc = Pc::Split;
            }
            Pc::Reaping => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                self.start_zap(a.unmap_all(), ZapTables::Unmapped);
                self.open_range(mm, hw);
            }
            Pc::Zap => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                loop {
                    match a.zap_step(&mut self.zap, self.tables, mem, &mut self.g, cfg.run_walks) {
                        Some(_) if self.g.is_full() => self.pc = Pc::Flush { then: Then::Zap },
                        Some(_) if cfg.run_walks => continue,
                        Some(_) => {}
                        None => self.pc = self.finish_zap(cfg),
                    }
                    break;
                }
            }
            Pc::Protect => {
                let Call::Mprotect { prot, .. } = self.call else { unreachable!("protect step of {:?}", self.call) };
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                loop {
                    if !a.protect_step(&mut self.leaves, prot, mem, &mut self.g) {
                        self.pc = Pc::ReadPending { then: Then::Unlock };
                    } else if cfg.run_walks {
                        continue;
                    }
                    break;
                }
            }
            Pc::Share => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let child = self.child.as_mut().expect("a fork's child");
                let run = cfg.run_walks;
                let mut r = a.fork_steps(child, &mut self.leaves, &mut self.hint, mem, &mut self.g, run);
                while run && r == Ok(true) {
                    r = a.fork_steps(child, &mut self.leaves, &mut self.hint, mem, &mut self.g, run);
                }
                match r {
                    Ok(true) => {}
                    Ok(false) => self.pc = Pc::ReadPending { then: Then::Unlock },
                    Err(e) => {
                        // The child never ran: nothing to flush for it.
                        if let Some(c) = self.child.take() {
                            c.discard(mem);
                        }
                        self.outcome = Err(OpError::Mm(e));
                        // Pages already write-protected still need the flush.
                        self.pc = Pc::ReadPending { then: Then::Unlock };
                    }
                }
            }
            Pc::ReadPending { then } => {
                let pending = mm.pending();
                self.racing = if self.call.zaps() { pending > 1 } else { pending > 0 };
                self.pc = Pc::Flush { then };
            }
            Pc::Flush { then } => {
                let whole = self.racing && self.whole_asid_fix(cfg);
                self.pc =
                    self.flush(mm, cfg, hw, self.g.flush_range(), whole, Pc::Complete { then }, Next::Release(then));
            }
            Pc::Complete { then } => {
                self.complete(mm, hw);
                self.pc = self.after_complete(Next::Release(then));
            }
            Pc::Send { next } => {
                let (targets, req) = self.shoot.expect("a shootdown to send");
                hw.send(mm, targets, &req);
                self.pc = Pc::Wait { next };
            }
            Pc::Wait { next } => {
                if !hw.acked() {
                    return Step::Blocked;
                }
                self.shoot = None;
                self.pc = self.go(next);
            }
            Pc::SecWait { next } => {
                if !hw.secondary_acked() {
                    return Step::Blocked;
                }
                self.sec = false;
                self.pc = next.pc();
            }
            Pc::Release { then } => {
                self.g.release(mem);
                self.send_late(mm, hw);
                self.racing = false;
                self.pc = match then {
                    Then::Zap => Pc::Zap,
                    Then::Unlock if self.call.zaps() => Pc::Unlock { then: AfterUnlock::EndZap },
                    Then::Unlock => Pc::Unlock { then: AfterUnlock::Done },
                    Then::EndZap => Pc::EndZap,
                };
            }
            Pc::Unlock { then } => {
                mm.unlock();
                self.locked = false;
                self.pc = match then {
                    AfterUnlock::Finish => Pc::ReadPending { then: Then::EndZap },
                    AfterUnlock::EndZap => Pc::EndZap,
                    AfterUnlock::LocalInval => Pc::LocalInval,
                    AfterUnlock::Done => Pc::Done,
                };
            }
            Pc::EndZap => {
                mm.pending.fetch_sub(1, Ordering::AcqRel);
                self.pc = Pc::Done;
            }
            Pc::Resolve => {
                let Call::Fault { va, access } = self.call else { unreachable!("resolve of {:?}", self.call) };
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                match a.fault_plan(va, access, mem) {
                    Err(e) => {
                        self.outcome = Err(OpError::Fault(e));
                        self.pc = Pc::Unlock { then: AfterUnlock::Done };
                    }
                    Ok(FaultPlan::Split(at)) => {
                        self.split_at = Some(at);
                        self.resume = Pc::Resolve;
                        self.pc = Pc::Split;
                    }
                    Ok(FaultPlan::CopyBlock { base, prot }) if cfg.block_cow_copy => {
                        self.plan = Some(FaultPlan::CopyBlock { base, prot });
                        let racing = mm.pending() > 0 && !cfg.bugs.no_racing_fix;
                        self.pc = if racing { Pc::RaceFlush } else { Pc::Install };
                    }
                    Ok(FaultPlan::CopyBlock { base, .. }) => {
                        // Split on write (`TlbConfig::block_cow_copy`).
                        self.split_at = Some(Split::Block { base });
                        self.resume = Pc::Resolve;
                        self.pc = Pc::Split;
                    }
                    Ok(plan) => {
                        self.plan = Some(plan);
                        let installs = matches!(
                            plan,
                            FaultPlan::ZeroFill { .. }
                                | FaultPlan::ZeroFillBlock { .. }
                                | FaultPlan::ZeroFillRun { .. }
                                | FaultPlan::Copy { .. }
                                | FaultPlan::SwapIn { .. }
                        );
                        // A pending reclaim batch needs no flush here: a
                        // swap-in waits for the batch (`SwapBusy`), a
                        // zero-fill needs an empty entry, which only a call
                        // that flushed the batch first can make, and a copy
                        // needs a valid one.
                        let racing = installs && mm.pending() > 0 && !cfg.bugs.no_racing_fix;
                        self.pc = if racing { Pc::RaceFlush } else { Pc::Install };
                    }
                }
            }
            Pc::RaceFlush => {
                // A zap in flight may have cleared the entry we are about
                // to fill without flushing it yet: a new valid entry must
                // not meet a stale one in some TLB (break-before-make).
                self.pc = self.flush(mm, cfg, hw, None, true, Pc::RaceComplete, Next::Install);
            }
            Pc::RaceComplete => {
                self.complete(mm, hw);
                self.pc = self.after_complete(Next::Install);
            }
            Pc::Install => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                self.install(a, mem);
                if let Ok(Outcome::Fault(Fault { kind: FaultKind::SwapIn, .. })) = self.outcome {
                    hw.event(Event::SwapIn);
                }
                if let Some(e) = self.filled.take() {
                    hw.event(e);
                }
            }
            Pc::Break => {
                self.open_range(mm, hw);
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                self.cow.2 =
                    if self.cow_block { a.cow_break_block(mem, self.cow.0) } else { a.cow_break(mem, self.cow.0) };
                self.pc = Pc::CowFlush;
            }
            Pc::CowFlush => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let r = if self.cow_block {
                    a.cow_flush_block_range(self.cow.0)
                } else {
                    AddressSpace::<F>::cow_flush_range(self.cow.0)
                };
                self.pc = self.flush(mm, cfg, hw, Some(r), false, Pc::CowComplete, Next::Make);
            }
            Pc::CowComplete => {
                self.complete(mm, hw);
                self.pc = self.after_complete(Next::Make);
            }
            Pc::Make => {
                // SAFETY: as above.
                let a = unsafe { mm.aspace() };
                let (page, new, _, prot) = self.cow;
                if self.cow_block {
                    a.cow_make_block(mem, page, new, prot);
                } else {
                    a.cow_make(mem, page, new, prot);
                }
                self.pc = Pc::PutOld;
            }
            Pc::PutOld => {
                if self.cow_block {
                    // SAFETY: as above.
                    let a = unsafe { mm.aspace() };
                    a.put_old_block(mem, self.cow.2);
                    hw.event(Event::BlockCowCopy);
                } else {
                    AddressSpace::<F>::put_old(mem, self.cow.2);
                }
                self.send_late(mm, hw);
                self.outcome = Ok(Outcome::Fault(Fault { kind: FaultKind::CowCopy, va: self.cow.0, pa: self.cow.1 }));
                self.pc = Pc::Unlock { then: AfterUnlock::Done };
            }
            Pc::LocalInval => {
                // This CPU may still cache the older, stricter entry: drop it
                // here, or the access faults again.
                let page = match self.outcome {
                    Ok(Outcome::Fault(f)) => f.va,
                    _ => unreachable!("local invalidation without a resolved fault"),
                };
                self.pc = match mm.ctx.asid() {
                    Some(asid) => {
                        let op = TlbiOp::Va { asid, va: page, last_level: true, ttl: None };
                        hw.decision(Decision::op(&op, Scope::Local, Reason::FaultLocal));
                        hw.issue(&[op], Scope::Local);
                        self.issued = Some(Scope::Local);
                        Pc::LocalComplete
                    }
                    None => Pc::Done,
                };
            }
            Pc::LocalComplete => {
                self.complete(mm, hw);
                self.pc = Pc::Done;
            }
            Pc::Take => {
                if !mm.try_lock() {
                    return Step::Blocked;
                }
                let loaded = mm.cpus.load(Ordering::SeqCst);
                let lazy = mm.lazy.load(Ordering::SeqCst);
                if loaded != 0 && loaded & !lazy == 0 && !self.evicted {
                    // Only lazy CPUs (kernel threads on the tables) hold
                    // the mm: they leave it, dropping their entries of the
                    // ASID as an exiting thread's CPU does, before anything
                    // is freed. Then take the tables again.
                    let asid = mm.ctx.asid().unwrap_or(0);
                    let new_gen = mm.tlb_gen.load(Ordering::SeqCst);
                    let req = Shootdown { new_gen, asid, range: None, freed_tables: true, dying: true };
                    self.shoot = Some((loaded, req));
                    self.evicted = true;
                    self.pc = Pc::Send { next: Next::Take };
                } else if loaded != 0 {
                    // Cannot happen: every user left first. If it did, no
                    // flush would make freeing safe (a live TTBR0 can walk
                    // into, and refill from, any table we free): leak it.
                    self.outcome = Err(OpError::StillLoaded { cpus: loaded });
                    self.pc = Pc::Done;
                } else {
                    // SAFETY: as above.
                    let a = unsafe { mm.aspace() };
                    mm.root.store(0, Ordering::SeqCst);
                    self.torn = Some(a.take_tables());
                    self.zap = ZapCursor::new(0, a.page_table().format().span());
                    self.elide = cfg.exit_elide;
                    self.pc = Pc::TearZap;
                    self.release_secondary(mm, cfg, hw);
                }
                mm.unlock();
            }
            Pc::TearZap => {
                let pt = self.torn.as_mut().expect("the torn tables");
                loop {
                    let edit = if cfg.run_walks {
                        self.zap.step_run(pt, mem, &TableFree::All, &mut self.g)
                    } else {
                        self.zap.step(pt, mem, &TableFree::All, &mut self.g)
                    };
                    match edit {
                        Some(_) if self.g.is_full() => self.pc = Pc::TearFlush { more: true },
                        Some(_) if cfg.run_walks => continue,
                        Some(_) => {}
                        None => self.pc = Pc::FreeRoot,
                    }
                    break;
                }
            }
            Pc::FreeRoot => {
                if let Some(root) = self.torn.take().and_then(PageTable::into_root) {
                    self.g.free_root(root);
                }
                self.pc = Pc::TearFlush { more: false };
            }
            Pc::TearFlush { more } => self.pc = self.teardown_flush(mm, cfg, hw, more),
            Pc::TearComplete { more } => {
                self.complete(mm, hw);
                self.pc = Pc::TearRelease { more };
            }
            Pc::TearRelease { more } => {
                self.g.release(mem);
                self.send_late(mm, hw);
                self.pc = if more { Pc::TearZap } else { Pc::Done };
            }
            Pc::Done => return Step::Done,
        }
        if self.pc == Pc::Done {
            self.close_range(mm, hw);
            Step::Done
        } else {
            Step::Ran
        }
    }

    /// Under the lock: the arguments, the mappings, and what comes next.
    fn prepare<M: PhysMem>(&mut self, a: &mut AddressSpace<F>, cfg: &TlbConfig, mem: &M) {
        let r = match self.call {
            Call::Mmap { addr, len, prot, flags } => {
                a.map_vmas(addr, len, prot, cfg.thp.flags(flags)).map(|(start, zap)| {
                    self.outcome = Ok(Outcome::Addr(start));
                    match zap {
                        // Mapped again at once: the tables stay.
                        Some(range) => self.start_zap(range, ZapTables::Never),
                        // The range may be one a racing munmap has just emptied
                        // and not yet flushed: handing it out again is a
                        // locked call racing a zap, like the others.
                        None => self.pc = Pc::ReadPending { then: Then::Unlock },
                    }
                })
            }
            Call::Munmap { addr, len } => a.unmap_vmas(addr, len).map(|r| self.start_zap(r, ZapTables::Unmapped)),
            Call::Madvise { addr, len, advice: advice @ (abi::advice::HUGEPAGE | abi::advice::NOHUGEPAGE) } => {
                // Under `mm.thp=never` the advice is checked and ignored.
                let r = if cfg.thp == super::Thp::Never {
                    a.collapse_range(addr, len).map(drop)
                } else {
                    a.advise_sizes(addr, len, advice == abi::advice::HUGEPAGE)
                };
                r.map(|()| self.pc = Pc::Unlock { then: AfterUnlock::EndZap })
            }
            Call::Madvise { addr, len, advice: abi::advice::COLLAPSE } => a.collapse_range(addr, len).map(|r| {
                self.edges = r;
                self.pc = Pc::Collapse;
            }),
            Call::Madvise { addr, len, advice } => a.dontneed_range(addr, len, advice).map(|r| {
                // The mappings stay and a fault may refill the range at any
                // moment: no table goes.
                let tables = if cfg.bugs.madvise_frees_tables { ZapTables::All } else { ZapTables::Never };
                self.start_zap(r, tables)
            }),
            Call::Mprotect { addr, len, prot: p } => a.protect_vmas(addr, len, p).map(|(s, e)| {
                self.edges = (s, e);
                self.leaves = LeafCursor::new(s, e);
                self.pc = Pc::Protect;
            }),
            Call::Fork => a.fork_begin(mem).map(|child| {
                self.child = Some(child);
                self.leaves = LeafCursor::new(0, a.page_table().format().span());
                self.pc = Pc::Share;
            }),
            Call::Reclaim { .. } => {
                self.pc = Pc::Unmap;
                Ok(())
            }
            Call::Fault { .. } | Call::Reap | Call::Teardown => unreachable!("{:?} prepares elsewhere", self.call),
        };
        if let Err(e) = r {
            self.outcome = Err(OpError::Mm(e));
            let then = if self.call.zaps() { AfterUnlock::EndZap } else { AfterUnlock::Done };
            self.pc = Pc::Unlock { then };
        }
    }

    /// The range whose ends a call may cut blocks and runs at: munmap,
    /// mprotect, madvise(DONTNEED) and mmap FIXED; `None` for the others
    /// and for a bad range (the call reports it).
    fn cut_range(&self) -> Option<(u64, u64)> {
        match self.call {
            Call::Munmap { addr, len }
            | Call::Mprotect { addr, len, .. }
            | Call::Madvise { addr, len, advice: abi::advice::DONTNEED } => AddressSpace::<F>::range_of(addr, len),
            Call::Mmap { addr, len, flags, .. } if flags & abi::map::FIXED != 0 => {
                AddressSpace::<F>::range_of(addr, len)
            }
            _ => None,
        }
    }

    fn start_zap(&mut self, (start, end): (u64, u64), tables: ZapTables) {
        self.edges = (start, end);
        self.zap = ZapCursor::new(start, end);
        self.tables = tables;
        self.pc = Pc::Zap;
    }

    /// After the last zap step: a gather that freed tables is flushed
    /// before the lock drops (break-before-make for table descriptors); a
    /// zap that only cleared leaves flushes after it, concurrently with
    /// other zaps; mmap with FIXED finishes under the lock like mprotect.
    fn finish_zap(&self, cfg: &TlbConfig) -> Pc {
        if !self.call.zaps() {
            return Pc::ReadPending { then: Then::Unlock };
        }
        if self.g.freed_tables() && !cfg.bugs.table_flush_after_unlock {
            Pc::ReadPending { then: Then::Unlock }
        } else {
            Pc::Unlock { then: AfterUnlock::Finish }
        }
    }

    /// Fault, under the lock: carry out the plan.
    fn install<M: PhysMem>(&mut self, a: &mut AddressSpace<F>, mem: &M) {
        let plan = self.plan.expect("a fault's plan");
        let then = match plan {
            FaultPlan::ZeroFill { page, prot } => {
                self.outcome = a
                    .zero_fill(mem, page, prot)
                    .map(|pa| Outcome::Fault(Fault { kind: FaultKind::ZeroFill, va: page, pa }))
                    .map_err(OpError::Fault);
                AfterUnlock::Done
            }
            FaultPlan::SwapIn { page, slot, prot } => {
                self.outcome = a
                    .swap_in(mem, page, slot, prot)
                    .map(|pa| Outcome::Fault(Fault { kind: FaultKind::SwapIn, va: page, pa }))
                    .map_err(OpError::Fault);
                AfterUnlock::Done
            }
            FaultPlan::ZeroFillBlock { base, page, prot } | FaultPlan::ZeroFillRun { base, page, prot } => {
                let block = matches!(plan, FaultPlan::ZeroFillBlock { .. });
                let big = if block { a.zero_fill_block(mem, base, prot) } else { a.zero_fill_run(mem, base, prot) };
                self.outcome = match big {
                    Ok(pa) => {
                        self.filled = Some(if block { Event::BlockFill } else { Event::RunFill });
                        Ok(pa + (page - base))
                    }
                    // No contiguous frames free: a page, as for any touch.
                    Err(_) => a.zero_fill(mem, page, prot),
                }
                .map(|pa| Outcome::Fault(Fault { kind: FaultKind::ZeroFill, va: page, pa }))
                .map_err(OpError::Fault);
                AfterUnlock::Done
            }
            FaultPlan::CopyBlock { base, prot } => match a.duplicate_block(mem, base) {
                Ok(new) => {
                    self.cow = (base, new, 0, prot);
                    self.cow_block = true;
                    self.pc = Pc::Break;
                    return;
                }
                Err(_) => {
                    // No contiguous frames for a copy: split instead.
                    self.split_at = Some(Split::Block { base });
                    self.resume = Pc::Resolve;
                    self.pc = Pc::Split;
                    return;
                }
            },
            FaultPlan::Split(_) => unreachable!("a split is planned in Resolve"),
            FaultPlan::InPlace { page, desc, kind } => {
                a.set_leaf(mem, page, desc);
                let pa = crate::mm::pagetable::desc_pa(desc);
                self.outcome = Ok(Outcome::Fault(Fault { kind, va: page, pa }));
                AfterUnlock::LocalInval
            }
            FaultPlan::Copy { page, prot } => match a.duplicate(mem, page) {
                Ok(new) => {
                    self.cow = (page, new, 0, prot);
                    self.pc = Pc::Break;
                    return;
                }
                Err(e) => {
                    self.outcome = Err(OpError::Fault(e));
                    AfterUnlock::Done
                }
            },
        };
        self.pc = Pc::Unlock { then };
    }

    /// Whether a racing call flushes the whole ASID: the nested-zap fix for
    /// zaps (`tlb.nested_fix`), the racing fix for the others (as for
    /// faults: always, unless `Bugs::no_racing_fix`).
    fn whole_asid_fix(&self, cfg: &TlbConfig) -> bool {
        if self.call.zaps() {
            cfg.nested_fix
        } else {
            !cfg.bugs.no_racing_fix
        }
    }

    /// The ASID to flush, or `None` for an mm that never had one (no TLB can
    /// hold its entries). The fence orders our page-table writes before the
    /// read: a CPU whose first activation we do not see here switches in
    /// after them, so its walks already find them (the host model's
    /// `never_active_mm_skips_its_flush_safely`; it catches the read made
    /// before the writes, `Bugs::asid_read_early`).
    fn asid(&self, mm: &Mm<F>) -> Option<u16> {
        if let Some(early) = self.early_asid {
            return early; // Bugs::asid_read_early
        }
        fence(Ordering::SeqCst);
        mm.ctx.asid()
    }

    /// A whole-ASID flush into `plan`, told to `hw` as a decision of this
    /// call (no strategy plans it); false for an mm with no ASID.
    fn whole_asid<H: MmHw>(&self, mm: &Mm<F>, hw: &H, plan: &mut FlushPlan) -> bool {
        let Some(asid) = self.asid(mm) else { return false };
        plan.set_whole_asid(asid, Scope::Broadcast);
        hw.decision(Decision::whole_asid(asid, plan, Reason::for_whole_asid(self.call.cause())));
        true
    }

    /// The ops that flush `range` (or the whole ASID when `whole`) into
    /// `plan`, in the scope the strategy chose (`shootdown::route`), and the
    /// IPIs to send after them (`self.shoot`); false when no op is to be
    /// issued here. Told to `hw` as a decision. (The plan is filled in
    /// place: it is a kilobyte.)
    fn plan_flush<H: MmHw>(
        &mut self,
        mm: &Mm<F>,
        cfg: &TlbConfig,
        hw: &H,
        range: Option<FlushRange>,
        whole: bool,
        plan: &mut FlushPlan,
    ) -> bool {
        if cfg.bugs.skip_flush {
            return false;
        }
        let (whole, range) = match range {
            // Bugs::nested_pages_only: the zap's own range, as pages.
            Some(r) if whole && self.call.zaps() && cfg.bugs.nested_pages_only => {
                (false, Some(FlushRange { stride: crate::mm::pte::PAGE_SIZE, leaf_level: Some(3), ..r }))
            }
            _ => (whole, range),
        };
        let (asid, r) = if whole {
            if !self.batched_flush {
                let event = if self.call.zaps() { Event::NestedFullFlush } else { Event::RacingFullFlush };
                hw.event(event);
            }
            let Some(asid) = self.asid(mm) else { return false };
            (asid, None)
        } else {
            let Some(mut r) = range else { return false };
            let Some(asid) = self.asid(mm) else {
                hw.decision(Decision::no_tlbi(None, Span::Va { start: r.start, end: r.end }, Reason::NeverActive));
                return false;
            };
            if cfg.bugs.leaf_only_after_free {
                r.tables_freed = false;
                r.leaf_level = Some(LEAF_LEVEL as u8);
            }
            if cfg.bugs.block_page_stride && r.stride > crate::mm::pte::PAGE_SIZE {
                r.stride = crate::mm::pte::PAGE_SIZE;
                r.leaf_level = Some(LEAF_LEVEL as u8);
            }
            (asid, Some(r))
        };
        self.secondary(mm, cfg, hw, Invalidation { asid, range: r.map(|r| (r.start, r.end)), release: false });
        // A whole-ASID flush for a racing call may cover tables another zap
        // freed: lazy CPUs leave for it too.
        let freed = r.is_none_or(|r| r.tables_freed);
        let (new_gen, here, targets) = match shootdown::route(mm, cfg, hw, freed) {
            Route::Broadcast => {
                self.plan_ops(cfg, hw, asid, r, Scope::Broadcast, 0, plan);
                return true;
            }
            Route::Shoot { new_gen, here, targets } => (new_gen, here, targets),
        };
        if targets != 0 {
            let req = Shootdown { new_gen, asid, range: r, freed_tables: freed, dying: false };
            self.shoot = Some((targets, req));
        }
        if !here {
            // This CPU does not hold the mm: it catches up when it loads it.
            let span = r.map_or(Span::WholeAsid, |r| Span::Va { start: r.start, end: r.end });
            let why = self.whole_reason();
            hw.decision(Decision::no_tlbi(Some(asid), span, why).with_ipi(targets));
            return false;
        }
        let how = if cfg.bugs.no_stale_mark {
            CatchUp::Partial
        } else {
            let (how, cur) = shootdown::behind(mm, cfg, hw, new_gen, r.is_some());
            self.gen_to = Some(cur);
            if shootdown::skipped_here(mm, hw) {
                CatchUp::All
            } else {
                how
            }
        };
        match how {
            CatchUp::None => false,
            CatchUp::Partial => {
                self.plan_ops(cfg, hw, asid, r, Scope::Local, targets, plan);
                true
            }
            CatchUp::Full if r.is_some() => {
                // This CPU missed earlier flushes: its whole ASID.
                plan.set_whole_asid(asid, Scope::Local);
                hw.decision(Decision::whole_asid(asid, plan, Reason::CatchUp).with_ipi(targets));
                true
            }
            CatchUp::Full => {
                self.plan_ops(cfg, hw, asid, None, Scope::Local, targets, plan);
                true
            }
            CatchUp::All => {
                // Skipped while lazy here: everything (`shootdown::flush_all_here`).
                plan.reset(Scope::Local);
                let _ = plan.try_push(TlbiOp::All);
                hw.decision(Decision::op(&TlbiOp::All, Scope::Local, Reason::CatchUp).with_ipi(targets));
                hw.event(Event::StaleFlush);
                true
            }
        }
    }

    /// The policy's ops for `r` (the whole ASID for `None`) in `scope`, told
    /// to `hw` as a decision with its IPI targets.
    #[allow(clippy::too_many_arguments)]
    fn plan_ops<H: MmHw>(
        &self,
        cfg: &TlbConfig,
        hw: &H,
        asid: u16,
        r: Option<FlushRange>,
        scope: Scope,
        ipi: u64,
        plan: &mut FlushPlan,
    ) {
        let Some(r) = r else {
            plan.set_whole_asid(asid, scope);
            let why = self.whole_reason();
            hw.decision(Decision::whole_asid(asid, plan, why).with_ipi(ipi));
            return;
        };
        let (policy, req) = (RangePolicy::new(cfg.params), r.request(asid));
        match policy.plan_into(&req, &cfg.features, plan) {
            Ok(()) => {
                plan.set_scope(scope);
                let why = Reason::for_plan(self.call.cause(), plan.reason());
                hw.decision(Decision::planned(policy.name(), &req, plan, why).with_ipi(ipi));
            }
            Err(e) => {
                log::error!(target: "tlb", "bad flush request {r:?}: {e}; flushing ASID {asid}");
                plan.set_whole_asid(asid, scope);
                hw.decision(Decision::whole_asid(asid, plan, Reason::BadRequest).with_ipi(ipi));
            }
        }
    }

    /// [`Self::plan_flush`] then [`Self::after_plan`]: the flush of `range`
    /// (or the whole ASID) planned and issued, and the step that follows.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn flush<H: MmHw>(
        &mut self,
        mm: &Mm<F>,
        cfg: &TlbConfig,
        hw: &H,
        range: Option<FlushRange>,
        whole: bool,
        complete: Pc,
        next: Next,
    ) -> Pc {
        let mut plan = FlushPlan::new(Scope::Broadcast);
        let issued = self.plan_flush(mm, cfg, hw, range, whole, &mut plan);
        self.after_plan(hw, &plan, issued, complete, next)
    }

    /// After [`Self::plan_flush`]: issue what it planned (then `complete`),
    /// or go on to its IPIs, or to `next` when there is nothing at all.
    fn after_plan<H: MmHw>(&mut self, hw: &H, plan: &FlushPlan, issued: bool, complete: Pc, next: Next) -> Pc {
        if issued {
            self.issue(hw, plan);
            complete
        } else {
            self.gen_to = None;
            self.after_complete(next)
        }
    }

    /// After this CPU's own flush completed: the IPIs, if any, then the
    /// secondary MMUs' acknowledgements, then `next`.
    fn after_complete(&self, next: Next) -> Pc {
        if self.shoot.is_some() {
            Pc::Send { next }
        } else {
            self.go(next)
        }
    }

    /// `next`, after the secondary MMUs' acknowledgements if any are owed.
    fn go(&self, next: Next) -> Pc {
        if self.sec {
            Pc::SecWait { next }
        } else {
            next.pc()
        }
    }

    /// Why a whole-ASID flush of this operation happens.
    fn whole_reason(&self) -> Reason {
        if self.batched_flush {
            Reason::BatchedPending
        } else {
            Reason::for_whole_asid(self.call.cause())
        }
    }

    /// Reclaim, the leaf just made a swap entry: the page's TLBI, broadcast
    /// whatever the strategy (it is issued without waiting, so no CPU is
    /// left to catch up later), and the secondary MMUs told. In a batch
    /// (`TlbConfig::reclaim_batch`, the default) nothing waits here: the
    /// mm is marked `batched`, and the [`super::reclaim::Batch`] completes
    /// the TLBI with one DSB on this CPU and waits for the devices before
    /// any page is freed. Unbatched, this operation completes both itself.
    fn batch_issue<H: MmHw>(&mut self, mm: &Mm<F>, cfg: &TlbConfig, hw: &H) -> Pc {
        let Call::Reclaim { va, .. } = self.call else { unreachable!("batch issue of {:?}", self.call) };
        hw.event(Event::ReclaimUnmap);
        let r = AddressSpace::<F>::cow_flush_range(va);
        let Some(asid) = self.asid(mm) else {
            hw.decision(Decision::no_tlbi(None, Span::Va { start: r.start, end: r.end }, Reason::NeverActive));
            return Pc::Unlock { then: AfterUnlock::Done };
        };
        let inv = Invalidation { asid, range: Some((r.start, r.end)), release: false };
        if cfg.reclaim_batch {
            let devices = mm.subscribers();
            if devices != 0 {
                hw.notify_secondary(mm, devices, &inv);
            }
        } else {
            self.secondary(mm, cfg, hw, inv);
        }
        if !cfg.bugs.skip_flush {
            let mut plan = FlushPlan::new(Scope::Broadcast);
            self.plan_ops(cfg, hw, asid, Some(r), Scope::Broadcast, 0, &mut plan);
            self.issue(hw, &plan);
        }
        if cfg.reclaim_batch {
            self.issued = None;
            mm.batched.store(true, Ordering::Relaxed);
            Pc::Unlock { then: AfterUnlock::Done }
        } else if self.issued.is_some() {
            Pc::Complete { then: Then::Unlock }
        } else {
            self.go(Next::Release(Then::Unlock))
        }
    }

    /// invalidate-range-start, once per operation, on an mm with
    /// subscribers ([`super::notifier`]): before the call's first change of
    /// an entry.
    fn open_range<H: MmHw>(&mut self, mm: &Mm<F>, hw: &H) {
        if !self.notified && mm.subscribers() != 0 {
            mm.range_start();
            hw.event(Event::MnRange);
            self.notified = true;
        }
    }

    /// invalidate-range-end, when the operation is done (its flushes
    /// complete and acknowledged, what they covered freed).
    fn close_range<H: MmHw>(&mut self, mm: &Mm<F>, hw: &H) {
        self.send_late(mm, hw);
        if self.notified {
            mm.range_end();
            self.notified = false;
        }
    }

    /// The secondary half of a flush, where the primary one is planned: the
    /// subscribers are sent `inv` now and acknowledge before anything the
    /// flush covers is freed (`SecWait`); under `mmu.notifier=late`, after
    /// the free instead.
    fn secondary<H: MmHw>(&mut self, mm: &Mm<F>, cfg: &TlbConfig, hw: &H, inv: Invalidation) {
        let devices = mm.subscribers();
        if devices == 0 || cfg.bugs.no_secondary {
            return;
        }
        if cfg.notifier_late {
            // One late invalidation per release: widen to the whole ASID if
            // two flushes share it.
            self.late = Some(match self.late {
                Some((d, old)) if old == inv => (d | devices, inv),
                Some((d, _)) => (d | devices, Invalidation { range: None, ..inv }),
                None => (devices, inv),
            });
        } else {
            hw.notify_secondary(mm, devices, &inv);
            self.sec = true;
        }
    }

    /// `mmu.notifier=late`: what [`Self::secondary`] held back, after the
    /// free.
    fn send_late<H: MmHw>(&mut self, mm: &Mm<F>, hw: &H) {
        if let Some((devices, inv)) = self.late.take() {
            hw.notify_secondary(mm, devices, &inv);
        }
    }

    /// The teardown, with the tables taken out: the secondary MMUs drop
    /// every entry of the mm and stop walking it (`->release`) before any
    /// table or page is freed. The primary flush may be elided; this one
    /// never is, since no TTBR0 rule keeps a device off the ASID.
    fn release_secondary<H: MmHw>(&mut self, mm: &Mm<F>, cfg: &TlbConfig, hw: &H) {
        if mm.subscribers() == 0 {
            return;
        }
        // Binding pinned an ASID before subscribing (`Mm::subscribe`).
        let asid = mm.ctx.asid().expect("a subscribed mm has an ASID");
        self.open_range(mm, hw);
        self.secondary(mm, cfg, hw, Invalidation { asid, range: None, release: true });
        if self.sec {
            self.pc = Pc::SecWait { next: Next::TearZap };
        }
    }

    /// Issues `plan`'s ops; this CPU's next [`Self::complete`] completes them.
    fn issue<H: MmHw>(&mut self, hw: &H, plan: &FlushPlan) {
        super::repeat::issue(hw, self.repeat, plan.ops(), plan.scope());
        self.issued = Some(plan.scope());
    }

    /// The teardown's flush of a batch: none when eliding (counted once),
    /// else one whole-ASID flush for the whole teardown (no CPU can create
    /// new entries for the ASID, so later batches need none).
    fn teardown_flush<H: MmHw>(&mut self, mm: &Mm<F>, cfg: &TlbConfig, hw: &H, more: bool) -> Pc {
        let something = self.g.flush_range().is_some();
        if !something || self.flushed || cfg.bugs.skip_flush || mm.ctx.asid().is_none() {
            return Pc::TearRelease { more };
        }
        self.flushed = true;
        if self.elide {
            hw.event(Event::ExitElided);
            hw.decision(Decision::no_tlbi(mm.ctx.asid(), Span::WholeAsid, Reason::ExitElided));
            return Pc::TearRelease { more };
        }
        let mut plan = FlushPlan::new(Scope::Broadcast);
        if self.whole_asid(mm, hw, &mut plan) {
            self.issue(hw, &plan);
            Pc::TearComplete { more }
        } else {
            Pc::TearRelease { more }
        }
    }

    /// This CPU's DSB for what it issued; then its TLB is clean up to the
    /// generation its flush caught up with.
    fn complete<H: MmHw>(&mut self, mm: &Mm<F>, hw: &H) {
        if let Some(scope) = self.issued.take() {
            super::repeat::complete(hw, self.repeat, scope);
        }
        if let Some(g) = self.gen_to.take() {
            shootdown::caught_up(mm, hw, g);
        }
    }
}
