//! The in-kernel test framework.
//!
//! Tests register themselves with [`ktest!`](crate::ktest) into the `.ktests`
//! linker section (no central list); the host harness reads that section from
//! the ELF to list them without booting. A run executes the selected tests in
//! section order and reports KTAP v1 on the console:
//!
//! ```text
//! KTAP version 1
//! 1..3
//! # start boot::cpus_online
//! ok 1 boot::cpus_online
//! # start mm::text_is_read_only
//! not ok 2 mm::text_is_read_only # expected a permission fault, saw none
//! # start mm::gicv2
//! ok 3 mm::gicv2 # SKIP needs gic-version=2
//! ```
//!
//! A test fails by panicking (assertions) or by taking an unexpected
//! exception; the runner recovers and goes on. The run ends through
//! semihosting: 0 if every test passed, 1 if any failed, 77 if all skipped.

mod runner;

pub use runner::{catch, list as runner_list, record_failure, run, skip, Outcome};

/// A `&'static str` as (pointer, length) with a fixed layout the host reads.
#[repr(C)]
pub struct RawStr {
    ptr: *const u8,
    len: usize,
}

impl RawStr {
    pub const fn new(s: &'static str) -> Self {
        RawStr { ptr: s.as_ptr(), len: s.len() }
    }
    pub fn as_str(&self) -> &'static str {
        // SAFETY: built from a `&'static str` by `new`.
        unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(self.ptr, self.len)) }
    }
}

/// Needs a fresh QEMU boot of its own.
pub const FLAG_FRESH: u32 = abi::ktest::FLAG_FRESH;
/// Boot at EL2 (`-M virt,virtualization=on`).
pub const FLAG_EL2: u32 = abi::ktest::FLAG_EL2;

/// One registered test: the record layout of `abi::ktest`, which the
/// harness reads (`tests/src/ktests.rs`).
#[repr(C)]
pub struct KTest {
    pub name: RawStr,
    pub cpu: RawStr,
    pub append: RawStr,
    pub cpus: u32,
    pub mem_mb: u32,
    pub timeout_s: u32,
    pub flags: u32,
    pub func: fn(),
}

// SAFETY: a KTest is immutable data (static strings and a function pointer).
unsafe impl Sync for KTest {}

const _: () = {
    use abi::ktest as k;
    use core::mem::offset_of;
    assert!(core::mem::size_of::<KTest>() == k::RECORD_SIZE);
    assert!(offset_of!(KTest, name) == k::NAME && offset_of!(KTest, cpu) == k::CPU);
    assert!(offset_of!(KTest, append) == k::APPEND && offset_of!(KTest, cpus) == k::CPUS);
    assert!(offset_of!(KTest, mem_mb) == k::MEM_MB && offset_of!(KTest, timeout_s) == k::TIMEOUT_S);
    assert!(offset_of!(KTest, flags) == k::FLAGS && offset_of!(KTest, func) == k::FUNC);
};

/// The QEMU configuration a test needs; tests with equal configurations
/// share one boot.
pub struct KTestConfig {
    /// QEMU `-cpu` model.
    pub cpu: &'static str,
    /// QEMU `-smp`.
    pub cpus: u32,
    /// QEMU `-m`, in MiB.
    pub mem_mb: u32,
    /// Host-side time limit for this test.
    pub timeout_s: u32,
    pub fresh: bool,
    pub el2: bool,
    /// Extra kernel command-line arguments.
    pub append: &'static str,
}

impl KTestConfig {
    pub const DEFAULT: KTestConfig =
        KTestConfig { cpu: "max", cpus: 4, mem_mb: 1024, timeout_s: 60, fresh: false, el2: false, append: "" };
}

/// Strips the crate name (and a leading `ktests::`) from a module path.
pub const fn short_name(path: &'static str) -> &'static str {
    const fn strip(s: &'static str, prefix: &str) -> &'static str {
        let (b, p) = (s.as_bytes(), prefix.as_bytes());
        if b.len() < p.len() {
            return s;
        }
        let mut i = 0;
        while i < p.len() {
            if b[i] != p[i] {
                return s;
            }
            i += 1;
        }
        s.split_at(p.len()).1
    }
    strip(strip(path, "kernel::"), "ktests::")
}

impl KTest {
    pub const fn new(name: &'static str, c: KTestConfig, func: fn()) -> Self {
        KTest {
            name: RawStr::new(short_name(name)),
            cpu: RawStr::new(c.cpu),
            append: RawStr::new(c.append),
            cpus: c.cpus,
            mem_mb: c.mem_mb,
            timeout_s: c.timeout_s,
            flags: if c.fresh { FLAG_FRESH } else { 0 } | if c.el2 { FLAG_EL2 } else { 0 },
            func,
        }
    }
}

/// Registers an in-kernel test.
///
/// ```ignore
/// ktest!(fn frames_roundtrip() { assert_eq!(1 + 1, 2); });
/// ktest!(#[config(cpu = "cortex-a72", cpus = 2)] fn no_range_ops() { ... });
/// ```
#[macro_export]
macro_rules! ktest {
    ($(#[config($($k:ident = $v:expr),* $(,)?)])? fn $name:ident() $body:block) => {
        fn $name() $body
        const _: () = {
            #[used]
            #[link_section = ".ktests"]
            static DESC: $crate::test::KTest = $crate::test::KTest::new(
                concat!(module_path!(), "::", stringify!($name)),
                $crate::test::KTestConfig { $($($k: $v,)*)? ..$crate::test::KTestConfig::DEFAULT },
                $name,
            );
        };
    };
}

#[allow(improper_ctypes)]
extern "C" {
    static __ktests_start: KTest;
    static __ktests_end: KTest;
}

/// Every registered test, in section order.
pub fn all() -> &'static [KTest] {
    // SAFETY: the linker script places exactly the `.ktests` records between
    // these symbols; each record is a `KTest` written by `ktest!`.
    unsafe {
        let start = &raw const __ktests_start;
        let end = &raw const __ktests_end;
        let n = (end as usize - start as usize) / core::mem::size_of::<KTest>();
        core::slice::from_raw_parts(start, n)
    }
}
