//! Bringing up the secondary CPUs through PSCI, and running a function on
//! another CPU (by SGI) until the scheduler exists.

use core::sync::atomic::Ordering;

use crate::arch::{boot, cpu, layout};
use crate::percpu::{self, MAX_CPUS};
use crate::{irq, BOARD};
use platform::{gic, psci, timer};

/// Kernel stack per secondary CPU: 64 KiB.
const STACK_PAGES: usize = 16;

#[derive(Debug)]
pub enum SmpError {
    NoStack,
    Psci(psci::PsciError),
    Timeout,
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmpError::NoStack => f.write_str("no memory for a CPU stack"),
            SmpError::Psci(e) => write!(f, "{e}"),
            SmpError::Timeout => f.write_str("CPU did not come online within 2 s"),
        }
    }
}

fn start_one(idx: usize, mpidr: u64, conduit: platform::Conduit) -> Result<(), SmpError> {
    let stack = crate::mm::phys::alloc_frames(STACK_PAGES).ok_or(SmpError::NoStack)?;
    let top = layout::phys_to_virt(stack.pa()) + (STACK_PAGES as u64) * 4096;
    percpu::get(idx).stack_top.store(top, Ordering::Relaxed);
    // SAFETY: only the boot CPU writes this, one secondary at a time, before
    // the CPU_ON that makes the secondary read it.
    unsafe { (&raw mut boot::SECONDARY_STACK_TOP).write_volatile(top) };
    let entry_va = boot::secondary_entry as *const () as u64;
    let entry_pa = entry_va - layout::KIMAGE_VBASE + crate::image_pa();
    psci::cpu_on(conduit, mpidr, entry_pa, idx as u64).map_err(SmpError::Psci)?;
    let deadline = timer::now() + 2 * timer::frequency();
    while !percpu::get(idx).online.load(Ordering::Acquire) {
        if timer::now() > deadline {
            return Err(SmpError::Timeout);
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// Starts every CPU the device tree lists; returns how many are online.
pub fn start_secondaries() -> usize {
    let board = BOARD.get().expect("board info");
    let me = cpu::mpidr();
    let mut idx = 1;
    for &mpidr in board.cpus() {
        if mpidr == me || idx >= MAX_CPUS {
            continue;
        }
        percpu::get(idx).mpidr.store(mpidr, Ordering::Relaxed);
        if let Err(e) = start_one(idx, mpidr, board.psci) {
            log::error!(target: "smp", "CPU {idx} (MPIDR {mpidr:#x}): {e}");
        }
        idx += 1;
    }
    percpu::online_count()
}

/// First Rust code on a secondary CPU (MMU on, own stack, TPIDR_EL1 set).
#[no_mangle]
extern "C" fn secondary_main(idx: usize) -> ! {
    crate::mm::kernel::enter_empty_ttbr0();
    cpu::init_user_access();
    gic::init_cpu(idx);
    irq::init_cpu(idx);
    crate::task::sched::init_cpu(idx, "idle", true);
    percpu::get(idx).online.store(true, Ordering::Release);
    cpu::irq_enable();
    log::debug!(target: "smp", "CPU {idx} online");
    crate::task::sched::idle_loop()
}

/// `call_fn` while a caller fills the mailbox in.
const CLAIMED: usize = usize::MAX;
/// `call_fn` while the target runs the call: only the target clears it.
const RUNNING: usize = usize::MAX - 1;

/// Runs `f(arg)` on `cpu` (from its IRQ handler) and waits until it is done.
/// Returns false if the CPU is offline, or did not take the mailbox or the
/// call within 2 s each. A call that timed out before the target took it is
/// withdrawn (it never runs); one the target has taken keeps the mailbox
/// until it ends, so a late call never overwrites a later caller's.
pub fn run_on(target: usize, f: fn(usize), arg: usize) -> bool {
    if target == cpu::cpu_id() {
        f(arg);
        return true;
    }
    let pc = percpu::get(target);
    if !pc.online.load(Ordering::Acquire) {
        return false;
    }
    // Claim the mailbox (one caller at a time per target).
    let deadline = timer::now() + 2 * timer::frequency();
    while pc.call_fn.compare_exchange(0, CLAIMED, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        if timer::now() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    // Read under the claim: no other call can complete until ours has.
    let done = pc.call_done.load(Ordering::Acquire);
    let func = f as usize;
    pc.call_arg.store(arg, Ordering::Relaxed);
    pc.call_fn.store(func, Ordering::Release);
    if gic::send_sgi(irq::SGI_CALL, pc.mpidr.load(Ordering::Relaxed)).is_err() {
        pc.call_fn.store(0, Ordering::Release);
        return false;
    }
    let deadline = timer::now() + 2 * timer::frequency();
    while pc.call_done.load(Ordering::Acquire) == done {
        if timer::now() > deadline {
            // Withdraw the call if the target has not taken it; if it has,
            // the target clears the mailbox when the call ends.
            let withdrawn = pc.call_fn.compare_exchange(func, 0, Ordering::AcqRel, Ordering::Acquire).is_ok();
            return !withdrawn && pc.call_done.load(Ordering::Acquire) != done;
        }
        core::hint::spin_loop();
    }
    true
}

/// IRQ-side half of [`run_on`].
pub fn handle_call(me: usize) {
    let pc = percpu::get(me);
    let f = pc.call_fn.load(Ordering::Acquire);
    if f == 0 || f == CLAIMED || f == RUNNING {
        return;
    }
    // Take the call, unless its caller withdrew it meanwhile.
    if pc.call_fn.compare_exchange(f, RUNNING, Ordering::AcqRel, Ordering::Relaxed).is_err() {
        return;
    }
    let arg = pc.call_arg.load(Ordering::Relaxed);
    // SAFETY: `call_fn` only ever holds a `fn(usize)` stored by `run_on`
    // (besides 0, `CLAIMED` and `RUNNING`, excluded above).
    let func: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(f) };
    func(arg);
    // Count first, then free the mailbox: a caller that claims it next
    // reads the count only after that.
    pc.call_done.fetch_add(1, Ordering::AcqRel);
    pc.call_fn.store(0, Ordering::Release);
}
