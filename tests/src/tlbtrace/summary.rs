//! Why each flush happened, in a few lines of text: decisions and TLBIs
//! per reason, per op kind and per CPU, and the ranges flushed most often.
//!
//! ```text
//! TLB decision trace: 2 decisions on 2 CPUs over 6.011 ms, 0 dropped (rings of 4096 events per CPU)
//! by reason:              decisions      TLBIs  ops
//!   exit_elided                   1          0  none
//!   range                         1          1  rvae1is:1
//! by op kind:                 TLBIs  decisions
//!   rvae1is                       1          1
//! by CPU: cpu0 2, cpu1 0
//! top ranges:                                 decisions      pages  reasons
//!   0x1000000000-0x1000200000                         1        512  range:1
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Range, Trace};

/// Decisions and their reasons (with counts), per address range.
type ByRange<'a> = BTreeMap<(u64, u64), (u64, BTreeMap<&'a str, u64>)>;

/// Ranges listed under "top ranges".
pub const TOP_RANGES: usize = 10;

/// The summary of `t`.
pub fn text(t: &Trace) -> String {
    let mut s = String::new();
    let span_ns = match (t.events.iter().map(|e| e.t_ns).min(), t.events.iter().map(|e| e.t_ns).max()) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    };
    let _ = writeln!(
        s,
        "TLB decision trace: {} decisions on {} CPUs over {:.3} ms, {} dropped (rings of {} events per CPU)",
        t.events.len(),
        t.cpus,
        span_ns as f64 / 1e6,
        t.dropped(),
        t.size
    );
    if t.dropped() > 0 {
        let _ = writeln!(s, "  (the oldest decisions were overwritten: raise trace.size to keep them)");
    }

    // Per reason: decisions, TLBIs, and the op kinds they used.
    let mut reasons: BTreeMap<&str, (u64, u64, BTreeMap<&str, u64>)> = BTreeMap::new();
    for e in &t.events {
        let r = reasons.entry(&e.reason).or_default();
        r.0 += 1;
        r.1 += e.tlbis();
        for (k, n) in &e.ops {
            *r.2.entry(k).or_default() += n;
        }
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let _ = writeln!(s, "{:<22} {:>10} {:>10}  ops", "by reason:", "decisions", "TLBIs");
    for (reason, (n, tlbis, ops)) in &reasons {
        let ops = if ops.is_empty() { "none".to_string() } else { kinds(ops) };
        let _ = writeln!(s, "  {reason:<20} {n:>10} {tlbis:>10}  {ops}");
    }

    // Per op kind: TLBIs and the decisions that issued any.
    let mut kinds_seen: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for e in &t.events {
        for (k, n) in &e.ops {
            let c = kinds_seen.entry(k).or_default();
            c.0 += n;
            c.1 += 1;
        }
    }
    let _ = writeln!(s, "{:<22} {:>10} {:>10}", "by op kind:", "TLBIs", "decisions");
    if kinds_seen.is_empty() {
        let _ = writeln!(s, "  (no TLBI issued)");
    }
    for (k, (n, d)) in &kinds_seen {
        let _ = writeln!(s, "  {k:<20} {n:>10} {d:>10}");
    }

    let mut per_cpu = vec![0u64; t.cpus as usize];
    for e in &t.events {
        if let Some(c) = per_cpu.get_mut(e.cpu as usize) {
            *c += 1;
        }
    }
    let cpus: Vec<String> = per_cpu.iter().enumerate().map(|(c, n)| format!("cpu{c} {n}")).collect();
    let _ = writeln!(s, "by CPU: {}", cpus.join(", "));

    // Address ranges, most decisions first.
    let mut ranges: ByRange = BTreeMap::new();
    for e in &t.events {
        if let Range::Va { start, end } = e.range {
            let r = ranges.entry((start, end)).or_default();
            r.0 += 1;
            *r.1.entry(&e.reason).or_default() += 1;
        }
    }
    let mut ranges: Vec<_> = ranges.into_iter().collect();
    ranges.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    let _ = writeln!(s, "{:<42} {:>10} {:>10}  reasons", "top ranges:", "decisions", "pages");
    if ranges.is_empty() {
        let _ = writeln!(s, "  (no address range flushed)");
    }
    for ((start, end), (n, why)) in ranges.iter().take(TOP_RANGES) {
        let range = format!("{start:#x}-{end:#x}");
        let _ = writeln!(s, "  {range:<40} {n:>10} {:>10}  {}", (end - start) / 4096, kinds(why));
    }
    if ranges.len() > TOP_RANGES {
        let _ = writeln!(s, "  ... and {} more ranges", ranges.len() - TOP_RANGES);
    }
    s
}

/// `a:1,b:2`.
fn kinds(m: &BTreeMap<&str, u64>) -> String {
    m.iter().map(|(k, n)| format!("{k}:{n}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::super::tests::CONSOLE;
    use super::*;

    #[test]
    fn counts_per_reason_kind_cpu_and_range() {
        let t = Trace::parse(CONSOLE).unwrap();
        let s = text(&t);
        let line = |start: &str| {
            s.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in\n{s}"))
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert!(s.starts_with("TLB decision trace: 4 decisions on 2 CPUs over 6.256 ms, 3 dropped"), "{s}");
        assert!(s.contains("raise trace.size"), "{s}");
        assert_eq!(line("range "), ["range", "1", "1", "rvae1is:1"]);
        assert_eq!(line("reaper"), ["reaper", "1", "2", "rvae1is:1,vae1is:1"]);
        assert_eq!(line("exit_elided"), ["exit_elided", "1", "0", "none"]);
        assert_eq!(line("rvae1is"), ["rvae1is", "2", "2"]);
        assert_eq!(line("vmalle1"), ["vmalle1", "1", "1"]);
        assert_eq!(line("by CPU"), ["by", "CPU:", "cpu0", "2,", "cpu1", "2"]);
        assert_eq!(line("0x1000000000-"), ["0x1000000000-0x1000200000", "1", "512", "range:1"]);
        assert_eq!(line("0x2000-"), ["0x2000-0x5000", "1", "3", "reaper:1"]);
    }

    #[test]
    fn an_empty_trace_says_so() {
        let t = Trace { events: Vec::new(), dropped_per_cpu: vec![0, 0], ..Trace::parse(CONSOLE).unwrap() };
        let s = text(&t);
        assert!(s.starts_with("TLB decision trace: 0 decisions on 2 CPUs over 0.000 ms, 0 dropped"), "{s}");
        assert!(s.contains("(no TLBI issued)") && s.contains("(no address range flushed)"), "{s}");
    }
}
