//! The kernel's own address space after boot: the linear map of all RAM and
//! the devices, the kernel heap, the frame allocator, and the empty table
//! TTBR0 points at when no user address space is loaded.

use crate::arch::early::BOOT_INFO;
use crate::arch::kmap::{self, KmapError, PoolAlloc, POOL_PAGES, TABLE_POOL};
use crate::arch::layout::{phys_to_virt, KIMAGE_VBASE};
use crate::arch::{cpu, tlbi};
use crate::mm::frame::FRAMES;
use crate::mm::pte::*;
use crate::mm::tlb::{Scope, TlbiOp};
use platform::{BoardInfo, MemRegion};

/// Kernel heap size. 32 MiB is ample for the kernel's own structures; user
/// memory and page tables come from the frame allocator.
pub const HEAP_SIZE: u64 = 32 << 20;

/// An all-invalid level-0 table: TTBR0 points here whenever no user address
/// space is loaded, so no CPU can walk a dead or foreign user table.
#[repr(C, align(4096))]
struct EmptyTable([u64; ENTRIES]);
static EMPTY_TTBR0: EmptyTable = EmptyTable([0; ENTRIES]);

fn boot_info() -> &'static crate::arch::early::BootInfo {
    // SAFETY: written once with the MMU off before any Rust code at the high
    // address ran; read-only from then on.
    unsafe { &*(&raw const BOOT_INFO) }
}

/// Physical address of a kernel-image virtual address.
pub fn kimage_pa(va: u64) -> u64 {
    va - KIMAGE_VBASE + boot_info().image_pa
}

pub fn empty_ttbr0_pa() -> u64 {
    kimage_pa(&raw const EMPTY_TTBR0 as u64)
}

/// Points TTBR0 at the empty table (ASID 0) on this CPU and drops any
/// lower-half entries this CPU may hold (the boot identity map). The first
/// call also makes the empty table the protocol's reserved one.
pub fn enter_empty_ttbr0() {
    // SAFETY: EMPTY_TTBR0 is an all-invalid, 4096-aligned table in the
    // image, never written.
    unsafe {
        super::hw::set_reserved_ttbr0(empty_ttbr0_pa());
        cpu::set_ttbr0(empty_ttbr0_pa(), 0);
    }
    tlbi::run(&[TlbiOp::All], Scope::Local);
}

/// Translates a table's physical address for the mapper while the pool pages
/// (in the image) may not be in the linear map yet.
fn p2v_any(pa: u64) -> *mut u64 {
    let info = boot_info();
    if pa >= info.image_pa && pa < info.image_pa + info.image_size {
        (pa - info.image_pa + KIMAGE_VBASE) as *mut u64
    } else {
        phys_to_virt(pa) as *mut u64
    }
}

/// Maps all RAM and the devices into the linear map (adding entries to
/// unused slots only: no live translation changes, so no break-before-make).
pub fn map_linear(board: &BoardInfo) -> Result<(), KmapError> {
    let info = boot_info();
    let pool_pa = kimage_pa(&raw const TABLE_POOL as u64);
    let mut pool = PoolAlloc { pool_pa, used: info.pool_used as usize };
    let root = info.ttbr1_root;
    for r in board.memory() {
        kmap::map_range(root, phys_to_virt(r.base), r.base, r.size, KERNEL_RW, true, &mut pool, &p2v_any)?;
    }
    for d in [board.uart, board.gicd, board.gicr] {
        let base = d.base & !(PAGE_SIZE - 1);
        let size = (d.end() - base).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        kmap::map_range(root, phys_to_virt(base), base, size, KERNEL_DEVICE, false, &mut pool, &p2v_any)?;
    }
    log::debug!(target: "mm", "kernel page-table pool: {} of {} pages", pool.used, POOL_PAGES);
    // New entries in previously invalid slots need no TLBI; the DSB makes
    // them visible to the walker before the first access.
    cpu::dsb_ishst_isb();
    Ok(())
}

#[derive(Clone, Copy, Debug)]
pub enum MemInitError {
    NoRoomForHeap,
}

impl core::fmt::Display for MemInitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemInitError::NoRoomForHeap => write!(f, "no {} MiB of free RAM for the kernel heap", HEAP_SIZE >> 20),
        }
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Sets up the heap and the frame allocator over all RAM except the kernel
/// image and the device tree. Returns the heap's physical range.
pub fn init_memory(board: &BoardInfo) -> Result<MemRegion, MemInitError> {
    let info = boot_info();
    let image = (info.image_pa, info.image_pa + info.image_size);
    let dtb = (info.dtb_pa & !(PAGE_SIZE - 1), (info.dtb_pa + info.dtb_size).div_ceil(PAGE_SIZE) * PAGE_SIZE);
    let reserved = [image, dtb];
    // Carve the heap from the first gap of RAM large enough for it.
    let mut heap = None;
    'outer: for r in board.memory() {
        let mut start = r.base.div_ceil(2 << 20) * (2 << 20);
        while start + HEAP_SIZE <= r.end() {
            let cand = (start, start + HEAP_SIZE);
            if let Some(res) = reserved.iter().find(|res| overlaps(cand, **res)) {
                start = res.1.div_ceil(2 << 20) * (2 << 20);
                continue;
            }
            heap = Some(MemRegion { base: start, size: HEAP_SIZE });
            break 'outer;
        }
    }
    let heap = heap.ok_or(MemInitError::NoRoomForHeap)?;
    // SAFETY: the heap range is RAM mapped read-write in the linear map and
    // used by nothing else (it avoids the image, the DTB and, below, the
    // frame allocator).
    unsafe { crate::mm::heap::HEAP.init(phys_to_virt(heap.base) as usize, heap.size as usize) };
    let reserved = [image, dtb, (heap.base, heap.end())];
    for r in board.memory() {
        // Add [r.base, r.end) minus the reserved ranges.
        let mut pieces = [(r.base, r.end()); 1].to_vec();
        for res in reserved {
            let mut next = alloc::vec::Vec::new();
            for p in pieces {
                if !overlaps(p, res) {
                    next.push(p);
                    continue;
                }
                if p.0 < res.0 {
                    next.push((p.0, res.0));
                }
                if res.1 < p.1 {
                    next.push((res.1, p.1));
                }
            }
            pieces = next;
        }
        crate::mm::heap::frame_allocator_metadata(|| {
            let mut frames = FRAMES.lock();
            for (s, e) in pieces {
                frames.add_range(s, e);
            }
        });
    }
    Ok(heap)
}
