//! Every vCPU prints `hello from cpu <i> of <n>`; the BSP exits 0 once all
//! have printed.
#![no_std]
#![no_main]

use guest_tests::{println, smp};

guest_tests::entry!(main);

fn hello(cpu: u32) {
    println!("hello from cpu {} of {}", cpu, smp::cpu_count());
}

fn main() {
    smp::run_on_all(hello);
}
