//! The Rust side of exception entry: decodes each exception and delivers it
//! to the kernel's [`TrapHandler`], registered once at boot with
//! [`set_handler`]: interrupts, system calls, user faults, faults inside the
//! user-copy routines, and anything unexpected.

use super::cpu::cpu_id;
use super::exception::{decode_kind, Origin, TrapFrame, Unexpected, VectorKind};
use super::uaccess;
use abi::cause;

/// What the kernel does with the exceptions this module decodes. Called in
/// exception context on the CPU that took the exception, entered with IRQs
/// masked.
pub trait TrapHandler: Sync {
    /// An interrupt, taken in the kernel or (`from_user`) in user space.
    fn irq(&self, from_user: bool);

    /// A system call (`SVC`) from user space: arguments and results in
    /// `frame`.
    fn syscall(&self, frame: &mut TrapFrame);

    /// A translation, access-flag or permission fault at `far` in a user
    /// access: from user space, or from the kernel's user-copy routines.
    /// `Ok` if resolved (the access is retried), `Err(cause)` if the access
    /// is not allowed.
    fn page_fault(&self, far: u64, write: bool, exec: bool) -> Result<(), i64>;

    /// A synchronous exception from user space that nothing resolved.
    fn user_fault(&self, frame: &mut TrapFrame, fault: UserFault);

    /// Last call before `eret` to user space.
    fn return_to_user(&self);

    /// Any exception the kernel does not expect.
    fn unexpected(&self, u: &Unexpected, frame: &TrapFrame) -> !;
}

/// An unresolved synchronous exception from user space.
#[derive(Clone, Copy, Debug)]
pub struct UserFault {
    /// Why, as the `abi::cause` code the process is killed with.
    pub cause: i64,
    /// The exception class (ESR_EL1.EC).
    pub ec: u64,
    /// The faulting address (FAR_EL1).
    pub far: u64,
    /// It was a data or instruction abort.
    pub abort: bool,
}

static HANDLER: spin::Once<&'static dyn TrapHandler> = spin::Once::new();

/// Registers the kernel's handler (the first call wins). Before it, every
/// exception ends in a panic.
pub fn set_handler(h: &'static dyn TrapHandler) {
    HANDLER.call_once(|| h);
}

fn read_esr_far() -> (u64, u64) {
    use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};
    (ESR_EL1.get(), FAR_EL1.get())
}

const EC_UNKNOWN: u64 = 0x00;
const EC_SVC64: u64 = 0x15;
const EC_IABT_LOW: u64 = 0x20;
const EC_PC_ALIGN: u64 = 0x22;
const EC_DABT_LOW: u64 = 0x24;
const EC_DABT_CUR: u64 = 0x25;
const EC_SP_ALIGN: u64 = 0x26;

/// Is this abort a translation, access-flag or permission fault (the kinds
/// the page-fault handler may resolve)?
fn resolvable(esr: u64) -> bool {
    matches!(esr & 0x3c, 0x04 | 0x08 | 0x0c)
}

#[no_mangle]
extern "C" fn rust_trap(frame: &mut TrapFrame, kind: u64) {
    let (vk, origin) = decode_kind(kind);
    let Some(&h) = HANDLER.get() else {
        let (esr, far) = read_esr_far();
        let u = Unexpected { kind: vk, origin, esr, far, elr: frame.elr, cpu: cpu_id() };
        panic!("{u}, before the trap handler was registered");
    };
    match (vk, origin) {
        (VectorKind::Irq, Origin::CurrentSpx) => h.irq(false),
        (VectorKind::Irq, Origin::Lower64) => {
            h.irq(true);
            h.return_to_user();
        }
        (VectorKind::Sync, Origin::Lower64) => {
            user_sync(h, frame);
            h.return_to_user();
        }
        (VectorKind::Sync, Origin::CurrentSpx) if uaccess::in_uaccess(frame.elr) => {
            let (esr, far) = read_esr_far();
            let write = esr & (1 << 6) != 0;
            if (esr >> 26) & 0x3f == EC_DABT_CUR && resolvable(esr) && h.page_fault(far, write, false).is_ok() {
                return; // retry the access
            }
            frame.elr = uaccess::fixup_address();
        }
        _ => {
            let (esr, far) = read_esr_far();
            let u = Unexpected { kind: vk, origin, esr, far, elr: frame.elr, cpu: cpu_id() };
            h.unexpected(&u, frame);
        }
    }
}

fn user_sync(h: &dyn TrapHandler, frame: &mut TrapFrame) {
    let (esr, far) = read_esr_far();
    let ec = (esr >> 26) & 0x3f;
    let result = match ec {
        EC_SVC64 => {
            h.syscall(frame);
            Ok(())
        }
        EC_DABT_LOW | EC_IABT_LOW if !resolvable(esr) => Err(cause::OTHER_FAULT),
        EC_DABT_LOW => h.page_fault(far, esr & (1 << 6) != 0, false),
        EC_IABT_LOW => h.page_fault(far, false, true),
        EC_UNKNOWN => Err(cause::ILLEGAL_INSTRUCTION),
        EC_PC_ALIGN | EC_SP_ALIGN => Err(cause::OTHER_FAULT),
        _ => Err(cause::OTHER_FAULT),
    };
    if let Err(cause) = result {
        h.user_fault(frame, UserFault { cause, ec, far, abort: matches!(ec, EC_DABT_LOW | EC_IABT_LOW) });
    }
}
