//! The debug-exit port: a guest ends the VM by writing a value `V` to port
//! 0xF4, and the VMM exits with status `V & 0xFF`. (QEMU's isa-debug-exit
//! returns `(V << 1) | 1`; test kernels written for it only need a distinct
//! value, and the plain value is easier to read in scripts.)

/// The port.
pub const PORT: u16 = 0xF4;

/// The exit status for a write of `data` (1, 2 or 4 bytes, little endian).
pub fn status(data: &[u8]) -> u8 {
    data.first().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_the_low_byte_of_any_width() {
        assert_eq!(status(&[3]), 3);
        assert_eq!(status(&0x1234u16.to_le_bytes()), 0x34);
        assert_eq!(status(&0x0102_0381u32.to_le_bytes()), 0x81);
        assert_eq!(status(&[]), 0);
    }
}
