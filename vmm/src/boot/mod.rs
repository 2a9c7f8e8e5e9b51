//! Loading a guest image into guest memory and describing how to enter it.
//!
//! Two formats, detected from the image itself:
//! - ELF64 (`EM_X86_64`): segments loaded at their physical addresses, the
//!   BSP entered at `e_entry` in 64-bit mode on an identity map the VMM
//!   builds ([`paging`]), with a Multiboot v1 information structure in RBX.
//! - Multiboot v1 (a header in the first 8 KiB): an ELF32 image, or any image
//!   using the header's a.out-kludge addresses, entered as QEMU's `-kernel`
//!   does: 32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = info.
//!
//! [`regs`] sets a vCPU's registers for that entry.

pub mod elf;
pub mod layout;
pub mod multiboot;
pub mod paging;
pub mod regs;

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use elf::ElfClass;

/// Why an image cannot be booted. All of these are the user's input, so the
/// CLI maps them to its configuration-error exit status.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("not a supported image (expected ELF64 or Multiboot v1)")]
    UnsupportedFormat,
    #[error("image is truncated")]
    Truncated,
    #[error("bad ELF: {0}")]
    BadElf(String),
    #[error("bad multiboot header: {0}")]
    BadMultiboot(String),
    #[error("segment at {addr:#x}..{end:#x} is outside guest memory (RAM ends at {ram_end:#x}, kernels load above {min:#x})", min = layout::BOOT_AREA_END)]
    SegmentOutsideMemory { addr: u64, end: u64, ram_end: u64 },
    #[error("entry point {0:#x} is not inside a loaded segment")]
    EntryOutsideImage(u64),
    #[error("command line is longer than {} bytes", layout::CMDLINE_MAX - 1)]
    CmdlineTooLong,
    #[error("writing guest memory: {0}")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// The CPU mode the BSP starts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryMode {
    /// 64-bit mode with the VMM's identity map.
    Long,
    /// 32-bit protected mode, paging off (Multiboot v1).
    Protected,
}

/// The image's format, as detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Elf64,
    Multiboot,
}

/// How to start the BSP once the image is in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootEntry {
    pub format: ImageFormat,
    pub mode: EntryMode,
    pub entry: u64,
    /// Guest physical address of the Multiboot information (RBX / EBX).
    pub mbi: u64,
}

/// A contiguous range of guest physical memory an image occupies.
#[derive(Clone, Copy, Debug)]
struct Extent {
    start: u64,
    file: Option<(u64, u64)>,
    memsz: u64,
}

/// Loads `image` into `mem` and writes the boot structures (GDT, page tables
/// for ELF64, multiboot information with `cmdline`).
pub fn load(mem: &GuestMemoryMmap, image: &[u8], cmdline: &str) -> Result<BootEntry, BootError> {
    if cmdline.len() >= layout::CMDLINE_MAX {
        return Err(BootError::CmdlineTooLong);
    }
    let (format, mode, entry, extents) = if elf::is_elf(image) {
        let parsed = elf::parse(image)?;
        match parsed.class {
            ElfClass::Elf64 => (
                ImageFormat::Elf64,
                EntryMode::Long,
                parsed.entry,
                elf_extents(&parsed),
            ),
            ElfClass::Elf32 => {
                // An ELF32 is only bootable as a multiboot kernel.
                let header = multiboot::find_header(image)?.ok_or(BootError::UnsupportedFormat)?;
                match header.aout_kludge {
                    Some(k) => (
                        ImageFormat::Multiboot,
                        EntryMode::Protected,
                        k.entry,
                        kludge_extents(&k)?,
                    ),
                    None => (
                        ImageFormat::Multiboot,
                        EntryMode::Protected,
                        parsed.entry,
                        elf_extents(&parsed),
                    ),
                }
            }
        }
    } else {
        let header = multiboot::find_header(image)?.ok_or(BootError::UnsupportedFormat)?;
        let k = header.aout_kludge.ok_or_else(|| {
            BootError::BadMultiboot("not ELF and no a.out-kludge addresses".into())
        })?;
        (
            ImageFormat::Multiboot,
            EntryMode::Protected,
            k.entry,
            kludge_extents(&k)?,
        )
    };

    let ram_end = mem.last_addr().raw_value() + 1;
    for e in &extents {
        let end = e
            .start
            .checked_add(e.memsz)
            .ok_or(BootError::SegmentOutsideMemory {
                addr: e.start,
                end: u64::MAX,
                ram_end,
            })?;
        if e.start < layout::BOOT_AREA_END || end > ram_end {
            return Err(BootError::SegmentOutsideMemory {
                addr: e.start,
                end,
                ram_end,
            });
        }
    }
    if !extents
        .iter()
        .any(|e| entry >= e.start && entry < e.start + e.memsz)
    {
        return Err(BootError::EntryOutsideImage(entry));
    }
    for e in &extents {
        let mut copied = 0u64;
        if let Some((offset, len)) = e.file {
            // Both bounds were checked against the image by the parsers.
            let src = usize::try_from(offset)
                .ok()
                .zip(usize::try_from(offset + len).ok())
                .and_then(|(a, b)| image.get(a..b))
                .ok_or(BootError::Truncated)?;
            mem.write_slice(src, GuestAddress(e.start))?;
            copied = len;
        }
        zero(mem, e.start + copied, e.memsz - copied)?;
    }

    write_gdt(mem)?;
    if mode == EntryMode::Long {
        paging::write_identity_map(mem)?;
    }
    multiboot::write_info(mem, ram_end, cmdline)?;
    Ok(BootEntry {
        format,
        mode,
        entry,
        mbi: layout::MBI_ADDR,
    })
}

fn elf_extents(parsed: &elf::ElfImage) -> Vec<Extent> {
    parsed
        .segments
        .iter()
        .map(|s| Extent {
            start: s.paddr,
            file: Some((s.offset, s.filesz)),
            memsz: s.memsz,
        })
        .collect()
}

fn kludge_extents(k: &multiboot::AoutKludge) -> Result<Vec<Extent>, BootError> {
    Ok(vec![Extent {
        start: k.load_addr,
        file: Some((k.file_offset, k.load_len)),
        memsz: k.mem_len,
    }])
}

fn zero(mem: &GuestMemoryMmap, mut addr: u64, mut len: u64) -> Result<(), BootError> {
    const CHUNK: [u8; 4096] = [0; 4096];
    while len > 0 {
        let n = len.min(CHUNK.len() as u64);
        mem.write_slice(&CHUNK[..n as usize], GuestAddress(addr))?;
        addr += n;
        len -= n;
    }
    Ok(())
}

fn write_gdt(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    for (i, d) in layout::GDT.iter().enumerate() {
        mem.write_obj(*d, GuestAddress(layout::GDT_ADDR + 8 * i as u64))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) fn test_memory(mib: u64) -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), (mib << 20) as usize)]).expect("test memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use elf::tests::build;

    #[test]
    fn elf64_loads_and_enters_long_mode() {
        let mem = test_memory(4);
        let img = build(ElfClass::Elf64, 0x10_0000, 0x10_0004, &[0xAA; 8], 0x20);
        let entry = load(&mem, &img, "code=3").unwrap();
        assert_eq!(entry.mode, EntryMode::Long);
        assert_eq!(entry.format, ImageFormat::Elf64);
        assert_eq!(entry.entry, 0x10_0004);
        let b: u8 = mem.read_obj(GuestAddress(0x10_0007)).unwrap();
        assert_eq!(b, 0xAA);
        let bss: u8 = mem.read_obj(GuestAddress(0x10_001F)).unwrap();
        assert_eq!(bss, 0);
        let pml4: u64 = mem.read_obj(GuestAddress(layout::PML4_ADDR)).unwrap();
        assert_eq!(pml4 & !0xFFF, layout::PDPT_ADDR);
    }

    #[test]
    fn elf32_without_multiboot_header_is_rejected() {
        let mem = test_memory(4);
        let img = build(ElfClass::Elf32, 0x10_0000, 0x10_0000, &[0; 16], 16);
        assert!(matches!(
            load(&mem, &img, ""),
            Err(BootError::UnsupportedFormat)
        ));
    }

    #[test]
    fn elf32_with_multiboot_header_enters_protected_mode() {
        let mem = test_memory(4);
        let mut payload = vec![0u8; 64];
        payload[..12].copy_from_slice(&multiboot::tests::header(0x3));
        let img = build(ElfClass::Elf32, 0x10_0000, 0x10_0020, &payload, 64);
        let entry = load(&mem, &img, "").unwrap();
        assert_eq!(entry.mode, EntryMode::Protected);
        assert_eq!(entry.format, ImageFormat::Multiboot);
        assert_eq!(entry.entry, 0x10_0020);
    }

    #[test]
    fn segments_outside_memory_are_rejected() {
        let mem = test_memory(2);
        let img = build(ElfClass::Elf64, 0x10_0000, 0x10_0000, &[1; 16], 2 << 20);
        assert!(matches!(
            load(&mem, &img, ""),
            Err(BootError::SegmentOutsideMemory { .. })
        ));
        let low = build(ElfClass::Elf64, 0x2000, 0x2000, &[1; 16], 16);
        assert!(matches!(
            load(&mem, &low, ""),
            Err(BootError::SegmentOutsideMemory { .. })
        ));
        let wrap = build(ElfClass::Elf64, u64::MAX - 4, u64::MAX - 4, &[1; 16], 16);
        assert!(matches!(
            load(&mem, &wrap, ""),
            Err(BootError::SegmentOutsideMemory { .. })
        ));
    }

    #[test]
    fn entry_outside_image_is_rejected() {
        let mem = test_memory(4);
        let img = build(ElfClass::Elf64, 0x10_0000, 0x20_0000, &[1; 16], 16);
        assert!(matches!(
            load(&mem, &img, ""),
            Err(BootError::EntryOutsideImage(0x20_0000))
        ));
    }

    #[test]
    fn empty_and_random_images_are_unsupported() {
        let mem = test_memory(4);
        assert!(matches!(
            load(&mem, &[], ""),
            Err(BootError::UnsupportedFormat)
        ));
        assert!(matches!(
            load(&mem, &[0x5A; 9000], ""),
            Err(BootError::UnsupportedFormat)
        ));
    }

    #[test]
    fn overlong_cmdline_is_rejected() {
        let mem = test_memory(4);
        let img = build(ElfClass::Elf64, 0x10_0000, 0x10_0000, &[1; 16], 16);
        let long = "x".repeat(layout::CMDLINE_MAX);
        assert!(matches!(
            load(&mem, &img, &long),
            Err(BootError::CmdlineTooLong)
        ));
    }
}
