//! secret: writes (0x5EC2E7 << 32) | pid into every word of 64 pages,
//! sleeps arg ms (0: 500), and checks the words are unchanged. `scanner`
//! runs beside it and must never see the tag. Exit 0 on success; 1 mmap,
//! 2 sleep, 3 a word changed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::{println, sys};
use userland::{arg_or, fail, try_sys, SECRET_TAG_HI};

const PAGES: u64 = 64;

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let secret = SECRET_TAG_HI << 32 | sys::getpid();
    let mut m = try_sys!(Mapping::pages(PAGES), 1);
    m.words_mut().fill(secret);
    try_sys!(sys::sleep_ms(arg_or(arg, 500)), 2);
    if let Some(i) = m.words().iter().position(|&w| w != secret) {
        fail!(3, "word {i}: expected {secret:#x}, saw {:#x}", m.words()[i]);
    }
    println!("secret: pid {} kept {PAGES} pages", sys::getpid());
    Ok(())
}
