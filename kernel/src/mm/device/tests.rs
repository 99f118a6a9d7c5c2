//! The device over the protocol and real tables on the host: jobs through
//! its cache; an operation that waits for the device between two of its
//! accesses, and serves the inbox itself when the device is idle; fills
//! that retry while a range is being invalidated; mprotect, fork, the
//! teardown's release, unbinding; and `mmu.notifier=late`, which tells the
//! device only after the frame is freed.

use core::cell::{Cell, RefCell};
use std::vec::Vec;

use super::*;
use crate::mm::asid::{AsidAllocator, AsidHw};
use crate::mm::aspace::test_mem::TestMem;
use crate::mm::aspace::{Access as Acc, AddressSpace};
use crate::mm::pagetable::Arm4k;
use crate::mm::space::{Call, MmHw, Op, Pc, Shootdown, Step, TlbConfig};
use crate::mm::tlb::{Event, PolicyParams, Scope, TlbFeatures, TlbiOp};
use abi::{map, prot};

const P: u64 = 4096;
const BASE: u64 = 0x40_0000;
const RW: u64 = prot::READ | prot::WRITE;
const GEN: u64 = 7;

type Dev = DevCore<Arm4k, 4>;

/// One CPU whose secondary invalidations go to one device, and its memory.
struct Rig {
    mem: TestMem,
    dev: Dev,
    /// The ticket of this CPU's last post.
    want: Cell<u64>,
    events: RefCell<Vec<Event>>,
    /// Whether `watched` was still allocated each time the device was told.
    watched: Cell<u64>,
    live_when_told: RefCell<Vec<bool>>,
}

impl AsidHw for Rig {
    fn cpu_id(&self) -> usize {
        0
    }
    fn flush_local_tlb_all(&self) {}
}

impl MmHw for Rig {
    fn issue(&self, _ops: &[TlbiOp], _scope: Scope) {}
    fn complete(&self, _scope: Scope) {}
    fn repeat_tlbi(&self, _op: &TlbiOp) {}
    fn repeat_dsb(&self) {}
    unsafe fn load_ttbr0(&self, _root: u64, _asid: u16) {}
    fn load_reserved(&self) {}
    fn event(&self, e: Event) {
        self.events.borrow_mut().push(e);
    }
    fn publish_tables(&self) {}
    fn send<F: Format>(&self, _mm: &Mm<F>, targets: u64, _req: &Shootdown) {
        panic!("a shootdown to {targets:#x}: nothing else runs the mm");
    }
    fn acked(&self) -> bool {
        true
    }
    fn notify_secondary<F: Format>(&self, _mm: &Mm<F>, devices: u64, inv: &Invalidation) {
        assert_eq!(devices, 1);
        self.events.borrow_mut().push(Event::SecondaryInval);
        self.live_when_told.borrow_mut().push(self.mem.is_live(self.watched.get()));
        self.want.set(self.dev.post(*inv));
    }
    fn secondary_acked(&self) -> bool {
        self.dev.acked(self.want.get())
    }
}

fn cfg() -> TlbConfig {
    TlbConfig::new(PolicyParams::DEFAULT, TlbFeatures::RANGE_AND_TTL)
}

impl Rig {
    fn new() -> Self {
        Rig {
            mem: TestMem::new(),
            dev: DevCore::new(),
            want: Cell::new(0),
            events: RefCell::new(Vec::new()),
            watched: Cell::new(0),
            live_when_told: RefCell::new(Vec::new()),
        }
    }

    /// An mm with `pages` pages mapped RW at `BASE`, each written with its
    /// index in every byte, its ASID pinned, subscribed to the device and
    /// bound to it as binding `GEN`.
    fn bound_mm(&self, pages: u64) -> Box<Mm> {
        let mut a = AddressSpace::new(&self.mem).unwrap();
        let mut g = crate::mm::gather::Gather::new();
        a.mmap(BASE, pages * P, RW, map::FIXED, &self.mem, &mut g, &mut |_| {}).unwrap();
        g.finish(&self.mem, |_| {});
        // Boxed: the device keeps its address.
        let mm = Box::new(Mm::new(1, a));
        for i in 0..pages {
            self.write(&mm, BASE + i * P, &[i as u8; P as usize]);
        }
        let alloc = AsidAllocator::new(4, 1, Default::default()).unwrap();
        let asid = alloc.pin(self, &mm.ctx).unwrap();
        mm.with_aspace(|_| mm.subscribe(0));
        // SAFETY: `mm` outlives every use of the device in these tests and
        // stays subscribed while bound.
        unsafe { self.dev.lock().bind(&mm, asid, GEN) };
        mm
    }

    fn run(&self, mm: &Mm, c: &TlbConfig, call: Call) {
        let mut op = Op::new(call, c);
        mm.run(&mut op, c, self, &self.mem, |_| {});
        assert!(op.outcome().is_ok(), "{call:?}: {:?}", op.outcome());
    }

    fn frame(&self, mm: &Mm, va: u64) -> Option<u64> {
        mm.with_aspace(|a| a.translate(va, &self.mem)).map(crate::mm::pagetable::desc_pa)
    }

    /// The process writes `data` at `va` (faulting the page in or breaking
    /// copy-on-write first, as its CPU would).
    fn write(&self, mm: &Mm, va: u64, data: &[u8]) {
        self.run(mm, &cfg(), Call::Fault { va, access: Acc::Write });
        let pa = self.frame(mm, va).unwrap();
        // SAFETY: a live frame of `mm`, the range inside it.
        unsafe { self.mem.write_data(pa, (va % P) as usize, data) };
    }

    fn read(&self, mm: &Mm, va: u64, len: usize) -> Vec<u8> {
        let pa = self.frame(mm, va).unwrap();
        let mut b = vec![0; len];
        // SAFETY: as in `write`.
        unsafe { self.mem.read_data(pa, (va % P) as usize, &mut b) };
        b
    }

    /// Runs `work` on the device to its end.
    fn job(&self, work: Work) -> Progress {
        let mut r = Run::new(work);
        loop {
            match r.step(&mut self.dev.lock(), &self.mem, GEN) {
                Progress::More => {}
                Progress::Retry => panic!("a retry with nothing else running"),
                p => return p,
            }
        }
    }

    fn counter(&self, i: usize) -> u64 {
        self.dev.counters.get(i)
    }
}

#[test]
fn jobs_move_bytes_through_the_cache_across_pages() {
    let r = Rig::new();
    let mm = r.bound_mm(4);
    let (src, dst, len) = (BASE + 100, BASE + 2 * P + 7, P + 300);
    assert_eq!(r.job(Work::Copy { dst, src, len }), Progress::Done(len));
    let got = r.read(&mm, dst, (P - 7) as usize);
    assert!(got[..(P - 100) as usize].iter().all(|&b| b == 0), "page 0's bytes first");
    assert!(got[(P - 100) as usize..].iter().all(|&b| b == 1));
    assert_eq!(r.read(&mm, BASE + 3 * P, 307), vec![1; 307], "then page 1's");
    assert_eq!(r.read(&mm, BASE + 3 * P + 307, 10), vec![3; 10], "nothing past the end");
    assert_eq!(r.job(Work::Fill { dst: BASE + P, len: P, byte: 0xee }), Progress::Done(P));
    assert_eq!(r.job(Work::Checksum { src: BASE + P, len: P }), Progress::Done(0xee * P));
    // Four entries hold the four pages: each was walked once.
    assert_eq!(r.counter(d::FILLS), 4, "hits: {}", r.counter(d::HITS));
    assert!(r.counter(d::HITS) > 4);
    // An address nothing maps: the job fails, nothing is cached for it.
    let far = BASE + 8 * P;
    assert_eq!(r.job(Work::Checksum { src: far, len: 8 }), Progress::Failed(-abi::errno::EFAULT));
    assert_eq!(r.counter(d::FAULTS), 1);
}

#[test]
fn munmap_waits_for_the_device_between_two_accesses_and_frees_after() {
    let r = Rig::new();
    let mm = r.bound_mm(2);
    let mut watch = Run::new(Work::Watch { src: BASE, progress: BASE + P, ns: 0, through_faults: false });
    assert_eq!(watch.step(&mut r.dev.lock(), &r.mem, GEN), Progress::More);
    let pa = r.frame(&mm, BASE).unwrap();
    let c = cfg();
    let mut op = Op::new(Call::Munmap { addr: BASE, len: P }, &c);
    // The device is in the middle of an access: the munmap posts, flushes,
    // and waits; nothing is freed.
    let held = r.dev.lock();
    let mut blocked = 0;
    while op.step(&mm, &c, &r, &r.mem) != Step::Done {
        if matches!(op.pc(), Pc::SecWait { .. }) {
            blocked += 1;
            if blocked == 3 {
                break;
            }
        }
    }
    assert_eq!(blocked, 3, "the munmap waits at SecWait");
    assert!(r.mem.is_live(pa), "freed while the device was in an access");
    assert_eq!(r.dev.done(), 0);
    // Between two accesses: the device handles the invalidation (and its
    // walk waits while the munmap's range is open), then the frame goes.
    drop(held);
    assert_eq!(watch.step(&mut r.dev.lock(), &r.mem, GEN), Progress::Retry);
    assert_eq!(r.dev.done(), 1);
    while op.step(&mm, &c, &r, &r.mem) != Step::Done {}
    assert!(!r.mem.is_live(pa));
    assert_eq!(watch.step(&mut r.dev.lock(), &r.mem, GEN), Progress::Failed(-abi::errno::EFAULT));
    assert_eq!(watch.report().reads, 1);
    assert_eq!(r.counter(d::INVALS), 1);
    assert_eq!(r.counter(d::DROPPED), 1, "page 0's entry (page 1's stays)");
    assert_eq!(r.counter(d::SERVED_BY_WAITER), 0, "the device served its own inbox");
    assert_eq!(r.events.borrow().iter().filter(|e| **e == Event::SecondaryInval).count(), 1);
    assert_eq!(r.live_when_told.borrow().len(), 1);
}

#[test]
fn a_waiter_serves_an_idle_devices_inbox_itself() {
    let r = Rig::new();
    let mm = r.bound_mm(2);
    assert_eq!(r.job(Work::Checksum { src: BASE, len: 2 * P }), Progress::Done(P));
    assert_eq!(r.dev.lock().cached(), 2);
    // Nobody runs the device: the munmap's own wait handles the inbox.
    r.run(&mm, &cfg(), Call::Munmap { addr: BASE, len: 2 * P });
    assert_eq!(r.counter(d::SERVED_BY_WAITER), 1);
    assert_eq!(r.dev.lock().cached(), 0);
    assert_eq!(r.job(Work::Checksum { src: BASE, len: 8 }), Progress::Failed(-abi::errno::EFAULT));
}

#[test]
fn a_walk_retries_while_a_range_is_being_invalidated() {
    let r = Rig::new();
    let mm = r.bound_mm(1);
    let mut run = Run::new(Work::Checksum { src: BASE, len: 8 });
    mm.range_start();
    assert_eq!(run.step(&mut r.dev.lock(), &r.mem, GEN), Progress::Retry);
    mm.range_end();
    assert_eq!(run.step(&mut r.dev.lock(), &r.mem, GEN), Progress::More);
    assert_eq!(run.step(&mut r.dev.lock(), &r.mem, GEN), Progress::Done(0));
    assert_eq!(r.counter(d::RETRIES), 1);
}

#[test]
fn madvise_drops_the_entry_and_a_refilled_page_reads_zero() {
    let r = Rig::new();
    let mm = r.bound_mm(1);
    r.write(&mm, BASE, &7u64.to_le_bytes());
    let watch = Work::Watch { src: BASE, progress: 0, ns: 0, through_faults: true };
    let mut run = Run::new(watch);
    assert_eq!(run.step(&mut r.dev.lock(), &r.mem, GEN), Progress::More);
    r.run(&mm, &cfg(), Call::Madvise { addr: BASE, len: P, advice: abi::advice::DONTNEED });
    assert_eq!(run.step(&mut r.dev.lock(), &r.mem, GEN), Progress::More, "through the fault");
    r.run(&mm, &cfg(), Call::Fault { va: BASE, access: Acc::Read });
    assert_eq!(run.step(&mut r.dev.lock(), &r.mem, GEN), Progress::More);
    let rep = run.report();
    assert_eq!((rep.reads, rep.faults, rep.changes), (2, 1, 1));
    assert_eq!(rep.values[..rep.logged], [7, 0], "the old value, then the zero page");
}

#[test]
fn mprotect_read_only_makes_device_writes_fail_and_reads_go_on() {
    let r = Rig::new();
    let mm = r.bound_mm(1);
    assert_eq!(r.job(Work::Fill { dst: BASE, len: 64, byte: 1 }), Progress::Done(64));
    r.run(&mm, &cfg(), Call::Mprotect { addr: BASE, len: P, prot: prot::READ });
    assert_eq!(r.job(Work::Fill { dst: BASE, len: 64, byte: 2 }), Progress::Failed(-abi::errno::EFAULT));
    assert_eq!(r.read(&mm, BASE, 64), vec![1; 64]);
    assert_eq!(r.job(Work::Checksum { src: BASE, len: 64 }), Progress::Done(64));
}

#[test]
fn after_fork_device_writes_never_reach_the_childs_copy() {
    let r = Rig::new();
    let mm = r.bound_mm(1);
    // The device caches a writable entry, then the process forks.
    assert_eq!(r.job(Work::Fill { dst: BASE, len: 8, byte: 0xa1 }), Progress::Done(8));
    let c = cfg();
    let mut op = Op::new(Call::Fork, &c);
    mm.run(&mut op, &c, &r, &r.mem, |_| {});
    let child = op.take_child().expect("a child");
    let child_pa = child.translate(BASE, &r.mem).map(crate::mm::pagetable::desc_pa).unwrap();
    // The shared page is read-only now: the device's write faults.
    assert_eq!(r.job(Work::Fill { dst: BASE, len: 8, byte: 0xb2 }), Progress::Failed(-abi::errno::EFAULT));
    // The parent breaks copy-on-write; the device writes its own copy.
    r.write(&mm, BASE + 100, &[0]);
    assert_eq!(r.job(Work::Fill { dst: BASE, len: 8, byte: 0xb2 }), Progress::Done(8));
    let mut b = [0u8; 8];
    // SAFETY: the child's frame is live (the child holds it).
    unsafe { r.mem.read_data(child_pa, 0, &mut b) };
    assert_eq!(b, [0xa1; 8], "the child's copy");
    assert_eq!(r.read(&mm, BASE, 8), vec![0xb2; 8]);
    child.discard(&r.mem);
}

#[test]
fn the_teardown_releases_the_binding() {
    let r = Rig::new();
    let mm = r.bound_mm(2);
    assert_eq!(r.job(Work::Checksum { src: BASE, len: 8 }), Progress::Done(0));
    r.run(&mm, &cfg(), Call::Teardown);
    let mut h = r.dev.lock();
    assert_eq!(h.bound(), None, "released");
    assert_eq!(h.cached(), 0);
    assert_eq!(h.translate(&r.mem, GEN, BASE, false), Access::Gone);
}

#[test]
fn unbinding_drops_the_entries_and_ends_the_bindings_accesses() {
    let r = Rig::new();
    let mm = r.bound_mm(2);
    assert_eq!(r.job(Work::Checksum { src: BASE, len: 2 * P }), Progress::Done(P));
    let mut h = r.dev.lock();
    assert!(!h.unbind(GEN + 1), "another binding");
    assert!(h.unbind(GEN));
    assert_eq!((h.cached(), h.bound()), (0, None));
    assert_eq!(h.translate(&r.mem, GEN, BASE, false), Access::Gone);
    drop(h);
    mm.with_aspace(|_| mm.unsubscribe(0));
    r.run(&mm, &cfg(), Call::Munmap { addr: BASE, len: P });
    assert_eq!(r.dev.done(), 0, "an unsubscribed mm tells the device nothing");
}

#[test]
fn late_notifier_tells_the_device_after_the_frame_is_freed() {
    for late in [false, true] {
        let r = Rig::new();
        let mm = r.bound_mm(1);
        assert_eq!(r.job(Work::Checksum { src: BASE, len: 8 }), Progress::Done(0));
        r.watched.set(r.frame(&mm, BASE).unwrap());
        let mut c = cfg();
        c.notifier_late = late;
        r.run(&mm, &c, Call::Munmap { addr: BASE, len: P });
        // With the notifier as it should be, the device was told while the
        // frame was still allocated; late, only after: until it handled
        // the invalidation, its entry led to a freed frame.
        assert_eq!(*r.live_when_told.borrow(), [!late], "late: {late}");
        assert_eq!(r.counter(d::SERVED_BY_WAITER), u64::from(!late), "nobody waits when late");
    }
}

#[test]
fn bad_jobs_are_refused() {
    use abi::device::*;
    use abi::errno::{EFAULT, EINVAL};
    let job = |kind, dst, src, len, arg| Work::parse(&[kind, dst, src, len, arg]);
    assert_eq!(job(COPY, 0x1000, 0x3000, 0x2000, 0), Ok(Work::Copy { dst: 0x1000, src: 0x3000, len: 0x2000 }));
    assert_eq!(job(COPY, 0x1000, 0x1800, 0x1000, 0), Err(-EINVAL), "overlapping");
    assert_eq!(job(COPY, 0x1000, abi::USER_END - 8, 16, 0), Err(-EFAULT));
    assert_eq!(job(COPY, u64::MAX - 4, 0x1000, 16, 0), Err(-EFAULT), "wrapping");
    assert_eq!(job(FILL, 0x1000, 0, 16, 256), Err(-EINVAL), "not a byte");
    assert_eq!(job(FILL, 0x1000, 0, abi::limits::MAX_COPY_LEN + 1, 0), Err(-EINVAL));
    assert_eq!(job(CHECKSUM, 0, 0x1000, 16, 0), Ok(Work::Checksum { src: 0x1000, len: 16 }));
    assert_eq!(job(CHECKSUM, 0, u64::MAX, 16, 0), Err(-EFAULT));
    let watch = Work::Watch { src: 0x1000, progress: 0x2000, ns: 5, through_faults: true };
    assert_eq!(job(WATCH, 0x2000, 0x1000, 5, WATCH_THROUGH_FAULTS), Ok(watch));
    assert_eq!(job(WATCH, 0x2004, 0x1000, 5, 0), Err(-EINVAL), "misaligned");
    assert_eq!(job(WATCH, 0, 0x1000, abi::limits::MAX_WATCH_NS + 1, 0), Err(-EINVAL));
    assert_eq!(job(WATCH, 0, 0x1000, 5, 2), Err(-EINVAL), "unknown flag");
    assert_eq!(job(WATCH, 0, abi::USER_END, 5, 0), Err(-EFAULT));
    assert_eq!(job(9, 0, 0, 0, 0), Err(-EINVAL));
}
