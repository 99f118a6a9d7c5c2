//! Links every program with `user.ld` when building for the bare-metal
//! target; host builds (which only compile the programs) are untouched.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("user.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    // aarch64-unknown-none, or its -softfloat twin (no FP/SIMD registers).
    if target.starts_with("aarch64-unknown-none") {
        println!("cargo:rustc-link-arg-bins=-T{}", script.display());
        // Segments aligned to the kernel's 4 KiB pages (lld's AArch64
        // default is 64 KiB), which also keeps the files small.
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
        // The kernel embeds these ELFs: keep the symbols (for symbolising a
        // faulting PC) but not the DWARF, which is ~4 MiB per program.
        println!("cargo:rustc-link-arg-bins=--strip-debug");
    }
}
