//! The secondary-MMU devices (`task::device`, `mm::device`) in the running
//! kernel: jobs and bad input (`devjobs`); a device that keeps reading or
//! writing a buffer while its process unmaps it, drops it, makes it
//! read-only or forks (`devrace`), never sees stale data or poison and
//! never writes after the call returned; exits with jobs in flight; the
//! counters of a bound munmap; and, with `mmu.notifier=late`, the stale
//! read the notifier prevents (which shows that the "never" tests can
//! fail: the device's cache is software, so QEMU shows what it holds).

use core::sync::atomic::Ordering;

use crate::ktest;
use crate::mm::device::notify::DEVICES;
use crate::mm::phys::{verify_free_poison, POISON_VIOLATIONS};
use crate::mm::tlb::{Event, TlbCounts, TLB_STATS};
use crate::mm::user::{ASIDS, LEAKED_MMS};
use crate::task::process::{self, wait_from_kernel_for};
use abi::device as d;

use super::robust::{assert_back_to, baseline_after};

/// Runs program `name(arg)` (killed after `ms`): its exit status and the
/// TLB counters over its life.
fn run(name: &str, arg: u64, ms: u64) -> (i64, TlbCounts) {
    let before = TLB_STATS.total();
    let p = process::spawn(name, arg, 0).unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let status = wait_from_kernel_for(&p, ms).unwrap_or_else(|| panic!("{name}({arg:#x}) did not end in {ms} ms"));
    let d = TLB_STATS.total().since(&before);
    log::info!(target: "ktest", "{name}({arg:#x}): status {status:#x}, {d}");
    (status, d)
}

/// Device `dev`'s counters now.
fn counters(dev: usize) -> [u64; d::STAT_COUNT] {
    DEVICES[dev].counters.words()
}

/// Every device is unbound, no ASID is pinned, no address space leaked,
/// no freed frame was written, and every resource is back at `base`.
fn all_released(base: &super::robust::Resources, leaked: u64, poisoned: u64, what: &str) {
    for (i, dev) in DEVICES.iter().enumerate() {
        let mut h = dev.lock();
        assert_eq!(h.bound(), None, "device {i} still bound after {what}");
        assert_eq!(h.cached(), 0, "device {i} still caches entries after {what}");
    }
    let pinned = ASIDS.get().map(|a| a.stats().pinned);
    assert_eq!(pinned, Some(0), "ASIDs still pinned after {what}");
    assert_eq!(LEAKED_MMS.load(Ordering::Relaxed), leaked, "an address space leaked in {what}");
    assert_eq!(verify_free_poison(), 0, "a freed frame was written in {what}");
    assert_eq!(POISON_VIOLATIONS.load(Ordering::Relaxed), poisoned, "a reused frame had been written in {what}");
    assert_back_to(base, format_args!("{what}"));
}

/// Runs `name(arg)`, which must exit 0 within `ms`, and checks that
/// everything came back.
fn clean_run(name: &str, arg: u64, ms: u64) -> TlbCounts {
    let base = baseline_after(|| {});
    let (leaked, poisoned) = (LEAKED_MMS.load(Ordering::Relaxed), POISON_VIOLATIONS.load(Ordering::Relaxed));
    let (status, d) = run(name, arg, ms);
    assert_eq!(status, 0, "{name}({arg:#x}): see the console (status 2 | n << 8: n stale rounds)");
    all_released(&base, leaked, poisoned, name);
    d
}

ktest!(
    #[config(timeout_s = 120)]
    fn jobs_bad_input_and_unbinding_leak_nothing() {
        let before = counters(0);
        clean_run("devjobs", 0, 100_000);
        let after = counters(0);
        assert!(after[d::JOBS] > before[d::JOBS] + 10, "the jobs ran on device 0: {before:?} -> {after:?}");
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn munmap_while_the_device_reads_never_shows_stale_data() {
        // Each round: the watch faults at its first read after the munmap's
        // invalidation, having seen only the value written.
        let (b0, b1) = (counters(0), counters(1));
        let d = clean_run("devrace", 1 | 5 << 8, 100_000);
        assert!(d.event(Event::SecondaryInval) >= 5 && d.event(Event::MnRange) >= 5, "{d}");
        let a = counters(0);
        assert!(a[d::FAULTS] >= b0[d::FAULTS] + 5 && a[d::INVALS] >= b0[d::INVALS] + 5, "{b0:?} -> {a:?}");
        assert_eq!(counters(1), b1, "device 1 was not used");
    }
);

// The device's thread on the process's CPU: while the process runs its
// munmap there, the thread is off the CPU (between two accesses), and the
// munmap's wait serves the device's inbox itself.
ktest!(
    #[config(cpus = 2, append = "dev.cpu=0", timeout_s = 120)]
    fn a_device_off_its_cpu_is_served_by_the_waiting_cpu() {
        let before = counters(0);
        clean_run("devrace", 1 | 3 << 8, 100_000);
        let after = counters(0);
        assert!(after[d::SERVED_BY_WAITER] >= before[d::SERVED_BY_WAITER] + 3, "{before:?} -> {after:?}");
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn madvise_while_the_device_reads_shows_old_data_then_zero() {
        clean_run("devrace", 2 | 5 << 8, 100_000);
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn mprotect_read_only_stops_device_writes_before_it_returns() {
        clean_run("devrace", 3 | 3 << 8, 100_000);
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn after_fork_device_writes_never_reach_the_childs_copy() {
        clean_run("devrace", 4 | 5 << 8, 100_000);
    }
);

ktest!(
    #[config(timeout_s = 120)]
    fn exit_or_kill_while_bound_with_jobs_in_flight_releases_everything() {
        let before = [counters(0), counters(1)];
        clean_run("devjobs", 2, 100_000);
        for (dev, b) in before.iter().enumerate() {
            let a = counters(dev);
            assert!(a[d::DROPPED] > b[d::DROPPED], "device {dev} cached and dropped entries: {b:?} -> {a:?}");
        }
    }
);

ktest!(
    #[config(append = "tlb.strategy=broadcast", timeout_s = 60)]
    fn a_bound_munmap_tells_each_device_once_and_costs_no_tlbi() {
        // devjobs checks the numbers itself: sec_inval once per device and
        // mn_range once for the bound munmap, none unbound, and the same
        // TLBIs either way.
        let d = clean_run("devjobs", 1, 50_000);
        assert!(d.event(Event::SecondaryInval) >= d::COUNT as u64, "{d}");
    }
);

// The injected bug: the devices are told after the free. A watch keeps
// reading the unmapped page through its cached entry after the frame went
// back to the allocator (it reads the poison pattern, or whatever the
// frame's next owner wrote).
ktest!(
    #[config(append = "mmu.notifier=late", timeout_s = 120)]
    fn late_notifier_lets_the_device_read_a_freed_frame() {
        let base = baseline_after(|| {});
        let (leaked, poisoned) = (LEAKED_MMS.load(Ordering::Relaxed), POISON_VIOLATIONS.load(Ordering::Relaxed));
        let (status, d) = run("devrace", 1 | 20 << 8 | 1 << 32, 100_000);
        let stale = match status {
            0 => 0,
            s if s & 0xff == 2 => s >> 8,
            s => panic!("devrace: status {s:#x} (see the console)"),
        };
        log::info!(target: "ktest", "mmu.notifier=late: {stale} stale rounds");
        assert!(stale > 0, "with mmu.notifier=late no round read a freed frame: the munmap test cannot fail: {d}");
        // The device only read the freed frames: nothing was corrupted.
        all_released(&base, leaked, poisoned, "devrace under mmu.notifier=late");
    }
);
