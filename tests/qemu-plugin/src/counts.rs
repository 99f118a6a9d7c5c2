//! The counters, per vCPU, and the marked regions.
//!
//! Each vCPU's counters are written only by the thread running that vCPU
//! (one host thread per vCPU under MTTCG, one for all under round-robin
//! TCG), so an increment is a relaxed load and store, not a locked
//! read-modify-write; other threads read them (a marker on another vCPU,
//! the report at exit) as relaxed atomic loads.
//!
//! A region is global: a begin marker executed on any vCPU snapshots every
//! vCPU's counters, the end marker snapshots them again, and the region's
//! counts are the differences. The marking vCPU's own counts are exact at
//! both ends; another vCPU's are read at whatever point it has reached.
//! Regions nest: an end marker ends the innermost open region.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::decode::{dsb_completes_tlbi, DSB_SLOTS, TLBI_SLOTS};

/// The counters of one vCPU (padded so that two vCPUs never share a
/// cache line).
#[repr(align(128))]
pub struct Vcpu {
    insns: AtomicU64,
    tlbi: Box<[AtomicU64]>,
    dsb: [AtomicU64; DSB_SLOTS],
    /// DSBs that completed TLB maintenance: a full DSB executed after at
    /// least one TLBI since this vCPU's previous such DSB.
    completing: AtomicU64,
    /// A TLBI executed and no full DSB since.
    tlbi_pending: AtomicBool,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl Vcpu {
    fn new() -> Vcpu {
        Vcpu {
            insns: AtomicU64::new(0),
            tlbi: (0..TLBI_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            dsb: std::array::from_fn(|_| AtomicU64::new(0)),
            completing: AtomicU64::new(0),
            tlbi_pending: AtomicBool::new(false),
        }
    }

    pub fn insns(&self, n: u64) {
        add(&self.insns, n);
    }

    pub fn tlbi(&self, slot: u16) {
        add(&self.tlbi[usize::from(slot) % TLBI_SLOTS], 1);
        self.tlbi_pending.store(true, Ordering::Relaxed);
    }

    pub fn dsb(&self, slot: u8) {
        add(&self.dsb[usize::from(slot) % DSB_SLOTS], 1);
        if dsb_completes_tlbi(slot) && self.tlbi_pending.load(Ordering::Relaxed) {
            add(&self.completing, 1);
            self.tlbi_pending.store(false, Ordering::Relaxed);
        }
    }

    fn snapshot(&self) -> Counts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counts {
            insns: load(&self.insns),
            tlbi: self.tlbi.iter().map(load).collect(),
            dsb: self.dsb.iter().map(load).collect(),
            dsb_completing: load(&self.completing),
        }
    }
}

/// A snapshot of one vCPU's counters, or a difference or sum of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    pub insns: u64,
    /// By slot of [`crate::decode::classify`].
    pub tlbi: Vec<u64>,
    pub dsb: Vec<u64>,
    pub dsb_completing: u64,
}

impl Counts {
    pub fn zero() -> Counts {
        Counts { insns: 0, tlbi: vec![0; TLBI_SLOTS], dsb: vec![0; DSB_SLOTS], dsb_completing: 0 }
    }

    /// `self - earlier` (counters only grow).
    pub fn since(&self, earlier: &Counts) -> Counts {
        let sub = |a: &[u64], b: &[u64]| a.iter().zip(b).map(|(x, y)| x.saturating_sub(*y)).collect();
        Counts {
            insns: self.insns.saturating_sub(earlier.insns),
            tlbi: sub(&self.tlbi, &earlier.tlbi),
            dsb: sub(&self.dsb, &earlier.dsb),
            dsb_completing: self.dsb_completing.saturating_sub(earlier.dsb_completing),
        }
    }

    /// The sum over `all`.
    pub fn sum<'a>(all: impl IntoIterator<Item = &'a Counts>) -> Counts {
        let mut s = Counts::zero();
        for c in all {
            s.insns += c.insns;
            s.dsb_completing += c.dsb_completing;
            s.tlbi.iter_mut().zip(&c.tlbi).for_each(|(a, b)| *a += b);
            s.dsb.iter_mut().zip(&c.dsb).for_each(|(a, b)| *a += b);
        }
        s
    }
}

/// A marked region that ended (or was still open when QEMU exited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// How many regions were open around it (0: outermost).
    pub depth: u32,
    pub begin_vcpu: u32,
    /// `None` if QEMU exited inside the region.
    pub end_vcpu: Option<u32>,
    /// Per vCPU, between the markers.
    pub per_vcpu: Vec<Counts>,
}

struct Open {
    /// Its place among all regions, in the order they began.
    seq: usize,
    vcpu: u32,
    start: Vec<Counts>,
}

#[derive(Default)]
struct Regions {
    /// Innermost last.
    open: Vec<Open>,
    begun: usize,
    closed: Vec<(usize, Region)>,
    /// End markers outside any region.
    unpaired: u64,
}

/// Every vCPU's counters and the regions.
pub struct State {
    vcpus: Vec<Vcpu>,
    regions: Mutex<Regions>,
}

impl State {
    pub fn new(vcpus: usize) -> State {
        State { vcpus: (0..vcpus.max(1)).map(|_| Vcpu::new()).collect(), regions: Mutex::default() }
    }

    /// The counters of `vcpu`, or `None` for an index beyond the machine's
    /// maximum (never, unless QEMU hot-plugs more than it announced).
    pub fn vcpu(&self, vcpu: u32) -> Option<&Vcpu> {
        self.vcpus.get(vcpu as usize)
    }

    pub fn snapshot(&self) -> Vec<Counts> {
        self.vcpus.iter().map(Vcpu::snapshot).collect()
    }

    fn regions(&self) -> std::sync::MutexGuard<'_, Regions> {
        // A panic elsewhere cannot leave the region list inconsistent.
        self.regions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A begin marker executed on `vcpu`.
    pub fn begin(&self, vcpu: u32) {
        let mut r = self.regions();
        let seq = r.begun;
        r.begun += 1;
        r.open.push(Open { seq, vcpu, start: self.snapshot() });
    }

    /// An end marker executed on `vcpu`.
    pub fn end(&self, vcpu: u32) {
        let mut r = self.regions();
        match r.open.pop() {
            Some(open) => {
                let depth = r.open.len() as u32;
                let closed = self.close(open, depth, Some(vcpu));
                r.closed.push(closed);
            }
            None => r.unpaired += 1,
        }
    }

    fn close(&self, open: Open, depth: u32, end_vcpu: Option<u32>) -> (usize, Region) {
        let now = self.snapshot();
        let region = Region {
            depth,
            begin_vcpu: open.vcpu,
            end_vcpu,
            per_vcpu: now.iter().zip(&open.start).map(|(n, s)| n.since(s)).collect(),
        };
        (open.seq, region)
    }

    /// The regions so far in the order they began (those still open are
    /// ended here, without an end vCPU), and the number of end markers
    /// outside any region.
    pub fn regions_at_exit(&self) -> (Vec<Region>, u64) {
        let mut r = self.regions();
        let mut all = r.closed.clone();
        while let Some(open) = r.open.pop() {
            let depth = r.open.len() as u32;
            all.push(self.close(open, depth, None));
        }
        all.sort_by_key(|(seq, _)| *seq);
        let regions = all.into_iter().map(|(_, region)| region).collect();
        (regions, r.unpaired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{classify, Class};

    fn slot(word: u32) -> u16 {
        match classify(word) {
            Class::Tlbi(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn completing_dsbs_follow_tlbis() {
        let s = State::new(2);
        let v = s.vcpu(0).unwrap();
        let (vae1is, ish, ishst, nsh) = (slot(0xd508_8320), 11, 10, 7);
        v.dsb(ish); // nothing to complete
        v.dsb(ishst);
        v.tlbi(vae1is);
        v.tlbi(vae1is);
        v.dsb(ishst); // ST-only: does not complete it
        v.dsb(ish);
        v.dsb(nsh); // nothing left to complete
        s.vcpu(1).unwrap().tlbi(vae1is); // another vCPU's TLBI is its own business
        v.dsb(ish);
        let c = &s.snapshot()[0];
        assert_eq!(c.tlbi[usize::from(vae1is)], 2);
        assert_eq!((c.dsb[11], c.dsb[10], c.dsb[7]), (3, 2, 1));
        assert_eq!(c.dsb_completing, 1);
        assert_eq!(s.snapshot()[1].dsb_completing, 0);
        assert!(s.vcpu(2).is_none());
    }

    #[test]
    fn regions_are_differences_of_snapshots() {
        let s = State::new(2);
        let (v0, v1) = (s.vcpu(0).unwrap(), s.vcpu(1).unwrap());
        v0.insns(10);
        s.end(0); // unpaired
        s.begin(0);
        v0.insns(5);
        v1.insns(7);
        s.begin(1); // nested
        v0.tlbi(3);
        v0.dsb(11);
        s.end(0); // the inner one
        v0.insns(2);
        s.end(1);
        v0.insns(100);
        s.begin(1);
        v1.insns(1);
        let (regions, unpaired) = s.regions_at_exit();
        assert_eq!(unpaired, 1);
        assert_eq!(regions.len(), 3);
        let outer = &regions[0];
        let ends = (outer.depth, outer.begin_vcpu, outer.end_vcpu);
        assert_eq!(ends, (0, 0, Some(1)));
        assert_eq!((outer.per_vcpu[0].insns, outer.per_vcpu[1].insns), (7, 7));
        let v0_counts = &outer.per_vcpu[0];
        assert_eq!((v0_counts.tlbi[3], v0_counts.dsb_completing), (1, 1));
        let total = Counts::sum(&outer.per_vcpu);
        assert_eq!((total.insns, total.dsb[11]), (14, 1));
        let inner = &regions[1];
        assert_eq!((inner.depth, inner.begin_vcpu, inner.end_vcpu), (1, 1, Some(0)));
        assert_eq!((inner.per_vcpu[0].insns, inner.per_vcpu[0].tlbi[3]), (0, 1));
        let open = &regions[2];
        assert_eq!((open.depth, open.begin_vcpu, open.end_vcpu), (0, 1, None));
        assert_eq!((open.per_vcpu[0].insns, open.per_vcpu[1].insns), (0, 1));
    }
}
