//! Wait queues: block the current task until a condition holds.
//!
//! The condition is checked, and the task queued, under the queue's lock;
//! a waker changes the condition first and then takes the same lock to wake,
//! so a wake-up between the check and the sleep cannot be lost.
//!
//! A wait also ends when the waiting thread's process is killed. The kill
//! and the wait race like this: the waiter marks itself Blocked *before* it
//! looks at the killed flag, and the killer sets the flag *before* it wakes
//! the process's Blocked threads (a full fence on both sides), so either the
//! waiter sees the flag or the killer sees the waiter Blocked and wakes it.
//! Whatever ends the wait, the task leaves the queue before it returns: a
//! task left behind would be kept alive (its kernel stack with it) and would
//! swallow the next `wake_one`.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{fence, Ordering};

use super::sched::{self, current};
use super::{State, Task};
use crate::sync::IrqMutex;

pub struct WaitQueue {
    q: IrqMutex<VecDeque<Arc<Task>>>,
    /// What waiting here means, for the task dump (`task::dump`).
    name: &'static str,
}

/// The wait ended because the waiting thread's process was killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted;

/// Is the current task's process killed? (Kernel threads never are.)
fn killed(t: &Task) -> bool {
    t.process().is_some_and(|p| p.is_killed())
}

/// What [`block_unless_killed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Block {
    /// The task is Blocked: the caller publishes it where a waker finds it,
    /// releases its locks and calls `schedule`.
    Blocked,
    /// The process was killed and the task runs on. `woken`: somebody had
    /// already woken it (it is Runnable and in a run queue), so after
    /// releasing its locks the caller must go through `schedule` once to
    /// consume that (it may pick the task right here).
    Killed { woken: bool },
}

/// Marks `me` Blocked, then checks whether its process was killed; if so,
/// undoes the block (see [`Block`]).
pub(super) fn block_unless_killed(me: &Arc<Task>) -> Block {
    me.set_state(State::Blocked);
    fence(Ordering::SeqCst);
    if !killed(me) {
        return Block::Blocked;
    }
    Block::Killed { woken: !me.cas_state(State::Blocked, State::Running) }
}

impl WaitQueue {
    pub const fn new(name: &'static str) -> Self {
        WaitQueue { q: IrqMutex::new(VecDeque::new()), name }
    }

    /// Blocks until `poll()` returns `Some` (it runs under the queue lock)
    /// and returns that. `Err(Interrupted)` if the current process is killed
    /// meanwhile.
    pub fn wait_for<T>(&self, mut poll: impl FnMut() -> Option<T>) -> Result<T, Interrupted> {
        let me = current();
        me.set_waiting(self.name);
        let r = loop {
            let block = {
                let mut q = self.q.lock();
                if let Some(v) = poll() {
                    break Ok(v);
                }
                let block = block_unless_killed(&me);
                if block == Block::Blocked && !q.iter().any(|t| Arc::ptr_eq(t, &me)) {
                    q.push_back(me.clone());
                }
                block
            };
            match block {
                Block::Blocked => sched::schedule(),
                Block::Killed { woken } => {
                    if woken {
                        sched::schedule();
                    }
                    break Err(Interrupted);
                }
            }
        };
        self.remove(&me);
        me.set_waiting("");
        r
    }

    /// Blocks until `cond()` is true (checked under the queue lock).
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool) -> Result<(), Interrupted> {
        self.wait_for(|| cond().then_some(()))
    }

    /// Takes `t` out of the queue if it is there.
    fn remove(&self, t: &Arc<Task>) {
        let mut q = self.q.lock();
        q.retain(|x| !Arc::ptr_eq(x, t));
        shrink_if_empty(&mut q);
    }

    pub fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.q.lock());
        for t in &waiters {
            sched::wake(t);
        }
    }

    pub fn wake_one(&self) -> bool {
        let t = {
            let mut q = self.q.lock();
            let t = q.pop_front();
            shrink_if_empty(&mut q);
            t
        };
        match t {
            Some(t) => {
                sched::wake(&t);
                true
            }
            None => false,
        }
    }

    /// Wakes up to `n` waiters; returns how many were woken.
    pub fn wake_n(&self, n: usize) -> usize {
        let mut woken = 0;
        while woken < n && self.wake_one() {
            woken += 1;
        }
        woken
    }

    /// Tasks waiting now.
    pub fn len(&self) -> usize {
        self.q.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An empty queue gives its buffer back, so a quiet kernel's heap use does
/// not depend on how many tasks once waited (leak tests compare it exactly).
pub(super) fn shrink_if_empty<T>(q: &mut VecDeque<T>) {
    if q.is_empty() && q.capacity() != 0 {
        *q = VecDeque::new();
    }
}
