//! The kernel's transport for TLB shootdowns (`space::shootdown`): a
//! mailbox per (target, initiator) pair, one SGI per target, and an
//! acknowledgement per request. Written here rather than taken from a crate
//! because what a target runs, and when the initiator may go on, is the
//! mechanism under study (docs/mechanisms.md §7).
//!
//! An initiator has at most one shootdown outstanding (it waits for every
//! acknowledgement before it goes on), so the pair's mailbox is free
//! whenever the initiator fills it. Shootdowns are sent and waited for with
//! interrupts masked (system calls run so); a CPU that waits serves the
//! requests sent to it meanwhile ([`poll`]), so two CPUs shooting at each
//! other both finish.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::hw::Hw;
use super::pagetable::Format;
use super::space::{shootdown, Mm, Served, Shootdown};
use super::tlb::{Event, Scope, TlbiOp, TLB_STATS};
use crate::arch::cpu::cpu_id;
use crate::percpu::{self, MAX_CPUS};
use platform::{gic, timer};

/// The SGI that carries shootdowns.
pub const SGI_TLB: u32 = 4;

/// A target that has not acknowledged within this many seconds is given up
/// on (see [`acked`]).
const TIMEOUT_S: u64 = 2;
/// A target that has not acknowledged is sent its SGI again every this many
/// milliseconds (an SGI is not lost, but one whose handler ran before the
/// request was visible would leave the request waiting for the next).
const REKICK_MS: u64 = 10;

/// What a target runs for a request: `serve_entry::<F>` for the mm's format.
type ServeFn = fn(usize, &Shootdown) -> Served;

/// One initiator's mailbox at one target.
struct Slot {
    /// Requests posted (the initiator bumps it once the fields are written).
    seq: AtomicU64,
    /// Requests served (the target sets it to `seq` when done).
    done: AtomicU64,
    serve: AtomicUsize,
    mm: AtomicUsize,
    req: UnsafeCell<Shootdown>,
}

// SAFETY: `req` is written by the slot's initiator only while `done ==
// seq` (no request outstanding), and read by the target only between the
// `seq` it observes (Acquire) and its `done` store (Release).
unsafe impl Sync for Slot {}

impl Slot {
    const EMPTY: Shootdown = Shootdown { new_gen: 0, asid: 0, range: None, freed_tables: false, dying: false };
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Slot = Slot {
        seq: AtomicU64::new(0),
        done: AtomicU64::new(0),
        serve: AtomicUsize::new(0),
        mm: AtomicUsize::new(0),
        req: UnsafeCell::new(Self::EMPTY),
    };
}

/// `SLOTS[target][initiator]`.
static SLOTS: [[Slot; MAX_CPUS]; MAX_CPUS] = [const { [Slot::INIT; MAX_CPUS] }; MAX_CPUS];
/// Per target: initiators with a request posted and not yet taken.
static POSTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per initiator: targets that have not acknowledged yet.
static WAITING: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Per initiator: when it gives up, when it sends the SGIs again, the ASID
/// of its request, and whether the request is a teardown's eviction.
static DEADLINE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static REKICK: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ASID: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static DYING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

fn kick(t: usize) {
    if gic::send_sgi(SGI_TLB, percpu::get(t).mpidr.load(Ordering::Relaxed)).is_err() {
        log::error!(target: "tlb", "cannot send the shootdown SGI to CPU {t}");
    }
}

fn bits(mut m: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (m != 0).then(|| {
            let b = m.trailing_zeros() as usize;
            m &= m - 1;
            b
        })
    })
}

/// A target's side: `mm` is the address of an `Mm<F>`.
fn serve_entry<F: Format>(mm: usize, req: &Shootdown) -> Served {
    // SAFETY: the initiator keeps the mm borrowed until this CPU
    // acknowledges (`MmHw::send`), which it does after this returns.
    let mm = unsafe { &*(mm as *const Mm<F>) };
    let served = shootdown::serve(mm, req, super::user::config(), &Hw);
    if served == Served::Left {
        super::user::forget(mm as *const Mm<F> as usize);
    }
    served
}

/// [`MmHw::send`] of the kernel.
pub fn send<F: Format>(mm: &Mm<F>, targets: u64, req: &Shootdown) {
    let me = cpu_id();
    let addr = mm as *const Mm<F> as usize;
    let serve: ServeFn = serve_entry::<F>;
    let mut waiting = 0;
    for t in bits(targets) {
        if t == me {
            // Only the teardown sends to its own CPU (a lazy holder).
            serve(addr, req);
            continue;
        }
        let pc = percpu::get(t);
        if t >= MAX_CPUS || !pc.online.load(Ordering::Acquire) {
            continue;
        }
        let slot = &SLOTS[t][me];
        // SAFETY: no request of ours is outstanding at `t` (we waited for
        // the last one), so the target does not read `req` now.
        unsafe { *slot.req.get() = *req };
        slot.mm.store(addr, Ordering::Relaxed);
        slot.serve.store(serve as usize, Ordering::Relaxed);
        slot.seq.fetch_add(1, Ordering::Release);
        POSTED[t].fetch_or(1 << me, Ordering::SeqCst);
        waiting |= 1 << t;
        TLB_STATS.record_event(me, Event::IpiSent);
        kick(t);
    }
    WAITING[me].store(waiting, Ordering::Relaxed);
    ASID[me].store(req.asid as u64, Ordering::Relaxed);
    DYING[me].store(req.dying, Ordering::Relaxed);
    let now = timer::now();
    DEADLINE[me].store(now + TIMEOUT_S * timer::frequency(), Ordering::Relaxed);
    REKICK[me].store(now + REKICK_MS * timer::frequency() / 1000, Ordering::Relaxed);
}

/// Runs `f(arg)` on CPU `target` (from its SGI handler, or while it
/// spins) through this CPU's mailbox there, like a shootdown; wait with
/// [`acked`]. `arg` stays valid, and this CPU sends nothing else, until
/// then. Reclaim uses it to run a batch's DSB elsewhere
/// (`reclaim.dsb=remote`). False if `target` is this CPU or not online.
pub fn call_on(target: usize, f: fn(usize), arg: usize) -> bool {
    let me = cpu_id();
    if target == me || target >= MAX_CPUS || !percpu::get(target).online.load(Ordering::Acquire) {
        return false;
    }
    // The request's `mm` word carries `f`, its serve function calls it with
    // `arg` (`req.new_gen`).
    fn call(f: usize, req: &Shootdown) -> Served {
        // SAFETY: `call_on` stored a `fn(usize)` in this word.
        let f = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
        f(req.new_gen as usize);
        Served::NotHere
    }
    let slot = &SLOTS[target][me];
    // SAFETY: no request of ours is outstanding at `target` (the caller
    // waited for the last one), so the target does not read `req` now.
    unsafe { *slot.req.get() = Shootdown { new_gen: arg as u64, ..Slot::EMPTY } };
    slot.mm.store(f as usize, Ordering::Relaxed);
    slot.serve.store(call as ServeFn as usize, Ordering::Relaxed);
    slot.seq.fetch_add(1, Ordering::Release);
    POSTED[target].fetch_or(1 << me, Ordering::SeqCst);
    WAITING[me].store(1 << target, Ordering::Relaxed);
    ASID[me].store(0, Ordering::Relaxed);
    DYING[me].store(false, Ordering::Relaxed);
    let now = timer::now();
    DEADLINE[me].store(now + TIMEOUT_S * timer::frequency(), Ordering::Relaxed);
    REKICK[me].store(now + REKICK_MS * timer::frequency() / 1000, Ordering::Relaxed);
    kick(target);
    true
}

/// [`MmHw::acked`] of the kernel. Targets that have not answered are sent
/// their SGI again every [`REKICK_MS`]. Past the deadline, requests not
/// taken yet are withdrawn and the request's ASID is flushed by broadcast
/// instead (counted `ipi_timeout`; a lazy CPU that should have left for
/// freed tables keeps them loaded, and the broadcast dropped its walk
/// caches). A teardown's eviction is never withdrawn: the address space,
/// which the lazy CPU still names, is freed once it returns, so it waits
/// (and says so) until the CPU answers.
pub fn acked() -> bool {
    let me = cpu_id();
    let mut waiting = WAITING[me].load(Ordering::Relaxed);
    for t in bits(waiting) {
        let slot = &SLOTS[t][me];
        if slot.done.load(Ordering::Acquire) == slot.seq.load(Ordering::Relaxed) {
            waiting &= !(1 << t);
        }
    }
    WAITING[me].store(waiting, Ordering::Relaxed);
    if waiting == 0 {
        return true;
    }
    poll();
    let now = timer::now();
    if now >= REKICK[me].load(Ordering::Relaxed) {
        bits(waiting).for_each(kick);
        REKICK[me].store(now + REKICK_MS * timer::frequency() / 1000, Ordering::Relaxed);
    }
    if now < DEADLINE[me].load(Ordering::Relaxed) {
        return false;
    }
    if DYING[me].load(Ordering::Relaxed) {
        log::error!(target: "tlb", "CPU {me}: CPUs {waiting:#x} have not left a dying mm for {TIMEOUT_S} s; waiting");
        TLB_STATS.record_event(me, Event::IpiTimeout);
        DEADLINE[me].store(now + TIMEOUT_S * timer::frequency(), Ordering::Relaxed);
        return false;
    }
    let mut taken = 0;
    for t in bits(waiting) {
        if POSTED[t].fetch_and(!(1 << me), Ordering::SeqCst) & (1 << me) != 0 {
            // Withdrawn before the target took it: it never runs.
            let slot = &SLOTS[t][me];
            slot.done.store(slot.seq.load(Ordering::Relaxed), Ordering::Release);
        } else {
            taken |= 1 << t;
        }
    }
    log::error!(target: "tlb", "CPU {me}: shootdown not acknowledged by CPUs {waiting:#x} within {TIMEOUT_S} s");
    TLB_STATS.record_event(me, Event::IpiTimeout);
    let asid = ASID[me].load(Ordering::Relaxed) as u16;
    let repeat = super::user::config().repeat_tlbi;
    super::space::repeat::run(&Hw, repeat, &[TlbiOp::Asid { asid }], Scope::Broadcast);
    // A target that took the request is serving it: wait for that.
    WAITING[me].store(taken, Ordering::Relaxed);
    DEADLINE[me].store(u64::MAX, Ordering::Relaxed);
    taken == 0
}

/// Serves every request posted to this CPU (from the SGI handler, and from
/// a CPU that spins with interrupts masked).
pub fn poll() {
    let me = cpu_id();
    let posted = POSTED[me].swap(0, Ordering::SeqCst);
    for from in bits(posted) {
        let slot = &SLOTS[me][from];
        let seq = slot.seq.load(Ordering::Acquire);
        let serve = slot.serve.load(Ordering::Relaxed);
        let mm = slot.mm.load(Ordering::Relaxed);
        // SAFETY: `serve` holds a `ServeFn` stored by `send` before the
        // `seq` we read (Acquire), and the request stays unchanged until we
        // store `done` (see `Slot`).
        let (serve, req) = unsafe { (core::mem::transmute::<usize, ServeFn>(serve), *slot.req.get()) };
        serve(mm, &req);
        slot.done.store(seq, Ordering::Release);
    }
}
