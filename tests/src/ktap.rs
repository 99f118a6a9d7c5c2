//! A line-at-a-time parser for the kernel's KTAP v1 console output.
//!
//! The kernel prints `KTAP version 1`, a plan `1..N`, then for each test a
//! `# start <name>` line, whatever the test logs, and one result line:
//! `ok <n> <name>`, `not ok <n> <name> # <reason>`, `ok <n> <name> # SKIP
//! <reason>` or `not ok <n> <name> # TIMEOUT ...`. The console is shared with
//! the kernel's log, so a line is matched after trimming (whitespace, `\r`,
//! ANSI colour codes), and a result for the running test is also recognised
//! when log output was printed in front of it on the same line.
//!
//! The parser is incremental because the suite runner must arm a test's
//! deadline the moment its `# start` line arrives.

/// How a test ended, as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `ok N name` (a `# comment` other than SKIP is ignored).
    Pass,
    /// `not ok N name [# reason]`.
    Fail { reason: String },
    /// `ok N name # SKIP reason` (or `not ok ... # SKIP`).
    Skip { reason: String },
}

/// One test's result line and the console lines printed while it ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The test number `N` of the result line.
    pub number: u32,
    pub name: String,
    pub status: Status,
    /// Lines between the test's `# start` line and its result line.
    pub console: Vec<String>,
}

/// What a fed line meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `KTAP version N`.
    Version(u32),
    /// The plan `1..N`.
    Plan(u32),
    /// `# start <name>`.
    Start(String),
    /// A result line; the report is the last one in [`Parser::reports`].
    Result,
    /// Any other line (log output, diagnostics).
    Console,
}

/// Incremental KTAP parser. Feed it one console line at a time.
#[derive(Debug, Default)]
pub struct Parser {
    version: Option<u32>,
    plan: Option<u32>,
    /// The test whose `# start` was seen and whose result was not.
    current: Option<(String, Vec<String>)>,
    /// Lines seen while no test was running (boot log, epilogue).
    outside: Vec<String>,
    reports: Vec<Report>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a whole console transcript.
    pub fn parse(text: &str) -> Self {
        let mut parser = Self::new();
        for line in text.lines() {
            parser.feed(line);
        }
        parser
    }

    /// Feeds one line (without its newline) and says what it was.
    pub fn feed(&mut self, raw: &str) -> Event {
        let line = clean(raw);
        if let Some(version) = line.strip_prefix("KTAP version ").and_then(|v| v.trim().parse().ok()) {
            self.version = Some(version);
            return Event::Version(version);
        }
        if let Some(count) = parse_plan(&line) {
            self.plan = Some(count);
            return Event::Plan(count);
        }
        if let Some(name) = line.strip_prefix("# start ").map(str::trim).filter(|n| !n.is_empty()) {
            self.finish_unreported();
            self.current = Some((name.to_owned(), Vec::new()));
            return Event::Start(name.to_owned());
        }
        let current_name = self.current.as_ref().map(|(name, _)| name.as_str());
        if let Some(result) = parse_result(&line).or_else(|| find_result(&line, current_name?)) {
            let console = match self.current.take() {
                Some((name, console)) if name == result.name => console,
                other => {
                    // A result for a test that was not the running one: keep the
                    // running one pending rather than losing its lines.
                    self.current = other;
                    Vec::new()
                }
            };
            self.reports.push(Report { console, ..result });
            return Event::Result;
        }
        match &mut self.current {
            Some((_, console)) => console.push(line),
            None => self.outside.push(line),
        }
        Event::Console
    }

    /// `KTAP version N`, if seen.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// The plan's test count, if seen.
    pub fn plan(&self) -> Option<u32> {
        self.plan
    }

    /// Results so far, in the order they were printed.
    pub fn reports(&self) -> &[Report] {
        &self.reports
    }

    pub fn into_reports(self) -> Vec<Report> {
        self.reports
    }

    /// The running test (started, no result yet) and its console lines.
    pub fn current(&self) -> Option<(&str, &[String])> {
        self.current.as_ref().map(|(name, lines)| (name.as_str(), lines.as_slice()))
    }

    /// Lines printed while no test was running.
    pub fn outside(&self) -> &[String] {
        &self.outside
    }

    /// A new `# start` without a result for the previous test: the previous
    /// test's lines move to the outside log (the runner decides its fate).
    fn finish_unreported(&mut self) {
        if let Some((name, lines)) = self.current.take() {
            self.outside.push(format!("# (no result for {name})"));
            self.outside.extend(lines);
        }
    }
}

/// Strips ANSI escape sequences, `\r` and surrounding whitespace.
fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params... final byte in 0x40..=0x7e.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out.trim().to_owned()
}

fn parse_plan(line: &str) -> Option<u32> {
    let count = line.strip_prefix("1..")?;
    let count = count.split_once(" #").map_or(count, |(count, _)| count);
    count.trim().parse().ok()
}

/// Parses a result line that starts at the beginning of `line`.
fn parse_result(line: &str) -> Option<Report> {
    let (ok, rest) =
        if let Some(rest) = line.strip_prefix("ok ") { (true, rest) } else { (false, line.strip_prefix("not ok ")?) };
    let (number, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let number = number.parse().ok()?;
    let (name, directive) = match rest.split_once(" #") {
        Some((name, directive)) => (name, Some(directive.trim())),
        None => (rest.strip_suffix('#').unwrap_or(rest), None),
    };
    let name = name.trim();
    let name = name.strip_prefix("- ").unwrap_or(name).trim();
    if name.is_empty() {
        return None;
    }
    let directive = directive.unwrap_or("");
    let status = if let Some(reason) = strip_keyword(directive, "SKIP") {
        Status::Skip { reason }
    } else if ok {
        Status::Pass
    } else {
        Status::Fail { reason: directive.to_owned() }
    };
    Some(Report { number, name: name.to_owned(), status, console: Vec::new() })
}

/// Finds a result line for the running test `name` after other output on the
/// same line (a log message without a trailing newline).
fn find_result(line: &str, name: &str) -> Option<Report> {
    line.match_indices("ok ")
        .filter_map(|(at, _)| {
            let start = if line[..at].ends_with("not ") { at - 4 } else { at };
            parse_result(&line[start..])
        })
        .find(|report| report.name == name)
}

/// `SKIP reason` → `Some("reason")`, case-insensitively on the keyword.
fn strip_keyword(directive: &str, keyword: &str) -> Option<String> {
    let head = directive.get(..keyword.len())?;
    let tail = &directive[keyword.len()..];
    (head.eq_ignore_ascii_case(keyword) && (tail.is_empty() || tail.starts_with([' ', ':'])))
        .then(|| tail.trim_start_matches(':').trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
[boot] platform: QEMU virt
KTAP version 1
1..4
# start boot::frames_roundtrip
frames: 128 allocated
ok 1 boot::frames_roundtrip
# start mm::asid_rollover
  # expected 5, got 6
not ok 2 mm::asid_rollover # assertion failed: left == right
# start mm::tlbi_range
ok 3 mm::tlbi_range # SKIP cpu has no FEAT_TLBIRANGE
# start task::spin
not ok 4 task::spin # TIMEOUT after 10 s
";

    #[test]
    fn parses_statuses_and_console() {
        let parser = Parser::parse(SAMPLE);
        assert_eq!(parser.version(), Some(1));
        assert_eq!(parser.plan(), Some(4));
        let reports = parser.reports();
        assert_eq!(reports.len(), 4);
        assert_eq!(reports[0].name, "boot::frames_roundtrip");
        assert_eq!(reports[0].status, Status::Pass);
        assert_eq!(reports[0].console, ["frames: 128 allocated"]);
        assert_eq!(reports[1].number, 2);
        assert_eq!(reports[1].status, Status::Fail { reason: "assertion failed: left == right".into() });
        assert_eq!(reports[1].console, ["# expected 5, got 6"]);
        assert_eq!(reports[2].status, Status::Skip { reason: "cpu has no FEAT_TLBIRANGE".into() });
        // The kernel has no watchdog of its own (the host enforces the
        // limits): a TIMEOUT directive is a failure like any other.
        assert!(matches!(&reports[3].status, Status::Fail { reason } if reason.contains("10 s")));
        assert_eq!(parser.outside(), ["[boot] platform: QEMU virt"]);
        assert!(parser.current().is_none());
    }

    #[test]
    fn events_arm_deadlines() {
        let mut parser = Parser::new();
        assert_eq!(parser.feed("KTAP version 1\r"), Event::Version(1));
        assert_eq!(parser.feed("1..2"), Event::Plan(2));
        assert_eq!(parser.feed("  # start a::b  "), Event::Start("a::b".into()));
        assert_eq!(parser.feed("hello"), Event::Console);
        assert_eq!(parser.current(), Some(("a::b", &["hello".to_owned()][..])));
        assert_eq!(parser.feed("ok 1 a::b"), Event::Result);
        assert!(parser.current().is_none());
    }

    #[test]
    fn result_after_log_prefix_on_same_line() {
        let mut parser = Parser::new();
        parser.feed("# start mm::walk");
        // A log line without a newline, then the result on the same line.
        assert_eq!(parser.feed("\u{1b}[32mINFO\u{1b}[0m mm: donenot ok 7 mm::walk # boom"), Event::Result);
        let report = &parser.reports()[0];
        assert_eq!(report.number, 7);
        assert_eq!(report.status, Status::Fail { reason: "boom".into() });
        // Mid-line matches only count for the running test.
        parser.feed("# start x");
        assert_eq!(parser.feed("log: ok 3 y"), Event::Console);
        assert_eq!(parser.feed("log: ok 3 x"), Event::Result);
    }

    #[test]
    fn odd_but_valid_lines() {
        let r = parse_result("ok 12 - dash::name").unwrap();
        assert_eq!((r.number, r.name.as_str(), r.status), (12, "dash::name", Status::Pass));
        let r = parse_result("not ok 3 x").unwrap();
        assert_eq!(r.status, Status::Fail { reason: String::new() });
        let r = parse_result("not ok 3 x # skip: later").unwrap();
        assert_eq!(r.status, Status::Skip { reason: "later".into() });
        let r = parse_result("ok 3 x # some comment").unwrap();
        assert_eq!(r.status, Status::Pass);
        assert!(parse_result("ok x y").is_none());
        assert!(parse_result("okay 1 x").is_none());
        assert!(parse_result("ok 1").is_none());
        assert_eq!(parse_plan("1..0 # no tests"), Some(0));
        assert_eq!(parse_plan("1..x"), None);
    }

    #[test]
    fn start_without_result_keeps_lines_outside() {
        let parser = Parser::parse("# start a\nlost line\n# start b\nok 2 b\n");
        assert_eq!(parser.reports().len(), 1);
        assert_eq!(parser.reports()[0].name, "b");
        assert!(parser.outside().iter().any(|l| l == "lost line"));
    }

    #[test]
    fn unmatched_result_keeps_running_test() {
        let parser = Parser::parse("# start a\nline\nok 9 other\nmore\n");
        assert_eq!(parser.reports()[0].name, "other");
        assert_eq!(parser.current(), Some(("a", &["line".to_owned(), "more".to_owned()][..])));
    }
}
