//! The repeat-TLBI errata (CVE-2025-10263) and the workaround's modes
//! (`tlb.repeat_tlbi`).
//!
//! On the cores in [`AFFECTED`] a broadcast `TLBI; DSB` may complete before
//! memory accesses that other CPUs translated through the invalidated entry
//! are globally observed. The entries themselves are invalidated correctly:
//! only completion is late. Linux's ARM64_WORKAROUND_REPEAT_TLBI first
//! repeated every TLBI after a DSB (`TLBI op; DSB ISH; TLBI op`, the
//! [`RepeatTlbi::Each`] mode); commit a8f78680ee6b ("arm64: tlb: Optimize
//! ARM64_WORKAROUND_REPEAT_TLBI", 2026) showed that one extra broadcast
//! `TLBI VALE1IS, XZR; DSB ISH` after the final DSB of a sequence is enough,
//! whatever and however many TLBIs that DSB completed
//! ([`RepeatTlbi::Once`]; its `__tlbi_sync_s1ish()`). Both apply to
//! broadcast invalidation only: local (non-shareable) TLBIs are not affected
//! by any of these errata (point 2 of that commit's message).
//!
//! Where the extra instructions go is the TLB protocol's business
//! (`mm::space::repeat`); this module says which mode applies.

use core::fmt;

/// How broadcast TLB maintenance is completed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RepeatTlbi {
    /// No workaround.
    #[default]
    Off,
    /// Every broadcast TLBI repeated after a `DSB ISH` (the original
    /// workaround).
    Each,
    /// One extra broadcast TLBI and `DSB ISH` after the DSB that completes
    /// a sequence of broadcast TLBIs (the optimised workaround).
    Once,
}

impl RepeatTlbi {
    pub const ALL: [RepeatTlbi; 3] = [RepeatTlbi::Off, RepeatTlbi::Each, RepeatTlbi::Once];

    pub const fn name(self) -> &'static str {
        match self {
            RepeatTlbi::Off => "off",
            RepeatTlbi::Each => "each",
            RepeatTlbi::Once => "once",
        }
    }

    pub fn is_on(self) -> bool {
        self != RepeatTlbi::Off
    }
}

/// `tlb.repeat_tlbi`: a mode, or `auto` ([`Self::resolve`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RepeatChoice {
    /// `once` on the cores of [`AFFECTED`], `off` on any other.
    #[default]
    Auto,
    Forced(RepeatTlbi),
}

impl RepeatChoice {
    /// The option's values.
    pub const VALUES: &'static str = "auto, off, each or once";

    pub fn parse(s: &str) -> Option<RepeatChoice> {
        match s {
            "auto" => Some(RepeatChoice::Auto),
            _ => RepeatTlbi::ALL.into_iter().find(|m| m.name() == s).map(RepeatChoice::Forced),
        }
    }

    /// The mode for a CPU whose MIDR_EL1 reads `midr`.
    pub fn resolve(self, midr: u64) -> RepeatTlbi {
        match self {
            RepeatChoice::Forced(m) => m,
            RepeatChoice::Auto if affected(midr).is_some() => RepeatTlbi::Once,
            RepeatChoice::Auto => RepeatTlbi::Off,
        }
    }
}

/// MIDR_EL1's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Midr(pub u64);

impl Midr {
    pub const fn implementer(self) -> u8 {
        (self.0 >> 24) as u8
    }
    pub const fn variant(self) -> u8 {
        ((self.0 >> 20) & 0xf) as u8
    }
    pub const fn part(self) -> u16 {
        ((self.0 >> 4) & 0xfff) as u16
    }
    pub const fn revision(self) -> u8 {
        (self.0 & 0xf) as u8
    }
}

impl fmt::Display for Midr {
    /// `r<variant>p<revision>`, as Arm's documents name a core's revision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}p{}", self.variant(), self.revision())
    }
}

/// Cores on which a broadcast `TLBI; DSB` needs the workaround: one
/// implementer and part (under `part_mask`), revisions `from ..= to` as
/// (variant, revision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affected {
    pub core: &'static str,
    pub implementer: u8,
    pub part: u16,
    /// Bits of the part number compared (0xfff: all).
    pub part_mask: u16,
    pub from: (u8, u8),
    pub to: (u8, u8),
    /// The vendor's erratum.
    pub erratum: &'static str,
}

impl Affected {
    pub fn matches(&self, midr: u64) -> bool {
        let m = Midr(midr);
        let rev = (m.variant(), m.revision());
        m.implementer() == self.implementer
            && m.part() & self.part_mask == self.part
            && self.from <= rev
            && rev <= self.to
    }
}

const ARM: u8 = 0x41;
const QCOM: u8 = 0x51;
const NVIDIA: u8 = 0x4e;
const MICROSOFT: u8 = 0x6d;
/// Every variant and revision.
const ALL: Revs = ((0, 0), (0xf, 0xf));

type Revs = ((u8, u8), (u8, u8));

const fn core(core: &'static str, implementer: u8, part: u16, revs: Revs, erratum: &'static str) -> Affected {
    Affected { core, implementer, part, part_mask: 0xfff, from: revs.0, to: revs.1, erratum }
}

/// The cores that need the workaround, from Linux's `arm64_repeat_tlbi_list`
/// (`arch/arm64/kernel/cpu_errata.c`, as of the CVE-2025-10263 series of
/// June 2026: "arm64: errata: Mitigate TLBI errata on various Arm CPUs" and
/// the NVIDIA Olympus and Azure Cobalt 100 additions), with the part numbers
/// of `arch/arm64/include/asm/cputype.h` and the erratum numbers of
/// `Documentation/arch/arm64/silicon-errata.rst` and the Kconfig entry
/// `ARM64_ERRATUM_4118414`. Arm's notices: Cortex-A76 SDEN-885749,
/// Cortex-A55 SDEN-859338, Cortex-A510 SDEN-1873351. Where an older
/// erratum names revisions (Falkor v1 r0p0; Cortex-A76 r0p0..r3p0;
/// Kryo 4xx Gold; Cortex-A510 r0p0..r1p1) the entry keeps them; the 2026
/// errata cover every revision of their cores.
pub const AFFECTED: &[Affected] = &[
    core("Falkor v1", QCOM, 0x800, ((0, 0), (0, 0)), "Qualcomm Falkor E1009"),
    // Linux's `is_kryo_midr`: any Qualcomm part 0x2XX.
    Affected { part_mask: 0xf00, ..core("Kryo", QCOM, 0x200, ALL, "Qualcomm Falkor E1009") },
    core("Cortex-A76", ARM, 0xd0b, ((0, 0), (3, 0)), "Arm 1286807"),
    core("Kryo 4xx Gold", QCOM, 0x804, ((0xc, 0xe), (0xf, 0xe)), "Arm 1286807"),
    core("Cortex-A55", ARM, 0xd05, ALL, "Arm 2441007"),
    core("Cortex-A510", ARM, 0xd46, ((0, 0), (1, 1)), "Arm 2441009"),
    core("C1-Premium", ARM, 0xd90, ALL, "Arm 4193780 (CVE-2025-10263)"),
    core("C1-Ultra", ARM, 0xd8c, ALL, "Arm 4193780 (CVE-2025-10263)"),
    core("Cortex-A76", ARM, 0xd0b, ALL, "Arm 4193800 (CVE-2025-10263)"),
    core("Cortex-A76AE", ARM, 0xd0e, ALL, "Arm 4193801 (CVE-2025-10263)"),
    core("Cortex-A77", ARM, 0xd0d, ALL, "Arm 4193798 (CVE-2025-10263)"),
    core("Cortex-A78", ARM, 0xd41, ALL, "Arm 4193791 (CVE-2025-10263)"),
    core("Cortex-A78AE", ARM, 0xd42, ALL, "Arm 4193793 (CVE-2025-10263)"),
    core("Cortex-A78C", ARM, 0xd4b, ALL, "Arm 4193794 (CVE-2025-10263)"),
    core("Cortex-A710", ARM, 0xd47, ALL, "Arm 4193788 (CVE-2025-10263)"),
    core("Cortex-X1", ARM, 0xd44, ALL, "Arm 4193791 (CVE-2025-10263)"),
    core("Cortex-X1C", ARM, 0xd4c, ALL, "Arm 4193792 (CVE-2025-10263)"),
    core("Cortex-X2", ARM, 0xd48, ALL, "Arm 4193788 (CVE-2025-10263)"),
    core("Cortex-X3", ARM, 0xd4e, ALL, "Arm 4193786 (CVE-2025-10263)"),
    core("Cortex-X4", ARM, 0xd82, ALL, "Arm 4118414 (CVE-2025-10263)"),
    core("Cortex-X925", ARM, 0xd85, ALL, "Arm 4193781 (CVE-2025-10263)"),
    core("Neoverse-N1", ARM, 0xd0c, ALL, "Arm 4193800 (CVE-2025-10263)"),
    core("Neoverse-N2", ARM, 0xd49, ALL, "Arm 4193789 (CVE-2025-10263)"),
    core("Neoverse-V1", ARM, 0xd40, ALL, "Arm 4193790 (CVE-2025-10263)"),
    core("Neoverse-V2", ARM, 0xd4f, ALL, "Arm 4193787 (CVE-2025-10263)"),
    core("Neoverse-V3", ARM, 0xd84, ALL, "Arm 4193784 (CVE-2025-10263)"),
    core("Neoverse-V3AE", ARM, 0xd83, ALL, "Arm 4193784 (CVE-2025-10263)"),
    core("Olympus", NVIDIA, 0x010, ALL, "NVIDIA T410-OLY-1029 (CVE-2025-10263)"),
    core("Azure Cobalt 100", MICROSOFT, 0xd49, ALL, "Arm 4193789 (CVE-2025-10263)"),
];

/// The first entry of [`AFFECTED`] that covers `midr`.
pub fn affected(midr: u64) -> Option<&'static Affected> {
    AFFECTED.iter().find(|a| a.matches(midr))
}

/// Why `mode` applies on a CPU whose MIDR_EL1 is `midr` under `choice`: the
/// banner's words.
pub struct Why {
    pub choice: RepeatChoice,
    pub midr: u64,
}

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let midr = Midr(self.midr);
        match (self.choice, affected(self.midr)) {
            (RepeatChoice::Auto, Some(a)) => write!(f, "auto: {} {midr}, erratum {}", a.core, a.erratum),
            (RepeatChoice::Auto, None) => write!(f, "auto: MIDR {:#x} is not an affected core", self.midr),
            (RepeatChoice::Forced(_), a) => {
                let auto = RepeatChoice::Auto.resolve(self.midr).name();
                write!(f, "forced; auto would choose {auto}")?;
                match a {
                    Some(a) => write!(f, " ({} {midr}, erratum {})", a.core, a.erratum),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MIDR_EL1 from its fields (architecture 0xf).
    fn midr(implementer: u8, variant: u8, part: u16, revision: u8) -> u64 {
        (implementer as u64) << 24 | (variant as u64) << 20 | 0xf << 16 | (part as u64) << 4 | revision as u64
    }

    /// QEMU 7.2's `-cpu` models (target/arm/cpu64.c): their MIDRs.
    const QEMU_CORTEX_A76: u64 = 0x414f_d0b1;
    const QEMU_CORTEX_A55: u64 = 0x411f_d050;
    const QEMU_NEOVERSE_N1: u64 = 0x414f_d0c1;
    const QEMU_CORTEX_A72: u64 = 0x410f_d083;
    const QEMU_CORTEX_A57: u64 = 0x411f_d070;
    const QEMU_A64FX: u64 = 0x461f_0010;
    const QEMU_MAX: u64 = 0x000f_0510;

    #[test]
    fn midr_fields() {
        let m = Midr(QEMU_CORTEX_A76);
        assert_eq!((m.implementer(), m.variant(), m.part(), m.revision()), (0x41, 4, 0xd0b, 1));
        assert_eq!(format!("{m}"), "r4p1");
        assert_eq!(midr(0x41, 4, 0xd0b, 1), QEMU_CORTEX_A76);
    }

    #[test]
    fn auto_chooses_once_on_affected_qemu_models_and_off_elsewhere() {
        for m in [QEMU_CORTEX_A76, QEMU_CORTEX_A55, QEMU_NEOVERSE_N1] {
            assert_eq!(RepeatChoice::Auto.resolve(m), RepeatTlbi::Once, "MIDR {m:#x}");
        }
        for m in [QEMU_CORTEX_A72, QEMU_CORTEX_A57, QEMU_A64FX, QEMU_MAX] {
            assert_eq!(RepeatChoice::Auto.resolve(m), RepeatTlbi::Off, "MIDR {m:#x}");
        }
        // A forced mode is the mode, affected or not.
        for mode in RepeatTlbi::ALL {
            assert_eq!(RepeatChoice::Forced(mode).resolve(QEMU_MAX), mode);
            assert_eq!(RepeatChoice::Forced(mode).resolve(QEMU_CORTEX_A76), mode);
        }
    }

    #[test]
    fn revisions_are_compared_where_an_erratum_names_them() {
        // Cortex-A510 #2441009: r0p0..r1p1, fixed in r1p2.
        assert_eq!(affected(midr(0x41, 0, 0xd46, 0)).unwrap().erratum, "Arm 2441009");
        assert!(affected(midr(0x41, 1, 0xd46, 1)).is_some());
        assert!(affected(midr(0x41, 1, 0xd46, 2)).is_none());
        // Falkor v1: r0p0 only.
        assert!(affected(midr(0x51, 0, 0x800, 0)).is_some());
        assert!(affected(midr(0x51, 0, 0x800, 1)).is_none());
        // Kryo 4xx Gold: rcpe..rfpe.
        assert!(affected(midr(0x51, 0xb, 0x804, 0xe)).is_none());
        assert!(affected(midr(0x51, 0xc, 0x804, 0xe)).is_some());
        assert!(affected(midr(0x51, 0xf, 0x804, 0xf)).is_none());
        // Cortex-A76 r0p0..r3p0 is #1286807; every later revision CVE-2025-10263's #4193800.
        assert_eq!(affected(midr(0x41, 3, 0xd0b, 0)).unwrap().erratum, "Arm 1286807");
        assert_eq!(affected(QEMU_CORTEX_A76).unwrap().erratum, "Arm 4193800 (CVE-2025-10263)");
    }

    #[test]
    fn parts_match_under_their_mask_and_implementer() {
        // Kryo: any Qualcomm part 0x2XX, as Linux's `is_kryo_midr`.
        assert_eq!(affected(midr(0x51, 0, 0x2a1, 0)).unwrap().core, "Kryo");
        assert!(affected(midr(0x51, 0, 0x301, 0)).is_none());
        // Azure Cobalt 100 has Neoverse-N2's part under Microsoft's implementer.
        assert_eq!(affected(midr(0x6d, 0, 0xd49, 0)).unwrap().core, "Azure Cobalt 100");
        assert_eq!(affected(midr(0x41, 0, 0xd49, 0)).unwrap().core, "Neoverse-N2");
        assert!(affected(midr(0x42, 0, 0xd49, 0)).is_none());
        // Cores of the table's era it does not list.
        for part in [0xd03, 0xd07, 0xd08, 0xd0a, 0xd80, 0xd81] {
            assert!(affected(midr(0x41, 0, part, 0)).is_none(), "part {part:#x}");
        }
    }

    #[test]
    fn every_entry_matches_its_own_first_and_last_revision() {
        for a in AFFECTED {
            for (v, r) in [a.from, a.to] {
                assert!(a.matches(midr(a.implementer, v, a.part, r)), "{a:?}");
            }
        }
    }

    #[test]
    fn choices_parse_and_explain_themselves() {
        assert_eq!(RepeatChoice::parse("auto"), Some(RepeatChoice::Auto));
        assert_eq!(RepeatChoice::parse("once"), Some(RepeatChoice::Forced(RepeatTlbi::Once)));
        assert_eq!(RepeatChoice::parse("each"), Some(RepeatChoice::Forced(RepeatTlbi::Each)));
        assert_eq!(RepeatChoice::parse("off"), Some(RepeatChoice::Forced(RepeatTlbi::Off)));
        assert_eq!(RepeatChoice::parse("on"), None);
        let why = |choice, midr| format!("{}", Why { choice, midr });
        assert_eq!(
            why(RepeatChoice::Auto, QEMU_CORTEX_A76),
            "auto: Cortex-A76 r4p1, erratum Arm 4193800 (CVE-2025-10263)"
        );
        assert_eq!(why(RepeatChoice::Auto, QEMU_MAX), "auto: MIDR 0xf0510 is not an affected core");
        assert_eq!(why(RepeatChoice::Forced(RepeatTlbi::Each), QEMU_MAX), "forced; auto would choose off");
    }
}
