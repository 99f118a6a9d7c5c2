//! The in-kernel tests as libtest trials (`harness = false`).
//!
//! Builds the kernel, reads its `.ktests` section and makes one trial per
//! test, named exactly as the kernel names it, so `--list`, `cargo test NAME`,
//! `--skip` and `--exact` behave as usual. The selected tests run up front,
//! one QEMU boot per suite, suites in parallel; the trials then report the
//! recorded results. `--list` never starts QEMU.
//!
//! Environment: `KTEST_TIMEOUT_SCALE` (multiplies time limits), `KTEST_JOBS`
//! (parallel boots), `KTEST_VERBOSE=1` (echo consoles), `KTEST_QEMU` (binary),
//! `KTEST_APPEND` (kernel options before every boot's own).

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use ktest_harness::build::{self, CargoOutput};
use ktest_harness::ktests::{self, KTest};
use ktest_harness::suite::{self, RunOptions};
use ktest_harness::trials;
use libtest_mimic::{Arguments, Trial};

fn main() -> ExitCode {
    let args = Arguments::from_args();
    match make_trials(&args) {
        Ok(trials) => libtest_mimic::run(&args, trials).exit_code(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(101)
        }
    }
}

fn make_trials(args: &Arguments) -> anyhow::Result<Vec<Trial>> {
    if !args.list {
        eprintln!("ktest: building the kernel (the first build also compiles `core`)");
    }
    let kernel = build::build_kernel(&build::workspace_root(), CargoOutput::Capture)?;
    let list = ktests::read(&kernel.elf).with_context(|| format!("reading the tests of {}", kernel.elf.display()))?;
    let selected: Vec<&KTest> = list.tests.iter().filter(|t| trials::is_selected(args, &t.name)).collect();
    let mut outcomes = HashMap::new();
    if !args.list && !selected.is_empty() {
        let opts = RunOptions::from_env()?;
        let suites = suite::group(selected.iter().copied());
        eprintln!(
            "ktest: {} of {} in-kernel tests selected: {} QEMU boots, {} at a time",
            selected.len(),
            list.tests.len(),
            suites.len(),
            opts.jobs.min(suites.len())
        );
        let results = suite::run_suites(&suites, &kernel.image, &opts);
        outcomes.extend(results.into_iter().map(|o| (o.name.clone(), o)));
    }
    Ok(trials::trials(&list.tests, outcomes, args.nocapture || args.show_output))
}
