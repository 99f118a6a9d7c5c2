//! The kernel's TLB decision trace (`trace=tlb`) on the host: the `TRACE`
//! block a run prints at its end (format: `kernel/src/mm/tlb/trace/line.rs`)
//! parsed into a [`Trace`], turned into Chrome/Perfetto trace JSON
//! ([`chrome`]) and a text summary of why each flush happened
//! ([`summary`]). `ktool run --trace FILE` and `bench --trace` use it.

pub mod chrome;
pub mod summary;

use std::collections::BTreeMap;
use std::path::Path;

use thiserror::Error;

/// The kernel option that turns the trace on.
pub const KERNEL_OPTION: &str = "trace=tlb";
/// Prefixes of the block's lines.
const BEGIN: &str = "TRACE-BEGIN ";
const EVENT: &str = "TRACE ";
const DROPPED: &str = "TRACE-DROPPED ";
/// The format version this parser reads.
pub const VERSION: u32 = 1;

/// What a decision covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Range {
    /// `[start, end)` of one ASID.
    Va { start: u64, end: u64 },
    /// Every entry of one ASID.
    WholeAsid,
    /// Every entry of every ASID (a CPU's whole TLB).
    All,
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Range::Va { start, end } => write!(f, "{start:#x}-{end:#x}"),
            Range::WholeAsid => f.write_str("whole_asid"),
            Range::All => f.write_str("all"),
        }
    }
}

/// One TLB flush decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub cpu: u32,
    /// Time of the decision (the guest's CNTVCT in ns).
    pub t_ns: u64,
    pub asid: Option<u16>,
    pub range: Range,
    /// 4 KiB pages of a [`Range::Va`].
    pub pages: Option<u64>,
    /// The strategy that planned the ops, if one did.
    pub strategy: Option<String>,
    /// TLBI ops per kind (`vae1is`, `rvale1is`, ...), in the kernel's order.
    pub ops: Vec<(String, u64)>,
    /// Why: the policy's reason (`per_page`, `range`, `whole_asid_*`) or the
    /// kernel's (`nested_zap`, `exit_elided`, `reaper`, ...).
    pub reason: String,
    /// The policy's reason when it planned the ops.
    pub policy: Option<String>,
    /// CPUs sent an IPI (bit mask); `None` when none were.
    pub ipi: Option<u64>,
}

impl Event {
    /// TLBIs this decision issued.
    pub fn tlbis(&self) -> u64 {
        self.ops.iter().map(|(_, n)| n).sum()
    }

    /// The ops as the kernel prints them (`kind:count,...` or `none`).
    pub fn ops_text(&self) -> String {
        if self.ops.is_empty() {
            return "none".into();
        }
        self.ops.iter().map(|(k, n)| format!("{k}:{n}")).collect::<Vec<_>>().join(",")
    }

    /// `ops` of `kind`.
    pub fn op(&self, kind: &str) -> u64 {
        self.ops.iter().filter(|(k, _)| k == kind).map(|(_, n)| n).sum()
    }
}

/// A whole trace block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub version: u32,
    /// CPUs with a ring (one track each).
    pub cpus: u32,
    /// Events each CPU's ring holds.
    pub size: u64,
    pub freq_hz: u64,
    /// In the order printed (time order; each CPU's in recording order).
    pub events: Vec<Event>,
    /// Events lost per CPU (overwritten in a full ring, or recorded while the
    /// ring was busy).
    pub dropped_per_cpu: Vec<u64>,
}

/// A console without a well-formed trace block.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("the console has no TRACE-BEGIN line (was the kernel booted with {KERNEL_OPTION}?)")]
    NoTrace,
    #[error("the console has more than one TRACE-BEGIN line")]
    SeveralTraces,
    #[error("the trace has no TRACE-DROPPED line: it was cut short (the kernel crashed or was stopped?)")]
    Unterminated,
    #[error("trace line {line}: {why}: {text:?}")]
    BadLine { line: usize, text: String, why: String },
    #[error("trace format version {0}, this tool reads version {VERSION}")]
    Version(u32),
    #[error("the TRACE-DROPPED line counts {said} events, the block has {seen}")]
    EventCount { said: u64, seen: u64 },
}

impl Trace {
    /// Finds and parses the trace block in a console transcript; other lines
    /// (the kernel's own output, QEMU's) are ignored.
    pub fn parse(console: &str) -> Result<Trace, TraceError> {
        Self::parse_lines(console.lines())
    }

    pub fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Trace, TraceError> {
        let mut trace: Option<Trace> = None;
        let mut ended = false;
        for (i, raw) in lines.into_iter().enumerate() {
            let line = raw.trim_end_matches('\r').trim_start();
            let bad = |why: String| TraceError::BadLine { line: i + 1, text: line.to_string(), why };
            if let Some(rest) = line.strip_prefix(BEGIN) {
                if trace.is_some() {
                    return Err(TraceError::SeveralTraces);
                }
                let f = Fields::new(rest, &["version", "cpus", "size", "freq_hz"]).map_err(bad)?;
                let version = f.num(0).map_err(bad)? as u32;
                if version != VERSION {
                    return Err(TraceError::Version(version));
                }
                trace = Some(Trace {
                    version,
                    cpus: f.num(1).map_err(bad)? as u32,
                    size: f.num(2).map_err(bad)?,
                    freq_hz: f.num(3).map_err(bad)?,
                    events: Vec::new(),
                    dropped_per_cpu: Vec::new(),
                });
            } else if let Some(rest) = line.strip_prefix(EVENT) {
                let Some(t) = trace.as_mut().filter(|_| !ended) else {
                    continue;
                };
                t.events.push(parse_event(rest).map_err(bad)?);
            } else if let Some(rest) = line.strip_prefix(DROPPED) {
                let Some(t) = trace.as_mut().filter(|_| !ended) else {
                    continue;
                };
                let f = Fields::new(rest, &["total", "per_cpu", "events"]).map_err(bad)?;
                t.dropped_per_cpu = f.list(1).map_err(bad)?;
                let total = f.num(0).map_err(bad)?;
                if t.dropped_per_cpu.iter().sum::<u64>() != total || t.dropped_per_cpu.len() != t.cpus as usize {
                    return Err(bad(format!("per_cpu does not add up to total={total} over {} CPUs", t.cpus)));
                }
                let said = f.num(2).map_err(bad)?;
                if said != t.events.len() as u64 {
                    return Err(TraceError::EventCount { said, seen: t.events.len() as u64 });
                }
                ended = true;
            }
        }
        match trace {
            None => Err(TraceError::NoTrace),
            Some(_) if !ended => Err(TraceError::Unterminated),
            Some(t) => Ok(t),
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped_per_cpu.iter().sum()
    }

    /// Decisions per reason.
    pub fn by_reason(&self) -> BTreeMap<&str, u64> {
        let mut m = BTreeMap::new();
        for e in &self.events {
            *m.entry(e.reason.as_str()).or_insert(0) += 1;
        }
        m
    }

    /// The events of `reason`.
    pub fn with_reason<'a>(&'a self, reason: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
        self.events.iter().filter(move |e| e.reason == reason)
    }

    /// Writes the Chrome/Perfetto JSON ([`chrome::json`]) to `path`.
    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string(&chrome::json(self)).expect("JSON values always serialise");
        std::fs::write(path, text + "\n")
    }
}

/// `key=value` words in a fixed order.
struct Fields<'a>(Vec<&'a str>);

impl<'a> Fields<'a> {
    fn new(text: &'a str, keys: &[&str]) -> Result<Self, String> {
        let words: Vec<&str> = text.split_ascii_whitespace().collect();
        if words.len() != keys.len() {
            return Err(format!("expected {} fields ({}), saw {}", keys.len(), keys.join(" "), words.len()));
        }
        let mut values = Vec::new();
        for (w, k) in words.iter().zip(keys) {
            match w.split_once('=') {
                Some((key, v)) if key == *k => values.push(v),
                _ => return Err(format!("expected {k}=..., saw {w:?}")),
            }
        }
        Ok(Fields(values))
    }

    fn text(&self, i: usize) -> &'a str {
        self.0[i]
    }

    /// `-` is `None`.
    fn opt(&self, i: usize) -> Option<&'a str> {
        Some(self.0[i]).filter(|v| *v != "-")
    }

    fn num(&self, i: usize) -> Result<u64, String> {
        number(self.0[i])
    }

    fn list(&self, i: usize) -> Result<Vec<u64>, String> {
        self.0[i].split(',').map(number).collect()
    }
}

/// Decimal, or hex with `0x`.
fn number(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("{s:?} is not a number"))
}

const EVENT_KEYS: [&str; 10] = ["cpu", "t_ns", "asid", "range", "pages", "strategy", "ops", "reason", "policy", "ipi"];

fn parse_event(text: &str) -> Result<Event, String> {
    let f = Fields::new(text, &EVENT_KEYS)?;
    let opt_num = |i| f.opt(i).map(number).transpose();
    let range = match f.text(3) {
        "whole_asid" => Range::WholeAsid,
        "all" => Range::All,
        r => {
            let (s, e) = r.split_once('-').ok_or_else(|| format!("range {r:?} is not START-END"))?;
            let (start, end) = (number(s)?, number(e)?);
            if start > end {
                return Err(format!("range {r:?} ends before it starts"));
            }
            Range::Va { start, end }
        }
    };
    let ops = match f.text(6) {
        "none" => Vec::new(),
        o => o
            .split(',')
            .map(|kn| {
                let (k, n) = kn.split_once(':').ok_or_else(|| format!("op {kn:?} is not KIND:COUNT"))?;
                Ok((k.to_string(), number(n)?))
            })
            .collect::<Result<_, String>>()?,
    };
    Ok(Event {
        cpu: f.num(0)? as u32,
        t_ns: f.num(1)?,
        asid: opt_num(2)?.map(|a| a as u16),
        range,
        pages: opt_num(4)?,
        strategy: f.opt(5).map(String::from),
        ops,
        reason: f.text(7).to_string(),
        policy: f.opt(8).map(String::from),
        ipi: opt_num(9)?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A block as the kernel prints it (with other console lines around).
    pub(crate) const CONSOLE: &str = "\
tlbkernel 0.1.0
munmap_ops: pages=512 rvae1is=1
TRACE-BEGIN version=1 cpus=2 size=4096 freq_hz=62500000
TRACE cpu=0 t_ns=133744432 asid=1 range=0x1000000000-0x1000200000 pages=512 strategy=range ops=rvae1is:1 reason=range policy=range ipi=-
TRACE cpu=1 t_ns=135000000 asid=2 range=0x2000-0x5000 pages=3 strategy=range ops=vae1is:1,rvae1is:1 reason=reaper policy=range ipi=-
TRACE cpu=0 t_ns=139458160 asid=1 range=whole_asid pages=- strategy=- ops=none reason=exit_elided policy=- ipi=-
TRACE cpu=1 t_ns=140000000 asid=- range=all pages=- strategy=- ops=vmalle1:1 reason=asid_rollover policy=- ipi=0x1
TRACE-DROPPED total=3 per_cpu=0,3 events=4
run: done
";

    #[test]
    fn a_block_parses() {
        let t = Trace::parse(CONSOLE).unwrap();
        assert_eq!((t.version, t.cpus, t.size, t.freq_hz), (1, 2, 4096, 62_500_000));
        assert_eq!(t.events.len(), 4);
        assert_eq!((t.dropped(), t.dropped_per_cpu.clone()), (3, vec![0, 3]));
        let e = &t.events[0];
        assert_eq!(e.range, Range::Va { start: 0x10_0000_0000, end: 0x10_0020_0000 });
        assert_eq!((e.cpu, e.t_ns, e.asid, e.pages), (0, 133_744_432, Some(1), Some(512)));
        assert_eq!(
            (e.strategy.as_deref(), e.reason.as_str(), e.policy.as_deref()),
            (Some("range"), "range", Some("range"))
        );
        assert_eq!((e.ops_text(), e.tlbis(), e.ipi), ("rvae1is:1".to_string(), 1, None));
        assert_eq!(t.events[1].ops, [("vae1is".to_string(), 1), ("rvae1is".to_string(), 1)]);
        let exit = &t.events[2];
        assert_eq!(
            (exit.range, exit.pages, exit.tlbis(), exit.ops_text().as_str()),
            (Range::WholeAsid, None, 0, "none")
        );
        let roll = &t.events[3];
        assert_eq!((roll.asid, roll.range, roll.ipi, roll.op("vmalle1")), (None, Range::All, Some(1), 1));
        assert_eq!(t.by_reason().get("exit_elided"), Some(&1));
        assert_eq!(t.with_reason("reaper").count(), 1);
    }

    #[test]
    fn broken_blocks_are_errors() {
        assert_eq!(Trace::parse("tlbkernel\nrun: done\n"), Err(TraceError::NoTrace));
        let cut = CONSOLE.lines().take(5).collect::<Vec<_>>().join("\n");
        assert_eq!(Trace::parse(&cut), Err(TraceError::Unterminated));
        let twice = format!("{CONSOLE}{CONSOLE}");
        assert_eq!(Trace::parse(&twice), Err(TraceError::SeveralTraces));
        let miscounted = CONSOLE.replace("events=4", "events=5");
        assert_eq!(Trace::parse(&miscounted), Err(TraceError::EventCount { said: 5, seen: 4 }));
        assert_eq!(Trace::parse(&CONSOLE.replace("version=1", "version=2")), Err(TraceError::Version(2)));
        for (from, to) in [
            ("pages=3 ", ""),
            ("range=0x2000-0x5000", "range=0x5000-0x2000"),
            ("ops=vmalle1:1", "ops=vmalle1"),
            ("t_ns=135000000", "t_ns=soon"),
            ("per_cpu=0,3", "per_cpu=0,2"),
            ("per_cpu=0,3", "per_cpu=3"),
        ] {
            let text = CONSOLE.replace(from, to);
            match Trace::parse(&text) {
                Err(TraceError::BadLine { .. }) => {}
                other => panic!("{from:?} -> {to:?}: expected BadLine, saw {other:?}"),
            }
        }
        let e = Trace::parse(&CONSOLE.replace("t_ns=135000000", "t_ns=soon")).unwrap_err().to_string();
        assert!(e.starts_with("trace line 5:") && e.contains("\"soon\" is not a number"), "{e}");
    }

    #[test]
    fn lines_may_carry_carriage_returns_and_indentation() {
        let crlf = CONSOLE.replace('\n', "\r\n").replace("TRACE cpu=1", "  TRACE cpu=1");
        assert_eq!(Trace::parse(&crlf), Trace::parse(CONSOLE));
    }
}
