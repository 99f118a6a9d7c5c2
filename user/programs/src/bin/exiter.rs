//! exiter: exits at once with status `arg & 0xff` (for `spawner`).
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

ulib::entry!(run);

fn run(arg: u64) -> i32 {
    (arg & 0xff) as i32
}
