//! [`Errno`]: a failed system call's error number.

use core::fmt::{self, Write};

use abi::errno as e;

/// The error number of a failed system call (positive, as in `abi::errno`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i64);

impl Errno {
    pub const EPERM: Errno = Errno(e::EPERM);
    pub const ENOENT: Errno = Errno(e::ENOENT);
    pub const ESRCH: Errno = Errno(e::ESRCH);
    pub const EINTR: Errno = Errno(e::EINTR);
    pub const ECHILD: Errno = Errno(e::ECHILD);
    pub const EAGAIN: Errno = Errno(e::EAGAIN);
    pub const ENOMEM: Errno = Errno(e::ENOMEM);
    pub const EFAULT: Errno = Errno(e::EFAULT);
    pub const EBUSY: Errno = Errno(e::EBUSY);
    pub const EEXIST: Errno = Errno(e::EEXIST);
    pub const EINVAL: Errno = Errno(e::EINVAL);
    pub const EPIPE: Errno = Errno(e::EPIPE);
    pub const EDEADLK: Errno = Errno(e::EDEADLK);
    pub const ENOSYS: Errno = Errno(e::ENOSYS);
    pub const ETIMEDOUT: Errno = Errno(e::ETIMEDOUT);

    /// Decodes a raw x0: negative is `-errno`, anything else is the value.
    pub fn result(ret: u64) -> Result<u64, Errno> {
        match ret as i64 {
            v if v < 0 => Err(Errno(v.wrapping_neg())),
            _ => Ok(ret),
        }
    }

    /// The symbolic name, if the number is one `abi::errno` defines.
    pub fn name(self) -> Option<&'static str> {
        e::name(self.0)
    }
}

impl fmt::Display for Errno {
    /// `EINVAL (22)`, or `errno 99` for numbers without a name; width and
    /// alignment (`{:<14}`) apply to the whole text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = SmallBuf { buf: [0; 32], len: 0 };
        match self.name() {
            Some(name) => write!(text, "{name} ({})", self.0)?,
            None => write!(text, "errno {}", self.0)?,
        }
        f.pad(core::str::from_utf8(&text.buf[..text.len]).map_err(|_| fmt::Error)?)
    }
}

/// Enough for "errno -9223372036854775808".
struct SmallBuf {
    buf: [u8; 32],
    len: usize,
}

impl fmt::Write for SmallBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.buf.get_mut(self.len..end).ok_or(fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_is_error_everything_else_a_value() {
        assert_eq!(Errno::result(0), Ok(0));
        assert_eq!(Errno::result(0x10_0000_0000), Ok(0x10_0000_0000));
        assert_eq!(Errno::result(-22i64 as u64), Err(Errno::EINVAL));
        assert_eq!(Errno::result(u64::MAX), Err(Errno::EPERM));
    }

    #[test]
    fn display_names_known_numbers() {
        assert_eq!(Errno::EFAULT.to_string(), "EFAULT (14)");
        assert_eq!(Errno(99).to_string(), "errno 99");
        assert_eq!(format!("[{:<13}]", Errno::EINVAL), "[EINVAL (22)  ]");
        assert_eq!(Errno(i64::MIN).to_string(), "errno -9223372036854775808");
    }
}
