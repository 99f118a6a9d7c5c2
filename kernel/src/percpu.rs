//! Per-CPU state, indexed by the CPU index in TPIDR_EL1.

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::arch::recover::JmpBuf;
pub use crate::mm::tlb::stats::MAX_CPUS;

pub struct PerCpu {
    pub online: AtomicBool,
    pub mpidr: AtomicU64,
    /// Timer interrupts taken.
    pub ticks: AtomicU64,
    /// Inter-processor interrupts taken.
    pub ipis: AtomicU64,
    /// Innermost recovery point (see `arch::recover`), or null.
    pub recovery: AtomicPtr<JmpBuf>,
    /// Work posted by `smp::run_on`, as `fn(usize)` address and argument.
    pub call_fn: AtomicUsize,
    pub call_arg: AtomicUsize,
    pub call_done: AtomicU64,
    /// Top of this CPU's kernel stack (for tests that check stacks differ).
    pub stack_top: AtomicU64,
}

impl PerCpu {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: PerCpu = PerCpu {
        online: AtomicBool::new(false),
        mpidr: AtomicU64::new(0),
        ticks: AtomicU64::new(0),
        ipis: AtomicU64::new(0),
        recovery: AtomicPtr::new(core::ptr::null_mut()),
        call_fn: AtomicUsize::new(0),
        call_arg: AtomicUsize::new(0),
        call_done: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
    };
}

pub static PERCPU: [PerCpu; MAX_CPUS] = [PerCpu::INIT; MAX_CPUS];

pub fn this() -> &'static PerCpu {
    &PERCPU[crate::arch::cpu::cpu_id() % MAX_CPUS]
}

pub fn get(cpu: usize) -> &'static PerCpu {
    &PERCPU[cpu % MAX_CPUS]
}

/// CPUs that have come online.
pub fn online_count() -> usize {
    PERCPU.iter().filter(|c| c.online.load(Ordering::Acquire)).count()
}
