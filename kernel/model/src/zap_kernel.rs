//! The kernel's side of a zap, over the TLB model's memory: which
//! page-table writes a zap makes and in what order, the real [`Gather`]
//! that records them, the real [`RangePolicy`] that turns its range into
//! TLBIs, and the operand encoding those TLBIs go through on their way to
//! the hardware. [`super::zap_world`] schedules these as steps.
//!
//! * The page-table walks (`zap_edits`, `present_leaves`) mirror
//!   `mm::pagetable` (`zap_table`, `visit`) over the model's reduced format;
//!   each write is one [`Edit`], carrying the gather call the kernel makes
//!   for it.
//! * `Gather` is neither `Clone` nor `Hash`, so a model state keeps the list
//!   of calls made on it ([`GatherCall`]) and rebuilds the real gather from
//!   it ([`replay`]) whenever the kernel would ask it something: its flush
//!   range, or to finish. [`finish`] runs the real `Gather::finish` against
//!   a `PhysMem` over the model memory whose `free` refuses to run before
//!   the flush callback has.
//! * [`Flusher`] mirrors `Mm::flush` (the policy's plan, or the whole ASID
//!   for a request it rejects); [`hardware_op`] mirrors `tlbi::issue`: the
//!   operand is encoded by `tlb::range::encode`, and the model executes what
//!   the hardware decodes from it.
//!
//! Virtual page `vpn` is VA `vpn << 12`; frame `pfn` is PA `pfn << 12`; the
//! model's leaf level is the kernel's level 3 (so TTL hints match).
#![allow(unsafe_code)] // implements the unsafe trait PhysMem, as aspace::test_mem does

use core::cell::{Cell, RefCell};

use super::mem::{Desc, Format, FrameUse, Memory, MmTag, Pfn};
use kernel::mm::gather::{FlushRange, Gather};
use kernel::mm::pagetable::PhysMem;
use kernel::mm::pte::PAGE_SIZE;
use kernel::mm::tlb::{range, CpuFeatures, FlushStrategy, PolicyParams, RangePolicy, Scope, TlbiOp};

pub fn va(vpn: u64) -> u64 {
    vpn * PAGE_SIZE
}

pub fn pa(pfn: Pfn) -> u64 {
    pfn as u64 * PAGE_SIZE
}

fn pfn_of(pa: u64) -> Pfn {
    (pa / PAGE_SIZE) as Pfn
}

/// The kernel's level number for a model level (the leaf is level 3).
pub fn kernel_level(f: Format, level: u8) -> u32 {
    (level + 4 - f.levels) as u32
}

/// One call the kernel makes on its gather.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GatherCall {
    /// `clear_leaf(va(vpn), 3, pa(pfn))`.
    ClearLeaf { vpn: u64, pfn: Pfn },
    /// `clear_table(va(vpn), level, pa(table))`: the level-`level` (model)
    /// entry pointing at `table` was cleared.
    ClearTable { vpn: u64, level: u8, table: Pfn },
    /// `free_root(pa(root))`.
    FreeRoot { root: Pfn },
    /// `protect_leaf(va(vpn), 3)`.
    ProtectLeaf { vpn: u64 },
}

/// The real gather after `calls`.
pub fn replay(calls: &[GatherCall], f: Format) -> Gather {
    let mut g = Gather::new();
    for c in calls {
        match *c {
            GatherCall::ClearLeaf { vpn, pfn } => g.clear_leaf(va(vpn), 3, pa(pfn)),
            GatherCall::ClearTable { vpn, level, table } => {
                g.clear_table(va(vpn), kernel_level(f, level), pa(table))
            }
            GatherCall::FreeRoot { root } => g.free_root(pa(root)),
            GatherCall::ProtectLeaf { vpn } => g.protect_leaf(va(vpn), 3),
        }
    }
    g
}

/// One step of a kernel operation that writes the page tables or the
/// gather (or both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Edit {
    /// Write an invalid descriptor at `table[index]`, then record `call`.
    Clear {
        table: Pfn,
        index: u8,
        call: GatherCall,
    },
    /// Record `call` only (the root at teardown).
    Record(GatherCall),
    /// mprotect: make the leaf of `vpn` read-only, `protect_leaf`.
    Protect { vpn: u64 },
    /// fork: share the leaf's frame with the child (one more reference) and
    /// make the parent's leaf read-only; `protect_leaf` if it was writable.
    Share {
        vpn: u64,
        pfn: Pfn,
        was_writable: bool,
    },
}

/// The writes `PageTable::zap` makes for each `[lo, hi)` of `ranges` in
/// turn (one gather, as `Mm::reap` zaps every VMA), in its order: leaves
/// cleared, then each table that became empty unlinked, recorded at
/// `start.max(va)` (`pagetable::zap_table`). Computed on a copy: under the
/// mm lock nothing else writes these tables.
pub fn zap_edits(mem: &Memory, root: Pfn, ranges: &[(u64, u64)]) -> Vec<Edit> {
    let mut scratch = mem.clone();
    let mut out = Vec::new();
    for &(lo, hi) in ranges.iter().filter(|r| r.0 < r.1) {
        zap_table(&mut scratch, root, 0, 0, lo, hi, &mut out);
    }
    out
}

/// `PageTable::destroy`: a zap of all user space, then the root.
pub fn teardown_edits(mem: &Memory, root: Pfn) -> Vec<Edit> {
    let mut out = zap_edits(mem, root, &[(0, mem.format().pages())]);
    out.push(Edit::Record(GatherCall::FreeRoot { root }));
    out
}

/// `pagetable::span`: indices of a level-`level` table based at `base`
/// whose entries overlap `[lo, hi)`.
fn span(f: Format, level: u8, base: u64, lo: u64, hi: u64) -> core::ops::Range<usize> {
    let size = f.span(level);
    let first = (lo.max(base) - base) / size;
    let last = (hi - base).div_ceil(size).min(f.fanout as u64);
    first as usize..last as usize
}

fn zap_table(
    m: &mut Memory,
    table: Pfn,
    level: u8,
    base: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Edit>,
) -> bool {
    let f = m.format();
    for index in span(f, level, base, lo, hi) {
        let vpn = base + index as u64 * f.span(level);
        let (Desc::Table(next) | Desc::Page(next)) = m.table(table)[index] else {
            continue;
        };
        let call = if level + 1 == f.levels {
            GatherCall::ClearLeaf { vpn, pfn: next }
        } else if zap_table(m, next, level + 1, vpn, lo, hi, out) {
            GatherCall::ClearTable {
                vpn: lo.max(vpn),
                level,
                table: next,
            }
        } else {
            continue;
        };
        m.set_desc(table, index, Desc::Invalid);
        out.push(Edit::Clear {
            table,
            index: index as u8,
            call,
        });
    }
    m.table(table).iter().all(|d| *d == Desc::Invalid)
}

/// Present leaves in `[lo, hi)` in address order (`pagetable::visit`).
pub fn present_leaves(mem: &Memory, root: Pfn, lo: u64, hi: u64) -> Vec<(u64, Pfn)> {
    (lo..hi)
        .filter_map(|vpn| mem.translate(root, vpn).map(|p| (vpn, p)))
        .collect()
}

/// Apply a `Clear` edit to memory; returns the gather call to record.
pub fn apply_clear(mem: &mut Memory, e: &Edit) -> GatherCall {
    match *e {
        Edit::Clear { table, index, call } => {
            mem.set_desc(table, index as usize, Desc::Invalid);
            call
        }
        Edit::Record(call) => call,
        _ => unreachable!("not a zap edit: {e:?}"),
    }
}

/// `PhysMem` over the model memory, for the gather's release: `put` drops
/// a reference (a copy-on-write frame then belongs to its other sharer),
/// `free` frees the model frame and fails loudly if the gather's flush
/// callback has not run yet.
pub struct Frames<'a> {
    mem: RefCell<&'a mut Memory>,
    /// Frames shared copy-on-write, with the other mm holding each.
    shared: RefCell<&'a mut Vec<(Pfn, MmTag)>>,
    flushed: Cell<bool>,
    freed: RefCell<Vec<Pfn>>,
}

impl<'a> Frames<'a> {
    pub fn new(mem: &'a mut Memory, shared: &'a mut Vec<(Pfn, MmTag)>, flushed: bool) -> Self {
        Self {
            mem: RefCell::new(mem),
            shared: RefCell::new(shared),
            flushed: Cell::new(flushed),
            freed: RefCell::default(),
        }
    }
}

// SAFETY: the gather calls only `put`, `free` and `refs`. `alloc_zeroed`
// never hands out a frame and `ptr` never returns, so promises 1 and 2
// (about frames handed out and their pointers) hold vacuously; reference
// counts (promise 3) start at 1 and change only through `put` (a shared
// frame counts 2 until one sharer puts it).
impl PhysMem for Frames<'_> {
    fn alloc_zeroed(&self) -> Option<u64> {
        unreachable!("the gather never allocates")
    }

    fn free(&self, pa: u64) {
        let pfn = pfn_of(pa);
        assert!(
            self.flushed.get(),
            "the gather freed frame {pfn} before its flush callback ran"
        );
        self.mem.borrow_mut().free(pfn);
        self.freed.borrow_mut().push(pfn);
    }

    unsafe fn load_desc(&self, table: u64, _: usize) -> u64 {
        unreachable!("the gather never reads frame {table:#x}")
    }
    unsafe fn store_desc(&self, table: u64, _: usize, _: u64) {
        unreachable!("the gather never writes frame {table:#x}")
    }
    unsafe fn read_data(&self, pa: u64, _: usize, _: &mut [u8]) {
        unreachable!("the gather never reads frame {pa:#x}")
    }
    unsafe fn write_data(&self, pa: u64, _: usize, _: &[u8]) {
        unreachable!("the gather never writes frame {pa:#x}")
    }
    unsafe fn copy_page(&self, dst: u64, _: u64) {
        unreachable!("the gather never copies into {dst:#x}")
    }

    fn get(&self, pa: u64) {
        unreachable!("the gather never takes a reference ({pa:#x})")
    }

    fn put(&self, pa: u64) -> bool {
        let pfn = pfn_of(pa);
        let mut shared = self.shared.borrow_mut();
        match shared.iter().position(|s| s.0 == pfn) {
            Some(i) => {
                let (_, other) = shared.remove(i);
                self.mem
                    .borrow_mut()
                    .reassign(pfn, FrameUse::Data { mm: other });
                false
            }
            None => true,
        }
    }

    fn refs(&self, pa: u64) -> u32 {
        1 + self.shared.borrow().iter().any(|s| s.0 == pfn_of(pa)) as u32
    }
}

/// The real `Gather::finish` of the gather `calls` built: its flush
/// callback must be asked for `flushed`, the range the model already
/// flushed (the callback's work, issue and DSB, ran as earlier steps); then
/// the gather releases. Returns the frames freed.
pub fn finish(
    calls: &[GatherCall],
    mem: &mut Memory,
    shared: &mut Vec<(Pfn, MmTag)>,
    flushed: Option<FlushRange>,
) -> Vec<Pfn> {
    let f = mem.format();
    let frames = Frames::new(mem, shared, false);
    let _ = replay(calls, f).finish(&frames, |r| {
        assert_eq!(
            r, flushed,
            "the gather's flush range changed between the flush and the release"
        );
        frames.flushed.set(true);
    });
    frames.freed.into_inner()
}

/// What `tlbi::issue` makes the hardware execute for `op`: the operand is
/// encoded by `tlb::range::encode` and decoded back as the hardware reads
/// it; an op that cannot be encoded is widened to its whole ASID.
pub fn hardware_op(op: &TlbiOp) -> TlbiOp {
    let decoded = match (*op, range::encode(op)) {
        (TlbiOp::All, _) => return TlbiOp::All,
        (TlbiOp::Va { last_level, .. }, Ok(x)) => range::decode_va(x).map(|o| o.to_op(last_level)),
        (TlbiOp::Range { last_level, .. }, Ok(x)) => {
            range::decode_range(x).map(|o| o.to_op(last_level))
        }
        (TlbiOp::Asid { .. }, Ok(x)) => Ok(TlbiOp::Asid {
            asid: (x >> 48) as u16,
        }),
        (TlbiOp::Va { asid, .. } | TlbiOp::Range { asid, .. } | TlbiOp::Asid { asid }, Err(_)) => {
            return TlbiOp::Asid { asid }
        }
    };
    decoded.unwrap_or_else(|e| panic!("{op:?} encodes to an operand that does not decode: {e}"))
}

/// How the kernel turns a gather's range into TLBIs.
#[derive(Clone, Copy, Debug)]
pub struct Flusher {
    pub policy: RangePolicy,
    pub features: CpuFeatures,
    /// Bug: plan as if no page-table page had been freed (leaf-only ops
    /// that keep walk-cache entries).
    pub leaf_only: bool,
}

impl Flusher {
    pub fn new(params: PolicyParams, features: CpuFeatures) -> Self {
        Self {
            policy: RangePolicy::new(params),
            features,
            leaf_only: false,
        }
    }

    /// `Mm::flush(r)` for an mm that has run (`ever_active`) with ASID
    /// `asid`: the policy's plan, or the whole ASID if it rejects the
    /// request; nothing for `None`. Ops as the hardware executes them.
    pub fn range(&self, r: Option<FlushRange>, asid: u16) -> Vec<(TlbiOp, Scope)> {
        let Some(mut r) = r else { return Vec::new() };
        if self.leaf_only {
            r.tables_freed = false;
        }
        match self.policy.plan(&r.request(asid), &self.features) {
            Ok(plan) => plan
                .ops()
                .iter()
                .map(|op| (hardware_op(op), plan.scope()))
                .collect(),
            Err(_) => Self::whole_asid(asid),
        }
    }

    /// `Mm::flush_whole_asid`.
    pub fn whole_asid(asid: u16) -> Vec<(TlbiOp, Scope)> {
        vec![(hardware_op(&TlbiOp::Asid { asid }), Scope::Broadcast)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Format = Format {
        levels: 3,
        fanout: 2,
    };

    /// The mirrored zap makes the kernel's writes in the kernel's order, and
    /// the real gather turns them into the range the policy flushes.
    #[test]
    fn zap_edits_follow_the_kernel_and_feed_the_real_gather() {
        let mut m = Memory::new(F, 12);
        let root = m.new_root(1).unwrap();
        for vpn in [0, 1, 2] {
            m.map(1, root, vpn).unwrap();
        }
        // Frames: root 0, level-1 table 1, leaf table 2, data 3 and 4 (pages
        // 0 and 1), leaf table 5 and data 6 (page 2).
        let edits = zap_edits(&m, root, &[(0, 2)]);
        let calls: Vec<GatherCall> = edits.iter().map(|e| apply_clear(&mut m, e)).collect();
        let want = vec![
            GatherCall::ClearLeaf { vpn: 0, pfn: 3 },
            GatherCall::ClearLeaf { vpn: 1, pfn: 4 },
            GatherCall::ClearTable {
                vpn: 0,
                level: 1,
                table: 2,
            },
        ];
        assert_eq!(
            calls, want,
            "expected the leaves, then the emptied table (the level-1 table still maps page 2)"
        );
        assert_eq!(
            m.translate(root, 2).map(|_| ()),
            Some(()),
            "page 2 must survive"
        );
        let r = replay(&calls, F).flush_range().expect("a range");
        assert_eq!(
            (r.start, r.end, r.tables_freed, r.leaf_level),
            (0, 2 * PAGE_SIZE, true, None)
        );
        let ops = Flusher::new(PolicyParams::DEFAULT, CpuFeatures::RANGE_AND_TTL).range(Some(r), 7);
        let want = TlbiOp::Range {
            asid: 7,
            base: 0,
            num: 0,
            scale: 0,
            last_level: false,
            ttl: None,
        };
        assert_eq!(
            ops,
            vec![(want, Scope::Broadcast)],
            "expected one RVAE1IS over 2 pages"
        );
        let mut shared = Vec::new();
        let freed = finish(&calls, &mut m, &mut shared, Some(r));
        assert_eq!(
            freed.len(),
            3,
            "two data frames and one table freed after the flush, saw {freed:?}"
        );
    }

    #[test]
    fn hardware_op_round_trips_through_the_encoder() {
        let ops = [
            TlbiOp::Va {
                asid: 3,
                va: 0x5000,
                last_level: true,
                ttl: Some(3),
            },
            TlbiOp::Range {
                asid: 3,
                base: 0x2000,
                num: 4,
                scale: 1,
                last_level: false,
                ttl: None,
            },
            TlbiOp::Asid { asid: 9 },
            TlbiOp::All,
        ];
        for op in ops {
            assert_eq!(hardware_op(&op), op, "expected {op:?} to survive encoding");
        }
        let bad = TlbiOp::Va {
            asid: 3,
            va: 0x5008,
            last_level: true,
            ttl: None,
        };
        assert_eq!(
            hardware_op(&bad),
            TlbiOp::Asid { asid: 3 },
            "an unencodable op widens to its ASID"
        );
    }
}
