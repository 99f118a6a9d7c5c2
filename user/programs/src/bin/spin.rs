//! spin: a long-lived process for the reserved-ASID test. Pins itself to CPU
//! `arg & 7`, then for `arg >> 8` ms (0: 2000) touches its memory and
//! sleeps 1 ms at a time (so it is switched out and back in). Exit 0; 1
//! affinity, 2 mmap, 3 memory changed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::sys;
use userland::{arg_or, fail, try_sys};

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    try_sys!(sys::set_affinity(Some(arg & 7)), 1);
    let mut m = try_sys!(Mapping::pages(4), 2);
    let until = sys::time_ns() + arg_or(arg >> 8, 2000) * 1_000_000;
    let mut round = 0u64;
    while sys::time_ns() < until {
        m.words_mut().fill(round);
        let _ = sys::sleep_ms(1);
        if let Some(i) = m.words().iter().position(|&w| w != round) {
            fail!(3, "round {round} word {i}: saw {:#x}", m.words()[i]);
        }
        round += 1;
    }
    Ok(())
}
