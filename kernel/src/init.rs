//! `kernel_main`: from the first instruction at the high address to the
//! workload or the test run.

use core::sync::atomic::Ordering;

use crate::arch::cpu::{self, CpuFeatures};
use crate::arch::early::BOOT_INFO;
use crate::arch::layout::{phys_to_virt, DTB_VA};
use crate::cmdline::{self, Options, TestSelection, Workload};
use crate::mm::{frame, kernel as kmm};
use crate::{irq, percpu, smp, BOARD, FEATURES, OPTIONS};
use platform::{gic, semihost, uart, BoardInfo};

fn die(args: core::fmt::Arguments, status: i32) -> ! {
    crate::console::print_panic(format_args!("kernel: {args}\n"));
    semihost::exit(status)
}

#[no_mangle]
extern "C" fn kernel_main(_dtb_pa: u64, _image_pa: u64) -> ! {
    crate::trap::init();
    // SAFETY: written once with the MMU off, read-only from now on.
    let info = unsafe { &*(&raw const BOOT_INFO) };
    if info.error != 0 {
        die(format_args!("building the boot page tables failed (step {})", info.error), semihost::EXIT_CRASH);
    }
    if info.dtb_size == 0 {
        die(format_args!("no device tree in x0 at entry"), semihost::EXIT_CRASH);
    }
    // SAFETY: the boot tables map the DTB read-only at DTB_VA for its size.
    let blob =
        unsafe { core::slice::from_raw_parts((DTB_VA + (info.dtb_pa & 0xfff)) as *const u8, info.dtb_size as usize) };
    let board = match BoardInfo::from_fdt(blob) {
        Ok(b) => b,
        Err(e) => die(format_args!("device tree: {e}"), semihost::EXIT_CRASH),
    };
    if let Err(e) = kmm::map_linear(&board) {
        die(format_args!("linear map: {e}"), semihost::EXIT_CRASH);
    }
    // SAFETY: the UART's registers are mapped as device memory in the linear
    // map from now on, and nothing else drives it.
    unsafe { uart::init(phys_to_virt(board.uart.base)) };
    let heap = match kmm::init_memory(&board) {
        Ok(h) => h,
        Err(e) => die(format_args!("memory: {e}"), semihost::EXIT_CRASH),
    };
    let opts = match cmdline::parse(board.bootargs()) {
        Ok(o) => o,
        Err(e) => die(format_args!("command line: {e}"), semihost::EXIT_USAGE),
    };
    crate::console::init_log(opts.log);
    let features = CpuFeatures::detect();
    let board = BOARD.call_once(|| board);
    FEATURES.call_once(|| features);
    let opts = OPTIONS.call_once(|| opts);
    kmm::enter_empty_ttbr0();
    cpu::init_user_access();
    let ram_start = board.memory().iter().map(|r| r.base).min().unwrap_or(0);
    let ram_end = board.memory().iter().map(|r| r.end()).max().unwrap_or(0);
    crate::mm::phys::init(ram_start, ram_end);
    if let Err(e) = crate::mm::phys::init_swap(opts.swap_slots as usize) {
        let msg = format_args!("command line: swap.slots={}: no run of that many free frames", e.slots);
        die(msg, semihost::EXIT_USAGE);
    }
    let asid_bits = opts.asid_bits.unwrap_or(features.asid_bits);
    if asid_bits > features.asid_bits {
        die(
            format_args!("command line: asid_bits={asid_bits} exceeds the hardware's {} bits", features.asid_bits),
            semihost::EXIT_USAGE,
        );
    }
    match crate::mm::asid::AsidAllocator::new(asid_bits, board.ncpus, Default::default()) {
        Ok(a) => {
            crate::mm::user::ASIDS.call_once(|| a);
        }
        Err(e) => die(format_args!("ASID allocator: {e}"), semihost::EXIT_USAGE),
    }
    if let Err(e) = crate::mm::tlb::trace::hook::init(&opts.trace, board.ncpus) {
        die(format_args!("command line: trace: {e}"), semihost::EXIT_USAGE);
    }
    percpu::get(0).mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    percpu::get(0).online.store(true, Ordering::Release);

    // SAFETY: the GIC frames are mapped as device memory in the linear map.
    if let Err(e) = unsafe { gic::init(phys_to_virt(board.gicd.base), phys_to_virt(board.gicr.base), board.ncpus, 0) } {
        die(format_args!("GIC: {e}"), semihost::EXIT_CRASH);
    }
    if let Some(kb) = opts.heap_reserve_kb {
        crate::mm::heap::HEAP.set_reserve((kb as usize) << 10);
    }
    irq::set_tick_hz(opts.tick_hz);
    irq::init_cpu(0);
    crate::task::sched::init_cpu(0, "main", false);
    cpu::irq_enable();
    let online = smp::start_secondaries();
    crate::task::reaper::start();
    if let Err(e) = crate::task::device::start(&opts.dev_cpus, online) {
        die(format_args!("command line: {e}"), semihost::EXIT_USAGE);
    }
    banner(board, &features, online, heap.size, info.entry_el);

    if opts.list_tests {
        crate::test::runner_list();
        semihost::exit(semihost::EXIT_PASS);
    }
    if opts.tests != TestSelection::None {
        crate::test::run(&opts.tests);
    }
    let status = match opts.workload {
        Workload::SelfCheck => crate::selfcheck::run(online, board.ncpus),
        Workload::None => semihost::EXIT_PASS,
        Workload::Programs(ref progs) => run_programs(progs),
    };
    crate::mm::tlb::trace::hook::dump();
    semihost::exit(status)
}

fn banner(board: &BoardInfo, f: &CpuFeatures, online: usize, heap: u64, entry_el: u64) {
    let mem_mib = board.total_memory() >> 20;
    crate::kprintln!("tlbkernel {} — TLB maintenance, seen and measured", env!("CARGO_PKG_VERSION"));
    crate::kprintln!(
        "cpu: {} (MIDR {:#x}), entered at EL{}, running at EL{}",
        f.cpu_name(),
        f.midr,
        entry_el,
        cpu::current_el()
    );
    crate::kprintln!(
        "features: tlbi-range={} ttl={} tlbi-os={} bbm={} asid-bits={} pa-bits={}",
        f.tlbi_range as u8,
        f.ttl as u8,
        f.tlbi_os as u8,
        f.bbm,
        f.asid_bits,
        f.pa_bits
    );
    crate::kprintln!("cpus: {online} online of {} listed", board.ncpus);
    crate::kprintln!("memory: {mem_mib} MiB RAM, {} frames free, heap {} MiB", frame::free_frames(), heap >> 20);
    let c = crate::mm::user::config();
    crate::kprintln!(
        "tlb: strategy={} ipi_max={} lazy={} use_mm_mmget={}{}",
        c.strategy.name(),
        c.ipi_max,
        c.lazy as u8,
        c.use_mm_mmget as u8,
        if c.bugs.no_stale_mark || c.bugs.partial_any_gen { " (demonstration: a bug switched on)" } else { "" }
    );
    let choice = crate::init::options().repeat_tlbi;
    crate::kprintln!(
        "tlb: repeat_tlbi={} ({}){}",
        c.repeat_tlbi.name(),
        crate::mm::tlb::errata::Why { choice, midr: f.midr },
        if c.repeat_tlbi.is_on() { "; local TLBIs are not repeated" } else { "" }
    );
    crate::kprintln!(
        "mm: thp={} block_cow={} splits {}{}",
        c.thp.name(),
        if c.block_cow_copy { "copy" } else { "split" },
        if c.split_no_break { "without the break (FEAT_BBM level 2)" } else { "break before make" },
        if c.split_no_break && !f.bbml2_noabort() { " (demonstration: the CPU does not promise it)" } else { "" }
    );
    let (_, swap) = crate::mm::phys::swap_slots();
    if swap as u32 != cmdline::SWAP_SLOTS || !c.reclaim_batch || c.reclaim_dsb_remote {
        crate::kprintln!(
            "reclaim: swap {swap} slots, batch={}, dsb={}{}",
            if c.reclaim_batch { "on" } else { "off" },
            if c.reclaim_dsb_remote { "remote" } else { "local" },
            if c.reclaim_dsb_remote { " (demonstration: the DSB completes nothing)" } else { "" }
        );
    }
    crate::kprintln!(
        "devices: {} secondary MMUs on CPUs {:?}, mmu.notifier={}",
        abi::device::COUNT,
        crate::task::device::cpus(),
        if c.notifier_late { "late (demonstration: secondary MMUs are told after the free)" } else { "on" }
    );
    crate::kprintln!("cmdline: {:?}", board.bootargs());
}

/// The options the kernel booted with.
pub fn options() -> &'static Options {
    OPTIONS.get().expect("options parsed at boot")
}

/// Starts each program and waits for all; prints each exit status, the
/// TLB maintenance they caused, and whether every kernel resource came back
/// (a leak fails the run).
fn run_programs(progs: &[(alloc::string::String, u64)]) -> i32 {
    use crate::task::process;
    let mut started = alloc::vec::Vec::new();
    let resources_before = settled_resources();
    let before = crate::mm::tlb::TLB_STATS.total();
    for (name, arg) in progs {
        match process::spawn(name, *arg, 0) {
            Ok(p) => started.push((name, p)),
            Err(e) => {
                crate::kprintln!("run: cannot start '{name}': {e}");
                let known: alloc::vec::Vec<&str> = crate::task::loader::names().collect();
                crate::kprintln!("run: built-in programs: {}", known.join(", "));
                return semihost::EXIT_USAGE;
            }
        }
    }
    let mut ok = true;
    let t0 = platform::timer::now();
    let mut next_report = PROGRESS_EVERY_S;
    for (name, p) in started {
        // Poll rather than block, to say every minute what is running.
        while !p.has_exited() {
            crate::task::sched::sleep_ns(100_000_000);
            let s = platform::timer::ticks_to_ns(platform::timer::now() - t0) / 1_000_000_000;
            if s >= next_report {
                next_report += PROGRESS_EVERY_S;
                let r = crate::task::resources();
                crate::kprintln!("run: {s} s: {}", ResourceLine(&r));
                crate::task::dump(|l| crate::kprintln!("run:   {l}"));
            }
        }
        let status = process::wait_from_kernel(&p);
        crate::kprintln!("run: {name} (pid {}) exited with status {status}", p.pid);
        ok &= status == 0;
    }
    let d = crate::mm::tlb::TLB_STATS.total().since(&before);
    crate::kprintln!("run: TLB maintenance while the programs ran: {d}");
    ok &= report_resources(&resources_before);
    if ok {
        semihost::EXIT_PASS
    } else {
        semihost::EXIT_FAIL
    }
}

/// Seconds between the progress lines of `run=`.
const PROGRESS_EVERY_S: u64 = 60;

/// The resource words as `name value, ...`.
struct ResourceLine<'a>(&'a [u64; abi::resources::COUNT]);

impl core::fmt::Display for ResourceLine<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, v)) in abi::resources::NAMES.iter().zip(self.0).enumerate() {
            write!(f, "{}{name} {v}", if i == 0 { "" } else { ", " })?;
        }
        Ok(())
    }
}

/// The resources once the kernel is quiet (two readings 20 ms apart
/// agree): kernel threads started at boot, like the reaper, have settled.
fn settled_resources() -> [u64; abi::resources::COUNT] {
    let mut prev = crate::task::resources();
    for _ in 0..50 {
        crate::task::sched::sleep_ns(20_000_000);
        let now = crate::task::resources();
        if now == prev {
            break;
        }
        prev = now;
    }
    prev
}

/// Waits (up to 2 s) for every resource to come back to `before` (exited
/// tasks are freed by the next switch on their CPU) and prints the result:
/// `run: resources back to baseline (...)` or `run: LEAK: ...`.
fn report_resources(before: &[u64; abi::resources::COUNT]) -> bool {
    use abi::resources as r;
    let mut after = crate::task::resources();
    for _ in 0..100 {
        if crate::task::resource_leaks(before, &after).is_empty() {
            break;
        }
        crate::task::sched::sleep_ns(20_000_000);
        after = crate::task::resources();
    }
    let leaks = crate::task::resource_leaks(before, &after);
    let heap = |w: &[u64; r::COUNT]| w[r::HEAP_BYTES];
    if leaks.is_empty() {
        crate::kprintln!(
            "run: resources back to baseline (heap {} bytes before and after, peak {}; {} frames free; {} calls refused at the heap reserve)",
            heap(before),
            crate::mm::heap::HEAP.stats().peak,
            after[r::FREE_FRAMES],
            after[r::HEAP_REFUSALS] - before[r::HEAP_REFUSALS]
        );
        true
    } else {
        crate::kprintln!("run: LEAK: {leaks}");
        false
    }
}
