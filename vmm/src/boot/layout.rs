//! Guest physical memory layout of the boot structures the VMM writes.
//! Guests rely on this; `guest-tests/README.md` states it as the platform
//! contract.

/// The VMM's GDT (ELF64 and multiboot entry).
pub const GDT_ADDR: u64 = 0x1000;
/// PML4 of the identity map built for ELF64 entry.
pub const PML4_ADDR: u64 = 0x2000;
/// The PDPT: one entry per GiB.
pub const PDPT_ADDR: u64 = 0x3000;
/// Four page directories of 2 MiB pages, identity-mapping 4 GiB.
pub const PD_ADDR: u64 = 0x4000;
/// Number of GiB the ELF64 identity map covers (includes the LAPIC page).
pub const IDENTITY_MAP_GIB: u64 = 4;
/// Left free for the guest's AP start-up trampoline (SIPI vector 0x08).
pub const TRAMPOLINE_ADDR: u64 = 0x8000;
/// Multiboot information structure.
pub const MBI_ADDR: u64 = 0x9000;
/// Multiboot memory map (follows the info structure).
pub const MMAP_ADDR: u64 = 0x9100;
/// Boot loader name string.
pub const LOADER_NAME_ADDR: u64 = 0x9700;
/// Kernel command line, NUL-terminated.
pub const CMDLINE_ADDR: u64 = 0x9800;
/// Longest command line, including the NUL.
pub const CMDLINE_MAX: usize = 0x800;
/// Everything below this is the VMM's boot area; kernels load above it.
pub const BOOT_AREA_END: u64 = 0xA000;
/// End of conventional memory reported as usable below 1 MiB.
pub const LOW_MEM_END: u64 = 0x9_FC00;
/// Start of extended memory.
pub const HIGH_MEM_START: u64 = 0x10_0000;
/// The most RAM a guest can have: RAM is one range from 0 and must stay
/// below the 32-bit MMIO hole (IOAPIC at 0xFEC0_0000, LAPIC at 0xFEE0_0000).
pub const MAX_MEM_MIB: u64 = 3072;
/// The least RAM that holds the boot area and a small kernel at 1 MiB.
pub const MIN_MEM_MIB: u64 = 2;

/// GDT selectors the VMM sets up.
pub const SEL_CODE64: u16 = 0x08;
pub const SEL_DATA: u16 = 0x10;
pub const SEL_TSS: u16 = 0x18;
pub const SEL_CODE32: u16 = 0x20;

/// GDT descriptors, indexed by selector / 8: null, 64-bit code, flat data,
/// a 64-bit TSS (VMX requires a usable task register), flat 32-bit code.
pub const GDT: [u64; 5] = [
    0,
    0x00af_9b00_0000_ffff,
    0x00cf_9300_0000_ffff,
    0x0080_8b00_0000_0067,
    0x00cf_9b00_0000_ffff,
];
