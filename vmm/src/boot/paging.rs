//! The identity map an ELF64 kernel is entered on: 4 GiB in 2 MiB pages,
//! so RAM and the LAPIC/IOAPIC pages are reachable from the first
//! instruction.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{layout, BootError};

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const PAGE_SIZE_2M: u64 = 1 << 7;

/// Writes PML4 -> PDPT -> 4 page directories of 2 MiB pages.
pub fn write_identity_map(mem: &GuestMemoryMmap) -> Result<(), BootError> {
    mem.write_obj(
        layout::PDPT_ADDR | PRESENT | WRITABLE,
        GuestAddress(layout::PML4_ADDR),
    )?;
    for gib in 0..layout::IDENTITY_MAP_GIB {
        let pd = layout::PD_ADDR + gib * 0x1000;
        mem.write_obj(
            pd | PRESENT | WRITABLE,
            GuestAddress(layout::PDPT_ADDR + gib * 8),
        )?;
        let entries: Vec<u8> = (0..512u64)
            .flat_map(|i| {
                (((gib << 30) + (i << 21)) | PRESENT | WRITABLE | PAGE_SIZE_2M).to_le_bytes()
            })
            .collect();
        mem.write_slice(&entries, GuestAddress(pd))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the tables the way the MMU would for a 2 MiB mapping.
    fn translate(mem: &GuestMemoryMmap, va: u64) -> u64 {
        let pml4e: u64 = mem
            .read_obj(GuestAddress(layout::PML4_ADDR + ((va >> 39) & 511) * 8))
            .unwrap();
        let pdpte: u64 = mem
            .read_obj(GuestAddress((pml4e & !0xFFF) + ((va >> 30) & 511) * 8))
            .unwrap();
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xFFF) + ((va >> 21) & 511) * 8))
            .unwrap();
        assert_ne!(pde & PAGE_SIZE_2M, 0);
        (pde & !0x1F_FFFF & !(1 << 63)) | (va & 0x1F_FFFF)
    }

    #[test]
    fn maps_ram_and_lapic_one_to_one() {
        let mem = crate::boot::test_memory(2);
        write_identity_map(&mem).unwrap();
        for va in [0u64, 0x10_0123, 0x4000_0000, 0xFEE0_0300, 0xFFFF_FFFF] {
            assert_eq!(translate(&mem, va), va);
        }
    }
}
