//! The TCG plugin `tlbcount` (`tests/qemu-plugin`): building it, loading it
//! into QEMU, and reading the counts it writes when QEMU exits.
//!
//! Per vCPU it counts guest instructions, TLBIs by kind and DSBs by option,
//! for the whole run and for each region a guest program marks with
//! `HINT #abi::marker::BEGIN` ... `HINT #abi::marker::END`. It is built
//! for the host with cargo, like the kernel for the target, in a target
//! directory of its own (`target/qemu-plugin`), so a build started from
//! inside `cargo test` never waits for the outer cargo's lock.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::build::{run_cargo, BuildError, CargoOutput};

/// The plugin's package in the workspace.
pub const PACKAGE: &str = "tlbcount";

/// How the plugin counts instructions (its `count=` argument).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CountMode {
    /// Per translation block as it starts (split at markers): cheap.
    #[default]
    Block,
    /// Per instruction as it starts: slower.
    Each,
}

impl CountMode {
    pub fn arg(self) -> &'static str {
        match self {
            CountMode::Block => "tb",
            CountMode::Each => "insn",
        }
    }
}

/// The plugin's target directory under the workspace `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join("target").join("qemu-plugin")
}

/// Where the built plugin is.
pub fn library_path(root: &Path) -> PathBuf {
    let file = format!("{}{PACKAGE}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    target_dir(root).join("release").join(file)
}

/// The `cargo build` command for the plugin (optimised: its callbacks run
/// for every translation block QEMU executes).
pub fn cargo_command(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--release", "-p", PACKAGE, "--target-dir"]).arg(target_dir(root));
    // A host build: a cross target or a moved target directory from the
    // caller's environment must not apply.
    for var in ["CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Builds the plugin in workspace `root`; returns the library's path.
pub fn build(root: &Path, output: CargoOutput) -> Result<PathBuf, BuildError> {
    run_cargo(cargo_command(root), output)?;
    let lib = library_path(root);
    if !lib.exists() {
        return Err(BuildError::NoElf(lib));
    }
    Ok(lib)
}

/// The plugin loaded into one QEMU run, writing to `out`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Load {
    pub library: PathBuf,
    pub out: PathBuf,
    pub mode: CountMode,
}

impl Load {
    /// `library` writing to a fresh file in the temporary directory.
    pub fn temporary(library: &Path, mode: CountMode) -> Load {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tlbcount-{}-{n}.json", std::process::id());
        Load { library: library.to_path_buf(), out: std::env::temp_dir().join(name), mode }
    }

    /// `-plugin LIB,out=PATH,count=MODE` (commas in paths doubled, as
    /// QEMU's option syntax wants).
    pub fn qemu_args(&self) -> Vec<OsString> {
        let escape = |p: &Path| p.to_string_lossy().replace(',', ",,");
        let spec = format!("{},out={},count={}", escape(&self.library), escape(&self.out), self.mode.arg());
        vec![OsString::from("-plugin"), OsString::from(spec)]
    }

    /// Reads and deletes the report (after QEMU exited).
    pub fn take_report(&self) -> Result<Report, ReportError> {
        let text =
            std::fs::read_to_string(&self.out).map_err(|e| ReportError::Read { path: self.out.clone(), source: e });
        let _ = std::fs::remove_file(&self.out);
        Report::parse(&text?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("the plugin wrote no report at {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad plugin report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Counts of one vCPU, or summed, over a run or a region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub insns: u64,
    /// TLBIs by kind (`vae1is`, ...; kinds that did not occur are absent).
    pub tlbi: BTreeMap<String, u64>,
    /// DSBs by option (`ish`, `ishst`, ...).
    pub dsb: BTreeMap<String, u64>,
    /// Full DSBs that completed TLB maintenance: executed after at least
    /// one TLBI since the same vCPU's previous such DSB.
    pub dsb_completing: u64,
}

impl Counts {
    pub fn tlbi_total(&self) -> u64 {
        self.tlbi.values().sum()
    }
}

/// What happened between a begin and an end marker.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Region {
    /// Regions open around it (they nest).
    pub depth: u32,
    pub begin_vcpu: u32,
    /// `None`: QEMU exited inside the region.
    pub end_vcpu: Option<u32>,
    pub total: Counts,
    pub per_vcpu: Vec<Counts>,
}

impl Region {
    /// The counts of the vCPU that executed the begin marker.
    pub fn marking_vcpu(&self) -> &Counts {
        self.per_vcpu.get(self.begin_vcpu as usize).unwrap_or(&self.total)
    }
}

/// The plugin's file (`tests/qemu-plugin/src/report.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Report {
    pub plugin: String,
    pub version: u32,
    /// `tb` or `insn`.
    pub count: String,
    pub vcpus: u32,
    pub total: Counts,
    pub per_vcpu: Vec<Counts>,
    pub regions: Vec<Region>,
    /// End markers outside any region.
    pub unpaired_markers: u64,
}

impl Report {
    pub fn parse(text: &str) -> Result<Report, ReportError> {
        Ok(serde_json::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_arguments_and_paths() {
        let load = Load { library: "/w/lib,x.so".into(), out: "/tmp/o.json".into(), mode: CountMode::Each };
        let args = load.qemu_args();
        assert_eq!(args, ["-plugin", "/w/lib,,x.so,out=/tmp/o.json,count=insn"]);
        let a = Load::temporary(Path::new("/l.so"), CountMode::Block);
        let b = Load::temporary(Path::new("/l.so"), CountMode::Block);
        assert_ne!(a.out, b.out, "every run writes its own file");
        assert!(library_path(Path::new("/ws")).starts_with("/ws/target/qemu-plugin/release"));
        let cmd = cargo_command(Path::new("/ws"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["-p", PACKAGE]));
        assert!(args.iter().any(|a| a == "/ws/target/qemu-plugin"));
    }

    #[test]
    fn a_report_parses() {
        let text = r#"{"plugin":"tlbcount","version":1,"count":"tb","vcpus":2,"markers":{"begin":"hint #0x7e","end":"hint #0x7f"},"total":{"insns":20,"tlbi":{"vae1is":1},"dsb":{"ish":1},"dsb_completing":1},"per_vcpu":[{"insns":20,"tlbi":{"vae1is":1},"dsb":{"ish":1},"dsb_completing":1},{"insns":0,"tlbi":{},"dsb":{},"dsb_completing":0}],"regions":[{"depth":0,"begin_vcpu":0,"end_vcpu":null,"total":{"insns":11,"tlbi":{"vae1is":1},"dsb":{},"dsb_completing":0},"per_vcpu":[{"insns":11,"tlbi":{"vae1is":1},"dsb":{},"dsb_completing":0},{"insns":0,"tlbi":{},"dsb":{},"dsb_completing":0}]}],"unpaired_markers":0}"#;
        let r = Report::parse(text).unwrap();
        assert_eq!((r.vcpus, r.total.insns, r.total.tlbi_total()), (2, 20, 1));
        assert_eq!(r.regions[0].end_vcpu, None);
        assert_eq!(r.regions[0].marking_vcpu().insns, 11);
        assert!(matches!(Report::parse("{"), Err(ReportError::Json(_))));
    }
}
