//! The kernel command line (`-append`): typed options. An unknown key or a
//! bad value is an error naming the option; the kernel prints it and ends
//! the run with a non-zero status.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use crate::mm::space::{Strategy, Thp};
use crate::mm::tlb::policy::Claim;
use crate::mm::tlb::stats::MAX_CPUS;
use crate::mm::tlb::trace::TraceParams;
use crate::mm::tlb::PolicyParams;
use crate::mm::tlb::RepeatChoice;

/// What to run after boot when no tests are selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A short self-check of the platform (the default).
    SelfCheck,
    /// Boot, print the banner and exit.
    None,
    /// Start these built-in programs (name, argument) and wait for them;
    /// the run's status is 0 only if each exited 0.
    Programs(Vec<(String, u64)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestSelection {
    /// No tests: run the workload.
    None,
    /// Every registered test.
    All,
    /// Exactly these tests (by full name).
    Named(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub log: log::LevelFilter,
    pub tests: TestSelection,
    pub workload: Workload,
    /// Timer interrupts per second on every CPU.
    pub tick_hz: u32,
    /// Print the list of registered tests and exit.
    pub list_tests: bool,
    /// Usable ASID width (`asid_bits=N`, 2..=16; at most the hardware's).
    pub asid_bits: Option<u32>,
    /// Flush-policy parameters (`tlb.*`, see `mm::tlb::policy`).
    pub tlb: PolicyParams,
    /// Elide the TLB flush when the last thread exits (`tlb.exit_elide`,
    /// default on; off = one whole-ASID flush, for comparison).
    pub exit_elide: bool,
    /// Flush the whole ASID when a gather ends while another is in flight on
    /// the same mm (`tlb.nested_fix`, default on; off only to demonstrate
    /// the stale-TLB bug of docs/mechanisms.md §5).
    pub nested_fix: bool,
    /// Fill freed frames with a poison pattern and check it when they are
    /// handed out again (`mm.poison`, default on; benchmarks turn it off).
    pub poison: bool,
    /// Free kernel heap (KiB) that user-caused allocations must leave
    /// (`kheap.reserve_kb`; default: `mm::heap`'s 4 MiB). System calls that
    /// would keep heap memory fail with ENOMEM below it.
    pub heap_reserve_kb: Option<u64>,
    /// The TLB decision trace (`trace=tlb`, `trace.size`; see
    /// `mm::tlb::trace`).
    pub trace: TraceParams,
    /// How flushes reach other CPUs (`tlb.strategy=broadcast|ipi|local|auto`,
    /// default broadcast; see `mm::space::shootdown`).
    pub strategy: Strategy,
    /// `auto` sends IPIs up to this many CPUs (`tlb.ipi_max`, 0..=64).
    pub ipi_max: u32,
    /// The repeat-TLBI errata workaround (`tlb.repeat_tlbi=auto|off|each|once`,
    /// default auto: by MIDR; see `mm::tlb::errata`).
    pub repeat_tlbi: RepeatChoice,
    /// Adopters of an mm count as its users (`tlb.use_mm_mmget`, default on;
    /// off only to demonstrate seed 002's bug).
    pub use_mm_mmget: bool,
    /// Kernel threads keep the last user mm loaded (`tlb.lazy`, default on).
    pub lazy_tlb: bool,
    /// Local and IPI flushes mark the CPUs they miss stale (`tlb.stale_mark`,
    /// default on; off only to demonstrate the bug).
    pub stale_mark: bool,
    /// CPUs compare flush generations (`tlb.gen_check`, default on; off only
    /// to demonstrate the bug: partial flushes at any distance, no catch-up).
    pub gen_check: bool,
    /// Swap slots (pages) of RAM reserved at boot for reclaim (`swap.slots`,
    /// default [`SWAP_SLOTS`]; 0: no swap, a page fault with no frame
    /// kills the process as before).
    pub swap_slots: u32,
    /// Reclaim batches its TLBIs, one DSB per batch (`reclaim.batch`,
    /// default on; off: a DSB per page, for comparison).
    pub reclaim_batch: bool,
    /// A reclaim batch's DSB runs on another CPU (`reclaim.dsb=remote`;
    /// default `local`; remote only to demonstrate that it completes
    /// nothing).
    pub reclaim_dsb_remote: bool,
    /// Secondary MMUs are invalidated after the free (`mmu.notifier=late`;
    /// default `on`: before; late only to demonstrate the bug).
    pub notifier_late: bool,
    /// The CPU each device's thread runs on (`dev.cpu=N[,M]`, one per
    /// device, or one for all); empty: the last CPU online.
    pub dev_cpus: Vec<u32>,
    /// Which mappings may use 2 MiB blocks and 64 KiB contiguous runs
    /// (`mm.thp=always|madvise|never`, default madvise: those mapped with
    /// `map::HUGE` / `map::CONT` or advised `HUGEPAGE`).
    pub thp: Thp,
    /// A write fault on a shared block splits it and copies one page
    /// (`mm.block_cow=split`, the default) or copies the whole block
    /// (`copy`).
    pub block_cow_copy: bool,
    /// Splits without the break (`mm.bbm=auto|off|force`): `auto` where the
    /// CPU reports FEAT_BBM level 2 and is known not to raise TLB conflict
    /// aborts (`CpuFeatures::bbml2_noabort`), `off` never, `force` always
    /// (only to demonstrate the no-break path, or what the break prevents).
    pub bbm: Bbm,
}

/// `mm.bbm`: when a split may skip break-before-make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bbm {
    Auto,
    Off,
    Force,
}

/// Default swap area: 8 MiB.
pub const SWAP_SLOTS: u32 = 2048;
/// Largest swap area: 1 GiB.
pub const MAX_SWAP_SLOTS: u32 = 1 << 18;

impl Default for Options {
    fn default() -> Self {
        Options {
            log: log::LevelFilter::Info,
            tests: TestSelection::None,
            workload: Workload::SelfCheck,
            tick_hz: 100,
            list_tests: false,
            asid_bits: None,
            tlb: PolicyParams::default(),
            exit_elide: true,
            nested_fix: true,
            poison: true,
            heap_reserve_kb: None,
            trace: TraceParams::DEFAULT,
            strategy: Strategy::Broadcast,
            ipi_max: crate::mm::space::shootdown::IPI_MAX,
            repeat_tlbi: RepeatChoice::Auto,
            use_mm_mmget: true,
            lazy_tlb: true,
            stale_mark: true,
            gen_check: true,
            swap_slots: SWAP_SLOTS,
            reclaim_batch: true,
            reclaim_dsb_remote: false,
            notifier_late: false,
            dev_cpus: Vec::new(),
            thp: Thp::Madvise,
            block_cow_copy: false,
            bbm: Bbm::Auto,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdlineError {
    UnknownOption(String),
    BadValue { option: String, value: String, expected: &'static str },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::UnknownOption(k) => {
                write!(
                    f,
                    "unknown kernel option '{k}' (known: {}, {}, {})",
                    KNOWN.join(", "),
                    PolicyParams::KEYS.join(", "),
                    TraceParams::KEYS.join(", ")
                )
            }
            CmdlineError::BadValue { option, value, expected } => {
                write!(f, "bad value '{value}' for kernel option '{option}': expected {expected}")
            }
        }
    }
}

/// Every key this parser accepts, for the error message.
pub const KNOWN: &[&str] = &[
    "log",
    "ktest.run",
    "ktest.all",
    "ktest.list",
    "workload",
    "run",
    "tick_hz",
    "asid_bits",
    "tlb.exit_elide",
    "tlb.nested_fix",
    "mm.poison",
    "kheap.reserve_kb",
    "tlb.strategy",
    "tlb.ipi_max",
    "tlb.repeat_tlbi",
    "tlb.use_mm_mmget",
    "tlb.lazy",
    "tlb.stale_mark",
    "tlb.gen_check",
    "swap.slots",
    "reclaim.batch",
    "reclaim.dsb",
    "mmu.notifier",
    "dev.cpu",
    "mm.thp",
    "mm.block_cow",
    "mm.bbm",
];

fn bad(option: &str, value: &str, expected: &'static str) -> CmdlineError {
    CmdlineError::BadValue { option: option.to_string(), value: value.to_string(), expected }
}

fn flag(option: &str, value: Option<&str>) -> Result<bool, CmdlineError> {
    match value {
        None | Some("1") | Some("on") | Some("yes") | Some("true") => Ok(true),
        Some("0") | Some("off") | Some("no") | Some("false") => Ok(false),
        Some(v) => Err(bad(option, v, "on or off")),
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses a whole command line: whitespace-separated `key=value` or `key`.
pub fn parse(line: &str) -> Result<Options, CmdlineError> {
    let mut o = Options::default();
    for word in line.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        match key {
            "log" => {
                let v = value.unwrap_or("");
                o.log = v.parse().map_err(|_| bad(key, v, "off, error, warn, info, debug or trace"))?;
            }
            "ktest.run" => {
                let v = value.unwrap_or("");
                let names: Vec<String> = v.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
                if names.is_empty() {
                    return Err(bad(key, v, "a comma-separated list of test names"));
                }
                o.tests = TestSelection::Named(names);
            }
            "ktest.all" => {
                if flag(key, value)? {
                    o.tests = TestSelection::All;
                }
            }
            "ktest.list" => o.list_tests = flag(key, value)?,
            "workload" => {
                o.workload = match value.unwrap_or("") {
                    "selfcheck" => Workload::SelfCheck,
                    "none" => Workload::None,
                    v => return Err(bad(key, v, "selfcheck or none")),
                }
            }
            "run" => {
                let v = value.unwrap_or("");
                let mut progs = Vec::new();
                for item in v.split(',').filter(|s| !s.is_empty()) {
                    let (name, arg) = match item.split_once(':') {
                        Some((n, a)) => {
                            (n, parse_u64(a).ok_or_else(|| bad(key, v, "name[:arg],... with numeric args"))?)
                        }
                        None => (item, 0),
                    };
                    if name.is_empty() {
                        return Err(bad(key, v, "name[:arg],..."));
                    }
                    progs.push((name.to_string(), arg));
                }
                if progs.is_empty() {
                    return Err(bad(key, v, "name[:arg],..."));
                }
                o.workload = Workload::Programs(progs);
            }
            "asid_bits" => {
                let v = value.unwrap_or("");
                o.asid_bits = match v.parse::<u32>() {
                    Ok(n) if (2..=16).contains(&n) => Some(n),
                    _ => return Err(bad(key, v, "an integer from 2 to 16")),
                }
            }
            "tick_hz" => {
                let v = value.unwrap_or("");
                o.tick_hz = match v.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return Err(bad(key, v, "an integer from 1 to 1000")),
                }
            }
            "tlb.exit_elide" => o.exit_elide = flag(key, value)?,
            "tlb.nested_fix" => o.nested_fix = flag(key, value)?,
            "mm.poison" => o.poison = flag(key, value)?,
            "tlb.strategy" => {
                let v = value.unwrap_or("");
                o.strategy = Strategy::parse(v).ok_or_else(|| bad(key, v, "broadcast, ipi, local or auto"))?;
            }
            "tlb.ipi_max" => {
                let v = value.unwrap_or("");
                o.ipi_max = match v.parse::<u32>() {
                    Ok(n) if n <= 64 && v.bytes().all(|b| b.is_ascii_digit()) => n,
                    _ => return Err(bad(key, v, "a number of CPUs from 0 to 64")),
                }
            }
            "tlb.repeat_tlbi" => {
                let v = value.unwrap_or("");
                o.repeat_tlbi = RepeatChoice::parse(v).ok_or_else(|| bad(key, v, RepeatChoice::VALUES))?;
            }
            "tlb.use_mm_mmget" => o.use_mm_mmget = flag(key, value)?,
            "tlb.lazy" => o.lazy_tlb = flag(key, value)?,
            "tlb.stale_mark" => o.stale_mark = flag(key, value)?,
            "tlb.gen_check" => o.gen_check = flag(key, value)?,
            "swap.slots" => {
                let v = value.unwrap_or("");
                o.swap_slots = match v.parse::<u32>() {
                    Ok(n) if n <= MAX_SWAP_SLOTS => n,
                    _ => return Err(bad(key, v, "a number of pages from 0 to 262144")),
                }
            }
            "reclaim.batch" => o.reclaim_batch = flag(key, value)?,
            "reclaim.dsb" => {
                o.reclaim_dsb_remote = match value.unwrap_or("") {
                    "local" => false,
                    "remote" => true,
                    v => return Err(bad(key, v, "local or remote")),
                }
            }
            "mm.thp" => {
                let v = value.unwrap_or("");
                o.thp = Thp::parse(v).ok_or_else(|| bad(key, v, "always, madvise or never"))?;
            }
            "mm.block_cow" => {
                o.block_cow_copy = match value.unwrap_or("") {
                    "split" => false,
                    "copy" => true,
                    v => return Err(bad(key, v, "split or copy")),
                }
            }
            "mm.bbm" => {
                o.bbm = match value.unwrap_or("") {
                    "auto" => Bbm::Auto,
                    "off" => Bbm::Off,
                    "force" => Bbm::Force,
                    v => return Err(bad(key, v, "auto, off or force")),
                }
            }
            "mmu.notifier" => {
                o.notifier_late = match value.unwrap_or("") {
                    "on" => false,
                    "late" => true,
                    v => return Err(bad(key, v, "on or late")),
                }
            }
            "dev.cpu" => {
                let v = value.unwrap_or("");
                let cpu = |c: &str| c.parse().ok().filter(|&n: &u32| (n as usize) < MAX_CPUS);
                let cpus: Option<Vec<u32>> = v.split(',').map(cpu).collect();
                o.dev_cpus = match cpus {
                    Some(c) if (1..=abi::device::COUNT).contains(&c.len()) => c,
                    _ => return Err(bad(key, v, "a CPU number below 8, or one per device (N,M)")),
                }
            }
            "kheap.reserve_kb" => {
                let v = value.unwrap_or("");
                o.heap_reserve_kb = match parse_u64(v) {
                    Some(n) if n <= 1 << 20 => Some(n),
                    _ => return Err(bad(key, v, "a size in KiB up to 1048576")),
                }
            }
            "trace" | "trace.size" => match o.trace.apply(key, value) {
                Ok(_) => {}
                Err(e) => return Err(bad(e.option, e.value, e.expected)),
            },
            _ if key.starts_with("tlb.") => match o.tlb.apply(key, value) {
                Ok(Claim::Applied) => {}
                Ok(Claim::NotMine) => return Err(CmdlineError::UnknownOption(key.to_string())),
                Err(e) => return Err(bad(e.option, e.value, e.expected)),
            },
            _ => return Err(CmdlineError::UnknownOption(key.to_string())),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_page_size_options() {
        let d = Options::default();
        assert_eq!((d.thp, d.block_cow_copy, d.bbm), (Thp::Madvise, false, Bbm::Auto));
        let o = parse("mm.thp=always mm.block_cow=copy mm.bbm=off").unwrap();
        assert_eq!((o.thp, o.block_cow_copy, o.bbm), (Thp::Always, true, Bbm::Off));
        assert_eq!(parse("mm.thp=never mm.bbm=force").map(|o| (o.thp, o.bbm)), Ok((Thp::Never, Bbm::Force)));
        for (line, option) in
            [("mm.thp=sometimes", "mm.thp"), ("mm.block_cow=share", "mm.block_cow"), ("mm.bbm", "mm.bbm")]
        {
            match parse(line) {
                Err(CmdlineError::BadValue { option: o, .. }) => assert_eq!(o, option, "{line}"),
                other => panic!("{line}: expected a bad value, got {other:?}"),
            }
        }
    }

    #[test]
    fn parses_the_flush_strategy_options() {
        let o = parse("tlb.strategy=ipi tlb.ipi_max=2 tlb.use_mm_mmget=off tlb.lazy=off").unwrap();
        assert_eq!((o.strategy, o.ipi_max, o.use_mm_mmget, o.lazy_tlb), (Strategy::Ipi, 2, false, false));
        let o = parse("tlb.strategy=local tlb.stale_mark=off tlb.gen_check=off").unwrap();
        assert_eq!((o.strategy, o.stale_mark, o.gen_check), (Strategy::Local, false, false));
        assert_eq!(parse("tlb.strategy=auto").unwrap().strategy, Strategy::Auto);
        let d = Options::default();
        assert_eq!(d.strategy, Strategy::Broadcast, "today's behaviour by default");
        assert!(d.use_mm_mmget && d.lazy_tlb && d.stale_mark && d.gen_check, "safe defaults");
        for (line, option) in [
            ("tlb.strategy=sometimes", "tlb.strategy"),
            ("tlb.strategy", "tlb.strategy"),
            ("tlb.ipi_max=65", "tlb.ipi_max"),
            ("tlb.ipi_max=-1", "tlb.ipi_max"),
            ("tlb.lazy=maybe", "tlb.lazy"),
        ] {
            match parse(line) {
                Err(CmdlineError::BadValue { option: o, .. }) => assert_eq!(o, option, "{line}"),
                other => panic!("{line}: expected BadValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn parses_the_repeat_tlbi_option() {
        use crate::mm::tlb::RepeatTlbi;
        assert_eq!(Options::default().repeat_tlbi, RepeatChoice::Auto, "by MIDR unless told");
        assert_eq!(parse("tlb.repeat_tlbi=auto").unwrap().repeat_tlbi, RepeatChoice::Auto);
        for mode in RepeatTlbi::ALL {
            let line = format!("tlb.repeat_tlbi={}", mode.name());
            assert_eq!(parse(&line).unwrap().repeat_tlbi, RepeatChoice::Forced(mode), "{line}");
        }
        for line in ["tlb.repeat_tlbi=on", "tlb.repeat_tlbi", "tlb.repeat_tlbi=", "tlb.repeat_tlbi=Once"] {
            match parse(line) {
                Err(e @ CmdlineError::BadValue { .. }) => {
                    let msg = e.to_string();
                    let named = msg.contains("'tlb.repeat_tlbi'") && msg.contains("auto, off, each or once");
                    assert!(named, "{line}: {msg}")
                }
                other => panic!("{line}: expected BadValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn parses_the_reclaim_options() {
        let d = Options::default();
        assert_eq!((d.swap_slots, d.reclaim_batch, d.reclaim_dsb_remote), (SWAP_SLOTS, true, false));
        let o = parse("swap.slots=0 reclaim.batch=off reclaim.dsb=remote").unwrap();
        assert_eq!((o.swap_slots, o.reclaim_batch, o.reclaim_dsb_remote), (0, false, true));
        assert!(!parse("reclaim.dsb=local").unwrap().reclaim_dsb_remote);
        assert_eq!(parse("swap.slots=262144").unwrap().swap_slots, MAX_SWAP_SLOTS);
        for (line, option) in [
            ("swap.slots=262145", "swap.slots"),
            ("swap.slots=-1", "swap.slots"),
            ("swap.slots", "swap.slots"),
            ("reclaim.batch=sometimes", "reclaim.batch"),
            ("reclaim.dsb=elsewhere", "reclaim.dsb"),
            ("reclaim.dsb", "reclaim.dsb"),
        ] {
            match parse(line) {
                Err(CmdlineError::BadValue { option: o, .. }) => assert_eq!(o, option, "{line}"),
                other => panic!("{line}: expected BadValue, got {other:?}"),
            }
        }
        assert_eq!(parse("reclaim.bogus=1").unwrap_err(), CmdlineError::UnknownOption("reclaim.bogus".into()));
    }

    #[test]
    fn parses_the_notifier_and_device_options() {
        let d = Options::default();
        assert!(!d.notifier_late && d.dev_cpus.is_empty(), "notifier on, devices on the last CPU");
        assert!(parse("mmu.notifier=late").unwrap().notifier_late);
        assert!(!parse("mmu.notifier=on").unwrap().notifier_late);
        assert_eq!(parse("dev.cpu=2").unwrap().dev_cpus, [2]);
        assert_eq!(parse("dev.cpu=0,7").unwrap().dev_cpus, [0, 7]);
        for (line, option) in [
            ("mmu.notifier=off", "mmu.notifier"),
            ("mmu.notifier", "mmu.notifier"),
            ("mmu.notifier=early", "mmu.notifier"),
            ("dev.cpu=8", "dev.cpu"),
            ("dev.cpu=", "dev.cpu"),
            ("dev.cpu=1,2,3", "dev.cpu"),
            ("dev.cpu=x", "dev.cpu"),
            ("dev.cpu=-1", "dev.cpu"),
        ] {
            match parse(line) {
                Err(e @ CmdlineError::BadValue { .. }) => {
                    assert!(e.to_string().contains(&format!("'{option}'")), "{line}: {e}")
                }
                other => panic!("{line}: expected BadValue, got {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_for_empty_line() {
        assert_eq!(parse("").unwrap(), Options::default());
        assert_eq!(parse("   ").unwrap(), Options::default());
    }

    #[test]
    fn parses_known_options() {
        let o = parse("log=debug ktest.run=a::b,c::d workload=none tick_hz=250").unwrap();
        assert_eq!(o.log, log::LevelFilter::Debug);
        assert_eq!(o.tests, TestSelection::Named(vec!["a::b".into(), "c::d".into()]));
        assert_eq!(o.workload, Workload::None);
        assert_eq!(o.tick_hz, 250);
        assert_eq!(parse("ktest.all").unwrap().tests, TestSelection::All);
        assert!(parse("ktest.list=on").unwrap().list_tests);
        assert_eq!(parse("asid_bits=3").unwrap().asid_bits, Some(3));
        let o = parse("tlb.exit_elide=off tlb.nested_fix=off mm.poison=off").unwrap();
        assert!(!o.exit_elide && !o.nested_fix && !o.poison);
        let d = Options::default();
        assert!(d.exit_elide && d.nested_fix && d.poison, "safe defaults");
        assert_eq!(
            parse("run=hello,counters:4,x:0x10").unwrap().workload,
            Workload::Programs(vec![("hello".into(), 0), ("counters".into(), 4), ("x".into(), 16)])
        );
    }

    #[test]
    fn tlb_policy_options_are_parsed_and_checked() {
        let o = parse("tlb.range=off tlb.asid_threshold=64").unwrap();
        assert!(!o.tlb.use_range);
        assert_eq!(o.tlb.asid_threshold, 64);
        match parse("tlb.range=sideways") {
            Err(CmdlineError::BadValue { option, value, .. }) => {
                assert_eq!((option.as_str(), value.as_str()), ("tlb.range", "sideways"))
            }
            other => panic!("expected BadValue for tlb.range, got {other:?}"),
        }
        assert_eq!(parse("tlb.bogus=1").unwrap_err(), CmdlineError::UnknownOption("tlb.bogus".into()));
    }

    #[test]
    fn trace_options_are_parsed_and_checked() {
        assert_eq!(Options::default().trace, TraceParams { tlb: false, size: 4096 }, "off by default");
        let o = parse("trace=tlb trace.size=64").unwrap();
        assert_eq!(o.trace, TraceParams { tlb: true, size: 64 });
        for (line, opt) in [
            ("trace=all", "trace"),
            ("trace", "trace"),
            ("trace.size=0", "trace.size"),
            ("trace.size=1000000", "trace.size"),
        ] {
            match parse(line) {
                Err(CmdlineError::BadValue { option, .. }) => assert_eq!(option, opt, "for {line}"),
                other => panic!("{line}: expected BadValue for {opt}, got {other:?}"),
            }
        }
        assert_eq!(parse("trace.depth=3").unwrap_err(), CmdlineError::UnknownOption("trace.depth".into()));
        assert!(parse("bogus").unwrap_err().to_string().contains("trace.size"), "the known keys include the trace's");
    }

    #[test]
    fn unknown_option_is_named() {
        let e = parse("log=info bogus=1").unwrap_err();
        assert_eq!(e, CmdlineError::UnknownOption("bogus".into()));
        assert!(e.to_string().contains("'bogus'"), "{e}");
    }

    #[test]
    fn bad_values_name_option_and_value() {
        for (line, opt) in [
            ("log=loud", "log"),
            ("tick_hz=0", "tick_hz"),
            ("tick_hz=5000", "tick_hz"),
            ("tick_hz=x", "tick_hz"),
            ("workload=mystery", "workload"),
            ("ktest.run=", "ktest.run"),
            ("ktest.all=maybe", "ktest.all"),
            ("asid_bits=1", "asid_bits"),
            ("tlb.exit_elide=maybe", "tlb.exit_elide"),
            ("asid_bits=17", "asid_bits"),
            ("run=", "run"),
            ("run=hello:x", "run"),
            ("run=:3", "run"),
        ] {
            match parse(line) {
                Err(CmdlineError::BadValue { option, .. }) => assert_eq!(option, opt, "for {line}"),
                other => panic!("{line}: expected BadValue for {opt}, got {other:?}"),
            }
        }
    }
}
