//! The secondary MMUs of [`World`] (`Config::devices`): each is bound to
//! `A` at the start, as a driver binds one, with the kernel's calls: `A`'s
//! ASID pinned by the allocator (`AsidAllocator::pin`), then
//! `Mm::subscribe` under the mm lock. From then on the protocol's operations post it
//! invalidations ([`crate::bridge::Bridge`]) and wait for them in `SecWait`.
//!
//! Its steps, each an action at any point: `DevServe` serves the oldest
//! invalidation one CPU posted (after a `release`, the device makes no more
//! accesses), and `DevAccess` reads or writes one page of `A` through the
//! kernel's `DevTlb::translate` (a hit, or a walk of `A`'s tables with the
//! kernel's page-table code and a fill). A device access that faults does
//! nothing (the device's page request, which would run a fault on `A`, is
//! not modelled: CPUs' faults fill pages in).
//!
//! Checked, as for a CPU: an access uses an entry leading to a live data
//! page of `A`, and a write reaches no frame shared copy-on-write (outside
//! a fork's own window); in every state ([`Checks::All`]), every cached
//! entry leads to a live data page of `A` and agrees with `A`'s valid
//! descriptors (break-before-make); with [`Checks::OtherMmOnly`], no
//! cached entry leads into another mm's frame; when a call returns
//! (TLBEmptyInvalPTE), no device holds a translation of the pages it
//! covered that existed when it started and that the tables no longer
//! grant.

use core::fmt::Write as _;

use kernel::mm::space::DevAccess;

use super::*;
use crate::device::Device;
use crate::violation::DevUse;

impl World {
    /// Binds `cfg.devices` devices to `A` (device `d` is `Mm::subscribe`'s
    /// bit `d`), each pinning `A`'s ASID once.
    pub(super) fn bind_devices(&mut self) {
        for d in 0..self.cfg.devices {
            let asid = {
                let hw = Bridge::new(&self.machine, 0, A);
                self.alloc.pin(&hw, &self.mms[SLOT_A].ctx).expect("an ASID to pin for a device")
            };
            let n = self.machine.get_mut().attach_device(Device::new(A as u64, asid));
            assert_eq!(n, d, "devices are numbered as they are attached");
            let a = &self.mms[SLOT_A];
            a.with_aspace(|_| a.subscribe(d));
        }
    }

    /// The devices' steps enabled now.
    pub(super) fn device_actions(&self, out: &mut Vec<Action>) {
        let m = self.machine.borrow();
        for (dev, d) in m.devices().iter().enumerate() {
            for from in d.senders() {
                out.push(Action::DevServe { dev, from });
            }
            if d.bound() {
                for &vpn in &self.cfg.dev_touch {
                    out.push(Action::DevAccess { dev, vpn, write: false });
                    if self.cfg.dev_writes {
                        out.push(Action::DevAccess { dev, vpn, write: true });
                    }
                }
            }
        }
    }

    /// Device `dev` serves the oldest invalidation CPU `from` posted it.
    pub(super) fn dev_serve(&mut self, dev: usize, from: usize) {
        let (inv, dropped) = self.machine.get_mut().device_mut(dev).serve(from).expect("an invalidation to serve");
        inc(&self.coverage.dev_serves);
        let c = &self.coverage.dev_drops;
        c.set(c.get() + dropped as u64);
        if inv.release {
            inc(&self.coverage.dev_releases);
        } else if inv.range.is_none() {
            inc(&self.coverage.dev_whole_asid);
        }
    }

    /// Device `dev` reads or writes page `vpn` of `A` through its cache.
    pub(super) fn dev_access(&mut self, dev: usize, vpn: u64, write: bool) -> Result<(), Violation> {
        let (mut cache, asid) = {
            let d = self.machine.get_mut().device_mut(dev);
            (core::mem::take(&mut d.cache), d.asid)
        };
        let r = {
            // The walk reads the model memory through the bridge (which CPU
            // it names does not matter: a walk allocates nothing).
            let hw = Bridge::new(&self.machine, 0, A);
            // No table of `A` is freed during the call: the model is
            // single-threaded and the call is one step; a freed table is
            // unlinked first, and the bridge panics on a non-table frame.
            // SAFETY: A's tables stay allocated for the call (above).
            unsafe { cache.translate(&self.mms[SLOT_A], asid, va(vpn), write, &hw) }
        };
        self.machine.get_mut().device_mut(dev).cache = cache;
        let e = match r {
            DevAccess::Hit(e) => {
                inc(&self.coverage.dev_hits);
                e
            }
            DevAccess::Filled(e) => {
                inc(&self.coverage.dev_fills);
                e
            }
            DevAccess::Retry => {
                inc(&self.coverage.dev_retries);
                return Ok(());
            }
            DevAccess::Fault => {
                inc(&self.coverage.dev_faults);
                return Ok(());
            }
        };
        if write {
            inc(&self.coverage.dev_writes);
        }
        let pfn = pfn_of(e.pa);
        let m = self.machine.borrow();
        let frame = m.mem().use_of(pfn);
        if frame != (FrameUse::Data { mm: A }) {
            let how = if write { DevUse::Write } else { DevUse::Read };
            return Err(Violation::DeviceStaleTranslation { dev, how, mm: A, asid, vpn, pfn, frame });
        }
        // As for a CPU: a write while a fork is sharing pages but has not
        // completed its flush lands before the fork takes effect.
        let refs = m.mem().refs(pfn);
        if write && refs > 1 && !self.fork_unflushed() {
            return Err(Violation::DeviceWriteToSharedFrame { dev, mm: A, vpn, pfn, refs });
        }
        Ok(())
    }

    /// The devices' entries of `A`'s pages in `pages`: (page, frame,
    /// writable), for a call's snapshot of what exists when it starts.
    pub(super) fn dev_translations(&self, pages: &Range<u64>) -> Vec<(u64, Pfn, bool)> {
        let m = self.machine.borrow();
        let mut v = Vec::new();
        for d in m.devices() {
            for e in d.cache.entries() {
                let vpn = e.page / PAGE_SIZE;
                if pages.contains(&vpn) {
                    v.push((vpn, pfn_of(e.pa), e.writable));
                }
            }
        }
        v
    }

    /// TLBEmptyInvalPTE for the devices when `task` returns (see
    /// `World::returned`): `since` as there. Not once the teardown took
    /// `A`'s tables: what the devices hold then is the teardown's to remove
    /// (its release, acknowledged before it frees anything), not that of a
    /// call that raced it (the reaper's, which then finds nothing to zap).
    pub(super) fn dev_returned(&self, task: &Task, asid: u16, since: &[(u64, Pfn, bool)]) -> Result<(), Violation> {
        if self.a_root().is_none() {
            return Ok(());
        }
        let m = self.machine.borrow();
        for (dev, d) in m.devices().iter().enumerate() {
            for e in d.cache.entries().filter(|e| e.asid == asid) {
                let (vpn, pfn, writable) = (e.page / PAGE_SIZE, pfn_of(e.pa), e.writable);
                if !task.covered.contains(&vpn) {
                    continue;
                }
                let agrees = since.iter().any(|&(sv, sp, sw)| sv == vpn && sp == pfn && (sw || !writable));
                if !agrees && task.old.contains(&(vpn, pfn, writable)) {
                    return Err(Violation::DeviceTlbEmptyInvalPte { dev, mm: A, vpn, asid, pfn, writable });
                }
            }
        }
        Ok(())
    }

    /// In every state: with `all`, every device entry leads to a live data
    /// page of `A` and agrees with a valid descriptor of `A`'s tables for
    /// its page; else only that none leads into another mm's frame.
    pub(super) fn dev_check(&self, all: bool) -> Result<(), Violation> {
        let m = self.machine.borrow();
        let mem = m.mem();
        let root = self.a_root();
        for (dev, d) in m.devices().iter().enumerate() {
            for e in d.cache.entries() {
                let (vpn, pfn) = (e.page / PAGE_SIZE, pfn_of(e.pa));
                let frame = mem.use_of(pfn);
                let stale = match frame {
                    FrameUse::Data { mm: A } => false,
                    FrameUse::Data { mm } | FrameUse::Table { mm, .. } => all || mm != A,
                    FrameUse::Free => all,
                };
                if stale {
                    let how = DevUse::Held;
                    return Err(Violation::DeviceStaleTranslation { dev, how, mm: A, asid: e.asid, vpn, pfn, frame });
                }
                if !all || Some(e.asid) != self.a_asid() {
                    continue;
                }
                if let Some((current, _, _)) = root.and_then(|r| mem.lookup(r, vpn)) {
                    if current != pfn {
                        let (asid, cached) = (e.asid, pfn);
                        return Err(Violation::DeviceBreakBeforeMake { dev, mm: A, asid, vpn, cached, current });
                    }
                }
            }
        }
        Ok(())
    }

    /// The devices, for a state's summary.
    pub(super) fn dev_summary(&self, s: &mut String) {
        let m = self.machine.borrow();
        for (dev, d) in m.devices().iter().enumerate() {
            write!(s, " | dev{dev}: a{}{} cache{{", d.asid, if d.released { " released" } else { "" }).unwrap();
            for e in d.cache.entries() {
                let w = if e.writable { "w" } else { "" };
                write!(s, " a{}:v{}>{}{w}", e.asid, e.page / PAGE_SIZE, pfn_of(e.pa)).unwrap();
            }
            s.push_str(" }");
            for p in &d.inbox {
                write!(s, " inval from cpu{} {:?}", p.from, p.inv).unwrap();
            }
        }
    }
}
