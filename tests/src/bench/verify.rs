//! `bench --verify`: the kernel's own counters against the TCG plugin's
//! counts of the same instructions over the same region.
//!
//! The kernel counts every TLBI it issues, by kind, in
//! `kernel/src/arch/aarch64/tlbi.rs` (the only place it issues one once it
//! runs), and one DSB per batch: the `DSB ISH` or `DSB NSH` that completes
//! the batch's TLBIs. The kernel executes other DSBs (a `DSB ISHST` before
//! each batch, barriers around instruction-cache maintenance when it loads
//! a program) that it does not count and should not: they are not TLB
//! maintenance. So the DSB count is compared with the plugin's
//! *completing* DSBs: full DSBs (not `LD`/`ST`-only) executed by a vCPU
//! that executed a TLBI since its previous completing DSB. That is a
//! property of the instruction stream, independent of the kernel's code
//! structure: a TLBI whose completion the kernel forgot would not add one,
//! and a counted DSB after no TLBI would not match.
//!
//! The program reads the kernel's counters just outside the markers; the
//! few instructions between a read and a marker (the rest of the STATS
//! calls) issue no TLBI and no DSB, and a helper thread is paused there.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::record::Record;

/// The kernel's DSB counter, by the name `--verify-corrupt` takes.
pub const DSB: &str = "dsb";

/// One counter on which the kernel and the plugin disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diff {
    pub counter: String,
    pub kernel: u64,
    pub plugin: u64,
}

/// A record whose counters disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Workload and parameters.
    pub what: String,
    pub config: String,
    pub diffs: Vec<Diff>,
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verification {
    pub checked: usize,
    pub mismatches: Vec<Mismatch>,
    /// The counter deliberately made wrong (`--verify-corrupt`), if any.
    pub corrupted: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("{0}: no plugin counts to verify against (measured without the plugin)")]
    NoPluginCounts(String),
    #[error("no kernel counter named {name:?} to corrupt; known: {known}")]
    UnknownCounter { name: String, known: String },
}

/// The kernel's counters of `r` that the plugin also counts: every TLBI
/// kind it reports, and [`DSB`]. The repeat-TLBI workaround's TLBIs and
/// DSBs (`tlb.repeat_tlbi`), which the kernel counts apart, are
/// instructions of their kinds all the same: added in.
fn kernel_counters(r: &Record) -> Vec<(String, u64)> {
    let mut c = r.tlbi_total.0.clone();
    for (kind, n) in &r.repeat_total.0 {
        match c.iter_mut().find(|(k, _)| k == kind) {
            Some(e) => e.1 += n,
            None => c.push((kind.clone(), *n)),
        }
    }
    c.push((DSB.to_string(), r.dsb_total + r.repeat_dsb_total));
    c
}

/// Compares `r`'s kernel counters with its plugin counts; with `corrupt`,
/// the kernel's counter of that name is taken as one more than it was.
pub fn diffs(r: &Record, corrupt: Option<&str>) -> Result<Vec<Diff>, VerifyError> {
    let p = r.plugin.as_ref().ok_or_else(|| VerifyError::NoPluginCounts(describe(r)))?;
    let mut kernel = kernel_counters(r);
    if let Some(name) = corrupt {
        let Some(c) = kernel.iter_mut().find(|(k, _)| k == name) else {
            let known: Vec<&str> = kernel.iter().map(|(k, _)| k.as_str()).collect();
            return Err(VerifyError::UnknownCounter { name: name.to_string(), known: known.join(", ") });
        };
        c.1 += 1;
    }
    let names: BTreeSet<&str> =
        kernel.iter().map(|(k, _)| k.as_str()).chain(p.tlbi.keys().map(String::as_str)).collect();
    let kernel_of = |name: &str| kernel.iter().find(|(k, _)| k == name).map_or(0, |&(_, v)| v);
    let plugin_of = |name: &str| match name {
        DSB => p.dsb_completing,
        _ => p.tlbi.get(name).copied().unwrap_or(0),
    };
    Ok(names
        .into_iter()
        .filter(|n| kernel_of(n) != plugin_of(n))
        .map(|n| Diff { counter: n.to_string(), kernel: kernel_of(n), plugin: plugin_of(n) })
        .collect())
}

/// Verifies every record.
pub fn verify(records: &[Record], corrupt: Option<&str>) -> Result<Verification, VerifyError> {
    let mut v = Verification { checked: 0, mismatches: Vec::new(), corrupted: corrupt.map(str::to_string) };
    for r in records {
        let d = diffs(r, corrupt)?;
        v.checked += 1;
        if !d.is_empty() {
            v.mismatches.push(Mismatch { what: describe(r), config: r.config.clone(), diffs: d });
        }
    }
    Ok(v)
}

fn describe(r: &Record) -> String {
    format!("{} {}", r.workload, r.params_label())
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// A plain-text report: one line if everything matched, else a table
    /// per mismatching record.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(c) = &self.corrupted {
            let _ = writeln!(s, "(the kernel's {c} counter was deliberately taken as one more than it was)");
        }
        if self.passed() {
            let _ = writeln!(
                s,
                "verify: {} records: the kernel's TLBI and DSB counters match the plugin's counts",
                self.checked
            );
            return s;
        }
        let _ = writeln!(
            s,
            "verify: {} of {} records: the kernel's counters differ from the plugin's counts",
            self.mismatches.len(),
            self.checked
        );
        for m in &self.mismatches {
            let _ = writeln!(s, "  {} ({}):", m.what, m.config);
            let _ = writeln!(s, "    {:<12} {:>10} {:>10}", "counter", "kernel", "plugin");
            for d in &m.diffs {
                let _ = writeln!(s, "    {:<12} {:>10} {:>10}", d.counter, d.kernel, d.plugin);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::record::tests::{plugin_counts, record, record_with_plugin, LINE};

    #[test]
    fn matching_counts_pass() {
        let r = record_with_plugin(LINE, &plugin_counts());
        assert_eq!(diffs(&r, None), Ok(vec![]));
        let v = verify(&[r.clone(), r], None).unwrap();
        assert!(v.passed() && v.checked == 2);
        assert!(v.text().contains("2 records: the kernel's TLBI and DSB counters match"));
    }

    /// The workaround's TLBIs are counted apart by the kernel and with
    /// their kinds by the plugin: they match once added in, and not without.
    #[test]
    fn the_repeat_tlbi_workarounds_instructions_are_added_in() {
        let line = LINE.replace(r#""dsb":30,"#, r#""dsb":30,"repeat":{"vale1is":30},"repeat_dsb":30,"#);
        let mut p = plugin_counts();
        p.tlbi.insert("vale1is".into(), 3 + 30);
        p.dsb_completing = 60;
        let r = record_with_plugin(&line, &p);
        assert_eq!((r.repeat_per_op, r.repeat_dsb_per_op), (1.0, 1.0));
        assert_eq!(r.tlbi_total, record(LINE).tlbi_total, "the flushes' own counts unchanged");
        assert_eq!(diffs(&r, None), Ok(vec![]));
        // Without them the plugin's extra instructions show.
        let d = diffs(&record_with_plugin(LINE, &p), None).unwrap();
        let got: Vec<(&str, u64, u64)> = d.iter().map(|d| (d.counter.as_str(), d.kernel, d.plugin)).collect();
        assert_eq!(got, [("dsb", 30, 60), ("vale1is", 3, 33)]);
    }

    #[test]
    fn any_difference_is_reported() {
        let mut p = plugin_counts();
        p.tlbi.insert("vale1is".into(), 4);
        p.tlbi.insert("vmalle1".into(), 1); // a kind the kernel did not count
        p.dsb_completing = 29;
        let r = record_with_plugin(LINE, &p);
        let d = diffs(&r, None).unwrap();
        let got: Vec<(&str, u64, u64)> = d.iter().map(|d| (d.counter.as_str(), d.kernel, d.plugin)).collect();
        assert_eq!(got, [("dsb", 30, 29), ("vale1is", 3, 4), ("vmalle1", 0, 1)]);
        let v = verify(&[r], None).unwrap();
        assert!(!v.passed());
        let text = v.text();
        assert!(text.contains("1 of 1 records"), "{text}");
        assert!(text.contains("vale1is") && text.contains("mmap pages=16 threads=1"), "{text}");
    }

    #[test]
    fn a_corrupted_counter_fails_and_an_unknown_one_is_an_error() {
        let r = record_with_plugin(LINE, &plugin_counts());
        let v = verify(std::slice::from_ref(&r), Some("rvae1is")).unwrap();
        assert_eq!(v.mismatches[0].diffs[0], Diff { counter: "rvae1is".into(), kernel: 31, plugin: 30 });
        assert!(v.text().contains("deliberately"));
        let v = verify(std::slice::from_ref(&r), Some(DSB)).unwrap();
        assert_eq!(v.mismatches[0].diffs[0].counter, "dsb");
        assert!(matches!(diffs(&r, Some("vae2")), Err(VerifyError::UnknownCounter { .. })));
        assert!(matches!(diffs(&record(LINE), None), Err(VerifyError::NoPluginCounts(_))));
    }
}
