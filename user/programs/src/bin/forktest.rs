//! forktest: fork gives the child a private copy of memory. The parent
//! fills 16 pages with pattern A and forks; the child checks it sees A,
//! writes B, checks it sees B and exits 0; the parent checks the child's
//! status is 0 and its own pages still hold A.
//! Exit 0 on success; parent: 1 mmap, 2 fork/wait, 3 child status,
//! 4 parent's copy changed; child: 10 did not see A, 11 did not see B.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::println;
use userland::pattern::{check, fill};
use userland::{check_eq, fail, in_child, try_sys};

const PAGES: u64 = 16;
const A: u64 = 0xAAAA_0000_0000_0000;
const B: u64 = 0xBBBB_0000_0000_0000;

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    let mut m = try_sys!(Mapping::pages(PAGES), 1);
    fill(m.words_mut(), A);
    let status = try_sys!(in_child(|| child(&mut m).err().unwrap_or(0)), 2);
    check_eq!(3, "child's exit status", 0, status);
    if let Err(bad) = check(m.words(), A) {
        fail!(4, "parent's pages after the child wrote its copy: {bad}");
    }
    println!("forktest: child wrote its copy of {PAGES} pages, parent's unchanged");
    Ok(())
}

fn child(m: &mut Mapping) -> Result<(), i32> {
    if let Err(bad) = check(m.words(), A) {
        fail!(10, "child's copy before writing: {bad}");
    }
    fill(m.words_mut(), B);
    if let Err(bad) = check(m.words(), B) {
        fail!(11, "child's copy after writing: {bad}");
    }
    Ok(())
}
