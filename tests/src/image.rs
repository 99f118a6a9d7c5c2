//! Kernel ELF → raw arm64 `Image` (what QEMU's `-kernel` boots with the Linux
//! boot protocol: entered at the first byte with x0 = the device tree).
//!
//! The `PT_LOAD` segments' file bytes are laid out at `p_vaddr - lowest
//! p_vaddr`, gaps zero-filled; `.bss` (memsz beyond filesz) is left out, so
//! the file ends with the last initialised byte. The kernel's linker script
//! puts the 64-byte Linux Image header at the lowest address.

use std::path::Path;

use object::{Object, ObjectSegment};

/// Offset of the Image header's magic, `ARM\x64`.
pub const MAGIC_OFFSET: usize = 0x38;
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// Offset of the header's `image_size` (effective size including `.bss`).
const IMAGE_SIZE_OFFSET: usize = 16;

/// One loadable segment: its address, file bytes (`p_filesz`) and `p_memsz`.
#[derive(Clone, Copy, Debug)]
pub struct Load<'a> {
    pub vaddr: u64,
    pub data: &'a [u8],
    pub memsz: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot read {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: std::path::PathBuf, source: std::io::Error },
    #[error("cannot parse the kernel ELF: {0}")]
    Elf(#[from] object::Error),
    #[error("the kernel ELF has no PT_LOAD segment with file contents")]
    Empty,
    #[error("PT_LOAD segments at {first:#x} and {second:#x} overlap")]
    Overlap { first: u64, second: u64 },
    #[error("the image would be {span:#x} bytes long; are the segments' addresses sane?")]
    TooLarge { span: u64 },
    #[error(
        "no arm64 Image header: expected magic \"ARM\\x64\" at offset {MAGIC_OFFSET:#x} of the lowest segment; \
         the linker script must place the Linux Image header first"
    )]
    NoHeader,
    #[error("the Image header says image_size = {header:#x}, but the segments span {span:#x} bytes (with .bss)")]
    SizeMismatch { header: u64, span: u64 },
}

/// Largest image accepted: a guard against a stray segment at a far address
/// turning into a multi-gigabyte file of zeros.
pub const MAX_IMAGE: u64 = 256 << 20;

/// Lays out `loads` as a flat binary starting at the lowest address.
pub fn flatten(loads: &[Load<'_>]) -> Result<Vec<u8>, ImageError> {
    let mut loads: Vec<_> = loads.iter().filter(|l| !l.data.is_empty()).copied().collect();
    loads.sort_by_key(|l| l.vaddr);
    let base = loads.first().ok_or(ImageError::Empty)?.vaddr;
    let mut out = Vec::new();
    let mut previous = None;
    for load in &loads {
        let offset = load.vaddr - base;
        let end = offset.checked_add(load.data.len() as u64).filter(|&e| e <= MAX_IMAGE);
        let end = end.ok_or(ImageError::TooLarge { span: offset.saturating_add(load.data.len() as u64) })?;
        if offset < out.len() as u64 {
            let first = previous.unwrap_or(base);
            return Err(ImageError::Overlap { first, second: load.vaddr });
        }
        out.resize(offset as usize, 0);
        out.extend_from_slice(load.data);
        debug_assert_eq!(out.len() as u64, end);
        previous = Some(load.vaddr);
    }
    Ok(out)
}

/// Checks the Image header at the start of `image` against the segments.
pub fn check_header(image: &[u8], loads: &[Load<'_>]) -> Result<(), ImageError> {
    if image.get(MAGIC_OFFSET..MAGIC_OFFSET + 4) != Some(&MAGIC[..]) {
        return Err(ImageError::NoHeader);
    }
    let header = u64::from_le_bytes(image[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].try_into().expect("8 bytes"));
    let base = loads.iter().map(|l| l.vaddr).min().unwrap_or(0);
    let span = loads.iter().map(|l| l.vaddr - base + l.memsz.max(l.data.len() as u64)).max().unwrap_or(0);
    // 0 means "unknown" in old headers; otherwise the loader relies on it to
    // keep the device tree out of .bss.
    if header != 0 && header < span {
        return Err(ImageError::SizeMismatch { header, span });
    }
    Ok(())
}

/// Converts ELF bytes to a checked raw Image.
pub fn from_elf(elf: &[u8]) -> Result<Vec<u8>, ImageError> {
    let file = object::File::parse(elf)?;
    let mut loads = Vec::new();
    for segment in file.segments() {
        // `object` yields only PT_LOAD segments for ELF.
        let memsz = segment.size();
        loads.push(Load { vaddr: segment.address(), data: segment.data()?, memsz });
    }
    let image = flatten(&loads)?;
    check_header(&image, &loads)?;
    Ok(image)
}

/// Reads the ELF at `elf` and writes the Image to `image`.
pub fn convert(elf: &Path, image: &Path) -> Result<(), ImageError> {
    let bytes = std::fs::read(elf).map_err(|source| ImageError::Read { path: elf.into(), source })?;
    let out = from_elf(&bytes)?;
    std::fs::write(image, out).map_err(|source| ImageError::Write { path: image.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testelf::{Elf, Segment};

    fn header(image_size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +0x40
        h[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&image_size.to_le_bytes());
        h[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&MAGIC);
        h
    }

    #[test]
    fn gaps_are_zero_filled_and_bss_omitted() {
        let text = [1u8, 2, 3, 4];
        let data = [9u8, 9];
        let loads = [
            Load { vaddr: 0x4008_0010, data: &data, memsz: 0x1000 }, // trailing .bss
            Load { vaddr: 0x4008_0000, data: &text, memsz: 4 },
            Load { vaddr: 0x4009_0000, data: &[], memsz: 0x10_0000 }, // pure .bss segment
        ];
        let image = flatten(&loads).unwrap();
        let mut expected = vec![1, 2, 3, 4];
        expected.resize(0x10, 0);
        expected.extend([9, 9]);
        assert_eq!(image, expected);
    }

    #[test]
    fn rejects_overlap_empty_and_huge() {
        let a = [0u8; 16];
        let overlapping = [Load { vaddr: 0x1000, data: &a, memsz: 16 }, Load { vaddr: 0x1008, data: &a, memsz: 16 }];
        assert!(matches!(flatten(&overlapping), Err(ImageError::Overlap { first: 0x1000, second: 0x1008 })));
        assert!(matches!(flatten(&[]), Err(ImageError::Empty)));
        let far = [Load { vaddr: 0x1000, data: &a, memsz: 16 }, Load { vaddr: 0xffff_0000_0000, data: &a, memsz: 16 }];
        assert!(matches!(flatten(&far), Err(ImageError::TooLarge { .. })));
    }

    #[test]
    fn header_checks() {
        let h = header(0x2000);
        let loads = [Load { vaddr: 0x4008_0000, data: &h, memsz: 0x2000 }];
        check_header(&h, &loads).unwrap();
        let small = [Load { vaddr: 0x4008_0000, data: &h, memsz: 0x3000 }];
        assert!(matches!(check_header(&h, &small), Err(ImageError::SizeMismatch { header: 0x2000, span: 0x3000 })));
        check_header(&header(0), &small).unwrap();
        assert!(matches!(check_header(&[0u8; 64], &loads), Err(ImageError::NoHeader)));
        assert!(matches!(check_header(&[], &loads), Err(ImageError::NoHeader)));
    }

    #[test]
    fn converts_an_elf() {
        let mut text = header(0x3000);
        text.extend([0xaa; 8]);
        let elf = Elf {
            sections: vec![],
            segments: vec![
                Segment { vaddr: 0x4008_0000, data: text.clone(), memsz: text.len() as u64 },
                Segment { vaddr: 0x4008_1000, data: vec![0xbb; 4], memsz: 0x2000 },
            ],
        }
        .build();
        let image = from_elf(&elf).unwrap();
        assert_eq!(image.len(), 0x1004);
        assert_eq!(&image[..text.len()], &text[..]);
        assert!(image[text.len()..0x1000].iter().all(|&b| b == 0));
        assert_eq!(&image[0x1000..], &[0xbb; 4]);
    }
}
