//! Synchronous message passing: endpoints with call / receive / reply, four
//! words each way, carried in registers.
//!
//! A caller blocks until its call is replied to. A receiver that takes a
//! call holds it (by reply token) until it replies; if the receiver's
//! process ends first, the call fails with `EPIPE` — the caller never hangs.
//! An endpoint closes when the process that created it ends: queued calls
//! fail with `EPIPE`.

use crate::error::SysError;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::process::Process;
use super::wait::WaitQueue;
use crate::sync::IrqMutex;

pub type Msg = [u64; 4];

pub struct Call {
    msg: Msg,
    reply: IrqMutex<Option<Result<Msg, SysError>>>,
    wq: WaitQueue,
}

impl Call {
    fn complete(&self, r: Result<Msg, SysError>) {
        *self.reply.lock() = Some(r);
        self.wq.wake_all();
    }
}

pub struct Endpoint {
    owner: u64,
    queue: IrqMutex<VecDeque<Arc<Call>>>,
    receivers: WaitQueue,
    closed: AtomicBool,
}

static ENDPOINTS: IrqMutex<BTreeMap<u64, Arc<Endpoint>>> = IrqMutex::new(BTreeMap::new());
static NEXT_EP: AtomicU64 = AtomicU64::new(1);
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(1);

fn lookup(id: u64) -> Result<Arc<Endpoint>, SysError> {
    ENDPOINTS.lock().get(&id).cloned().ok_or(SysError::NoEnt)
}

/// Creates an endpoint owned by `owner`; ENOMEM past
/// `abi::limits::MAX_ENDPOINTS` open endpoints of one process.
pub fn create(owner: &Process) -> Result<u64, SysError> {
    owner
        .endpoints
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < abi::limits::MAX_ENDPOINTS).then_some(n + 1))
        .map_err(|_| SysError::NoMem)?;
    let id = NEXT_EP.fetch_add(1, Ordering::Relaxed);
    let ep = Endpoint {
        owner: owner.pid,
        queue: IrqMutex::new(VecDeque::new()),
        receivers: WaitQueue::new("ep_recv"),
        closed: AtomicBool::new(false),
    };
    ENDPOINTS.lock().insert(id, Arc::new(ep));
    Ok(id)
}

/// Endpoints open now.
pub fn count() -> usize {
    ENDPOINTS.lock().len()
}

/// Endpoints created by process `pid` (for tests).
pub fn owned_by(pid: u64) -> alloc::vec::Vec<u64> {
    ENDPOINTS.lock().iter().filter(|(_, e)| e.owner == pid).map(|(k, _)| *k).collect()
}

pub fn call(id: u64, msg: Msg) -> Result<Msg, SysError> {
    let ep = lookup(id)?;
    let c = Arc::new(Call { msg, reply: IrqMutex::new(None), wq: WaitQueue::new("ep_call") });
    {
        let mut q = ep.queue.lock();
        if ep.closed.load(Ordering::Acquire) {
            return Err(SysError::Pipe);
        }
        q.push_back(c.clone());
    }
    ep.receivers.wake_one();
    if c.wq.wait_until(|| c.reply.lock().is_some()).is_err() {
        // Killed: a call nobody took yet leaves the queue (it would sit
        // there until the endpoint closes); one a receiver holds is
        // dropped when it replies or exits.
        let mut q = ep.queue.lock();
        q.retain(|x| !Arc::ptr_eq(x, &c));
        super::wait::shrink_if_empty(&mut q);
        return Err(SysError::Intr);
    }
    let r = c.reply.lock().take();
    r.unwrap_or(Err(SysError::Pipe))
}

/// Takes the next call; returns its reply token and message. EAGAIN while
/// this process holds `abi::limits::MAX_PENDING_CALLS` calls it has not
/// replied to.
pub fn recv(me: &Process, id: u64) -> Result<(u64, Msg), SysError> {
    let ep = lookup(id)?;
    if me.pending_calls.lock().len() >= abi::limits::MAX_PENDING_CALLS {
        return Err(SysError::Again);
    }
    let waited = ep.receivers.wait_for(|| {
        if ep.closed.load(Ordering::Acquire) {
            return Some(None);
        }
        let mut q = ep.queue.lock();
        let c = q.pop_front()?;
        super::wait::shrink_if_empty(&mut q);
        Some(Some(c))
    });
    let Ok(got) = waited else {
        // Killed while waiting. A caller's `wake_one` may have picked us
        // (we left the queue, but will not take its call): pass the wake-up
        // on to the next receiver, or the call waits for the one after it.
        if !ep.queue.lock().is_empty() {
            ep.receivers.wake_one();
        }
        return Err(SysError::Intr);
    };
    let Some(c) = got else { return Err(SysError::Pipe) };
    let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
    let msg = c.msg;
    me.pending_calls.lock().insert(token, c);
    Ok((token, msg))
}

pub fn reply(me: &Process, token: u64, msg: Msg) -> Result<(), SysError> {
    let c = me.pending_calls.lock().remove(&token).ok_or(SysError::NoEnt)?;
    c.complete(Ok(msg));
    Ok(())
}

/// A process ended: fail the calls it held and close its endpoints.
pub fn process_exited(p: &Process) {
    let pending = core::mem::take(&mut *p.pending_calls.lock());
    for c in pending.values() {
        c.complete(Err(SysError::Pipe));
    }
    let mine: alloc::vec::Vec<Arc<Endpoint>> = {
        let mut eps = ENDPOINTS.lock();
        let ids: alloc::vec::Vec<u64> = eps.iter().filter(|(_, e)| e.owner == p.pid).map(|(k, _)| *k).collect();
        let mine = ids.iter().filter_map(|k| eps.remove(k)).collect();
        if eps.is_empty() {
            *eps = BTreeMap::new(); // no node kept: see `process::reap`
        }
        mine
    };
    p.endpoints.store(0, Ordering::Release);
    for ep in mine {
        let queued = {
            let mut q = ep.queue.lock();
            ep.closed.store(true, Ordering::Release);
            core::mem::take(&mut *q)
        };
        for c in queued {
            c.complete(Err(SysError::Pipe));
        }
        ep.receivers.wake_all();
    }
}
