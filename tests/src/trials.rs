//! libtest glue for `tests/kernel.rs`: which in-kernel tests libtest will
//! run, and one libtest-mimic trial per recorded outcome.

use std::collections::HashMap;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::ktests::KTest;
use crate::suite::{Outcome, Verdict};

/// libtest-mimic's own selection rule (`Arguments::is_filtered_out` and
/// `is_ignored`, for trials without a kind or an ignored flag), so QEMU runs
/// exactly the tests libtest will report.
pub fn is_selected(args: &Arguments, name: &str) -> bool {
    let matches = |pattern: &String| {
        if args.exact {
            name == pattern
        } else {
            name.contains(pattern.as_str())
        }
    };
    if args.filter.as_ref().is_some_and(|f| !matches(f)) || args.skip.iter().any(matches) {
        return false;
    }
    // `--ignored` keeps only trials flagged ignored up front (none are: a
    // skip is known only after the run); `--bench` ignores every test.
    !args.ignored && !args.bench
}

/// One trial per test of the list, in section order, each reporting the
/// outcome recorded for it (tests not run get none, and libtest filters
/// them out before asking).
pub fn trials(tests: &[KTest], mut outcomes: HashMap<String, Outcome>, show_console: bool) -> Vec<Trial> {
    tests
        .iter()
        .map(|t| {
            let outcome = outcomes.remove(&t.name);
            let name = t.name.clone();
            Trial::ignorable_test(t.name.clone(), move || report(&name, outcome, show_console))
        })
        .collect()
}

/// A trial's verdict from the recorded outcome: a `# SKIP` becomes libtest's
/// "ignored" with the reason; a failure or timeout shows the console, the
/// reason and the QEMU command line.
pub fn report(name: &str, outcome: Option<Outcome>, show_console: bool) -> Result<Completion, Failed> {
    let outcome = outcome.ok_or_else(|| Failed::from(format!("{name}: the harness has no result for this test")))?;
    match outcome.verdict {
        Verdict::Pass => {
            if show_console && !outcome.console.is_empty() {
                eprintln!("---- {name} console ----\n{}", outcome.console.join("\n"));
            }
            Ok(Completion::Completed)
        }
        Verdict::Skip => {
            eprintln!("{name}: SKIP {}", outcome.reason);
            Ok(Completion::ignored_with(format!("SKIP: {}", outcome.reason)))
        }
        Verdict::Fail | Verdict::Timeout => Err(outcome.message().into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> Arguments {
        Arguments::from_iter(std::iter::once("kernel").chain(argv.iter().copied()))
    }

    #[test]
    fn selection_follows_libtest() {
        let names = ["boot::frames_roundtrip", "mm::asid_rollover", "mm::asid"];
        let pick = |argv: &[&str]| -> Vec<&str> {
            let a = args(argv);
            names.iter().copied().filter(|n| is_selected(&a, n)).collect()
        };
        assert_eq!(pick(&[]), names);
        assert_eq!(pick(&["asid"]), ["mm::asid_rollover", "mm::asid"]);
        assert_eq!(pick(&["--exact", "mm::asid"]), ["mm::asid"]);
        assert_eq!(pick(&["mm::", "--skip", "rollover"]), ["mm::asid"]);
        assert_eq!(pick(&["--skip", "mm::asid", "--exact"]), ["boot::frames_roundtrip", "mm::asid_rollover"]);
        assert!(pick(&["--ignored"]).is_empty());
        assert!(pick(&["--bench"]).is_empty());
        assert_eq!(pick(&["--include-ignored", "frames"]), ["boot::frames_roundtrip"]);
    }

    #[test]
    fn reports() {
        let outcome = |verdict, reason: &str| Outcome {
            name: "t".into(),
            verdict,
            reason: reason.into(),
            console: vec!["line".into()],
            command: "qemu".into(),
        };
        assert!(matches!(report("t", Some(outcome(Verdict::Pass, "")), false), Ok(Completion::Completed)));
        let skip = report("t", Some(outcome(Verdict::Skip, "no FEAT_X")), false);
        assert!(matches!(skip, Ok(Completion::Ignored { reason: Some(r) }) if r == "SKIP: no FEAT_X"));
        let Err(failed) = report("t", Some(outcome(Verdict::Timeout, "after 5 s")), false) else { panic!() };
        let msg = failed.message().unwrap();
        assert!(msg.contains("TIMEOUT: after 5 s") && msg.contains("line\n") && msg.contains("qemu"));
        assert!(report("t", None, false).is_err());
    }
}
