//! Every task, for diagnostics: [`dump`] lists them with their state and
//! what they wait for (a hang shows as tasks Blocked in the same place for
//! a long time). A fixed table (no heap, so it does not disturb the heap
//! accounting); tasks beyond it are counted but not listed.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::Task;
use crate::sync::IrqMutex;

/// Tasks the table can list.
const SLOTS: usize = 4096;

/// Addresses of live tasks (0: free slot). A task's `Drop` clears its slot
/// under the lock, so a task the dump finds here is alive while it is read.
static TABLE: IrqMutex<[usize; SLOTS]> = IrqMutex::new([0; SLOTS]);
/// Tasks that found no free slot.
static UNLISTED: AtomicUsize = AtomicUsize::new(0);

pub(super) fn register(t: Arc<Task>) -> Arc<Task> {
    let mut table = TABLE.lock();
    match table.iter().position(|&p| p == 0) {
        Some(i) => {
            table[i] = Arc::as_ptr(&t) as usize;
            t.slot.store(i, Ordering::Relaxed);
        }
        None => {
            UNLISTED.fetch_add(1, Ordering::Relaxed);
        }
    }
    t
}

pub(super) fn unregister(t: &Task) {
    let i = t.slot.load(Ordering::Relaxed);
    let mut table = TABLE.lock();
    if i < SLOTS {
        table[i] = 0;
    } else {
        UNLISTED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Prints one line per task: id, name, state, CPU, process and thread,
/// and what it waits for.
pub fn dump(mut line: impl FnMut(core::fmt::Arguments)) {
    let table = TABLE.lock();
    for &p in table.iter().filter(|&&p| p != 0) {
        // SAFETY: a non-zero slot holds the address of a live `Task` (see
        // `TABLE`): its `Drop` cannot finish while we hold the lock.
        let t = unsafe { &*(p as *const Task) };
        let (pid, tid) = t.user.as_ref().map_or((0, 0), |u| (u.process.pid, u.tid));
        let waiting = *t.waiting.lock();
        line(format_args!(
            "task {} {} state {:?} cpu {} pid {pid} tid {tid}{}{}",
            t.id,
            t.name,
            t.state(),
            t.cpu.load(Ordering::Relaxed),
            if waiting.is_empty() { "" } else { " waiting in " },
            waiting
        ));
    }
    let unlisted = UNLISTED.load(Ordering::Relaxed);
    if unlisted != 0 {
        line(format_args!("({unlisted} more tasks not listed)"));
    }
}
