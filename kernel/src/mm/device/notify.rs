//! The kernel's devices ([`DEVICES`]) and the secondary half of the
//! kernel's `MmHw`: an operation posts its invalidation to each subscribed
//! device and notes the ticket, per CPU and device ([`notify`]); it may
//! free what the invalidation covers once each device it posted to has
//! handled that ticket ([`acked`]), which a CPU that finds the device
//! between two accesses makes true itself.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{DevCore, ENTRIES};
use crate::arch::cpu::cpu_id;
use crate::mm::pagetable::Arm4k;
use crate::mm::space::Invalidation;
use crate::mm::tlb::stats::MAX_CPUS;
use crate::mm::tlb::{Event, TLB_STATS};
use abi::device::COUNT;

/// One of the kernel's devices.
pub type Device = DevCore<Arm4k, ENTRIES>;

/// The devices, by number (`abi::device`).
pub static DEVICES: [Device; COUNT] = [const { DevCore::new() }; COUNT];

/// `WANT[cpu][dev]`: the ticket of the last invalidation `cpu` posted to
/// `dev` (written by that CPU only, within one operation).
static WANT: [[AtomicU64; COUNT]; MAX_CPUS] = [const { [const { AtomicU64::new(0) }; COUNT] }; MAX_CPUS];

/// `MmHw::notify_secondary`: posts `inv` to each device in `devices`,
/// counted as `Event::SecondaryInval` per device.
pub fn notify(devices: u64, inv: &Invalidation) {
    let me = cpu_id();
    for dev in 0..64 {
        if devices & (1 << dev) == 0 {
            continue;
        }
        let Some(d) = DEVICES.get(dev) else {
            log::error!(target: "dev", "invalidation {inv:?} for device {dev}, which does not exist");
            continue;
        };
        WANT[me][dev].store(d.post(*inv), Ordering::Relaxed);
        TLB_STATS.record_event(me, Event::SecondaryInval);
    }
}

/// `MmHw::secondary_acked`: every device this CPU posted to has handled
/// what it posted (serving a device's inbox here when the device is
/// between two accesses).
pub fn acked() -> bool {
    let me = cpu_id();
    DEVICES.iter().zip(&WANT[me]).all(|(d, want)| d.acked(want.load(Ordering::Relaxed)))
}
