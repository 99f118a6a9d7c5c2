//! Interrupts: timer ticks and IPIs on every CPU.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::cpu::cpu_id;
use crate::{ktest, percpu, smp};
use platform::timer;

fn spin_ms(ms: u64) {
    let until = timer::now() + timer::frequency() * ms / 1000;
    while timer::now() < until {
        core::hint::spin_loop();
    }
}

ktest!(
    fn timer_ticks_on_every_cpu() {
        let n = percpu::online_count();
        let before: alloc::vec::Vec<u64> = (0..n).map(|c| percpu::get(c).ticks.load(Ordering::Relaxed)).collect();
        // 20 ticks are due at 100 Hz; a loaded host may delay a vCPU, so only
        // progress is required (a CPU whose timer is dead shows 0).
        spin_ms(200);
        for (c, b) in before.iter().enumerate() {
            let now = percpu::get(c).ticks.load(Ordering::Relaxed);
            assert!(now >= b + 2, "CPU {c}: {} ticks in 200 ms at 100 Hz", now - b);
        }
    }
);

static WHO: [AtomicU64; 8] = [const { AtomicU64::new(u64::MAX) }; 8];

fn record_cpu(slot: usize) {
    WHO[slot].store(cpu_id() as u64, Ordering::Release);
}

ktest!(
    fn ipi_runs_function_on_each_cpu() {
        let n = percpu::online_count();
        for c in 0..n {
            let ipis = percpu::get(c).ipis.load(Ordering::Relaxed);
            assert!(smp::run_on(c, record_cpu, c), "CPU {c} did not answer");
            assert_eq!(WHO[c].load(Ordering::Acquire), c as u64, "function ran on the wrong CPU");
            if c != 0 {
                assert!(percpu::get(c).ipis.load(Ordering::Relaxed) > ipis, "CPU {c} ran it without an IPI");
            }
        }
    }
);

fn stack_probe(slot: usize) {
    let x = 0u64;
    WHO[slot].store(&x as *const u64 as u64, Ordering::Release);
}

ktest!(
    fn each_cpu_has_its_own_stack() {
        let n = percpu::online_count();
        for c in 1..n {
            assert!(smp::run_on(c, stack_probe, c));
            let sp = WHO[c].load(Ordering::Acquire);
            let top = percpu::get(c).stack_top.load(Ordering::Relaxed);
            assert!(sp < top && sp > top - 64 * 1024, "CPU {c}: stack address {sp:#x} not in its stack below {top:#x}");
        }
    }
);

ktest!(
    fn ipi_storm_is_counted() {
        let n = percpu::online_count();
        if n < 2 {
            crate::test::skip("needs two CPUs");
        }
        let before = percpu::get(1).ipis.load(Ordering::Relaxed);
        for _ in 0..200 {
            assert!(smp::run_on(1, |_| {}, 0));
        }
        assert_eq!(percpu::get(1).ipis.load(Ordering::Relaxed) - before, 200);
    }
);

static SLOW_RUNS: AtomicU64 = AtomicU64::new(0);
static SLOW_ENDS: AtomicU64 = AtomicU64::new(0);

fn slow_call(ms: usize) {
    SLOW_RUNS.fetch_add(1, Ordering::AcqRel);
    spin_ms(ms as u64);
    SLOW_ENDS.fetch_add(1, Ordering::AcqRel);
}

// A call that outlives `run_on`'s 2 s wait: the caller gets false, the
// target keeps the mailbox until the call ends, and the next caller waits
// for it instead of overwriting it or finding it claimed forever; and that
// caller's true means its own call ended, not the timed-out one.
ktest!(
    fn run_on_timeout_keeps_the_mailbox_usable() {
        if percpu::online_count() < 2 {
            crate::test::skip("needs two CPUs");
        }
        let (runs, ends) = (SLOW_RUNS.load(Ordering::Acquire), SLOW_ENDS.load(Ordering::Acquire));
        assert!(!smp::run_on(1, slow_call, 2500), "a 2.5 s call reported done within the 2 s wait");
        assert!(smp::run_on(1, slow_call, 300), "the mailbox stayed claimed after a timed-out call");
        assert_eq!(SLOW_ENDS.load(Ordering::Acquire) - ends, 2, "run_on returned before its own call ended");
        assert_eq!(SLOW_RUNS.load(Ordering::Acquire) - runs, 2, "each call ran exactly once");
    }
);
