//! In-kernel tests (run under QEMU by the host harness). Each file is one
//! area; a test is registered with `ktest!` and named `<file>::<fn>`.

mod asid;
mod boot;
mod device;
mod framework;
mod irq;
mod mm;
mod pages;
mod reclaim;
mod repeat;
mod robust;
mod sched;
mod strategy;
mod tlb;
mod user;

/// Lets exited tasks be switched out and dropped on every CPU, so frame
/// counts taken next are settled.
fn settle() {
    crate::task::sched::sleep_ns(20_000_000);
}
