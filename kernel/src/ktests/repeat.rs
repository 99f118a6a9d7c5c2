//! The repeat-TLBI errata workaround in the running kernel
//! (`tlb.repeat_tlbi`, `mm::space::repeat`): `auto` follows the table of
//! affected cores for QEMU's MIDR, and each forced mode adds exactly its
//! extra TLBIs and DSBs to a munmap of 1, 16 and 4096 pages, counted apart
//! from the flush's own. (The banner's line is checked by the host,
//! `tests/tests/boot.rs`; its words come from `errata::Why`, checked here.)

use crate::ktest;
use crate::mm::tlb::errata::{self, RepeatChoice, Why};
use crate::mm::tlb::{Event, OpKind, RepeatTlbi, TlbCounts, TLB_STATS};
use crate::task::process::{self, wait_from_kernel};
use crate::FEATURES;

use super::settle;

/// The TLB counters over the whole life of `munmap_ops` with `pages`
/// pages: it maps and writes them, munmaps them (one flush) and exits (the
/// teardown's flush elided; its CPU's local ASID flush).
fn munmap_life(pages: u64) -> TlbCounts {
    settle();
    let before = TLB_STATS.total();
    let p = process::spawn("munmap_ops", pages, 0).expect("spawn munmap_ops");
    let s = wait_from_kernel(&p);
    assert!(s >= 0 && s & (1 << 30) == 0 && s != 127, "munmap_ops({pages}): status {s:#x}");
    let d = TLB_STATS.total().since(&before);
    log::info!(target: "ktest", "munmap of {pages} pages: {d}");
    assert_eq!(d.event(Event::ExitElided), 1, "{d}");
    assert_eq!(d.get(OpKind::Aside1), 1, "the exiting CPU's local flush: {d}");
    d
}

/// The workaround's TLBIs of `d` by kind, as (kind, count) for those issued.
fn repeats(d: &TlbCounts) -> alloc::vec::Vec<(OpKind, u64)> {
    OpKind::ALL.into_iter().map(|k| (k, d.repeat[k as usize])).filter(|&(_, n)| n != 0).collect()
}

fn broadcast_ops(d: &TlbCounts) -> alloc::vec::Vec<(OpKind, u64)> {
    OpKind::ALL.into_iter().filter(|k| k.is_broadcast()).map(|k| (k, d.get(k))).filter(|&(_, n)| n != 0).collect()
}

fn mode() -> RepeatTlbi {
    crate::mm::user::config().repeat_tlbi
}

ktest!(
    #[config(cpu = "cortex-a76", append = "tlb.repeat_tlbi=auto tlb.strategy=broadcast")]
    fn auto_on_cortex_a76_follows_the_table() {
        let midr = FEATURES.get().unwrap().midr;
        let entry = errata::affected(midr);
        let entry = entry.unwrap_or_else(|| panic!("QEMU's Cortex-A76 (MIDR {midr:#x}) is not in the table"));
        assert_eq!(entry.core, "Cortex-A76");
        assert_eq!(mode(), RepeatChoice::Auto.resolve(midr), "the mode the table gives");
        assert_eq!(mode(), RepeatTlbi::Once, "auto is the optimised workaround");
        let why = alloc::format!("{}", Why { choice: RepeatChoice::Auto, midr });
        assert!(why.starts_with("auto: Cortex-A76 r") && why.contains("CVE-2025-10263"), "{why}");
        // QEMU's A76 has no TLBI range ops: 16 pages are 16 per-page TLBIs,
        // completed by one DSB and one extra TLBI and DSB.
        let d = munmap_life(16);
        assert_eq!(broadcast_ops(&d), [(OpKind::Vae1is, 16)], "{d}");
        assert_eq!(repeats(&d), [(OpKind::Vale1is, 1)], "{d}");
        assert_eq!(d.repeat_dsb, 1, "{d}");
        assert_eq!(d.event(Event::RepeatLocalExempt), 1, "the exit's local flush: {d}");
    }
);

ktest!(
    #[config(append = "tlb.repeat_tlbi=auto tlb.strategy=broadcast")]
    fn auto_on_max_is_off() {
        let midr = FEATURES.get().unwrap().midr;
        assert!(
            errata::affected(midr).is_none(),
            "QEMU's max CPU (MIDR {midr:#x}) matched {:?}",
            errata::affected(midr)
        );
        assert_eq!(mode(), RepeatTlbi::Off);
        for pages in [1, 16, 4096] {
            let d = munmap_life(pages);
            assert_eq!((d.repeat_total(), d.repeat_dsb, d.event(Event::RepeatLocalExempt)), (0, 0, 0), "{d}");
        }
    }
);

/// On `-cpu max` a munmap of 1 page is one `VAE1IS`, of 16 or 4096 pages
/// one `RVAE1IS` (range ops; `tlb::munmap_ops_with_tlbi_range`).
const MAX_MUNMAPS: [(u64, OpKind); 3] = [(1, OpKind::Vae1is), (16, OpKind::Rvae1is), (4096, OpKind::Rvae1is)];

ktest!(
    #[config(append = "tlb.repeat_tlbi=once tlb.strategy=broadcast")]
    fn once_adds_one_tlbi_and_dsb_per_munmap() {
        assert_eq!(mode(), RepeatTlbi::Once);
        for (pages, kind) in MAX_MUNMAPS {
            let d = munmap_life(pages);
            assert_eq!(broadcast_ops(&d), [(kind, 1)], "{pages} pages: {d}");
            assert_eq!(repeats(&d), [(OpKind::Vale1is, 1)], "{pages} pages: {d}");
            assert_eq!(d.repeat_dsb, 1, "{pages} pages: {d}");
            assert_eq!(d.dsb, 2, "the munmap's DSB and the exit's local one, the workaround's apart: {d}");
            assert_eq!(d.event(Event::RepeatLocalExempt), 1, "{pages} pages: {d}");
        }
    }
);

ktest!(
    #[config(append = "tlb.repeat_tlbi=each tlb.strategy=broadcast")]
    fn each_repeats_every_broadcast_tlbi_of_a_munmap() {
        assert_eq!(mode(), RepeatTlbi::Each);
        for (pages, kind) in MAX_MUNMAPS {
            let d = munmap_life(pages);
            assert_eq!(broadcast_ops(&d), [(kind, 1)], "{pages} pages: {d}");
            assert_eq!(repeats(&d), [(kind, 1)], "the same op again: {pages} pages: {d}");
            assert_eq!(d.repeat_dsb, 1, "{pages} pages: {d}");
            assert_eq!(d.event(Event::RepeatLocalExempt), 1, "{pages} pages: {d}");
        }
    }
);

/// Without range ops (`-cpu cortex-a72`) a munmap of 16 pages is 16
/// per-page TLBIs: `each` costs 16 extra TLBIs and DSBs, `once` one of each.
fn per_page_munmaps(extra: impl Fn(u64) -> u64) {
    for (pages, kind, ops) in [(1, OpKind::Vae1is, 1), (16, OpKind::Vae1is, 16), (4096, OpKind::Aside1is, 1)] {
        let d = munmap_life(pages);
        assert_eq!(broadcast_ops(&d), [(kind, ops)], "{pages} pages: {d}");
        assert_eq!((d.repeat_total(), d.repeat_dsb), (extra(ops), extra(ops)), "{pages} pages: {d}");
    }
}

ktest!(
    #[config(cpu = "cortex-a72", append = "tlb.repeat_tlbi=each tlb.strategy=broadcast")]
    fn each_costs_a_tlbi_and_dsb_per_page_without_range_ops() {
        assert_eq!(mode(), RepeatTlbi::Each);
        per_page_munmaps(|ops| ops);
    }
);

ktest!(
    #[config(cpu = "cortex-a72", append = "tlb.repeat_tlbi=once tlb.strategy=broadcast")]
    fn once_costs_one_tlbi_and_dsb_per_flush_without_range_ops() {
        assert_eq!(mode(), RepeatTlbi::Once);
        per_page_munmaps(|_| 1);
    }
);
