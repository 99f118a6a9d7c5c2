//! layout: checks the kernel loaded the image as user.ld lays it out: the
//! image starts at USER_TEXT_BASE, .data holds its initial values, .bss
//! (three pages) reads as zeros, and both are writable. Exit 0 if so;
//! 1 image start, 2 .data, 3 .bss, 4 a write did not stick.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use ulib::abi::USER_TEXT_BASE;
use ulib::println;
use userland::check_eq;

/// In .data: non-zero initial values.
static DATA: [AtomicU64; 4] = [
    AtomicU64::new(0xDA7A_0000),
    AtomicU64::new(0xDA7A_0001),
    AtomicU64::new(0xDA7A_0002),
    AtomicU64::new(0xDA7A_0003),
];
/// In .bss: three pages of zeros.
static BSS: [AtomicU64; 3 * 512] = [const { AtomicU64::new(0) }; 3 * 512];

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    check_eq!(1, "image start", USER_TEXT_BASE, ulib::rt::image().0);
    for (i, w) in DATA.iter().enumerate() {
        check_eq!(2, format_args!(".data word {i}"), 0xDA7A_0000 + i as u64, w.load(Relaxed));
    }
    for (i, w) in BSS.iter().enumerate() {
        check_eq!(3, format_args!(".bss word {i}"), 0, w.load(Relaxed));
    }
    for (i, w) in DATA.iter().chain(&BSS).enumerate() {
        w.store(!(i as u64), Relaxed);
    }
    for (i, w) in DATA.iter().chain(&BSS).enumerate() {
        check_eq!(4, format_args!("word {i} of .data/.bss after writing"), !(i as u64), w.load(Relaxed));
    }
    let (start, end) = ulib::rt::image();
    println!("layout: image {start:#x}..{end:#x}, .data and .bss as linked");
    Ok(())
}
