//! The QEMU command line that boots the kernel, and what its exit status
//! means.
//!
//! The kernel's PL011 console is QEMU's stdout (`-serial stdio`); the kernel
//! ends the run through semihosting `SYS_EXIT`, whose status becomes QEMU's.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use crate::tcg_plugin::Load;

/// The QEMU binary, unless `KTEST_QEMU` names another.
pub const DEFAULT_QEMU: &str = "qemu-system-aarch64";

/// Semihosting exit statuses of the kernel (kvm-unit-tests' convention).
pub use abi::exit::{FAIL as EXIT_FAIL, PASS as EXIT_PASS, SKIP as EXIT_SKIP};

/// The emulated machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Machine {
    /// `-cpu` model, e.g. `max` or `cortex-a72`.
    pub cpu: String,
    /// `-smp`.
    pub cpus: u32,
    /// `-m`, in MiB.
    pub mem_mb: u32,
    /// Boot at EL2 (`virtualization=on`).
    pub el2: bool,
}

/// One QEMU invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qemu {
    pub machine: Machine,
    /// The raw Image for `-kernel`.
    pub image: PathBuf,
    /// The kernel command line (`-append`).
    pub append: String,
    /// Wait for gdb on tcp::1234 before the first instruction (`-s -S`).
    pub gdb: bool,
    /// The TCG plugin to load (`-plugin`), if any.
    pub plugin: Option<Load>,
}

impl Qemu {
    /// The QEMU binary: `$KTEST_QEMU`, or `qemu-system-aarch64` from PATH.
    pub fn program() -> OsString {
        std::env::var_os("KTEST_QEMU").unwrap_or_else(|| DEFAULT_QEMU.into())
    }

    pub fn args(&self) -> Vec<OsString> {
        let m = &self.machine;
        let mut machine = String::from("virt,gic-version=3");
        if m.el2 {
            machine.push_str(",virtualization=on");
        }
        let mut args: Vec<OsString> = [
            "-M",
            &machine,
            "-cpu",
            &m.cpu,
            "-smp",
            &m.cpus.to_string(),
            "-m",
            &format!("{}M", m.mem_mb),
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            // No network device: the kernel has no driver for one, and the
            // default NIC's option ROM comes with ipxe-qemu, which a lean
            // install (`scripts/setup.sh`) leaves out.
            "-nic",
            "none",
            "-semihosting-config",
            "enable=on,target=native",
            "-kernel",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        args.push(self.image.clone().into_os_string());
        args.extend(["-append", self.append.trim(), "-no-reboot"].map(OsString::from));
        if self.gdb {
            args.extend(["-s", "-S"].map(OsString::from));
        }
        if let Some(plugin) = &self.plugin {
            args.extend(plugin.qemu_args());
        }
        args
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(Self::program());
        cmd.args(self.args());
        cmd
    }

    /// The command as a shell line, to reproduce a run by hand.
    pub fn command_line(&self) -> String {
        std::iter::once(Self::program())
            .chain(self.args())
            .map(|arg| shell_quote(&arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Quotes `arg` for a POSIX shell if it needs it.
pub fn shell_quote(arg: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    if !arg.is_empty() && arg.chars().all(plain) {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// How a QEMU run ended, by the kernel's exit contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// 0: every test passed.
    Passed,
    /// 1: a test failed (QEMU also exits 1 on its own errors: see its stderr).
    Failed,
    /// 77: skipped.
    Skipped,
    /// Anything else: a crash, a panic that exited oddly, or a signal.
    Crashed { code: Option<i32>, signal: Option<i32> },
}

impl Exit {
    pub fn from_status(status: ExitStatus) -> Exit {
        #[cfg(unix)]
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        #[cfg(not(unix))]
        let signal = None;
        match status.code() {
            Some(code) => Exit::from_code(code),
            None => Exit::Crashed { code: None, signal },
        }
    }

    pub fn from_code(code: i32) -> Exit {
        match code {
            EXIT_PASS => Exit::Passed,
            EXIT_FAIL => Exit::Failed,
            EXIT_SKIP => Exit::Skipped,
            code => Exit::Crashed { code: Some(code), signal: None },
        }
    }

    /// The kernel ended the run on purpose (any status of the contract).
    pub fn is_clean(self) -> bool {
        !matches!(self, Exit::Crashed { .. })
    }

    /// The process exit code to pass on (`ktool run` exits with it).
    pub fn code(self) -> i32 {
        match self {
            Exit::Passed => EXIT_PASS,
            Exit::Failed => EXIT_FAIL,
            Exit::Skipped => EXIT_SKIP,
            Exit::Crashed { code: Some(code), .. } => code,
            Exit::Crashed { signal, .. } => 128 + signal.unwrap_or(0),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Passed => write!(f, "exit status 0 (all passed)"),
            Exit::Failed => write!(f, "exit status 1 (a test failed, or QEMU itself failed)"),
            Exit::Skipped => write!(f, "exit status 77 (skipped)"),
            Exit::Crashed { code: Some(code), .. } => write!(f, "exit status {code} (crash)"),
            Exit::Crashed { signal: Some(signal), .. } => write!(f, "killed by signal {signal}"),
            Exit::Crashed { .. } => write!(f, "ended without a status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu(el2: bool, gdb: bool) -> Qemu {
        Qemu {
            machine: Machine { cpu: "cortex-a72".into(), cpus: 2, mem_mb: 512, el2 },
            image: "/t/kernel.img".into(),
            append: " log=debug ktest.run=a::b,c ".into(),
            gdb,
            plugin: None,
        }
    }

    #[test]
    fn command_line() {
        let args: Vec<_> = qemu(false, false).args().into_iter().map(|a| a.into_string().unwrap()).collect();
        let expected = "-M virt,gic-version=3 -cpu cortex-a72 -smp 2 -m 512M -display none -serial stdio \
                        -monitor none -nic none -semihosting-config enable=on,target=native -kernel /t/kernel.img";
        assert_eq!(args[..args.len() - 3].join(" "), expected);
        assert_eq!(args[args.len() - 3..], ["-append", "log=debug ktest.run=a::b,c", "-no-reboot"]);

        let args = qemu(true, true).args();
        assert!(args.contains(&"virt,gic-version=3,virtualization=on".into()));
        assert_eq!(args[args.len() - 2..], ["-s".into(), "-S".into()] as [OsString; 2]);
        assert!(qemu(false, false).command_line().contains(" -append 'log=debug ktest.run=a::b,c' -no-reboot"));
    }

    #[test]
    fn quoting_and_exit_codes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a=b,c"), "a=b,c");
        assert_eq!(Exit::from_code(77), Exit::Skipped);
        assert_eq!(Exit::from_code(124), Exit::Crashed { code: Some(124), signal: None }, "not in the contract");
        assert_eq!(Exit::from_code(3), Exit::Crashed { code: Some(3), signal: None });
        assert!(!Exit::from_code(3).is_clean() && Exit::from_code(1).is_clean());
        assert_eq!(Exit::Crashed { code: None, signal: Some(9) }.code(), 137);
    }
}
