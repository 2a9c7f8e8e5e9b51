//! Loads an empty IDT and executes `ud2`: a triple fault (VM crash).
#![no_std]
#![no_main]

use guest_tests::{idt, println};

guest_tests::entry!(main);

fn main() {
    println!("triple-fault: loading an empty IDT and executing ud2");
    // SAFETY: the whole point is to shut the VM down with a triple fault.
    unsafe {
        idt::load_empty();
        core::arch::asm!("ud2", options(nomem, nostack, noreturn));
    }
}
