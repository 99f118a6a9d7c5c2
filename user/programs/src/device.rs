//! Helpers for the programs that drive the secondary-MMU devices
//! (`abi::device`): jobs as the kernel reads them, and a job's report.

use core::sync::atomic::{AtomicU64, Ordering};

use ulib::abi::device as d;
use ulib::{sys, Errno};

pub type Job = [u64; d::JOB_WORDS];

pub fn job(kind: u64, dst: u64, src: u64, len: u64, arg: u64) -> Job {
    let mut j = [0; d::JOB_WORDS];
    j[d::KIND] = kind;
    j[d::DST] = dst;
    j[d::SRC] = src;
    j[d::LEN] = len;
    j[d::ARG] = arg;
    j
}

pub fn copy(dst: u64, src: u64, len: u64) -> Job {
    job(d::COPY, dst, src, len, 0)
}

pub fn fill(dst: u64, len: u64, byte: u8) -> Job {
    job(d::FILL, dst, 0, len, u64::from(byte))
}

pub fn checksum(src: u64, len: u64) -> Job {
    job(d::CHECKSUM, 0, src, len, 0)
}

/// A watch of the word at `src` for `ns` nanoseconds, counting its reads
/// at `progress` (0: nowhere).
pub fn watch(src: u64, progress: u64, ns: u64, through_faults: bool) -> Job {
    job(d::WATCH, progress, src, ns, if through_faults { d::WATCH_THROUGH_FAULTS } else { 0 })
}

/// A job's report (`abi::device`'s `REPORT_*` words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub reads: u64,
    pub faults: u64,
    pub changes: u64,
    logged: usize,
    values: [u64; d::REPORT_MAX_VALUES],
}

impl Report {
    fn from_words(w: &[u64; d::REPORT_WORDS]) -> Report {
        let mut values = [0; d::REPORT_MAX_VALUES];
        values.copy_from_slice(&w[d::REPORT_VALUES..]);
        Report {
            reads: w[d::REPORT_READS],
            faults: w[d::REPORT_FAULTS],
            changes: w[d::REPORT_CHANGES],
            logged: (w[d::REPORT_LOGGED] as usize).min(d::REPORT_MAX_VALUES),
            values,
        }
    }

    /// The values the watch saw: the first, then each change, in order
    /// (the first `REPORT_MAX_VALUES` of them).
    pub fn values(&self) -> &[u64] {
        &self.values[..self.logged]
    }
}

/// Waits for job `id` of `dev` (with `flags`): its result and report.
pub fn wait(dev: u64, id: u64, flags: u64) -> (Result<u64, Errno>, Report) {
    let mut w = [0; d::REPORT_WORDS];
    let r = sys::dev_wait(dev, id, Some(&mut w), flags);
    (r, Report::from_words(&w))
}

/// Spins until `word` reaches `at_least` or `ns` nanoseconds pass; whether
/// it did.
pub fn wait_until_at_least(word: &AtomicU64, at_least: u64, ns: u64) -> bool {
    let give_up = sys::time_ns() + ns;
    while word.load(Ordering::Acquire) < at_least {
        if sys::time_ns() > give_up {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Device `dev`'s counters (`stats(DEVICE + dev)`).
pub fn counters(dev: u64) -> Result<[u64; d::STAT_COUNT], Errno> {
    let mut w = [0; d::STAT_COUNT];
    sys::stats(ulib::abi::stats::DEVICE + dev, &mut w)?;
    Ok(w)
}
