//! Why a system call failed, above mm: the errno values the task layer
//! returns, as a type (as Tock's `ErrorCode`), turned into `-errno` only at
//! the system-call boundary (`syscall::dispatch`). The mm layer's own
//! errors ([`MmError`]) convert with `?`.
#![forbid(unsafe_code)]

use abi::errno;

use crate::mm::aspace::MmError;

/// A system call's error: one variant per errno it can return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysError {
    /// EPERM: not allowed (another process's thread, say).
    Perm,
    /// ENOENT: no such program, endpoint or pending call.
    NoEnt,
    /// ESRCH: no such process, thread or job.
    Srch,
    /// EINTR: the caller was killed while it waited.
    Intr,
    /// ECHILD: no child to wait for.
    Child,
    /// EAGAIN: try again (a resource is busy or exhausted for now).
    Again,
    /// ENOMEM: out of memory, or a limit on mappings or heap.
    NoMem,
    /// EFAULT: a user buffer is not mapped with the needed permission.
    Fault,
    /// EBUSY: in use (a device already bound, say).
    Busy,
    /// EEXIST: already there.
    Exist,
    /// EINVAL: a bad argument.
    Inval,
    /// EPIPE: the other end is gone.
    Pipe,
    /// EDEADLK: waiting would never end (a call to one's own endpoint).
    Deadlk,
    /// ENOSYS: no such system call.
    NoSys,
    /// ETIMEDOUT: the wait's time ran out.
    TimedOut,
}

impl SysError {
    /// What the system call returns: the negated errno.
    pub const fn errno(self) -> i64 {
        -match self {
            Self::Perm => errno::EPERM,
            Self::NoEnt => errno::ENOENT,
            Self::Srch => errno::ESRCH,
            Self::Intr => errno::EINTR,
            Self::Child => errno::ECHILD,
            Self::Again => errno::EAGAIN,
            Self::NoMem => errno::ENOMEM,
            Self::Fault => errno::EFAULT,
            Self::Busy => errno::EBUSY,
            Self::Exist => errno::EEXIST,
            Self::Inval => errno::EINVAL,
            Self::Pipe => errno::EPIPE,
            Self::Deadlk => errno::EDEADLK,
            Self::NoSys => errno::ENOSYS,
            Self::TimedOut => errno::ETIMEDOUT,
        }
    }

    /// The error a negated errno names (results stored as words by jobs and
    /// devices); EINVAL for a value no variant has.
    pub const fn from_errno(e: i64) -> Self {
        match -e {
            errno::EPERM => Self::Perm,
            errno::ENOENT => Self::NoEnt,
            errno::ESRCH => Self::Srch,
            errno::EINTR => Self::Intr,
            errno::ECHILD => Self::Child,
            errno::EAGAIN => Self::Again,
            errno::ENOMEM => Self::NoMem,
            errno::EFAULT => Self::Fault,
            errno::EBUSY => Self::Busy,
            errno::EEXIST => Self::Exist,
            errno::EPIPE => Self::Pipe,
            errno::EDEADLK => Self::Deadlk,
            errno::ENOSYS => Self::NoSys,
            errno::ETIMEDOUT => Self::TimedOut,
            _ => Self::Inval,
        }
    }

    /// The caller passed something wrong (counted in `BAD_SYSCALLS`), as
    /// opposed to a resource state such as EAGAIN or ETIMEDOUT.
    pub const fn is_bad_argument(self) -> bool {
        matches!(
            self,
            Self::Inval | Self::Fault | Self::NoSys | Self::NoEnt | Self::Srch | Self::Child | Self::Perm | Self::Busy
        )
    }
}

impl core::fmt::Display for SysError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let e = -self.errno();
        write!(f, "{} ({e})", errno::name(e).unwrap_or("errno"))
    }
}

impl From<MmError> for SysError {
    fn from(e: MmError) -> Self {
        Self::from_errno(e.errno())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_round_trips_through_its_errno() {
        use SysError::*;
        for e in
            [Perm, NoEnt, Srch, Intr, Child, Again, NoMem, Fault, Busy, Exist, Inval, Pipe, Deadlk, NoSys, TimedOut]
        {
            assert!(e.errno() < 0, "{e:?}");
            assert_eq!(SysError::from_errno(e.errno()), e);
        }
        assert_eq!(SysError::from(MmError::ZeroLength), Inval);
        assert_eq!(SysError::from(MmError::OutOfMemory), NoMem);
        assert_eq!(SysError::from(MmError::BadUserAddress { addr: 0 }), Fault);
    }
}
