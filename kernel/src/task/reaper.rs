//! The reaper: `kill` reclaims a process's memory at once, in a kernel
//! thread, while the victim's threads may still be running on other CPUs
//! until they notice. See `Mm::reap` for why that is safe.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::process::Process;
use super::wait::WaitQueue;
use super::{sched, Task};
use crate::sync::IrqMutex;

static QUEUE: IrqMutex<VecDeque<Arc<Process>>> = IrqMutex::new(VecDeque::new());
static WQ: WaitQueue = WaitQueue::new("reaper queue");
/// Address spaces reaped since boot.
pub static REAPED: AtomicU64 = AtomicU64::new(0);

/// Kills `p` (exit status KILLED) and has its memory reclaimed now: the
/// reaper thread takes the address space, marks the process killed, and
/// zaps it while the process's threads may still be running.
/// A process killed twice is queued once.
pub fn kill(p: &Arc<Process>) {
    if !p.claim_for_reaper() {
        return;
    }
    QUEUE.lock().push_back(p.clone());
    WQ.wake_all();
}

fn reaper_loop(_: usize) {
    loop {
        let mut next = None;
        let _ = WQ.wait_until(|| {
            let mut q = QUEUE.lock();
            next = q.pop_front();
            super::wait::shrink_if_empty(&mut q);
            next.is_some()
        });
        if let Some(p) = next {
            p.mm.reap(|| p.kill(abi::KILLED_BASE + abi::cause::KILLED));
            REAPED.fetch_add(1, Ordering::Relaxed);
            log::debug!(target: "reaper", "reaped pid {}", p.pid);
        }
    }
}

/// Starts the reaper thread (at boot).
pub fn start() {
    match Task::new_kernel("reaper", reaper_loop, 0) {
        Ok(t) => sched::spawn(t),
        Err(_) => log::error!(target: "reaper", "no memory for the reaper thread"),
    }
}
