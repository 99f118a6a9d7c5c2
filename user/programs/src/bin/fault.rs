//! fault: arg selects a fault, after which the kernel must kill the
//! process with status KILLED_BASE + cause (see `userland::FAULTS`):
//! 1 read unmapped 0x1_0000_0000 (UNMAPPED), 2 write its own .rodata
//! (PROTECTION), 3 read kernel address 0xffff_0000_4000_0000
//! (KERNEL_ADDRESS), 4 `udf #0` (ILLEGAL_INSTRUCTION), 5 jump into an
//! mmap'd RW page (PROTECTION). Exit 99 if it survives the fault, 98 for
//! an unknown kind, 97 if mmap fails.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::ptr::{addr_of, read_volatile, write_volatile};

use ulib::mm::Mapping;
use ulib::println;
use userland::{fail, killed, try_sys, FAULTS, KERNEL_ADDR, UNMAPPED_ADDR};

/// Lives in .rodata, which is mapped read-only.
static READ_ONLY: u64 = 0x0123_4567;
/// `ret`: what the non-executable page holds, so that a kernel which
/// executes it returns here and the program reports the failure.
const RET: u32 = 0xd65f_03c0;

ulib::entry!(run);

fn run(kind: u64) -> Result<(), i32> {
    let Some(&(_, what, cause)) = FAULTS.iter().find(|f| f.0 == kind) else {
        fail!(98, "unknown fault kind {kind} (1..={})", FAULTS.len());
    };
    // Set up before announcing, so the line is the last thing printed.
    let page = try_sys!(Mapping::pages(1), 97);
    println!("fault: kind {kind} ({what}): expecting status {:#x}", killed(cause));
    match kind {
        // SAFETY: deliberately faults; the kernel kills the process at the
        // load, so nothing after it runs.
        1 => drop(unsafe { read_volatile(UNMAPPED_ADDR as *const u64) }),
        // SAFETY: deliberately faults at the store (.rodata is read-only);
        // had it not, no code reads READ_ONLY.
        2 => unsafe { write_volatile(addr_of!(READ_ONLY) as *mut u64, 0) },
        // SAFETY: as for kind 1.
        3 => drop(unsafe { read_volatile(KERNEL_ADDR as *const u64) }),
        4 => ulib::rt::udf(),
        _ => {
            // SAFETY: the page is ours, RW and unused; a u32 fits at its start.
            unsafe { write_volatile(page.ptr() as *mut u32, RET) };
            // SAFETY: deliberately faults at the first instruction fetch
            // (the page is not executable); had it not, the page holds
            // `ret`, a valid function that returns at once.
            let f: extern "C" fn() = unsafe { core::mem::transmute(page.addr() as usize) };
            f();
        }
    }
    fail!(99, "survived kind {kind} ({what}): expected status {:#x}", killed(cause))
}
