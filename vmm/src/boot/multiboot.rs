//! Multiboot v1: finding the header in an image and writing the boot
//! information structure (memory map, command line) the kernel receives.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{layout, BootError};

/// `magic` of a Multiboot v1 header.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// EAX on entry to a Multiboot v1 kernel.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie, 4-byte aligned, within the first 8 KiB.
const SEARCH_LEN: usize = 8192;

/// Header flags: page-align modules, memory information, video mode, and
/// the a.out-kludge address fields.
const FLAG_PAGE_ALIGN: u32 = 1 << 0;
const FLAG_MEMORY_INFO: u32 = 1 << 1;
const FLAG_VIDEO_MODE: u32 = 1 << 2;
const FLAG_AOUT_KLUDGE: u32 = 1 << 16;
/// Bits 0-15 are requirements: a loader must refuse any it does not meet.
/// There is no framebuffer, so the video-mode request is honoured with
/// text mode (as QEMU does).
const SUPPORTED_REQUIRED: u32 = FLAG_PAGE_ALIGN | FLAG_MEMORY_INFO | FLAG_VIDEO_MODE;

/// Info flags the VMM fills: mem_lower/upper, cmdline, mmap, loader name.
const INFO_MEMORY: u32 = 1 << 0;
const INFO_CMDLINE: u32 = 1 << 2;
const INFO_MMAP: u32 = 1 << 6;
const INFO_LOADER_NAME: u32 = 1 << 9;

/// Memory map entry types.
const MMAP_AVAILABLE: u32 = 1;
const MMAP_RESERVED: u32 = 2;

/// Load addresses given by the header itself (flag bit 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AoutKludge {
    /// Offset in the file of the byte loaded at `load_addr`.
    pub file_offset: u64,
    pub load_addr: u64,
    /// Bytes copied from the file.
    pub load_len: u64,
    /// Bytes occupied in memory (copied bytes, then zeroed bss).
    pub mem_len: u64,
    pub entry: u64,
}

/// A Multiboot v1 header found in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub aout_kludge: Option<AoutKludge>,
}

fn u32_at(image: &[u8], off: usize) -> Option<u32> {
    let b = image.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Finds and validates the Multiboot v1 header, if the image has one.
pub fn find_header(image: &[u8]) -> Result<Option<Header>, BootError> {
    let limit = image.len().min(SEARCH_LEN);
    let Some(off) = (0..limit.saturating_sub(11))
        .step_by(4)
        .find(|&o| {
            matches!((u32_at(image, o), u32_at(image, o + 4), u32_at(image, o + 8)),
                (Some(HEADER_MAGIC), Some(f), Some(c)) if HEADER_MAGIC.wrapping_add(f).wrapping_add(c) == 0)
        })
    else {
        return Ok(None);
    };
    let flags = u32_at(image, off + 4).ok_or(BootError::Truncated)?;
    let unsupported = flags & 0xFFFF & !SUPPORTED_REQUIRED;
    if unsupported != 0 {
        return Err(BootError::BadMultiboot(format!(
            "requires unsupported features (flags {unsupported:#x})"
        )));
    }
    let aout_kludge = if flags & FLAG_AOUT_KLUDGE != 0 {
        Some(parse_kludge(image, off)?)
    } else {
        None
    };
    Ok(Some(Header { flags, aout_kludge }))
}

fn parse_kludge(image: &[u8], off: usize) -> Result<AoutKludge, BootError> {
    let field = |i: usize| {
        u32_at(image, off + 12 + 4 * i)
            .map(u64::from)
            .ok_or(BootError::Truncated)
    };
    let (header_addr, load_addr, load_end, bss_end, entry) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    let bad = |what: &str| BootError::BadMultiboot(what.to_string());
    let header_delta = header_addr
        .checked_sub(load_addr)
        .ok_or_else(|| bad("header_addr below load_addr"))?;
    let file_offset = (off as u64)
        .checked_sub(header_delta)
        .ok_or_else(|| bad("load_addr before the file start"))?;
    let file_left = image.len() as u64 - file_offset;
    let load_len = if load_end == 0 {
        file_left
    } else {
        load_end
            .checked_sub(load_addr)
            .ok_or_else(|| bad("load_end_addr below load_addr"))?
    };
    if load_len > file_left {
        return Err(BootError::Truncated);
    }
    let mem_len = if bss_end == 0 {
        load_len
    } else {
        bss_end
            .checked_sub(load_addr)
            .filter(|&m| m >= load_len)
            .ok_or_else(|| bad("bss_end_addr below load_end_addr"))?
    };
    Ok(AoutKludge {
        file_offset,
        load_addr,
        load_len,
        mem_len,
        entry,
    })
}

/// The memory map the guest sees: usable conventional memory, the reserved
/// EBDA/BIOS area, and usable memory from 1 MiB to the end of RAM.
pub fn memory_map(ram_end: u64) -> [(u64, u64, u32); 3] {
    [
        (0, layout::LOW_MEM_END, MMAP_AVAILABLE),
        (
            layout::LOW_MEM_END,
            layout::HIGH_MEM_START - layout::LOW_MEM_END,
            MMAP_RESERVED,
        ),
        (
            layout::HIGH_MEM_START,
            ram_end.saturating_sub(layout::HIGH_MEM_START),
            MMAP_AVAILABLE,
        ),
    ]
}

/// Writes the Multiboot information structure, memory map, loader name and
/// command line at their fixed places in the boot area.
pub fn write_info(mem: &GuestMemoryMmap, ram_end: u64, cmdline: &str) -> Result<(), BootError> {
    let mut cmd = Vec::with_capacity(cmdline.len() + 1);
    cmd.extend_from_slice(cmdline.as_bytes());
    cmd.push(0);
    mem.write_slice(&cmd, GuestAddress(layout::CMDLINE_ADDR))?;
    mem.write_slice(b"vmm\0", GuestAddress(layout::LOADER_NAME_ADDR))?;

    let mut mmap = Vec::new();
    for (base, len, kind) in memory_map(ram_end) {
        // Each entry: size (of the rest, 20), base_addr, length, type.
        mmap.extend_from_slice(&20u32.to_le_bytes());
        mmap.extend_from_slice(&base.to_le_bytes());
        mmap.extend_from_slice(&len.to_le_bytes());
        mmap.extend_from_slice(&kind.to_le_bytes());
    }
    mem.write_slice(&mmap, GuestAddress(layout::MMAP_ADDR))?;

    // The info structure: 32-bit fields at their Multiboot v1 offsets.
    let mut info = [0u32; 22];
    info[0] = INFO_MEMORY | INFO_CMDLINE | INFO_MMAP | INFO_LOADER_NAME;
    info[1] = (layout::LOW_MEM_END / 1024) as u32; // mem_lower, KiB
    info[2] = (ram_end.saturating_sub(layout::HIGH_MEM_START) / 1024) as u32; // mem_upper, KiB
    info[4] = layout::CMDLINE_ADDR as u32; // cmdline
    info[11] = mmap.len() as u32; // mmap_length
    info[12] = layout::MMAP_ADDR as u32; // mmap_addr
    info[16] = layout::LOADER_NAME_ADDR as u32; // boot_loader_name
    let bytes: Vec<u8> = info.iter().flat_map(|w| w.to_le_bytes()).collect();
    mem.write_slice(&bytes, GuestAddress(layout::MBI_ADDR))?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A header with `flags` and a valid checksum.
    pub(crate) fn header(flags: u32) -> [u8; 12] {
        let mut h = [0u8; 12];
        h[..4].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&flags.to_le_bytes());
        h[8..]
            .copy_from_slice(&(0u32.wrapping_sub(HEADER_MAGIC).wrapping_sub(flags)).to_le_bytes());
        h
    }

    #[test]
    fn finds_a_header_only_with_a_valid_checksum() {
        let mut img = vec![0u8; 256];
        img[64..76].copy_from_slice(&header(3));
        assert_eq!(
            find_header(&img).unwrap(),
            Some(Header {
                flags: 3,
                aout_kludge: None
            })
        );
        img[72] ^= 1;
        assert_eq!(find_header(&img).unwrap(), None);
    }

    #[test]
    fn header_beyond_8k_is_not_found() {
        let mut img = vec![0u8; 9000];
        img[8192..8204].copy_from_slice(&header(3));
        assert_eq!(find_header(&img).unwrap(), None);
    }

    #[test]
    fn unsupported_required_flags_are_refused() {
        let mut img = vec![0u8; 64];
        img[..12].copy_from_slice(&header(1 << 3));
        assert!(matches!(find_header(&img), Err(BootError::BadMultiboot(_))));
    }

    #[test]
    fn aout_kludge_addresses_are_checked() {
        let mut img = vec![0u8; 4096];
        img[..12].copy_from_slice(&header(FLAG_AOUT_KLUDGE | 3));
        let fields = [0x10_0000u32, 0x10_0000, 0x10_1000, 0x10_2000, 0x10_0040];
        for (i, f) in fields.iter().enumerate() {
            img[12 + 4 * i..16 + 4 * i].copy_from_slice(&f.to_le_bytes());
        }
        let k = find_header(&img).unwrap().unwrap().aout_kludge.unwrap();
        assert_eq!(
            (k.file_offset, k.load_addr, k.load_len, k.mem_len, k.entry),
            (0, 0x10_0000, 0x1000, 0x2000, 0x10_0040)
        );
        // bss_end below load_end.
        img[24..28].copy_from_slice(&0x10_0800u32.to_le_bytes());
        assert!(find_header(&img).is_err());
        // load_end beyond the file.
        img[24..28].copy_from_slice(&0u32.to_le_bytes());
        img[20..24].copy_from_slice(&0x10_2000u32.to_le_bytes());
        assert!(matches!(find_header(&img), Err(BootError::Truncated)));
    }

    #[test]
    fn info_structure_describes_memory_and_cmdline() {
        let mem = crate::boot::test_memory(64);
        write_info(&mem, 64 << 20, "code=3").unwrap();
        let flags: u32 = mem.read_obj(GuestAddress(layout::MBI_ADDR)).unwrap();
        assert_eq!(
            flags & (INFO_MEMORY | INFO_CMDLINE | INFO_MMAP),
            INFO_MEMORY | INFO_CMDLINE | INFO_MMAP
        );
        let upper: u32 = mem.read_obj(GuestAddress(layout::MBI_ADDR + 8)).unwrap();
        assert_eq!(upper, (63 << 20) / 1024);
        let mut cmd = [0u8; 7];
        mem.read_slice(&mut cmd, GuestAddress(layout::CMDLINE_ADDR))
            .unwrap();
        assert_eq!(&cmd, b"code=3\0");
        let mmap_len: u32 = mem.read_obj(GuestAddress(layout::MBI_ADDR + 44)).unwrap();
        assert_eq!(mmap_len, 3 * 24);
        let last_len: u64 = mem
            .read_obj(GuestAddress(layout::MMAP_ADDR + 2 * 24 + 12))
            .unwrap();
        assert_eq!(last_len, (64 << 20) - 0x10_0000);
    }
}
