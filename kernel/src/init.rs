//! `kernel_main`: from the first instruction at the high address to the
//! workload or the test run.

use core::sync::atomic::Ordering;

use crate::arch::aarch64::cpu::{self, CpuFeatures};
use crate::arch::aarch64::early::BOOT_INFO;
use crate::arch::aarch64::layout::{phys_to_virt, DTB_VA};
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
    // SAFETY: written once with the MMU off, read-only from now on.
    let info = unsafe { &*(&raw const BOOT_INFO) };
    if info.error != 0 {
        die(format_args!("building the boot page tables failed (step {})", info.error), semihost::EXIT_CRASH);
    }
    if info.dtb_size == 0 {
        die(format_args!("no device tree in x0 at entry"), semihost::EXIT_CRASH);
    }
    // SAFETY: the boot tables map the DTB read-only at DTB_VA for its size.
    let blob = unsafe { core::slice::from_raw_parts((DTB_VA + (info.dtb_pa & 0xfff)) as *const u8, info.dtb_size as usize) };
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
    let asid_bits = opts.asid_bits.unwrap_or(features.asid_bits);
    if asid_bits > features.asid_bits {
        die(
            format_args!("command line: asid_bits={asid_bits} exceeds the hardware's {} bits", features.asid_bits),
            semihost::EXIT_USAGE,
        );
    }
    match crate::mm::asid::AsidAllocator::new(asid_bits, board.ncpus, Default::default()) {
        Ok(a) => {
            crate::task::process::ASIDS.call_once(|| a);
        }
        Err(e) => die(format_args!("ASID allocator: {e}"), semihost::EXIT_USAGE),
    }
    percpu::get(0).mpidr.store(cpu::mpidr(), Ordering::Relaxed);
    percpu::get(0).online.store(true, Ordering::Release);

    // SAFETY: the GIC frames are mapped as device memory in the linear map.
    if let Err(e) = unsafe { gic::init(phys_to_virt(board.gicd.base), phys_to_virt(board.gicr.base), board.ncpus, 0) } {
        die(format_args!("GIC: {e}"), semihost::EXIT_CRASH);
    }
    irq::set_tick_hz(opts.tick_hz);
    irq::init_cpu(0);
    crate::task::sched::init_cpu(0, "main", false);
    cpu::irq_enable();
    let online = smp::start_secondaries();
    crate::task::reaper::start();
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
        "features: tlbi-range={} ttl={} tlbi-os={} asid-bits={} pa-bits={}",
        f.tlbi_range as u8,
        f.ttl as u8,
        f.tlbi_os as u8,
        f.asid_bits,
        f.pa_bits
    );
    crate::kprintln!("cpus: {online} online of {} listed", board.ncpus);
    crate::kprintln!(
        "memory: {mem_mib} MiB RAM, {} frames free, heap {} MiB",
        frame::free_frames(),
        heap >> 20
    );
    crate::kprintln!("cmdline: {:?}", board.bootargs());
}

/// The options the kernel booted with.
pub fn options() -> &'static Options {
    OPTIONS.get().expect("options parsed at boot")
}

/// Starts each program and waits for all; prints each exit status.
fn run_programs(progs: &[(alloc::string::String, u64)]) -> i32 {
    use crate::task::process;
    let mut started = alloc::vec::Vec::new();
    let before = crate::mm::tlb::TLB_STATS.total();
    for (name, arg) in progs {
        match process::spawn(name, *arg, 0) {
            Ok(p) => started.push((name, p)),
            Err(e) => {
                crate::kprintln!("run: cannot start '{name}': errno {}", -e);
                let known: alloc::vec::Vec<&str> = crate::task::loader::names().collect();
                crate::kprintln!("run: built-in programs: {}", known.join(", "));
                return semihost::EXIT_USAGE;
            }
        }
    }
    let mut ok = true;
    for (name, p) in started {
        let status = process::wait_from_kernel(&p);
        crate::kprintln!("run: {name} (pid {}) exited with status {status}", p.pid);
        ok &= status == 0;
    }
    let d = crate::mm::tlb::TLB_STATS.total().since(&before);
    crate::kprintln!("run: TLB maintenance while the programs ran: {d}");
    if ok {
        semihost::EXIT_PASS
    } else {
        semihost::EXIT_FAIL
    }
}
