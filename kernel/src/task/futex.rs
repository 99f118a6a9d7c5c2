//! Futex-style wait/wake on a 32-bit user word, keyed by (mm, address).
//!
//! `wait` returns at once with `EAGAIN` if the word differs from `expected`;
//! otherwise it sleeps until a `wake` on the same word finds the value
//! changed (user-level locks always change the word before waking). The
//! value is re-read under the wait queue's lock, so a wake cannot be lost.

use crate::error::SysError;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;

use super::process::Process;
use super::wait::WaitQueue;
use crate::arch::uaccess::copy_from_user;
use crate::sync::IrqMutex;

static FUTEXES: IrqMutex<BTreeMap<(u64, u64), Arc<WaitQueue>>> = IrqMutex::new(BTreeMap::new());

fn check(addr: u64) -> Result<(), SysError> {
    if addr & 3 != 0 || addr == 0 || addr >= abi::USER_END {
        return Err(SysError::Inval);
    }
    Ok(())
}

fn read(addr: u64) -> Result<u32, SysError> {
    let mut b = [0u8; 4];
    if !copy_from_user(&mut b, addr) {
        return Err(SysError::Fault);
    }
    Ok(u32::from_le_bytes(b))
}

/// Drops a reference to the queue of `key` and removes the queue from the
/// map when nobody else holds it: an address waited on once does not keep
/// a queue for the life of the kernel. Clones are only made under the map
/// lock, so the count read under it is exact.
fn put(key: (u64, u64), wq: Arc<WaitQueue>) {
    let mut m = FUTEXES.lock();
    drop(wq);
    if m.get(&key).is_some_and(|q| Arc::strong_count(q) == 1) {
        m.remove(&key);
        if m.is_empty() {
            *m = BTreeMap::new();
        }
    }
}

pub fn wait(p: &Process, addr: u64, expected: u32, timeout_ns: u64) -> Result<u64, SysError> {
    check(addr)?;
    if timeout_ns != 0 {
        // Timed waits are not implemented: say so rather than ignore it.
        return Err(SysError::Inval);
    }
    if read(addr)? != expected {
        return Err(SysError::Again);
    }
    let key = (p.mm.id, addr);
    let wq = FUTEXES.lock().entry(key).or_insert_with(|| Arc::new(WaitQueue::new("futex_wait"))).clone();
    let mut err = None;
    let r = wq.wait_until(|| match read(addr) {
        Ok(v) => v != expected,
        Err(e) => {
            err = Some(e);
            true
        }
    });
    put(key, wq);
    r.map_err(|_| SysError::Intr)?;
    err.map_or(Ok(0), Err)
}

pub fn wake(p: &Process, addr: u64, count: u64) -> Result<u64, SysError> {
    check(addr)?;
    let key = (p.mm.id, addr);
    let Some(wq) = FUTEXES.lock().get(&key).cloned() else { return Ok(0) };
    let woken = wq.wake_n(count as usize) as u64;
    put(key, wq);
    Ok(woken)
}

/// Futex queues that exist now (for tests).
pub fn queues() -> usize {
    FUTEXES.lock().len()
}
