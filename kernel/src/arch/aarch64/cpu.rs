//! CPU identity, features and interrupt masking.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    CurrentEL, ReadWriteable, Readable, CNTKCTL_EL1, ID_AA64ISAR0_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1,
    ID_AA64MMFR2_EL1, MIDR_EL1, MPIDR_EL1, TCR_EL1, TPIDR_EL1, TTBR0_EL1, TTBR1_EL1,
};
use core::arch::asm;

/// This CPU's index (TPIDR_EL1 holds it from the first instruction at high VA).
#[inline]
pub fn cpu_id() -> usize {
    TPIDR_EL1.get() as usize
}

pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// Features the TLB code depends on, detected from the ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// FEAT_TLBIRANGE: `TLBI RVAE1IS` and friends (ID_AA64ISAR0_EL1.TLB = 0b0010).
    pub tlbi_range: bool,
    /// FEAT_TLBIOS: outer-shareable TLBI (TLB >= 0b0001).
    pub tlbi_os: bool,
    /// FEAT_TTL: level hints in TLBI operands (ID_AA64MMFR2_EL1.TTL).
    pub ttl: bool,
    /// FEAT_BBM level (ID_AA64MMFR2_EL1.BBM, bits [55:52]): at level 2 a
    /// block may be replaced by a table (or back) without the break, then
    /// flushed.
    pub bbm: u8,
    /// Hardware ASID width (8 or 16).
    pub asid_bits: u32,
    pub pa_bits: u32,
    pub midr: u64,
}

fn isar0() -> u64 {
    ID_AA64ISAR0_EL1.get()
}

fn mmfr2() -> u64 {
    ID_AA64MMFR2_EL1.get()
}

impl CpuFeatures {
    pub fn detect() -> Self {
        let (isar0, mmfr2) = (isar0(), mmfr2());
        let tlb = (isar0 >> 56) & 0xf;
        let policy = crate::mm::tlb::TlbFeatures::from_id_regs(isar0, mmfr2);
        let mmfr0 = ID_AA64MMFR0_EL1.get();
        let pa_bits = match mmfr0 & 0xf {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        };
        CpuFeatures {
            tlbi_range: policy.tlbi_range,
            tlbi_os: tlb >= 1,
            ttl: policy.ttl,
            bbm: ID_AA64MMFR2_EL1.read(ID_AA64MMFR2_EL1::BBM) as u8,
            asid_bits: if (mmfr0 >> 4) & 0xf == 2 { 16 } else { 8 },
            pa_bits,
            midr: MIDR_EL1.get(),
        }
    }

    /// What the flush policy needs to know.
    pub fn tlb(&self) -> crate::mm::tlb::TlbFeatures {
        crate::mm::tlb::TlbFeatures { tlbi_range: self.tlbi_range, ttl: self.ttl }
    }

    /// FEAT_BBM level 2 *and* a core known never to raise a TLB conflict
    /// abort for the overlap a split without the break leaves: the Arm ARM
    /// (DDI 0487K.a D8.16.2) lets a PE at level 1 or 2 raise one when
    /// translations of different sizes for one address are both cached.
    /// As Linux's `has_bbml2_noabort` (arch/arm64/kernel/cpufeature.c), an
    /// allow-list by MIDR: Cortex-X4 from r0p3, Neoverse-V3 and V3AE from
    /// r0p2 (earlier revisions advertise level 2 but need the break,
    /// erratum 3053180). QEMU's `max` reports level 2 but is not listed:
    /// there `mm.bbm=force` shows the no-break path.
    pub fn bbml2_noabort(&self) -> bool {
        let (implementer, part) = ((self.midr >> 24) & 0xff, (self.midr >> 4) & 0xfff);
        let rev = ((self.midr >> 20) & 0xf, self.midr & 0xf);
        let listed = match (implementer, part) {
            (0x41, 0xd82) => rev >= (0, 3),
            (0x41, 0xd83 | 0xd84) => rev >= (0, 2),
            _ => false,
        };
        self.bbm >= 2 && listed
    }

    /// A short name for the CPU from MIDR (implementer/part).
    pub fn cpu_name(&self) -> &'static str {
        let implementer = (self.midr >> 24) & 0xff;
        let part = (self.midr >> 4) & 0xfff;
        match (implementer, part) {
            (0x41, 0xd03) => "cortex-a53",
            (0x41, 0xd07) => "cortex-a57",
            (0x41, 0xd08) => "cortex-a72",
            (0x41, 0xd0c) => "neoverse-n1",
            (0x41, 0xd40) => "neoverse-v1",
            (0x41, 0xd4f) => "neoverse-v2",
            (0x46, 0x001) => "a64fx",
            (0x00, 0x051) => "qemu-max",
            _ => "unknown",
        }
    }
}

/// Masks IRQs on this CPU and returns the previous DAIF.
#[inline]
pub fn irq_save() -> u64 {
    let daif: u64;
    // SAFETY: masking interrupts on the local CPU is always allowed.
    // Not `nomem`: this is a compiler barrier too, so no memory access the
    // masking protects moves out of the masked section.
    unsafe { asm!("mrs {}, daif", "msr daifset, #2", out(reg) daif, options(nostack)) };
    daif
}

#[inline]
pub fn irq_restore(daif: u64) {
    // SAFETY: restores a DAIF value read by `irq_save` on this CPU.
    // Not `nomem`: a compiler barrier, as in `irq_save`.
    unsafe { asm!("msr daif, {}", in(reg) daif, options(nostack)) };
}

#[inline]
pub fn irq_enable() {
    // SAFETY: unmasking IRQs; the vector table is installed before this is called.
    unsafe { asm!("msr daifclr, #2", options(nomem, nostack)) };
}

#[inline]
pub fn wfi() {
    // SAFETY: waiting for an interrupt has no memory effects.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

/// `DSB ISHST`, then `ISB`: this CPU's earlier stores (page-table entries
/// among them) are visible to the table walkers and the rest of the
/// inner-shareable domain before any later instruction runs.
#[inline]
pub fn dsb_ishst_isb() {
    // SAFETY: barriers have no memory-safety effect.
    unsafe { asm!("dsb ishst", "isb", options(nostack)) };
}

/// Points TTBR0 at `root_pa` tagged with `asid`, then `ISB` and `DSB ISH`:
/// later translations use the new tables, and no walk of the old ones is
/// still in flight (an ISB alone does not complete walks already started;
/// the DSB does). Inner shareable, not `NSH`: the walks' reads must be
/// complete for the other CPUs too, since one of them may free and reuse
/// the old tables as soon as this CPU says it left them (a read is complete
/// for a domain only once no write by an observer in it can change it).
///
/// # Safety
/// `root_pa` is a level-0 table (or the empty table) whose tree stays
/// allocated while it is loaded here.
pub unsafe fn set_ttbr0(root_pa: u64, asid: u16) {
    let v = root_pa | ((asid as u64) << 48);
    // SAFETY: a valid table (caller); TTBR0 only affects lower-half
    // translations, which the kernel does not execute from.
    unsafe { asm!("msr ttbr0_el1, {}", "isb", "dsb ish", in(reg) v, options(nostack)) };
}

pub fn ttbr0() -> u64 {
    TTBR0_EL1.get()
}

pub fn ttbr1() -> u64 {
    TTBR1_EL1.get()
}

pub fn tcr() -> u64 {
    TCR_EL1.get()
}

/// Per-CPU set-up for user space: PAN on (where implemented), and EL0 may
/// read the virtual counter (CNTKCTL_EL1.EL0VCTEN) for timing.
pub fn init_user_access() {
    if ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::PAN) != 0 {
        // SAFETY: `MSR PAN, #1` (encoded, since the base target is v8.0):
        // only stops EL1 from accessing EL0-accessible memory directly; the
        // user-copy routines use unprivileged loads/stores unaffected by it.
        unsafe { asm!(".inst 0xd500419f", options(nomem, nostack)) };
    }
    // CNTKCTL_EL1 only controls EL0's access to the counters.
    CNTKCTL_EL1.modify(CNTKCTL_EL1::EL0VCTEN::SET);
    barrier::isb(barrier::SY);
}

/// Is PSTATE.PAN set right now?
pub fn pan_enabled() -> bool {
    let v: u64;
    // SAFETY: reading PSTATE.PAN (S3_0_C4_C2_3) has no side effects.
    unsafe { asm!("mrs {}, S3_0_C4_C2_3", out(reg) v, options(nomem, nostack)) };
    v & (1 << 22) != 0
}
