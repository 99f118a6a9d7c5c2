//! exit_pages: maps `arg` pages (0: 4096), touches each, and exits with the
//! mapping still in place, so the kernel's exit-mode teardown frees it.
//! Exit 0; 1 mmap.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use userland::{arg_or, try_sys};

ulib::entry!(run);

fn run(arg: u64) -> Result<(), i32> {
    let pages = arg_or(arg, 4096);
    let m = try_sys!(Mapping::pages(pages), 1).leak();
    for (i, page) in m.chunks_mut(512).enumerate() {
        page[0] = i as u64;
    }
    Ok(())
}
