//! The list of in-kernel tests, read from the kernel ELF's `.ktests` section
//! without running anything.
//!
//! Each record is 72 bytes, little-endian, 8-byte aligned, back to back:
//!
//! | offset | field                     | meaning                                   |
//! |-------:|---------------------------|-------------------------------------------|
//! | 0, 8   | name_ptr, name_len (u64)  | UTF-8 test name, e.g. `boot::frames_roundtrip` |
//! | 16, 24 | cpu_ptr, cpu_len (u64)    | QEMU `-cpu` model                         |
//! | 32, 40 | append_ptr, append_len    | extra kernel command line (may be empty)  |
//! | 48     | cpus (u32)                | QEMU `-smp`                               |
//! | 52     | mem_mb (u32)              | QEMU `-m`                                 |
//! | 56     | timeout_s (u32)           | per-test time limit                       |
//! | 60     | flags (u32)               | bit 0 FRESH, bit 1 EL2                    |
//! | 64     | func_ptr (u64)            | ignored by the host                       |
//!
//! Pointers are virtual addresses; they are resolved through the section
//! whose address range holds them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection};

/// Size of one record in bytes.
pub use abi::ktest::RECORD_SIZE;
/// Name of the ELF section holding the records (`abi::ktest`).
pub use abi::ktest::SECTION;

/// A record's `flags` word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u32);

impl Flags {
    /// The test needs a QEMU boot of its own.
    pub const FRESH: u32 = abi::ktest::FLAG_FRESH;
    /// Boot at EL2 (`-M virt,virtualization=on`).
    pub const EL2: u32 = abi::ktest::FLAG_EL2;

    pub fn fresh(self) -> bool {
        self.0 & Self::FRESH != 0
    }

    pub fn el2(self) -> bool {
        self.0 & Self::EL2 != 0
    }

    /// The flags that decide which boot a test can share.
    pub fn without_fresh(self) -> Flags {
        Flags(self.0 & !Self::FRESH)
    }
}

/// One in-kernel test and the machine it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KTest {
    /// Position in the section (the kernel runs selected tests in this order).
    pub index: usize,
    /// Virtual address of the record.
    pub record_va: u64,
    pub name: String,
    pub cpu: String,
    pub append: String,
    pub cpus: u32,
    pub mem_mb: u32,
    pub timeout_s: u32,
    pub flags: Flags,
}

/// All tests of one kernel image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KTestList {
    /// Start address of `.ktests` (0 when the section is missing).
    pub section_va: u64,
    pub tests: Vec<KTest>,
}

impl KTestList {
    pub fn get(&self, name: &str) -> Option<&KTest> {
        self.tests.iter().find(|t| t.name == name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KTestsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse the kernel ELF: {0}")]
    Elf(#[from] object::Error),
    #[error("`.ktests` is {size} bytes, not a whole number of {RECORD_SIZE}-byte records")]
    Size { size: usize },
    #[error("`.ktests` record {index}: {field} at {va:#x}+{len} is not in any section with file contents")]
    Unresolved { index: usize, field: &'static str, va: u64, len: u64 },
    #[error("`.ktests` record {index}: {field} is not UTF-8")]
    Utf8 { index: usize, field: &'static str },
    #[error("`.ktests` record {index}: invalid test name {name:?} (empty, or has ',' or whitespace)")]
    BadName { index: usize, name: String },
    #[error("`.ktests` record {index}: test {name:?} is registered twice")]
    Duplicate { index: usize, name: String },
    #[error("`.ktests` record {index} ({name}): cpus and mem_mb must be non-zero")]
    BadMachine { index: usize, name: String },
}

/// Reads the test list from the kernel ELF at `path`.
pub fn read(path: &Path) -> Result<KTestList, KTestsError> {
    let data = std::fs::read(path).map_err(|source| KTestsError::Read { path: path.into(), source })?;
    from_elf(&data)
}

/// Reads the test list from the bytes of a kernel ELF.
pub fn from_elf(data: &[u8]) -> Result<KTestList, KTestsError> {
    let file = object::File::parse(data)?;
    let Some(section) = file.section_by_name(SECTION) else {
        return Ok(KTestList::default());
    };
    let records = section.data()?;
    let mut memory = Vec::new();
    for s in file.sections() {
        // Sections without file contents (.bss) fail or return nothing here.
        if let Ok(bytes) = s.data() {
            if s.address() != 0 && !bytes.is_empty() {
                memory.push((s.address(), bytes));
            }
        }
    }
    decode(section.address(), records, &Memory(memory))
}

/// The loaded image as (address, bytes) ranges, to resolve record pointers.
pub struct Memory<'a>(pub Vec<(u64, &'a [u8])>);

impl Memory<'_> {
    /// The `len` bytes at `va`, if one range holds all of them.
    pub fn slice(&self, va: u64, len: u64) -> Option<&[u8]> {
        self.0.iter().find_map(|&(start, bytes)| {
            let offset = usize::try_from(va.checked_sub(start)?).ok()?;
            let end = offset.checked_add(usize::try_from(len).ok()?)?;
            bytes.get(offset..end)
        })
    }
}

/// Decodes the `.ktests` bytes starting at `section_va`.
pub fn decode(section_va: u64, records: &[u8], memory: &Memory<'_>) -> Result<KTestList, KTestsError> {
    if !records.len().is_multiple_of(RECORD_SIZE) {
        return Err(KTestsError::Size { size: records.len() });
    }
    let mut names = HashSet::new();
    let mut tests = Vec::new();
    for (index, record) in records.chunks_exact(RECORD_SIZE).enumerate() {
        let u64_at = |at: usize| u64::from_le_bytes(record[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(record[at..at + 4].try_into().expect("4 bytes"));
        let string = |at: usize, field: &'static str| -> Result<String, KTestsError> {
            let (va, len) = (u64_at(at), u64_at(at + 8));
            if len == 0 {
                return Ok(String::new());
            }
            let bytes = memory.slice(va, len).ok_or(KTestsError::Unresolved { index, field, va, len })?;
            String::from_utf8(bytes.to_vec()).map_err(|_| KTestsError::Utf8 { index, field })
        };
        let name = string(abi::ktest::NAME, "name")?;
        if name.is_empty() || name.contains(|c: char| c == ',' || c.is_whitespace()) {
            return Err(KTestsError::BadName { index, name });
        }
        if !names.insert(name.clone()) {
            return Err(KTestsError::Duplicate { index, name });
        }
        let test = KTest {
            index,
            record_va: section_va + (index * RECORD_SIZE) as u64,
            cpu: string(abi::ktest::CPU, "cpu")?,
            append: string(abi::ktest::APPEND, "append")?,
            cpus: u32_at(abi::ktest::CPUS),
            mem_mb: u32_at(abi::ktest::MEM_MB),
            timeout_s: u32_at(abi::ktest::TIMEOUT_S),
            flags: Flags(u32_at(abi::ktest::FLAGS)),
            name,
        };
        if test.cpus == 0 || test.mem_mb == 0 {
            return Err(KTestsError::BadMachine { index, name: test.name });
        }
        tests.push(test);
    }
    Ok(KTestList { section_va, tests })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a record as the kernel's macro would lay it out.
    pub(crate) fn record(strings: [(u64, u64); 3], cpus: u32, mem_mb: u32, timeout_s: u32, flags: u32) -> Vec<u8> {
        let mut r = Vec::with_capacity(RECORD_SIZE);
        for (ptr, len) in strings {
            r.extend_from_slice(&ptr.to_le_bytes());
            r.extend_from_slice(&len.to_le_bytes());
        }
        for word in [cpus, mem_mb, timeout_s, flags] {
            r.extend_from_slice(&word.to_le_bytes());
        }
        r.extend_from_slice(&0xffff_0000_dead_beef_u64.to_le_bytes());
        assert_eq!(r.len(), RECORD_SIZE);
        r
    }

    const RODATA_VA: u64 = 0x4008_1000;
    pub(crate) const RODATA: &[u8] = b"boot::frames_roundtripmaxmm::asidcortex-a72ktest.x=1bad name";

    pub(crate) fn two_records() -> Vec<u8> {
        let at = |offset: u64| RODATA_VA + offset;
        let mut records = record([(at(0), 22), (at(22), 3), (0, 0)], 4, 1024, 30, 0);
        records.extend(record([(at(25), 8), (at(33), 10), (at(43), 9)], 2, 512, 5, Flags::FRESH | Flags::EL2));
        records
    }

    #[test]
    fn decodes_hand_made_records() {
        let memory = Memory(vec![(0x4000_0000, &[0u8; 16][..]), (RODATA_VA, RODATA)]);
        let list = decode(0x4009_0000, &two_records(), &memory).unwrap();
        assert_eq!(list.section_va, 0x4009_0000);
        let [a, b] = &list.tests[..] else { panic!("{list:?}") };
        assert_eq!((a.index, a.record_va), (0, 0x4009_0000));
        assert_eq!((a.name.as_str(), a.cpu.as_str(), a.append.as_str()), ("boot::frames_roundtrip", "max", ""));
        assert_eq!((a.cpus, a.mem_mb, a.timeout_s, a.flags), (4, 1024, 30, Flags(0)));
        assert_eq!((b.index, b.record_va), (1, 0x4009_0000 + 72));
        assert_eq!((b.name.as_str(), b.cpu.as_str(), b.append.as_str()), ("mm::asid", "cortex-a72", "ktest.x=1"));
        assert!(b.flags.fresh() && b.flags.el2());
        assert_eq!(b.flags.without_fresh(), Flags(Flags::EL2));
        assert_eq!(list.get("mm::asid"), Some(b));
    }

    #[test]
    fn rejects_bad_records() {
        let memory = Memory(vec![(RODATA_VA, RODATA)]);
        let records = two_records();
        assert!(matches!(decode(0, &records[..100], &memory), Err(KTestsError::Size { size: 100 })));
        let dangling = record([(RODATA_VA + 50, 22), (RODATA_VA, 3), (0, 0)], 1, 64, 1, 0);
        assert!(matches!(decode(0, &dangling, &memory), Err(KTestsError::Unresolved { field: "name", .. })));
        let mut twice = record([(RODATA_VA, 8), (RODATA_VA, 3), (0, 0)], 1, 64, 1, 0);
        twice.extend(twice.clone());
        assert!(matches!(decode(0, &twice, &memory), Err(KTestsError::Duplicate { index: 1, .. })));
        let no_cpus = record([(RODATA_VA, 8), (RODATA_VA, 3), (0, 0)], 0, 64, 1, 0);
        assert!(matches!(decode(0, &no_cpus, &memory), Err(KTestsError::BadMachine { .. })));
        let spaced = record([(RODATA_VA + 52, 8), (RODATA_VA, 3), (0, 0)], 1, 64, 1, 0);
        assert!(matches!(decode(0, &spaced, &memory), Err(KTestsError::BadName { .. })));
    }

    #[test]
    fn reads_records_from_an_elf() {
        use crate::testelf::{Elf, Section};
        let records = two_records();
        let elf = Elf {
            sections: vec![
                Section { name: ".text", addr: 0x4008_0000, data: vec![0; 64], nobits: false },
                Section { name: ".rodata", addr: RODATA_VA, data: RODATA.to_vec(), nobits: false },
                Section { name: ".ktests", addr: 0x4009_0000, data: records, nobits: false },
                Section { name: ".bss", addr: 0x4009_1000, data: vec![0; 4096], nobits: true },
            ],
            segments: vec![],
        }
        .build();
        let list = from_elf(&elf).unwrap();
        assert_eq!(list.section_va, 0x4009_0000);
        assert_eq!(list.tests.len(), 2);
        assert_eq!(list.tests[1].append, "ktest.x=1");

        let without = Elf {
            sections: vec![Section { name: ".text", addr: 0x1000, data: vec![1], nobits: false }],
            segments: vec![],
        };
        assert_eq!(from_elf(&without.build()).unwrap(), KTestList::default());
    }
}
