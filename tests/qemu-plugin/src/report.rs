//! The file the plugin writes when QEMU exits: one JSON object.
//!
//! ```text
//! {"plugin":"tlbcount","version":1,"count":"tb","vcpus":2,
//!  "markers":{"begin":"hint #0x7e","end":"hint #0x7f"},
//!  "total":COUNTS,"per_vcpu":[COUNTS,...],
//!  "regions":[{"depth":0,"begin_vcpu":0,"end_vcpu":0,"total":COUNTS,"per_vcpu":[COUNTS,...]}],
//!  "unpaired_markers":0}
//! COUNTS = {"insns":N,"tlbi":{"vae1is":N,...},"dsb":{"ish":N,...},"dsb_completing":N}
//! ```
//!
//! `total` and `per_vcpu` cover the whole run; each region covers what
//! happened between a begin and an end marker (`end_vcpu` is null if QEMU
//! exited inside it), listed in the order they began; `depth` counts the
//! regions around it. `unpaired_markers` counts end markers outside any
//! region. `tlbi` and `dsb` list only the kinds that occurred.
//! `dsb_completing` counts the full DSBs that completed TLB maintenance (see
//! [`crate::counts::Vcpu`]).

use std::fmt::Write;

use abi::marker;

use crate::counts::{Counts, Region};
use crate::decode::{dsb_name, tlbi_name};
use crate::plan::Mode;

/// The report of a run: the whole run per vCPU, and the regions.
pub fn json(mode: Mode, per_vcpu: &[Counts], regions: &[Region], unpaired: u64) -> String {
    let mut s = String::new();
    let count = match mode {
        Mode::Block => "tb",
        Mode::Each => "insn",
    };
    let _ = write!(
        s,
        "{{\"plugin\":\"tlbcount\",\"version\":1,\"count\":\"{count}\",\"vcpus\":{},\
         \"markers\":{{\"begin\":\"hint #{:#x}\",\"end\":\"hint #{:#x}\"}},",
        per_vcpu.len(),
        marker::BEGIN,
        marker::END
    );
    write_totals(&mut s, per_vcpu);
    s.push_str(",\"regions\":[");
    for (i, r) in regions.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let end = r.end_vcpu.map_or("null".to_string(), |v| v.to_string());
        let _ = write!(s, "{{\"depth\":{},\"begin_vcpu\":{},\"end_vcpu\":{end},", r.depth, r.begin_vcpu);
        write_totals(&mut s, &r.per_vcpu);
        s.push('}');
    }
    let _ = writeln!(s, "],\"unpaired_markers\":{unpaired}}}");
    s
}

/// `"total":COUNTS,"per_vcpu":[COUNTS,...]`
fn write_totals(s: &mut String, per_vcpu: &[Counts]) {
    s.push_str("\"total\":");
    write_counts(s, &Counts::sum(per_vcpu));
    s.push_str(",\"per_vcpu\":[");
    for (i, c) in per_vcpu.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        write_counts(s, c);
    }
    s.push(']');
}

fn write_counts(s: &mut String, c: &Counts) {
    let _ = write!(s, "{{\"insns\":{},\"tlbi\":{{", c.insns);
    write_nonzero(s, &c.tlbi, |i| tlbi_name(i as u16));
    s.push_str("},\"dsb\":{");
    write_nonzero(s, &c.dsb, |i| dsb_name(i as u8));
    let _ = write!(s, "}},\"dsb_completing\":{}}}", c.dsb_completing);
}

fn write_nonzero(s: &mut String, values: &[u64], name: impl Fn(usize) -> String) {
    let mut first = true;
    for (i, &n) in values.iter().enumerate().filter(|(_, n)| **n != 0) {
        let _ = write!(s, "{}\"{}\":{n}", if first { "" } else { "," }, name(i));
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::State;

    #[test]
    fn the_report_lists_what_happened() {
        let s = State::new(2);
        let v = s.vcpu(1).unwrap();
        v.insns(3);
        s.begin(1);
        v.tlbi(3 << 3 | 1); // vae1is: op1 0, CRm 3, op2 1
        v.dsb(11); // ish
        v.insns(2);
        s.end(1);
        let (regions, unpaired) = s.regions_at_exit();
        let text = json(Mode::Block, &s.snapshot(), &regions, unpaired);
        let counts = r#"{"insns":2,"tlbi":{"vae1is":1},"dsb":{"ish":1},"dsb_completing":1}"#;
        let zero = r#"{"insns":0,"tlbi":{},"dsb":{},"dsb_completing":0}"#;
        let whole = r#"{"insns":5,"tlbi":{"vae1is":1},"dsb":{"ish":1},"dsb_completing":1}"#;
        let expected = format!(
            "{{\"plugin\":\"tlbcount\",\"version\":1,\"count\":\"tb\",\"vcpus\":2,\
             \"markers\":{{\"begin\":\"hint #0x7e\",\"end\":\"hint #0x7f\"}},\
             \"total\":{whole},\"per_vcpu\":[{zero},{whole}],\
             \"regions\":[{{\"depth\":0,\"begin_vcpu\":1,\"end_vcpu\":1,\"total\":{counts},\"per_vcpu\":[{zero},{counts}]}}],\
             \"unpaired_markers\":0}}\n"
        );
        assert_eq!(text, expected);
    }
}
