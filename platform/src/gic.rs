//! The GICv3 interrupt controller, through the `arm-gic` crate.

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, UniqueMmioPointer};
use core::ptr::NonNull;
use spin::Mutex;

struct Gic(GicV3<'static>);

// SAFETY: the distributor and redistributors are device memory mapped for all
// CPUs; every access to them goes through the GIC mutex.
unsafe impl Send for Gic {}

static GIC: Mutex<Option<Gic>> = Mutex::new(None);

#[derive(Clone, Copy, Debug)]
pub struct GicError;

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("GICv3 driver error")
    }
}

/// Sets up the distributor and every redistributor, and this (the boot) CPU.
///
/// # Safety
/// `gicd_va` and `gicr_va` must be the GICv3 distributor and redistributor
/// frames mapped as device memory for the kernel's lifetime, with no other user.
pub unsafe fn init(gicd_va: u64, gicr_va: u64, ncpus: usize, cpu: usize) -> Result<(), GicError> {
    let gicd = NonNull::new(gicd_va as *mut Gicd).ok_or(GicError)?;
    let gicr = NonNull::new(gicr_va as *mut GicrSgi).ok_or(GicError)?;
    // SAFETY: guaranteed by the caller.
    let mut gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, ncpus) }.map_err(|_| GicError)?;
    gic.setup(cpu);
    GicCpuInterface::set_priority_mask(0xff);
    *GIC.lock() = Some(Gic(gic));
    Ok(())
}

/// Per-CPU interface set-up for a secondary CPU.
pub fn init_cpu(cpu: usize) {
    if let Some(g) = GIC.lock().as_mut() {
        g.0.init_cpu(cpu);
    }
    GicCpuInterface::enable_group1(true);
    GicCpuInterface::set_priority_mask(0xff);
}

/// Enables a private interrupt (SGI or PPI) on `cpu`.
pub fn enable_private(intid: u32, cpu: usize) -> Result<(), GicError> {
    let id = if intid < 16 { IntId::sgi(intid) } else { IntId::ppi(intid - 16) };
    let mut g = GIC.lock();
    let g = g.as_mut().ok_or(GicError)?;
    g.0.set_interrupt_priority(id, Some(cpu), 0x80).map_err(|_| GicError)?;
    g.0.enable_interrupt(id, Some(cpu), true).map_err(|_| GicError)
}

/// Acknowledges the highest-priority pending interrupt, then `DSB SY`: the
/// handler's memory reads come after the acknowledgement (what an SGI's
/// sender wrote before it sent it is then visible; Linux's GICv3 driver
/// does the same in `gic_read_iar_common`).
pub fn ack() -> Option<u32> {
    let id = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1).map(|i| i.raw_value());
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
    id
}

pub fn eoi(intid: u32) {
    let id = if intid < 16 {
        IntId::sgi(intid)
    } else if intid < 32 {
        IntId::ppi(intid - 16)
    } else {
        IntId::spi(intid - 32)
    };
    GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
}

/// Sends SGI `sgi` to the CPU with affinity `mpidr`, after `DSB ISHST`:
/// the sender's earlier stores (the request the SGI announces) are visible
/// to the target before the interrupt can be (a system-register write is
/// not ordered by memory barriers alone; Linux's `gic_ipi_send_mask` does
/// the same).
pub fn send_sgi(sgi: u32, mpidr: u64) -> Result<(), GicError> {
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
    let target = SgiTarget::List {
        affinity3: ((mpidr >> 32) & 0xff) as u8,
        affinity2: ((mpidr >> 16) & 0xff) as u8,
        affinity1: ((mpidr >> 8) & 0xff) as u8,
        target_list: 1 << (mpidr & 0xf),
    };
    GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1).map_err(|_| GicError)
}
