//! Simulated physical memory holding a reduced page-table format.
//!
//! A frame is free, a page-table page of some mm at some level, or a data page
//! of some mm. Every frame holds `fanout` 64-bit words: a table page's are
//! the architecture's descriptors, written by the kernel's own page-table
//! code (`kernel::mm::pagetable`, generic over the format) through
//! [`crate::bridge::ModelMem`]; a data page's first word stands for its
//! contents (a copy-on-write copy copies it). Freeing a frame keeps its
//! contents, so a walk that still reaches a freed (or reused) table page
//! reads whatever is there, as hardware would.
//!
//! A swap area of a few slots ([`Memory::set_swap`]) holds the contents
//! word of pages reclaim wrote out, with the kernel's reference counts.
//!
//! Levels count from the root (0) to the leaf level (`levels - 1`), whose
//! descriptors map 4 KiB pages; the kernel numbers the same levels
//! `4 - levels ..= 3` ([`Format::kernel_level`]). A valid descriptor above
//! the leaf level with bit 1 clear is a block ([`Desc::Block`]): it maps the
//! whole region the level covers to as many consecutive frames (the kernel
//! writes them at its level 2; the model reads them at any level but the
//! architecture's level 0, where the encoding is invalid with 4 KiB pages).
//! A virtual page number (`vpn`, VA `vpn << 12`) is split into one
//! `fanout`-ary digit per level, root first.
#![forbid(unsafe_code)]

use core::hash::{Hash, Hasher};

use kernel::mm::pagetable::{block_desc, desc_pa, is_block, is_table, page_desc, table_desc, Reduced};
use kernel::mm::pte::{user_attrs, VALID};

/// Physical frame number.
pub type Pfn = u16;

/// Ghost identity of an address space, never reused within one model run
/// (hardware does not know it; the checker uses it to say whose entry is whose).
pub type MmTag = u16;

/// A descriptor in a table page, as a walk at its level reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Desc {
    Invalid,
    /// Next-level table (levels `0..levels-1`).
    Table(Pfn),
    /// A 4 KiB page (leaf level only).
    Page(Pfn),
    /// A block (levels above the leaf): the region's pages map to the
    /// consecutive frames from this one.
    Block(Pfn),
}

/// The frame a physical address names.
pub fn pfn_of(pa: u64) -> Pfn {
    (pa >> 12) as Pfn
}

/// The physical address of a frame.
pub fn pa_of(pfn: Pfn) -> u64 {
    (pfn as u64) << 12
}

/// What a frame is used for right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameUse {
    Free,
    Table { mm: MmTag, level: u8 },
    Data { mm: MmTag },
}

// One word each: the checker hashes every state it reaches.
impl Hash for Desc {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(match *self {
            Desc::Invalid => 0,
            Desc::Table(p) => 1 << 32 | p as u64,
            Desc::Page(p) => 2 << 32 | p as u64,
            Desc::Block(p) => 3 << 32 | p as u64,
        })
    }
}

impl Hash for FrameUse {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(match *self {
            FrameUse::Free => 0,
            FrameUse::Table { mm, level } => 1 << 40 | (level as u64) << 32 | mm as u64,
            FrameUse::Data { mm } => 2 << 40 | mm as u64,
        })
    }
}

/// The page-table geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Format {
    /// Number of levels, 1..=4.
    pub levels: u8,
    /// Descriptors per table page, a power of two.
    pub fanout: u16,
}

impl Format {
    fn digit_bits(&self) -> u32 {
        self.fanout.trailing_zeros()
    }

    /// The same geometry as the kernel's page-table code knows it.
    pub fn reduced(&self) -> Reduced {
        Reduced { levels: self.levels as u32, bits: self.digit_bits() }
    }

    /// The kernel's number for model level `level` (the leaf is level 3).
    pub fn kernel_level(&self, level: u8) -> u32 {
        (level + 4 - self.levels) as u32
    }

    /// The model's number for kernel level `level`.
    pub fn model_level(&self, level: u32) -> u8 {
        (level + self.levels as u32 - 4) as u8
    }

    /// Pages of virtual address space.
    pub fn pages(&self) -> u64 {
        1 << (self.digit_bits() * self.levels as u32)
    }

    /// Index into the level-`level` table for `vpn`.
    pub fn index(&self, vpn: u64, level: u8) -> usize {
        let shift = self.digit_bits() * (self.levels - 1 - level) as u32;
        ((vpn >> shift) & (self.fanout as u64 - 1)) as usize
    }

    /// Pages covered by one descriptor at `level`.
    pub fn span(&self, level: u8) -> u64 {
        1 << (self.digit_bits() * (self.levels - 1 - level) as u32)
    }

    /// First page of the region a level-`level` descriptor for `vpn` covers.
    pub fn region(&self, vpn: u64, level: u8) -> u64 {
        vpn & !(self.span(level) - 1)
    }
}

/// Simulated physical memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Memory {
    format: Format,
    uses: Vec<FrameUse>,
    /// References to each frame (the kernel's `PhysMem` counts).
    refs: Vec<u8>,
    words: Vec<u64>,
    /// Swap slots: references, and the contents word once written.
    swap: Vec<(u8, Option<u64>)>,
}

impl Memory {
    pub fn new(format: Format, frames: usize) -> Self {
        assert!((1..=4).contains(&format.levels) && format.fanout.is_power_of_two());
        assert!(frames <= Pfn::MAX as usize);
        Self {
            format,
            uses: vec![FrameUse::Free; frames],
            refs: vec![0; frames],
            words: vec![0; frames * format.fanout as usize],
            swap: Vec::new(),
        }
    }

    /// Gives the memory a swap area of `slots` slots, all free.
    pub fn set_swap(&mut self, slots: usize) {
        self.swap = vec![(0, None); slots];
    }

    /// The lowest free swap slot, one reference, nothing written yet.
    pub fn swap_alloc(&mut self) -> Option<u64> {
        let slot = self.swap.iter().position(|s| s.0 == 0)?;
        self.swap[slot] = (1, None);
        Some(slot as u64)
    }

    /// Writes `pfn`'s contents to `slot`.
    pub fn swap_write(&mut self, slot: u64, pfn: Pfn) {
        let w = self.words(pfn)[0];
        let s = &mut self.swap[slot as usize];
        assert!(s.0 > 0, "write of free swap slot {slot}");
        s.1 = Some(w);
    }

    /// The contents of `slot`, once written.
    pub fn swap_read(&self, slot: u64) -> Option<u64> {
        let s = self.swap[slot as usize];
        assert!(s.0 > 0, "read of free swap slot {slot}");
        s.1
    }

    /// References to `slot` (0: free).
    pub fn swap_refs(&self, slot: u64) -> u8 {
        self.swap[slot as usize].0
    }

    /// One more reference to `slot`, or (`up` false) one less: the last
    /// frees it.
    pub fn swap_ref(&mut self, slot: u64, up: bool) {
        let s = &mut self.swap[slot as usize];
        assert!(s.0 > 0, "reference to free swap slot {slot}");
        if up {
            s.0 += 1;
        } else {
            s.0 -= 1;
            if s.0 == 0 {
                s.1 = None;
            }
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn use_of(&self, pfn: Pfn) -> FrameUse {
        self.uses[pfn as usize]
    }

    /// Frames in all.
    pub fn frames(&self) -> usize {
        self.uses.len()
    }

    pub fn free_frames(&self) -> usize {
        self.uses.iter().filter(|u| **u == FrameUse::Free).count()
    }

    /// Take the lowest free frame (so freed frames are reused at once, the
    /// worst case for stale translations), zeroed, one reference.
    pub fn alloc(&mut self, use_: FrameUse) -> Option<Pfn> {
        assert!(use_ != FrameUse::Free);
        let pfn = self.uses.iter().position(|u| *u == FrameUse::Free)?;
        self.uses[pfn] = use_;
        self.refs[pfn] = 1;
        self.words_mut(pfn as Pfn).fill(0);
        Some(pfn as Pfn)
    }

    /// Free a frame; its contents stay as they were.
    pub fn free(&mut self, pfn: Pfn) {
        assert!(self.uses[pfn as usize] != FrameUse::Free, "double free of frame {pfn}");
        self.uses[pfn as usize] = FrameUse::Free;
        self.refs[pfn as usize] = 0;
    }

    pub fn refs(&self, pfn: Pfn) -> u8 {
        self.refs[pfn as usize]
    }

    pub fn set_refs(&mut self, pfn: Pfn, n: u8) {
        self.refs[pfn as usize] = n;
    }

    /// The words of a frame.
    pub fn words(&self, pfn: Pfn) -> &[u64] {
        let n = self.format.fanout as usize;
        &self.words[pfn as usize * n..][..n]
    }

    pub fn words_mut(&mut self, pfn: Pfn) -> &mut [u64] {
        let n = self.format.fanout as usize;
        &mut self.words[pfn as usize * n..][..n]
    }

    /// The descriptors of a frame read as a table page at `level` (whatever
    /// the frame is now: a walk through a reused page reads its contents).
    /// At the leaf level a valid descriptor with bit 1 clear is a reserved
    /// encoding the hardware treats as invalid; above it, a block (none at
    /// the architecture's level 0).
    pub fn table_at(&self, pfn: Pfn, level: u8) -> Vec<Desc> {
        let leaf = level + 1 == self.format.levels;
        let blocks = self.format.kernel_level(level) > 0;
        self.words(pfn).iter().map(|&w| self.decode(w, leaf, blocks)).collect()
    }

    fn decode(&self, w: u64, leaf: bool, blocks: bool) -> Desc {
        let pfn = pfn_of(desc_pa(w));
        match w & VALID {
            0 => Desc::Invalid,
            _ if is_table(w) && leaf => Desc::Page(pfn),
            _ if is_table(w) => Desc::Table(pfn),
            _ if is_block(w) && !leaf && blocks => Desc::Block(pfn),
            _ => Desc::Invalid,
        }
    }

    /// The walk of `vpn` from `root` down to its leaf, through a block if it
    /// meets one: the frame `vpn` maps to, the raw descriptor word of the
    /// leaf (page or block), and the leaf's level.
    pub fn lookup(&self, root: Pfn, vpn: u64) -> Option<(Pfn, u64, u8)> {
        let f = self.format;
        let mut table = root;
        for level in 0..f.levels {
            let i = f.index(vpn, level);
            let w = self.words(table)[i];
            match self.table_at(table, level)[i] {
                Desc::Table(next) => table = next,
                Desc::Page(p) => return Some((p, w, level)),
                Desc::Block(p) => return Some((p + (vpn - f.region(vpn, level)) as Pfn, w, level)),
                Desc::Invalid => return None,
            }
        }
        None
    }

    /// Take the lowest run of `2^order` free frames aligned to its size
    /// (for a block or a contiguous run), each zeroed, one reference.
    pub fn alloc_contig(&mut self, order: u32, use_: FrameUse) -> Option<Pfn> {
        assert!(use_ != FrameUse::Free);
        let n = 1usize << order;
        let first = (0..self.uses.len() / n)
            .map(|i| i * n)
            .find(|&p| self.uses[p..p + n].iter().all(|u| *u == FrameUse::Free))?;
        for p in first..first + n {
            self.uses[p] = use_;
            self.refs[p] = 1;
            self.words_mut(p as Pfn).fill(0);
        }
        Some(first as Pfn)
    }

    /// The descriptors of a table page, at the level its use says.
    pub fn table(&self, pfn: Pfn) -> Vec<Desc> {
        let level = match self.use_of(pfn) {
            FrameUse::Table { level, .. } => level,
            _ => 0,
        };
        self.table_at(pfn, level)
    }

    /// Writes a descriptor (a page is mapped read-write).
    pub fn set_desc(&mut self, table: Pfn, index: usize, desc: Desc) {
        self.words_mut(table)[index] = match desc {
            Desc::Invalid => 0,
            Desc::Table(p) => table_desc(pa_of(p)),
            Desc::Page(p) => page_desc(pa_of(p), user_attrs(abi::prot::READ | abi::prot::WRITE)),
            Desc::Block(p) => block_desc(pa_of(p), user_attrs(abi::prot::READ | abi::prot::WRITE)),
        };
    }

    /// A new, empty root table for `mm`.
    pub fn new_root(&mut self, mm: MmTag) -> Option<Pfn> {
        self.alloc(FrameUse::Table { mm, level: 0 })
    }

    /// Map `vpn` in `mm`'s tables to a new data frame, creating missing tables.
    /// Returns the data frame, or `None` when memory is exhausted.
    pub fn map(&mut self, mm: MmTag, root: Pfn, vpn: u64) -> Option<Pfn> {
        let leaf = self.format.levels - 1;
        let mut table = root;
        for level in 0..leaf {
            let i = self.format.index(vpn, level);
            table = match self.table_at(table, level)[i] {
                Desc::Table(next) => next,
                _ => {
                    let next = self.alloc(FrameUse::Table { mm, level: level + 1 })?;
                    self.set_desc(table, i, Desc::Table(next));
                    next
                }
            };
        }
        let data = self.alloc(FrameUse::Data { mm })?;
        self.set_desc(table, self.format.index(vpn, leaf), Desc::Page(data));
        Some(data)
    }

    /// The leaf table holding `vpn`'s descriptor, if the walk gets there.
    pub fn leaf_table(&self, root: Pfn, vpn: u64) -> Option<Pfn> {
        let mut table = root;
        for level in 0..self.format.levels - 1 {
            match self.table_at(table, level)[self.format.index(vpn, level)] {
                Desc::Table(next) => table = next,
                _ => return None,
            }
        }
        Some(table)
    }

    /// The descriptor a walk from `root` reads at `level` for `vpn`, if the
    /// walk gets that far.
    pub fn desc_at(&self, root: Pfn, level: u8, vpn: u64) -> Option<Desc> {
        let mut table = root;
        for l in 0..level {
            match self.table_at(table, l)[self.format.index(vpn, l)] {
                Desc::Table(next) => table = next,
                _ => return None,
            }
        }
        Some(self.table_at(table, level)[self.format.index(vpn, level)])
    }

    /// The current translation of `vpn` (no TLB involved), through a block
    /// if one maps it.
    pub fn translate(&self, root: Pfn, vpn: u64) -> Option<Pfn> {
        self.lookup(root, vpn).map(|l| l.0)
    }

    /// Clear `vpn`'s leaf descriptor; returns the frame it mapped. The frame
    /// is not freed: that is the caller's business, after the flush.
    pub fn unmap(&mut self, root: Pfn, vpn: u64) -> Option<Pfn> {
        let table = self.leaf_table(root, vpn)?;
        let i = self.format.index(vpn, self.format.levels - 1);
        match self.table_at(table, self.format.levels - 1)[i] {
            Desc::Page(p) => {
                self.set_desc(table, i, Desc::Invalid);
                Some(p)
            }
            _ => None,
        }
    }

    /// Every frame reachable from `root` (tables and data), root included.
    pub fn reachable(&self, root: Pfn) -> Vec<Pfn> {
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            let level = match self.use_of(out[i]) {
                FrameUse::Table { level, .. } => level,
                _ => {
                    i += 1;
                    continue;
                }
            };
            for d in self.table_at(out[i], level) {
                match d {
                    Desc::Table(p) if level + 1 < self.format.levels => out.push(p),
                    Desc::Page(p) if level + 1 == self.format.levels => out.push(p),
                    Desc::Block(p) => out.extend((0..self.format.span(level)).map(|i| p + i as Pfn)),
                    _ => {}
                }
            }
            i += 1;
        }
        out
    }

    /// Free every frame of an address space (exit teardown).
    pub fn free_all(&mut self, root: Pfn) {
        for p in self.reachable(root) {
            self.free(p);
        }
    }

    /// A live frame changes hands without being freed: a copy-on-write page
    /// whose last sharer but one let go now belongs to the remaining one.
    pub fn reassign(&mut self, pfn: Pfn, to: FrameUse) {
        let from = self.uses[pfn as usize];
        assert!(from != FrameUse::Free && to != FrameUse::Free, "reassign of frame {pfn}: {from:?} -> {to:?}");
        self.uses[pfn as usize] = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_translate_unmap_free_and_reuse() {
        let f = Format { levels: 3, fanout: 4 };
        assert_eq!((f.pages(), f.span(0), f.span(2)), (64, 16, 1));
        assert_eq!((f.index(27, 0), f.index(27, 1), f.index(27, 2)), (1, 2, 3));
        assert_eq!(f.region(27, 1), 24);
        let mut m = Memory::new(f, 16);
        let root = m.new_root(7).unwrap();
        let d = m.map(7, root, 27).unwrap();
        assert_eq!(m.translate(root, 27), Some(d));
        assert_eq!(m.translate(root, 26), None);
        assert_eq!(m.use_of(d), FrameUse::Data { mm: 7 });
        assert_eq!(m.reachable(root).len(), 4, "root, two tables, one page");
        assert_eq!(m.unmap(root, 27), Some(d));
        assert_eq!(m.translate(root, 27), None);
        m.free(d);
        m.free_all(root);
        assert_eq!(m.free_frames(), 16);
        // The lowest frame is reused first, and a freed table keeps its contents.
        assert_eq!(m.table_at(1, 1)[2], Desc::Table(2), "freed table page lost its contents");
        let again = m.alloc(FrameUse::Data { mm: 8 }).unwrap();
        assert_eq!(again, 0);
    }
}
