//! Locks that are safe against this CPU's own interrupt handlers: the lock
//! is taken with IRQs masked and they are restored when the guard drops.
//! Every lock the scheduler or an interrupt handler touches is one of these.

use core::ops::{Deref, DerefMut};

use crate::arch::cpu::{irq_restore, irq_save};

pub struct IrqMutex<T> {
    inner: spin::Mutex<T>,
}

pub struct IrqGuard<'a, T> {
    guard: core::mem::ManuallyDrop<spin::MutexGuard<'a, T>>,
    daif: u64,
}

impl<T> IrqMutex<T> {
    pub const fn new(v: T) -> Self {
        IrqMutex { inner: spin::Mutex::new(v) }
    }

    pub fn lock(&self) -> IrqGuard<'_, T> {
        let daif = irq_save();
        IrqGuard { guard: core::mem::ManuallyDrop::new(self.inner.lock()), daif }
    }
}

impl<T> Deref for IrqGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard is dropped exactly once, here, before IRQs are
        // restored (so a handler on this CPU never sees the lock held).
        unsafe { core::mem::ManuallyDrop::drop(&mut self.guard) };
        irq_restore(self.daif);
    }
}
