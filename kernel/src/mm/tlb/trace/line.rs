//! The trace on the console: one line per event, between a header and a
//! line that counts what was dropped. The host tools
//! (`tests/src/tlbtrace/`) parse exactly this:
//!
//! ```text
//! TRACE-BEGIN version=1 cpus=2 size=4096 freq_hz=62500000
//! TRACE cpu=0 t_ns=81234000 asid=1 range=0x400000-0x600000 pages=512 strategy=range ops=rvae1is:1 reason=range policy=range ipi=-
//! TRACE cpu=1 t_ns=81300000 asid=1 range=whole_asid pages=- strategy=- ops=none reason=exit_elided policy=- ipi=-
//! TRACE-DROPPED total=0 per_cpu=0,0 events=2
//! ```
//!
//! Every event line has the same keys in the same order; `-` means none.
//! `t_ns` is CNTVCT converted with the counter frequency. `range` is
//! `START-END` (hex, end exclusive), `whole_asid` or `all` (every ASID).
//! `ops` is `KIND:COUNT,...` in the kernel's counter order, or `none`.
//! `ipi` is a hex CPU mask, `-` when no IPI was sent. Events are printed in time
//! order, each CPU's in the order it recorded them. `TRACE-DROPPED` ends
//! the block: a block without it was cut short.

use core::fmt;

use super::ring::CpuRing;
use super::TraceEvent;

/// The prefix of every event line.
pub const PREFIX: &str = "TRACE ";
/// Version of the line format in the header.
pub const VERSION: u32 = 1;

/// `ticks` of a counter running at `freq_hz`, in ns.
pub const fn ticks_to_ns(ticks: u64, freq_hz: u64) -> u64 {
    let freq = if freq_hz == 0 { 1 } else { freq_hz };
    (ticks as u128 * 1_000_000_000 / freq as u128) as u64
}

/// One event as its console line (without the newline).
pub struct EventLine<'a> {
    pub ev: &'a TraceEvent,
    pub freq_hz: u64,
}

struct Opt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for EventLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.ev;
        write!(
            f,
            "{PREFIX}cpu={} t_ns={} asid={} range={} pages={} strategy={} ops={} reason={} policy={} ipi=",
            e.cpu,
            ticks_to_ns(e.ticks, self.freq_hz),
            Opt(e.asid),
            e.span,
            Opt(e.pages()),
            Opt(e.strategy),
            e.ops,
            e.reason.name(),
            Opt(e.policy.map(|p| p.name())),
        )?;
        match e.ipi_targets {
            0 => f.write_str("-"),
            m => write!(f, "{m:#x}"),
        }
    }
}

/// Writes the whole block for `rings` (index = CPU) through `out`, one call
/// per line (without the newline). `dropped[cpu]` are the dropped counts.
pub fn write_block(rings: &[&CpuRing], dropped: &[u64], freq_hz: u64, mut out: impl FnMut(fmt::Arguments)) {
    let size = rings.iter().map(|r| r.capacity()).max().unwrap_or(0);
    out(format_args!("TRACE-BEGIN version={VERSION} cpus={} size={size} freq_hz={freq_hz}", rings.len()));
    // Merge the rings by time; ties and a clock that goes back keep each
    // CPU's own order (only the front of each ring is ever compared).
    let mut iters: [_; crate::mm::tlb::stats::MAX_CPUS] =
        core::array::from_fn(|i| rings.get(i).map(|r| r.events().peekable()));
    let mut events = 0u64;
    loop {
        let next = iters.iter_mut().enumerate().filter_map(|(cpu, it)| Some((it.as_mut()?.peek()?.ticks, cpu))).min();
        let Some((_, cpu)) = next else { break };
        let ev = iters[cpu].as_mut().and_then(|it| it.next()).expect("peeked");
        out(format_args!("{}", EventLine { ev, freq_hz }));
        events += 1;
    }
    let total: u64 = dropped.iter().sum();
    let per_cpu = PerCpu(dropped);
    out(format_args!("TRACE-DROPPED total={total} per_cpu={per_cpu} events={events}"));
}

/// `a,b,c`.
struct PerCpu<'a>(&'a [u64]);

impl fmt::Display for PerCpu<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            write!(f, "{}{n}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{OpCounts, Reason, Span, TlbTrace};
    use super::*;
    use crate::mm::tlb::op::OpKind;
    use crate::mm::tlb::policy::PlanReason;

    fn block(t: &TlbTrace) -> Vec<String> {
        let dropped: Vec<u64> = (0..t.cpus()).map(|c| t.dropped(c)).collect();
        let mut lines = Vec::new();
        t.with_rings(|rings| write_block(rings, &dropped, 1_000_000, |a| lines.push(a.to_string())));
        lines
    }

    #[test]
    fn event_lines_have_every_key_in_order() {
        let span = Span::Va { start: 0x40_0000, end: 0x60_0000 };
        let ops = OpCounts::one(OpKind::Rvae1is);
        let e = TraceEvent::new(2500, 1, Some(9), span, Reason::Policy(PlanReason::Range)).planned(
            "range",
            PlanReason::Range,
            ops,
        );
        assert_eq!(
            EventLine { ev: &e, freq_hz: 1_000_000 }.to_string(),
            "TRACE cpu=1 t_ns=2500000 asid=9 range=0x400000-0x600000 pages=512 strategy=range ops=rvae1is:1 reason=range policy=range ipi=-"
        );
        let mut e =
            TraceEvent::new(0, 0, None, Span::All, Reason::AsidRollover).with_ops(OpCounts::one(OpKind::Vmalle1));
        assert_eq!(
            EventLine { ev: &e, freq_hz: 0 }.to_string(),
            "TRACE cpu=0 t_ns=0 asid=- range=all pages=- strategy=- ops=vmalle1:1 reason=asid_rollover policy=- ipi=-"
        );
        e.ipi_targets = 0b110;
        assert!(EventLine { ev: &e, freq_hz: 1 }.to_string().ends_with(" ipi=0x6"));
    }

    #[test]
    fn the_block_merges_cpus_by_time_and_ends_with_the_dropped_counts() {
        let t = TlbTrace::new();
        t.start(2, 2).unwrap();
        let ev = |cpu, ticks| TraceEvent::new(ticks, cpu, Some(1), Span::WholeAsid, Reason::ExitElided);
        for (cpu, ticks) in [(0, 10), (1, 5), (0, 20), (1, 15), (1, 30), (1, 25)] {
            t.record(ev(cpu, ticks));
        }
        let lines = block(&t);
        assert_eq!(lines[0], "TRACE-BEGIN version=1 cpus=2 size=2 freq_hz=1000000");
        let order: Vec<&str> = lines[1..lines.len() - 1].iter().map(|l| &l[..l.find(" asid").unwrap()]).collect();
        // CPU 1 kept its last two (30 then 25: its own order, though 25 < 30).
        assert_eq!(
            order,
            ["TRACE cpu=0 t_ns=10000", "TRACE cpu=0 t_ns=20000", "TRACE cpu=1 t_ns=30000", "TRACE cpu=1 t_ns=25000"]
        );
        assert_eq!(lines.last().unwrap(), "TRACE-DROPPED total=2 per_cpu=0,2 events=4");
    }

    #[test]
    fn an_empty_trace_is_a_header_and_a_dropped_line() {
        let t = TlbTrace::new();
        t.start(16, 3).unwrap();
        assert_eq!(
            block(&t),
            ["TRACE-BEGIN version=1 cpus=3 size=16 freq_hz=1000000", "TRACE-DROPPED total=0 per_cpu=0,0,0 events=0"]
        );
    }

    #[test]
    fn ticks_convert_to_ns() {
        assert_eq!(ticks_to_ns(62_500_000, 62_500_000), 1_000_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1_000_000_000), u64::MAX);
        assert_eq!(ticks_to_ns(3, 0), 3_000_000_000, "an unknown frequency does not divide by zero");
    }
}
