//! Time limits and the other settings of a run.

use std::time::Duration;

/// Time allowed from QEMU's start to the first `# start` line, and between
/// a result and the next `# start` (or QEMU's exit). Generous because a
/// `-smp 4` guest on a 2-core host under TCG boots slowly.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Limit for a test whose record says `timeout_s = 0`.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Added to a test's own limit (`timeout_s`, scaled) before the host kills
/// QEMU: the kernel has no watchdog of its own, so this is slack for a
/// loaded host, not room for the kernel to report first.
pub const HOST_GRACE: Duration = Duration::from_secs(5);
/// Console lines kept in a crash report.
pub const CONSOLE_TAIL: usize = 200;

/// Settings of a run, mostly from the environment.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Multiplies every time limit (`KTEST_TIMEOUT_SCALE`, for slow hosts).
    pub timeout_scale: f64,
    /// Suites booted at once (`KTEST_JOBS`, else the host's parallelism).
    pub jobs: usize,
    /// Echo every console line to stderr (`KTEST_VERBOSE=1`).
    pub verbose: bool,
    /// Added to each test's scaled limit ([`HOST_GRACE`]).
    pub host_grace: Duration,
    /// Kernel options put before every boot's own (`KTEST_APPEND`, e.g.
    /// `tlb.strategy=ipi` to run the whole suite under another strategy).
    pub append: String,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("{var}={value:?} is not a {expected}")]
    Invalid { var: &'static str, value: String, expected: &'static str },
}

impl RunOptions {
    pub fn from_env() -> Result<Self, OptionsError> {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let timeout_scale = match var("KTEST_TIMEOUT_SCALE") {
            None => 1.0,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or(OptionsError::Invalid { var: "KTEST_TIMEOUT_SCALE", value: v, expected: "positive number" })?,
        };
        let jobs = match var("KTEST_JOBS") {
            None => std::thread::available_parallelism().map_or(1, usize::from),
            Some(v) => v.trim().parse().ok().filter(|&j| j > 0).ok_or(OptionsError::Invalid {
                var: "KTEST_JOBS",
                value: v,
                expected: "positive integer",
            })?,
        };
        let verbose = var("KTEST_VERBOSE").is_some_and(|v| v != "0");
        let append = var("KTEST_APPEND").map(|v| v.trim().to_owned()).unwrap_or_default();
        Ok(RunOptions { timeout_scale, jobs, verbose, host_grace: HOST_GRACE, append })
    }

    /// The host-side limit for a test whose record says `timeout_s`.
    pub fn test_timeout(&self, timeout_s: u32) -> Duration {
        let base = if timeout_s == 0 { DEFAULT_TEST_TIMEOUT } else { Duration::from_secs(timeout_s.into()) };
        base.mul_f64(self.timeout_scale) + self.host_grace
    }

    /// The limit until the first `# start` (and between tests).
    pub fn boot_timeout(&self) -> Duration {
        BOOT_TIMEOUT.mul_f64(self.timeout_scale)
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { timeout_scale: 1.0, jobs: 1, verbose: false, append: String::new(), host_grace: HOST_GRACE }
    }
}
