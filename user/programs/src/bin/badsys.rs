//! badsys: makes a table of invalid system calls and checks each fails
//! with the expected errno, and that stats(BAD_SYSCALLS) rose by exactly
//! the number of calls. Prints name/expected/got. Exit 0 if all matched;
//! 1 stats, 2 mmap, 3 some call got the wrong result, 4 counter rise.
#![cfg_attr(target_os = "none", no_std, no_main)]

use core::sync::atomic::AtomicU32;

use ulib::abi::errno::*;
use ulib::abi::{advice, map, nr, prot, stats, USER_END};
use ulib::mm::Mapping;
use ulib::{println, raw, sys, Errno};
use userland::{check_eq, fail, try_sys};

/// A call that must fail with `errno`.
struct Case {
    name: &'static str,
    nr: u64,
    args: [u64; 6],
    errno: i64,
}

#[rustfmt::skip]
const fn case(name: &'static str, nr: u64, args: [u64; 6], errno: i64) -> Case {
    Case { name, nr, args, errno }
}

/// A tid, pid and endpoint id no one has.
const NO_SUCH_ID: u64 = 0x7fff_ffff;
const RW: u64 = prot::READ | prot::WRITE;

ulib::entry!(run);

fn run(_arg: u64) -> Result<(), i32> {
    // A page that mprotect/madvise with bad arguments could only touch.
    let scratch = try_sys!(Mapping::pages(1), 2);
    let s = scratch.addr();
    let futex = AtomicU32::new(0);
    let unaligned = futex.as_ptr() as u64 + 1;
    let name = "no-such-program";
    // An expected futex value that does not match, so a kernel that skips
    // the alignment check returns EAGAIN instead of sleeping (and no
    // timeout, so the EINVAL cannot come from another check).
    #[rustfmt::skip]
    let cases = [
        case("write null",           nr::WRITE,        [0, 10, 0, 0, 0, 0], EFAULT),
        case("write kernel ptr",     nr::WRITE,        [0xffff_0000_0000_1000, 10, 0, 0, 0, 0], EFAULT),
        case("mmap fixed unaligned", nr::MMAP,         [0x1001, 4096, RW, map::FIXED, 0, 0], EINVAL),
        case("mmap zero length",     nr::MMAP,         [0, 0, RW, 0, 0, 0], EINVAL),
        case("munmap overflowing",   nr::MUNMAP,       [0x1000, u64::MAX - 0x800, 0, 0, 0, 0], EINVAL),
        case("munmap past USER_END", nr::MUNMAP,       [USER_END, 4096, 0, 0, 0, 0], EINVAL),
        case("mprotect prot 0x80",   nr::MPROTECT,     [s, 4096, 0x80, 0, 0, 0], EINVAL),
        case("mmap flags 0x100",     nr::MMAP,         [0, 4096, RW, 0x100, 0, 0], EINVAL),
        case("madvise advice 99",    nr::MADVISE,      [s, 4096, 99, 0, 0, 0], EINVAL),
        case("madvise COLLAPSE +8",  nr::MADVISE,      [s + 8, 4096, advice::COLLAPSE, 0, 0, 0], EINVAL),
        case("madvise HUGEPAGE 0",   nr::MADVISE,      [s, 0, advice::HUGEPAGE, 0, 0, 0], EINVAL),
        case("mmap HUGE|CONT|0x40",  nr::MMAP,         [0, 4096, RW, map::HUGE | map::CONT | 0x40, 0, 0], EINVAL),
        case("syscall 999",          999,              [0; 6], ENOSYS),
        case("join no such tid",     nr::JOIN,         [NO_SUCH_ID, 0, 0, 0, 0, 0], ESRCH),
        case("wait no children",     nr::WAIT,         [u64::MAX, 0, 0, 0, 0, 0], ECHILD),
        case("set_affinity(64)",     nr::SET_AFFINITY, [64, 0, 0, 0, 0, 0], EINVAL),
        case("spawn unknown name",   nr::SPAWN,        [name.as_ptr() as u64, name.len() as u64, 0, 0, 0, 0], ENOENT),
        case("ep_call no endpoint",  nr::EP_CALL,      [NO_SUCH_ID, 1, 2, 3, 4, 0], ENOENT),
        case("futex_wait unaligned", nr::FUTEX_WAIT,   [unaligned, 0xdead_beef, 0, 0, 0, 0], EINVAL),
    ];

    let before = try_sys!(sys::stat(stats::BAD_SYSCALLS), 1);
    let got = cases.each_ref().map(|c| {
        let [a0, a1, a2, a3, a4, a5] = c.args;
        // A kernel that wrongly acted could at worst unmap memory we use,
        // which ends the process with a fault, not silent corruption.
        // SAFETY: every call is invalid and rejected before it acts; the only
        // memory named is unused `scratch`, null, kernel or unmapped ranges.
        Errno::result(unsafe { raw::syscall6(c.nr, a0, a1, a2, a3, a4, a5) })
    });
    let after = try_sys!(sys::stat(stats::BAD_SYSCALLS), 1);

    println!("badsys: {:<24} {:<14} got", "call", "expected");
    let mut wrong = 0;
    for (c, g) in cases.iter().zip(got) {
        let ok = g == Err(Errno(c.errno));
        wrong += usize::from(!ok);
        let mark = if ok { "ok" } else { "WRONG" };
        match g {
            Ok(v) => println!("badsys: {:<24} {:<14} Ok({v:#x}) {mark}", c.name, Errno(c.errno)),
            Err(e) => println!("badsys: {:<24} {:<14} {e} {mark}", c.name, Errno(c.errno)),
        }
    }
    if wrong > 0 {
        fail!(3, "{wrong} of {} calls did not fail as expected", cases.len());
    }
    check_eq!(4, "rise of stats(BAD_SYSCALLS)", cases.len() as u64, after.wrapping_sub(before));
    drop(scratch);
    println!("badsys: all {} bad calls rejected and counted", cases.len());
    Ok(())
}
