//! The kernel's side of exception entry: the arch layer decodes each
//! exception and delivers it here ([`KernelTraps`], registered at boot),
//! and this passes it on to the interrupt code, the scheduler, system calls,
//! page faults and the process that faulted.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::exception::{TrapFrame, Unexpected};
use crate::arch::trap::{TrapHandler, UserFault};
use crate::mm::aspace::FaultError;
use crate::task::{process, sched, syscall};
use abi::cause;

/// User faults resumed at the process's fault-resume PC.
pub static RESUMED_FAULTS: AtomicU64 = AtomicU64::new(0);

/// The kernel's [`TrapHandler`].
pub struct KernelTraps;

/// Registers [`KernelTraps`] with the arch layer; first thing at boot.
pub fn init() {
    crate::arch::trap::set_handler(&KernelTraps);
}

impl TrapHandler for KernelTraps {
    fn irq(&self, from_user: bool) {
        crate::irq::handle_irq();
        sched::maybe_preempt(from_user);
    }

    fn syscall(&self, frame: &mut TrapFrame) {
        syscall::dispatch(frame);
    }

    /// Resolves a page fault at `far` in the current process, or in the
    /// address space a kernel thread adopted (an asynchronous job's user
    /// copies, `task::jobs`).
    fn page_fault(&self, far: u64, write: bool, exec: bool) -> Result<(), i64> {
        if far >= abi::USER_END {
            return Err(cause::KERNEL_ADDRESS);
        }
        let t = sched::current();
        loop {
            let r = match (t.process(), t.adopted()) {
                (Some(p), _) => p.mm.fault(far, write, exec),
                (None, Some(mm)) => mm.fault(far, write, exec),
                (None, None) => return Err(cause::OTHER_FAULT),
            };
            match r {
                Ok(_) => break,
                // The page is on its way to swap: its reclaim batch runs on
                // another CPU and may wait for this one (an IPI to serve, a
                // device's thread to run here). Serve, let others run, and
                // try again.
                Err(FaultError::SwapBusy) => {
                    crate::mm::ipi::poll();
                    sched::yield_now();
                }
                Err(e) => return Err(e.cause()),
            }
        }
        syscall::PAGE_FAULTS.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Resumes an unmapped or protection abort at the process's
    /// fault-resume PC (x0 = the address) if it set one; kills the process
    /// otherwise.
    fn user_fault(&self, frame: &mut TrapFrame, f: UserFault) {
        let UserFault { cause: c, ec, far, abort } = f;
        let resume = sched::current().process().map_or(0, |p| p.fault_resume.load(Ordering::Acquire));
        if resume != 0 && abort && matches!(c, cause::UNMAPPED | cause::PROTECTION) {
            RESUMED_FAULTS.fetch_add(1, Ordering::Relaxed);
            frame.elr = resume;
            frame.x[0] = far;
            return;
        }
        log::debug!(target: "fault", "pid {:?}: EC {ec:#x} at {far:#x} (ELR {:#x}) -> cause {c}",
            sched::current().process().map(|p| p.pid), frame.elr);
        process::kill_current(c);
    }

    /// A killed process's thread ends here.
    fn return_to_user(&self) {
        let t = sched::current();
        if t.process().is_some_and(|p| p.is_killed()) {
            drop(t);
            process::exit_thread(0);
        }
    }

    fn unexpected(&self, u: &Unexpected, frame: &TrapFrame) -> ! {
        crate::fault::unexpected_exception(u, frame)
    }
}
