//! 16550 UART at COM1 (0x3F8), output only.

use crate::io::{inb, outb};

const COM1: u16 = 0x3F8;
const LSR: u16 = COM1 + 5;
const LSR_THR_EMPTY: u8 = 1 << 5;

/// Write one byte, waiting (boundedly) for the transmit holding register.
pub fn write_byte(byte: u8) {
    for _ in 0..100_000 {
        if inb(LSR) & LSR_THR_EMPTY != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    outb(COM1, byte);
}

/// Write a byte string.
pub fn write_bytes(bytes: &[u8]) {
    for &b in bytes {
        write_byte(b);
    }
}
