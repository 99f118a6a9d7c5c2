//! Which guest instructions the plugin counts, from their A64 encodings
//! (Arm ARM, "A64 system instructions": `SYS`, `DSB`, `HINT`).
//!
//! - `TLBI <op>{, Xt}` is `SYS #op1, C8, Cm, #op2, Xt` (op0 = 1, CRn = 8),
//!   or CRn = 9 for the FEAT_XS `nXS` forms. Each (nXS, op1, CRm, op2) has
//!   its own counter slot; [`tlbi_name`] names it (`vae1is`, `rvale1`, ...:
//!   the names of the kernel's `OpKind`, `kernel/src/mm/tlb/op.rs`).
//! - `DSB <option>` is `0xd503309f | CRm << 8` (CRm 0 and 4 are SSBB and
//!   PSSBB, not DSBs); `DSB <option>nXS` is `0xd503323f | imm2 << 10`.
//! - The region markers are `HINT #abi::marker::BEGIN` and `#END`.

use abi::marker;

/// Counter slots for TLBI instructions: nXS (1 bit), op1 (3), CRm (4), op2 (3).
pub const TLBI_SLOTS: usize = 1 << 11;
/// Counter slots for DSBs: the 16 CRm values, then the 4 nXS options.
pub const DSB_SLOTS: usize = 20;

/// What an instruction is, as far as the plugin cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Tlbi(u16),
    Dsb(u8),
    Begin,
    End,
    Other,
}

/// Classifies one instruction word.
pub fn classify(word: u32) -> Class {
    if word == marker::hint(marker::BEGIN) {
        return Class::Begin;
    }
    if word == marker::hint(marker::END) {
        return Class::End;
    }
    // SYS: 1101 0101 0000 1 op1 CRn CRm op2 Rt (L = 0, op0 = 0b01).
    if word & 0xfff8_0000 == 0xd508_0000 {
        let crn = (word >> 12) & 0xf;
        if crn == 8 || crn == 9 {
            let (op1, crm, op2) = ((word >> 16) & 7, (word >> 8) & 0xf, (word >> 5) & 7);
            let slot = (crn - 8) << 10 | op1 << 7 | crm << 3 | op2;
            return Class::Tlbi(slot as u16);
        }
        return Class::Other;
    }
    if word & 0xffff_f0ff == 0xd503_309f {
        let crm = (word >> 8) & 0xf;
        if crm != 0 && crm != 4 {
            return Class::Dsb(crm as u8);
        }
        return Class::Other;
    }
    if word & 0xffff_f3ff == 0xd503_323f {
        return Class::Dsb(16 + ((word >> 10) & 3) as u8);
    }
    Class::Other
}

/// (op1, CRm, op2, name) of every TLBI with CRn = 8 in the Arm ARM.
const TLBI_NAMES: &[(u32, u32, u32, &str)] = &[
    // EL1, outer shareable (FEAT_TLBIOS).
    (0, 1, 0, "vmalle1os"),
    (0, 1, 1, "vae1os"),
    (0, 1, 2, "aside1os"),
    (0, 1, 3, "vaae1os"),
    (0, 1, 5, "vale1os"),
    (0, 1, 7, "vaale1os"),
    // EL1, range, inner shareable (FEAT_TLBIRANGE).
    (0, 2, 1, "rvae1is"),
    (0, 2, 3, "rvaae1is"),
    (0, 2, 5, "rvale1is"),
    (0, 2, 7, "rvaale1is"),
    // EL1, inner shareable.
    (0, 3, 0, "vmalle1is"),
    (0, 3, 1, "vae1is"),
    (0, 3, 2, "aside1is"),
    (0, 3, 3, "vaae1is"),
    (0, 3, 5, "vale1is"),
    (0, 3, 7, "vaale1is"),
    // EL1, range, outer shareable.
    (0, 5, 1, "rvae1os"),
    (0, 5, 3, "rvaae1os"),
    (0, 5, 5, "rvale1os"),
    (0, 5, 7, "rvaale1os"),
    // EL1, range, this PE.
    (0, 6, 1, "rvae1"),
    (0, 6, 3, "rvaae1"),
    (0, 6, 5, "rvale1"),
    (0, 6, 7, "rvaale1"),
    // EL1, this PE.
    (0, 7, 0, "vmalle1"),
    (0, 7, 1, "vae1"),
    (0, 7, 2, "aside1"),
    (0, 7, 3, "vaae1"),
    (0, 7, 5, "vale1"),
    (0, 7, 7, "vaale1"),
    // EL2 and stage 2.
    (4, 0, 1, "ipas2e1is"),
    (4, 0, 2, "ripas2e1is"),
    (4, 0, 5, "ipas2le1is"),
    (4, 0, 6, "ripas2le1is"),
    (4, 1, 0, "alle2os"),
    (4, 1, 1, "vae2os"),
    (4, 1, 4, "alle1os"),
    (4, 1, 5, "vale2os"),
    (4, 1, 6, "vmalls12e1os"),
    (4, 2, 1, "rvae2is"),
    (4, 2, 5, "rvale2is"),
    (4, 3, 0, "alle2is"),
    (4, 3, 1, "vae2is"),
    (4, 3, 4, "alle1is"),
    (4, 3, 5, "vale2is"),
    (4, 3, 6, "vmalls12e1is"),
    (4, 4, 0, "ipas2e1os"),
    (4, 4, 1, "ipas2e1"),
    (4, 4, 2, "ripas2e1"),
    (4, 4, 3, "ripas2e1os"),
    (4, 4, 4, "ipas2le1os"),
    (4, 4, 5, "ipas2le1"),
    (4, 4, 6, "ripas2le1"),
    (4, 4, 7, "ripas2le1os"),
    (4, 5, 1, "rvae2os"),
    (4, 5, 5, "rvale2os"),
    (4, 6, 1, "rvae2"),
    (4, 6, 5, "rvale2"),
    (4, 7, 0, "alle2"),
    (4, 7, 1, "vae2"),
    (4, 7, 4, "alle1"),
    (4, 7, 5, "vale2"),
    (4, 7, 6, "vmalls12e1"),
    // EL3.
    (6, 1, 0, "alle3os"),
    (6, 1, 1, "vae3os"),
    (6, 1, 5, "vale3os"),
    (6, 2, 1, "rvae3is"),
    (6, 2, 5, "rvale3is"),
    (6, 3, 0, "alle3is"),
    (6, 3, 1, "vae3is"),
    (6, 3, 5, "vale3is"),
    (6, 5, 1, "rvae3os"),
    (6, 5, 5, "rvale3os"),
    (6, 6, 1, "rvae3"),
    (6, 6, 5, "rvale3"),
    (6, 7, 0, "alle3"),
    (6, 7, 1, "vae3"),
    (6, 7, 5, "vale3"),
];

/// The name of TLBI counter `slot`: the operation in lower case, `nxs`
/// appended for the FEAT_XS forms; an encoding the table does not know is
/// named by its fields (`sys_op1_C8_Cm_op2`), so it is still counted.
pub fn tlbi_name(slot: u16) -> String {
    let slot = u32::from(slot);
    let (nxs, op1, crm, op2) = (slot >> 10 & 1, slot >> 7 & 7, slot >> 3 & 0xf, slot & 7);
    let crn = 8 + nxs;
    let base =
        TLBI_NAMES.iter().find(|&&(o1, cm, o2, _)| (o1, cm, o2) == (op1, crm, op2)).map(|&(.., name)| name.to_string());
    match (base, nxs) {
        (Some(name), 0) => name,
        (Some(name), _) => format!("{name}nxs"),
        (None, _) => format!("sys_{op1}_c{crn}_c{crm}_{op2}"),
    }
}

/// The option of DSB counter `slot`, in lower case (`ish`, `nshst`, ...).
pub fn dsb_name(slot: u8) -> String {
    const OPTIONS: [&str; 16] =
        ["", "oshld", "oshst", "osh", "", "nshld", "nshst", "nsh", "", "ishld", "ishst", "ish", "", "ld", "st", "sy"];
    const NXS: [&str; 4] = ["oshnxs", "nshnxs", "ishnxs", "synxs"];
    match slot {
        0..=15 if !OPTIONS[slot as usize].is_empty() => OPTIONS[slot as usize].to_string(),
        0..=15 => format!("crm{slot}"),
        _ => NXS[usize::from(slot - 16) % 4].to_string(),
    }
}

/// Whether a DSB with this option completes earlier TLB maintenance: the
/// full barriers (loads and stores), not the `LD`- or `ST`-only ones. The
/// reserved CRm values 8 and 12 execute as `DSB SY`.
pub fn dsb_completes_tlbi(slot: u8) -> bool {
    match slot {
        0..=15 => slot & 3 == 3 || slot == 8 || slot == 12,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TLBI` with CRn = 8: `SYS #op1, C8, Cm, #op2, Xt`.
    fn tlbi(op1: u32, crm: u32, op2: u32, rt: u32) -> u32 {
        0xd508_8000 | op1 << 16 | crm << 8 | op2 << 5 | rt
    }

    #[test]
    fn tlbi_encodings_have_their_names() {
        // Words as the GNU assembler encodes them.
        let cases = [
            (0xd508_871f, "vmalle1"),
            (0xd508_831f, "vmalle1is"),
            (0xd508_8720, "vae1"),
            (0xd508_8721, "vae1"),
            (0xd508_87a0, "vale1"),
            (0xd508_8340, "aside1is"),
            (0xd508_8740, "aside1"),
            (0xd508_8320, "vae1is"),
            (0xd508_83a0, "vale1is"),
            (0xd508_8620, "rvae1"),
            (0xd508_86a0, "rvale1"),
            (0xd508_8220, "rvae1is"),
            (0xd508_82a0, "rvale1is"),
            (0xd50c_871f, "alle2"),
            (0xd508_9320, "vae1isnxs"),
        ];
        for (word, name) in cases {
            match classify(word) {
                Class::Tlbi(slot) => assert_eq!(tlbi_name(slot), name, "{word:#x}"),
                other => panic!("{word:#x} ({name}): {other:?}"),
            }
        }
        assert_eq!(classify(tlbi(0, 7, 1, 3)), classify(tlbi(0, 7, 1, 30)), "Xt does not matter");
    }

    #[test]
    fn every_named_tlbi_has_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        for &(op1, crm, op2, name) in TLBI_NAMES {
            let Class::Tlbi(slot) = classify(tlbi(op1, crm, op2, 31)) else {
                panic!("{name} is not a TLBI");
            };
            assert!((slot as usize) < TLBI_SLOTS);
            assert_eq!(tlbi_name(slot), name);
            assert!(seen.insert(slot), "{name} shares a slot");
        }
        let Class::Tlbi(unknown) = classify(tlbi(1, 7, 1, 0)) else { panic!() };
        assert_eq!(tlbi_name(unknown), "sys_1_c8_c7_1");
    }

    #[test]
    fn dsb_options_and_what_completes_a_tlbi() {
        let dsb = |crm: u32| 0xd503_309f | crm << 8;
        let cases = [
            (0xd503_3f9f, "sy", true),
            (0xd503_3b9f, "ish", true),
            (0xd503_3a9f, "ishst", false),
            (0xd503_379f, "nsh", true),
            (0xd503_339f, "osh", true),
            (dsb(9), "ishld", false),
            (dsb(14), "st", false),
            (dsb(8), "crm8", true),
        ];
        for (word, name, completes) in cases {
            let Class::Dsb(slot) = classify(word) else {
                panic!("{word:#x} ({name}) is not a DSB");
            };
            assert_eq!(dsb_name(slot), name);
            assert_eq!(dsb_completes_tlbi(slot), completes, "{name}");
        }
        assert_eq!(classify(0xd503_309f), Class::Other, "SSBB");
        assert_eq!(classify(0xd503_349f), Class::Other, "PSSBB");
        let Class::Dsb(nxs) = classify(0xd503_3a3f) else { panic!("DSB ISHNXS") };
        assert_eq!((dsb_name(nxs), dsb_completes_tlbi(nxs)), ("ishnxs".into(), true));
        assert_eq!(classify(0xd503_3fbf), Class::Other, "DMB SY");
        assert_eq!(classify(0xd503_3fdf), Class::Other, "ISB");
    }

    #[test]
    fn markers_and_other_hints() {
        assert_eq!(classify(marker::hint(marker::BEGIN)), Class::Begin);
        assert_eq!(classify(marker::hint(marker::END)), Class::End);
        assert_eq!(marker::hint(0), 0xd503_201f, "NOP");
        assert_eq!(classify(0xd503_201f), Class::Other);
        assert_eq!(classify(0xd503_207f), Class::Other, "WFI");
        assert_eq!(classify(0xd518_2000), Class::Other, "MSR TTBR0_EL1 is not SYS");
        assert_eq!(classify(0xd50b_7520), Class::Other, "IC IVAU is SYS with CRn = 7");
    }
}
