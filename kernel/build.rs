//! Links the kernel binary with `linker/kernel.ld` when building for the
//! bare-metal target; host builds (unit tests) are untouched.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../linker/kernel.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if target == "aarch64-unknown-none" {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        println!("cargo:rustc-link-arg-bins=--no-relax");
    }
}
