//! migrate: arg = CPUs to visit (0: 4). Fills 256 KiB with a pattern, then
//! for each CPU in turn pins itself there, checks getcpu() and that the
//! memory still holds the last pattern, and writes a pattern of that CPU.
//! Exit 0 on success; 1 mmap, 2 set_affinity, 3 getcpu, 4 memory changed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::{println, sys};
use userland::pattern::{check, fill};
use userland::{arg_or, check_eq, fail, try_sys};

const BYTES: u64 = 256 * 1024;
const FIRST: u64 = 0x4d16_0000_0000_0000;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let cpus = arg_or(arg, 4);
    let mut m = try_sys!(Mapping::new(BYTES), 1);
    let mut seed = FIRST;
    fill(m.words_mut(), seed);
    for cpu in 0..cpus {
        try_sys!(sys::set_affinity(Some(cpu)), 2);
        check_eq!(3, "getcpu() after set_affinity", cpu, sys::getcpu());
        if let Err(bad) = check(m.words(), seed) {
            fail!(4, "on cpu {cpu}, pattern {seed:#x}: {bad}");
        }
        seed = FIRST | (cpu + 1);
        fill(m.words_mut(), seed);
    }
    try_sys!(sys::set_affinity(None), 2);
    println!("migrate: visited {cpus} cpus, memory followed");
    Ok(())
}
