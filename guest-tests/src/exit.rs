//! Guest exit through the debug-exit port 0xF4.
//!
//! The VMM exits with status `value & 0xFF` (QEMU's isa-debug-exit with
//! `(value << 1) | 1`).

use crate::io::outl;

/// Every check passed.
pub const SUCCESS: u32 = 0;
/// Some check failed.
pub const FAILURE: u32 = 1;
/// Unexpected exception, interrupt or panic.
pub const CRASH: u32 = 0x70;

const DEBUG_EXIT_PORT: u16 = 0xF4;

/// Ask the VMM to end the VM with `code`, then halt forever.
pub fn exit(code: u32) -> ! {
    outl(DEBUG_EXIT_PORT, code);
    crate::irq::halt_forever()
}
