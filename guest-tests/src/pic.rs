//! The legacy 8259 PIC pair: remapped to vectors 0x20-0x2F (away from the
//! exception vectors, where a BIOS leaves it) and fully masked. Interrupts
//! reach the guest only through the LAPIC.

use crate::io::{inb, outb};

const MASTER_CMD: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_CMD: u16 = 0xA0;
const SLAVE_DATA: u16 = 0xA1;

/// First vector of the (masked) legacy PIC; 0x20-0x2F are reserved for it.
pub const PIC_BASE_VECTOR: u8 = 0x20;

/// Remap and mask both PICs.
pub(crate) fn disable() {
    outb(MASTER_CMD, 0x11); // ICW1: init, expect ICW4
    outb(SLAVE_CMD, 0x11);
    outb(MASTER_DATA, PIC_BASE_VECTOR); // ICW2: vector base
    outb(SLAVE_DATA, PIC_BASE_VECTOR + 8);
    outb(MASTER_DATA, 0x04); // ICW3: slave on IRQ2
    outb(SLAVE_DATA, 0x02);
    outb(MASTER_DATA, 0x01); // ICW4: 8086 mode
    outb(SLAVE_DATA, 0x01);
    outb(MASTER_DATA, 0xFF); // mask everything
    outb(SLAVE_DATA, 0xFF);
    let _ = inb(MASTER_DATA);
}

/// Whether `vector` is a spurious interrupt of the legacy PIC (IRQ 7/15).
pub(crate) fn is_spurious(vector: usize) -> bool {
    vector == usize::from(PIC_BASE_VECTOR) + 7 || vector == usize::from(PIC_BASE_VECTOR) + 15
}
