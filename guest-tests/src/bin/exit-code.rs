//! Exits with the status given as `code=N` on the command line (default 0).
#![no_std]
#![no_main]

use guest_tests::{cmdline, exit, println};

guest_tests::entry!(main);

fn main() -> ! {
    let code = cmdline::get_u64("code").unwrap_or(0);
    println!("exit-code: exiting with {}", code);
    exit::exit(code as u32)
}
