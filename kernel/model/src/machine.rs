//! CPUs with TTBR0 and TLBs over simulated memory, executing `TlbiOp`s.
//!
//! * Fills happen only through [`Machine::speculate`] / [`Machine::access`]:
//!   the hardware may walk anything reachable from the current TTBR0, and
//!   may start a walk from any cached walk-cache entry of the current ASID,
//!   at any moment. A checker schedules `speculate` as a step of its own.
//! * A TLBI, local or broadcast, is *pending* on its issuing CPU until that
//!   CPU executes a DSB; only then does it take effect (on the issuing CPU's
//!   TLB for `Local`, on every TLB for `Broadcast`). A DSB on another CPU
//!   completes nothing, and a `DSB NSH` ([`Machine::dsb_scope`] with
//!   `Scope::Local`) completes only the local ones: broadcast ones stay
//!   pending until a `DSB ISH`.
//! * A TTBR0 write without a DSB after it leaves a walk of the previous
//!   tables *in flight* ([`InFlight`]) until this CPU's next DSB, or until a
//!   broadcast TLBI of that ASID that reaches walk caches completes (the
//!   completion of a TLBI waits for the walks that may use what it
//!   invalidates, on every CPU it reaches; a local one reaches no other CPU).
//! * Each CPU has an inbox of TLB shootdown requests (IPIs) other CPUs sent
//!   it (`post`, `take_ipi`, `acked`): part of the state, served when the
//!   model system schedules it.
//! * Secondary MMUs ([`Device`]) with their own caches and inboxes of
//!   invalidations (`post_secondary`, `secondary_acked`), served likewise.
//! * A check made in the middle of a kernel call (a walk could start from
//!   TTBR0 the moment it is loaded) is latched ([`Machine::latch`]) and
//!   reported by the system's next check.
//! * Every issued op and DSB is counted in the machine's `TlbStats`, under the
//!   issuing CPU.
#![forbid(unsafe_code)]

use core::cell::{Cell, RefCell};
use core::hash::{Hash, Hasher};
use std::sync::Arc;

use super::device::{Device, Posted};
use super::mem::{Desc, Format, FrameUse, Memory, MmTag, Pfn};
use super::tlb::{Entry, Tlb, LEAF_TTL};
use super::violation::Violation;
use kernel::mm::asid::AsidHw;
use kernel::mm::space::Shootdown;
use kernel::mm::tlb::{Scope, TlbStats, TlbiOp};

/// What a CPU's TTBR0_EL1 holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ttbr0 {
    /// Root table, `None` for the reserved empty table.
    pub root: Option<Pfn>,
    pub asid: u16,
    /// Ghost: whose tables these are.
    pub mm: Option<MmTag>,
}

impl Ttbr0 {
    /// The reserved TTBR0: an empty table with ASID 0; no walk finds anything.
    pub const RESERVED: Ttbr0 = Ttbr0 { root: None, asid: 0, mm: None };

    pub fn user(root: Pfn, asid: u16, mm: MmTag) -> Self {
        Ttbr0 { root: Some(root), asid, mm: Some(mm) }
    }
}

/// A walk of tables this CPU's TTBR0 no longer holds, still in flight: a
/// TTBR0 write followed by an ISB but no DSB (a DSB completes the walks; an
/// ISB does not).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InFlight {
    /// The TTBR0 switched away from.
    pub ttbr0: Ttbr0,
    /// The tables (and their levels) the walk may be reading: every live
    /// table of `ttbr0.mm` a walk from its root, or from a cached walk
    /// entry of its ASID, could reach when TTBR0 was switched away. (A walk
    /// that read a descriptor before it was cleared goes on to the table it
    /// names, even once that table is unlinked.)
    pub tables: Vec<(Pfn, u8)>,
}

/// A TLB shootdown request waiting in its target's inbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipi {
    /// The initiator.
    pub from: usize,
    /// The `Mm::id` of the address space it is for.
    pub mm: u64,
    pub req: Shootdown,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Cpu {
    ttbr0: Ttbr0,
    tlb: Tlb,
    /// Issued, not yet completed by a DSB on this CPU.
    pending: Vec<(TlbiOp, Scope)>,
    /// Walks of tables TTBR0 held before, still in flight.
    inflight: Vec<InFlight>,
    /// Shootdown requests sent to this CPU and not yet served.
    inbox: Vec<Ipi>,
}

/// The simulated machine. Cloning shares the statistics.
#[derive(Clone)]
pub struct Machine {
    mem: Memory,
    cpus: Vec<Cpu>,
    /// Secondary MMUs, by device number (`Mm::subscribe`'s bit).
    devices: Vec<Device>,
    stats: Arc<TlbStats>,
    /// Pairs `(running, owner)`: a CPU running `running` may hold an entry
    /// to a data frame tagged `owner` while the frame is shared (more than
    /// one reference): a fork child and its parent share pages
    /// copy-on-write, and owner tags name one of them.
    cow_pairs: Vec<(MmTag, MmTag)>,
    /// The first violation seen in the middle of a call (see [`Self::latch`]).
    latched: Option<Violation>,
    /// The CPUs implement FEAT_BBM level 2.
    bbm2: bool,
}

impl PartialEq for Machine {
    fn eq(&self, o: &Self) -> bool {
        self.mem == o.mem && self.cpus == o.cpus && self.devices == o.devices
    }
}
impl Eq for Machine {}

impl core::fmt::Debug for Machine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Machine")
            .field("mem", &self.mem)
            .field("cpus", &self.cpus)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl Hash for Machine {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.mem.hash(h);
        self.cpus.hash(h);
        self.devices.hash(h);
    }
}

impl Machine {
    pub fn new(ncpus: usize, format: Format, frames: usize) -> Self {
        let cpu = Cpu {
            ttbr0: Ttbr0::RESERVED,
            tlb: Tlb::default(),
            pending: Vec::new(),
            inflight: Vec::new(),
            inbox: Vec::new(),
        };
        Self {
            mem: Memory::new(format, frames),
            cpus: vec![cpu; ncpus],
            devices: Vec::new(),
            stats: Arc::default(),
            cow_pairs: Vec::new(),
            latched: None,
            bbm2: false,
        }
    }

    /// Lets CPUs running `running` hold entries to data frames tagged
    /// `owner` while those are shared (see `cow_pairs`).
    pub fn share_cow(&mut self, running: MmTag, owner: MmTag) {
        self.cow_pairs.push((running, owner));
    }

    /// `pfn` is a data frame that a CPU running `mm` may reach although
    /// another mm's tag is on it: shared copy-on-write (see `cow_pairs`).
    fn shared_with(&self, mm: MmTag, pfn: Pfn) -> bool {
        match self.mem.use_of(pfn) {
            FrameUse::Data { mm: owner } => self.cow_pairs.contains(&(mm, owner)) && self.mem.refs(pfn) > 1,
            _ => false,
        }
    }

    pub fn ncpus(&self) -> usize {
        self.cpus.len()
    }

    pub fn mem(&self) -> &Memory {
        &self.mem
    }

    pub fn mem_mut(&mut self) -> &mut Memory {
        &mut self.mem
    }

    pub fn stats(&self) -> &TlbStats {
        &self.stats
    }

    /// Counting starts again from zero (after a setup that is not part of
    /// what is measured); clones made before keep the old counts.
    pub fn reset_stats(&mut self) {
        self.stats = Arc::default();
    }

    pub fn ttbr0(&self, cpu: usize) -> Ttbr0 {
        self.cpus[cpu].ttbr0
    }

    /// Write TTBR0 (and ISB): later walks use the new tables and ASID.
    pub fn set_ttbr0(&mut self, cpu: usize, ttbr0: Ttbr0) {
        self.cpus[cpu].ttbr0 = ttbr0;
    }

    /// Write TTBR0 with an ISB but no DSB after it: a walk of the previous
    /// tables may still be in flight until this CPU's next DSB.
    pub fn set_ttbr0_no_dsb(&mut self, cpu: usize, ttbr0: Ttbr0) {
        let old = self.cpus[cpu].ttbr0;
        if old.mm.is_some() {
            let tables = self.walkable(cpu);
            self.cpus[cpu].inflight.push(InFlight { ttbr0: old, tables });
        }
        self.cpus[cpu].ttbr0 = ttbr0;
    }

    /// Walks of earlier TTBR0 values still in flight on `cpu`.
    pub fn inflight(&self, cpu: usize) -> &[InFlight] {
        &self.cpus[cpu].inflight
    }

    /// The live tables a walk on `cpu` could read now: from TTBR0's root and
    /// from every cached walk entry of its ASID, with their levels.
    fn walkable(&self, cpu: usize) -> Vec<(Pfn, u8)> {
        let t = self.cpus[cpu].ttbr0;
        let f = self.mem.format();
        let mut todo: Vec<(Pfn, u8)> = t.root.map(|r| (r, 0)).into_iter().collect();
        for e in self.cpus[cpu].tlb.entries() {
            if let Entry::Walk { asid, level, table, .. } = *e {
                if asid == t.asid {
                    todo.push((table, level + 1));
                }
            }
        }
        let mut out = Vec::new();
        while let Some((table, level)) = todo.pop() {
            let live = matches!(self.mem.use_of(table), FrameUse::Table { .. });
            if level >= f.levels || !live || out.contains(&(table, level)) {
                continue;
            }
            out.push((table, level));
            if level + 1 < f.levels {
                for d in self.mem.table_at(table, level) {
                    if let Desc::Table(next) | Desc::Page(next) = d {
                        todo.push((next, level + 1));
                    }
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// Remembers `v`, seen in the middle of a kernel call, for the system's
    /// next check (the first one only).
    pub fn latch(&mut self, v: Violation) {
        self.latched.get_or_insert(v);
    }

    /// The violation latched, if any.
    pub fn latched(&self) -> Option<&Violation> {
        self.latched.as_ref()
    }

    /// Sends `ipi` to `cpu`'s inbox.
    pub fn post(&mut self, cpu: usize, ipi: Ipi) {
        self.cpus[cpu].inbox.push(ipi);
    }

    /// The requests waiting at `cpu`.
    pub fn inbox(&self, cpu: usize) -> &[Ipi] {
        &self.cpus[cpu].inbox
    }

    /// Takes `from`'s request out of `cpu`'s inbox (served: acknowledged).
    pub fn take_ipi(&mut self, cpu: usize, from: usize) -> Option<Ipi> {
        let inbox = &mut self.cpus[cpu].inbox;
        let i = inbox.iter().position(|r| r.from == from)?;
        Some(inbox.remove(i))
    }

    /// Every request `from` sent has been served.
    pub fn acked(&self, from: usize) -> bool {
        self.cpus.iter().all(|c| c.inbox.iter().all(|r| r.from != from))
    }

    /// Adds a secondary MMU; returns its number.
    pub fn attach_device(&mut self, d: Device) -> usize {
        self.devices.push(d);
        self.devices.len() - 1
    }

    pub fn devices(&self) -> &[Device] {
        &self.devices
    }

    pub fn device_mut(&mut self, dev: usize) -> &mut Device {
        &mut self.devices[dev]
    }

    /// Leaves `p` in device `dev`'s inbox.
    pub fn post_secondary(&mut self, dev: usize, p: Posted) {
        self.devices[dev].inbox.push(p);
    }

    /// Every invalidation `from` posted has been served.
    pub fn secondary_acked(&self, from: usize) -> bool {
        self.devices.iter().all(|d| d.inbox.iter().all(|p| p.from != from))
    }

    pub fn tlb(&self, cpu: usize) -> &Tlb {
        &self.cpus[cpu].tlb
    }

    pub fn pending(&self, cpu: usize) -> &[(TlbiOp, Scope)] {
        &self.cpus[cpu].pending
    }

    /// Issue a TLBI on `cpu`. It takes effect at `cpu`'s next DSB.
    pub fn issue(&mut self, cpu: usize, op: TlbiOp, scope: Scope) {
        self.stats.record(cpu, op.kind(scope));
        self.cpus[cpu].pending.push((op, scope));
    }

    /// `DSB ISH` on `cpu`: complete the TLBIs `cpu` issued (and its walks).
    pub fn dsb(&mut self, cpu: usize) {
        self.dsb_scope(cpu, Scope::Broadcast);
    }

    /// A DSB on `cpu` of the given shareability: `Broadcast` (`DSB ISH`)
    /// completes every TLBI `cpu` issued; `Local` (`DSB NSH`) only the
    /// local ones. Either completes `cpu`'s own walks in flight. A
    /// completed broadcast TLBI that reaches walk caches (a non-last-level
    /// form, a whole ASID, or everything) also ends the walks of its ASID
    /// in flight on every other CPU.
    pub fn dsb_scope(&mut self, cpu: usize, scope: Scope) {
        self.stats.record_dsb(cpu);
        self.cpus[cpu].inflight.clear();
        let format = self.mem.format();
        let mut kept = Vec::new();
        for (op, s) in core::mem::take(&mut self.cpus[cpu].pending) {
            match (s, scope) {
                (Scope::Local, _) => {
                    self.cpus[cpu].tlb.invalidate(&op, format);
                }
                (Scope::Broadcast, Scope::Local) => kept.push((op, s)),
                (Scope::Broadcast, Scope::Broadcast) => {
                    // The walks in flight it ends: of every ASID (`None`),
                    // of one, or none (a last-level form leaves walk caches).
                    let ends = match op {
                        TlbiOp::All => Some(None),
                        TlbiOp::Asid { asid }
                        | TlbiOp::Va { asid, last_level: false, .. }
                        | TlbiOp::Range { asid, last_level: false, .. } => Some(Some(asid)),
                        TlbiOp::Va { .. } | TlbiOp::Range { .. } => None,
                    };
                    for c in &mut self.cpus {
                        c.tlb.invalidate(&op, format);
                        if let Some(asid) = ends {
                            c.inflight.retain(|w| asid.is_some_and(|a| a != w.ttbr0.asid));
                        }
                    }
                }
            }
        }
        self.cpus[cpu].pending = kept;
    }

    /// A speculative walk: fill every entry a walk from TTBR0, or from a
    /// cached walk entry of the current ASID, could create now. Returns how
    /// many entries are new. Walks do not descend into pages that are not
    /// live tables (that they could is reported by `check_tlbs`).
    pub fn speculate(&mut self, cpu: usize) -> usize {
        self.fill(cpu, None)
    }

    /// An access to page `vpn` by `cpu`: use any matching leaf entry, else
    /// walk and fill. `Ok(None)` is a translation fault; an entry leading to
    /// a frame that is not the running mm's data page is a violation.
    pub fn access(&mut self, cpu: usize, vpn: u64) -> Result<Option<Pfn>, Violation> {
        let t = self.cpus[cpu].ttbr0;
        let Some(mm) = t.mm else { return Ok(None) };
        let hits = |m: &Self| -> Vec<Entry> {
            let entries = m.cpus[cpu].tlb.entries();
            entries.iter().filter(|e| e.asid() == t.asid && e.translate(vpn).is_some()).copied().collect()
        };
        let mut found = hits(self);
        if found.is_empty() {
            self.fill(cpu, Some(vpn));
            found = hits(self);
        }
        // A lookup that matches two entries that disagree is a TLB
        // conflict (see `conflict`).
        for (i, a) in found.iter().enumerate() {
            for b in &found[i + 1..] {
                if let Some(v) = self.conflict(cpu, a, b) {
                    return Err(v);
                }
            }
        }
        for e in &found {
            let (pfn, _) = e.translate(vpn).expect("a hit covers the page");
            let frame = self.mem.use_of(pfn);
            if frame != (FrameUse::Data { mm }) && !self.shared_with(mm, pfn) {
                return Err(Violation::StaleTranslation { cpu, mm, asid: t.asid, vpn, pfn, frame });
            }
        }
        Ok(found.first().map(|e| e.translate(vpn).expect("a hit").0))
    }

    fn fill(&mut self, cpu: usize, only: Option<u64>) -> usize {
        let t = self.cpus[cpu].ttbr0;
        let Some(mm) = t.mm else { return 0 };
        let mut starts = Vec::new();
        if let Some(root) = t.root {
            starts.push((root, 0u8, 0u64));
        }
        for e in self.cpus[cpu].tlb.entries() {
            if let Entry::Walk { asid, level, region, table, .. } = *e {
                if asid == t.asid {
                    starts.push((table, level + 1, region));
                }
            }
        }
        let mut new = Vec::new();
        for (table, level, region) in starts {
            self.walk(table, level, region, only, t.asid, mm, &mut new);
        }
        let tlb = &mut self.cpus[cpu].tlb;
        new.into_iter().filter(|e| tlb.insert(*e)).count()
    }

    #[allow(clippy::too_many_arguments)]
    fn walk(&self, table: Pfn, level: u8, region: u64, only: Option<u64>, asid: u16, mm: MmTag, out: &mut Vec<Entry>) {
        let f = self.mem.format();
        if level >= f.levels || !matches!(self.mem.use_of(table), FrameUse::Table { .. }) {
            return;
        }
        let span = f.span(level);
        for (i, d) in self.mem.table_at(table, level).iter().enumerate() {
            let vpn = region + i as u64 * span;
            if only.is_some_and(|v| !(vpn..vpn + span).contains(&v)) {
                continue;
            }
            // As on AArch64, table and page descriptors share one encoding:
            // the level decides what a valid descriptor means, so a walk
            // through a reused page reads its contents either way.
            let w = self.mem.words(table)[i];
            let writable = kernel::mm::pagetable::el0_can_write(w);
            match *d {
                Desc::Invalid => {}
                Desc::Table(next) | Desc::Page(next) if level + 1 < f.levels => {
                    out.push(Entry::Walk { asid, level, region: vpn, table: next, mm });
                    self.walk(next, level + 1, vpn, only, asid, mm, out);
                }
                // One entry for the whole block, from its level.
                Desc::Block(pfn) => out.push(Entry::Leaf {
                    asid,
                    vpn,
                    pfn,
                    mm,
                    writable,
                    level: f.kernel_level(level) as u8,
                    pages: span as u8,
                }),
                // A page of a contiguous run: the worst case, an entry for
                // the whole run built from this one descriptor (the Arm
                // ARM lets a TLB hold a run as one entry, from any of its
                // descriptors).
                Desc::Table(pfn) | Desc::Page(pfn) if kernel::mm::pagetable::is_cont(w) => {
                    let n = kernel::mm::pagetable::Format::cont_entries(&f.reduced()) as u64;
                    let first = vpn & !(n - 1);
                    let base = pfn.wrapping_sub((vpn - first) as Pfn);
                    let (level, pages) = (LEAF_TTL, n as u8);
                    out.push(Entry::Leaf { asid, vpn: first, pfn: base, mm, writable, level, pages });
                }
                Desc::Table(pfn) | Desc::Page(pfn) => out.push(Entry::page(asid, vpn, pfn, mm, writable)),
            }
        }
    }

    /// TLB conflict: whether `a` and `b`, leaf entries of one ASID on
    /// `cpu`, may not be held together: they overlap and translate a page
    /// of the overlap to different frames, or differ in size. Only an
    /// overlap of a larger entry with smaller ones of the same output
    /// addresses and permissions is allowed, and only on a CPU with
    /// FEAT_BBM level 2 ([`Self::set_bbm2`]): the change of block size
    /// without break-before-make that level permits (ID_AA64MMFR2_EL1.BBM,
    /// "support for changing block size"; at level 0 the break is
    /// required, and a TLB may hold both entries and report a TLB conflict
    /// abort on a lookup that hits them). Entries of one size that differ
    /// only in write permission are not a conflict: a TLB holding both
    /// uses either (a permission change needs no break-before-make).
    pub fn conflict(&self, cpu: usize, a: &Entry, b: &Entry) -> Option<Violation> {
        let (Entry::Leaf { asid, mm, .. }, Entry::Leaf { asid: asid_b, .. }) = (*a, *b) else { return None };
        if asid != asid_b || a == b {
            return None;
        }
        let (sa, sb) = (a.span(), b.span());
        let overlap = sa.start.max(sb.start)..sa.end.min(sb.end);
        let vpn = overlap.clone().find(|&v| a.translate(v).map(|t| t.0) != b.translate(v).map(|t| t.0));
        let sized = sa != sb;
        let same_perms = a.translate(overlap.start).map(|t| t.1) == b.translate(overlap.start).map(|t| t.1);
        if overlap.is_empty() || (vpn.is_none() && (!sized || (self.bbm2 && same_perms))) {
            return None;
        }
        let vpn = vpn.unwrap_or(overlap.start);
        let one = |e: &Entry| (e.translate(vpn).expect("covers").0, e.span().count() as u8);
        Some(Violation::TlbConflict { cpu, mm, asid, vpn, first: one(a), second: one(b) })
    }

    /// The CPUs implement FEAT_BBM level 2 (see [`Self::conflict`]).
    pub fn set_bbm2(&mut self, on: bool) {
        self.bbm2 = on;
    }

    /// UniqueASIDPerCPU, NoStaleTranslation and NoWalkThroughFreedTable
    /// (with walks in flight), over every CPU.
    pub fn check_tlbs(&self) -> Result<(), Violation> {
        self.check_tlbs_excusing(0)
    }

    /// As [`Self::check_tlbs`], but the leaf entries of the CPUs in
    /// `excused` (a bit per CPU) are not checked: CPUs that make no user
    /// access now and will flush before they do (a lazy CPU behind its mm's
    /// flush generation). Their walk-cache entries are: a speculative walk
    /// may start from them at any moment.
    pub fn check_tlbs_excusing(&self, excused: u64) -> Result<(), Violation> {
        for cpu in 0..self.cpus.len() {
            self.check_cpu(cpu, excused & 1 << cpu == 0)?;
        }
        Ok(())
    }

    /// NoWalkThroughFreedTable for `cpu` alone: what a walk starting now
    /// could read (for a check in the middle of a TTBR0 switch).
    pub fn check_walks(&self, cpu: usize) -> Result<(), Violation> {
        self.check_cpu(cpu, false)
    }

    fn check_cpu(&self, cpu: usize, leaves: bool) -> Result<(), Violation> {
        let c = &self.cpus[cpu];
        let entries = c.tlb.entries();
        let mut tags: Vec<(u16, MmTag)> = entries.iter().map(|e| (e.asid(), e.mm())).collect();
        tags.sort_unstable();
        tags.dedup();
        for w in tags.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(Violation::UniqueAsidPerCpu { cpu, asid: w[0].0, mms: (w[0].1, w[1].1) });
            }
        }
        // A walk still in flight reads the tables it started from.
        for w in &c.inflight {
            let Ttbr0 { root: Some(root), asid, mm: Some(mm) } = w.ttbr0 else { continue };
            let frame = self.mem.use_of(root);
            if frame != (FrameUse::Table { mm, level: 0 }) {
                return Err(Violation::WalkThroughFreedTable { cpu, mm, asid, level: None, table: root, frame });
            }
            for &(table, level) in &w.tables {
                let frame = self.mem.use_of(table);
                if frame != (FrameUse::Table { mm, level }) {
                    return Err(Violation::WalkInFlightThroughFreedTable { cpu, mm, asid, level, table, frame });
                }
            }
        }
        let Ttbr0 { root, asid, mm: Some(mm) } = c.ttbr0 else { return Ok(()) };
        if let Some(root) = root {
            let frame = self.mem.use_of(root);
            if frame != (FrameUse::Table { mm, level: 0 }) {
                return Err(Violation::WalkThroughFreedTable { cpu, mm, asid, level: None, table: root, frame });
            }
        }
        for e in entries.iter().filter(|e| e.asid() == asid) {
            match *e {
                Entry::Leaf { .. } if leaves => {
                    for (vpn, pfn, _) in e.pages() {
                        let frame = self.mem.use_of(pfn);
                        if frame != (FrameUse::Data { mm }) && !self.shared_with(mm, pfn) {
                            return Err(Violation::StaleTranslation { cpu, mm, asid, vpn, pfn, frame });
                        }
                    }
                }
                Entry::Leaf { .. } => {}
                Entry::Walk { level, table, .. } => {
                    let frame = self.mem.use_of(table);
                    if frame != (FrameUse::Table { mm, level: level + 1 }) {
                        let level = Some(level);
                        return Err(Violation::WalkThroughFreedTable { cpu, mm, asid, level, table, frame });
                    }
                }
            }
        }
        if leaves {
            let mine: Vec<&Entry> = entries.iter().filter(|e| e.asid() == asid && !e.span().is_empty()).collect();
            for (i, a) in mine.iter().enumerate() {
                for b in &mine[i + 1..] {
                    if let Some(v) = self.conflict(cpu, a, b) {
                        return Err(v);
                    }
                }
            }
        }
        Ok(())
    }

    /// TLBEmptyInvalPTE for an invalidation of `mm`'s pages `vpns` that has
    /// completed: no CPU holds a leaf entry of `mm` for them under any of
    /// `asids` (the ASIDs `mm` may be running with).
    pub fn check_invalidated(&self, mm: MmTag, vpns: core::ops::Range<u64>, asids: &[u16]) -> Result<(), Violation> {
        for (cpu, c) in self.cpus.iter().enumerate() {
            for e in c.tlb.entries() {
                if let Entry::Leaf { asid, mm: m, .. } = *e {
                    if let Some(vpn) = e.span().find(|v| vpns.contains(v)) {
                        if m == mm && asids.contains(&asid) {
                            return Err(Violation::TlbEmptyInvalPte { cpu, mm, vpn, asid });
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// One model CPU as the ASID allocator sees it. Its local flush is
/// `TLBI VMALLE1` + `DSB`, executed (and counted) on the machine.
pub struct ModelCpu<'a> {
    cpu: usize,
    machine: RefCell<&'a mut Machine>,
    flushes: Cell<u32>,
}

impl<'a> ModelCpu<'a> {
    pub fn new(cpu: usize, machine: &'a mut Machine) -> Self {
        Self { cpu, machine: RefCell::new(machine), flushes: Cell::new(0) }
    }

    /// Local full flushes done through this handle.
    pub fn flushes(&self) -> u32 {
        self.flushes.get()
    }
}

impl AsidHw for ModelCpu<'_> {
    fn cpu_id(&self) -> usize {
        self.cpu
    }

    fn flush_local_tlb_all(&self) {
        let mut m = self.machine.borrow_mut();
        m.issue(self.cpu, TlbiOp::All, Scope::Local);
        m.dsb(self.cpu);
        self.flushes.set(self.flushes.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::mm::tlb::OpKind;

    const F: Format = Format { levels: 2, fanout: 4 };

    /// Two CPUs, one mm (tag 1, ASID 5) running on both, page 2 mapped.
    fn setup() -> (Machine, Pfn, Pfn) {
        let mut m = Machine::new(2, F, 8);
        let root = m.mem_mut().new_root(1).unwrap();
        let data = m.mem_mut().map(1, root, 2).unwrap();
        for cpu in 0..2 {
            m.set_ttbr0(cpu, Ttbr0::user(root, 5, 1));
        }
        (m, root, data)
    }

    #[test]
    fn broadcast_tlbi_takes_effect_at_the_issuers_dsb_only() {
        let (mut m, root, data) = setup();
        assert_eq!(m.speculate(1), 2, "a walk entry and a leaf");
        assert_eq!(m.access(0, 2), Ok(Some(data)));
        m.mem_mut().unmap(root, 2);
        m.issue(0, TlbiOp::Va { asid: 5, va: 2 << 12, last_level: true, ttl: Some(3) }, Scope::Broadcast);
        m.dsb(1);
        assert_eq!(m.tlb(1).entries().len(), 2, "a DSB on cpu1 completes nothing of cpu0's");
        m.dsb(0);
        assert_eq!(m.tlb(1).entries().len(), 1, "the leaf is gone everywhere, the walk entry stays");
        assert_eq!(m.check_invalidated(1, 2..3, &[5]), Ok(()));
        m.mem_mut().free(data);
        assert_eq!(m.check_tlbs(), Ok(()));
        assert_eq!(m.access(0, 2), Ok(None), "translation fault");
        let s = m.stats().cpu(0);
        assert_eq!((s.get(OpKind::Vale1is), s.dsb), (1, 1));
        assert_eq!(m.stats().cpu(1).dsb, 1);
    }

    #[test]
    fn freed_frame_behind_a_live_entry_is_a_violation() {
        let (mut m, root, data) = setup();
        m.speculate(0);
        m.mem_mut().unmap(root, 2);
        m.mem_mut().free(data);
        let e = m.check_tlbs().unwrap_err();
        assert_eq!(e.name(), "NoStaleTranslation", "{e}");
        // The frame now belongs to another mm.
        assert_eq!(m.mem_mut().alloc(FrameUse::Data { mm: 9 }), Some(data));
        assert!(matches!(m.access(0, 2), Err(Violation::StaleTranslation { frame: FrameUse::Data { mm: 9 }, .. })));
        // A local TLBI without its DSB does not help; with it, it does.
        m.issue(0, TlbiOp::Asid { asid: 5 }, Scope::Local);
        assert!(m.check_tlbs().is_err());
        m.dsb(0);
        assert_eq!(m.check_tlbs(), Ok(()));
    }

    #[test]
    fn walk_cache_reaches_freed_table_and_reused_table() {
        let (mut m, root, _) = setup();
        m.speculate(0);
        // Tear down the leaf table and reuse it as another mm's table, with
        // only a leaf-level invalidation: the cached upper entry survives.
        let leaf_table = m.mem().leaf_table(root, 2).unwrap();
        m.mem_mut().set_desc(root, 0, Desc::Invalid);
        m.issue(0, TlbiOp::Va { asid: 5, va: 2 << 12, last_level: true, ttl: None }, Scope::Broadcast);
        m.dsb(0);
        m.mem_mut().free(leaf_table);
        let e = m.check_tlbs().unwrap_err();
        assert!(matches!(e, Violation::WalkThroughFreedTable { level: Some(0), .. }), "{e}");
        let other_root = m.mem_mut().new_root(2).unwrap();
        assert_eq!(other_root, leaf_table, "the freed table page is reused first");
        // A walk through the stale walk entry now reads mm2's table.
        m.mem_mut().map(2, other_root, 1);
        m.speculate(0);
        assert!(m.tlb(0).entries().iter().any(|e| matches!(e, Entry::Leaf { mm: 1, pfn, .. } if m.mem().use_of(*pfn) == FrameUse::Table { mm: 2, level: 1 })));
        // A non-last-level invalidation removes the walk entry.
        m.issue(0, TlbiOp::Va { asid: 5, va: 2 << 12, last_level: false, ttl: None }, Scope::Local);
        m.dsb(0);
        assert!(!m.tlb(0).entries().iter().any(|e| matches!(e, Entry::Walk { .. })));
    }

    #[test]
    fn local_tlbi_reaches_the_issuer_only_and_dsb_nsh_completes_local_ones_only() {
        let (mut m, _, _) = setup();
        m.speculate(0);
        m.speculate(1);
        let page = TlbiOp::Va { asid: 5, va: 2 << 12, last_level: true, ttl: None };
        m.issue(0, page, Scope::Local);
        m.issue(0, TlbiOp::Asid { asid: 5 }, Scope::Broadcast);
        m.dsb_scope(0, Scope::Local);
        assert_eq!(m.tlb(0).entries().len(), 1, "the local op took effect on cpu0: its walk entry stays");
        assert_eq!(m.tlb(1).entries().len(), 2, "nothing reached cpu1");
        assert_eq!(m.pending(0).len(), 1, "DSB NSH leaves the broadcast op pending");
        m.dsb(0);
        assert!(m.tlb(0).entries().is_empty() && m.tlb(1).entries().is_empty());
    }

    #[test]
    fn walk_in_flight_ends_with_a_broadcast_tlbi_of_its_asid() {
        let (mut m, root, data) = setup();
        m.speculate(1);
        let leaf_table = m.mem().leaf_table(root, 2).unwrap();
        m.set_ttbr0_no_dsb(1, Ttbr0::RESERVED);
        assert_eq!(m.inflight(1).len(), 1);
        assert!(m.inflight(1)[0].tables.contains(&(leaf_table, 1)));
        // cpu0 unlinks and frees the leaf table after a local flush only:
        // cpu1's walk may still read it.
        m.mem_mut().set_desc(root, 0, Desc::Invalid);
        m.issue(0, TlbiOp::Asid { asid: 5 }, Scope::Local);
        m.dsb(0);
        m.mem_mut().free(data);
        m.mem_mut().free(leaf_table);
        let e = m.check_tlbs().unwrap_err();
        assert!(matches!(e, Violation::WalkInFlightThroughFreedTable { cpu: 1, level: 1, .. }), "{e}");
        // A leaf-only broadcast op does not end it; a non-leaf one does.
        m.issue(0, TlbiOp::Va { asid: 5, va: 2 << 12, last_level: true, ttl: None }, Scope::Broadcast);
        m.dsb(0);
        assert_eq!(m.inflight(1).len(), 1);
        m.issue(0, TlbiOp::Va { asid: 5, va: 2 << 12, last_level: false, ttl: None }, Scope::Broadcast);
        m.dsb(0);
        assert!(m.inflight(1).is_empty());
        assert_eq!(m.check_tlbs(), Ok(()));
    }

    #[test]
    fn shootdown_requests_wait_in_their_targets_inbox() {
        let (mut m, _, _) = setup();
        let req = Shootdown { new_gen: 1, asid: 5, range: None, freed_tables: false, dying: false };
        m.post(1, Ipi { from: 0, mm: 1, req });
        assert!(!m.acked(0) && m.acked(1));
        assert_eq!(m.take_ipi(1, 1), None);
        assert_eq!(m.take_ipi(1, 0), Some(Ipi { from: 0, mm: 1, req }));
        assert!(m.acked(0) && m.inbox(1).is_empty());
    }

    /// Three levels of 2-entry tables: a block (two pages) at level 1.
    #[test]
    fn a_block_is_one_entry_and_a_split_without_break_conflicts_without_bbm2() {
        let f = Format { levels: 3, fanout: 2 };
        let mut m = Machine::new(1, f, 16);
        let root = m.mem_mut().new_root(1).unwrap();
        let l1 = m.mem_mut().alloc(FrameUse::Table { mm: 1, level: 1 }).unwrap();
        m.mem_mut().set_desc(root, 0, Desc::Table(l1));
        let data = m.mem_mut().alloc_contig(1, FrameUse::Data { mm: 1 }).unwrap();
        assert_eq!(data % 2, 0, "aligned to its size");
        m.mem_mut().set_desc(l1, 1, Desc::Block(data));
        m.set_ttbr0(0, Ttbr0::user(root, 5, 1));
        assert_eq!(m.access(0, 3), Ok(Some(data + 1)));
        let leaf = |m: &Machine| -> Vec<Entry> {
            m.tlb(0).entries().iter().filter(|e| !e.span().is_empty()).copied().collect()
        };
        assert_eq!(leaf(&m), [Entry::Leaf { asid: 5, vpn: 2, pfn: data, mm: 1, writable: true, level: 2, pages: 2 }]);
        // The block replaced at once by a table of the same pages.
        let l2 = m.mem_mut().alloc(FrameUse::Table { mm: 1, level: 2 }).unwrap();
        m.mem_mut().set_desc(l2, 0, Desc::Page(data));
        m.mem_mut().set_desc(l2, 1, Desc::Page(data + 1));
        m.mem_mut().set_desc(l1, 1, Desc::Table(l2));
        m.speculate(0);
        let e = m.check_tlbs().unwrap_err();
        assert!(matches!(e, Violation::TlbConflict { vpn: 2, first: (_, 2), second: (_, 1), .. }), "{e}");
        m.set_bbm2(true);
        assert_eq!(m.check_tlbs(), Ok(()), "FEAT_BBM level 2: same frames, same permissions");
        let other = m.mem_mut().alloc(FrameUse::Data { mm: 1 }).unwrap();
        m.mem_mut().set_desc(l2, 0, Desc::Page(other));
        m.speculate(0);
        assert!(matches!(m.check_tlbs(), Err(Violation::TlbConflict { .. })), "another frame conflicts anyway");
        // A level-3 hint leaves the block's entry; a level-2 one removes it.
        let op = |ttl| TlbiOp::Va { asid: 5, va: 2 << 12, last_level: true, ttl: Some(ttl) };
        m.issue(0, op(3), Scope::Local);
        m.dsb(0);
        assert!(leaf(&m).iter().any(|e| e.span().count() == 2));
        m.issue(0, op(2), Scope::Local);
        m.dsb(0);
        assert!(leaf(&m).iter().all(|e| e.span().count() == 1));
    }

    #[test]
    fn two_mms_with_one_asid_on_one_cpu() {
        let (mut m, _, _) = setup();
        m.speculate(0);
        let root2 = m.mem_mut().new_root(2).unwrap();
        m.mem_mut().map(2, root2, 1).unwrap();
        m.set_ttbr0(0, Ttbr0::user(root2, 5, 2));
        m.speculate(0);
        let e = m.check_tlbs().unwrap_err();
        assert_eq!(e, Violation::UniqueAsidPerCpu { cpu: 0, asid: 5, mms: (1, 2) });
    }
}
