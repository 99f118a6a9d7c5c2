//! Interrupt dispatch: the timer tick and inter-processor interrupts.

use core::sync::atomic::Ordering;

use crate::arch::cpu::cpu_id;
use crate::percpu;
use platform::{gic, timer};

/// SGI used to ask a CPU to run posted work (`smp::run_on`).
pub const SGI_CALL: u32 = 1;
/// SGI that only counts (IPI latency and delivery tests).
pub const SGI_PING: u32 = 2;

static TICK_INTERVAL: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

pub fn set_tick_hz(hz: u32) {
    TICK_INTERVAL.store(timer::frequency() / hz.max(1) as u64, Ordering::Relaxed);
}

/// Enables this CPU's timer and SGIs and starts ticking.
pub fn init_cpu(cpu: usize) {
    for sgi in [SGI_CALL, SGI_PING, crate::mm::ipi::SGI_TLB] {
        if gic::enable_private(sgi, cpu).is_err() {
            log::error!(target: "irq", "cannot enable SGI {sgi} on CPU {cpu}");
        }
    }
    if gic::enable_private(timer::VIRT_TIMER_INTID, cpu).is_err() {
        log::error!(target: "irq", "cannot enable the timer interrupt on CPU {cpu}");
    }
    timer::arm(TICK_INTERVAL.load(Ordering::Relaxed));
}

/// Called from the IRQ vector. Must not allocate or take sleeping locks.
pub fn handle_irq() {
    while let Some(intid) = gic::ack() {
        let me = percpu::this();
        match intid {
            timer::VIRT_TIMER_INTID => {
                me.ticks.fetch_add(1, Ordering::Relaxed);
                timer::arm(TICK_INTERVAL.load(Ordering::Relaxed));
                crate::task::sched::tick();
            }
            SGI_CALL => {
                me.ipis.fetch_add(1, Ordering::Relaxed);
                crate::smp::handle_call(cpu_id());
            }
            crate::task::sched::SGI_RESCHED => {
                me.ipis.fetch_add(1, Ordering::Relaxed);
            }
            crate::mm::ipi::SGI_TLB => {
                me.ipis.fetch_add(1, Ordering::Relaxed);
                crate::mm::ipi::poll();
            }
            SGI_PING => {
                me.ipis.fetch_add(1, Ordering::Relaxed);
            }
            1020..=1023 => break,
            other => log::warn!(target: "irq", "spurious interrupt {other}"),
        }
        gic::eoi(intid);
    }
}
