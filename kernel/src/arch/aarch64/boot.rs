//! Entry points: the arm64 `Image` header, the EL2→EL1 drop, MMU enable and
//! the jump to the kernel's link address in the upper half.
//!
//! Written in assembly because it runs before there is a stack, with the MMU
//! off, at whatever physical address the loader chose.

use core::arch::global_asm;

/// Values `enable_mmu` loads into the system registers; written by
/// [`super::early::boot_build_tables`] with the MMU off and read by every CPU
/// (the secondaries read it with their MMU still off, so it lives in memory,
/// not only in a cache).
#[repr(C)]
pub struct BootParams {
    pub mair: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub sctlr: u64,
}

#[no_mangle]
pub static mut BOOT_PARAMS: BootParams = BootParams { mair: 0, tcr: 0, ttbr0: 0, ttbr1: 0, sctlr: 0 };

/// Top of the stack (a kernel VA) the next secondary CPU starts on; written by
/// the boot CPU before each PSCI CPU_ON, one CPU at a time.
#[no_mangle]
pub static mut SECONDARY_STACK_TOP: u64 = 0;

extern "C" {
    /// Physical-address entry point handed to PSCI CPU_ON (x0 = CPU index).
    pub fn secondary_entry();
}

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   0                       // text_offset
    .quad   __image_size            // image_size (includes bss)
    .quad   0xa                     // flags: little-endian, 4K pages, anywhere
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

.section .text.boot, "ax"
primary_entry:
    mov     x19, x0                 // device tree (physical)
    mrs     x21, CurrentEL          // entry EL, before any drop
    bl      el2_to_el1
    bl      cpu_early_init
    adrp    x20, __image_start      // physical load address
    adrp    x0, __bss_start
    adrp    x1, __bss_end
1:  cmp     x0, x1
    b.hs    2f
    stp     xzr, xzr, [x0], #16
    b       1b
2:  adrp    x0, boot_stack_top
    add     x0, x0, :lo12:boot_stack_top
    mov     sp, x0
    mov     x0, x20
    mov     x1, x19
    mov     x2, x21
    bl      boot_build_tables       // Rust, MMU off
    // The tables and boot data were written with the MMU (and caches) off:
    // drop any stale cache lines over BSS so cached reads see memory.
    adrp    x0, __bss_start
    adrp    x1, __bss_end
    mrs     x2, ctr_el0
    ubfx    x2, x2, #16, #4
    mov     x3, #4
    lsl     x3, x3, x2
7:  dc      ivac, x0
    add     x0, x0, x3
    cmp     x0, x1
    b.lo    7b
    dsb     sy
    bl      enable_mmu
    ldr     x0, =primary_high
    br      x0

// Drop from EL2 to EL1 if entered at EL2 (returns at EL1 either way).
// Clobbers x9; preserves x19/x20.
el2_to_el1:
    mrs     x9, CurrentEL
    lsr     x9, x9, #2
    cmp     x9, #2
    b.ne    3f
    mov     x9, #(1 << 31)          // HCR_EL2.RW: EL1 is AArch64
    msr     hcr_el2, x9
    mov     x9, #3                  // EL1 may use the physical counter and timer
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr
    mrs     x9, id_aa64pfr0_el1
    ubfx    x9, x9, #24, #4         // GIC system-register interface present?
    cbz     x9, 4f
    mov     x9, #0xf                // ICC_SRE_EL2: SRE, DFB, DIB, Enable (EL1 may use it)
    msr     S3_4_C12_C9_5, x9
    isb
    msr     S3_4_C12_C11_0, xzr     // ICH_HCR_EL2: no virtual CPU interface
4:  mov     x9, #0x33ff             // CPTR_EL2: RES1 bits, no FP/SIMD trap
    msr     cptr_el2, x9
    msr     hstr_el2, xzr
    mrs     x9, midr_el1
    msr     vpidr_el2, x9
    mrs     x9, mpidr_el1
    msr     vmpidr_el2, x9
    msr     vttbr_el2, xzr
    ldr     x9, =0x30d00800         // SCTLR_EL1 RES1 bits, MMU off
    msr     sctlr_el1, x9
    mov     x9, #0x3c5              // SPSR: EL1h, DAIF masked
    msr     spsr_el2, x9
    msr     elr_el2, x30
    isb
    eret
3:  ret

cpu_early_init:
    mov     x9, #(3 << 20)          // CPACR_EL1.FPEN: no FP/SIMD traps
    msr     cpacr_el1, x9
    isb
    ret

// Load MAIR/TCR/TTBRs from BOOT_PARAMS and turn the MMU on. Runs from the
// identity map (TTBR0), so the instruction after the SCTLR write is fetched
// at the same address with the MMU on.
enable_mmu:
    adrp    x9, BOOT_PARAMS
    add     x9, x9, :lo12:BOOT_PARAMS
    ldr     x10, [x9, #0]
    msr     mair_el1, x10
    ldr     x10, [x9, #8]
    msr     tcr_el1, x10
    ldr     x10, [x9, #16]
    msr     ttbr0_el1, x10
    ldr     x10, [x9, #24]
    msr     ttbr1_el1, x10
    isb
    // TLB contents are UNKNOWN out of reset: drop them before the first walk.
    // (Boot-time, MMU-off maintenance; the counted TLBI layer starts once the
    // kernel runs.)
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x10, [x9, #32]
    msr     sctlr_el1, x10
    isb
    ic      iallu
    dsb     nsh
    isb
    ret

.global secondary_entry
secondary_entry:
    mov     x19, x0                 // CPU index (PSCI context id)
    bl      el2_to_el1
    bl      cpu_early_init
    bl      enable_mmu
    ldr     x0, =secondary_high
    br      x0

.text
primary_high:
    ldr     x0, =boot_stack_top
    mov     sp, x0
    msr     tpidr_el1, xzr
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    mov     x1, x20
    bl      kernel_main
5:  wfe
    b       5b

secondary_high:
    ldr     x0, =SECONDARY_STACK_TOP
    ldr     x0, [x0]
    mov     sp, x0
    msr     tpidr_el1, x19
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    bl      secondary_main
6:  wfe
    b       6b

.section .bss.boot_stack, "aw", %nobits
.balign 4096
boot_stack:
    .space  0x10000
boot_stack_top:
"#
);
