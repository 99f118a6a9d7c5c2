//! The workloads and what a run measures: one [`Point`] per (workload,
//! parameters, configuration), one QEMU boot each.
//!
//! Each workload is a user program `user/programs/src/bin/bench_*.rs`
//! whose argument packs its parameters (`userland::bench`): bits 0..32 the
//! size `n`, 32..40 repetitions, 40..56 operations per repetition, 56..64
//! flags. Every configuration list is crossed with every strategy of
//! [`STRATEGIES`].

use super::config::{Config, CPU_NO_RANGE, CPU_RANGE, STRATEGIES};

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
}

/// Flag bit A (argument bit 56): the workload's second thread or mode.
pub const FLAG_A: u64 = 1;

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
    /// The points of a run at `depth` (given this workload).
    pub points: fn(&'static Workload, Depth) -> Vec<Point>,
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
    pub config: Config,
    /// vCPUs kept busy (host cores the boot needs to itself).
    pub busy_cpus: u32,
}

impl Point {
    pub fn new(
        w: &'static Workload,
        n: u64,
        flags: u64,
        reps: u32,
        ops: u32,
        config: Config,
    ) -> Point {
        let busy_cpus = if w.flag_a_second_cpu && flags & FLAG_A != 0 {
            2
        } else {
            1
        };
        Point {
            workload: w.name,
            program: w.program,
            n,
            flags,
            reps,
            ops,
            config,
            busy_cpus,
        }
    }

    /// The program's argument.
    pub fn arg(&self) -> u64 {
        (self.n & 0xffff_ffff)
            | u64::from(self.reps & 0xff) << 32
            | u64::from(self.ops & 0xffff) << 40
            | (self.flags & 0xff) << 56
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
        s
    }
}

/// Every workload, in the order a run measures them.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "mmap",
        program: "bench_mmap",
        op: "mmap N anonymous pages, write one word in each, munmap them (threads=2: \
             another thread of the process spins on a second CPU)",
        flag_a_second_cpu: true,
        points: mmap,
    },
    Workload {
        name: "mprotect",
        program: "bench_mprotect",
        op: "mprotect N written pages read-only, then read-write, then write one word in each",
        flag_a_second_cpu: true,
        points: mprotect,
    },
    Workload {
        name: "madvise",
        program: "bench_madvise",
        op: "madvise(DONTNEED) a 1 MiB region, then write one word in each of its pages \
             (threads=2: a second thread does the same on its own region on another CPU)",
        flag_a_second_cpu: true,
        points: madvise,
    },
    Workload {
        name: "fork",
        program: "bench_fork",
        op: "fork a parent with a written private mapping of max(M, 1024) pages; the child \
             writes M pages (copy-on-write) and exits; the parent waits",
        flag_a_second_cpu: false,
        points: fork,
    },
    Workload {
        name: "exit",
        program: "bench_exit",
        op: "fork; the child maps and writes N pages and exits without unmapping; the parent \
             waits (timed in the parent)",
        flag_a_second_cpu: false,
        points: exit,
    },
    Workload {
        name: "pingpong",
        program: "bench_pingpong",
        op: "one IPC round trip (ep_call / ep_recv / ep_reply) between two processes on one CPU",
        flag_a_second_cpu: false,
        points: pingpong,
    },
    Workload {
        name: "asid-pressure",
        program: "bench_asid",
        op: "one IPC round trip to the next of 64 server processes on one CPU (create=1: fork \
             a child that exits at once and wait), under asid_bits=N",
        flag_a_second_cpu: false,
        points: asid_pressure,
    },
];

/// The workload named `name`.
pub fn workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

/// The points of `workloads` (all if empty) at `depth`.
pub fn plan(depth: Depth, workloads: &[&'static Workload]) -> Vec<Point> {
    let all: Vec<&Workload> = WORKLOADS.iter().collect();
    let chosen = if workloads.is_empty() {
        &all
    } else {
        workloads
    };
    chosen.iter().flat_map(|w| (w.points)(w, depth)).collect()
}

/// `configs`, each under every strategy.
fn strategies(configs: Vec<Config>) -> Vec<Config> {
    configs
        .into_iter()
        .flat_map(|c| STRATEGIES.iter().map(move |s| c.clone().with_strategy(s)))
        .collect()
}

/// Operations per repetition: about `budget` pages' worth, within bounds.
fn ops_for(budget: u64, n: u64, lo: u32, hi: u32) -> u32 {
    (budget / n.max(1)).clamp(u64::from(lo), u64::from(hi)) as u32
}

fn point(
    w: &'static Workload,
    n: u64,
    flags: u64,
    ops: u32,
    depth: Depth,
    config: Config,
) -> Point {
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
    let one = strategies([policy_configs(depth), cpu_count_configs(depth)].concat());
    let two = strategies(two_thread_configs(depth));
    for &n in sizes(depth) {
        let ops = ops_for(budget, n, 2, 200);
        out.extend(one.iter().map(|c| point(w, n, 0, ops, depth, c.clone())));
        out.extend(
            two.iter()
                .map(|c| point(w, n, FLAG_A, ops, depth, c.clone())),
        );
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
    let mut two = vec![
        Config::new(CPU_RANGE, 2).with_nested_fix(true),
        Config::new(CPU_RANGE, 2).with_nested_fix(false),
    ];
    if depth == Depth::Full {
        one.push(Config::new(CPU_RANGE, 2).with_policy("no-range"));
        one.push(Config::new(CPU_NO_RANGE, 2));
        two.push(
            Config::new(CPU_RANGE, 2)
                .with_policy("no-range")
                .with_nested_fix(true),
        );
        two.push(
            Config::new(CPU_RANGE, 2)
                .with_policy("no-range")
                .with_nested_fix(false),
        );
        two.push(Config::new(CPU_NO_RANGE, 2).with_nested_fix(true));
        two.push(Config::new(CPU_NO_RANGE, 2).with_nested_fix(false));
    }
    let mut out: Vec<Point> = strategies(one)
        .into_iter()
        .map(|c| point(w, pages, 0, 10, depth, c))
        .collect();
    out.extend(
        strategies(two)
            .into_iter()
            .map(|c| point(w, pages, FLAG_A, 10, depth, c)),
    );
    out
}

fn fork(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let mut configs = vec![Config::new(CPU_RANGE, 2), Config::new(CPU_NO_RANGE, 2)];
    if depth == Depth::Full {
        configs.push(Config::new(CPU_RANGE, 2).with_exit_elide(false));
        configs.extend(cpu_count_configs(depth));
    }
    let mut out = Vec::new();
    for c in strategies(configs) {
        for m in [16, 1024] {
            out.push(point(
                w,
                m,
                0,
                if m > 64 { 4 } else { 20 },
                depth,
                c.clone(),
            ));
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
    let configs: Vec<Config> = cpus
        .iter()
        .flat_map(|&cpu| [true, false].map(|elide| Config::new(cpu, 2).with_exit_elide(elide)))
        .collect();
    let configs = strategies(configs);
    let mut out = Vec::new();
    for &n in sizes {
        out.extend(
            configs
                .iter()
                .map(|c| point(w, n, 0, ops_for(4096, n, 2, 40), depth, c.clone())),
        );
    }
    out
}

fn pingpong(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let mut configs = vec![Config::new(CPU_RANGE, 2)];
    if depth == Depth::Full {
        configs.push(Config::new(CPU_NO_RANGE, 2));
        configs.extend(cpu_count_configs(depth));
    }
    strategies(configs)
        .into_iter()
        .map(|c| point(w, 0, 0, 400, depth, c))
        .collect()
}

fn asid_pressure(w: &'static Workload, depth: Depth) -> Vec<Point> {
    let bits: &[u32] = match depth {
        Depth::Quick => &[4, 8, 16],
        Depth::Full => &[4, 5, 6, 8, 10, 12, 16],
    };
    let mut out = Vec::new();
    for &b in bits {
        for c in strategies(vec![Config::new(CPU_RANGE, 2).with_asid_bits(b)]) {
            out.push(point(w, 64, 0, 256, depth, c.clone()));
            if depth == Depth::Full {
                out.push(point(w, 1, FLAG_A, 64, depth, c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_layout_matches_the_programs() {
        let mut p = plan(Depth::Quick, &[workload("pingpong").unwrap()]).remove(0);
        (p.n, p.reps, p.ops, p.flags) = (4096, 7, 300, FLAG_A);
        assert_eq!(p.arg(), 4096 | 7 << 32 | 300 << 40 | 1 << 56);
        assert_eq!(
            p.args().last().unwrap(),
            &format!("run=bench_pingpong:{:#x}", p.arg())
        );
    }

    #[test]
    fn plans_are_unique_and_quick_is_smaller() {
        for depth in [Depth::Quick, Depth::Full] {
            let points = plan(depth, &[]);
            let mut keys: Vec<_> = points
                .iter()
                .map(|p| (p.args(), p.config.label()))
                .collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), n, "{depth:?}: a point is measured twice");
            for w in WORKLOADS {
                assert!(
                    points.iter().any(|p| p.workload == w.name),
                    "{depth:?}: no {} point",
                    w.name
                );
            }
        }
        assert!(plan(Depth::Quick, &[]).len() * 2 < plan(Depth::Full, &[]).len());
        let mmap = workload("mmap").unwrap();
        assert!(plan(Depth::Quick, &[mmap])
            .iter()
            .all(|p| p.workload == "mmap"));
        assert!(workload("nonesuch").is_none());
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
        assert_eq!(
            Point::new(workload("asid-pressure").unwrap(), 1, FLAG_A, 1, 1, c).busy_cpus,
            1
        );
    }
}
