//! A minimal little-endian ELF64 (AArch64 executable) writer for unit tests,
//! so `.ktests` decoding and the Image conversion run through the real
//! `object` parser on files laid out like the kernel's.

/// A section: `nobits` ones (`.bss`) take no file space.
pub struct Section {
    pub name: &'static str,
    pub addr: u64,
    pub data: Vec<u8>,
    pub nobits: bool,
}

/// A `PT_LOAD` segment: `data` is its file contents (`p_filesz`).
pub struct Segment {
    pub vaddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
}

pub struct Elf {
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
}

const EHDR: usize = 64;
const PHDR: usize = 56;
const SHDR: usize = 64;

impl Elf {
    pub fn build(&self) -> Vec<u8> {
        let phoff = EHDR;
        let mut out = vec![0u8; EHDR + PHDR * self.segments.len()];
        let place = |out: &mut Vec<u8>, data: &[u8]| {
            out.resize(out.len().next_multiple_of(8), 0);
            let offset = out.len() as u64;
            out.extend_from_slice(data);
            offset
        };
        // Segment contents and program headers.
        for (i, seg) in self.segments.iter().enumerate() {
            let offset = place(&mut out, &seg.data);
            let ph = &mut out[phoff + i * PHDR..][..PHDR];
            put32(ph, 0, 1); // PT_LOAD
            put32(ph, 4, 7); // RWX
            put64(ph, 8, offset);
            put64(ph, 16, seg.vaddr);
            put64(ph, 24, seg.vaddr);
            put64(ph, 32, seg.data.len() as u64);
            put64(ph, 40, seg.memsz);
            put64(ph, 48, 8);
        }
        // Section contents and the section name table.
        let mut shstrtab = vec![0u8];
        let mut headers = vec![[0u8; SHDR]]; // SHN_UNDEF
        for s in &self.sections {
            let offset = if s.nobits { out.len() as u64 } else { place(&mut out, &s.data) };
            let mut sh = [0u8; SHDR];
            put32(&mut sh, 0, shstrtab.len() as u32);
            put32(&mut sh, 4, if s.nobits { 8 } else { 1 }); // NOBITS / PROGBITS
            put64(&mut sh, 8, 2); // SHF_ALLOC
            put64(&mut sh, 16, s.addr);
            put64(&mut sh, 24, offset);
            put64(&mut sh, 32, s.data.len() as u64);
            put64(&mut sh, 48, 8);
            headers.push(sh);
            shstrtab.extend_from_slice(s.name.as_bytes());
            shstrtab.push(0);
        }
        let mut sh = [0u8; SHDR];
        put32(&mut sh, 0, shstrtab.len() as u32);
        shstrtab.extend_from_slice(b".shstrtab\0");
        let strtab_offset = place(&mut out, &shstrtab);
        put32(&mut sh, 4, 3); // STRTAB
        put64(&mut sh, 24, strtab_offset);
        put64(&mut sh, 32, shstrtab.len() as u64);
        put64(&mut sh, 48, 1);
        headers.push(sh);
        let shoff = place(&mut out, &headers.concat());

        // The ELF header.
        out[..16].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        put16(&mut out, 16, 2); // ET_EXEC
        put16(&mut out, 18, 183); // EM_AARCH64
        put32(&mut out, 20, 1);
        put64(&mut out, 24, self.segments.first().map_or(0, |s| s.vaddr));
        put64(&mut out, 32, if self.segments.is_empty() { 0 } else { phoff as u64 });
        put64(&mut out, 40, shoff);
        put16(&mut out, 52, EHDR as u16);
        put16(&mut out, 54, PHDR as u16);
        put16(&mut out, 56, self.segments.len() as u16);
        put16(&mut out, 58, SHDR as u16);
        put16(&mut out, 60, headers.len() as u16);
        put16(&mut out, 62, (headers.len() - 1) as u16);
        out
    }
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
