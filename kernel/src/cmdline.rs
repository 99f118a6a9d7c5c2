//! The kernel command line (`-append`): typed options. An unknown key or a
//! bad value is an error naming the option; the kernel prints it and ends
//! the run with a non-zero status.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// What to run after boot when no tests are selected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// A short self-check of the platform (the default).
    SelfCheck,
    /// Boot, print the banner and exit.
    None,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            log: log::LevelFilter::Info,
            tests: TestSelection::None,
            workload: Workload::SelfCheck,
            tick_hz: 100,
            list_tests: false,
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
                write!(f, "unknown kernel option '{k}' (known: {})", KNOWN.join(", "))
            }
            CmdlineError::BadValue { option, value, expected } => {
                write!(f, "bad value '{value}' for kernel option '{option}': expected {expected}")
            }
        }
    }
}

/// Every key this parser accepts, for the error message.
pub const KNOWN: &[&str] = &["log", "ktest.run", "ktest.all", "ktest.list", "workload", "tick_hz"];

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
            "tick_hz" => {
                let v = value.unwrap_or("");
                o.tick_hz = match v.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return Err(bad(key, v, "an integer from 1 to 1000")),
                }
            }
            _ => return Err(CmdlineError::UnknownOption(key.to_string())),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            match parse(line) {
                Err(CmdlineError::BadValue { option, .. }) => assert_eq!(option, opt, "for {line}"),
                other => panic!("{line}: expected BadValue for {opt}, got {other:?}"),
            }
        }
    }
}
