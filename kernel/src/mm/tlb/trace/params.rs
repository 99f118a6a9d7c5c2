//! The trace's command-line options: `trace=tlb` turns it on,
//! `trace.size=N` sets the events kept per CPU.

use core::fmt;

use crate::mm::tlb::policy::Claim;

/// Events kept per CPU unless `trace.size` says otherwise: enough for a
/// `run=` of a few thousand flushes or one benchmark measurement, at under
/// 100 bytes an event (a few hundred KiB per CPU of the 32 MiB heap), and a
/// console dump of seconds.
pub const DEFAULT_SIZE: u32 = 4096;
/// Most events per CPU: with 8 CPUs the rings take under 12 MiB, leaving
/// the kernel heap most of its 32 MiB.
pub const MAX_SIZE: u32 = 16384;

/// `trace=` and `trace.*` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParams {
    /// Record TLB flush decisions (`trace=tlb`; default off).
    pub tlb: bool,
    /// Events per CPU ring (`trace.size`, 1..=[`MAX_SIZE`]).
    pub size: u32,
}

/// A bad value for one of the trace options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParamError<'a> {
    pub option: &'static str,
    /// The value as given (empty when missing).
    pub value: &'a str,
    pub expected: &'static str,
}

impl fmt::Display for TraceParamError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { option, value, expected } = self;
        write!(f, "bad value '{value}' for kernel option '{option}': expected {expected}")
    }
}

impl TraceParams {
    pub const DEFAULT: Self = Self { tlb: false, size: DEFAULT_SIZE };

    /// The command-line keys [`Self::apply`] accepts.
    pub const KEYS: [&'static str; 2] = ["trace", "trace.size"];

    /// Applies one `key[=value]` option: `trace=tlb|off`,
    /// `trace.size=N` (decimal, 1..=[`MAX_SIZE`]). On error nothing changes.
    pub fn apply<'a>(&mut self, key: &str, value: Option<&'a str>) -> Result<Claim, TraceParamError<'a>> {
        let v = value.unwrap_or("");
        match key {
            "trace" => {
                self.tlb = match v {
                    "tlb" => true,
                    "off" => false,
                    _ => return Err(TraceParamError { option: "trace", value: v, expected: "tlb or off" }),
                }
            }
            "trace.size" => {
                const EXPECTED: &str = "a number of events per CPU from 1 to 16384";
                let ok = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                self.size = match v.parse::<u32>() {
                    Ok(n) if ok && (1..=MAX_SIZE).contains(&n) => n,
                    _ => return Err(TraceParamError { option: "trace.size", value: v, expected: EXPECTED }),
                }
            }
            _ => return Ok(Claim::NotMine),
        }
        Ok(Claim::Applied)
    }
}

impl Default for TraceParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_parsed_and_checked() {
        let mut p = TraceParams::default();
        assert_eq!(p, TraceParams { tlb: false, size: DEFAULT_SIZE }, "off by default");
        assert_eq!(p.apply("trace", Some("tlb")), Ok(Claim::Applied));
        assert_eq!(p.apply("trace.size", Some("16384")), Ok(Claim::Applied));
        assert_eq!(p, TraceParams { tlb: true, size: MAX_SIZE });
        assert_eq!(p.apply("trace.size", Some("1")), Ok(Claim::Applied));
        assert_eq!(p.size, 1);
        assert_eq!(p.apply("trace", Some("off")), Ok(Claim::Applied));
        assert!(!p.tlb);
        for k in ["tracer", "trace.sizes", "tlb.range", "trace.tlb"] {
            assert_eq!(p.apply(k, Some("1")), Ok(Claim::NotMine), "{k} is not a trace key");
        }
        let before = p;
        #[rustfmt::skip]
        let bad = [
            ("trace", None), ("trace", Some("TLB")), ("trace", Some("ipi")), ("trace", Some("")),
            ("trace.size", None), ("trace.size", Some("0")), ("trace.size", Some("16385")),
            ("trace.size", Some("-1")), ("trace.size", Some("+5")), ("trace.size", Some("0x10")),
            ("trace.size", Some("99999999999")),
        ];
        for (k, v) in bad {
            match p.apply(k, v) {
                Err(e) if e.option == k && e.value == v.unwrap_or("") => {}
                other => panic!("{k}={v:?}: expected an error naming both, saw {other:?}"),
            }
            assert_eq!(p, before, "{k}={v:?}: a bad value changes nothing");
        }
        let e = p.apply("trace.size", Some("0")).unwrap_err().to_string();
        assert_eq!(
            e,
            "bad value '0' for kernel option 'trace.size': expected a number of events per CPU from 1 to 16384"
        );
    }

    #[test]
    fn the_largest_rings_fit_the_heap() {
        let ev = core::mem::size_of::<super::super::TraceEvent>();
        let bytes = MAX_SIZE as usize * crate::mm::tlb::stats::MAX_CPUS * ev;
        assert!(ev <= 96, "an event grew to {ev} bytes: revisit MAX_SIZE and the README");
        assert!(bytes <= 12 << 20, "{bytes} bytes of rings at the maximum: more than 12 MiB of the 32 MiB heap");
    }
}
