//! The Rust side of exception entry: interrupts are dispatched, anything
//! unexpected is reported (and recovered from inside a test) or ends the run.

use super::cpu::cpu_id;
use super::exception::{decode_kind, Origin, TrapFrame, Unexpected, VectorKind};

fn read_esr_far() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading the syndrome registers has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far, options(nomem, nostack))
    };
    (esr, far)
}

#[no_mangle]
extern "C" fn rust_trap(frame: &mut TrapFrame, kind: u64) {
    let (vk, origin) = decode_kind(kind);
    match (vk, origin) {
        (VectorKind::Irq, Origin::CurrentSpx | Origin::Lower64) => crate::irq::handle_irq(),
        _ => {
            let (esr, far) = read_esr_far();
            let u = Unexpected { kind: vk, origin, esr, far, elr: frame.elr, cpu: cpu_id() };
            crate::fault::unexpected_exception(&u, frame);
        }
    }
}
