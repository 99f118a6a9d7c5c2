//! Builds the kernel for `aarch64-unknown-none` with Debian's `rustc-web`
//! (which ships the library source `-Zbuild-std` needs) and converts the ELF
//! to a raw `Image` for QEMU.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::image::{self, ImageError};

/// Debian's compiler (`rustc-web`); rustup's `rustc` has no `core` source
/// for the target.
pub const RUSTC: &str = "/usr/bin/rustc";
/// The library source `-Zbuild-std` compiles (`rust-web-src`).
pub const LIBRARY_SRC: &str = "/usr/lib/rustlib/src/rust/library";
/// Soft-float: neither the kernel nor user programs touch the FP/SIMD
/// registers, so no context switch or interrupt has FP state to save (the
/// kernel saves only the general-purpose registers).
pub const TARGET: &str = "aarch64-unknown-none-softfloat";
/// The cargo profile in the workspace `Cargo.toml`.
pub const PROFILE: &str = "kernel";

/// Variables of the caller's environment that would leak host settings into
/// the cross build (or move its output).
const SCRUBBED_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

/// What to do with cargo's own output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CargoOutput {
    /// Capture it and put it in the error only if the build fails.
    Capture,
    /// Let it through to our stderr (all of it) as it happens.
    Stream,
}

/// The built kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    /// The ELF, with symbols (for gdb and for reading `.ktests`).
    pub elf: PathBuf,
    /// The raw arm64 Image beside it (`kernel.img`), for QEMU's `-kernel`.
    pub image: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{what} is missing ({path}); run scripts/setup.sh to install the toolchain")]
    MissingToolchain { what: &'static str, path: PathBuf },
    #[error("cannot run `{cargo}`: {source}")]
    Spawn { cargo: String, source: std::io::Error },
    #[error("the kernel build failed ({status}):\n{output}")]
    Failed { status: ExitStatus, output: String },
    #[error("the build succeeded but {0} does not exist")]
    NoElf(PathBuf),
    #[error("cannot make the Image: {0}")]
    Image(#[from] ImageError),
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target directory of the kernel build, kept apart from the host
/// one so the two builds never wait on each other's lock.
pub fn target_dir(root: &Path) -> PathBuf {
    root.join("target").join("aarch64")
}

/// Where the kernel ELF ends up.
pub fn elf_path(root: &Path) -> PathBuf {
    target_dir(root).join(TARGET).join(PROFILE).join("kernel")
}

/// Checks that the Debian toolchain the kernel build needs is installed.
pub fn check_toolchain() -> Result<(), BuildError> {
    for (what, path) in [("Debian's rustc-web compiler", RUSTC), ("the rust-web-src library source", LIBRARY_SRC)] {
        if !Path::new(path).exists() {
            return Err(BuildError::MissingToolchain { what, path: path.into() });
        }
    }
    Ok(())
}

/// `cargo build` for the bare-metal target with `packages` (e.g. `-p kernel`).
fn cross_build(root: &Path, packages: &[&str]) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("build")
        .args(packages)
        .args(["--profile", PROFILE, "--target", TARGET])
        .args(["-Zbuild-std=core,alloc", "-Zbuild-std-features=compiler-builtins-mem"])
        .arg("--target-dir")
        .arg(target_dir(root));
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.env("RUSTC", RUSTC).env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Where the user programs' ELFs end up (the kernel embeds them from here).
pub fn userland_dir(root: &Path) -> PathBuf {
    target_dir(root).join(TARGET).join(PROFILE)
}

/// The `cargo build` command for the user programs (built before the kernel).
pub fn userland_command(root: &Path) -> Command {
    cross_build(root, &["-p", "userland", "--bins"])
}

/// The `cargo build` command for the kernel in workspace `root`; it embeds
/// the user programs found in [`userland_dir`].
pub fn cargo_command(root: &Path) -> Command {
    let mut cmd = cross_build(root, &["-p", "kernel", "--bin", "kernel"]);
    cmd.env("USERLAND_DIR", userland_dir(root));
    cmd
}

/// Builds the kernel in workspace `root` and writes `kernel.img` beside the ELF.
pub fn build_kernel(root: &Path, output: CargoOutput) -> Result<Kernel, BuildError> {
    check_toolchain()?;
    if root.join("user/programs/Cargo.toml").exists() {
        run_cargo(userland_command(root), output)?;
    }
    run_cargo(cargo_command(root), output)?;
    let elf = elf_path(root);
    if !elf.exists() {
        return Err(BuildError::NoElf(elf));
    }
    let image = elf.with_file_name("kernel.img");
    image::convert(&elf, &image)?;
    Ok(Kernel { elf, image })
}

pub(crate) fn run_cargo(mut cmd: Command, output: CargoOutput) -> Result<(), BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let spawn_error = |source| BuildError::Spawn { cargo: program.clone(), source };
    match output {
        CargoOutput::Stream => {
            // Our stdout may carry a result (`ktool image` prints a path).
            cmd.stdout(Stdio::from(std::io::stderr())).stderr(Stdio::inherit());
            let status = cmd.status().map_err(spawn_error)?;
            if !status.success() {
                return Err(BuildError::Failed { status, output: "(cargo's output is above)".into() });
            }
        }
        CargoOutput::Capture => {
            let out = cmd.stdin(Stdio::null()).output().map_err(spawn_error)?;
            if !out.status.success() {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                return Err(BuildError::Failed { status: out.status, output: text });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_command_is_a_clean_cross_build() {
        let cmd = cargo_command(Path::new("/ws"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.windows(2).any(|w| w == ["--target", TARGET]));
        assert!(args.windows(2).any(|w| w == ["--target-dir", "/ws/target/aarch64"]));
        assert!(args.iter().any(|a| a == "-Zbuild-std=core,alloc"));
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&("RUSTC".as_ref(), Some(RUSTC.as_ref()))));
        assert!(envs.contains(&("CARGO_TARGET_DIR".as_ref(), None)));
        assert!(envs.contains(&("RUSTFLAGS".as_ref(), None)));
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/ws")));
        assert!(envs.iter().any(|(k, _)| *k == "USERLAND_DIR"), "the kernel build finds the user programs");
        let user: Vec<_> =
            userland_command(Path::new("/ws")).get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(user.windows(2).any(|w| w == ["-p", "userland"]));
        assert_eq!(
            elf_path(Path::new("/ws")),
            Path::new("/ws/target/aarch64/aarch64-unknown-none-softfloat/kernel/kernel")
        );
    }
}
