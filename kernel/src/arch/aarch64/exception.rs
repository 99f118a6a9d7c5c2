//! The exception vector table, the trap frame, and decoding of unexpected
//! exceptions.

use core::arch::global_asm;

/// Registers saved on exception entry (layout shared with the assembly).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
}

/// Bytes the exception entry reserves on the stack for a [`TrapFrame`].
pub const TRAP_FRAME_BYTES: u64 = 34 * 8 + 16;

/// Which of the 16 vectors was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorKind {
    Sync,
    Irq,
    Fiq,
    SError,
}

/// Where the exception came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// EL1 using SP_EL0 (never used by this kernel: a bug if seen).
    CurrentSp0,
    /// EL1 using SP_EL1: the kernel itself.
    CurrentSpx,
    /// EL0 in AArch64: user space.
    Lower64,
    /// EL0 in AArch32 (not supported).
    Lower32,
}

global_asm!(
    r#"
.macro VECTOR kind
.balign 0x80
    sub     sp, sp, #(34 * 8 + 16)
    stp     x0, x1, [sp, #(0 * 8)]
    stp     x2, x3, [sp, #(2 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mov     x1, #\kind
    b       trap_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

trap_common:
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #(30 * 8)]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #(32 * 8)]
    mov     x0, sp
    bl      rust_trap
.global trap_return
trap_return:
    ldp     x2, x3, [sp, #(32 * 8)]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x30, x2, [sp, #(30 * 8)]
    msr     sp_el0, x2
    ldp     x0, x1, [sp, #(0 * 8)]
    ldp     x2, x3, [sp, #(2 * 8)]
    ldp     x4, x5, [sp, #(4 * 8)]
    ldp     x6, x7, [sp, #(6 * 8)]
    ldp     x8, x9, [sp, #(8 * 8)]
    ldp     x10, x11, [sp, #(10 * 8)]
    ldp     x12, x13, [sp, #(12 * 8)]
    ldp     x14, x15, [sp, #(14 * 8)]
    ldp     x16, x17, [sp, #(16 * 8)]
    ldp     x18, x19, [sp, #(18 * 8)]
    ldp     x20, x21, [sp, #(20 * 8)]
    ldp     x22, x23, [sp, #(22 * 8)]
    ldp     x24, x25, [sp, #(24 * 8)]
    ldp     x26, x27, [sp, #(26 * 8)]
    ldp     x28, x29, [sp, #(28 * 8)]
    add     sp, sp, #(34 * 8 + 16)
    eret
"#
);

/// Decoded ESR_EL1 exception class.
pub fn ec_name(ec: u64) -> &'static str {
    match ec {
        0x00 => "unknown reason",
        0x01 => "WFI/WFE trapped",
        0x07 => "SVE/SIMD/FP access trapped",
        0x0e => "illegal execution state",
        0x15 => "SVC from AArch64",
        0x18 => "MSR/MRS/system instruction trapped",
        0x20 => "instruction abort from a lower EL",
        0x21 => "instruction abort from the same EL",
        0x22 => "PC alignment fault",
        0x24 => "data abort from a lower EL",
        0x25 => "data abort from the same EL",
        0x26 => "SP alignment fault",
        0x2c => "floating-point exception",
        0x2f => "SError",
        0x30 | 0x31 => "breakpoint",
        0x32 | 0x33 => "software step",
        0x34 | 0x35 => "watchpoint",
        0x3c => "BRK instruction",
        _ => "unrecognised exception class",
    }
}

/// Fault status code (DFSC/IFSC) of an abort.
pub fn fsc_name(fsc: u64) -> &'static str {
    match fsc & 0x3f {
        0x00..=0x03 => "address size fault",
        0x04..=0x07 => "translation fault",
        0x09..=0x0b => "access flag fault",
        0x0d..=0x0f => "permission fault",
        0x10 => "synchronous external abort",
        0x21 => "alignment fault",
        0x30 => "TLB conflict abort",
        _ => "other fault",
    }
}

/// An exception the kernel did not expect, decoded for the console.
#[derive(Clone, Copy, Debug)]
pub struct Unexpected {
    pub kind: VectorKind,
    pub origin: Origin,
    pub esr: u64,
    pub far: u64,
    pub elr: u64,
    pub cpu: usize,
}

impl Unexpected {
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }
}

impl core::fmt::Display for Unexpected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let ec = self.ec();
        write!(
            f,
            "unexpected {:?} exception from {:?} on CPU {}: EC {:#04x} ({})",
            self.kind,
            self.origin,
            self.cpu,
            ec,
            ec_name(ec)
        )?;
        if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) {
            let wnr = if ec >= 0x24 && self.esr & (1 << 6) != 0 { " on write" } else { "" };
            write!(f, ", {}{} at level {}", fsc_name(self.esr), wnr, self.esr & 3)?;
        }
        write!(f, "; ESR {:#x} FAR {:#x} ELR {:#x}", self.esr, self.far, self.elr)
    }
}

pub fn decode_kind(kind: u64) -> (VectorKind, Origin) {
    let v = match kind & 3 {
        0 => VectorKind::Sync,
        1 => VectorKind::Irq,
        2 => VectorKind::Fiq,
        _ => VectorKind::SError,
    };
    let o = match kind >> 2 {
        0 => Origin::CurrentSp0,
        1 => Origin::CurrentSpx,
        2 => Origin::Lower64,
        _ => Origin::Lower32,
    };
    (v, o)
}
