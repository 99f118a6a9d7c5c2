//! The IPC test protocol: the client sends `request(i)` for i = 0..n, the
//! server answers each with `reply_to(msg)`, and `STOP` in word 0 ends the
//! server (after it has replied to it).

use core::fmt;

use ulib::sys::Msg;
use ulib::{sys, Errno};

/// Word 0 of the message that ends the server.
pub const STOP: u64 = u64::MAX;
/// Calls the client makes.
pub const CALLS: u64 = 10_000;

/// The i-th request.
pub fn request(i: u64) -> Msg {
    [i, i.wrapping_mul(3), i ^ 0x5a5a, !i]
}

/// The server's answer to `msg`.
pub fn reply_to(msg: Msg) -> Msg {
    [msg[0].wrapping_add(1), msg[1], msg[2] ^ 0xffff, msg[3]]
}

/// How the protocol went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpcError {
    Recv(Errno),
    Reply(Errno),
    /// Call number `i` failed.
    Call(u64, Errno),
    /// The reply to call `i` was not the answer to request `i` (lost,
    /// reordered or corrupted).
    Mismatch {
        i: u64,
        expected: Msg,
        seen: Msg,
    },
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpcError::Recv(e) => write!(f, "ep_recv failed: {e}"),
            IpcError::Reply(e) => write!(f, "ep_reply failed: {e}"),
            IpcError::Call(i, e) => write!(f, "ep_call #{i} failed: {e}"),
            IpcError::Mismatch { i, expected, seen } => {
                write!(f, "reply #{i}: expected {expected:#x?}, saw {seen:#x?}")
            }
        }
    }
}

/// Answers calls on `ep` until `STOP`; returns how many requests (not
/// counting `STOP`) it answered.
pub fn serve(ep: u64) -> Result<u64, IpcError> {
    let mut served = 0;
    loop {
        let (token, msg) = sys::ep_recv(ep).map_err(IpcError::Recv)?;
        sys::ep_reply(token, reply_to(msg)).map_err(IpcError::Reply)?;
        if msg[0] == STOP {
            return Ok(served);
        }
        served += 1;
    }
}

/// Makes call `i` on `ep` and checks its reply.
pub fn call(ep: u64, i: u64) -> Result<(), IpcError> {
    let msg = request(i);
    let seen = sys::ep_call(ep, msg).map_err(|e| IpcError::Call(i, e))?;
    let expected = reply_to(msg);
    if seen != expected {
        return Err(IpcError::Mismatch { i, expected, seen });
    }
    Ok(())
}

/// Makes calls 0..n on `ep`, checking every reply, then stops the server.
pub fn client(ep: u64, n: u64) -> Result<(), IpcError> {
    for i in 0..n {
        call(ep, i)?;
    }
    call(ep, STOP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_differ_from_requests_in_every_changed_word() {
        let m = request(7);
        let r = reply_to(m);
        assert_eq!(r, [8, 21, 7 ^ 0x5a5a ^ 0xffff, !7]);
        assert_eq!(reply_to(request(STOP))[0], 0);
    }
}
