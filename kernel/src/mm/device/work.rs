//! A device's jobs (`abi::device`): copy, fill, checksum and watch, checked
//! from the words a process submits ([`Work::parse`]) and run one access at
//! a time ([`Run::step`]), each access a translation through the device's
//! cache and the bytes of one frame it moves.

use super::{Access, Held};
use crate::mm::pagetable::{Format, PhysMem};
use crate::mm::pte::PAGE_SIZE;
use abi::device as d;
use abi::errno::{EFAULT, EINVAL};
use abi::limits::{MAX_COPY_LEN, MAX_WATCH_NS};

/// Bytes one access moves at most: a CPU waiting for the device's
/// acknowledgement waits for at most one access, so it stays short.
pub const CHUNK: usize = 512;

/// What a job does (the kinds of `abi::device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    Copy {
        dst: u64,
        src: u64,
        len: u64,
    },
    Fill {
        dst: u64,
        len: u64,
        byte: u8,
    },
    Checksum {
        src: u64,
        len: u64,
    },
    /// Reads the word at `src` for `ns` nanoseconds (the caller keeps the
    /// time), writing the count of reads to `progress` (0: nowhere).
    Watch {
        src: u64,
        progress: u64,
        ns: u64,
        through_faults: bool,
    },
}

/// `len` bytes at `addr` lie in user space.
fn user_range(addr: u64, len: u64) -> Result<(), i64> {
    match addr.checked_add(len) {
        Some(end) if end <= abi::USER_END => Ok(()),
        _ => Err(-EFAULT),
    }
}

impl Work {
    /// The job `w` describes, checked as `abi::nr::DEV_SUBMIT` says.
    pub fn parse(w: &[u64; d::JOB_WORDS]) -> Result<Work, i64> {
        let (dst, src, len, arg) = (w[d::DST], w[d::SRC], w[d::LEN], w[d::ARG]);
        let work = match w[d::KIND] {
            d::COPY => {
                if len > 0 && dst < src.wrapping_add(len) && src < dst.wrapping_add(len) {
                    return Err(-EINVAL);
                }
                Work::Copy { dst, src, len }
            }
            d::FILL => Work::Fill { dst, len, byte: u8::try_from(arg).map_err(|_| -EINVAL)? },
            d::CHECKSUM => Work::Checksum { src, len },
            d::WATCH => {
                let aligned = src % 8 == 0 && dst % 8 == 0;
                if !aligned || len > MAX_WATCH_NS || arg & !d::WATCH_THROUGH_FAULTS != 0 {
                    return Err(-EINVAL);
                }
                user_range(src, 8)?;
                if dst != 0 {
                    user_range(dst, 8)?;
                }
                return Ok(Work::Watch { src, progress: dst, ns: len, through_faults: arg != 0 });
            }
            _ => return Err(-EINVAL),
        };
        if len > MAX_COPY_LEN {
            return Err(-EINVAL);
        }
        match work {
            Work::Copy { .. } => user_range(dst, len).and(user_range(src, len))?,
            Work::Fill { .. } => user_range(dst, len)?,
            _ => user_range(src, len)?,
        }
        Ok(work)
    }
}

/// What a watch saw (`abi::device`'s report words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WatchReport {
    pub reads: u64,
    pub faults: u64,
    pub changes: u64,
    pub logged: usize,
    pub values: [u64; d::REPORT_MAX_VALUES],
    last: Option<u64>,
}

impl WatchReport {
    fn record(&mut self, v: u64) {
        self.reads += 1;
        if self.last == Some(v) {
            return;
        }
        if self.last.is_some() {
            self.changes += 1;
        }
        self.last = Some(v);
        if self.logged < self.values.len() {
            self.values[self.logged] = v;
            self.logged += 1;
        }
    }

    pub fn words(&self) -> [u64; d::REPORT_WORDS] {
        let mut w = [0; d::REPORT_WORDS];
        w[d::REPORT_READS] = self.reads;
        w[d::REPORT_FAULTS] = self.faults;
        w[d::REPORT_CHANGES] = self.changes;
        w[d::REPORT_LOGGED] = self.logged as u64;
        w[d::REPORT_VALUES..].copy_from_slice(&self.values);
        w
    }
}

/// What one step of a job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// One access made; more to do.
    More,
    /// Nothing done: an invalidation is open; let go of the lock and step
    /// again.
    Retry,
    /// Finished with this result.
    Done(u64),
    /// Failed with `-errno`.
    Failed(i64),
}

/// A job in progress.
#[derive(Clone, Debug)]
pub struct Run {
    work: Work,
    /// Bytes done so far.
    done: u64,
    sum: u64,
    report: WatchReport,
}

/// `va`'s offset in its page, and the bytes from `va` to the page's end.
fn in_page(va: u64) -> (usize, u64) {
    let off = va % PAGE_SIZE;
    (off as usize, PAGE_SIZE - off)
}

impl Run {
    pub fn new(work: Work) -> Self {
        Run { work, done: 0, sum: 0, report: WatchReport::default() }
    }

    pub fn work(&self) -> Work {
        self.work
    }

    pub fn report(&self) -> &WatchReport {
        &self.report
    }

    /// A watch's result: its reads so far.
    pub fn reads(&self) -> u64 {
        self.report.reads
    }

    /// One access of binding `gen` through `h`: at most [`CHUNK`] bytes, in
    /// one frame of each range.
    pub fn step<F: Format, M: PhysMem, const N: usize>(
        &mut self,
        h: &mut Held<'_, F, N>,
        mem: &M,
        gen: u64,
    ) -> Progress {
        let mut buf = [0u8; CHUNK];
        let (len, at) = match self.work {
            Work::Copy { len, .. } | Work::Fill { len, .. } | Work::Checksum { len, .. } => (len, self.done),
            Work::Watch { src, progress, through_faults, .. } => {
                return self.watch(h, mem, gen, src, progress, through_faults)
            }
        };
        if at == len {
            return Progress::Done(if matches!(self.work, Work::Checksum { .. }) { self.sum } else { len });
        }
        let mut n = (len - at).min(CHUNK as u64);
        let (src, dst) = match self.work {
            Work::Copy { dst, src, .. } => (Some(src + at), Some(dst + at)),
            Work::Fill { dst, .. } => (None, Some(dst + at)),
            Work::Checksum { src, .. } => (Some(src + at), None),
            Work::Watch { .. } => unreachable!("a watch steps in `watch`"),
        };
        for va in src.iter().chain(&dst) {
            n = n.min(in_page(*va).1);
        }
        let n = n as usize;
        let from = match src.map(|va| (va, h.translate(mem, gen, va, false))) {
            None => None,
            Some((va, Access::Frame(pa))) => Some((pa, in_page(va).0)),
            Some((_, a)) => return Self::not_there(a),
        };
        let to = match dst.map(|va| (va, h.translate(mem, gen, va, true))) {
            None => None,
            Some((va, Access::Frame(pa))) => Some((pa, in_page(va).0)),
            Some((_, a)) => return Self::not_there(a),
        };
        let data = &mut buf[..n];
        if let Some((pa, off)) = from {
            // `pa` came from `translate` under the lock `h` holds (except
            // under `mmu.notifier=late`, which breaks this on purpose).
            // SAFETY: `pa` is allocated until `h` drops; `off + n` <= 4096.
            unsafe { mem.read_data(pa, off, data) };
        }
        match self.work {
            Work::Fill { byte, .. } => data.fill(byte),
            Work::Checksum { .. } => self.sum += data.iter().map(|&b| u64::from(b)).sum::<u64>(),
            _ => {}
        }
        if let Some((pa, off)) = to {
            // SAFETY: as above, for a translation that allows the write.
            unsafe { mem.write_data(pa, off, data) };
        }
        self.done += n as u64;
        Progress::More
    }

    fn not_there(a: Access) -> Progress {
        match a {
            Access::Retry => Progress::Retry,
            Access::Fault | Access::Gone | Access::Frame(_) => Progress::Failed(-EFAULT),
        }
    }

    /// One read of a watch, then the count of reads written to `progress`.
    fn watch<F: Format, M: PhysMem, const N: usize>(
        &mut self,
        h: &mut Held<'_, F, N>,
        mem: &M,
        gen: u64,
        src: u64,
        progress: u64,
        through_faults: bool,
    ) -> Progress {
        match h.translate(mem, gen, src, false) {
            Access::Frame(pa) => {
                let mut b = [0u8; 8];
                // SAFETY: as in `step`; `src` is 8-byte aligned, so the word
                // lies in its page.
                unsafe { mem.read_data(pa, in_page(src).0, &mut b) };
                self.report.record(u64::from_le_bytes(b));
            }
            Access::Fault if through_faults => {
                self.report.faults += 1;
                return Progress::More;
            }
            a => return Self::not_there(a),
        }
        if progress == 0 {
            return Progress::More;
        }
        match h.translate(mem, gen, progress, true) {
            Access::Frame(pa) => {
                // SAFETY: as above, for a translation that allows the write.
                unsafe { mem.write_data(pa, in_page(progress).0, &self.report.reads.to_le_bytes()) };
                Progress::More
            }
            // The count is written at the next read.
            Access::Retry => Progress::More,
            Access::Fault if through_faults => Progress::More,
            a => Self::not_there(a),
        }
    }
}
