//! Spins forever with interrupts off (for timeout / kill tests).
#![no_std]
#![no_main]

use guest_tests::{irq, println};

guest_tests::entry!(main);

fn main() -> ! {
    println!("spin: spinning forever");
    irq::disable();
    loop {
        core::hint::spin_loop();
    }
}
