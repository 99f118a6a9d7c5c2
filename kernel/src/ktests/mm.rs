//! The kernel's memory: page-table permissions, the linear map, frames, heap
//! and the counted TLBI layer.

use alloc::vec::Vec;

use crate::arch::cpu::{self, cpu_id};
use crate::arch::kmap::lookup;
use crate::arch::layout::{phys_to_virt, KIMAGE_VBASE};
use crate::arch::tlbi;
use crate::mm::frame::{free_frames, FRAMES};
use crate::mm::kernel::{empty_ttbr0_pa, kimage_pa};
use crate::mm::pte::*;
use crate::mm::tlb::{OpKind, Scope, TlbiOp, TLB_STATS};
use crate::test::{catch, Outcome};
use crate::{ktest, BOARD};

extern "C" {
    static __text_end: u8;
    static __rodata_end: u8;
}

static RODATA_WORD: u64 = 0x5eed;
static mut DATA_WORDS: [u32; 4] = [0xd503201f; 4]; // four NOPs... in a data page

fn expect_fault(what: &str, f: impl FnMut(), needle: &str) {
    match catch(f) {
        Outcome::Failed(msg) => assert!(msg.contains(needle), "{what}: expected '{needle}' in: {msg}"),
        other => panic!("{what}: expected a fault, got {other:?}"),
    }
}

fn p2v(pa: u64) -> *mut u64 {
    phys_to_virt(pa) as *mut u64
}

ktest!(
    fn kernel_text_is_read_only() {
        let target = kernel_text_is_read_only as *const () as usize as *mut u32;
        // SAFETY: deliberately faulting write into kernel text; caught.
        expect_fault("write to text", || unsafe { target.write_volatile(0) }, "permission fault on write");
    }
);

ktest!(
    fn rodata_is_read_only() {
        let target = &RODATA_WORD as *const u64 as *mut u64;
        // SAFETY: deliberately faulting write into rodata; caught.
        expect_fault("write to rodata", || unsafe { target.write_volatile(1) }, "permission fault on write");
        assert_eq!(RODATA_WORD, 0x5eed);
    }
);

ktest!(
    fn data_is_not_executable() {
        // SAFETY: deliberately makes a function pointer into a never-execute
        // data page; calling it faults, and `expect_fault` catches that.
        let f: extern "C" fn() =
            unsafe { core::mem::transmute::<*const u8, extern "C" fn()>(&raw const DATA_WORDS as *const u8) };
        expect_fault("execute data", || f(), "EC 0x21");
    }
);

ktest!(
    fn sections_have_expected_permissions() {
        let root = cpu::ttbr1() & ADDR_MASK;
        let text = kernel_text_is_read_only as *const () as usize as u64;
        let rodata = &RODATA_WORD as *const u64 as u64;
        let data = &raw const DATA_WORDS as u64;
        for (name, va, want_ro, want_pxn) in
            [("text", text, true, false), ("rodata", rodata, true, true), ("data", data, false, true)]
        {
            let (d, level) = lookup(root, va, &p2v).unwrap_or_else(|| panic!("{name} at {va:#x} unmapped"));
            assert_eq!(level, 3, "{name} mapped with 4K pages");
            assert_eq!(d & AP_RO != 0, want_ro, "{name} read-only bit: desc {d:#x}");
            assert_eq!(d & PXN != 0, want_pxn, "{name} PXN bit: desc {d:#x}");
            assert_ne!(d & UXN, 0, "{name} never executable from EL0");
            assert_eq!(d & NG, 0, "{name} must be global");
            assert_eq!(d & ADDR_MASK, kimage_pa(va & !0xfff), "{name} maps the right frame");
        }
        let (te, re) = (&raw const __text_end as u64, &raw const __rodata_end as u64);
        assert!(KIMAGE_VBASE < te && te <= re, "section order");
    }
);

ktest!(
    fn linear_map_covers_all_ram_and_is_global() {
        let root = cpu::ttbr1() & ADDR_MASK;
        let board = BOARD.get().unwrap();
        for r in board.memory() {
            for pa in [r.base, r.base + r.size / 2, r.end() - PAGE_SIZE] {
                let va = phys_to_virt(pa);
                let (d, _) = lookup(root, va, &p2v).unwrap_or_else(|| panic!("RAM {pa:#x} not in the linear map"));
                assert_eq!(d & (NG | AP_RO | AP_EL0), 0, "RAM {pa:#x}: global, read-write, kernel-only: {d:#x}");
                assert_ne!(d & PXN, 0, "linear map is never-execute");
                // SAFETY: the linear map covers all RAM (checked just above).
                let _ = unsafe { core::ptr::read_volatile(va as *const u64) };
            }
        }
        let (uart, _) = lookup(root, phys_to_virt(board.uart.base), &p2v).expect("UART mapped");
        assert_eq!((uart >> 2) & 7, MT_DEVICE_NGNRE, "UART is device nGnRE");
    }
);

ktest!(
    fn ttbr0_points_at_empty_table() {
        assert_eq!(cpu::ttbr0() & ADDR_MASK, empty_ttbr0_pa());
        assert_eq!(cpu::ttbr0() >> 48, 0, "ASID 0 when no user mm is loaded");
        // SAFETY: deliberately faulting read of a user address; caught.
        expect_fault(
            "user address",
            || unsafe {
                core::hint::black_box(core::ptr::read_volatile(0x40_0000 as *const u64));
            },
            "translation fault at level 0",
        );
    }
);

ktest!(
    fn frames_alloc_free_roundtrip() {
        let base = free_frames();
        let mut got = Vec::new();
        // Through `mm::phys`, as every other user: the raw allocator would
        // skip the free-frame poison bookkeeping, and the writes below would
        // then read, to a later allocation, as writes after free.
        for n in [1usize, 2, 3, 16, 512] {
            let f = crate::mm::phys::alloc_frames(n).expect("frames available");
            // Touch every page through the linear map.
            for i in 0..f.count as u64 {
                // SAFETY: the frames were just allocated and are mapped in the linear map.
                unsafe { core::ptr::write_volatile(phys_to_virt(f.pa() + i * PAGE_SIZE) as *mut u64, i) };
            }
            got.push(f);
        }
        assert_eq!(base - free_frames(), 1 + 2 + 4 + 16 + 512);
        for f in got {
            crate::mm::phys::free_frames(f);
        }
        assert_eq!(free_frames(), base, "every frame returned");
    }
);

ktest!(
    #[config(mem_mb = 512)]
    fn all_ram_is_accounted_for() {
        let board = BOARD.get().unwrap();
        assert_eq!(board.total_memory(), 512 << 20);
        let total = FRAMES.lock().total_frames() as u64 * PAGE_SIZE;
        let heap = crate::mm::kernel::HEAP_SIZE;
        // RAM = frames + heap + image + DTB (each page-rounded).
        let other = board.total_memory() - total - heap;
        assert!(other < 8 << 20, "{} KiB of RAM unaccounted (image + DTB expected)", other >> 10);
    }
);

ktest!(
    fn heap_allocates_and_frees() {
        let v: Vec<u64> = (0..100_000).collect();
        assert_eq!(v.iter().sum::<u64>(), 100_000 * 99_999 / 2);
        let s = alloc::format!("{}-{}", "heap", v.len());
        assert_eq!(s, "heap-100000");
    }
);

ktest!(
    fn tlbi_ops_are_counted_per_cpu_and_kind() {
        let me = cpu_id();
        let before = TLB_STATS.cpu(me);
        tlbi::run(
            &[TlbiOp::Asid { asid: 5 }, TlbiOp::Va { asid: 5, va: 0x1000, last_level: true, ttl: None }],
            Scope::Local,
        );
        tlbi::run(&[TlbiOp::All], Scope::Broadcast);
        let d = TLB_STATS.cpu(me).since(&before);
        assert_eq!(d.get(OpKind::Aside1), 1, "{d}");
        assert_eq!(d.get(OpKind::Vale1), 1, "{d}");
        assert_eq!(d.get(OpKind::Vmalle1is), 1, "{d}");
        assert_eq!(d.total(), 3, "{d}");
        assert_eq!(d.dsb, 2, "one DSB per batch: {d}");
    }
);

ktest!(
    fn tlbi_range_op_executes_where_supported() {
        let f = crate::FEATURES.get().unwrap();
        if !f.tlbi_range {
            crate::test::skip("no FEAT_TLBIRANGE on this CPU");
        }
        let before = TLB_STATS.total();
        tlbi::run(
            &[TlbiOp::Range { asid: 3, base: 0x20_0000, num: 3, scale: 1, last_level: false, ttl: None }],
            Scope::Broadcast,
        );
        let d = TLB_STATS.total().since(&before);
        assert_eq!(d.get(OpKind::Rvae1is), 1, "{d}");
        assert_eq!(d.total(), 1, "the range op alone: {d}");
        assert_eq!(d.dsb, 1, "one DSB completes it: {d}");
    }
);

ktest!(
    fn pan_is_on_in_the_kernel() {
        // With FEAT_PAN (as on -cpu max) the kernel cannot touch user memory
        // except through the unprivileged copy routines (issue 3).
        assert!(cpu::pan_enabled(), "PSTATE.PAN must be set in kernel context");
    }
);
