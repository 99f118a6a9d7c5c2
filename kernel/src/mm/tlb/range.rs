//! FEAT_TLBIRANGE operand encoding, and the split of a page range into the
//! fewest TLBI operations.
//!
//! # The mechanism
//!
//! Without FEAT_TLBIRANGE, invalidating N pages takes N `TLBI VAE1IS`
//! instructions, each a separate broadcast message. ARMv8.4 added
//! `TLBI RVAE1IS` / `RVALE1IS`, which name a whole range in one register:
//!
//! ```text
//!  63      48 47 46 45  44 43   39 38 37 36                0
//! |   ASID   | TG  |SCALE |  NUM  | TTL |     BaseADDR      |
//! ```
//!
//! With the 4 KiB granule (TG = 0b01) the range starts at page `BaseADDR`
//! (= VA >> 12; any page, no alignment) and spans
//! `(NUM + 1) * 2^(5 * SCALE + 1)` pages: NUM is a 5-bit multiplier (1..=32
//! once the +1 is added) and SCALE a 2-bit exponent of 32, always times two
//! pages. So one op covers 2..=64 pages in steps of 2, or 64..=2048 in steps
//! of 64, 2048..=65536 in steps of 2048, or 65536..=2^21 in steps of 65536.
//! Every range is an even number of pages; an odd count needs one
//! single-page op. The TTL field is a level hint (0b00 none, else the
//! level 1..=3 of the leaf entries).
//!
//! The single-page form (`VAE1IS`, `VALE1IS`) is `ASID[63:48]`,
//! `TTL[47:44]` (FEAT_TTL: 0b0000 no hint; 0b01LL = 4 KiB granule, leaf at
//! level LL), `VA[55:12]` in bits `[43:0]`.
//!
//! # The split
//!
//! [`split`] walks a range from its start: an odd count first takes one
//! single-page op; then, reading the number of page *pairs* in base 32, each
//! non-zero digit of scales 0, 1, 2 becomes one op, lowest first; the rest is
//! a multiple of `32^3` pairs and goes out in scale-3 ops of at most
//! [`MAX_RANGE_PAGES`]. The ops are disjoint and in address order: every
//! requested page is invalidated once, no other page at all.
//!
//! Why this is the fewest disjoint ops, and the Linux range bug this
//! encoding avoids: `docs/tlbi-range.md`.
#![forbid(unsafe_code)]

use core::fmt;

use super::op::TlbiOp;
use tock_registers::LocalRegisterCopy;

/// The translation granule this encoder targets (4 KiB).
pub use crate::mm::pte::{PAGE_SHIFT, PAGE_SIZE};
/// Largest NUM field value (5 bits).
pub const MAX_NUM: u8 = 31;
/// Largest SCALE field value (2 bits).
pub const MAX_SCALE: u8 = 3;
/// Pages covered by the largest single range op: 32 * 2^16 = 2,097,152 (8 GiB).
pub const MAX_RANGE_PAGES: u64 = range_pages(MAX_NUM, MAX_SCALE);
/// First VA a range operand cannot name: BaseADDR holds 37 bits of page number.
pub const RANGE_VA_LIMIT: u64 = 1 << (37 + PAGE_SHIFT);
/// First VA a single-page operand cannot name: VA[55:12] in 44 bits.
pub const VA_OPERAND_LIMIT: u64 = 1 << (44 + PAGE_SHIFT);

/// TG field value for the 4 KiB granule.
const TG_4K: u64 = 0b01;

tock_registers::register_bitfields![u64,
    /// The register operand of `TLBI VAE1[IS]` / `VALE1[IS]` (Arm ARM,
    /// "TLBI VAE1, TLBI VAE1NXS"): the ASID, the FEAT_TTL hint (TTL[3:2]
    /// the granule, TTL[1:0] the level; 0 for no hint) and VA[55:12].
    pub VA_OPERAND [
        ADDR OFFSET(0) NUMBITS(44) [],
        TTL OFFSET(44) NUMBITS(4) [],
        ASID OFFSET(48) NUMBITS(16) []
    ],
    /// The register operand of `TLBI RVAE1[IS]` / `RVALE1[IS]`
    /// (FEAT_TLBIRANGE): the ASID, the granule, SCALE and NUM (the range is
    /// `(NUM + 1) * 2^(5 * SCALE + 1)` pages), the level hint, and the base
    /// address's page number.
    pub RANGE_OPERAND [
        BADDR OFFSET(0) NUMBITS(37) [],
        TTL OFFSET(37) NUMBITS(2) [],
        NUM OFFSET(39) NUMBITS(5) [],
        SCALE OFFSET(44) NUMBITS(2) [],
        TG OFFSET(46) NUMBITS(2) [],
        ASID OFFSET(48) NUMBITS(16) []
    ]
];

/// Pages covered by a range op with these fields.
pub const fn range_pages(num: u8, scale: u8) -> u64 {
    ((num as u64) + 1) << (5 * scale as u32 + 1)
}

/// A value that cannot be encoded, or a register value that does not decode
/// to an operand this kernel issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperandError {
    /// An address that is not 4 KiB aligned.
    Unaligned { addr: u64 },
    /// An address (or range end) beyond what the operand can name.
    AddressTooHigh { addr: u64, limit: u64 },
    /// NUM above 31.
    BadNum(u8),
    /// SCALE above 3.
    BadScale(u8),
    /// A TTL level hint outside 1..=3.
    BadTtl(u8),
    /// A range operand whose TG field is not the 4 KiB granule.
    BadGranule(u8),
    /// A single-page operand whose TTL field is reserved or not for 4 KiB.
    BadTtlField(u8),
    /// `TLBI VMALLE1[IS]` takes no operand.
    NoOperand,
}

impl fmt::Display for OperandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Unaligned { addr } => write!(f, "address {addr:#x} is not 4 KiB aligned"),
            Self::AddressTooHigh { addr, limit } => {
                write!(f, "address {addr:#x} is beyond the operand limit {limit:#x}")
            }
            Self::BadNum(n) => write!(f, "NUM {n} out of range 0..=31"),
            Self::BadScale(s) => write!(f, "SCALE {s} out of range 0..=3"),
            Self::BadTtl(l) => write!(f, "TTL level {l} out of range 1..=3"),
            Self::BadGranule(tg) => write!(f, "TG {tg:#04b} is not the 4 KiB granule"),
            Self::BadTtlField(t) => write!(f, "TTL field {t:#06b} is not a 4 KiB level 1..=3 hint"),
            Self::NoOperand => f.write_str("this TLBI takes no operand"),
        }
    }
}

fn check_ttl(ttl: Option<u8>) -> Result<u64, OperandError> {
    match ttl {
        None => Ok(0),
        Some(l @ 1..=3) => Ok(l as u64),
        Some(l) => Err(OperandError::BadTtl(l)),
    }
}

/// The register operand of `TLBI VAE1[IS]` / `VALE1[IS]`.
pub fn encode_va(asid: u16, va: u64, ttl: Option<u8>) -> Result<u64, OperandError> {
    if va & (PAGE_SIZE - 1) != 0 {
        return Err(OperandError::Unaligned { addr: va });
    }
    if va >= VA_OPERAND_LIMIT {
        return Err(OperandError::AddressTooHigh { addr: va, limit: VA_OPERAND_LIMIT });
    }
    let level = check_ttl(ttl)?;
    // 0b01LL: 4 KiB granule, leaf at level LL; 0b0000: no hint.
    let ttl_field = if level == 0 { 0 } else { (0b01 << 2) | level };
    let v = VA_OPERAND::ASID.val(asid as u64) + VA_OPERAND::TTL.val(ttl_field) + VA_OPERAND::ADDR.val(va >> PAGE_SHIFT);
    Ok(v.value)
}

/// The register operand of `TLBI RVAE1[IS]` / `RVALE1[IS]` (4 KiB granule).
/// Covers `base .. base + range_pages(num, scale) * 4 KiB`, which must stay
/// below [`RANGE_VA_LIMIT`].
pub fn encode_range(asid: u16, base: u64, num: u8, scale: u8, ttl: Option<u8>) -> Result<u64, OperandError> {
    if num > MAX_NUM {
        return Err(OperandError::BadNum(num));
    }
    if scale > MAX_SCALE {
        return Err(OperandError::BadScale(scale));
    }
    if base & (PAGE_SIZE - 1) != 0 {
        return Err(OperandError::Unaligned { addr: base });
    }
    let end = base.saturating_add(range_pages(num, scale) << PAGE_SHIFT);
    if end > RANGE_VA_LIMIT {
        return Err(OperandError::AddressTooHigh { addr: end, limit: RANGE_VA_LIMIT });
    }
    let level = check_ttl(ttl)?;
    let v = RANGE_OPERAND::ASID.val(asid as u64)
        + RANGE_OPERAND::TG.val(TG_4K)
        + RANGE_OPERAND::SCALE.val(scale as u64)
        + RANGE_OPERAND::NUM.val(num as u64)
        + RANGE_OPERAND::TTL.val(level)
        + RANGE_OPERAND::BADDR.val(base >> PAGE_SHIFT);
    Ok(v.value)
}

/// The register operand of `TLBI ASIDE1[IS]`: the ASID in bits [63:48]
/// (where the other operands have theirs).
pub fn encode_asid(asid: u16) -> u64 {
    VA_OPERAND::ASID.val(asid as u64).value
}

/// The register operand for `op`, or [`OperandError::NoOperand`] for
/// [`TlbiOp::All`].
pub fn encode(op: &TlbiOp) -> Result<u64, OperandError> {
    match *op {
        TlbiOp::Va { asid, va, ttl, .. } => encode_va(asid, va, ttl),
        TlbiOp::Range { asid, base, num, scale, ttl, .. } => encode_range(asid, base, num, scale, ttl),
        TlbiOp::Asid { asid } => Ok(encode_asid(asid)),
        TlbiOp::All => Err(OperandError::NoOperand),
    }
}

/// A decoded single-page operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VaOperand {
    pub asid: u16,
    pub va: u64,
    pub ttl: Option<u8>,
}

impl VaOperand {
    /// The op this operand belongs to, given the instruction's leaf-only bit.
    pub const fn to_op(self, last_level: bool) -> TlbiOp {
        TlbiOp::Va { asid: self.asid, va: self.va, last_level, ttl: self.ttl }
    }
}

/// A decoded range operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeOperand {
    pub asid: u16,
    pub base: u64,
    pub num: u8,
    pub scale: u8,
    pub ttl: Option<u8>,
}

impl RangeOperand {
    pub const fn pages(&self) -> u64 {
        range_pages(self.num, self.scale)
    }
    /// First VA after the range.
    pub const fn end(&self) -> u64 {
        self.base + (self.pages() << PAGE_SHIFT)
    }
    /// The op this operand belongs to, given the instruction's leaf-only bit.
    pub const fn to_op(self, last_level: bool) -> TlbiOp {
        TlbiOp::Range { asid: self.asid, base: self.base, num: self.num, scale: self.scale, last_level, ttl: self.ttl }
    }
}

/// Decodes a `VAE1` / `VALE1` operand produced for the 4 KiB granule.
pub fn decode_va(xt: u64) -> Result<VaOperand, OperandError> {
    let r = LocalRegisterCopy::<u64, VA_OPERAND::Register>::new(xt);
    let ttl_field = r.read(VA_OPERAND::TTL) as u8;
    let ttl = match ttl_field {
        0 => None,
        0b0101..=0b0111 => Some(ttl_field & 0b11),
        t => return Err(OperandError::BadTtlField(t)),
    };
    Ok(VaOperand { asid: r.read(VA_OPERAND::ASID) as u16, va: r.read(VA_OPERAND::ADDR) << PAGE_SHIFT, ttl })
}

/// Decodes an `RVAE1` / `RVALE1` operand produced for the 4 KiB granule.
pub fn decode_range(xt: u64) -> Result<RangeOperand, OperandError> {
    let r = LocalRegisterCopy::<u64, RANGE_OPERAND::Register>::new(xt);
    let tg = r.read(RANGE_OPERAND::TG) as u8;
    if tg as u64 != TG_4K {
        return Err(OperandError::BadGranule(tg));
    }
    let level = r.read(RANGE_OPERAND::TTL) as u8;
    Ok(RangeOperand {
        asid: r.read(RANGE_OPERAND::ASID) as u16,
        base: r.read(RANGE_OPERAND::BADDR) << PAGE_SHIFT,
        num: r.read(RANGE_OPERAND::NUM) as u8,
        scale: r.read(RANGE_OPERAND::SCALE) as u8,
        ttl: if level == 0 { None } else { Some(level) },
    })
}

/// The VA interval `[lo, hi)` a `Va` or `Range` op invalidates; `None` for
/// ops that are not address-based (`Asid`, `All`).
pub const fn op_span(op: &TlbiOp) -> Option<(u64, u64)> {
    match *op {
        TlbiOp::Va { va, .. } => Some((va, va + PAGE_SIZE)),
        TlbiOp::Range { base, num, scale, .. } => Some((base, base + (range_pages(num, scale) << PAGE_SHIFT))),
        TlbiOp::Asid { .. } | TlbiOp::All => None,
    }
}

/// How many ops [`split`] emits for `pages` pages: the proven minimum (see
/// the module documentation).
pub fn split_op_count(pages: u64) -> u64 {
    let q = pages >> 1;
    let digit = |s: u32| ((q >> (5 * s)) & 31 != 0) as u64;
    (pages & 1) + digit(0) + digit(1) + digit(2) + (q >> 15).div_ceil(32)
}

/// The ops of [`split`], produced on demand without allocation.
#[derive(Clone, Debug)]
pub struct RangeSplit {
    asid: u16,
    va: u64,
    pages: u64,
    last_level: bool,
    ttl: Option<u8>,
}

/// Splits the pages `[start, start + pages * 4 KiB)` of `asid` into the
/// fewest disjoint `Va` and `Range` ops, in address order. `last_level` and
/// `ttl` are copied into every op. The whole range must lie below
/// [`RANGE_VA_LIMIT`].
pub fn split(asid: u16, start: u64, pages: u64, last_level: bool, ttl: Option<u8>) -> Result<RangeSplit, OperandError> {
    if start & (PAGE_SIZE - 1) != 0 {
        return Err(OperandError::Unaligned { addr: start });
    }
    check_ttl(ttl)?;
    // The end in pages: at most 2^52 + 2^64 / 2^12, no overflow.
    let end_page = (start >> PAGE_SHIFT) as u128 + pages as u128;
    if end_page > (RANGE_VA_LIMIT >> PAGE_SHIFT) as u128 {
        let addr = u64::try_from(end_page << PAGE_SHIFT).unwrap_or(u64::MAX);
        return Err(OperandError::AddressTooHigh { addr, limit: RANGE_VA_LIMIT });
    }
    Ok(RangeSplit { asid, va: start, pages, last_level, ttl })
}

impl Iterator for RangeSplit {
    type Item = TlbiOp;

    fn next(&mut self) -> Option<TlbiOp> {
        if self.pages == 0 {
            return None;
        }
        let (op, covered) = if self.pages & 1 == 1 {
            let op = TlbiOp::Va { asid: self.asid, va: self.va, last_level: self.last_level, ttl: self.ttl };
            (op, 1)
        } else {
            let pairs = self.pages >> 1;
            // Lowest non-zero base-32 digit of scales 0..=2, else scale 3.
            let mut scale = 0u8;
            while scale < MAX_SCALE && (pairs >> (5 * scale)) & 31 == 0 {
                scale += 1;
            }
            let units = pairs >> (5 * scale);
            let mult = if scale < MAX_SCALE { units & 31 } else { units.min(32) };
            let op = TlbiOp::Range {
                asid: self.asid,
                base: self.va,
                num: (mult - 1) as u8,
                scale,
                last_level: self.last_level,
                ttl: self.ttl,
            };
            (op, mult << (5 * scale as u32 + 1))
        };
        self.pages -= covered;
        self.va += covered << PAGE_SHIFT;
        Some(op)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(split_op_count(self.pages)).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Fewest ops for every length up to `DP_MAX` pages, by dynamic
    /// programming over the raw set of op sizes (independent of the formula).
    const DP_MAX: usize = 1 << 18;
    fn dp() -> &'static [u8] {
        static DP: OnceLock<Vec<u8>> = OnceLock::new();
        DP.get_or_init(|| {
            let mut sizes: Vec<usize> = vec![1];
            for s in 0..=MAX_SCALE {
                for n in 0..=MAX_NUM {
                    sizes.push(range_pages(n, s) as usize);
                }
            }
            sizes.sort_unstable();
            sizes.dedup();
            let mut best = vec![u8::MAX; DP_MAX + 1];
            best[0] = 0;
            for p in 1..=DP_MAX {
                let mut b = u8::MAX;
                for &c in sizes.iter().take_while(|&&c| c <= p) {
                    b = b.min(best[p - c].saturating_add(1));
                }
                best[p] = b;
            }
            best
        })
    }

    /// Splits, encodes every op, decodes it again and checks that the
    /// decoded intervals tile `[start, start + pages * 4K)` exactly, in
    /// order, with the op count of the formula. Returns the op count.
    fn check_cover(start: u64, pages: u64, ctx: &str) -> u64 {
        let (asid, ll, ttl) = (0x1a2b, start & (1 << 13) != 0, Some(3));
        let end = start + pages * PAGE_SIZE;
        let mut cursor = start;
        let mut count = 0u64;
        let split = split(asid, start, pages, ll, ttl)
            .unwrap_or_else(|e| panic!("{ctx}: split({start:#x}, {pages}) failed: {e}"));
        let hint = split.size_hint().1.unwrap();
        for op in split {
            let xt = encode(&op).unwrap_or_else(|e| panic!("{ctx}: {op:?} does not encode: {e}"));
            let (lo, hi, back) = match op {
                TlbiOp::Va { .. } => {
                    let d = decode_va(xt).unwrap();
                    (d.va, d.va + PAGE_SIZE, d.to_op(ll))
                }
                TlbiOp::Range { .. } => {
                    let d = decode_range(xt).unwrap();
                    (d.base, d.end(), d.to_op(ll))
                }
                other => panic!("{ctx}: split produced {other:?}"),
            };
            assert_eq!(back, op, "{ctx}: decode(encode(op)) expected {op:?}, saw {back:?}");
            assert_eq!(
                lo, cursor,
                "{ctx}: start={start:#x} pages={pages}: op {count} should start at {cursor:#x} \
                 (no gap, no overlap), saw [{lo:#x}, {hi:#x})"
            );
            assert!(hi <= end, "{ctx}: op {count} [{lo:#x}, {hi:#x}) runs past end {end:#x}");
            cursor = hi;
            count += 1;
        }
        assert_eq!(cursor, end, "{ctx}: start={start:#x} pages={pages}: covered up to {cursor:#x}, expected {end:#x}");
        let want = split_op_count(pages);
        assert_eq!(count, want, "{ctx}: pages={pages}: expected {want} ops, saw {count}");
        assert_eq!(hint as u64, want, "{ctx}: pages={pages}: size_hint {hint}, expected {want}");
        count
    }

    const STARTS: [u64; 5] = [
        0,
        PAGE_SIZE,                             // odd page
        0x1f_f000,                             // one page below 2 MiB
        0x4000_0000,                           // 1 GiB aligned
        RANGE_VA_LIMIT - (80_000 * PAGE_SIZE), // near the top of the range space
    ];

    #[test]
    fn field_positions_match_the_arm_arm() {
        let xt = encode_range(0xabcd, 0x1234_5000, 31, 3, Some(3)).unwrap();
        let want = (0xabcdu64 << 48) | (1 << 46) | (3 << 44) | (31 << 39) | (3 << 37) | 0x12345;
        assert_eq!(xt, want, "range operand: expected {want:#018x}, saw {xt:#018x}");
        let xt = encode_range(7, 0x2000, 0, 0, None).unwrap();
        let want = (7u64 << 48) | (1 << 46) | 0x2;
        assert_eq!(xt, want, "range operand: expected {want:#018x}, saw {xt:#018x}");
        let xt = encode_va(0xabcd, 0x7fff_ffff_f000, Some(2)).unwrap();
        let want = (0xabcdu64 << 48) | (0b0110 << 44) | 0x7_ffff_ffff;
        assert_eq!(xt, want, "va operand: expected {want:#018x}, saw {xt:#018x}");
        let xt = encode_va(1, 0x1000, None).unwrap();
        assert_eq!(xt, (1 << 48) | 1, "va operand without hint: saw {xt:#018x}");
        assert_eq!(encode(&TlbiOp::Asid { asid: 0xbeef }), Ok(0xbeef << 48));
        assert_eq!(encode(&TlbiOp::All), Err(OperandError::NoOperand));
        assert_eq!(MAX_RANGE_PAGES, 2_097_152);
    }

    #[test]
    fn decode_inverts_encode_for_every_num_scale_ttl() {
        for s in 0..=MAX_SCALE {
            for n in 0..=MAX_NUM {
                for ttl in [None, Some(1), Some(2), Some(3)] {
                    let want = RangeOperand { asid: 0xffff, base: 0x5_0000_0000, num: n, scale: s, ttl };
                    let xt = encode_range(want.asid, want.base, n, s, ttl).unwrap();
                    let got = decode_range(xt).unwrap();
                    assert_eq!(got, want, "xt={xt:#018x}: expected {want:?}, saw {got:?}");
                    assert_eq!(got.pages(), (n as u64 + 1) << (5 * s + 1));
                }
            }
        }
        for ttl in [None, Some(1), Some(2), Some(3)] {
            let want = VaOperand { asid: 3, va: VA_OPERAND_LIMIT - PAGE_SIZE, ttl };
            let got = decode_va(encode_va(3, want.va, ttl).unwrap()).unwrap();
            assert_eq!(got, want, "expected {want:?}, saw {got:?}");
        }
    }

    #[test]
    fn bad_values_are_typed_errors() {
        use OperandError::*;
        let cases: [(Result<u64, OperandError>, OperandError); 8] = [
            (encode_range(1, 0x1000, 32, 0, None), BadNum(32)),
            (encode_range(1, 0x1000, 0, 4, None), BadScale(4)),
            (encode_range(1, 0x1001, 0, 0, None), Unaligned { addr: 0x1001 }),
            (encode_range(1, 0x1000, 0, 0, Some(4)), BadTtl(4)),
            (
                encode_range(1, RANGE_VA_LIMIT - PAGE_SIZE, 0, 0, None),
                AddressTooHigh { addr: RANGE_VA_LIMIT + PAGE_SIZE, limit: RANGE_VA_LIMIT },
            ),
            (encode_va(1, 0x10, None), Unaligned { addr: 0x10 }),
            (encode_va(1, VA_OPERAND_LIMIT, None), AddressTooHigh { addr: VA_OPERAND_LIMIT, limit: VA_OPERAND_LIMIT }),
            (encode_va(1, 0x1000, Some(0)), BadTtl(0)),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got, Err(want), "case {i}: expected Err({want}), saw {got:?}");
        }
        assert_eq!(decode_range(0), Err(BadGranule(0)), "TG=0 must not decode");
        assert_eq!(decode_range(3 << 46), Err(BadGranule(3)), "TG=64K must not decode");
        assert_eq!(decode_va(0b0100 << 44), Err(BadTtlField(0b0100)), "4K level 0 is not ours");
        assert_eq!(decode_va(0b1011 << 44), Err(BadTtlField(0b1011)), "16K granule is not ours");
        assert_eq!(decode_va(0b0001 << 44), Err(BadTtlField(1)), "0b00xx with xx != 0 is RES0");
        assert!(split(1, 0x800, 4, false, None).is_err(), "unaligned start must be refused");
        assert!(split(1, 0, (RANGE_VA_LIMIT >> 12) + 1, false, None).is_err(), "range past the limit");
        assert!(split(1, 0, u64::MAX, false, None).is_err(), "huge length must not overflow");
        assert_eq!(format!("{}", BadNum(32)), "NUM 32 out of range 0..=31");
    }

    /// Checks `n` ops for `pages` pages against the DP optimum, if in bound.
    fn assert_optimal(pages: u64, n: u64, ctx: &str) {
        if let Some(&best) = dp().get(pages as usize) {
            assert_eq!(n, best as u64, "{ctx}: pages={pages}: DP optimum {best}, split used {n}");
        }
    }

    /// The closed formula equals the DP optimum for every length up to 2^18
    /// pages (all scales; NUM up to 3 at scale 3).
    #[test]
    fn op_count_is_the_dp_optimum() {
        for p in 1..=DP_MAX as u64 {
            assert_optimal(p, split_op_count(p), "formula");
        }
    }

    /// Every length 1..=70,000 at several starting alignments: exact cover
    /// and minimal count.
    #[test]
    fn exhaustive_lengths_cover_exactly_and_minimally() {
        for start in STARTS {
            for pages in 1..=70_000u64 {
                assert_optimal(pages, check_cover(start, pages, "exhaustive"), "exhaustive");
            }
        }
    }

    #[test]
    fn scale_boundaries_and_maximal_ranges() {
        let mut lengths = Vec::new();
        for s in 0..=MAX_SCALE {
            for n in 0..=MAX_NUM {
                let b = range_pages(n, s);
                lengths.extend([b - 1, b, b + 1, b + 2]);
            }
            // Just past the top of each scale: 32 units of s, plus a unit.
            let unit = 1u64 << (5 * s + 1);
            lengths.extend([32 * unit - 1, 32 * unit, 32 * unit + unit, 33 * unit - 1]);
        }
        // Multiples of the largest op (the Linux bug sat at exactly 2^21).
        let m = MAX_RANGE_PAGES;
        lengths.extend([m - 2, m - 1, m, m + 1, m + 2, 2 * m, 3 * m - 1, 31 * m + 12345, 64 * m]);
        for pages in lengths {
            for start in [0, PAGE_SIZE, 0x7f00_0000_0000] {
                assert_optimal(pages, check_cover(start, pages, "boundary"), "boundary");
            }
        }
        // Exactly one maximal op, and one op per 2^21 pages beyond.
        let one: Vec<_> = split(5, 0, m, true, None).unwrap().collect();
        let want = TlbiOp::Range { asid: 5, base: 0, num: 31, scale: 3, last_level: true, ttl: None };
        assert_eq!(one, [want], "2^21 pages: expected one NUM=31 SCALE=3 op, saw {one:?}");
        assert_eq!(split_op_count(3 * m), 3);
        assert_eq!(split_op_count(m - 1), 5, "2^21-1 = 1 + 62 + 1984 + 63488 + 2031616 pages");
        // The whole range space.
        let all = RANGE_VA_LIMIT >> PAGE_SHIFT;
        assert_eq!(check_cover(0, all, "all"), all / m);
        assert_eq!(split(1, 0, 0, false, None).unwrap().count(), 0, "zero pages: no ops");
    }

    /// Random starts and lengths (log-uniform up to 2^34 pages) from a fixed
    /// seed; the seed and case are in every failure message.
    #[test]
    fn random_starts_and_lengths() {
        const SEED: u64 = 0x5eed_7b1e_2024_0405;
        let mut state = SEED;
        let mut next = move || {
            // splitmix64
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let limit_pages = RANGE_VA_LIMIT >> PAGE_SHIFT;
        for case in 0..20_000 {
            let bits = next() % 35;
            let pages = 1 + (next() & ((1u64 << bits) - 1));
            let start_page = next() % (limit_pages - pages + 1);
            let ctx = format!("seed={SEED:#x} case={case}");
            assert_optimal(pages, check_cover(start_page << PAGE_SHIFT, pages, &ctx), &ctx);
        }
    }
}
