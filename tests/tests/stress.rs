//! The quick stress run (`scripts/stress.sh --quick`) as a test: random
//! system calls and process churn on 4 CPUs with 4-bit ASIDs, then no
//! panic, no failure and every kernel resource back at its baseline.

use ktest_harness::build::{self, CargoOutput};
use ktest_harness::stress::{self, Plan};

#[test]
fn quick_stress_run_has_no_panic_and_no_leak() {
    let kernel = build::build_kernel(&build::workspace_root(), CargoOutput::Capture).expect("kernel build");
    let plan = Plan::quick(1);
    let (s, command) = stress::run(&plan, &kernel.image, false).expect("start QEMU");
    eprintln!("{s}");
    assert!(
        s.passed(),
        "{s}\nleaks: {:?}\nfailures: {:?}\nQEMU exit status {}\nreproduce: {command}",
        s.leaks,
        s.failures,
        s.status
    );
    assert!(s.calls >= plan.calls, "only {} calls", s.calls);
    assert!(s.lifecycles >= plan.lifecycles, "only {} lifecycles", s.lifecycles);
}
