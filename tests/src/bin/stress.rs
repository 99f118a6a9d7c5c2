//! `stress`: the long (or `--quick`) stress run of `scripts/stress.sh`; see
//! `ktest_harness::stress`. Ends with one line: calls, lifecycles, panics,
//! leaks. Exit 0 only if there were no panics, leaks or failures.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use ktest_harness::build::{self, CargoOutput};
use ktest_harness::stress::{self, Plan};

#[derive(Parser)]
#[command(about = "Fuzz the kernel's system calls and churn processes on 4 CPUs, then check for leaks")]
struct Args {
    /// The short form (well under a minute): 50,000 calls, 5,000 lifecycles.
    #[arg(long)]
    quick: bool,
    /// Fuzzer seed (the same seed makes the same calls).
    #[arg(long, default_value_t = 1)]
    seed: u32,
    /// Fuzzer calls instead of the form's.
    #[arg(long)]
    calls: Option<u64>,
    /// Lifecycles of the churn program instead of the form's.
    #[arg(long)]
    lifecycles: Option<u64>,
    /// Time limit in seconds instead of the form's.
    #[arg(long)]
    timeout: Option<u64>,
    /// Echo the console as it comes.
    #[arg(long, short)]
    verbose: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    let mut plan = if a.quick { Plan::quick(a.seed) } else { Plan::long(a.seed) };
    if let Some(c) = a.calls {
        plan.calls = c;
    }
    if let Some(l) = a.lifecycles {
        plan.lifecycles = l;
    }
    if let Some(t) = a.timeout {
        plan.timeout = Duration::from_secs(t);
    }
    let kernel = match build::build_kernel(&build::workspace_root(), CargoOutput::Stream) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("stress: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "stress: {} calls, {} lifecycles, seed {}: -append '{}'",
        plan.calls,
        plan.lifecycles,
        plan.seed,
        plan.append()
    );
    let (summary, command) = match stress::run(&plan, &kernel.image, a.verbose) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stress: cannot start QEMU: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(r) = &summary.resources {
        eprintln!("stress: kernel: {r}");
    }
    for l in &summary.leaks {
        eprintln!("stress: leak: {l}");
    }
    for f in &summary.failures {
        eprintln!("stress: failure: {f}");
    }
    if !summary.passed() {
        eprintln!("stress: QEMU exit status {}; reproduce with:\n  {command}", summary.status);
    }
    println!("{summary}");
    if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
