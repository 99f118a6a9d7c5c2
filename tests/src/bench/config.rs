//! The kernel configurations a benchmark runs under: machine (QEMU CPU
//! model and count), flush strategy, flush-policy thresholds, exit elision,
//! the nested-gather fix, the ASID width, reclaim batching and the
//! repeat-TLBI errata workaround.
//!
//! Strategies and policies are tables: adding one is one line, and every
//! sweep that crosses strategies (the strategy sweep of `sweep.rs`) or
//! policies picks it up.

use crate::qemu::Machine;

/// Memory of every benchmark machine, in MiB.
pub const MEM_MB: u32 = 512;

/// Options on every benchmark's command line: `log=warn` keeps the console
/// quiet while timing.
pub const BASE_ARGS: &[&str] = &["log=warn"];

/// Options added when the kernel knows them (probed at the start of a run)
/// and dropped silently otherwise: `mm.poison=off` stops the kernel from
/// filling and checking every freed frame, which would dominate the cost
/// of a zap.
pub const OPTIONAL_BASE_ARGS: &[&str] = &["mm.poison=off"];

/// A flush strategy of the kernel (`tlb.strategy=NAME`).
#[derive(Debug, PartialEq, Eq)]
pub struct Strategy {
    pub name: &'static str,
    /// Kernel options that select it (none for the kernel's default).
    pub args: &'static [&'static str],
    pub about: &'static str,
}

/// Every strategy the strategy sweep crosses (`tlb.strategy`,
/// kernel/src/mm/space/shootdown.rs). One line each; the first is the
/// kernel's default, under which every other sweep runs.
pub const STRATEGIES: &[Strategy] = &[
    Strategy {
        name: "broadcast",
        args: &[],
        about: "inner-shareable TLBIs reach every CPU (the kernel's default, tlb.strategy=broadcast)",
    },
    Strategy {
        name: "ipi",
        args: &["tlb.strategy=ipi"],
        about: "local TLBIs here and an IPI to each other CPU that runs the mm",
    },
    Strategy {
        name: "local",
        args: &["tlb.strategy=local"],
        about: "local TLBIs when the mm's one user runs here, broadcast otherwise",
    },
    Strategy {
        name: "auto",
        args: &["tlb.strategy=auto"],
        about: "local when alone, IPIs up to tlb.ipi_max CPUs (3), broadcast beyond",
    },
];

/// The default strategy.
pub fn default_strategy() -> &'static Strategy {
    &STRATEGIES[0]
}

/// The strategy named `name`, if [`STRATEGIES`] has one.
pub fn strategy(name: &str) -> Option<&'static Strategy> {
    STRATEGIES.iter().find(|s| s.name == name)
}

/// Thresholds of the flush policy (`tlb.*`, kernel/src/mm/tlb/policy.rs).
#[derive(Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: &'static str,
    pub args: &'static [&'static str],
    pub about: &'static str,
}

/// Every policy configuration the sweeps may cross. One line each.
pub const POLICIES: &[Policy] = &[
    Policy {
        name: "default",
        args: &[],
        about: "per_page_max auto (1 with range ops, 32 without), asid_threshold 2^21",
    },
    Policy { name: "no-range", args: &["tlb.range=off"], about: "range ops off: per page up to 32, then whole ASID" },
    Policy { name: "ppm=8", args: &["tlb.per_page_max=8"], about: "per page up to 8 entries" },
    Policy { name: "ppm=64", args: &["tlb.per_page_max=64"], about: "per page up to 64 entries (the plan's capacity)" },
    Policy {
        name: "no-range,ppm=64",
        args: &["tlb.range=off", "tlb.per_page_max=64"],
        about: "no range ops, per page up to 64",
    },
    Policy { name: "asid>=64", args: &["tlb.asid_threshold=64"], about: "whole-ASID flush from 64 pages" },
    Policy {
        name: "asid>=512",
        args: &["tlb.asid_threshold=512"],
        about: "whole-ASID flush from 512 pages (Linux's MAX_DVM_OPS)",
    },
];

/// The policy named `name` (panics on a name not in [`POLICIES`]: the
/// sweeps name only policies of the table).
pub fn policy(name: &str) -> &'static Policy {
    POLICIES.iter().find(|p| p.name == name).unwrap_or_else(|| panic!("no policy named {name:?} in POLICIES"))
}

/// QEMU CPU models: `max` has FEAT_TLBIRANGE and FEAT_TTL, `cortex-a72`
/// neither.
pub const CPU_RANGE: &str = "max";
pub const CPU_NO_RANGE: &str = "cortex-a72";
/// A core the repeat-TLBI errata affect (`mm::tlb::errata`: `auto` chooses
/// `once` on it), without TLBI range ops, so a flush of N pages is N
/// TLBIs that the original workaround repeats one by one.
pub const CPU_REPEAT_TLBI: &str = "cortex-a76";

/// The modes of the repeat-TLBI workaround the repeat sweep crosses
/// (`tlb.repeat_tlbi`, kernel/src/mm/tlb/errata.rs; `auto` is one of them
/// on any given CPU).
pub const REPEAT_MODES: &[&str] = &["off", "once", "each"];

/// One kernel configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// QEMU `-cpu`.
    pub cpu: &'static str,
    /// QEMU `-smp`.
    pub cpus: u32,
    pub strategy: &'static Strategy,
    pub policy: &'static Policy,
    /// `tlb.exit_elide=on|off`; `None` = the kernel's default.
    pub exit_elide: Option<bool>,
    /// `tlb.nested_fix=on|off`; `None` = the kernel's default.
    pub nested_fix: Option<bool>,
    /// `asid_bits=N`; `None` = the hardware's width.
    pub asid_bits: Option<u32>,
    /// `reclaim.batch=on|off`; `None` = the kernel's default (on).
    pub reclaim_batch: Option<bool>,
    /// `tlb.repeat_tlbi=MODE`; `None` = the kernel's default (auto).
    pub repeat_tlbi: Option<&'static str>,
    /// QEMU `-m` in MiB; `None` = [`MEM_MB`].
    pub mem_mb: Option<u32>,
}

impl Config {
    /// The default strategy and policy on `cpu` with `cpus` CPUs.
    pub fn new(cpu: &'static str, cpus: u32) -> Config {
        Config {
            cpu,
            cpus,
            strategy: default_strategy(),
            policy: &POLICIES[0],
            exit_elide: None,
            nested_fix: None,
            asid_bits: None,
            reclaim_batch: None,
            repeat_tlbi: None,
            mem_mb: None,
        }
    }

    pub fn with_policy(mut self, name: &str) -> Config {
        self.policy = policy(name);
        self
    }

    pub fn with_strategy(mut self, s: &'static Strategy) -> Config {
        self.strategy = s;
        self
    }

    pub fn with_exit_elide(mut self, on: bool) -> Config {
        self.exit_elide = Some(on);
        self
    }

    pub fn with_nested_fix(mut self, on: bool) -> Config {
        self.nested_fix = Some(on);
        self
    }

    pub fn with_asid_bits(mut self, bits: u32) -> Config {
        self.asid_bits = Some(bits);
        self
    }

    pub fn with_reclaim_batch(mut self, on: bool) -> Config {
        self.reclaim_batch = Some(on);
        self
    }

    pub fn with_repeat_tlbi(mut self, mode: &'static str) -> Config {
        self.repeat_tlbi = Some(mode);
        self
    }

    pub fn with_mem_mb(mut self, mb: u32) -> Config {
        self.mem_mb = Some(mb);
        self
    }

    /// The kernel options of this configuration (without the base ones).
    pub fn args(&self) -> Vec<String> {
        let onoff = |b: bool| if b { "on" } else { "off" };
        let mut args: Vec<String> = self.strategy.args.iter().map(|s| s.to_string()).collect();
        args.extend(self.policy.args.iter().map(|s| s.to_string()));
        if let Some(on) = self.exit_elide {
            args.push(format!("tlb.exit_elide={}", onoff(on)));
        }
        if let Some(on) = self.nested_fix {
            args.push(format!("tlb.nested_fix={}", onoff(on)));
        }
        if let Some(bits) = self.asid_bits {
            args.push(format!("asid_bits={bits}"));
        }
        if let Some(on) = self.reclaim_batch {
            args.push(format!("reclaim.batch={}", onoff(on)));
        }
        if let Some(mode) = self.repeat_tlbi {
            args.push(format!("tlb.repeat_tlbi={mode}"));
        }
        args
    }

    pub fn machine(&self) -> Machine {
        Machine { cpu: self.cpu.to_string(), cpus: self.cpus, mem_mb: self.mem_mb.unwrap_or(MEM_MB), el2: false }
    }

    /// A short unique name: `max 2cpu broadcast/default`, then whatever is set
    /// of `elide=off`, `nested_fix=off`, `asid_bits=4`, `reclaim.batch=off`,
    /// `mem=2048M`.
    pub fn label(&self) -> String {
        let mut s = format!("{} {}cpu {}/{}", self.cpu, self.cpus, self.strategy.name, self.policy.name);
        let onoff = |b: bool| if b { "on" } else { "off" };
        if let Some(on) = self.exit_elide {
            s.push_str(&format!(" elide={}", onoff(on)));
        }
        if let Some(on) = self.nested_fix {
            s.push_str(&format!(" nested_fix={}", onoff(on)));
        }
        if let Some(bits) = self.asid_bits {
            s.push_str(&format!(" asid_bits={bits}"));
        }
        if let Some(on) = self.reclaim_batch {
            s.push_str(&format!(" reclaim.batch={}", onoff(on)));
        }
        if let Some(mode) = self.repeat_tlbi {
            s.push_str(&format!(" repeat_tlbi={mode}"));
        }
        if let Some(mb) = self.mem_mb {
            s.push_str(&format!(" mem={mb}M"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_and_labels() {
        let c = Config::new(CPU_RANGE, 2);
        assert!(c.args().is_empty());
        assert_eq!(c.label(), "max 2cpu broadcast/default");
        let c = Config::new(CPU_NO_RANGE, 4)
            .with_policy("no-range,ppm=64")
            .with_exit_elide(false)
            .with_nested_fix(true)
            .with_asid_bits(4);
        assert_eq!(
            c.args(),
            ["tlb.range=off", "tlb.per_page_max=64", "tlb.exit_elide=off", "tlb.nested_fix=on", "asid_bits=4"]
        );
        assert_eq!(c.label(), "cortex-a72 4cpu broadcast/no-range,ppm=64 elide=off nested_fix=on asid_bits=4");
        assert_eq!(c.machine().cpus, 4);
        let ipi = Config::new(CPU_RANGE, 8).with_strategy(strategy("ipi").unwrap());
        assert_eq!((ipi.args(), ipi.label()), (vec!["tlb.strategy=ipi".to_string()], "max 8cpu ipi/default".into()));
        assert!(strategy("nonesuch").is_none());
        let r = Config::new(CPU_RANGE, 2).with_reclaim_batch(false);
        let label = "max 2cpu broadcast/default reclaim.batch=off";
        assert_eq!((r.args(), r.label()), (vec!["reclaim.batch=off".to_string()], label.into()));
        let e = Config::new(CPU_REPEAT_TLBI, 2).with_repeat_tlbi("each");
        let label = "cortex-a76 2cpu broadcast/default repeat_tlbi=each";
        assert_eq!((e.args(), e.label()), (vec!["tlb.repeat_tlbi=each".to_string()], label.into()));
        let m = Config::new(CPU_RANGE, 2).with_mem_mb(2048);
        let label = "max 2cpu broadcast/default mem=2048M";
        assert_eq!((m.args().len(), m.label(), m.machine().mem_mb), (0, label.into(), 2048));
        assert_eq!(Config::new(CPU_RANGE, 2).machine().mem_mb, MEM_MB);
        assert_eq!(default_strategy().name, "broadcast");
        assert!(default_strategy().args.is_empty(), "the default runs with the kernel's default");
    }

    #[test]
    fn table_names_are_unique() {
        let mut names: Vec<_> = POLICIES.iter().map(|p| p.name).collect();
        names.extend(STRATEGIES.iter().map(|s| s.name));
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "duplicate policy or strategy name");
    }
}
