//! The `BENCH {...}` line a benchmark program prints, and the record the
//! host makes of it: times per operation (median, min, max) and the
//! kernel's counters per operation.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::sweep::Point;

/// The prefix of a benchmark line on the console.
pub const PREFIX: &str = "BENCH ";

/// Named counters in the order the kernel reports them (a JSON object
/// whose key order is kept).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counts<T>(pub Vec<(String, T)>);

impl<T: Copy + Default> Counts<T> {
    pub fn get(&self, name: &str) -> T {
        self.0.iter().find(|(k, _)| k == name).map(|&(_, v)| v).unwrap_or_default()
    }

    pub fn map<U>(&self, f: impl Fn(T) -> U) -> Counts<U> {
        Counts(self.0.iter().map(|(k, v)| (k.clone(), f(*v))).collect())
    }
}

impl<T: Serialize> Serialize for Counts<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Counts<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Counts<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of counters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Counts(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The line as the program prints it (`userland::bench`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct BenchLine {
    pub v: u32,
    pub workload: String,
    pub arg: u64,
    #[serde(default)]
    pub params: Counts<u64>,
    pub reps: u32,
    pub ops: u64,
    pub warmup: u64,
    pub counted_ops: u64,
    pub cntfrq: u64,
    pub cpus: u32,
    pub rep_ticks: Vec<u64>,
    pub tlbi: Counts<u64>,
    pub dsb: u64,
    /// The repeat-TLBI workaround's TLBIs by kind and its DSBs
    /// (`tlb.repeat_tlbi`), apart from `tlbi` and `dsb`: absent when it
    /// issued none.
    #[serde(default)]
    pub repeat: Counts<u64>,
    #[serde(default)]
    pub repeat_dsb: u64,
    pub asid: Counts<u64>,
    pub faults: u64,
    /// The kernel's TLB events (`STATS(EVENTS)`): absent from lines of
    /// programs built before it was reported.
    #[serde(default)]
    pub events: Counts<u64>,
    /// Device 0's counters (`abi::device`'s names), when the device worked
    /// during the measurement.
    #[serde(default)]
    pub device: Counts<u64>,
    /// The by-address TLBIs by kind and TTL hint level (`vale1is@l2`,
    /// `vae1is@none`; `STATS(TLBI_TTL)`), those issued.
    #[serde(default)]
    pub tlbi_ttl: Counts<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("not a benchmark line (no {PREFIX:?} prefix)")]
    NoPrefix,
    #[error("bad benchmark JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("inconsistent benchmark line: {0}")]
    Inconsistent(String),
}

impl BenchLine {
    /// Parses a console line `BENCH {...}` and checks its shape.
    pub fn parse(line: &str) -> Result<BenchLine, LineError> {
        let json = line.trim().strip_prefix(PREFIX).ok_or(LineError::NoPrefix)?;
        let b: BenchLine = serde_json::from_str(json)?;
        let bad = |m: String| Err(LineError::Inconsistent(m));
        if b.rep_ticks.len() != b.reps as usize || b.reps == 0 {
            return bad(format!("{} rep_ticks for reps={}", b.rep_ticks.len(), b.reps));
        }
        if b.ops == 0 || b.counted_ops < u64::from(b.reps) * b.ops {
            return bad(format!("counted_ops={} < reps×ops={}×{}", b.counted_ops, b.reps, b.ops));
        }
        if b.cntfrq == 0 {
            return bad("cntfrq=0".into());
        }
        Ok(b)
    }
}

/// Median, minimum, maximum and mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Spread { median, min: v[0], max: v[n - 1], mean: v.iter().sum::<f64>() / n as f64 }
    }
}

/// One measurement, as written to `records.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub workload: String,
    pub program: String,
    pub params: Counts<u64>,
    /// The configuration's label (`max 2cpu broadcast/default elide=off`).
    pub config: String,
    /// The sweep (`configs` or `strategies`, `sweep::Sweep`).
    #[serde(default = "configs")]
    pub sweep: String,
    pub strategy: String,
    pub policy: String,
    /// QEMU `-cpu`.
    pub cpu_model: String,
    /// What the kernel's banner called the CPU, and its TLB features.
    pub cpu_name: Option<String>,
    pub cpu_features: Option<String>,
    /// CPUs online (QEMU `-smp`).
    pub cpus: u32,
    /// CPUs the workload's address space ran on: its threads, one per CPU.
    #[serde(default = "one")]
    pub mm_cpus: u32,
    pub exit_elide: Option<bool>,
    pub nested_fix: Option<bool>,
    pub asid_bits: Option<u32>,
    /// `reclaim.batch` when set (`None`: the kernel's default, on).
    #[serde(default)]
    pub reclaim_batch: Option<bool>,
    /// `tlb.repeat_tlbi` when set (`None`: the kernel's default, auto).
    #[serde(default)]
    pub repeat_tlbi: Option<String>,
    /// The mode the kernel's banner said applies (`tlb: repeat_tlbi=...`).
    #[serde(default)]
    pub repeat_mode: Option<String>,
    /// The kernel command line.
    pub cmdline: String,
    pub repetitions: u32,
    pub ops_per_rep: u64,
    pub warmup_ops: u64,
    /// Operations the counters cover (every thread's).
    pub counted_ops: u64,
    /// Nanoseconds per operation over the repetitions.
    pub ns_per_op: Spread,
    pub tlbi_per_op: Counts<f64>,
    pub tlbi_total: Counts<u64>,
    /// All TLBI kinds together, per operation.
    pub tlbi_ops_per_op: f64,
    pub dsb_per_op: f64,
    pub dsb_total: u64,
    /// The repeat-TLBI workaround's TLBIs (by kind, and all per operation)
    /// and DSBs: not in the `tlbi_*` and `dsb_*` figures above.
    #[serde(default)]
    pub repeat_total: Counts<u64>,
    #[serde(default)]
    pub repeat_per_op: f64,
    #[serde(default)]
    pub repeat_dsb_total: u64,
    #[serde(default)]
    pub repeat_dsb_per_op: f64,
    /// Shootdown IPIs sent per operation (the kernel's `ipi_sent`).
    pub ipis_per_op: f64,
    /// Whether the kernel reported its TLB events (IPIs among them); if
    /// not, the IPI and event numbers are 0.
    pub ipis_counted: bool,
    /// Shootdown IPIs served per operation (`ipi_received`).
    #[serde(default)]
    pub ipis_received_per_op: f64,
    /// The kernel's TLB events (`mm::tlb::Event`) over the operations, and
    /// per operation.
    #[serde(default)]
    pub events_total: Counts<u64>,
    #[serde(default)]
    pub events_per_op: Counts<f64>,
    /// The device's counters (`abi::device`: fills, hits, retries, ...)
    /// over the operations, and per operation; empty when no device worked.
    #[serde(default)]
    pub device_total: Counts<u64>,
    #[serde(default)]
    pub device_per_op: Counts<f64>,
    /// The by-address TLBIs by kind and TTL hint level, per operation
    /// (`vale1is@l2`); empty from kernels that do not count levels.
    #[serde(default)]
    pub tlbi_ttl_per_op: Counts<f64>,
    pub asid_rollovers: u64,
    pub asid_rollovers_per_op: f64,
    pub asid_total: Counts<u64>,
    pub page_faults: u64,
    pub page_faults_per_op: f64,
    /// Guest instructions per operation: the TCG plugin's count over the
    /// timed repetitions (user and kernel), over repetitions × operations;
    /// on the vCPUs [`Record::insns_scope`] says. `None` when measured
    /// without the plugin.
    #[serde(default)]
    pub insns_per_op: Option<f64>,
    #[serde(default)]
    pub insns_scope: Option<InsnsScope>,
    /// The plugin's counts over the timed repetitions.
    #[serde(default)]
    pub plugin: Option<PluginCounts>,
    pub cntfrq: u64,
    pub rep_ticks: Vec<u64>,
    /// The program's line, as printed.
    pub raw: String,
    /// The QEMU command line, to reproduce the measurement.
    pub qemu: String,
    pub wall_seconds: f64,
}

fn configs() -> String {
    "configs".into()
}

fn one() -> u32 {
    1
}

/// Whose instructions [`Record::insns_per_op`] counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InsnsScope {
    /// Every vCPU's: the operation's work wherever it ran (a forked child
    /// or an IPC peer the scheduler put on another CPU), plus the other
    /// CPUs' idle ticks (a few instructions per operation).
    AllVcpus,
    /// The measuring vCPU's only: a second thread of the workload keeps
    /// another CPU busy (threads=2), and its spinning or its own operations
    /// are not this operation's.
    MeasuringVcpu,
}

impl InsnsScope {
    /// The scope for a measurement of `point`.
    pub fn of(point: &Point) -> InsnsScope {
        if point.busy_cpus > 1 {
            InsnsScope::MeasuringVcpu
        } else {
            InsnsScope::AllVcpus
        }
    }

    /// The instructions of `p` in this scope.
    pub fn insns(self, p: &PluginCounts) -> u64 {
        match self {
            InsnsScope::AllVcpus => p.insns_all_vcpus,
            InsnsScope::MeasuringVcpu => p.insns,
        }
    }
}

/// What the TCG plugin (`crate::tcg_plugin`) counted in the two regions a
/// program marks (`userland::bench`): TLBIs and DSBs over the outer one,
/// which spans what the kernel's counter deltas span, and instructions over
/// the inner one, the timed repetitions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginCounts {
    /// How it counted instructions: `tb` (per translation block) or `insn`.
    pub count: String,
    /// The vCPU that executed the markers (the program's CPU).
    pub vcpu: u32,
    /// That vCPU's instructions over the timed repetitions: user and
    /// kernel, the program's and any other task's that ran there meanwhile
    /// (a forked child, a server).
    pub insns: u64,
    /// Every vCPU's instructions over the timed repetitions (idle loops and
    /// spinning threads too).
    pub insns_all_vcpus: u64,
    /// TLBIs by kind, every vCPU's, over the outer region.
    pub tlbi: BTreeMap<String, u64>,
    /// DSBs by option, every vCPU's, over the outer region.
    pub dsb: BTreeMap<String, u64>,
    /// DSBs that completed TLB maintenance (a full DSB after at least one
    /// TLBI on the same vCPU since its previous such DSB), every vCPU's,
    /// over the outer region.
    pub dsb_completing: u64,
}

impl PluginCounts {
    /// The counts of a program's `outer` and `inner` regions, from a report
    /// made in `count` mode.
    pub fn of_regions(
        outer: &crate::tcg_plugin::Region,
        inner: &crate::tcg_plugin::Region,
        count: &str,
    ) -> PluginCounts {
        PluginCounts {
            count: count.to_string(),
            vcpu: inner.begin_vcpu,
            insns: inner.marking_vcpu().insns,
            insns_all_vcpus: inner.total.insns,
            tlbi: outer.total.tlbi.clone(),
            dsb: outer.total.dsb.clone(),
            dsb_completing: outer.total.dsb_completing,
        }
    }
}

/// What the kernel's banner says about the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Banner {
    pub cpu_name: Option<String>,
    pub features: Option<String>,
    /// The repeat-TLBI mode that applied (`off`, `each`, `once`).
    pub repeat_tlbi: Option<String>,
}

impl Banner {
    /// Reads `cpu: NAME (MIDR ..)`, `features: ...` and `tlb: repeat_tlbi=MODE
    /// (...)` lines.
    pub fn parse<'a>(console: impl IntoIterator<Item = &'a str>) -> Banner {
        let mut b = Banner::default();
        for line in console {
            if let Some(rest) = line.strip_prefix("cpu: ") {
                b.cpu_name = rest.split_whitespace().next().map(str::to_string);
            } else if let Some(rest) = line.strip_prefix("features: ") {
                b.features = Some(rest.trim().to_string());
            } else if let Some(rest) = line.strip_prefix("tlb: repeat_tlbi=") {
                b.repeat_tlbi = rest.split_whitespace().next().map(str::to_string);
            }
        }
        b
    }
}

/// Where a measurement ran.
#[derive(Clone, Debug)]
pub struct RunInfo<'a> {
    pub point: &'a Point,
    pub cmdline: &'a str,
    pub qemu: &'a str,
    pub banner: &'a Banner,
    pub wall_seconds: f64,
    /// The plugin's counts for this line's region, if it was loaded.
    pub plugin: Option<&'a PluginCounts>,
}

impl Record {
    /// The record of `line` (the console line, `BENCH {...}`).
    pub fn new(line: &str, run: &RunInfo<'_>) -> Result<Record, LineError> {
        let b = BenchLine::parse(line)?;
        let c = &run.point.config;
        let per_op = |n: u64| n as f64 / b.counted_ops as f64;
        let ns: Vec<f64> = b.rep_ticks.iter().map(|&t| t as f64 * 1e9 / b.cntfrq as f64 / b.ops as f64).collect();
        let tlbi_sum: u64 = b.tlbi.0.iter().map(|(_, n)| n).sum();
        let rollovers = b.asid.get("rollovers");
        Ok(Record {
            workload: b.workload.clone(),
            program: run.point.program.to_string(),
            params: b.params.clone(),
            config: c.label(),
            sweep: run.point.sweep.name().to_string(),
            strategy: c.strategy.name.to_string(),
            policy: c.policy.name.to_string(),
            cpu_model: c.cpu.to_string(),
            cpu_name: run.banner.cpu_name.clone(),
            cpu_features: run.banner.features.clone(),
            cpus: b.cpus,
            mm_cpus: run.point.mm_cpus(),
            exit_elide: c.exit_elide,
            nested_fix: c.nested_fix,
            asid_bits: c.asid_bits,
            reclaim_batch: c.reclaim_batch,
            repeat_tlbi: c.repeat_tlbi.map(str::to_string),
            repeat_mode: run.banner.repeat_tlbi.clone(),
            cmdline: run.cmdline.to_string(),
            repetitions: b.reps,
            ops_per_rep: b.ops,
            warmup_ops: b.warmup,
            counted_ops: b.counted_ops,
            ns_per_op: Spread::of(&ns),
            tlbi_per_op: b.tlbi.map(per_op),
            tlbi_total: b.tlbi.clone(),
            tlbi_ops_per_op: per_op(tlbi_sum),
            dsb_per_op: per_op(b.dsb),
            dsb_total: b.dsb,
            repeat_total: b.repeat.clone(),
            repeat_per_op: per_op(b.repeat.0.iter().map(|(_, n)| n).sum()),
            repeat_dsb_total: b.repeat_dsb,
            repeat_dsb_per_op: per_op(b.repeat_dsb),
            ipis_per_op: per_op(b.events.get("ipi_sent")),
            ipis_counted: !b.events.0.is_empty(),
            ipis_received_per_op: per_op(b.events.get("ipi_received")),
            events_total: b.events.clone(),
            events_per_op: b.events.map(per_op),
            device_total: b.device.clone(),
            device_per_op: b.device.map(per_op),
            tlbi_ttl_per_op: b.tlbi_ttl.map(per_op),
            asid_rollovers: rollovers,
            asid_rollovers_per_op: per_op(rollovers),
            asid_total: b.asid.clone(),
            page_faults: b.faults,
            page_faults_per_op: per_op(b.faults),
            insns_per_op: run.plugin.map(|p| InsnsScope::of(run.point).insns(p) as f64 / timed_ops(&b) as f64),
            insns_scope: run.plugin.map(|_| InsnsScope::of(run.point)),
            plugin: run.plugin.cloned(),
            cntfrq: b.cntfrq,
            rep_ticks: b.rep_ticks.clone(),
            raw: line.trim().to_string(),
            qemu: run.qemu.to_string(),
            wall_seconds: run.wall_seconds,
        })
    }

    /// `pages=16 threads=2`.
    pub fn params_label(&self) -> String {
        self.params.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }

    pub fn param(&self, name: &str) -> Option<u64> {
        self.params.0.iter().find(|(k, _)| k == name).map(|&(_, v)| v)
    }

    /// The by-address TLBIs per operation by TTL hint level, all kinds
    /// together: `1.00 l2, 1.00 l3, 2.00 none` (`none`: no hint); `-` when
    /// the line has by-address TLBIs but no levels (a kernel that does not
    /// count them), empty without by-address TLBIs.
    pub fn ttl_breakdown(&self) -> String {
        let by_address = self.tlbi_per_op.0.iter().any(|(k, v)| *v > 0.0 && k.contains("va"));
        if self.tlbi_ttl_per_op.0.is_empty() {
            return if by_address { "-".into() } else { String::new() };
        }
        let parts: Vec<String> = ["l1", "l2", "l3", "none"]
            .iter()
            .filter_map(|l| {
                let suffix = format!("@{l}");
                let n: f64 = self.tlbi_ttl_per_op.0.iter().filter(|(k, _)| k.ends_with(&suffix)).map(|(_, v)| v).sum();
                (n > 0.0).then(|| format!("{} {l}", fmt_count(n)))
            })
            .collect();
        parts.join(", ")
    }

    /// TLBI kinds with a non-zero count, per operation: `1.00 rvale1is`.
    pub fn tlbi_breakdown(&self) -> String {
        let parts: Vec<String> = self
            .tlbi_per_op
            .0
            .iter()
            .filter(|(_, v)| *v > 0.0)
            .map(|(k, v)| format!("{} {k}", fmt_count(*v)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Events other than the IPIs with a non-zero count, per operation:
    /// `1 decide_broadcast, 0.50 lazy_skip`.
    pub fn events_breakdown(&self) -> String {
        let parts: Vec<String> = self
            .events_per_op
            .0
            .iter()
            .filter(|(k, v)| *v > 0.0 && k != "ipi_sent" && k != "ipi_received")
            .map(|(k, v)| format!("{} {k}", fmt_count(*v)))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Checks the record against the program's raw line: every number the
    /// host derived must follow from the counters the kernel reported.
    pub fn check(&self) -> Result<(), String> {
        let b = BenchLine::parse(&self.raw).map_err(|e| e.to_string())?;
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
        let mut problems = Vec::new();
        let mut expect = |ok: bool, what: String| {
            if !ok {
                problems.push(what)
            }
        };
        expect(b.tlbi == self.tlbi_total, format!("tlbi_total {:?} != kernel's {:?}", self.tlbi_total, b.tlbi));
        for (k, total) in &b.tlbi.0 {
            let per = self.tlbi_per_op.get(k);
            expect(
                close(per * b.counted_ops as f64, *total as f64),
                format!("tlbi_per_op[{k}]={per} × {} != {total}", b.counted_ops),
            );
        }
        let sum: u64 = b.tlbi.0.iter().map(|(_, n)| n).sum();
        expect(close(self.tlbi_ops_per_op * b.counted_ops as f64, sum as f64), "tlbi_ops_per_op".into());
        expect(b.dsb == self.dsb_total, "dsb_total".into());
        expect(b.faults == self.page_faults, "page_faults".into());
        expect(close(self.page_faults_per_op * b.counted_ops as f64, b.faults as f64), "page_faults_per_op".into());
        expect(b.asid == self.asid_total && b.asid.get("rollovers") == self.asid_rollovers, "asid".into());
        expect(b.events == self.events_total, "events_total".into());
        expect(self.ipis_counted != b.events.0.is_empty(), "ipis_counted".into());
        for (k, total) in &b.events.0 {
            let per = self.events_per_op.get(k);
            expect(
                close(per * b.counted_ops as f64, *total as f64),
                format!("events_per_op[{k}]={per} × {} != {total}", b.counted_ops),
            );
        }
        for (name, per) in [("ipi_sent", self.ipis_per_op), ("ipi_received", self.ipis_received_per_op)] {
            expect(close(per * b.counted_ops as f64, b.events.get(name) as f64), format!("{name} per op {per}"));
        }
        expect(b.rep_ticks == self.rep_ticks && b.reps == self.repetitions, "rep_ticks".into());
        expect(b.counted_ops == self.counted_ops && b.ops == self.ops_per_rep, "ops".into());
        expect(b.params == self.params && b.workload == self.workload, "workload/params".into());
        match (&self.plugin, self.insns_per_op, self.insns_scope) {
            (Some(p), Some(per_op), Some(scope)) => expect(
                close(per_op * timed_ops(&b) as f64, scope.insns(p) as f64),
                format!("insns_per_op={per_op} from the plugin's {} instructions ({scope:?})", scope.insns(p)),
            ),
            (None, None, None) => {}
            _ => expect(false, "insns_per_op, insns_scope and plugin counts go together".into()),
        }
        let s = &self.ns_per_op;
        expect(s.min <= s.median && s.median <= s.max && s.min > 0.0, format!("ns_per_op {s:?}"));
        let ns = |t: u64| t as f64 * 1e9 / b.cntfrq as f64 / b.ops as f64;
        let lo = b.rep_ticks.iter().copied().min().map(ns).unwrap_or(0.0);
        expect(close(lo, s.min), format!("ns_per_op.min {} != {lo} from rep_ticks", s.min));
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Operations of the timed repetitions (the measuring thread's: repetitions
/// × operations per repetition), over which time and instructions per
/// operation are taken.
fn timed_ops(b: &BenchLine) -> u64 {
    u64::from(b.reps) * b.ops
}

/// Instructions per operation, `-` when not counted: `12.3k`.
pub fn fmt_insns(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(n) if n >= 1e6 => format!("{:.2}M", n / 1e6),
        Some(n) if n >= 1e4 => format!("{:.1}k", n / 1e3),
        Some(n) => format!("{n:.0}"),
    }
}

/// `12.3 µs`-style time from nanoseconds.
pub fn fmt_ns(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.1} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

/// A per-operation count: integers plainly, fractions with two decimals.
pub fn fmt_count(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.2}")
    }
}

/// Records of one workload grouped by their parameters, in first-seen order.
pub fn by_params<'a>(records: &'a [Record], workload: &str) -> Vec<(String, Vec<&'a Record>)> {
    let mut order: Vec<String> = Vec::new();
    let mut groups: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.workload == workload) {
        let key = r.params_label();
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    order
        .into_iter()
        .map(|k| {
            let v = groups.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::config::{Config, CPU_RANGE};

    pub const LINE: &str = r#"BENCH {"v":1,"workload":"mmap","arg":1,"params":{"pages":16,"threads":1},"reps":3,"ops":10,"warmup":10,"counted_ops":30,"cntfrq":62500000,"cpus":2,"rep_ticks":[6250,12500,9375],"tlbi":{"vae1":0,"vale1is":3,"rvae1is":30},"dsb":30,"asid":{"rollovers":3,"slow":1},"faults":480}"#;

    pub fn point() -> Point {
        let w = crate::bench::sweep::workload("mmap").unwrap();
        Point::new(w, 16, 0, 3, 10, Config::new(CPU_RANGE, 2))
    }

    pub fn record(line: &str) -> Record {
        let p = point();
        let banner = Banner::parse(["cpu: qemu-max (MIDR 0xf0510), entered at EL1", "features: tlbi-range=1 ttl=1"]);
        let info = RunInfo {
            point: &p,
            cmdline: "log=warn run=bench_mmap:0x1",
            qemu: "qemu ...",
            banner: &banner,
            wall_seconds: 1.5,
            plugin: None,
        };
        Record::new(line, &info).unwrap()
    }

    /// Plugin counts that agree with [`LINE`]'s kernel counters.
    pub fn plugin_counts() -> PluginCounts {
        PluginCounts {
            count: "tb".into(),
            vcpu: 0,
            insns: 85_000,
            insns_all_vcpus: 90_000,
            tlbi: [("vale1is".to_string(), 3), ("rvae1is".to_string(), 30)].into(),
            dsb: [("ish".to_string(), 30), ("ishst".to_string(), 30)].into(),
            dsb_completing: 30,
        }
    }

    /// The record of `line` measured with the plugin counting `counts`.
    pub fn record_with_plugin(line: &str, counts: &PluginCounts) -> Record {
        let p = point();
        let banner = Banner::default();
        let info = RunInfo {
            point: &p,
            cmdline: "log=warn",
            qemu: "qemu ...",
            banner: &banner,
            wall_seconds: 1.0,
            plugin: Some(counts),
        };
        Record::new(line, &info).unwrap()
    }

    #[test]
    fn instructions_per_op_come_from_the_plugin() {
        assert_eq!(record(LINE).insns_per_op, None);
        let r = record_with_plugin(LINE, &plugin_counts());
        // 90 000 instructions over 3 repetitions of 10 operations, on
        // every vCPU (the point has no busy second thread).
        assert_eq!(r.insns_per_op, Some(3000.0));
        assert_eq!(r.insns_scope, Some(InsnsScope::AllVcpus));
        r.check().unwrap();
        let mut bad = r.clone();
        bad.insns_per_op = Some(3001.0);
        assert!(bad.check().unwrap_err().contains("insns_per_op"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        let old = json.replace(",\"insns_per_op\":3000.0,\"insns_scope\":\"all_vcpus\"", "");
        let old = old[..old.find(",\"plugin\":").unwrap()].to_string() + &old[old.find(",\"cntfrq\"").unwrap()..];
        let back: Record = serde_json::from_str(&old).unwrap();
        assert_eq!((back.insns_per_op, back.plugin), (None, None), "records of older runs read");
        assert_eq!(
            (fmt_insns(None), fmt_insns(Some(812.4)), fmt_insns(Some(45_678.0)), fmt_insns(Some(2.5e6))),
            ("-".into(), "812".into(), "45.7k".into(), "2.50M".into())
        );
    }

    #[test]
    fn a_record_derives_per_op_numbers_from_the_line() {
        let r = record(LINE);
        assert_eq!(r.cpu_name.as_deref(), Some("qemu-max"));
        assert_eq!(r.cpu_features.as_deref(), Some("tlbi-range=1 ttl=1"));
        // 6250 ticks at 62.5 MHz = 100 µs for 10 ops = 10 µs per op.
        assert_eq!(r.ns_per_op.min, 10_000.0);
        assert_eq!(r.ns_per_op.median, 15_000.0);
        assert_eq!(r.ns_per_op.max, 20_000.0);
        assert_eq!(r.tlbi_per_op.get("rvae1is"), 1.0);
        assert_eq!(r.tlbi_per_op.get("vale1is"), 0.1);
        assert_eq!(r.tlbi_ops_per_op, 1.1);
        assert_eq!((r.page_faults_per_op, r.asid_rollovers_per_op), (16.0, 0.1));
        assert_eq!(r.params_label(), "pages=16 threads=1");
        assert_eq!(r.tlbi_breakdown(), "0.10 vale1is, 1 rvae1is");
        assert_eq!(r.tlbi_total.0.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["vae1", "vale1is", "rvae1is"]);
        r.check().unwrap();
        let json = serde_json::to_string(&r).unwrap();
        let back: Record = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(json.contains(r#""tlbi_total":{"vae1":0,"vale1is":3,"rvae1is":30}"#), "{json}");
    }

    #[test]
    fn events_give_ipis_per_op() {
        let old = record(LINE);
        assert!(!old.ipis_counted && old.ipis_per_op == 0.0 && old.events_total.0.is_empty());
        assert_eq!((old.sweep.as_str(), old.mm_cpus), ("configs", 1));
        let line = LINE.replace(
            r#""faults":480}"#,
            concat!(
                r#""faults":480,"events":{"decide_ipi":30,"ipi_sent":30,"#,
                r#""ipi_received":30,"lazy_skip":0,"catch_up_partial":15}}"#
            ),
        );
        let r = record(&line);
        assert!(r.ipis_counted);
        assert_eq!((r.ipis_per_op, r.ipis_received_per_op), (1.0, 1.0));
        assert_eq!(r.events_per_op.get("catch_up_partial"), 0.5);
        assert_eq!(r.events_breakdown(), "1 decide_ipi, 0.50 catch_up_partial");
        assert_eq!(old.events_breakdown(), "none");
        r.check().unwrap();
        let mut bad = r.clone();
        bad.ipis_per_op = 2.0;
        assert!(bad.check().unwrap_err().contains("ipi_sent"));
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        // Records written before the strategy sweep read as configs-sweep
        // records of one CPU without events.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for k in ["sweep", "mm_cpus", "ipis_received_per_op", "events_total", "events_per_op"] {
            v.as_object_mut().unwrap().remove(k);
        }
        let back: Record = serde_json::from_value(v).unwrap();
        assert_eq!((back.sweep.as_str(), back.mm_cpus), ("configs", 1));
        assert!(back.events_total.0.is_empty());
    }

    #[test]
    fn check_catches_a_record_that_disagrees_with_the_kernel() {
        let mut r = record(LINE);
        r.tlbi_per_op.0[2].1 = 2.0;
        assert!(r.check().unwrap_err().contains("rvae1is"));
        let mut r = record(LINE);
        r.page_faults += 1;
        assert!(r.check().is_err());
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(matches!(BenchLine::parse("hello"), Err(LineError::NoPrefix)));
        assert!(matches!(BenchLine::parse("BENCH {"), Err(LineError::Json(_))));
        let short = LINE.replace("[6250,12500,9375]", "[6250]");
        assert!(matches!(BenchLine::parse(&short), Err(LineError::Inconsistent(_))));
        let few = LINE.replace("\"counted_ops\":30", "\"counted_ops\":29");
        assert!(matches!(BenchLine::parse(&few), Err(LineError::Inconsistent(_))));
    }

    #[test]
    fn device_counters_are_per_operation_and_optional() {
        assert!(record(LINE).device_per_op.0.is_empty(), "no device in the line");
        assert!(record(LINE).tlbi_ttl_per_op.0.is_empty(), "no levels in the line");
        assert_eq!(record(LINE).ttl_breakdown(), "-", "by-address TLBIs without levels");
        let levels = r#""faults":480,"tlbi_ttl":{"vale1is@l2":3,"rvae1is@none":30}}"#;
        let with_levels = LINE.replace(r#""faults":480}"#, levels);
        let r = record(&with_levels);
        assert_eq!(r.tlbi_ttl_per_op.get("vale1is@l2"), 0.1);
        assert_eq!(r.ttl_breakdown(), "0.10 l2, 1 none");
        let line = LINE.replace(
            r#""faults":480}"#,
            r#""faults":480,"events":{"sec_inval":15},"device":{"fills":60,"retries":3}}"#,
        );
        let r = record(&line);
        assert_eq!(r.device_total.get("fills"), 60);
        assert_eq!((r.device_per_op.get("fills"), r.device_per_op.get("retries")), (2.0, 0.1));
        assert_eq!(r.events_per_op.get("sec_inval"), 0.5);
        let table = crate::bench::report::device_table(&[Record { workload: "device".into(), ..r }]);
        assert!(table.contains("| pages=16 threads=1 | max 2cpu"), "{table}");
        assert!(table.contains("| 0.50 | 0 | 1.10 | 2 | 0 | 0.10 | 0 | 0 |"), "{table}");
    }

    #[test]
    fn spreads_and_formats() {
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0, 10.0]).median, 2.5);
        assert_eq!(Spread::of(&[]), Spread::default());
        assert_eq!(fmt_ns(1234.0), "1.2 µs");
        assert_eq!(fmt_ns(2_500_000.0), "2.50 ms");
        assert_eq!(fmt_ns(999.0), "999 ns");
        assert_eq!((fmt_count(2.0), fmt_count(0.126)), ("2".into(), "0.13".into()));
    }
}
