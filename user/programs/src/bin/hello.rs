//! hello: prints where it runs. Exit 0.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::{println, sys};

ulib::entry!(run);

fn run(_arg: u64) -> i32 {
    println!("hello from pid {} on cpu {}", sys::getpid(), sys::getcpu());
    0
}
