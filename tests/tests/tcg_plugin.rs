//! The TCG plugin's counts on a guest whose every instruction is known: a
//! raw AArch64 program written here word by word (the encodings are the
//! Arm ARM's, written out independently of the plugin's decoder), loaded
//! with `-device loader` so that nothing else runs before it, ending with
//! a semihosting exit. Every count is checked exactly, in both counting
//! modes, over the whole run and over two nested marked regions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use abi::marker;
use ktest_harness::bench::report::TLBI_KINDS;
use ktest_harness::build::{self, CargoOutput};
use ktest_harness::qemu::Qemu;
use ktest_harness::tcg_plugin::{self, CountMode, Counts, Load, Report};

/// Where the program is loaded and starts (above the device tree QEMU puts
/// at the start of RAM).
const LOAD_ADDR: u64 = 0x4020_0000;

/// `TLBI <kind>, X0` (or without a register for VMALLE1*), as the GNU
/// assembler encodes them, in the order of `TLBI_KINDS`.
const TLBI_WORDS: [u32; 12] = [
    0xd508_8720, // vae1
    0xd508_87a0, // vale1
    0xd508_8620, // rvae1
    0xd508_86a0, // rvale1
    0xd508_8740, // aside1
    0xd508_871f, // vmalle1
    0xd508_8320, // vae1is
    0xd508_83a0, // vale1is
    0xd508_8220, // rvae1is
    0xd508_82a0, // rvale1is
    0xd508_8340, // aside1is
    0xd508_831f, // vmalle1is
];
const NOP: u32 = 0xd503_201f;
const DSB_ISHST: u32 = 0xd503_3a9f;
const DSB_ISH: u32 = 0xd503_3b9f;
const DSB_NSH: u32 = 0xd503_379f;
const DSB_SY: u32 = 0xd503_3f9f;
const DSB_OSH: u32 = 0xd503_339f;
const DSB_ISHLD: u32 = 0xd503_399f;
/// `HLT #0xf000`: a semihosting call.
const HLT_SEMIHOSTING: u32 = 0xd45e_0000;

/// `MOVZ Xd, #imm`.
fn movz(rd: u32, imm: u32) -> u32 {
    0xd280_0000 | (imm & 0xffff) << 5 | rd
}

/// `SUBS Xd, Xn, #imm`.
fn subs(rd: u32, rn: u32, imm: u32) -> u32 {
    0xf100_0000 | (imm & 0xfff) << 10 | rn << 5 | rd
}

/// `B.NE` to `words` instructions from here (negative: backwards).
fn b_ne(words: i32) -> u32 {
    0x5400_0001 | ((words as u32) & 0x7_ffff) << 5
}

/// `ADR Xd, .+bytes`.
fn adr(rd: u32, bytes: u32) -> u32 {
    0x1000_0000 | (bytes & 3) << 29 | (bytes >> 2 & 0x7_ffff) << 5 | rd
}

/// The program and the counts it must produce.
struct Guest {
    words: Vec<u32>,
    total: Expected,
    outer: Expected,
    inner: Expected,
}

#[derive(Debug, Default)]
struct Expected {
    insns: u64,
    tlbi: BTreeMap<String, u64>,
    dsb: BTreeMap<String, u64>,
    dsb_completing: u64,
}

/// Emits instructions and counts them as they go into the open regions.
#[derive(Default)]
struct Asm {
    words: Vec<u32>,
    /// Counts of the whole run, the outer region, the inner region.
    counts: [Expected; 3],
    /// Which of `counts` the next instruction goes into.
    open: [bool; 3],
}

impl Asm {
    fn emit(&mut self, word: u32) {
        self.words.push(word);
        self.count(|e| e.insns += 1);
    }

    fn count(&mut self, f: impl Fn(&mut Expected)) {
        for (c, open) in self.counts.iter_mut().zip(self.open) {
            if open {
                f(c);
            }
        }
    }

    fn tlbi(&mut self, kind: usize) {
        self.emit(TLBI_WORDS[kind]);
        self.count(|e| *e.tlbi.entry(TLBI_KINDS[kind].into()).or_default() += 1);
    }

    fn dsb(&mut self, word: u32, option: &str, completes: bool) {
        self.emit(word);
        self.count(|e| *e.dsb.entry(option.into()).or_default() += 1);
        if completes {
            self.count(|e| e.dsb_completing += 1);
        }
    }

    /// A region marker: outside the region it begins or ends.
    fn marker(&mut self, imm: u32, region: usize, begin: bool) {
        if !begin {
            self.open[region] = false;
        }
        self.emit(marker::hint(imm));
        if begin {
            self.open[region] = true;
        }
    }
}

fn guest() -> Guest {
    let mut a = Asm { open: [true, false, false], ..Asm::default() };
    a.emit(movz(0, 0));
    a.emit(NOP);
    a.emit(NOP);
    a.marker(marker::BEGIN, 1, true);
    // Kind i, i + 1 times: 78 TLBIs of 12 kinds.
    for kind in 0..TLBI_WORDS.len() {
        for _ in 0..=kind {
            a.tlbi(kind);
        }
    }
    a.dsb(DSB_ISHST, "ishst", false); // stores only: completes nothing
    a.dsb(DSB_ISH, "ish", true);
    a.dsb(DSB_NSH, "nsh", false); // no TLBI since the last one
    a.dsb(DSB_SY, "sy", false);
    a.dsb(DSB_OSH, "osh", false);
    a.dsb(DSB_ISHLD, "ishld", false);
    a.marker(marker::BEGIN, 2, true);
    a.emit(movz(2, 5));
    // Five times round: each TLBI ends QEMU's translation block, so the
    // loop runs as several blocks, each executed five times.
    for _ in 0..5 {
        a.count(|e| {
            e.insns += 4;
            *e.tlbi.entry("vae1is".into()).or_default() += 1;
            *e.dsb.entry("ish".into()).or_default() += 1;
            e.dsb_completing += 1;
        });
    }
    let open = a.open;
    a.open = [false; 3]; // counted above, per iteration
    a.emit(TLBI_WORDS[6]);
    a.emit(DSB_ISH);
    a.emit(subs(2, 2, 1));
    a.emit(b_ne(-3));
    a.open = open;
    a.marker(marker::END, 2, false);
    a.marker(marker::END, 1, false);
    a.tlbi(7); // vale1is, outside both regions
    a.dsb(DSB_ISH, "ish", true);
    // SYS_EXIT with x1 -> {ADP_Stopped_ApplicationExit, 0}, just after
    // the HLT.
    a.emit(movz(0, 0x18));
    a.emit(adr(1, 8));
    a.emit(HLT_SEMIHOSTING);
    let [total, outer, inner] = a.counts;
    let mut words = a.words;
    words.extend([0x20026, 0, 0, 0]); // two little-endian u64 words
    Guest { words, total, outer, inner }
}

fn write_guest(words: &[u32]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tcg-plugin-guest-{}.bin", std::process::id()));
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    std::fs::write(&path, bytes).expect("writing the guest");
    path
}

/// Runs the guest under QEMU (`-cpu max`: it has the range TLBIs), with
/// the plugin if `plugin`; returns QEMU's exit code and stderr.
fn run(image: &Path, plugin: Option<&Load>) -> (Option<i32>, String) {
    let mut cmd = Command::new(Qemu::program());
    cmd.args(["-M", "virt,gic-version=3", "-cpu", "max", "-smp", "2", "-m", "128M"])
        .args(["-display", "none", "-monitor", "none", "-nic", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-device")
        .arg(format!("loader,file={},addr={LOAD_ADDR:#x},cpu-num=0", image.display()));
    if let Some(p) = plugin {
        cmd.args(p.qemu_args());
    }
    let out = cmd.output().expect("running QEMU");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn check(what: &str, seen: &Counts, expected: &Expected) {
    let ctx = format!("{what}: expected {expected:?}, the plugin saw {seen:?}");
    assert_eq!(seen.insns, expected.insns, "instructions: {ctx}");
    assert_eq!(seen.tlbi, expected.tlbi, "TLBIs: {ctx}");
    assert_eq!(seen.dsb, expected.dsb, "DSBs: {ctx}");
    assert_eq!(seen.dsb_completing, expected.dsb_completing, "completing DSBs: {ctx}");
}

#[test]
fn the_plugin_counts_a_known_guest_exactly() {
    let root = build::workspace_root();
    let lib = tcg_plugin::build(&root, CargoOutput::Capture).unwrap_or_else(|e| panic!("building the plugin: {e}"));
    let g = guest();
    assert_eq!(g.total.tlbi.values().sum::<u64>(), 78 + 5 + 1);
    assert_eq!((g.outer.insns, g.inner.insns), (107, 21), "the guest as designed");
    let image = write_guest(&g.words);

    // Without the plugin the markers are NOPs and the guest exits 0.
    let (code, stderr) = run(&image, None);
    assert_eq!(code, Some(0), "the guest alone: {stderr}");

    for mode in [CountMode::Block, CountMode::Each] {
        let load = Load::temporary(&lib, mode);
        let (code, stderr) = run(&image, Some(&load));
        assert_eq!(code, Some(0), "{mode:?}: {stderr}");
        let report: Report = load.take_report().unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert_eq!(report.count, mode.arg());
        assert_eq!(report.vcpus, 2);
        check(&format!("{mode:?}, whole run"), &report.total, &g.total);
        check(&format!("{mode:?}, vCPU 0"), &report.per_vcpu[0], &g.total);
        check(&format!("{mode:?}, vCPU 1 (never started)"), &report.per_vcpu[1], &Expected::default());
        assert_eq!(report.unpaired_markers, 0);
        assert_eq!(report.regions.len(), 2, "{mode:?}: {:?}", report.regions);
        let (outer, inner) = (&report.regions[0], &report.regions[1]);
        assert_eq!((outer.depth, outer.begin_vcpu, outer.end_vcpu), (0, 0, Some(0)));
        assert_eq!((inner.depth, inner.begin_vcpu, inner.end_vcpu), (1, 0, Some(0)));
        check(&format!("{mode:?}, outer region"), &outer.total, &g.outer);
        check(&format!("{mode:?}, inner region"), &inner.total, &g.inner);
    }
    let _ = std::fs::remove_file(image);
}
