//! munmap_ops: maps `arg` pages (0: 1), touches each, and munmaps them,
//! reading the kernel's TLBI counters around the munmap. Prints the deltas
//! and exits with them packed into the status (6 bits each, saturating):
//! VAE1IS | VALE1IS << 6 | RVAE1IS << 12 | RVALE1IS << 18 | ASIDE1IS << 24,
//! with bit 30 set if any other kind was issued. 127 on a setup error.
#![cfg_attr(target_os = "none", no_std, no_main)]

use ulib::{abi, println, sys};
use userland::arg_or;

/// STATS(TLBI) word order (kernel `OpKind`): local kinds, then broadcast.
use ulib::abi::stats::TLBI_NAMES as NAMES;

fn tlbi() -> [u64; 13] {
    let mut w = [0u64; 13];
    let _ = sys::stats(abi::stats::TLBI, &mut w);
    w
}

/// The non-zero counters, as ` name=count` pairs.
struct Counts<'a>(&'a [u64; 12]);

impl core::fmt::Display for Counts<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (k, name) in NAMES.iter().enumerate() {
            if self.0[k] != 0 {
                write!(f, " {name}={}", self.0[k])?;
            }
        }
        Ok(())
    }
}

ulib::entry!(run);

fn run(arg: u64) -> i32 {
    let pages = arg_or(arg, 1);
    let Ok(addr) = sys::mmap(pages * 4096, abi::prot::READ | abi::prot::WRITE) else { return 127 };
    for p in 0..pages {
        // SAFETY: inside the fresh read-write mapping.
        unsafe { ((addr + p * 4096) as *mut u64).write_volatile(p) };
    }
    let before = tlbi();
    // SAFETY: nothing refers to the mapping any more.
    if unsafe { sys::munmap(addr, pages * 4096) }.is_err() {
        return 127;
    }
    let after = tlbi();
    let d: [u64; 12] = core::array::from_fn(|i| after[i] - before[i]);
    println!("munmap_ops: pages={pages}{}", Counts(&d));
    let sat = |v: u64| v.min(63) as i32;
    let other = (0..6).chain([11]).any(|k| d[k] != 0);
    sat(d[6]) | sat(d[7]) << 6 | sat(d[8]) << 12 | sat(d[9]) << 18 | sat(d[10]) << 24 | (other as i32) << 30
}
