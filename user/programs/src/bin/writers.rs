//! writers: four threads, one per CPU, each writing its own 64-page region
//! forever (the reaper test kills this process while they run). Exits only
//! on a setup error: 1.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use ulib::mm::Mapping;
use ulib::{sys, thread};
use userland::try_sys;

fn write_forever(cpu: u64) -> i32 {
    let _ = sys::set_affinity(Some(cpu));
    let Ok(mut m) = Mapping::pages(64) else { return 1 };
    let mut n = 0u64;
    loop {
        for w in m.words_mut().iter_mut().step_by(64) {
            *w = n;
        }
        n += 1;
    }
}

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    for cpu in 1..4 {
        // Never joined: the threads run until the process is killed.
        let _ = try_sys!(thread::spawn(move || write_forever(cpu)), 1);
    }
    Err(write_forever(0))
}
