//! `ktool`: build the kernel and boot it by hand.
//!
//! - `ktool run [--cpus N] [--cpu MODEL] [--mem MB] [--el2] [--gdb] [--trace FILE] [-- ARGS...]`
//!   boots QEMU on this terminal and exits with QEMU's status; with
//!   `--trace FILE` the kernel records its TLB flush decisions (`trace=tlb`),
//!   and ktool writes them to FILE as Chrome/Perfetto trace JSON and prints
//!   a summary (`ktest_harness::tlbtrace`);
//! - `ktool image` builds and prints the Image's path;
//! - `ktool list` prints the in-kernel tests and the machine each needs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ktest_harness::build::{self, CargoOutput, Kernel};
use ktest_harness::ktests;
use ktest_harness::qemu::{Exit, Machine, Qemu};
use ktest_harness::tlbtrace::{self, Trace};

#[derive(Parser)]
#[command(about = "Build the kernel and boot it under QEMU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the kernel and boot it on this terminal; exits with QEMU's status.
    Run {
        /// Number of CPUs (QEMU -smp).
        #[arg(long, default_value_t = 4)]
        cpus: u32,
        /// QEMU CPU model (e.g. max, cortex-a72, neoverse-n1).
        #[arg(long, default_value = "max")]
        cpu: String,
        /// Memory in MiB.
        #[arg(long, default_value_t = 1024)]
        mem: u32,
        /// Boot at EL2 (-M virt,virtualization=on).
        #[arg(long)]
        el2: bool,
        /// Wait for gdb on :1234 before the first instruction (-s -S).
        #[arg(long)]
        gdb: bool,
        /// Record the kernel's TLB flush decisions (adds `trace=tlb` to the
        /// command line), write them to FILE as Chrome/Perfetto trace JSON
        /// (ui.perfetto.dev, chrome://tracing) and print a summary. The
        /// TRACE lines are not echoed.
        #[arg(long, value_name = "FILE")]
        trace: Option<PathBuf>,
        /// Kernel command line arguments (after `--`), e.g. `ktest.run=mm::asid`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Build the kernel and print the path of its raw Image.
    Image,
    /// List the in-kernel tests with the machine each needs.
    List,
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn build() -> anyhow::Result<Kernel> {
    Ok(build::build_kernel(&build::workspace_root(), CargoOutput::Stream)?)
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX))
}

/// Copies the console to stdout as it comes, except the TLB trace's lines,
/// which it returns.
fn echo_keeping_trace(console: impl std::io::Read) -> Vec<String> {
    let mut kept = Vec::new();
    for line in BufReader::new(console).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
        if line.trim_start().starts_with("TRACE") {
            kept.push(line);
        } else {
            println!("{line}");
        }
    }
    kept
}

/// Parses the trace in `lines`, writes its JSON to `path`; returns the summary.
fn write_trace(lines: &[String], path: &Path) -> anyhow::Result<String> {
    let trace = Trace::parse_lines(lines.iter().map(String::as_str))?;
    trace.write_json(path).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "ktool: {} TLB flush decisions written to {} (open it in ui.perfetto.dev or chrome://tracing)",
        trace.events.len(),
        path.display()
    );
    Ok(tlbtrace::summary::text(&trace))
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { cpus, cpu, mem, el2, gdb, trace, args } => {
            let kernel = build()?;
            let mut append = args.join(" ");
            if trace.is_some() && !args.iter().any(|a| a == tlbtrace::KERNEL_OPTION) {
                append = format!("{append} {}", tlbtrace::KERNEL_OPTION);
            }
            let qemu = Qemu {
                machine: Machine { cpu, cpus, mem_mb: mem, el2 },
                image: kernel.image,
                append,
                gdb,
                plugin: None,
            };
            eprintln!("ktool: {}", qemu.command_line());
            if gdb {
                eprintln!(
                    "ktool: QEMU waits for gdb; symbols are in {elf}; attach with:\n  gdb-multiarch {elf} -ex 'target remote :1234'",
                    elf = kernel.elf.display()
                );
            }
            let cannot_start = || format!("cannot start {}; run scripts/setup.sh", Qemu::program().to_string_lossy());
            let Some(path) = trace else {
                let status = qemu.command().status().with_context(cannot_start)?;
                let exit = Exit::from_status(status);
                eprintln!("ktool: QEMU ended: {exit}");
                return Ok(exit_code(exit.code()));
            };
            let mut child = qemu.command().stdout(Stdio::piped()).spawn().with_context(cannot_start)?;
            let lines = echo_keeping_trace(child.stdout.take().expect("stdout is piped"));
            let exit = Exit::from_status(child.wait()?);
            eprintln!("ktool: QEMU ended: {exit}");
            match write_trace(&lines, &path) {
                Ok(summary) => {
                    print!("{summary}");
                    Ok(exit_code(exit.code()))
                }
                Err(e) => {
                    eprintln!("ktool: no trace written to {}: {e:#}", path.display());
                    Ok(exit_code(if exit.code() == 0 { 1 } else { exit.code() }))
                }
            }
        }
        Command::Image => {
            let kernel = build()?;
            println!("{}", kernel.image.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::List => {
            let kernel = build()?;
            let list = ktests::read(&kernel.elf)?;
            println!("{} in-kernel tests (.ktests at {:#x})", list.tests.len(), list.section_va);
            let width = list.tests.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for t in &list.tests {
                let mut flags = Vec::new();
                if t.flags.fresh() {
                    flags.push("fresh");
                }
                if t.flags.el2() {
                    flags.push("el2");
                }
                let append = if t.append.is_empty() { String::new() } else { format!(" append={:?}", t.append) };
                println!(
                    "{:3} {:<width$} -cpu {} -smp {} -m {}M timeout {}s{}{append}",
                    t.index,
                    t.name,
                    t.cpu,
                    t.cpus,
                    t.mem_mb,
                    t.timeout_s,
                    if flags.is_empty() { String::new() } else { format!(" [{}]", flags.join(",")) },
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
