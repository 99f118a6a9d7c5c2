//! TLB maintenance as data.
//!
//! A strategy turns a flush request into a list of [`TlbiOp`] values; the
//! arch layer (`arch::tlbi`) executes them on hardware and the host
//! TLB model executes them in simulation. Every executed op is counted in
//! [`super::stats`].

/// Which CPUs an invalidation reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Non-shareable: only the issuing CPU's TLB (`TLBI VAE1`, ...).
    Local,
    /// Inner-shareable broadcast: every CPU in the domain (`TLBI VAE1IS`, ...).
    /// Completes on other CPUs only by the time the *issuing* CPU's `DSB ISH`
    /// completes.
    Broadcast,
}

/// One TLB invalidation instruction.
///
/// `asid` is the hardware ASID (already stripped of the generation).
/// `va` and `base` are page-aligned user virtual addresses.
/// `last_level` selects the leaf-only forms (`VALE1`, `RVALE1`), which keep
/// cached upper-level (walk-cache) entries; they are only correct when no
/// page-table page was freed or changed.
/// `ttl` is the FEAT_TTL level hint (1..=3) of the leaf entries, or `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiOp {
    /// `TLBI VAE1[IS]` / `TLBI VALE1[IS]`: one page.
    Va { asid: u16, va: u64, last_level: bool, ttl: Option<u8> },
    /// `TLBI RVAE1[IS]` / `TLBI RVALE1[IS]` (FEAT_TLBIRANGE): pages
    /// `base .. base + (num + 1) * 2^(5 * scale + 1) * 4 KiB`.
    Range { asid: u16, base: u64, num: u8, scale: u8, last_level: bool, ttl: Option<u8> },
    /// `TLBI ASIDE1[IS]`: every non-global entry of one ASID, walk caches included.
    Asid { asid: u16 },
    /// `TLBI VMALLE1[IS]`: every stage-1 EL1&0 entry.
    All,
}

/// Counter index of an operation kind. Stable: tests and benchmark output use
/// these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum OpKind {
    Vae1 = 0,
    Vale1,
    Rvae1,
    Rvale1,
    Aside1,
    Vmalle1,
    Vae1is,
    Vale1is,
    Rvae1is,
    Rvale1is,
    Aside1is,
    Vmalle1is,
}

impl OpKind {
    pub const COUNT: usize = 12;
    pub const ALL: [OpKind; Self::COUNT] = [
        OpKind::Vae1,
        OpKind::Vale1,
        OpKind::Rvae1,
        OpKind::Rvale1,
        OpKind::Aside1,
        OpKind::Vmalle1,
        OpKind::Vae1is,
        OpKind::Vale1is,
        OpKind::Rvae1is,
        OpKind::Rvale1is,
        OpKind::Aside1is,
        OpKind::Vmalle1is,
    ];

    /// An inner-shareable (broadcast) form.
    pub const fn is_broadcast(self) -> bool {
        self as usize >= OpKind::Vae1is as usize
    }

    /// The kind's stable name (`abi::stats::TLBI_NAMES`).
    pub const fn name(self) -> &'static str {
        abi::stats::TLBI_NAMES[self as usize]
    }
}

impl TlbiOp {
    /// The counter this op is accounted under when issued with `scope`.
    pub const fn kind(&self, scope: Scope) -> OpKind {
        let local = match self {
            TlbiOp::Va { last_level: false, .. } => OpKind::Vae1,
            TlbiOp::Va { last_level: true, .. } => OpKind::Vale1,
            TlbiOp::Range { last_level: false, .. } => OpKind::Rvae1,
            TlbiOp::Range { last_level: true, .. } => OpKind::Rvale1,
            TlbiOp::Asid { .. } => OpKind::Aside1,
            TlbiOp::All => OpKind::Vmalle1,
        };
        match scope {
            Scope::Local => local,
            // The broadcast kinds follow the local ones in the same order.
            Scope::Broadcast => OpKind::ALL[local as usize + 6],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_per_scope() {
        let ops = [
            TlbiOp::Va { asid: 1, va: 0x1000, last_level: false, ttl: None },
            TlbiOp::Va { asid: 1, va: 0x1000, last_level: true, ttl: None },
            TlbiOp::Range { asid: 1, base: 0, num: 0, scale: 0, last_level: false, ttl: None },
            TlbiOp::Range { asid: 1, base: 0, num: 0, scale: 0, last_level: true, ttl: None },
            TlbiOp::Asid { asid: 1 },
            TlbiOp::All,
        ];
        let mut seen = std::collections::HashSet::new();
        for op in ops {
            for scope in [Scope::Local, Scope::Broadcast] {
                let k = op.kind(scope);
                assert!(seen.insert(k), "{op:?} {scope:?} maps to duplicate kind {k:?}");
                assert_eq!(OpKind::ALL[k as usize], k);
            }
        }
        assert_eq!(seen.len(), OpKind::COUNT);
        assert_eq!(TlbiOp::All.kind(Scope::Broadcast).name(), "vmalle1is");
    }
}
