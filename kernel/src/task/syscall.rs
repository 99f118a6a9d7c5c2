//! System-call dispatch. Every argument is validated; a rejected call
//! returns `-errno` and is counted in `BAD_SYSCALLS`. Nothing a user passes
//! can panic the kernel.

use crate::error::SysError;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::jobs::Work;
use super::process::{self, Process};
use super::{ipc, sched};
use crate::arch::cpu::cpu_id;
use crate::arch::exception::TrapFrame;
use crate::arch::uaccess::{copy_from_user, copy_to_user};
use crate::mm::tlb::{OpKind, TLB_STATS};
use crate::percpu::MAX_CPUS;
use abi::nr;

/// System calls rejected with an error because of their arguments.
pub static BAD_SYSCALLS: AtomicU64 = AtomicU64::new(0);
/// Page faults resolved (first touch, copy-on-write).
pub static PAGE_FAULTS: AtomicU64 = AtomicU64::new(0);

fn current_process() -> Arc<Process> {
    sched::current().process().expect("syscall from a user thread").clone()
}

/// Handles `SVC #0` from EL0; the result goes back in x0 (and x1–x4).
pub fn dispatch(frame: &mut TrapFrame) {
    let a = [frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5]];
    let r = call(frame.x[8], a, frame);
    frame.x[0] = match r {
        Ok(v) => v,
        Err(e) => {
            if e.is_bad_argument() {
                BAD_SYSCALLS.fetch_add(1, Ordering::Relaxed);
            }
            e.errno() as u64
        }
    };
}

fn user_str(ptr: u64, len: u64, buf: &mut [u8]) -> Result<usize, SysError> {
    if len as usize > buf.len() {
        return Err(SysError::Inval);
    }
    if !copy_from_user(&mut buf[..len as usize], ptr) {
        return Err(SysError::Fault);
    }
    Ok(len as usize)
}

/// Calls that may keep kernel heap memory (a process, a thread, an
/// endpoint, a mapping, or a queued call, waiter or received call while
/// they block): refused with ENOMEM while the heap is at its reserve (see
/// `mm::heap`). Calls that give memory back (exit, kill, wait, join, reply,
/// madvise) and calls that only use the heap for a moment still work, so a
/// system at its reserve can always recover.
fn may_keep_heap(n: u64) -> bool {
    matches!(
        n,
        nr::SPAWN
            | nr::FORK
            | nr::THREAD_CREATE
            | nr::EP_CREATE
            | nr::EP_CALL
            | nr::EP_RECV
            | nr::FUTEX_WAIT
            | nr::SLEEP
            | nr::MMAP
            | nr::MUNMAP
            | nr::MPROTECT
            | nr::COPY_ASYNC
            | nr::WATCH_ASYNC
            | nr::DEV_SUBMIT
    )
}

fn call(n: u64, a: [u64; 6], frame: &mut TrapFrame) -> Result<u64, SysError> {
    // The calls that never return come first, before this function holds
    // any reference: whatever it held would never be dropped.
    match n {
        nr::EXIT => process::exit_process(a[0] as i32 as i64),
        nr::THREAD_EXIT => process::exit_thread(a[0] as i32 as i64),
        _ => {}
    }
    if may_keep_heap(n) && crate::mm::heap::headroom().is_err() {
        return Err(SysError::NoMem);
    }
    let p = current_process();
    match n {
        nr::WRITE => {
            if a[1] > 4096 {
                return Err(SysError::Inval);
            }
            let mut buf = [0u8; 4096];
            let n = user_str(a[0], a[1], &mut buf)?;
            crate::console::print(format_args!("{}", alloc::string::String::from_utf8_lossy(&buf[..n])));
            Ok(n as u64)
        }
        // One call into the TLB protocol each (`mm::space`): the locking,
        // the gathers and the flushes are its business.
        nr::MMAP => p.mm.mmap(a[0], a[1], a[2], a[3]).map_err(SysError::from),
        nr::MUNMAP => p.mm.munmap(a[0], a[1]).map(|_| 0).map_err(SysError::from),
        nr::MPROTECT => p.mm.mprotect(a[0], a[1], a[2]).map(|_| 0).map_err(SysError::from),
        nr::MADVISE => p.mm.madvise(a[0], a[1], a[2]).map(|_| 0).map_err(SysError::from),
        nr::SPAWN => {
            let mut buf = [0u8; 64];
            let len = user_str(a[0], a[1], &mut buf)?;
            let name = core::str::from_utf8(&buf[..len]).map_err(|_| SysError::Inval)?;
            process::spawn(name, a[2], p.pid).map(|c| c.pid)
        }
        nr::FORK => process::fork(&p, frame),
        nr::WAIT => {
            let (pid, status) = process::wait_child(&p, a[0] as i64)?;
            if a[1] != 0 && !copy_to_user(a[1], &status.to_le_bytes()) {
                return Err(SysError::Fault);
            }
            Ok(pid)
        }
        nr::THREAD_CREATE => {
            if a[0] == 0 || a[0] >= abi::USER_END || a[1] >= abi::USER_END || a[1] & 15 != 0 {
                return Err(SysError::Inval);
            }
            p.add_thread(a[0], a[1], a[2])
        }
        nr::JOIN => {
            let me = sched::current().user.as_ref().map_or(0, |u| u.tid);
            // The 32-bit code, zero-extended: never negative, so never
            // mistaken for an errno.
            p.join(a[0], me).map(|c| c as i32 as u32 as u64)
        }
        nr::YIELD => {
            sched::yield_now();
            Ok(0)
        }
        nr::SLEEP => {
            sched::sleep_ns(a[0]);
            Ok(0)
        }
        nr::SET_AFFINITY => {
            let cpu = a[0] as i64;
            if cpu == -1 {
                sched::set_affinity(None);
            } else if cpu < 0 || cpu as usize >= crate::percpu::online_count() {
                return Err(SysError::Inval);
            } else {
                sched::set_affinity(Some(cpu as usize));
            }
            Ok(0)
        }
        nr::GETCPU => Ok(cpu_id() as u64),
        nr::GETPID => Ok(p.pid),
        nr::TIME_NS => Ok(platform::timer::ticks_to_ns(platform::timer::now())),
        nr::STATS => stats(a[0], a[1], a[2]),
        nr::EP_CREATE => ipc::create(&p),
        nr::EP_CALL => {
            let r = ipc::call(a[0], [a[1], a[2], a[3], a[4]])?;
            frame.x[1..5].copy_from_slice(&r);
            Ok(0)
        }
        nr::EP_RECV => {
            let (token, m) = ipc::recv(&p, a[0])?;
            frame.x[1..5].copy_from_slice(&m);
            Ok(token)
        }
        nr::EP_REPLY => ipc::reply(&p, a[0], [a[1], a[2], a[3], a[4]]).map(|_| 0),
        nr::FUTEX_WAIT => super::futex::wait(&p, a[0], a[1] as u32, a[2]),
        nr::FUTEX_WAKE => super::futex::wake(&p, a[0], a[1]),
        nr::KILL => {
            let target = process::lookup(a[0]).filter(|t| !t.has_exited()).ok_or(SysError::Srch)?;
            if !process::is_self_or_descendant(&target, p.pid) {
                return Err(SysError::Perm);
            }
            if target.pid == p.pid {
                // Never returns: drop our references first.
                drop(target);
                drop(p);
                process::exit_process(abi::KILLED_BASE + abi::cause::KILLED);
            }
            super::reaper::kill(&target);
            Ok(0)
        }
        nr::FAULT_RESUME => {
            if a[0] >= abi::USER_END {
                return Err(SysError::Inval);
            }
            p.fault_resume.store(a[0], Ordering::Release);
            Ok(0)
        }
        nr::COPY_ASYNC => super::jobs::submit(&p, Work::copy(a[0], a[1], a[2])?, a[3]),
        nr::WATCH_ASYNC => super::jobs::submit(&p, Work::watch(a[0], a[1], a[2], a[4])?, a[3]),
        nr::COPY_WAIT => super::jobs::wait(&p, a[0], a[1]),
        nr::DEV_BIND => super::device::bind(&p, a[0]),
        nr::DEV_UNBIND => super::device::unbind(&p, a[0]),
        nr::DEV_SUBMIT => super::device::submit(&p, a[0], a[1]),
        nr::DEV_WAIT => super::device::wait(&p, a[0], a[1], a[2], a[3]),
        _ => Err(SysError::NoSys),
    }
}

/// `stats(TLBI)` words of `t`: ops by kind, DSBs, then the repeat-TLBI
/// workaround's TLBIs by kind and its DSBs (`abi::stats::TLBI`).
fn tlbi_words(t: &crate::mm::tlb::TlbCounts, words: &mut [u64]) -> usize {
    use abi::stats as s;
    const _: () = assert!(s::TLBI_KINDS == OpKind::COUNT && s::TLBI_WORDS <= 32);
    for k in OpKind::ALL {
        words[k as usize] = t.get(k);
        words[s::TLBI_REPEAT + k as usize] = t.repeat[k as usize];
    }
    words[s::TLBI_DSB] = t.dsb;
    words[s::TLBI_REPEAT_DSB] = t.repeat_dsb;
    s::TLBI_WORDS
}

/// `stats(EVENTS)` words of `t`.
fn events_words(t: &crate::mm::tlb::TlbCounts, words: &mut [u64]) -> usize {
    for e in crate::mm::tlb::Event::ALL {
        words[e as usize] = t.event(e);
    }
    crate::mm::tlb::Event::COUNT
}

fn stats(which: u64, buf: u64, len: u64) -> Result<u64, SysError> {
    let mut words = [0u64; 32];
    let n = match which {
        abi::stats::FRAMES => {
            let f = crate::mm::frame::FRAMES.lock();
            words[0] = f.free_frames() as u64;
            words[1] = f.total_frames() as u64;
            2
        }
        abi::stats::BAD_SYSCALLS => {
            words[0] = BAD_SYSCALLS.load(Ordering::Relaxed);
            1
        }
        abi::stats::TLBI => tlbi_words(&TLB_STATS.total(), &mut words),
        abi::stats::ASID => {
            let s = crate::mm::user::ASIDS.get().map(|a| a.stats()).unwrap_or_default();
            words[..5].copy_from_slice(&[s.rollovers, s.slow_switches, s.fast_switches, s.rollover_flushes, s.pinned]);
            5
        }
        abi::stats::PAGE_FAULTS => {
            words[0] = PAGE_FAULTS.load(Ordering::Relaxed);
            1
        }
        abi::stats::EVENTS => events_words(&TLB_STATS.total(), &mut words),
        abi::stats::TLBI_TTL => {
            let t = crate::mm::tlb::stats::TTL_STATS.total();
            words[..t.len()].copy_from_slice(&t);
            t.len()
        }
        w if (abi::stats::EVENTS_CPU..abi::stats::EVENTS_CPU + MAX_CPUS as u64).contains(&w) => {
            events_words(&TLB_STATS.cpu((w - abi::stats::EVENTS_CPU) as usize), &mut words)
        }
        w if (abi::stats::TLBI_CPU..abi::stats::TLBI_CPU + MAX_CPUS as u64).contains(&w) => {
            tlbi_words(&TLB_STATS.cpu((w - abi::stats::TLBI_CPU) as usize), &mut words)
        }
        abi::stats::POISON => {
            words[0] = crate::mm::phys::POISON_VIOLATIONS.load(Ordering::Relaxed);
            1
        }
        abi::stats::CPUS => {
            words[0] = crate::percpu::online_count() as u64;
            1
        }
        w if (abi::stats::DEVICE..abi::stats::DEVICE + abi::device::COUNT as u64).contains(&w) => {
            let d = super::device::stat_words((w - abi::stats::DEVICE) as usize).ok_or(SysError::Inval)?;
            words[..d.len()].copy_from_slice(&d);
            d.len()
        }
        abi::stats::RESOURCES => {
            let r = super::resources();
            words[..r.len()].copy_from_slice(&r);
            r.len()
        }
        _ => return Err(SysError::Inval),
    };
    let n = n.min(len as usize);
    let bytes: alloc::vec::Vec<u8> = words[..n].iter().flat_map(|w| w.to_le_bytes()).collect();
    if !copy_to_user(buf, &bytes) {
        return Err(SysError::Fault);
    }
    Ok(n as u64)
}
