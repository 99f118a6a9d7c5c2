//! The workloads and what a run measures: one [`Point`] per (workload,
//! parameters, configuration), one QEMU boot each.
//!
//! Each workload is a user program `user/programs/src/bin/bench_*.rs`
//! whose argument packs its parameters (`userland::bench`): bits 0..32 the
//! size `n`, 32..40 repetitions, 40..56 operations per repetition, 56..60
//! flags, 60..64 threads (the CPUs the process runs on).
//!
//! Three sweeps ([`Sweep`]):
//! - **configs**: each workload's own sweep of sizes and configurations
//!   (policies, CPU models, exit elision, nested fix, ASID width), under
//!   the kernel's default strategy;
//! - **strategies**: every strategy of [`STRATEGIES`] × the number of CPUs
//!   the workload's address space runs on ([`cpu_counts`]: its process
//!   keeps that many threads, one per CPU), at one size per workload
//!   ([`PerCpu`]), on a machine of [`strategy_smp`] CPUs;
//! - **repeat**: the repeat-TLBI errata workaround's modes
//!   ([`REPEAT_MODES`]) × strategies × the CPUs the address space runs on,
//!   at the same sizes, on an affected core ([`CPU_REPEAT_TLBI`]; see
//!   [`repeat_points`]).

use super::config::{Config, CPU_NO_RANGE, CPU_RANGE, CPU_REPEAT_TLBI, REPEAT_MODES, STRATEGIES};

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Fewer sizes, repetitions and configurations: minutes.
    Quick,
    /// Everything.
    Full,
}

impl Depth {
    /// Timed repetitions per measurement.
    pub fn reps(self) -> u32 {
        match self {
            Depth::Quick => 15,
            Depth::Full => 31,
        }
    }

    /// Timed repetitions per measurement of the strategy sweep: fewer, for
    /// its points with more busy vCPUs than the host has cores run slowly.
    pub fn strategy_reps(self) -> u32 {
        match self {
            Depth::Quick => 9,
            Depth::Full => 15,
        }
    }
}

/// Flag bit A (argument bit 56): the workload's second thread or mode.
pub const FLAG_A: u64 = 1;
/// Flag bit B (argument bit 57): another mode (`userland::bench` takes
/// flag A to mean two threads).
pub const FLAG_B: u64 = 1 << 1;

/// Most threads a program takes (argument bits 60..64): the kernel's
/// `MAX_CPUS`.
pub const MAX_THREADS: u32 = 8;

/// Which sweep a point belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Sweep {
    /// Each workload's sizes and configurations, default strategy.
    Configs,
    /// Strategies × CPUs the address space runs on.
    Strategies,
    /// The repeat-TLBI workaround's modes × strategies × CPUs.
    Repeat,
}

impl Sweep {
    pub const ALL: [Sweep; 3] = [Sweep::Configs, Sweep::Strategies, Sweep::Repeat];

    /// The name on the command line (`--sweep`) and in records.
    pub fn name(self) -> &'static str {
        match self {
            Sweep::Configs => "configs",
            Sweep::Strategies => "strategies",
            Sweep::Repeat => "repeat",
        }
    }

    pub fn parse(s: &str) -> Option<Sweep> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// A workload's point in the strategy sweep: its size and operations per
/// repetition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PerCpu {
    pub n: u64,
    pub ops: u32,
}

/// A benchmark workload.
#[derive(Debug)]
pub struct Workload {
    /// The name on the command line (`--workload`) and in records.
    pub name: &'static str,
    /// The user program (`run=PROGRAM:ARG`).
    pub program: &'static str,
    /// What one operation is, in words any OS could implement.
    pub op: &'static str,
    /// Flag A puts a second thread of the process to work on another CPU
    /// (the boot then keeps two host cores busy).
    pub flag_a_second_cpu: bool,
    /// Flag B does too.
    pub flag_b_second_cpu: bool,
    /// The points of the configs sweep at `depth` (given this workload).
    pub points: fn(&'static Workload, Depth) -> Vec<Point>,
    /// Its point in the strategy sweep, if it takes part: the program
    /// runs on as many CPUs as the argument's thread count says.
    pub per_cpu: Option<PerCpu>,
}

/// One measurement: a workload with parameters under a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    pub workload: &'static str,
    pub program: &'static str,
    /// Argument bits 0..32.
    pub n: u64,
    /// Argument bits 56..64.
    pub flags: u64,
    pub reps: u32,
    pub ops: u32,
    /// Argument bits 60..64: threads of the process, one per CPU (0: the
    /// program's default, 1 or 2 with flag A).
    pub threads: u32,
    pub config: Config,
    /// vCPUs kept busy (host cores the boot needs to itself): the CPUs the
    /// workload's address space runs on.
    pub busy_cpus: u32,
    pub sweep: Sweep,
}

impl Point {
    pub fn new(w: &'static Workload, n: u64, flags: u64, reps: u32, ops: u32, config: Config) -> Point {
        let second = w.flag_a_second_cpu && flags & FLAG_A != 0 || w.flag_b_second_cpu && flags & FLAG_B != 0;
        let busy_cpus = if second { 2 } else { 1 };
        Point {
            workload: w.name,
            program: w.program,
            n,
            flags,
            reps,
            ops,
            threads: 0,
            config,
            busy_cpus,
            sweep: Sweep::Configs,
        }
    }

    /// The same point with the process on `threads` CPUs (1..=
    /// [`MAX_THREADS`]).
    pub fn with_threads(mut self, threads: u32) -> Point {
        assert!((1..=MAX_THREADS).contains(&threads), "{threads} threads");
        self.threads = threads;
        self.busy_cpus = threads;
        self
    }

    pub fn in_sweep(mut self, sweep: Sweep) -> Point {
        self.sweep = sweep;
        self
    }

    /// The CPUs the workload's address space runs on (its threads, one per
    /// CPU).
    pub fn mm_cpus(&self) -> u32 {
        self.busy_cpus
    }

    /// The program's argument.
    pub fn arg(&self) -> u64 {
        abi::bench_arg::encode(self.n, self.reps.into(), self.ops.into(), self.flags, self.threads.into())
    }

    /// `run=PROGRAM:ARG` and the configuration's options.
    pub fn args(&self) -> Vec<String> {
        let mut args = self.config.args();
        args.push(format!("run={}:{:#x}", self.program, self.arg()));
        args
    }

    /// Workload, size and flags, for progress lines.
    pub fn describe(&self) -> String {
        let mut s = format!("{} n={}", self.workload, self.n);
        if self.flags != 0 {
            s.push_str(&format!(" flags={:#x}", self.flags));
        }
        if self.threads != 0 {
            s.push_str(&format!(" threads={}", self.threads));
        }
        s
    }
}

/// Every workload, in the order a run measures them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "mmap",
        program: "bench_mmap",
        op: "mmap N anonymous pages, write one word in each, munmap them (threads=T: \
             T-1 more threads of the process spin on other CPUs)",
        flag_a_second_cpu: true,
        flag_b_second_cpu: false,
        points: mmap,
        per_cpu: Some(PerCpu { n: 16, ops: 30 }),
    },
    Workload {
        name: "mprotect",
        program: "bench_mprotect",
        op: "mprotect N written pages read-only, then read-write, then write one word in each \
             (threads=T: T-1 more threads of the process spin on other CPUs)",
        flag_a_second_cpu: true,
        flag_b_second_cpu: false,
        points: mprotect,
        per_cpu: Some(PerCpu { n: 16, ops: 30 }),
    },
    Workload {
        name: "madvise",
        program: "bench_madvise",
        op: "madvise(DONTNEED) a 1 MiB region, then write one word in each of its pages \
             (threads=2: a second thread does the same on its own region on another CPU; \
             threads=T spinning=1: T-1 more threads spin on other CPUs instead)",
        flag_a_second_cpu: true,
        flag_b_second_cpu: false,
        points: madvise,
        per_cpu: Some(PerCpu { n: 256, ops: 8 }),
    },
    Workload {
        name: "fork",
        program: "bench_fork",
        op: "fork a parent with a written private mapping of max(M, 1024) pages; the child \
             writes M pages (copy-on-write) and exits; the parent waits (threads=T: T-1 more \
             threads of the parent spin on other CPUs)",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: fork,
        per_cpu: Some(PerCpu { n: 16, ops: 5 }),
    },
    Workload {
        name: "exit",
        program: "bench_exit",
        op: "fork; the child maps and writes N pages and exits without unmapping; the parent \
             waits (timed in the parent; threads=T: the child first starts T-1 threads of its \
             own on other CPUs, calling getpid in a loop, which its exit ends)",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: exit,
        per_cpu: Some(PerCpu { n: 64, ops: 8 }),
    },
    Workload {
        name: "mprotect-threads",
        program: "bench_mprotect_threads",
        op: "in every one of T threads of one process, each on its own CPU: mprotect its own N \
             written pages read-only, then read-write, then write one word in each (timed in \
             the first thread; counters per operation of any thread)",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: no_points,
        per_cpu: Some(PerCpu { n: 16, ops: 20 }),
    },
    Workload {
        name: "reclaim",
        program: "bench_reclaim",
        op: "one page of: write one word in each of N pages (each comes back from swap; \
             drop=1: dropped with DONTNEED first, a zero-filled page), then madvise(PAGEOUT) \
             all N (reclaim.batch=on: one DSB per 32 pages; off: one per page)",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: reclaim,
        per_cpu: None,
    },
    Workload {
        name: "pingpong",
        program: "bench_pingpong",
        op: "one IPC round trip (ep_call / ep_recv / ep_reply) between two processes on one CPU",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: pingpong,
        per_cpu: None,
    },
    Workload {
        name: "asid-pressure",
        program: "bench_asid",
        op: "one IPC round trip to the next of 64 server processes on one CPU (create=1: fork \
             a child that exits at once and wait), under asid_bits=N",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: asid_pressure,
        per_cpu: None,
    },
    Workload {
        name: "device",
        program: "bench_device",
        op: "one job of a secondary-MMU device (its own translation cache, kept coherent by mmu \
             notifiers; its thread on the last CPU): copy N KiB between two written buffers of the \
             process, submitted and waited for; meanwhile (churn=1) a second thread of the process \
             unmaps, maps and writes a 16-page region the device never reads, or (churn=2) makes \
             the device's source read-only and read-write again, without pause (churn=0: no \
             churn). Counters are per job; the device's own (fills, hits, retries, invalidations) \
             are in the device table",
        flag_a_second_cpu: true,
        flag_b_second_cpu: true,
        points: device,
        per_cpu: None,
    },
    Workload {
        name: "pages-mmap",
        program: "bench_pages",
        op: "mmap an N MiB region with 4 KiB pages, 64 KiB contiguous runs (map::CONT) or 2 MiB \
             blocks (map::HUGE), write one word in each 4 KiB of it, munmap it",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: pages_mmap,
        per_cpu: None,
    },
    Workload {
        name: "pages-madvise",
        program: "bench_pages",
        op: "madvise(DONTNEED) an N MiB region mapped with 4 KiB pages, 64 KiB runs or 2 MiB blocks, \
             then write one word in each 4 KiB of it again",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: pages_madvise,
        per_cpu: None,
    },
    Workload {
        name: "pages-split",
        program: "bench_pages",
        op: "as pages-mmap, with a munmap of one page in the middle of each 2 MiB before the munmap \
             of the rest (a block is split, a run unfolded; plain pages lose only the page)",
        flag_a_second_cpu: false,
        flag_b_second_cpu: false,
        points: pages_split,
        per_cpu: None,
    },
];

/// The workload named `name`.
pub fn workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// The points of `workloads` (all if empty) in `sweeps` (both if empty)
/// at `depth`: each workload's configs sweep, then its strategy sweep.
pub fn plan(depth: Depth, workloads: &[&'static Workload], sweeps: &[Sweep]) -> Vec<Point> {
    let all: Vec<&Workload> = WORKLOADS.iter().collect();
    let chosen = if workloads.is_empty() { &all } else { workloads };
    let sweeps = if sweeps.is_empty() { &Sweep::ALL[..] } else { sweeps };
    let mut out = Vec::new();
    for w in chosen {
        if sweeps.contains(&Sweep::Configs) {
            out.extend((w.points)(w, depth));
        }
        if sweeps.contains(&Sweep::Strategies) {
            out.extend(strategy_points(w, depth));
        }
        if sweeps.contains(&Sweep::Repeat) {
            out.extend(repeat_points(w, depth));
        }
    }
    out
}

/// The workloads of the repeat sweep with `--quick` (a munmap, an
/// mprotect, a fork and exit); the full sweep takes every workload of the
/// strategy sweep.
pub const REPEAT_QUICK_WORKLOADS: &[&str] = &["mmap", "mprotect", "fork"];

/// The CPUs the address space runs on in the repeat sweep: alone (where
/// `local` flushes locally, exempt from the workaround) and with a second
/// thread (where `local` broadcasts and `ipi` sends one IPI).
pub fn repeat_cpu_counts(depth: Depth) -> &'static [u32] {
    match depth {
        Depth::Quick => &[1, 2],
        Depth::Full => &[1, 2, 4],
    }
}

/// The strategies the repeat sweep crosses: broadcast (which pays the
/// workaround) against the local and IPI flushing (which do not: local
/// TLBIs are exempt); `auto` too in the full sweep.
fn repeat_strategies(depth: Depth) -> &'static [super::config::Strategy] {
    match depth {
        Depth::Quick => &STRATEGIES[..3],
        Depth::Full => STRATEGIES,
    }
}

/// The repeat sweep of `w`: [`REPEAT_MODES`] × strategies ×
/// [`repeat_cpu_counts`] at its strategy-sweep size, on
/// [`CPU_REPEAT_TLBI`] with as many CPUs as the most the address space
/// uses; none if the workload takes no part. CPU-count major, then
/// strategy, then mode, so the modes compared run close together in time.
pub fn repeat_points(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let Some(pc) = w.per_cpu else {
        return Vec::new();
    };
    if depth == Depth::Quick && !REPEAT_QUICK_WORKLOADS.contains(&w.name) {
        return Vec::new();
    }
    let counts = repeat_cpu_counts(depth);
    let machine = Config::new(CPU_REPEAT_TLBI, counts.iter().copied().max().unwrap_or(1));
    let mut out = Vec::new();
    for &t in counts {
        for s in repeat_strategies(depth) {
            for mode in REPEAT_MODES {
                let c = machine.clone().with_strategy(s).with_repeat_tlbi(mode);
                out.push(
                    Point::new(w, pc.n, 0, depth.strategy_reps(), pc.ops, c).with_threads(t).in_sweep(Sweep::Repeat),
                );
            }
        }
    }
    out
}

/// The numbers of CPUs the strategy sweep runs a workload's address space
/// on.
pub fn cpu_counts(depth: Depth) -> &'static [u32] {
    match depth {
        Depth::Quick => &[1, 2, 4],
        Depth::Full => &[1, 2, 4, 8],
    }
}

/// QEMU `-smp` of every strategy-sweep point: the most CPUs of
/// [`cpu_counts`], so that the machine is the same whichever number of
/// them the address space runs on (a broadcast TLBI reaches every CPU of
/// the machine).
pub fn strategy_smp(depth: Depth) -> u32 {
    cpu_counts(depth).iter().copied().max().unwrap_or(1)
}

/// The strategy sweep of `w`: every strategy × [`cpu_counts`], CPU-count
/// major (the strategies compared at one count run close together in
/// time); none if the workload takes no part.
pub fn strategy_points(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let Some(pc) = w.per_cpu else {
        return Vec::new();
    };
    let machine = Config::new(CPU_RANGE, strategy_smp(depth));
    let mut out = Vec::new();
    for &t in cpu_counts(depth) {
        for s in STRATEGIES {
            let c = machine.clone().with_strategy(s);
            out.push(
                Point::new(w, pc.n, 0, depth.strategy_reps(), pc.ops, c).with_threads(t).in_sweep(Sweep::Strategies),
            );
        }
    }
    out
}

/// A workload with no configs sweep of its own.
fn no_points(_: &'static Workload, _: Depth) -> Vec<Point> {
    Vec::new()
}

/// Operations per repetition: about `budget` pages' worth, within bounds.
fn ops_for(budget: u64, n: u64, lo: u32, hi: u32) -> u32 {
    (budget / n.max(1)).clamp(u64::from(lo), u64::from(hi)) as u32
}

fn point(w: &'static Workload, n: u64, flags: u64, ops: u32, depth: Depth, config: Config) -> Point {
    Point::new(w, n, flags, depth.reps(), ops, config)
}

/// Policy configurations of the range-size sweeps (mmap, mprotect).
fn policy_configs(depth: Depth) -> Vec<Config> {
    let max = |p| Config::new(CPU_RANGE, 2).with_policy(p);
    let a72 = |p| Config::new(CPU_NO_RANGE, 2).with_policy(p);
    match depth {
        Depth::Quick => vec![max("default"), max("no-range"), a72("default")],
        Depth::Full => vec![
            max("default"),
            max("ppm=8"),
            max("ppm=64"),
            max("asid>=64"),
            max("asid>=512"),
            max("no-range"),
            max("no-range,ppm=64"),
            a72("default"),
            a72("ppm=64"),
        ],
    }
}

/// Configurations with a second thread spinning (mm live on two CPUs).
fn two_thread_configs(depth: Depth) -> Vec<Config> {
    match depth {
        Depth::Quick => vec![Config::new(CPU_RANGE, 2)],
        Depth::Full => vec![
            Config::new(CPU_RANGE, 2),
            Config::new(CPU_RANGE, 2).with_policy("no-range"),
            Config::new(CPU_NO_RANGE, 2),
            Config::new(CPU_RANGE, 4),
        ],
    }
}

/// The CPU-count sweep: 1 and 4 CPUs besides the 2 of every other config.
fn cpu_count_configs(depth: Depth) -> Vec<Config> {
    match depth {
        Depth::Quick => vec![],
        Depth::Full => vec![Config::new(CPU_RANGE, 1), Config::new(CPU_RANGE, 4)],
    }
}

fn sizes(depth: Depth) -> &'static [u64] {
    match depth {
        Depth::Quick => &[1, 16, 64, 512, 4096],
        Depth::Full => &[1, 4, 16, 32, 64, 128, 512, 1024, 4096],
    }
}

/// A range-size sweep: `sizes × (policies + cpu counts)` with one thread,
/// `sizes × two-thread configs` with the spinner.
fn range_sweep(w: &'static Workload, budget: u64, depth: Depth) -> Vec<Point> {
    // Size-major order: the configurations compared at one size run close
    // together in time, so a change in host load biases them less.
    let mut out = Vec::new();
    let one = [policy_configs(depth), cpu_count_configs(depth)].concat();
    let two = two_thread_configs(depth);
    for &n in sizes(depth) {
        let ops = ops_for(budget, n, 2, 200);
        out.extend(one.iter().map(|c| point(w, n, 0, ops, depth, c.clone())));
        out.extend(two.iter().map(|c| point(w, n, FLAG_A, ops, depth, c.clone())));
    }
    out
}

fn mmap(w: &'static Workload, depth: Depth) -> Vec<Point> {
    range_sweep(w, 4096, depth)
}

fn mprotect(w: &'static Workload, depth: Depth) -> Vec<Point> {
    range_sweep(w, 65536, depth)
}

fn madvise(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let pages = 256;
    let mut one = vec![Config::new(CPU_RANGE, 2)];
    let mut two =
        vec![Config::new(CPU_RANGE, 2).with_nested_fix(true), Config::new(CPU_RANGE, 2).with_nested_fix(false)];
    if depth == Depth::Full {
        one.push(Config::new(CPU_RANGE, 2).with_policy("no-range"));
        one.push(Config::new(CPU_NO_RANGE, 2));
        two.push(Config::new(CPU_RANGE, 2).with_policy("no-range").with_nested_fix(true));
        two.push(Config::new(CPU_RANGE, 2).with_policy("no-range").with_nested_fix(false));
        two.push(Config::new(CPU_NO_RANGE, 2).with_nested_fix(true));
        two.push(Config::new(CPU_NO_RANGE, 2).with_nested_fix(false));
    }
    let mut out: Vec<Point> = one.into_iter().map(|c| point(w, pages, 0, 10, depth, c)).collect();
    out.extend(two.into_iter().map(|c| point(w, pages, FLAG_A, 10, depth, c)));
    out
}

fn fork(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let mut configs = vec![Config::new(CPU_RANGE, 2), Config::new(CPU_NO_RANGE, 2)];
    if depth == Depth::Full {
        configs.push(Config::new(CPU_RANGE, 2).with_exit_elide(false));
        configs.extend(cpu_count_configs(depth));
    }
    let mut out = Vec::new();
    for c in configs {
        for m in [16, 1024] {
            out.push(point(w, m, 0, if m > 64 { 4 } else { 20 }, depth, c.clone()));
        }
    }
    out
}

fn exit(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let cpus: &[&'static str] = match depth {
        Depth::Quick => &[CPU_RANGE],
        Depth::Full => &[CPU_RANGE, CPU_NO_RANGE],
    };
    let sizes: &[u64] = match depth {
        Depth::Quick => &[1, 64, 512, 4096],
        Depth::Full => &[1, 16, 64, 512, 1024, 4096],
    };
    let configs: Vec<Config> =
        cpus.iter().flat_map(|&cpu| [true, false].map(|elide| Config::new(cpu, 2).with_exit_elide(elide))).collect();
    let mut out = Vec::new();
    for &n in sizes {
        out.extend(configs.iter().map(|c| point(w, n, 0, ops_for(4096, n, 2, 40), depth, c.clone())));
    }
    out
}

/// Batched against unbatched reclaim (`reclaim.batch`), size-major.
fn reclaim(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let (sizes, flags): (&[u64], &[u64]) = match depth {
        Depth::Quick => (&[32, 256], &[0]),
        Depth::Full => (&[1, 8, 32, 128, 512], &[0, FLAG_B]),
    };
    let mut out = Vec::new();
    for &n in sizes {
        for &f in flags {
            for batch in [true, false] {
                let c = Config::new(CPU_RANGE, 2).with_reclaim_batch(batch);
                out.push(point(w, n, f, ops_for(512, n, 2, 64), depth, c));
            }
        }
    }
    out
}

fn pingpong(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let mut configs = vec![Config::new(CPU_RANGE, 2)];
    if depth == Depth::Full {
        configs.push(Config::new(CPU_NO_RANGE, 2));
        configs.extend(cpu_count_configs(depth));
    }
    configs.into_iter().map(|c| point(w, 0, 0, 400, depth, c)).collect()
}

/// Job sizes × churn (none, a region the device does not use, the one it
/// reads), on 3 CPUs: the measuring thread, the churn and the device.
fn device(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let sizes: &[u64] = match depth {
        Depth::Quick => &[64],
        Depth::Full => &[16, 64, 1024],
    };
    let mut out = Vec::new();
    for &kib in sizes {
        for flags in [0, FLAG_A, FLAG_B] {
            out.push(point(w, kib, flags, ops_for(2048, kib, 4, 20), depth, Config::new(CPU_RANGE, 3)));
        }
    }
    out
}

/// Page sizes of the pages workloads: (flags bits 0..2, KiB).
pub const PAGE_SIZES: [(u64, u64); 3] = [(0, 4), (1, 64), (2, 2048)];

/// QEMU `-m` of the pages workloads: room for a 1 GiB region.
pub const PAGES_MEM_MB: u32 = 2048;

/// Region sizes in MiB of the pages workloads: 2 MiB to 1 GiB (the region
/// is at most half of [`PAGES_MEM_MB`]).
fn pages_sizes(depth: Depth, split: bool) -> &'static [u64] {
    match (depth, split) {
        (Depth::Quick, false) => &[2, 64, 1024],
        (Depth::Quick, true) => &[2, 64],
        (Depth::Full, false) => &[2, 8, 32, 128, 512, 1024],
        (Depth::Full, true) => &[2, 32, 512],
    }
}

/// Sizes × page sizes × CPU models (`max`, `cortex-a72`), size-major;
/// `op` is the workload's flag bits 2..4. Fewer repetitions of the large
/// regions (a 1 GiB region of 4 KiB pages is 262,144 faults an operation).
fn pages_points(w: &'static Workload, depth: Depth, op: u64) -> Vec<Point> {
    let mut out = Vec::new();
    for &mib in pages_sizes(depth, op == 2) {
        let reps = if mib >= 256 { 3 } else { depth.reps().min(9) };
        let ops = ops_for(64, mib, 1, 8);
        for cpu in [CPU_RANGE, CPU_NO_RANGE] {
            let c = Config::new(cpu, 2).with_mem_mb(PAGES_MEM_MB);
            for (size, _) in PAGE_SIZES {
                out.push(Point::new(w, mib, size | op << 2, reps, ops, c.clone()));
            }
        }
    }
    out
}

fn pages_mmap(w: &'static Workload, depth: Depth) -> Vec<Point> {
    pages_points(w, depth, 0)
}

fn pages_madvise(w: &'static Workload, depth: Depth) -> Vec<Point> {
    pages_points(w, depth, 1)
}

fn pages_split(w: &'static Workload, depth: Depth) -> Vec<Point> {
    pages_points(w, depth, 2)
}

fn asid_pressure(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let bits: &[u32] = match depth {
        Depth::Quick => &[4, 8, 16],
        Depth::Full => &[4, 5, 6, 8, 10, 12, 16],
    };
    let mut out = Vec::new();
    for &b in bits {
        let c = Config::new(CPU_RANGE, 2).with_asid_bits(b);
        out.push(point(w, 64, 0, 256, depth, c.clone()));
        if depth == Depth::Full {
            out.push(point(w, 1, FLAG_A, 64, depth, c));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_layout_matches_the_programs() {
        let mut p = plan(Depth::Quick, &[workload("pingpong").unwrap()], &[]).remove(0);
        (p.n, p.reps, p.ops, p.flags) = (4096, 7, 300, FLAG_A);
        assert_eq!(p.arg(), 4096 | 7 << 32 | 300 << 40 | 1 << 56);
        assert_eq!(p.args().last().unwrap(), &format!("run=bench_pingpong:{:#x}", p.arg()));
        let p = p.with_threads(8);
        assert_eq!(p.arg(), 4096 | 7 << 32 | 300 << 40 | 1 << 56 | 8 << 60);
        assert_eq!((p.busy_cpus, p.mm_cpus()), (8, 8));
        assert_eq!(p.describe(), "pingpong n=4096 flags=0x1 threads=8");
    }

    #[test]
    fn the_repeat_sweep_crosses_modes_strategies_and_cpu_counts() {
        let quick = plan(Depth::Quick, &[], &[Sweep::Repeat]);
        assert_eq!(quick.len(), REPEAT_QUICK_WORKLOADS.len() * REPEAT_MODES.len() * 3 * 2);
        let full = plan(Depth::Full, &[], &[Sweep::Repeat]);
        let per_cpu = WORKLOADS.iter().filter(|w| w.per_cpu.is_some()).count();
        assert_eq!(full.len(), per_cpu * REPEAT_MODES.len() * STRATEGIES.len() * 3);
        for p in quick.iter().chain(&full) {
            assert_eq!((p.sweep, p.config.cpu), (Sweep::Repeat, CPU_REPEAT_TLBI));
            let mode = p.config.repeat_tlbi.expect("a mode");
            assert!(p.args().contains(&format!("tlb.repeat_tlbi={mode}")), "{:?}", p.args());
            assert!(p.mm_cpus() <= p.config.cpus && p.threads == p.mm_cpus());
        }
        let strategies: std::collections::BTreeSet<_> = quick.iter().map(|p| p.config.strategy.name).collect();
        assert_eq!(strategies, ["broadcast", "ipi", "local"].into());
        assert!(plan(Depth::Quick, &[workload("reclaim").unwrap()], &[Sweep::Repeat]).is_empty());
    }

    #[test]
    fn the_strategy_sweep_crosses_strategies_and_cpu_counts() {
        for depth in [Depth::Quick, Depth::Full] {
            let points = plan(depth, &[], &[Sweep::Strategies]);
            let per_cpu: Vec<_> = WORKLOADS.iter().filter(|w| w.per_cpu.is_some()).collect();
            assert!(per_cpu.len() >= 6, "mmap, mprotect, madvise, fork, exit, mprotect-threads");
            assert_eq!(points.len(), per_cpu.len() * STRATEGIES.len() * cpu_counts(depth).len());
            for p in &points {
                assert_eq!(p.sweep, Sweep::Strategies);
                assert_eq!(p.config.cpus, strategy_smp(depth), "one machine size");
                assert!(p.mm_cpus() <= p.config.cpus && p.threads == p.mm_cpus());
                assert_eq!(p.config.policy.name, "default");
            }
            for s in STRATEGIES {
                for &t in cpu_counts(depth) {
                    assert!(points.iter().any(|p| p.config.strategy == s && p.threads == t));
                }
            }
            assert!(plan(depth, &[], &[Sweep::Configs])
                .iter()
                .all(|p| p.sweep == Sweep::Configs && p.config.strategy.name == "broadcast"));
        }
        assert_eq!(cpu_counts(Depth::Full), [1, 2, 4, 8]);
        assert_eq!(strategy_smp(Depth::Full), MAX_THREADS);
        assert!(strategy_points(workload("pingpong").unwrap(), Depth::Full).is_empty());
        assert_eq!(Sweep::parse("strategies"), Some(Sweep::Strategies));
        assert_eq!(Sweep::parse("nonesuch"), None);
    }

    #[test]
    fn plans_are_unique_and_quick_is_smaller() {
        for depth in [Depth::Quick, Depth::Full] {
            let points = plan(depth, &[], &[]);
            let mut keys: Vec<_> = points.iter().map(|p| (p.args(), p.config.label())).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n, "{depth:?}: a point is measured twice");
            for w in WORKLOADS {
                assert!(points.iter().any(|p| p.workload == w.name), "{depth:?}: no {} point", w.name);
            }
        }
        assert!(plan(Depth::Quick, &[], &[]).len() * 2 < plan(Depth::Full, &[], &[]).len());
        let mmap = workload("mmap").unwrap();
        assert!(plan(Depth::Quick, &[mmap], &[]).iter().all(|p| p.workload == "mmap"));
        assert!(workload("nonesuch").is_none());
    }

    #[test]
    fn the_pages_workloads_cover_every_page_size_on_both_cpus() {
        for name in ["pages-mmap", "pages-madvise", "pages-split"] {
            let points = plan(Depth::Quick, &[workload(name).unwrap()], &[Sweep::Configs]);
            for (size, _) in PAGE_SIZES {
                for cpu in [CPU_RANGE, CPU_NO_RANGE] {
                    assert!(points.iter().any(|p| p.flags & 3 == size && p.config.cpu == cpu), "{name}");
                }
            }
            assert!(points.iter().all(|p| p.program == "bench_pages" && p.config.machine().mem_mb == PAGES_MEM_MB));
            assert!(points.iter().all(|p| u64::from(PAGES_MEM_MB) >= 2 * p.n && p.n % 2 == 0));
            assert!(strategy_points(workload(name).unwrap(), Depth::Quick).is_empty());
        }
        let split = plan(Depth::Quick, &[workload("pages-split").unwrap()], &[]);
        assert!(split.iter().all(|p| p.flags >> 2 == 2));
    }

    #[test]
    fn ops_stay_in_bounds() {
        assert_eq!(ops_for(1024, 1, 2, 50), 50);
        assert_eq!(ops_for(1024, 4096, 2, 50), 2);
        assert_eq!(ops_for(1024, 64, 2, 50), 16);
        let mmap = workload("mmap").unwrap();
        let c = Config::new(CPU_RANGE, 2);
        assert_eq!(Point::new(mmap, 1, FLAG_A, 1, 1, c.clone()).busy_cpus, 2);
        assert_eq!(Point::new(mmap, 1, 0, 1, 1, c.clone()).busy_cpus, 1);
        assert_eq!(Point::new(workload("asid-pressure").unwrap(), 1, FLAG_A, 1, 1, c).busy_cpus, 1);
    }
}
