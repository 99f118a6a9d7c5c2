//! Booting a real QEMU process: its stdout (the kernel console) is read line
//! by line on a thread so the runner can wait with a deadline.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::runner::{Boot, Launcher, Next};
use crate::qemu::{shell_quote, Exit, Qemu};

/// How long to wait for QEMU's stderr to close after it exited.
const STDERR_WAIT: Duration = Duration::from_secs(2);

/// Starts `program` (normally `qemu-system-aarch64`) with [`Qemu::args`].
#[derive(Clone, Debug)]
pub struct ProcessLauncher {
    pub program: OsString,
    /// Echo console lines to stderr as they arrive.
    pub verbose: bool,
}

impl Launcher for ProcessLauncher {
    fn launch(&self, qemu: &Qemu) -> std::io::Result<Box<dyn Boot>> {
        let mut child = std::process::Command::new(&self.program)
            .args(qemu.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        let tag = qemu.append.rsplit("ktest.run=").next().unwrap_or("").chars().take(40).collect::<String>();
        let verbose = self.verbose;
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            // Console bytes need not be UTF-8 (a crashing kernel prints anything).
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']).to_owned();
                if verbose {
                    eprintln!("[{tag}] {line}");
                }
                buf.clear();
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (stderr_tx, stderr_text) = mpsc::channel();
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stderr.read_to_end(&mut text);
            let _ = stderr_tx.send(String::from_utf8_lossy(&text).into_owned());
        });
        Ok(Box::new(ProcessBoot { child, lines, stderr: stderr_text }))
    }

    fn command_line(&self, qemu: &Qemu) -> String {
        std::iter::once(self.program.clone())
            .chain(qemu.args())
            .map(|arg| shell_quote(&arg.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

struct ProcessBoot {
    child: Child,
    lines: Receiver<String>,
    /// QEMU's stderr, whole, once it closes.
    stderr: Receiver<String>,
}

impl Boot for ProcessBoot {
    fn next(&mut self, deadline: Instant) -> Next {
        match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Next::Line(line),
            Err(RecvTimeoutError::Disconnected) => Next::Ended,
            Err(RecvTimeoutError::Timeout) => Next::DeadlinePassed,
        }
    }

    fn kill(&mut self) {
        // Fails only if QEMU already exited, which is what we want anyway.
        let _ = self.child.kill();
    }

    fn finish(&mut self) -> (Exit, String) {
        let exit = match self.child.wait() {
            Ok(status) => Exit::from_status(status),
            Err(_) => Exit::Crashed { code: None, signal: None },
        };
        // A process QEMU left behind could hold the pipe open: do not wait long.
        let stderr = self.stderr.recv_timeout(STDERR_WAIT).unwrap_or_default();
        (exit, stderr)
    }
}

impl Drop for ProcessBoot {
    fn drop(&mut self) {
        // Never leave a QEMU behind (e.g. if the runner panics).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::qemu::Machine;
    use crate::suite::{group, run_suite, tests::ktest, RunOptions, Verdict};
    use std::path::Path;

    /// A shell script in place of QEMU: prints a transcript and exits, or hangs.
    fn fake_qemu(dir: &Path, body: &str) -> OsString {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("fake-qemu");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.into_os_string()
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ktest-harness-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn real_process_transcript_exit_and_kill() {
        let dir = tempdir("proc");
        let script = r#"
case "$*" in
  *ktest.run=a,b*)
    printf 'KTAP version 1\n1..2\n# start a\nok 1 a\n# start b\nlog \377 bytes\r\n'
    echo 'qemu: something' >&2
    exec sleep 30 ;;
  *ktest.run=c*) printf '# start c\nnot ok 1 c # nope\n'; exit 1 ;;
esac"#;
        let launcher = ProcessLauncher { program: fake_qemu(&dir, script), verbose: false };
        let mut tests = [ktest(0, "a", "max", 1, "", 0), ktest(1, "b", "max", 1, "", 0)];
        tests[1].timeout_s = 1;
        let suite = group(&tests).remove(0);
        // b times out after 1 s × 0.5 + 0.5 s grace.
        let opts = RunOptions { timeout_scale: 0.5, host_grace: Duration::from_millis(500), ..RunOptions::default() };
        let started = Instant::now();
        let out = run_suite(&suite, Path::new("/k.img"), &opts, &launcher);
        assert!(started.elapsed().as_secs() < 10);
        assert_eq!(out[0].verdict, Verdict::Pass);
        assert_eq!(out[1].verdict, Verdict::Timeout);
        assert_eq!(out[1].console, ["log \u{fffd} bytes"]);

        let c = group(&[ktest(2, "c", "max", 1, "", 0)]).remove(0);
        let out = run_suite(&c, Path::new("/k.img"), &opts, &launcher);
        assert_eq!((out[0].verdict.clone(), out[0].reason.as_str()), (Verdict::Fail, "nope"));
        let qemu = Qemu {
            machine: Machine { cpu: "max".into(), cpus: 1, mem_mb: 64, el2: false },
            image: "/k.img".into(),
            append: "x y".into(),
            gdb: false,
            plugin: None,
        };
        assert!(launcher.command_line(&qemu).ends_with("-append 'x y' -no-reboot"));
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Boots `q` with QEMU to its end (for whole-boot tests): its exit and
/// what it printed, console then stderr. Kills QEMU after `timeout` and
/// says so in the error.
pub fn run_to_end(q: &Qemu, timeout: Duration) -> Result<(Exit, String), String> {
    let launcher = ProcessLauncher { program: Qemu::program(), verbose: false };
    let mut b = launcher.launch(q).map_err(|e| format!("start QEMU: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut text = String::new();
    loop {
        match b.next(deadline) {
            Next::Line(l) => {
                text.push_str(&l);
                text.push('\n');
            }
            Next::Ended => break,
            Next::DeadlinePassed => {
                b.kill();
                return Err(format!("QEMU did not exit within {} s: {}", timeout.as_secs(), q.command_line()));
            }
        }
    }
    let (exit, stderr) = b.finish();
    text.push_str(&stderr);
    Ok((exit, text))
}
