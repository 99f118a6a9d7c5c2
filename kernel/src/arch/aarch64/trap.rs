//! The Rust side of exception entry: interrupts, system calls, user faults,
//! faults inside the user-copy routines; anything unexpected is reported
//! (and recovered from inside a test) or ends the run.

use super::cpu::cpu_id;
use super::exception::{decode_kind, Origin, TrapFrame, Unexpected, VectorKind};
use super::uaccess;
use crate::task::{process, sched, syscall};
use abi::cause;

fn read_esr_far() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading the syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far, options(nomem, nostack))
    };
    (esr, far)
}

const EC_UNKNOWN: u64 = 0x00;
const EC_SVC64: u64 = 0x15;
const EC_IABT_LOW: u64 = 0x20;
const EC_PC_ALIGN: u64 = 0x22;
const EC_DABT_LOW: u64 = 0x24;
const EC_DABT_CUR: u64 = 0x25;
const EC_SP_ALIGN: u64 = 0x26;

/// User faults resumed at the process's fault-resume PC.
pub static RESUMED_FAULTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Is this abort a translation, access-flag or permission fault (the kinds
/// the page-fault handler may resolve)?
fn resolvable(esr: u64) -> bool {
    matches!(esr & 0x3c, 0x04 | 0x08 | 0x0c)
}

#[no_mangle]
extern "C" fn rust_trap(frame: &mut TrapFrame, kind: u64) {
    let (vk, origin) = decode_kind(kind);
    match (vk, origin) {
        (VectorKind::Irq, Origin::CurrentSpx) => {
            crate::irq::handle_irq();
            sched::maybe_preempt(false);
        }
        (VectorKind::Irq, Origin::Lower64) => {
            crate::irq::handle_irq();
            sched::maybe_preempt(true);
            return_to_user();
        }
        (VectorKind::Sync, Origin::Lower64) => {
            user_sync(frame);
            return_to_user();
        }
        (VectorKind::Sync, Origin::CurrentSpx) if uaccess::in_uaccess(frame.elr) => {
            let (esr, far) = read_esr_far();
            let write = esr & (1 << 6) != 0;
            if (esr >> 26) & 0x3f == EC_DABT_CUR && resolvable(esr) && user_fault(far, write, false).is_ok() {
                return; // retry the access
            }
            frame.elr = uaccess::fixup_address();
        }
        _ => {
            let (esr, far) = read_esr_far();
            let u = Unexpected { kind: vk, origin, esr, far, elr: frame.elr, cpu: cpu_id() };
            crate::fault::unexpected_exception(&u, frame);
        }
    }
}

/// Resolves a page fault of the current process at `far`; `Err(cause)` if
/// the access is not allowed.
fn user_fault(far: u64, write: bool, exec: bool) -> Result<(), i64> {
    if far >= abi::USER_END {
        return Err(cause::KERNEL_ADDRESS);
    }
    let t = sched::current();
    let Some(p) = t.process() else { return Err(cause::OTHER_FAULT) };
    p.mm.fault(far, write, exec)?;
    syscall::PAGE_FAULTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    Ok(())
}

fn user_sync(frame: &mut TrapFrame) {
    let (esr, far) = read_esr_far();
    let ec = (esr >> 26) & 0x3f;
    let result = match ec {
        EC_SVC64 => {
            syscall::dispatch(frame);
            Ok(())
        }
        EC_DABT_LOW | EC_IABT_LOW if !resolvable(esr) => Err(cause::OTHER_FAULT),
        EC_DABT_LOW => user_fault(far, esr & (1 << 6) != 0, false),
        EC_IABT_LOW => user_fault(far, false, true),
        EC_UNKNOWN => Err(cause::ILLEGAL_INSTRUCTION),
        EC_PC_ALIGN | EC_SP_ALIGN => Err(cause::OTHER_FAULT),
        _ => Err(cause::OTHER_FAULT),
    };
    if let Err(c) = result {
        let resume = sched::current().process().map_or(0, |p| p.fault_resume.load(core::sync::atomic::Ordering::Acquire));
        if resume != 0 && matches!(ec, EC_DABT_LOW | EC_IABT_LOW) && matches!(c, cause::UNMAPPED | cause::PROTECTION) {
            RESUMED_FAULTS.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            frame.elr = resume;
            frame.x[0] = far;
            return;
        }
        log::debug!(target: "fault", "pid {:?}: EC {ec:#x} at {far:#x} (ELR {:#x}) -> cause {c}",
            sched::current().process().map(|p| p.pid), frame.elr);
        process::kill_current(c);
    }
}

/// Last checks before `eret` to EL0: a killed process's thread ends here.
fn return_to_user() {
    let t = sched::current();
    if t.process().is_some_and(|p| p.is_killed()) {
        drop(t);
        process::exit_thread(0);
    }
}
