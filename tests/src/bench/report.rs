//! The files of a results directory: `records.jsonl` (one JSON record per
//! measurement), `records.csv` (the same, flat), `summary.md` (tables per
//! workload of the configs sweep, tables per workload of the strategy sweep
//! by strategy and CPU count, plus what was unsupported or failed), and the
//! short table `scripts/run.sh` prints.

use std::fmt::Write as _;
use std::path::Path;

use super::config::STRATEGIES;
use super::record::{by_params, fmt_count, fmt_insns, fmt_ns, InsnsScope, Record};
use super::runner::{Outcome, PointResult};
use super::sweep::{Sweep, WORKLOADS};
use super::verify::Verification;

/// The TLBI kinds in the kernel's order (`kernel/src/mm/tlb/op.rs`), for
/// CSV columns; kinds a newer kernel adds go in the `tlbi_other` column.
pub use abi::stats::TLBI_NAMES as TLBI_KINDS;

/// The kernel's TLB events in its order, for CSV columns (the kernel
/// checks at build time that `abi` names them as it does).
pub use abi::stats::EVENT_NAMES;

/// Writes `records.jsonl`.
pub fn write_jsonl(path: &Path, records: &[Record]) -> std::io::Result<()> {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
        out.push('\n');
    }
    std::fs::write(path, out)
}

/// Reads `records.jsonl` back.
pub fn read_jsonl(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), i + 1)))
        .collect()
}

/// Quotes a CSV field if it needs it (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// The CSV text of `records`: one row each, TLBI kinds per operation as
/// columns.
pub fn csv(records: &[Record]) -> String {
    let mut head: Vec<String> = [
        "workload",
        "params",
        "config",
        "sweep",
        "strategy",
        "policy",
        "cpu_model",
        "cpu_name",
        "cpus",
        "mm_cpus",
        "exit_elide",
        "nested_fix",
        "asid_bits",
        "repeat_tlbi",
        "repeat_mode",
        "repetitions",
        "ops_per_rep",
        "counted_ops",
        "ns_median",
        "ns_min",
        "ns_max",
        "ns_mean",
        "insns_per_op",
        "insns_scope",
        "tlbi_per_op",
    ]
    .map(String::from)
    .to_vec();
    head.extend(TLBI_KINDS.iter().map(|k| format!("{k}_per_op")));
    head.extend(
        [
            "tlbi_other_per_op",
            "dsb_per_op",
            "repeat_tlbi_per_op",
            "repeat_dsb_per_op",
            "ipis_per_op",
            "ipis_received_per_op",
            "asid_rollovers",
            "asid_rollovers_per_op",
            "page_faults_per_op",
        ]
        .map(String::from),
    );
    head.extend(EVENT_NAMES.iter().map(|k| format!("{k}_per_op")));
    head.push("cmdline".into());
    let mut out = head.join(",");
    out.push('\n');
    for r in records {
        let s = &r.ns_per_op;
        let mut row: Vec<String> = vec![
            r.workload.clone(),
            r.params_label(),
            r.config.clone(),
            r.sweep.clone(),
            r.strategy.clone(),
            r.policy.clone(),
            r.cpu_model.clone(),
            opt(r.cpu_name.clone()),
            r.cpus.to_string(),
            r.mm_cpus.to_string(),
            opt(r.exit_elide),
            opt(r.nested_fix),
            opt(r.asid_bits),
            opt(r.repeat_tlbi.clone()),
            opt(r.repeat_mode.clone()),
            r.repetitions.to_string(),
            r.ops_per_rep.to_string(),
            r.counted_ops.to_string(),
            format!("{:.1}", s.median),
            format!("{:.1}", s.min),
            format!("{:.1}", s.max),
            format!("{:.1}", s.mean),
            r.insns_per_op.map(|n| format!("{n:.1}")).unwrap_or_default(),
            match r.insns_scope {
                Some(InsnsScope::AllVcpus) => "all_vcpus".into(),
                Some(InsnsScope::MeasuringVcpu) => "measuring_vcpu".into(),
                None => String::new(),
            },
            format!("{:.4}", r.tlbi_ops_per_op),
        ];
        row.extend(TLBI_KINDS.iter().map(|k| format!("{:.4}", r.tlbi_per_op.get(k))));
        let other: f64 =
            r.tlbi_per_op.0.iter().filter(|(k, _)| !TLBI_KINDS.contains(&k.as_str())).map(|(_, v)| v).sum();
        row.extend([
            format!("{other:.4}"),
            format!("{:.4}", r.dsb_per_op),
            format!("{:.4}", r.repeat_per_op),
            format!("{:.4}", r.repeat_dsb_per_op),
            format!("{:.4}", r.ipis_per_op),
            format!("{:.4}", r.ipis_received_per_op),
            r.asid_rollovers.to_string(),
            format!("{:.4}", r.asid_rollovers_per_op),
            format!("{:.4}", r.page_faults_per_op),
        ]);
        row.extend(EVENT_NAMES.iter().map(|k| format!("{:.4}", r.events_per_op.get(k))));
        row.push(r.cmdline.clone());
        out.push_str(&row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// Facts about the run for the summary's header.
#[derive(Clone, Debug, Default)]
pub struct RunMeta {
    pub mode: String,
    pub started: String,
    pub seconds: f64,
    pub jobs: usize,
    pub kernel: String,
    pub base_args: Vec<String>,
    pub host: String,
    /// The host's load average before and after the run.
    pub load: Option<(f64, f64)>,
    /// The TCG plugin loaded into every measuring boot, if any.
    pub plugin: Option<String>,
}

/// `summary.md`.
pub fn summary(
    results: &[PointResult],
    meta: &RunMeta,
    plots: &[String],
    verification: Option<&Verification>,
) -> String {
    let records: Vec<Record> = records_of(results);
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark results ({})\n", meta.mode);
    let _ = writeln!(
        s,
        "- started {}, took {:.0} s, {} boots at a time on {}",
        meta.started, meta.seconds, meta.jobs, meta.host
    );
    let _ = writeln!(s, "- kernel: {}", meta.kernel);
    if let Some((before, after)) = meta.load {
        let _ = writeln!(
            s,
            "- host load average {before:.1} before, {after:.1} after{}",
            if before.max(after) > meta.jobs as f64 {
                " (other work shared the host: times are noisier than usual)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(s, "- options on every command line: `{}`", meta.base_args.join(" "));
    let _ = writeln!(
        s,
        "- {} measurements, {} unsupported by this kernel, {} failed",
        records.len(),
        results.iter().filter(|r| matches!(r.outcome, Outcome::Unsupported { .. })).count(),
        results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).count()
    );
    let _ = writeln!(
        s,
        "- time per operation: median (min–max) over the repetitions; counters are the kernel's, \
         per operation (TLBIs by kind, the DSBs that complete them, shootdown IPIs sent and \
         received, and the other TLB events of `mm::tlb::Event`)"
    );
    match &meta.plugin {
        Some(p) => {
            let _ = writeln!(
                s,
                "- instructions per operation: guest instructions (user and kernel) the TCG plugin counted over \
                 the timed repetitions, per operation, on every vCPU (with more busy threads, threads=2 or more: \
                 on the measuring vCPU only); plugin `{p}`\n"
            );
        }
        None => {
            let _ = writeln!(s, "- measured without the TCG plugin: no instruction counts\n");
        }
    }
    let configs: Vec<Record> = records.iter().filter(|r| r.sweep == Sweep::Configs.name()).cloned().collect();
    for w in WORKLOADS {
        let groups = by_params(&configs, w.name);
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {}\n\nOne operation: {}.\n", w.name, w.op);
        s.push_str("| params | config | time/op | min–max | insns/op | TLBI/op | by kind | DSB/op | faults/op | rollovers/op |\n");
        s.push_str("|---|---|---:|---:|---:|---:|---|---:|---:|---:|\n");
        for (params, rs) in groups {
            for r in rs {
                let _ = writeln!(
                    s,
                    "| {params} | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} |",
                    r.config,
                    fmt_ns(r.ns_per_op.median),
                    fmt_ns(r.ns_per_op.min),
                    fmt_ns(r.ns_per_op.max),
                    fmt_insns(r.insns_per_op),
                    fmt_count(r.tlbi_ops_per_op),
                    r.tlbi_breakdown(),
                    fmt_count(r.dsb_per_op),
                    fmt_count(r.page_faults_per_op),
                    fmt_count(r.asid_rollovers_per_op)
                );
            }
        }
        s.push('\n');
        if w.name == "device" {
            s.push_str(&device_table(&configs));
        }
    }
    s.push_str(&pages_table(&configs));
    s.push_str(&strategy_tables(&records));
    s.push_str(&repeat_tables(&records));
    let unsupported: Vec<&PointResult> =
        results.iter().filter(|r| matches!(r.outcome, Outcome::Unsupported { .. })).collect();
    if !unsupported.is_empty() {
        s.push_str(
            "## Unsupported by this kernel\n\n| workload | config | option | kernel said |\n|---|---|---|---|\n",
        );
        for r in unsupported {
            if let Outcome::Unsupported { option, message } = &r.outcome {
                let _ = writeln!(
                    s,
                    "| {} | {} | `{option}` | {} |",
                    r.point.describe(),
                    r.point.config.label(),
                    message.replace('|', "\\|")
                );
            }
        }
        s.push('\n');
    }
    let failed: Vec<&PointResult> = results.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).collect();
    if !failed.is_empty() {
        s.push_str("## Failed\n\n");
        for r in failed {
            if let Outcome::Failed { reason, console_tail, qemu } = &r.outcome {
                let _ = writeln!(
                    s,
                    "### {} — {}\n\n{reason}\n\n```\n{qemu}\n{}\n```\n",
                    r.point.describe(),
                    r.point.config.label(),
                    console_tail.join("\n")
                );
            }
        }
    }
    if let Some(v) = verification {
        s.push_str("## Verification (`--verify`)\n\nThe kernel's TLBI counters per kind and its DSB counter against the TCG plugin's counts of TLBIs and of DSBs that completed TLB maintenance, over the same region: from just after the program's first read of the kernel's counters to just before its second.\n\n```\n");
        s.push_str(&v.text());
        s.push_str("```\n\n");
    }
    if !plots.is_empty() {
        s.push_str("## Plots\n\n");
        for p in plots {
            let _ = writeln!(s, "![{p}]({p})");
        }
    }
    s
}

/// The device workload's throughput and what the notifier cost it: per
/// job, the invalidations sent to the device (`sec_inval`), the ranges
/// opened (`mn_range`), the TLBIs, and the device's own counters.
pub fn device_table(records: &[Record]) -> String {
    let rs: Vec<&Record> = records.iter().filter(|r| r.workload == "device").collect();
    if rs.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "Per job: throughput (the job's bytes over the median time per job), invalidations sent to \
         the device, invalidate-range brackets opened, TLBIs, and the device's own counters (fills: \
         table walks; retries: walks that met an open range; served by waiter: inboxes a waiting \
         CPU served for the device).\n\n\
         | params | config | MiB/s | sec_inval/job | mn_range/job | TLBI/job | fills/job | hits/job \
         | retries/job | invals/job | served by waiter/job |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rs {
        let bytes = r.param("kib").unwrap_or(0) as f64 * 1024.0;
        let secs = r.ns_per_op.median / 1e9;
        let mib_s = if secs > 0.0 { bytes / secs / (1 << 20) as f64 } else { 0.0 };
        let d = |k: &str| fmt_count(r.device_per_op.get(k));
        let _ = writeln!(
            s,
            "| {} | {} | {mib_s:.1} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.params_label(),
            r.config,
            fmt_count(r.events_per_op.get("sec_inval")),
            fmt_count(r.events_per_op.get("mn_range")),
            fmt_count(r.tlbi_ops_per_op),
            d("fills"),
            d("hits"),
            d("retries"),
            d("invals"),
            d("served_by_waiter"),
        );
    }
    s.push('\n');
    s
}

/// The pages workloads by page size: per operation, time, instructions,
/// TLBIs by kind and by TTL level, faults and the block and run events;
/// for `pages-split`, what the splits added to `pages-mmap` of the same
/// region. Empty without pages records.
pub fn pages_table(records: &[Record]) -> String {
    let mut rs: Vec<&Record> = records.iter().filter(|r| r.workload.starts_with("pages-")).collect();
    if rs.is_empty() {
        return String::new();
    }
    let key = |r: &Record| (r.param("page_kib").unwrap_or(0), r.workload.clone(), r.param("mib").unwrap_or(0));
    rs.sort_by_key(|r| (key(r), r.cpu_model.clone()));
    let mut s = String::from(
        "## TLBIs per page size\n\n\
         Per operation of the pages workloads, by page size (4 KiB pages, 64 KiB contiguous runs, 2 MiB \
         blocks): time, instructions, TLBIs by kind and by TTL hint level (the kernel's `stats(TLBI_TTL)`: \
         l2 = block entries, l3 = pages, none = no hint), page faults, and the block and run events. \
         split +time, +insns: what the splits added to pages-mmap of the same region (the time is the \
         medians' difference, as noisy as they are).\n\n\
         | page | workload | MiB | cpu | time/op | insns/op | TLBI/op | by kind | by level | faults/op \
         | events/op | split +time | split +insns |\n\
         |---:|---|---:|---|---:|---:|---:|---|---|---:|---|---:|---:|\n",
    );
    let events = ["block_fill", "run_fill", "block_split", "run_unfold", "split_no_break", "collapse"];
    for r in &rs {
        let (page, _, mib) = key(r);
        let ev: Vec<String> = events
            .iter()
            .filter(|e| r.events_per_op.get(e) > 0.0)
            .map(|e| format!("{} {e}", fmt_count(r.events_per_op.get(e))))
            .collect();
        let mmap = (r.workload == "pages-split")
            .then(|| {
                rs.iter()
                    .find(|m| m.workload == "pages-mmap" && key(m).0 == page && key(m).2 == mib && m.config == r.config)
            })
            .flatten();
        let signed = |d: f64, f: fn(f64) -> String| format!("{}{}", if d < 0.0 { "-" } else { "+" }, f(d.abs()));
        let split = mmap.map(|m| signed(r.ns_per_op.median - m.ns_per_op.median, fmt_ns)).unwrap_or_default();
        let split_insns = mmap
            .and_then(|m| Some(signed(r.insns_per_op? - m.insns_per_op?, |n| fmt_insns(Some(n)))))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {mib} | {} | {} | {} | {} | {} | {} | {} | {} | {split} | {split_insns} |",
            if page >= 1024 { format!("{} MiB", page / 1024) } else { format!("{page} KiB") },
            r.workload,
            r.cpu_model,
            fmt_ns(r.ns_per_op.median),
            fmt_insns(r.insns_per_op),
            fmt_count(r.tlbi_ops_per_op),
            r.tlbi_breakdown(),
            r.ttl_breakdown(),
            fmt_count(r.page_faults_per_op),
            ev.join(", "),
        );
    }
    s.push('\n');
    s
}

/// The strategy sweep's section of `summary.md`: per workload, one row per
/// strategy and number of CPUs the address space ran on. Empty without
/// strategy-sweep records.
pub fn strategy_tables(records: &[Record]) -> String {
    let mut rs: Vec<&Record> = records.iter().filter(|r| r.sweep == Sweep::Strategies.name()).collect();
    if rs.is_empty() {
        return String::new();
    }
    let rank = |name: &str| STRATEGIES.iter().position(|s| s.name == name).unwrap_or(usize::MAX);
    rs.sort_by_key(|r| (rank(&r.strategy), r.mm_cpus));
    let mut s = String::new();
    let machines: std::collections::BTreeSet<String> =
        rs.iter().map(|r| format!("`-cpu {}` with {} CPUs", r.cpu_model, r.cpus)).collect();
    let _ = writeln!(
        s,
        "## Flush strategies by the CPUs the address space runs on\n\n\
         Every strategy (`tlb.strategy`) × the number of CPUs the workload's address space runs \
         on (mm CPUs: its process keeps that many threads, one per CPU), on {}. Per operation: \
         time (median, min–max), guest instructions (on the measuring vCPU when mm CPUs > 1, \
         else on every vCPU), TLBIs in total and by kind (local kinds have no `is`), the DSBs \
         that complete them, shootdown IPIs sent and received, and the other TLB events.\n",
        machines.into_iter().collect::<Vec<_>>().join(", ")
    );
    for w in WORKLOADS {
        let mine: Vec<&&Record> = rs.iter().filter(|r| r.workload == w.name).collect();
        let Some(first) = mine.first() else {
            continue;
        };
        let size: Vec<String> =
            first.params.0.iter().filter(|(k, _)| k != "threads").map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            s,
            "### {} ({})

One operation: {}.
",
            w.name,
            size.join(" "),
            w.op
        );
        s.push_str(
            "| strategy | mm CPUs | time/op | min–max | insns/op | TLBI/op | by kind | DSB/op \
             | IPIs sent/op | IPIs received/op | other events/op |\n",
        );
        s.push_str("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|\n");
        for r in mine {
            let ipis = |v: f64| if r.ipis_counted { fmt_count(v) } else { "-".into() };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}–{} | {} | {} | {} | {} | {} | {} | {} |",
                r.strategy,
                r.mm_cpus,
                fmt_ns(r.ns_per_op.median),
                fmt_ns(r.ns_per_op.min),
                fmt_ns(r.ns_per_op.max),
                fmt_insns(r.insns_per_op),
                fmt_count(r.tlbi_ops_per_op),
                r.tlbi_breakdown(),
                fmt_count(r.dsb_per_op),
                ipis(r.ipis_per_op),
                ipis(r.ipis_received_per_op),
                r.events_breakdown()
            );
        }
        s.push('\n');
    }
    s
}

/// The repeat sweep's section of `summary.md`: per workload, one row per
/// CPU count, strategy and repeat-TLBI mode, the workaround's TLBIs and
/// DSBs beside the flushes' own. Empty without repeat-sweep records.
pub fn repeat_tables(records: &[Record]) -> String {
    let rs: Vec<&Record> = records.iter().filter(|r| r.sweep == Sweep::Repeat.name()).collect();
    let Some(first) = rs.first() else {
        return String::new();
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## The repeat-TLBI errata workaround (CVE-2025-10263)\n\n\
         Every mode of `tlb.repeat_tlbi` (off; once: one extra `TLBI VALE1IS` and `DSB ISH` after \
         the DSB that completes a broadcast flush; each: every broadcast TLBI again after a \
         `DSB ISH`) × strategy × the CPUs the address space runs on, on `-cpu {}` with {} CPUs \
         (an affected core without TLBI range ops). Per operation: time (median), guest \
         instructions, the flushes' own TLBIs (by kind) and DSBs, the workaround's TLBIs and \
         DSBs, shootdown IPIs sent, and local flushes the workaround left alone \
         (`repeat_local_exempt`).\n",
        first.cpu_model, first.cpus
    );
    let rank = |name: &str| STRATEGIES.iter().position(|s| s.name == name).unwrap_or(usize::MAX);
    let mode_rank = |r: &Record| super::config::REPEAT_MODES.iter().position(|m| Some(*m) == r.repeat_tlbi.as_deref());
    for w in WORKLOADS {
        let mut mine: Vec<&&Record> = rs.iter().filter(|r| r.workload == w.name).collect();
        if mine.is_empty() {
            continue;
        }
        mine.sort_by_key(|r| (r.mm_cpus, rank(&r.strategy), mode_rank(r)));
        let size: Vec<String> =
            mine[0].params.0.iter().filter(|(k, _)| k != "threads").map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(s, "### {} ({})\n\nOne operation: {}.\n", w.name, size.join(" "), w.op);
        s.push_str(
            "| mm CPUs | strategy | repeat_tlbi | time/op | insns/op | TLBI/op | by kind | DSB/op \
             | repeat TLBI/op | repeat DSB/op | IPIs sent/op | local exempt/op |\n",
        );
        s.push_str("|---:|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|\n");
        for r in mine {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.mm_cpus,
                r.strategy,
                r.repeat_tlbi.as_deref().unwrap_or("auto"),
                fmt_ns(r.ns_per_op.median),
                fmt_insns(r.insns_per_op),
                fmt_count(r.tlbi_ops_per_op),
                r.tlbi_breakdown(),
                fmt_count(r.dsb_per_op),
                fmt_count(r.repeat_per_op),
                fmt_count(r.repeat_dsb_per_op),
                fmt_count(r.ipis_per_op),
                fmt_count(r.events_per_op.get("repeat_local_exempt")),
            );
        }
        s.push('\n');
    }
    s
}

/// Every record of `results`, in point order.
pub fn records_of(results: &[PointResult]) -> Vec<Record> {
    results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Measured(rs) => Some(rs.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

/// A short plain-text table: one line per measurement.
pub fn short_table(results: &[PointResult]) -> String {
    let mut rows: Vec<[String; 7]> = vec![[
        "workload".into(),
        "params".into(),
        "config".into(),
        "time/op".into(),
        "insns/op".into(),
        "IPI/op".into(),
        "TLBI/op".into(),
    ]];
    for r in results {
        let (time, insns, ipis, tlbi) = match &r.outcome {
            Outcome::Measured(rs) => match rs.first() {
                Some(rec) => (
                    fmt_ns(rec.ns_per_op.median),
                    fmt_insns(rec.insns_per_op),
                    if rec.ipis_counted { fmt_count(rec.ipis_per_op) } else { "-".into() },
                    format!("{} ({})", fmt_count(rec.tlbi_ops_per_op), rec.tlbi_breakdown()),
                ),
                None => continue,
            },
            Outcome::Unsupported { option, .. } => {
                ("-".into(), "-".into(), "-".into(), format!("unsupported by this kernel: {option}"))
            }
            Outcome::Failed { reason, .. } => ("-".into(), "-".into(), "-".into(), format!("FAILED: {reason}")),
        };
        let params = match &r.outcome {
            Outcome::Measured(rs) => rs[0].params_label(),
            _ => r.point.describe(),
        };
        rows.push([r.point.workload.to_string(), params, r.point.config.label(), time, insns, ipis, tlbi]);
    }
    let widths: Vec<usize> = (0..7).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| if (3..=5).contains(&c) { format!("{cell:>w$}") } else { format!("{cell:<w$}") })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::tests::{point, record, LINE};

    #[test]
    fn csv_has_one_row_per_record_and_quotes_commas() {
        let mut r = record(LINE);
        r.config = "a,b".into();
        let text = csv(&[r.clone(), r]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let cols = lines[0].split(',').count();
        assert!(lines[0].starts_with("workload,params,config,"));
        assert!(lines[1].contains(",\"a,b\","), "{}", lines[1]);
        assert!(lines[1].contains(",1.0000,"), "rvae1is per op: {}", lines[1]);
        assert_eq!(csv_field("x\"y"), "\"x\"\"y\"");
        assert!(cols > 30);
    }

    #[test]
    fn the_pages_table_is_by_page_size_with_what_splits_add() {
        let line = |w: &str, ticks: &str, ttl: &str| {
            LINE.replace(r#""workload":"mmap""#, &format!(r#""workload":"{w}""#))
                .replace(r#""params":{"pages":16,"threads":1}"#, r#""params":{"mib":2,"page_kib":2048}"#)
                .replace("[6250,12500,9375]", ticks)
                .replace(r#""faults":480}"#, &format!(r#""faults":480,"events":{{"block_fill":30}},{}}}"#, ttl))
        };
        let mut mmap = record(&line("pages-mmap", "[6250,6250,6250]", r#""tlbi_ttl":{"rvae1is@none":30}"#));
        let ttl = r#""tlbi_ttl":{"vale1is@l2":3,"rvae1is@none":30}"#;
        let mut split = record(&line("pages-split", "[12500,12500,12500]", ttl));
        (mmap.insns_per_op, split.insns_per_op) = (Some(1000.0), Some(1500.0));
        assert!(pages_table(&[record(LINE)]).is_empty(), "no pages records");
        let t = pages_table(&[split, mmap]);
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| 2 MiB")).collect();
        assert_eq!(rows.len(), 2, "{t}");
        assert!(rows[0].contains("| pages-mmap |") && rows[1].contains("| pages-split |"), "{t}");
        assert!(rows[1].contains("| 0.10 l2, 1 none |") && rows[1].contains("| 1 block_fill |"), "{t}");
        assert!(rows[1].ends_with("| +10.0 µs | +500 |"), "{t}");
    }

    #[test]
    fn summary_and_table_list_everything() {
        let results = vec![
            PointResult { point: point(), outcome: Outcome::Measured(vec![record(LINE)]) },
            PointResult {
                point: point(),
                outcome: Outcome::Unsupported {
                    option: "tlb.exit_elide".into(),
                    message: "command line: unknown kernel option 'tlb.exit_elide'".into(),
                },
            },
            PointResult {
                point: point(),
                outcome: Outcome::Failed { reason: "boom".into(), console_tail: vec!["last".into()], qemu: "q".into() },
            },
        ];
        let md = summary(&results, &RunMeta { mode: "quick".into(), ..Default::default() }, &["mmap.svg".into()], None);
        assert!(md.contains("## mmap"), "{md}");
        let row = "| pages=16 threads=1 | max 2cpu broadcast/default | 15.0 µs | 10.0 µs–20.0 µs | - | 1.10 |";
        assert!(md.contains(row), "{md}");
        assert!(!md.contains("## Flush strategies"), "no strategy-sweep records: {md}");
        assert!(md.contains("## Unsupported by this kernel") && md.contains("`tlb.exit_elide`"));
        assert!(md.contains("## Failed") && md.contains("boom") && md.contains("![mmap.svg](mmap.svg)"));
        let t = short_table(&results);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.contains("15.0 µs") && t.contains("unsupported by this kernel"), "{t}");
    }

    #[test]
    fn strategy_records_get_their_own_tables() {
        let line = LINE
            .replace(r#""faults":480}"#, r#""faults":480,"events":{"decide_ipi":30,"ipi_sent":30,"ipi_received":30}}"#);
        let mut rs = Vec::new();
        for (strategy, cpus) in [("local", 2), ("ipi", 2), ("ipi", 1), ("broadcast", 4)] {
            let mut r = record(&line);
            (r.sweep, r.strategy, r.mm_cpus) = ("strategies".into(), strategy.into(), cpus);
            rs.push(r);
        }
        let t = strategy_tables(&rs);
        assert!(t.contains("### mmap (pages=16)"), "{t}");
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| strategy")).collect();
        let order: Vec<String> = rows.iter().map(|l| l.split(" | ").take(2).collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(order, ["| broadcast 4", "| ipi 1", "| ipi 2", "| local 2"], "{t}");
        assert!(rows[0].contains("| 1 | 1 | 1 decide_ipi |"), "{}", rows[0]);
        let results = vec![PointResult { point: point(), outcome: Outcome::Measured(rs) }];
        let md = summary(&results, &RunMeta::default(), &[], None);
        assert!(md.contains("## Flush strategies") && !md.contains("\n## mmap"), "{md}");
        assert!(strategy_tables(&[record(LINE)]).is_empty());
        let csv = csv(&[record(&line)]);
        let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        let col = |name: &str| row[head.iter().position(|h| *h == name).unwrap()];
        assert_eq!((col("sweep"), col("mm_cpus"), col("ipis_per_op")), ("configs", "1", "1.0000"));
        assert_eq!((col("decide_ipi_per_op"), col("ipi_received_per_op")), ("1.0000", "1.0000"));
    }

    #[test]
    fn repeat_records_get_their_own_tables() {
        let line = LINE.replace(r#""dsb":30,"#, r#""dsb":30,"repeat":{"vale1is":30},"repeat_dsb":30,"#);
        let mut rs = Vec::new();
        for (mode, strategy, cpus) in [("each", "local", 1), ("once", "broadcast", 2), ("off", "broadcast", 1)] {
            let mut r = record(if mode == "off" { LINE } else { &line });
            (r.sweep, r.strategy, r.mm_cpus) = ("repeat".into(), strategy.into(), cpus);
            r.repeat_tlbi = Some(mode.into());
            rs.push(r);
        }
        let t = repeat_tables(&rs);
        assert!(t.contains("## The repeat-TLBI errata workaround") && t.contains("### mmap (pages=16)"), "{t}");
        let rows: Vec<&str> = t.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| mm CPUs")).collect();
        let order: Vec<String> = rows.iter().map(|l| l.split(" | ").take(3).collect::<Vec<_>>().join(" ")).collect();
        assert_eq!(order, ["| 1 broadcast off", "| 1 local each", "| 2 broadcast once"], "{t}");
        assert!(rows[2].ends_with("| 1 | 1 | 0 | 0 |"), "repeat TLBI and DSB per op: {}", rows[2]);
        let results = vec![PointResult { point: point(), outcome: Outcome::Measured(rs.clone()) }];
        let md = summary(&results, &RunMeta::default(), &[], None);
        assert!(md.contains("## The repeat-TLBI") && !md.contains("\n## mmap"), "not in the configs tables: {md}");
        let csv = csv(&rs[2..]);
        let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let row: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
        let col = |name: &str| row[head.iter().position(|h| *h == name).unwrap()];
        let repeat = (col("repeat_tlbi"), col("repeat_tlbi_per_op"), col("repeat_dsb_per_op"));
        assert_eq!(repeat, ("off", "0.0000", "0.0000"));
        assert!(repeat_tables(&[record(LINE)]).is_empty());
    }

    #[test]
    fn jsonl_round_trip() {
        let dir = std::env::temp_dir().join(format!("bench-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("records.jsonl");
        let rs = vec![record(LINE), record(LINE)];
        write_jsonl(&path, &rs).unwrap();
        assert_eq!(read_jsonl(&path).unwrap(), rs);
        let _ = std::fs::remove_dir_all(dir);
    }
}
