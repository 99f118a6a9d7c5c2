//! `ktool`: build the kernel and boot it by hand.
//!
//! - `ktool run [--cpus N] [--cpu MODEL] [--mem MB] [--el2] [--gdb] [-- ARGS...]`
//!   boots QEMU on this terminal and exits with QEMU's status;
//! - `ktool image` builds and prints the Image's path;
//! - `ktool list` prints the in-kernel tests and the machine each needs.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ktest_harness::build::{self, CargoOutput, Kernel};
use ktest_harness::ktests;
use ktest_harness::qemu::{Exit, Machine, Qemu};

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
    Ok(build::build_kernel(
        &build::workspace_root(),
        CargoOutput::Stream,
    )?)
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            cpus,
            cpu,
            mem,
            el2,
            gdb,
            args,
        } => {
            let kernel = build()?;
            let qemu = Qemu {
                machine: Machine {
                    cpu,
                    cpus,
                    mem_mb: mem,
                    el2,
                },
                image: kernel.image,
                append: args.join(" "),
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
            let status = qemu.command().status().with_context(|| {
                format!(
                    "cannot start {}; run scripts/setup.sh",
                    Qemu::program().to_string_lossy()
                )
            })?;
            let exit = Exit::from_status(status);
            eprintln!("ktool: QEMU ended: {exit}");
            Ok(ExitCode::from(u8::try_from(exit.code()).unwrap_or(u8::MAX)))
        }
        Command::Image => {
            let kernel = build()?;
            println!("{}", kernel.image.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::List => {
            let kernel = build()?;
            let list = ktests::read(&kernel.elf)?;
            println!(
                "{} in-kernel tests (.ktests at {:#x})",
                list.tests.len(),
                list.section_va
            );
            let width = list.tests.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for t in &list.tests {
                let mut flags = Vec::new();
                if t.flags.fresh() {
                    flags.push("fresh");
                }
                if t.flags.el2() {
                    flags.push("el2");
                }
                let append = if t.append.is_empty() {
                    String::new()
                } else {
                    format!(" append={:?}", t.append)
                };
                println!(
                    "{:3} {:<width$} -cpu {} -smp {} -m {}M timeout {}s{}{append}",
                    t.index,
                    t.name,
                    t.cpu,
                    t.cpus,
                    t.mem_mb,
                    t.timeout_s,
                    if flags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", flags.join(","))
                    },
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
