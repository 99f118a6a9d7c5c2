//! The kernel's two hardware-facing interfaces over the model machine, so
//! the kernel's own code runs on it: [`PhysMem`] (frames, their reference
//! counts, descriptors, swap slots) and [`MmHw`] / [`AsidHw`] (TLBIs, DSBs, TTBR0,
//! shootdown IPIs, event counts) for one model CPU.
//!
//! A DSB completes what its scope reaches (`DSB NSH` for `Scope::Local`:
//! only this CPU's local TLBIs). An IPI is a request left in its target's
//! inbox in the machine ([`Machine::post`]): the model system lets the
//! target serve it (the kernel's `shootdown::serve`) at any point, and
//! [`MmHw::acked`] holds once every request this CPU sent was served. An
//! invalidation for secondary MMUs is left in each device's inbox
//! ([`Machine::post_secondary`]) and [`MmHw::secondary_acked`] holds once
//! every one this CPU posted was served. A
//! TTBR0 load is followed by a check of what a walk starting at once could
//! read ([`Machine::check_walks`], latched): the hardware may walk from the
//! new TTBR0 before the kernel's next instruction.
//!
//! A TLBI goes through the kernel's operand encoder (`tlb::range::encode`)
//! and the model executes what the hardware decodes from the operand, so an
//! encoding bug shows as a wrong invalidation. Frames are allocated lowest
//! first, so freed ones are reused at once (the worst case).

use core::cell::RefCell;

use kernel::mm::asid::AsidHw;
use kernel::mm::pagetable::{Format, PhysMem};
use kernel::mm::space::{Invalidation, Mm, MmHw, Shootdown};
use kernel::mm::tlb::{range, Event, Scope, TlbiOp};

use super::device::Posted;
use super::machine::{Ipi, Machine, Ttbr0};
use super::mem::{pa_of, pfn_of, FrameUse, MmTag};

/// What the hardware executes for `op`: its operand encoded by the kernel's
/// encoder and decoded as the architecture does. An operand that cannot be
/// encoded is widened to the whole ASID, as `arch::tlbi` does.
pub fn hardware_op(op: &TlbiOp) -> TlbiOp {
    let decoded = match (*op, range::encode(op)) {
        (TlbiOp::All, _) => return TlbiOp::All,
        (TlbiOp::Va { last_level, .. }, Ok(x)) => range::decode_va(x).map(|o| o.to_op(last_level)),
        (TlbiOp::Range { last_level, .. }, Ok(x)) => range::decode_range(x).map(|o| o.to_op(last_level)),
        (TlbiOp::Asid { .. }, Ok(x)) => Ok(TlbiOp::Asid { asid: (x >> 48) as u16 }),
        (TlbiOp::Va { asid, .. } | TlbiOp::Range { asid, .. } | TlbiOp::Asid { asid }, Err(_)) => {
            return TlbiOp::Asid { asid }
        }
    };
    decoded.unwrap_or_else(|e| panic!("{op:?} encodes to an operand that does not decode: {e}"))
}

/// Hardware bugs of the sequences `arch` implements (the kernel's mm code
/// cannot inject those).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HwBugs {
    /// TTBR0 switches end with the ISB but no DSB.
    pub ttbr_without_dsb: bool,
}

/// One model CPU and the machine's memory, as the kernel sees them. `mm` is
/// the ghost tag frames it allocates get.
pub struct Bridge<'a> {
    pub m: &'a RefCell<Machine>,
    pub cpu: usize,
    pub mm: MmTag,
    pub bugs: HwBugs,
}

impl<'a> Bridge<'a> {
    pub fn new(m: &'a RefCell<Machine>, cpu: usize, mm: MmTag) -> Self {
        Bridge { m, cpu, mm, bugs: HwBugs::default() }
    }

    fn table_level(&self, pa: u64) -> u8 {
        match self.m.borrow().mem().use_of(pfn_of(pa)) {
            FrameUse::Table { level, .. } => level,
            other => panic!("descriptor access to frame {} ({other:?}), not a table", pfn_of(pa)),
        }
    }
}

impl AsidHw for Bridge<'_> {
    fn cpu_id(&self) -> usize {
        self.cpu
    }

    fn flush_local_tlb_all(&self) {
        let mut m = self.m.borrow_mut();
        m.issue(self.cpu, TlbiOp::All, Scope::Local);
        m.dsb_scope(self.cpu, Scope::Local);
    }
}

impl MmHw for Bridge<'_> {
    /// A request in each target's inbox (the kernel's transport serves one
    /// sent to this CPU itself at once: the model system does that right
    /// after the step that sent it). CPUs the machine does not have are
    /// offline: skipped, as the kernel's transport does.
    fn send<F: Format>(&self, mm: &Mm<F>, targets: u64, req: &Shootdown) {
        let mut m = self.m.borrow_mut();
        for t in (0..m.ncpus()).filter(|t| targets & 1 << t != 0) {
            m.post(t, Ipi { from: self.cpu, mm: mm.id, req: *req });
            if t != self.cpu {
                m.stats().record_event(self.cpu, Event::IpiSent);
            }
        }
    }

    fn acked(&self) -> bool {
        self.m.borrow().acked(self.cpu)
    }

    /// The model's page-table writes are seen by its walkers at once.
    fn publish_tables(&self) {}

    /// An entry in each device's inbox, counted per device. A subscriber
    /// the machine does not have is a bug of the model system.
    fn notify_secondary<F: Format>(&self, mm: &Mm<F>, devices: u64, inv: &Invalidation) {
        let mut m = self.m.borrow_mut();
        let n = m.devices().len();
        assert!(devices >> n == 0, "subscribers {devices:#x} of mm{}, the machine has {n} devices", mm.id);
        for dev in (0..n).filter(|d| devices & 1 << d != 0) {
            m.post_secondary(dev, Posted { from: self.cpu, mm: mm.id, inv: *inv });
            m.stats().record_event(self.cpu, Event::SecondaryInval);
        }
    }

    fn secondary_acked(&self) -> bool {
        self.m.borrow().secondary_acked(self.cpu)
    }

    fn issue(&self, ops: &[TlbiOp], scope: Scope) {
        let mut m = self.m.borrow_mut();
        for op in ops {
            m.issue(self.cpu, hardware_op(op), scope);
        }
    }

    fn complete(&self, scope: Scope) {
        self.m.borrow_mut().dsb_scope(self.cpu, scope);
    }

    /// The repeat-TLBI workaround's TLBI: an ordinary broadcast
    /// invalidation here (the errata it works around are about completion
    /// on real cores, which the model's TLBs do not have).
    fn repeat_tlbi(&self, op: &TlbiOp) {
        self.m.borrow_mut().issue(self.cpu, hardware_op(op), Scope::Broadcast);
    }

    /// The workaround's `DSB ISH`: completes this CPU's TLBIs.
    fn repeat_dsb(&self) {
        self.m.borrow_mut().dsb_scope(self.cpu, Scope::Broadcast);
    }

    unsafe fn load_ttbr0(&self, root: u64, asid: u16) {
        let mut m = self.m.borrow_mut();
        let mm = match m.mem().use_of(pfn_of(root)) {
            FrameUse::Table { mm, level: 0 } => mm,
            other => panic!("TTBR0 loaded with frame {} ({other:?}), not a root table", pfn_of(root)),
        };
        let t = Ttbr0::user(pfn_of(root), asid, mm);
        if self.bugs.ttbr_without_dsb {
            m.set_ttbr0_no_dsb(self.cpu, t);
        } else {
            m.set_ttbr0(self.cpu, t);
        }
        if let Err(v) = m.check_walks(self.cpu) {
            m.latch(v);
        }
    }

    fn load_reserved(&self) {
        let mut m = self.m.borrow_mut();
        if self.bugs.ttbr_without_dsb {
            m.set_ttbr0_no_dsb(self.cpu, Ttbr0::RESERVED);
        } else {
            m.set_ttbr0(self.cpu, Ttbr0::RESERVED);
        }
    }

    fn event(&self, e: Event) {
        self.m.borrow().stats().record_event(self.cpu, e);
    }
}

impl PhysMem for Bridge<'_> {
    fn alloc_zeroed(&self) -> Option<u64> {
        self.m.borrow_mut().mem_mut().alloc(FrameUse::Data { mm: self.mm }).map(pa_of)
    }

    /// The lowest aligned run of free frames (see `Memory::alloc_contig`),
    /// for a block or a contiguous run; freed one by one (the default
    /// `free_contig`).
    fn alloc_contig(&self, order: u32) -> Option<u64> {
        self.m.borrow_mut().mem_mut().alloc_contig(order, FrameUse::Data { mm: self.mm }).map(pa_of)
    }

    fn alloc_table(&self, level: u32) -> Option<u64> {
        let mut m = self.m.borrow_mut();
        let level = m.mem().format().model_level(level);
        m.mem_mut().alloc(FrameUse::Table { mm: self.mm, level }).map(pa_of)
    }

    fn free(&self, pa: u64) {
        self.m.borrow_mut().mem_mut().free(pfn_of(pa));
    }

    fn get(&self, pa: u64) {
        let mut m = self.m.borrow_mut();
        let n = m.mem().refs(pfn_of(pa));
        assert!(n > 0, "get of frame {} with no reference", pfn_of(pa));
        m.mem_mut().set_refs(pfn_of(pa), n + 1);
    }

    fn put(&self, pa: u64) -> bool {
        let mut m = self.m.borrow_mut();
        let n = m.mem().refs(pfn_of(pa));
        assert!(n > 0, "put of frame {} with no reference", pfn_of(pa));
        m.mem_mut().set_refs(pfn_of(pa), n - 1);
        n == 1
    }

    fn refs(&self, pa: u64) -> u32 {
        self.m.borrow().mem().refs(pfn_of(pa)) as u32
    }

    fn swap_alloc(&self) -> Option<u64> {
        self.m.borrow_mut().mem_mut().swap_alloc()
    }

    fn swap_write(&self, slot: u64, pa: u64) {
        self.m.borrow_mut().mem_mut().swap_write(slot, pfn_of(pa));
    }

    fn swap_read(&self, slot: u64, pa: u64) -> bool {
        let mut m = self.m.borrow_mut();
        let Some(w) = m.mem().swap_read(slot) else { return false };
        m.mem_mut().words_mut(pfn_of(pa))[0] = w;
        true
    }

    fn swap_dup(&self, slot: u64) {
        self.m.borrow_mut().mem_mut().swap_ref(slot, true);
    }

    fn swap_free(&self, slot: u64) {
        self.m.borrow_mut().mem_mut().swap_ref(slot, false);
    }

    unsafe fn load_desc(&self, table: u64, idx: usize) -> u64 {
        let _ = self.table_level(table);
        self.m.borrow().mem().words(pfn_of(table))[idx]
    }

    unsafe fn store_desc(&self, table: u64, idx: usize, desc: u64) {
        let _ = self.table_level(table);
        self.m.borrow_mut().mem_mut().words_mut(pfn_of(table))[idx] = desc;
    }

    unsafe fn read_data(&self, pa: u64, _off: usize, buf: &mut [u8]) {
        // The model keeps one word of contents per data frame.
        let w = self.m.borrow().mem().words(pfn_of(pa))[0];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (w >> (8 * (i % 8))) as u8;
        }
    }

    unsafe fn write_data(&self, pa: u64, _off: usize, data: &[u8]) {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(data) {
            *d = *s;
        }
        self.m.borrow_mut().mem_mut().words_mut(pfn_of(pa))[0] = u64::from_le_bytes(w);
    }

    unsafe fn copy_page(&self, dst: u64, src: u64) {
        let mut m = self.m.borrow_mut();
        let w = m.mem().words(pfn_of(src))[0];
        m.mem_mut().words_mut(pfn_of(dst))[0] = w;
    }
}
