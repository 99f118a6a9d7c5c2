//! The default workload: a short self-check of the platform, printed as a
//! table, so the first thing a newcomer sees is the kernel working.

use core::sync::atomic::Ordering;

use crate::mm::frame::free_frames;
use crate::{percpu, smp};
use platform::{semihost, timer};

fn ping(_: usize) {}

pub fn run(online: usize, listed: usize) -> i32 {
    let mut ok = true;
    let mut check = |name: &str, pass: bool, detail: core::fmt::Arguments| {
        crate::kprintln!("  {:<28} {:<4} {}", name, if pass { "ok" } else { "FAIL" }, detail);
        ok &= pass;
    };
    crate::kprintln!("self-check:");
    check("all CPUs online", online == listed, format_args!("{online}/{listed}"));

    let before = free_frames();
    let got = crate::mm::phys::alloc_frames(8);
    if let Some(f) = got {
        crate::mm::phys::free_frames(f);
    }
    check("frame alloc/free", got.is_some() && free_frames() == before, format_args!("{before} free"));

    let mut answered = 0;
    for cpu in 0..online {
        if smp::run_on(cpu, ping, 0) {
            answered += 1;
        }
    }
    check("IPI to every CPU", answered == online, format_args!("{answered}/{online} answered"));

    let t0: u64 = (0..online).map(|c| percpu::get(c).ticks.load(Ordering::Relaxed)).sum();
    let until = timer::now() + timer::frequency() / 20;
    while timer::now() < until {
        core::hint::spin_loop();
    }
    let t1: u64 = (0..online).map(|c| percpu::get(c).ticks.load(Ordering::Relaxed)).sum();
    check("timer ticks", t1 > t0, format_args!("{} ticks in 50 ms", t1 - t0));
    if ok {
        semihost::EXIT_PASS
    } else {
        semihost::EXIT_FAIL
    }
}
