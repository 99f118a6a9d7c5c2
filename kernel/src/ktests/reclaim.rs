//! Reclaim (docs/mechanisms.md §8): the reverse map, `MADV_PAGEOUT` with one DSB
//! per batch on the CPU that issued its TLBIs, pages shared after fork,
//! the flush a pending batch costs the next call, reclaim under memory
//! pressure, and bad input. Each test ends with every kernel resource,
//! swap slots included, back at its baseline.
//!
//! The counting tests pin `tlb.strategy=broadcast`: the other strategies
//! serve IPIs, whose handlers may execute DSBs on the reclaiming CPU.

use crate::ktest;
use crate::mm::family;
use crate::mm::pagetable::desc_pa;
use crate::mm::phys::{swap_slots, verify_free_poison, KernelMem};
use crate::mm::tlb::{Event, TlbCounts, TLB_STATS};
use crate::mm::user::UserMm;
use crate::task::process::{self, wait_from_kernel};
use crate::task::syscall::BAD_SYSCALLS;
use abi::{prot, MMAP_BASE};

use super::robust::{assert_back_to, baseline_after};

/// `reclaim` program flags and modes (see its documentation).
const EXACT: u64 = 1 << 24;
const UNBATCHED: u64 = 1 << 25;
const REMOTE: u64 = 1 << 26;
const FORKED: u64 = 1 << 16;
const PRESSURE: u64 = 2 << 16;
const BEYOND: u64 = 3 << 16;
const BAD: u64 = 4 << 16;
const RACING: u64 = 5 << 16;

/// Runs `reclaim(arg)` and checks it exits 0, that the TLB counters over
/// its life show `unmaps` reclaim unmaps, and that everything comes back.
fn reclaim(arg: u64, unmaps: Option<u64>) -> TlbCounts {
    let base = baseline_after(|| {});
    let before = TLB_STATS.total();
    let p = process::spawn("reclaim", arg, 0).unwrap_or_else(|e| panic!("spawn reclaim: {e}"));
    let status = wait_from_kernel(&p);
    drop(p);
    let d = TLB_STATS.total().since(&before);
    log::info!(target: "ktest", "reclaim({arg:#x}): status {status:#x}, {d}");
    assert_eq!(status, 0, "reclaim({arg:#x}) (1 setup, 2 counts, 3 data, 4 child, 5 errno): {d}");
    if let Some(u) = unmaps {
        assert_eq!(d.event(Event::ReclaimUnmap), u, "{d}");
    }
    assert_eq!(verify_free_poison(), 0, "a freed frame was written");
    assert_back_to(&base, format_args!("reclaim({arg:#x})"));
    assert_eq!(swap_slots().0, 0, "swap slots in use after the process is gone");
    d
}

ktest!(
    #[config(append = "tlb.strategy=broadcast", timeout_s = 60)]
    fn pageout_of_64_pages_is_two_batches_one_dsb_each() {
        let d = reclaim(64 | EXACT, Some(64));
        assert_eq!(d.event(Event::ReclaimBatch), 2, "{d}");
        assert_eq!(d.event(Event::SwapIn), 64, "{d}");
    }
);

ktest!(
    #[config(append = "tlb.strategy=broadcast", timeout_s = 60)]
    fn pageout_of_100_pages_is_four_batches_one_dsb_each() {
        let d = reclaim(100 | EXACT, Some(100));
        assert_eq!(d.event(Event::ReclaimBatch), 4, "{d}");
    }
);

// The comparison: every page's TLBI waited for on its own.
ktest!(
    #[config(append = "tlb.strategy=broadcast reclaim.batch=off", timeout_s = 60)]
    fn pageout_unbatched_waits_for_each_page() {
        let d = reclaim(64 | EXACT | UNBATCHED, Some(64));
        assert_eq!(d.event(Event::ReclaimBatch), 0, "{d}");
    }
);

// `reclaim.dsb=remote` runs each batch's DSB on another CPU. That DSB
// completes none of the batch's TLBIs; QEMU completes every TLBI at once,
// so no stale access can show here: the host model (`kernel/model`) is
// what catches it. This test shows only where the DSB ran.
ktest!(
    #[config(append = "tlb.strategy=broadcast reclaim.dsb=remote", timeout_s = 60)]
    fn pageout_dsb_remote_runs_the_dsb_on_another_cpu() {
        let d = reclaim(64 | EXACT | REMOTE, Some(64));
        assert_eq!(d.event(Event::ReclaimBatch), 2, "{d}");
    }
);

// The same program under whatever strategy the run uses (no exact counts).
ktest!(
    #[config(timeout_s = 60)]
    fn pageout_of_a_4_thread_process_keeps_its_data() {
        reclaim(100, Some(100));
    }
);

ktest!(
    #[config(timeout_s = 60)]
    fn pageout_of_pages_shared_after_fork_unmaps_them_from_both() {
        let d = reclaim(FORKED | 40, Some(80));
        assert_eq!(d.event(Event::SwapIn), 80, "{d}");
    }
);

// Readers on three CPUs fault pages back (or wait for their batch) while
// CPU 0 pages them out again: every read returns the page's data.
ktest!(
    #[config(timeout_s = 60)]
    fn pageout_under_racing_readers_never_loses_data() {
        let d = reclaim(RACING | 64, None);
        assert!(d.event(Event::ReclaimUnmap) > 0 && d.event(Event::SwapIn) > 0, "{d}");
    }
);

ktest!(
    #[config(mem_mb = 128, timeout_s = 120)]
    fn under_memory_pressure_pages_go_to_swap_and_come_back() {
        let d = reclaim(PRESSURE | 1024, None);
        assert!(d.event(Event::ReclaimBatch) > 0 && d.event(Event::SwapIn) > 0, "{d}");
    }
);

ktest!(
    #[config(mem_mb = 128, timeout_s = 120)]
    fn beyond_memory_and_swap_the_process_dies_of_out_of_memory() {
        reclaim(BEYOND, None);
    }
);

ktest!(
    fn pageout_of_bad_ranges_fails_like_dontneed() {
        let bad = BAD_SYSCALLS.load(core::sync::atomic::Ordering::Relaxed);
        reclaim(BAD, Some(0));
        let now = BAD_SYSCALLS.load(core::sync::atomic::Ordering::Relaxed);
        assert!(now >= bad + 3, "the three EINVAL calls counted as bad ({bad} -> {now})");
    }
);

// The reverse map from the kernel's side: a page of a process and its
// fork child is mapped by both, at one VA; PAGEOUT takes it from both and
// each faults its own copy back.
ktest!(
    fn reverse_map_finds_every_mm_that_maps_a_frame() {
        let base = baseline_after(|| {});
        let va = MMAP_BASE;
        {
            let parent = UserMm::new().expect("an address space");
            assert_eq!(parent.mmap(va, 4096, prot::READ | prot::WRITE, abi::map::FIXED), Ok(va));
            parent.fault(va, true, false).expect("first touch");
            assert!(parent.with_aspace(|a| a.write_u64(va, 0x5a5a, &KernelMem)));
            let child = parent.fork().expect("fork");
            let pa = desc_pa(parent.with_aspace(|a| a.translate(va, &KernelMem)).expect("mapped"));
            let found = family::mappers(pa);
            assert_eq!(found.len(), 2, "parent and child map the frame");
            assert!(found.iter().all(|(_, v)| *v == va));
            assert!(found.iter().any(|(m, _)| m.id == parent.id) && found.iter().any(|(m, _)| m.id == child.id));
            drop(found);
            crate::mm::reclaim::pageout(&parent, va, 4096).expect("pageout");
            assert!(family::mappers(pa).is_empty(), "nobody maps it any more");
            assert_eq!(swap_slots().0, 1, "one slot, held by both swap entries");
            for mm in [&parent, &child] {
                mm.fault(va, false, false).expect("swap-in");
                assert_eq!(mm.with_aspace(|a| a.read_u64(va, &KernelMem)), Some(0x5a5a));
            }
            assert_eq!(swap_slots().0, 0, "both read it back");
        }
        assert_back_to(&base, format_args!("a parent and child paged out and dropped"));
    }
);
