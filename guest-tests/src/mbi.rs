//! The Multiboot v1 information structure handed over in EBX/RBX.

use core::sync::atomic::{AtomicU32, Ordering};

/// Magic value in EAX/RAX at entry.
pub const BOOT_MAGIC: u32 = 0x2BAD_B002;

pub const FLAG_MEM: u32 = 1 << 0;
pub const FLAG_CMDLINE: u32 = 1 << 2;
pub const FLAG_MMAP: u32 = 1 << 6;

static MBI: AtomicU32 = AtomicU32::new(0);
static MAGIC: AtomicU32 = AtomicU32::new(0);

pub(crate) fn init(mbi: u32, magic: u32) {
    MBI.store(mbi, Ordering::Relaxed);
    MAGIC.store(magic, Ordering::Relaxed);
}

/// The magic value found in EAX at entry (should be [`BOOT_MAGIC`]).
pub fn boot_magic() -> u32 {
    MAGIC.load(Ordering::Relaxed)
}

/// Physical address of the multiboot info (0 if none).
pub fn address() -> u32 {
    MBI.load(Ordering::Relaxed)
}

fn field(offset: u32) -> u32 {
    let base = address();
    if base == 0 {
        return 0;
    }
    // SAFETY: the loader placed a multiboot info structure (at least 52
    // bytes) at `base`, identity mapped, and nothing overwrites it.
    unsafe { core::ptr::read_unaligned((u64::from(base) + u64::from(offset)) as *const u32) }
}

/// The `flags` field.
pub fn flags() -> u32 {
    field(0)
}

/// `mem_lower` in KiB (valid if [`FLAG_MEM`]).
pub fn mem_lower_kib() -> u32 {
    field(4)
}

/// `mem_upper` in KiB (valid if [`FLAG_MEM`]).
pub fn mem_upper_kib() -> u32 {
    field(8)
}

/// Physical address of the NUL-terminated command line, if given.
pub fn cmdline_address() -> Option<u32> {
    (flags() & FLAG_CMDLINE != 0).then(|| field(16))
}

/// One memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub base: u64,
    pub length: u64,
    /// 1 = available RAM.
    pub kind: u32,
}

/// Iterator over the multiboot memory map.
pub struct MemoryMap {
    next: u64,
    end: u64,
}

impl Iterator for MemoryMap {
    type Item = MemoryRegion;
    fn next(&mut self) -> Option<MemoryRegion> {
        if self.next + 24 > self.end {
            return None;
        }
        let p = self.next;
        // SAFETY: entries lie within [mmap_addr, mmap_addr + mmap_length),
        // which the loader filled in; each is `size` (u32) followed by
        // `size` bytes holding base (u64), length (u64), type (u32).
        let (size, base, length, kind) = unsafe {
            (
                core::ptr::read_unaligned(p as *const u32),
                core::ptr::read_unaligned((p + 4) as *const u64),
                core::ptr::read_unaligned((p + 12) as *const u64),
                core::ptr::read_unaligned((p + 20) as *const u32),
            )
        };
        self.next = p + 4 + u64::from(size);
        Some(MemoryRegion { base, length, kind })
    }
}

/// The memory map (empty if the loader gave none).
pub fn memory_map() -> MemoryMap {
    if flags() & FLAG_MMAP == 0 {
        return MemoryMap { next: 0, end: 0 };
    }
    let start = u64::from(field(48));
    MemoryMap {
        next: start,
        end: start + u64::from(field(44)),
    }
}
