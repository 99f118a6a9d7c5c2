//! Wait queues: block the current task until a condition holds.
//!
//! The condition is checked, and the task queued, under the queue's lock;
//! a waker changes the condition first and then takes the same lock to wake,
//! so a wake-up between the check and the sleep cannot be lost.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::sched::{self, current};
use super::{State, Task};
use crate::sync::IrqMutex;

pub struct WaitQueue {
    q: IrqMutex<VecDeque<Arc<Task>>>,
}

/// The wait ended because the waiting thread's process was killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interrupted;

impl WaitQueue {
    pub const fn new() -> Self {
        WaitQueue { q: IrqMutex::new(VecDeque::new()) }
    }

    /// Blocks until `cond()` is true (checked under the queue lock). Returns
    /// `Err(Interrupted)` if the current process is killed meanwhile.
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool) -> Result<(), Interrupted> {
        let me = current();
        loop {
            {
                let mut q = self.q.lock();
                if cond() {
                    return Ok(());
                }
                if me.process().is_some_and(|p| p.is_killed()) {
                    return Err(Interrupted);
                }
                me.set_state(State::Blocked);
                if !q.iter().any(|t| Arc::ptr_eq(t, &me)) {
                    q.push_back(me.clone());
                }
            }
            sched::schedule();
        }
    }

    pub fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.q.lock());
        for t in &waiters {
            sched::wake(t);
        }
    }

    pub fn wake_one(&self) -> bool {
        let t = self.q.lock().pop_front();
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

}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}
