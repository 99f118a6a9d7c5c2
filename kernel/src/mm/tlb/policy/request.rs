//! What a zap asks to have flushed: [`FlushRequest`], and why one can be
//! malformed.
#![forbid(unsafe_code)]

use core::fmt;

use super::super::range::PAGE_SIZE;

/// First VA above the user half: 48-bit VAs with the 4 KiB granule (TTBR0).
pub const USER_VA_END: u64 = 1 << 48;

/// What a zap cleared and now needs flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlushRequest {
    /// Hardware ASID of the address space (generation already stripped).
    pub asid: u16,
    /// First VA of the range; a multiple of `stride`.
    pub start: u64,
    /// First VA after the range; a multiple of `stride`, at most
    /// [`USER_VA_END`]. `start == end` means nothing to flush (empty plan).
    pub end: u64,
    /// Size of the entries that were cleared: 4 KiB pages, or 2 MiB blocks
    /// when only blocks were. A power of two, at least 4 KiB. Per-entry
    /// flushes issue one op per `stride` bytes.
    pub stride: u64,
    /// Page-table pages were freed (or table entries changed). Cached
    /// upper-level entries may then point into freed memory, so the plan
    /// uses the non-leaf forms and no TTL hint. The range must include at
    /// least one VA under each freed table.
    pub tables_freed: bool,
    /// Translation level (1..=3) of *every* leaf entry that was cleared, for
    /// the FEAT_TTL hint; `None` when mixed or unknown. A wrong level makes
    /// the hint skip entries, so pass `None` if in doubt.
    pub leaf_level: Option<u8>,
}

impl FlushRequest {
    /// 4 KiB pages at level 3 in `[start, end)`, no tables freed.
    pub const fn leaf_pages(asid: u16, start: u64, end: u64) -> Self {
        Self { asid, start, end, stride: PAGE_SIZE, tables_freed: false, leaf_level: Some(3) }
    }

    /// Number of `stride`-sized entries (valid requests only).
    pub const fn entries(&self) -> u64 {
        (self.end - self.start) / self.stride
    }

    /// Number of 4 KiB pages (valid requests only).
    pub const fn pages(&self) -> u64 {
        (self.end - self.start) / PAGE_SIZE
    }

    pub fn validate(&self) -> Result<(), FlushRequestError> {
        let (start, end, stride) = (self.start, self.end, self.stride);
        if stride < PAGE_SIZE || !stride.is_power_of_two() {
            return Err(FlushRequestError::BadStride(stride));
        }
        if start > end {
            return Err(FlushRequestError::Inverted { start, end });
        }
        if start % stride != 0 || end % stride != 0 {
            return Err(FlushRequestError::Unaligned { start, end, stride });
        }
        if end > USER_VA_END {
            return Err(FlushRequestError::BeyondUserSpace { end });
        }
        match self.leaf_level {
            Some(l) if !(1..=3).contains(&l) => Err(FlushRequestError::BadLeafLevel(l)),
            _ => Ok(()),
        }
    }
}

/// A malformed [`FlushRequest`]: a caller bug, never silently ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushRequestError {
    /// `start > end`.
    Inverted { start: u64, end: u64 },
    /// `start` or `end` not a multiple of `stride`.
    Unaligned { start: u64, end: u64, stride: u64 },
    /// `stride` not a power of two of at least 4 KiB.
    BadStride(u64),
    /// `leaf_level` outside 1..=3.
    BadLeafLevel(u8),
    /// `end` above [`USER_VA_END`].
    BeyondUserSpace { end: u64 },
}

impl fmt::Display for FlushRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Inverted { start, end } => {
                write!(f, "flush range {start:#x}..{end:#x} is inverted")
            }
            Self::Unaligned { start, end, stride } => {
                write!(f, "flush range {start:#x}..{end:#x} is not aligned to stride {stride:#x}")
            }
            Self::BadStride(s) => write!(f, "flush stride {s:#x} is not a power of two >= 4 KiB"),
            Self::BadLeafLevel(l) => write!(f, "leaf level {l} is not 1..=3"),
            Self::BeyondUserSpace { end } => {
                write!(f, "flush range end {end:#x} is above user space ({USER_VA_END:#x})")
            }
        }
    }
}
