//! QEMU-style fw_cfg over I/O ports 0x510 (selector) / 0x511 (data).

use crate::io::{inb, outw};

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;

pub const KEY_SIGNATURE: u16 = 0x0000;
pub const KEY_RAM_SIZE: u16 = 0x0003;
pub const KEY_NB_CPUS: u16 = 0x0005;
pub const KEY_MAX_CPUS: u16 = 0x000F;

/// Read `buf.len()` bytes of item `key` from its start.
pub fn read(key: u16, buf: &mut [u8]) {
    outw(SELECTOR, key);
    for b in buf {
        *b = inb(DATA);
    }
}

fn read_le<const N: usize>(key: u16) -> [u8; N] {
    let mut buf = [0u8; N];
    read(key, &mut buf);
    buf
}

/// Whether the fw_cfg device answers with the "QEMU" signature.
pub fn present() -> bool {
    read_le::<4>(KEY_SIGNATURE) == *b"QEMU"
}

/// Number of vCPUs the VM was started with.
pub fn cpu_count() -> Option<u16> {
    present().then(|| u16::from_le_bytes(read_le(KEY_NB_CPUS)))
}

/// Maximum number of vCPUs.
pub fn max_cpus() -> Option<u16> {
    present().then(|| u16::from_le_bytes(read_le(KEY_MAX_CPUS)))
}

/// Guest RAM size in bytes.
pub fn ram_size() -> Option<u64> {
    present().then(|| u64::from_le_bytes(read_le(KEY_RAM_SIZE)))
}
