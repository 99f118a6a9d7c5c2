//! Typed errors of the address-space calls and of the fault handler, with
//! the errno / kill cause the kernel reports for each.
#![forbid(unsafe_code)]

use core::fmt;

use abi::{cause, errno};

/// Why mmap, munmap, mprotect, madvise, fork or a user-range check failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MmError {
    /// Length 0 (EINVAL; Linux accepts 0 for mprotect and madvise).
    ZeroLength,
    /// Address not page-aligned (EINVAL).
    Unaligned { addr: u64 },
    /// `addr + len` overflows or ends above user space (EINVAL; Linux says
    /// ENOMEM for mprotect there, EINVAL for munmap).
    BadRange { addr: u64, len: u64 },
    /// Unknown protection bits (EINVAL).
    BadProt(u64),
    /// Unknown mmap flags (EINVAL).
    BadFlags(u64),
    /// Unknown madvise advice (EINVAL).
    BadAdvice(u64),
    /// `MAP_FIXED` at address 0 (EINVAL).
    FixedAtZero,
    /// No free range of `len` bytes for a non-fixed mmap (ENOMEM).
    NoSpace { len: u64 },
    /// mprotect or madvise over a range with an unmapped page at `addr`
    /// (ENOMEM, as Linux; nothing was changed).
    NotMapped { addr: u64 },
    /// Out of frames for page tables (ENOMEM).
    OutOfMemory,
    /// The change would leave more than `abi::limits::MAX_MAPPINGS`
    /// mappings (ENOMEM, as Linux past `vm.max_map_count`; nothing changed).
    TooManyMappings,
    /// A user buffer the kernel was asked to access is not entirely mapped
    /// with the needed permission; `addr` is the first bad address (EFAULT).
    BadUserAddress { addr: u64 },
}

impl MmError {
    /// What the system call returns: the *negated* errno (`-EINVAL`), as in
    /// `Err(-EINVAL)` elsewhere in the kernel.
    pub const fn errno(&self) -> i64 {
        -match self {
            Self::ZeroLength
            | Self::Unaligned { .. }
            | Self::BadRange { .. }
            | Self::BadProt(_)
            | Self::BadFlags(_)
            | Self::BadAdvice(_)
            | Self::FixedAtZero => errno::EINVAL,
            Self::NoSpace { .. } | Self::NotMapped { .. } | Self::OutOfMemory | Self::TooManyMappings => errno::ENOMEM,
            Self::BadUserAddress { .. } => errno::EFAULT,
        }
    }
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ZeroLength => write!(f, "zero length"),
            Self::Unaligned { addr } => write!(f, "address {addr:#x} is not page-aligned"),
            Self::BadRange { addr, len } => {
                write!(f, "range {addr:#x} + {len:#x} leaves user space")
            }
            Self::BadProt(p) => write!(f, "unknown protection bits in {p:#x}"),
            Self::BadFlags(x) => write!(f, "unknown mmap flags in {x:#x}"),
            Self::BadAdvice(a) => write!(f, "unknown madvise advice {a}"),
            Self::FixedAtZero => write!(f, "MAP_FIXED at address 0"),
            Self::NoSpace { len } => write!(f, "no free range of {len:#x} bytes"),
            Self::NotMapped { addr } => write!(f, "{addr:#x} is not mapped"),
            Self::OutOfMemory => write!(f, "out of memory"),
            Self::TooManyMappings => {
                write!(f, "more than {} mappings", abi::limits::MAX_MAPPINGS)
            }
            Self::BadUserAddress { addr } => write!(f, "bad user address {addr:#x}"),
        }
    }
}

/// Why a page fault could not be resolved: the kernel kills the process
/// with [`FaultError::cause`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultError {
    /// No VMA covers the address.
    Unmapped,
    /// The VMA does not allow the access.
    Protection,
    /// The address is not in the user half.
    KernelAddress,
    /// No frame for the page or for a page table.
    OutOfMemory,
    /// The page is on its way to swap (its reclaim batch has not finished
    /// writing it): retry the access.
    SwapBusy,
}

impl FaultError {
    /// The `abi::cause` code (the exit status is `KILLED_BASE + cause`).
    pub const fn cause(&self) -> i64 {
        match self {
            Self::Unmapped => cause::UNMAPPED,
            Self::Protection => cause::PROTECTION,
            Self::KernelAddress => cause::KERNEL_ADDRESS,
            Self::OutOfMemory | Self::SwapBusy => cause::OUT_OF_MEMORY,
        }
    }
}

impl fmt::Display for FaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unmapped => "no mapping at the address",
            Self::Protection => "access not allowed by the mapping",
            Self::KernelAddress => "kernel address",
            Self::OutOfMemory => "out of memory",
            Self::SwapBusy => "page on its way to swap",
        })
    }
}
