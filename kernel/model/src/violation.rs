//! What the model checks, and how a failed check reads.
//!
//! The first four are named as in Catalin Marinas's TLA+ model of the Linux
//! arm64 ASID allocator (`asidalloc.tla`, github.com/ctmarinas/kernel-tla);
//! the rest are ours.
#![forbid(unsafe_code)]

use core::fmt;

use super::mem::{FrameUse, MmTag, Pfn};

/// How a device met a translation: held in its cache, or used by an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevUse {
    Held,
    Read,
    Write,
}

impl fmt::Display for DevUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DevUse::Held => "holds",
            DevUse::Read => "read through",
            DevUse::Write => "wrote through",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// UniqueASIDPerCPU: one CPU's TLB holds entries of two mms with one ASID.
    UniqueAsidPerCpu { cpu: usize, asid: u16, mms: (MmTag, MmTag) },
    /// SameASIDActiveTask: an mm runs on two CPUs (outside a context switch)
    /// with two ASIDs.
    SameAsidActiveTask { mm: MmTag, cpus: (usize, usize), asids: (u16, u16) },
    /// TLBEmptyInvalPTE: after an invalidation completed, a CPU still holds
    /// an entry for the invalidated translation under an ASID the mm uses.
    TlbEmptyInvalPte { cpu: usize, mm: MmTag, vpn: u64, asid: u16 },
    /// A leaf entry usable under a CPU's current TTBR0 leads to a frame that
    /// is not a live data page of the mm that TTBR0 belongs to.
    StaleTranslation { cpu: usize, mm: MmTag, asid: u16, vpn: u64, pfn: Pfn, frame: FrameUse },
    /// A walk-cache entry usable under a CPU's current TTBR0 (or TTBR0
    /// itself, `level: None`) points at a page that is not a live table of
    /// that mm: a walk would read garbage as descriptors.
    WalkThroughFreedTable { cpu: usize, mm: MmTag, asid: u16, level: Option<u8>, table: Pfn, frame: FrameUse },
    /// A walk of tables a CPU's TTBR0 no longer holds, still in flight (its
    /// TTBR0 switch had no DSB after it, and no broadcast TLBI of the ASID
    /// completed since), may be reading a level-`level` table that is no
    /// longer a live table of that mm.
    WalkInFlightThroughFreedTable { cpu: usize, mm: MmTag, asid: u16, level: u8, table: Pfn, frame: FrameUse },
    /// A TLB holds an entry of the mm's current ASID (a leaf, or with
    /// `level` a walk-cache entry) that disagrees with a valid descriptor the
    /// tables hold now: the new descriptor was written while the old one
    /// could still be cached, without break-before-make (Arm ARM D8.16.1),
    /// and the TLB may use either.
    BreakBeforeMake { cpu: usize, mm: MmTag, asid: u16, vpn: u64, level: Option<u8>, cached: Pfn, current: Pfn },
    /// NoTLBConflict: a CPU's TLB holds two leaf entries of its current
    /// ASID that overlap at page `vpn` and translate it to different frames
    /// or differ in size (`first`, `second`: each one's frame for `vpn` and
    /// its pages), where the architecture allows neither (a lookup may use
    /// either, or take a TLB conflict abort): a block or a contiguous run
    /// changed without break-before-make on a CPU without FEAT_BBM level 2.
    TlbConflict { cpu: usize, mm: MmTag, asid: u16, vpn: u64, first: (Pfn, u8), second: (Pfn, u8) },
    /// A user write reached a frame shared copy-on-write (more than one
    /// reference): the other sharer sees it.
    WriteToSharedFrame { cpu: usize, mm: MmTag, vpn: u64, pfn: Pfn, refs: u8 },
    /// NoStaleTranslation for a secondary MMU: device `dev`, bound to `mm`,
    /// holds or uses an entry leading to a frame that is not a live data
    /// page of `mm`.
    DeviceStaleTranslation { dev: usize, how: DevUse, mm: MmTag, asid: u16, vpn: u64, pfn: Pfn, frame: FrameUse },
    /// TLBEmptyInvalPTE for a secondary MMU: after a call on `mm` returned,
    /// device `dev` still holds a translation of a page it covered that the
    /// tables no longer grant (`writable`: write access they no longer
    /// grant).
    DeviceTlbEmptyInvalPte { dev: usize, mm: MmTag, vpn: u64, asid: u16, pfn: Pfn, writable: bool },
    /// BreakBeforeMake for a secondary MMU: device `dev` caches page `vpn`
    /// of `mm` as frame `cached` while a valid descriptor maps it to
    /// `current`.
    DeviceBreakBeforeMake { dev: usize, mm: MmTag, asid: u16, vpn: u64, cached: Pfn, current: Pfn },
    /// NoWriteToSharedFrame for a secondary MMU: device `dev` wrote page
    /// `vpn` of `mm` into a frame shared copy-on-write.
    DeviceWriteToSharedFrame { dev: usize, mm: MmTag, vpn: u64, pfn: Pfn, refs: u8 },
    /// The teardown found the mm still loaded on some CPU and leaked it.
    StillLoadedAtTeardown { mm: MmTag, cpus: u64 },
    /// Two live mms hold one ASID in one generation.
    AsidSharedInGeneration { asid: u16, generation: u64, mms: (MmTag, MmTag) },
    /// A CPU runs an mm whose ASID the allocator does not hold for it
    /// (its `active`/`reserved` record names another id, or the ASID is free).
    RunningAsidNotReserved { cpu: usize, mm: MmTag, asid: u16, record: u64, taken: bool },
    /// A switch returned an id of a generation newer than the CPU's last
    /// local flush.
    NewGenerationBeforeFlush { cpu: usize, id: u64, flushed_generation: u64 },
    /// A pinned mm's ASID changed, or another live mm got it.
    PinnedAsid { mm: MmTag, pinned: u16, now: Option<u16>, other: Option<MmTag> },
}

impl Violation {
    /// The invariant's name.
    pub fn name(&self) -> &'static str {
        match self {
            Violation::UniqueAsidPerCpu { .. } => "UniqueASIDPerCPU",
            Violation::SameAsidActiveTask { .. } => "SameASIDActiveTask",
            Violation::TlbEmptyInvalPte { .. } | Violation::DeviceTlbEmptyInvalPte { .. } => "TLBEmptyInvalPTE",
            Violation::StaleTranslation { .. } | Violation::DeviceStaleTranslation { .. } => "NoStaleTranslation",
            Violation::WalkThroughFreedTable { .. } => "NoWalkThroughFreedTable",
            Violation::WalkInFlightThroughFreedTable { .. } => "NoWalkInFlightThroughFreedTable",
            Violation::BreakBeforeMake { .. } | Violation::DeviceBreakBeforeMake { .. } => "BreakBeforeMake",
            Violation::TlbConflict { .. } => "NoTLBConflict",
            Violation::WriteToSharedFrame { .. } | Violation::DeviceWriteToSharedFrame { .. } => "NoWriteToSharedFrame",
            Violation::StillLoadedAtTeardown { .. } => "NothingLoadedAtTeardown",
            Violation::AsidSharedInGeneration { .. } => "UniqueASIDPerGeneration",
            Violation::RunningAsidNotReserved { .. } => "RunningASIDReserved",
            Violation::NewGenerationBeforeFlush { .. } => "FlushBeforeNewGeneration",
            Violation::PinnedAsid { .. } => "PinnedASIDStable",
        }
    }

    /// True for the invariants about TLB contents (the ones that show the
    /// hardware-visible damage, as opposed to the allocator's bookkeeping).
    pub fn is_tlb_level(&self) -> bool {
        matches!(
            self,
            Violation::UniqueAsidPerCpu { .. }
                | Violation::TlbEmptyInvalPte { .. }
                | Violation::StaleTranslation { .. }
                | Violation::WalkThroughFreedTable { .. }
                | Violation::WalkInFlightThroughFreedTable { .. }
                | Violation::BreakBeforeMake { .. }
                | Violation::TlbConflict { .. }
                | Violation::WriteToSharedFrame { .. }
                | Violation::DeviceStaleTranslation { .. }
                | Violation::DeviceTlbEmptyInvalPte { .. }
                | Violation::DeviceBreakBeforeMake { .. }
                | Violation::DeviceWriteToSharedFrame { .. }
        )
    }

    /// True for the invariants broken by a secondary MMU's cache.
    pub fn is_device(&self) -> bool {
        matches!(
            self,
            Violation::DeviceStaleTranslation { .. }
                | Violation::DeviceTlbEmptyInvalPte { .. }
                | Violation::DeviceBreakBeforeMake { .. }
                | Violation::DeviceWriteToSharedFrame { .. }
        )
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match self {
            Violation::UniqueAsidPerCpu { cpu, asid, mms } => write!(
                f,
                "cpu{cpu} holds entries of mm{} and mm{} both tagged ASID {asid}",
                mms.0, mms.1
            ),
            Violation::SameAsidActiveTask { mm, cpus, asids } => write!(
                f,
                "mm{mm} runs on cpu{} with ASID {} and on cpu{} with ASID {}",
                cpus.0, asids.0, cpus.1, asids.1
            ),
            Violation::TlbEmptyInvalPte { cpu, mm, vpn, asid } => write!(
                f,
                "after the invalidation of mm{mm} page {vpn:#x} completed, cpu{cpu} still holds it under ASID {asid}"
            ),
            Violation::StaleTranslation { cpu, mm, asid, vpn, pfn, frame } => write!(
                f,
                "cpu{cpu} runs mm{mm} (ASID {asid}) and its TLB maps page {vpn:#x} to frame {pfn}, which is {frame:?}, expected Data {{ mm: {mm} }}"
            ),
            Violation::WalkThroughFreedTable { cpu, mm, asid, level, table, frame } => write!(
                f,
                "cpu{cpu} runs mm{mm} (ASID {asid}) and can walk through frame {table} ({}), which is {frame:?}, expected a live table of mm{mm}",
                match level {
                    Some(l) => format!("cached level-{l} entry"),
                    None => "TTBR0".into(),
                }
            ),
            Violation::WalkInFlightThroughFreedTable { cpu, mm, asid, level, table, frame } => write!(
                f,
                "cpu{cpu} switched away from mm{mm} (ASID {asid}) with a walk still in flight that may read its \
                 level-{level} table {table}, which is {frame:?} now"
            ),
            Violation::BreakBeforeMake { cpu, mm, asid, vpn, level, cached, current } => match level {
                None => write!(
                    f,
                    "cpu{cpu} caches page {vpn:#x} of mm{mm} (ASID {asid}) as frame {cached} while its tables map it to frame {current}"
                ),
                Some(l) => write!(
                    f,
                    "cpu{cpu} caches the level-{l} entry of mm{mm} (ASID {asid}) for page {vpn:#x} as table {cached} while its tables hold table {current} there"
                ),
            },
            Violation::TlbConflict { cpu, mm, asid, vpn, first, second } => write!(
                f,
                "cpu{cpu} holds two entries of mm{mm} (ASID {asid}) for page {vpn:#x}: to frame {} ({} pages) and \
                 to frame {} ({} pages)",
                first.0, first.1, second.0, second.1
            ),
            Violation::WriteToSharedFrame { cpu, mm, vpn, pfn, refs } => write!(
                f,
                "cpu{cpu} running mm{mm} wrote page {vpn:#x} into frame {pfn}, shared copy-on-write ({refs} references)"
            ),
            Violation::DeviceStaleTranslation { dev, how, mm, asid, vpn, pfn, frame } => write!(
                f,
                "device{dev}, bound to mm{mm} (ASID {asid}), {how} a cached entry mapping page {vpn:#x} to frame \
                 {pfn}, which is {frame:?}, expected Data {{ mm: {mm} }}"
            ),
            Violation::DeviceTlbEmptyInvalPte { dev, mm, vpn, asid, pfn, writable } => write!(
                f,
                "after a call on mm{mm} page {vpn:#x} returned, device{dev} still caches it (ASID {asid}) as frame \
                 {pfn}{}, which the tables no longer grant",
                if *writable { ", writable" } else { "" }
            ),
            Violation::DeviceBreakBeforeMake { dev, mm, asid, vpn, cached, current } => write!(
                f,
                "device{dev} caches page {vpn:#x} of mm{mm} (ASID {asid}) as frame {cached} while its tables map it \
                 to frame {current}"
            ),
            Violation::DeviceWriteToSharedFrame { dev, mm, vpn, pfn, refs } => write!(
                f,
                "device{dev}, bound to mm{mm}, wrote page {vpn:#x} into frame {pfn}, shared copy-on-write ({refs} \
                 references)"
            ),
            Violation::StillLoadedAtTeardown { mm, cpus } => {
                write!(f, "mm{mm}'s teardown found it loaded on CPUs {cpus:#x}")
            }
            Violation::AsidSharedInGeneration { asid, generation, mms } => write!(
                f,
                "mm{} and mm{} both hold ASID {asid} in generation {:#x}",
                mms.0, mms.1, generation
            ),
            Violation::RunningAsidNotReserved { cpu, mm, asid, record, taken } => write!(
                f,
                "cpu{cpu} runs mm{mm} with ASID {asid}, expected the allocator to hold it (active/reserved record {record:#x}, ASID marked taken: {taken})"
            ),
            Violation::NewGenerationBeforeFlush { cpu, id, flushed_generation } => write!(
                f,
                "cpu{cpu} switched to id {id:#x}, newer than its last local flush (generation {flushed_generation:#x})"
            ),
            Violation::PinnedAsid { mm, pinned, now, other } => write!(
                f,
                "mm{mm} pinned ASID {pinned}, now has {now:?}{}",
                match other {
                    Some(o) => format!("; mm{o} holds it in the current generation"),
                    None => String::new(),
                }
            ),
        }
    }
}
