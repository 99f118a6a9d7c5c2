//! What the range policy is given: the CPU's TLB maintenance features and
//! the tunable thresholds, with their command-line parsing (`tlb.*`).
#![forbid(unsafe_code)]

use core::fmt;

use super::super::range::MAX_RANGE_PAGES;
use super::FlushPlan;

/// The TLB maintenance features the policy may use (FEAT_TLBIRANGE and
/// FEAT_TTL): the part of `arch`'s CPU features it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TlbFeatures {
    /// FEAT_TLBIRANGE: `RVAE1IS` and friends.
    pub tlbi_range: bool,
    /// FEAT_TTL: the level hint in single-page and range operands.
    pub ttl: bool,
}

impl TlbFeatures {
    /// Neither feature (QEMU `-cpu cortex-a72`).
    pub const NONE: Self = Self { tlbi_range: false, ttl: false };
    /// Both features (QEMU `-cpu max`).
    pub const RANGE_AND_TTL: Self = Self { tlbi_range: true, ttl: true };

    /// From ID_AA64ISAR0_EL1 (TLB, bits [59:56]: 0b0010 = outer-shareable
    /// and range ops) and ID_AA64MMFR2_EL1 (TTL, bits [51:48]: 0b0001).
    pub const fn from_id_regs(isar0: u64, mmfr2: u64) -> Self {
        Self { tlbi_range: (isar0 >> 56) & 0xf >= 0b0010, ttl: (mmfr2 >> 48) & 0xf >= 0b0001 }
    }
}

/// With range ops in use: a single page is one op either way (a range op
/// covers an even number of pages), and two or more pages need no more range
/// ops than single-page ops. This is Linux's choice too. `scripts/bench.sh`
/// measures whether cores that handle range ops slowly want more.
pub const PER_PAGE_MAX_WITH_RANGE: u32 = 1;
/// Without range ops: beyond this many entries one `ASIDE1IS` (and the
/// refills it causes) is assumed cheaper than that many broadcast
/// single-page ops. A starting point, not a measurement: it fits the plan
/// capacity (Linux's 512 is a lock-up bound) and sits near x86 Linux's
/// measured single-page ceiling of 33; `scripts/bench.sh` measures the
/// crossover.
pub const PER_PAGE_MAX_NO_RANGE: u32 = 32;
/// Range flushes of this many pages or more use `ASIDE1IS` instead. Linux's
/// `MAX_TLBI_RANGE_PAGES` (2^21 pages, 8 GiB): below it the split needs at
/// most 5 ops. Not a correctness limit here (the encoder handles any length);
/// `scripts/bench.sh` measures where losing the ASID's other entries starts
/// to pay.
pub const ASID_THRESHOLD: u32 = MAX_RANGE_PAGES as u32;

/// Tunables of [`RangePolicy`], settable on the kernel command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyParams {
    /// Flushes of at most this many entries use one op per entry
    /// (`tlb.per_page_max`, at most [`FlushPlan::CAPACITY`]). `None` = auto:
    /// [`PER_PAGE_MAX_WITH_RANGE`] when range ops are in use, else
    /// [`PER_PAGE_MAX_NO_RANGE`]. Auto because the right value depends on
    /// whether range ops are available *and* enabled, known only after both
    /// feature detection and command-line parsing.
    pub per_page_max: Option<u32>,
    /// Range flushes of this many 4 KiB pages or more flush the whole ASID
    /// (`tlb.asid_threshold`; default [`ASID_THRESHOLD`]).
    pub asid_threshold: u32,
    /// Use range ops when the CPU has them (`tlb.range`, default on; off to
    /// measure or to work around a core).
    pub use_range: bool,
    /// Use the TTL hint when the CPU has it (`tlb.ttl`, default on).
    pub use_ttl: bool,
}

/// Whether [`PolicyParams::apply`] consumed an option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    Applied,
    /// Not a policy key: the command-line parser reports unknown keys.
    NotMine,
}

/// A bad value for one of the policy's command-line options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyParamError<'a> {
    pub option: &'static str,
    /// The value as given (empty when missing).
    pub value: &'a str,
    pub expected: &'static str,
}

impl fmt::Display for PolicyParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { option, value, expected } = self;
        write!(f, "bad value '{value}' for kernel option '{option}': expected {expected}")
    }
}

impl PolicyParams {
    pub const DEFAULT: Self =
        Self { per_page_max: None, asid_threshold: ASID_THRESHOLD, use_range: true, use_ttl: true };

    /// The command-line keys [`Self::apply`] accepts.
    pub const KEYS: [&'static str; 4] = ["tlb.per_page_max", "tlb.asid_threshold", "tlb.range", "tlb.ttl"];

    /// `per_page_max` with auto resolved.
    pub const fn per_page_max_for(&self, range_in_use: bool) -> u32 {
        match self.per_page_max {
            Some(n) => n,
            None if range_in_use => PER_PAGE_MAX_WITH_RANGE,
            None => PER_PAGE_MAX_NO_RANGE,
        }
    }

    /// Applies one `key[=value]` option. Values: `tlb.per_page_max=N|auto`
    /// (N <= 64), `tlb.asid_threshold=N` (decimal u32), `tlb.range` and
    /// `tlb.ttl` = on|off (also 1/0, yes/no, true/false; a bare key means
    /// on, as elsewhere on the command line). On error nothing changes.
    pub fn apply<'a>(&mut self, key: &str, value: Option<&'a str>) -> Result<Claim, PolicyParamError<'a>> {
        let v = value.unwrap_or("");
        let bad = |option, expected| PolicyParamError { option, value: v, expected };
        let flag = |option| match value {
            None | Some("on" | "1" | "yes" | "true") => Ok(true),
            Some("off" | "0" | "no" | "false") => Ok(false),
            Some(_) => Err(bad(option, "on or off")),
        };
        match key {
            "tlb.per_page_max" => {
                const EXPECTED: &str = "auto or an integer from 0 to 64 (the plan capacity)";
                self.per_page_max = match v {
                    "auto" => None,
                    _ => match parse_u32(v) {
                        Some(n) if n as usize <= FlushPlan::CAPACITY => Some(n),
                        _ => return Err(bad("tlb.per_page_max", EXPECTED)),
                    },
                };
            }
            "tlb.asid_threshold" => {
                self.asid_threshold =
                    parse_u32(v).ok_or(bad("tlb.asid_threshold", "a number of pages from 0 to 4294967295"))?;
            }
            "tlb.range" => self.use_range = flag("tlb.range")?,
            "tlb.ttl" => self.use_ttl = flag("tlb.ttl")?,
            _ => return Ok(Claim::NotMine),
        }
        Ok(Claim::Applied)
    }
}

impl Default for PolicyParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Decimal digits only (no sign, no spaces), no overflow.
fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}
