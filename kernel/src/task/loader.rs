//! Built-in user programs: ELF images embedded in the kernel at build time
//! (see kernel/build.rs), loaded into a fresh address space on spawn.

use xmas_elf::program::Type;
use xmas_elf::ElfFile;

use crate::arch::cache;
use crate::mm::aspace::AddressSpace;
use crate::mm::gather::{no_flush, Gather};
use crate::mm::phys::KernelMem;
use crate::mm::pte::PAGE_SIZE;
use abi::prot;

/// 16-byte alignment for the embedded ELF images (the ELF parser reads
/// headers in place).
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

include!(concat!(env!("OUT_DIR"), "/programs.rs"));

pub fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    PROGRAMS.iter().find(|(n, _)| *n == name).copied()
}

pub fn names() -> impl Iterator<Item = &'static str> {
    PROGRAMS.iter().map(|(n, _)| *n)
}

#[derive(Debug)]
pub enum LoadError {
    BadElf(&'static str),
    Segment { vaddr: u64, errno: i64 },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::BadElf(why) => write!(f, "not a loadable ELF: {why}"),
            LoadError::Segment { vaddr, errno } => write!(f, "cannot map the segment at {vaddr:#x}: errno {errno}"),
        }
    }
}

/// Maps `elf`'s loadable segments and a stack into `a` (a new address space
/// never loaded on any CPU, so nothing needs flushing); returns the entry.
pub fn load(a: &mut AddressSpace, elf: &[u8]) -> Result<u64, LoadError> {
    let file = ElfFile::new(elf).map_err(LoadError::BadElf)?;
    for ph in file.program_iter() {
        if ph.get_type() != Ok(Type::Load) || ph.mem_size() == 0 {
            continue;
        }
        let (va, memsz, filesz, off) = (ph.virtual_addr(), ph.mem_size(), ph.file_size(), ph.offset());
        if filesz > memsz || off.checked_add(filesz).is_none_or(|e| e as usize > elf.len()) {
            return Err(LoadError::BadElf("segment outside the file"));
        }
        let start = va & !(PAGE_SIZE - 1);
        let end = (va + memsz).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let f = ph.flags();
        let p = if f.is_read() { prot::READ } else { 0 }
            | if f.is_write() { prot::WRITE } else { 0 }
            | if f.is_execute() { prot::EXEC } else { 0 };
        let seg = LoadError::Segment { vaddr: va, errno: 0 };
        let mut g = Gather::new();
        a.mmap(start, end - start, p, abi::map::FIXED, &KernelMem, &mut g, &mut no_flush)
            .map_err(|e| LoadError::Segment { vaddr: va, errno: e.errno() })?;
        g.finish(&KernelMem, no_flush);
        let data = &elf[off as usize..(off + filesz) as usize];
        a.write_bytes(va, data, &KernelMem, &mut no_flush).map_err(|_| seg)?;
        if f.is_execute() {
            for page in (start..end).step_by(PAGE_SIZE as usize) {
                if let Some(desc) = a.translate(page, &KernelMem) {
                    clean_page_to_pou(crate::mm::pagetable::desc_pa(desc));
                }
            }
        }
    }
    let stack = abi::USER_STACK_TOP - abi::USER_STACK_SIZE;
    let mut g = Gather::new();
    a.mmap(stack, abi::USER_STACK_SIZE, prot::READ | prot::WRITE, abi::map::FIXED, &KernelMem, &mut g, &mut no_flush)
        .map_err(|e| LoadError::Segment { vaddr: stack, errno: e.errno() })?;
    g.finish(&KernelMem, no_flush);
    cache::invalidate_icache_all();
    Ok(file.header.pt2.entry_point())
}

/// Cleans one page to the point of unification (`DC CVAU` per line) through
/// its linear-map address, so instruction fetches can see what the loader
/// wrote through the data side.
fn clean_page_to_pou(pa: u64) {
    let va = crate::arch::layout::phys_to_virt(pa & !(PAGE_SIZE - 1));
    // SAFETY: `pa` is an allocated frame, and the linear map covers all RAM.
    unsafe { cache::clean_dcache_to_pou(va, PAGE_SIZE) };
}
