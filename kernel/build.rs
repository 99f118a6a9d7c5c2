//! Links the kernel binary with `linker/kernel.ld` when building for the
//! bare-metal target, and embeds the user programs: every
//! `user/programs/src/bin/NAME.rs` whose ELF exists in `$USERLAND_DIR`
//! (the harness builds them first and sets it). Host builds are untouched.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("linker/kernel.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target.starts_with("aarch64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--no-relax");
    }

    println!("cargo:rerun-if-env-changed=USERLAND_DIR");
    let bin_dir = root.join("user/programs/src/bin");
    println!("cargo:rerun-if-changed={}", bin_dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&bin_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(String::from))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let dir = std::env::var("USERLAND_DIR").ok().filter(|_| target.starts_with("aarch64-unknown-none"));
    let mut out =
        String::from("/// Built-in user programs: (name, ELF image).\npub static PROGRAMS: &[(&str, &[u8])] = &[\n");
    for n in &names {
        if let Some(d) = &dir {
            let path = Path::new(d).join(n);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
                let _ = writeln!(out, "    ({n:?}, &Aligned(*include_bytes!({:?})).0),", path.display().to_string());
            }
        }
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("programs.rs");
    std::fs::write(dest, out).unwrap();
}
