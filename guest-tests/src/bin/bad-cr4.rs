//! Sets a reserved CR4 bit: #GP, reported by the runtime (exit 0x70).
//! The bit is `bit=N` on the command line (default 15, reserved on every
//! Intel and AMD CPU).
#![no_std]
#![no_main]

use guest_tests::{cmdline, println};

guest_tests::entry!(main);

fn main() {
    let bit = cmdline::get_u64("bit").unwrap_or(15) & 63;
    println!("bad-cr4: setting reserved CR4 bit {}", bit);
    // SAFETY: the write raises #GP before changing anything; the runtime's
    // handler reports it and exits.
    unsafe {
        core::arch::asm!(
            "mov {tmp}, cr4",
            "bts {tmp}, {bit}",
            "mov cr4, {tmp}",
            tmp = out(reg) _,
            bit = in(reg) bit,
            options(nomem, nostack),
        );
    }
    println!("bad-cr4: no #GP raised");
}
