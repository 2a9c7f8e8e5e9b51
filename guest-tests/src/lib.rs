//! Runtime for bare-metal guests of the vPMU VMM (`x86_64-unknown-none`).
//!
//! A guest binary is `#![no_std] #![no_main]`, defines `fn main()` and says
//! `guest_tests::entry!(main);`. The runtime boots through multiboot v1
//! (32-bit) or direct ELF64 (long mode) entry, sets up GDT, IDT, per-CPU
//! data, the LAPIC, the command line, then calls `main` on the BSP. If `main`
//! returns, the guest exits with status 0.
#![no_std]

pub mod amd_pmu;
pub mod boot;
pub mod cmdline;
pub mod exceptions;
pub mod exit;
pub mod fwcfg;
pub mod idt;
pub mod io;
pub mod irq;
pub mod lapic;
pub mod mbi;
pub mod msr;
pub mod percpu;
pub mod pic;
pub mod pmu;
pub mod print;
pub mod serial;
pub mod smp;
pub mod syms;
pub mod sync;
pub mod tap;

pub use exceptions::Fault;
pub use msr::{cpuid, rdmsr, rdtsc, try_rdmsr, try_rdpmc, try_wrmsr, wrmsr};
pub use tap::Tap;

/// Declare the guest's main function: `entry!(main)` with `fn main()` or
/// `fn main() -> !`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[no_mangle]
        #[allow(unreachable_code)]
        pub extern "Rust" fn __guest_main() {
            $main();
            $crate::exit::exit($crate::exit::SUCCESS);
        }
    };
}

extern "Rust" {
    fn __guest_main();
}

/// Rust entry of the BSP (from `_start64`, on the BSP stack, `.bss` zeroed).
#[no_mangle]
extern "C" fn rt_bsp_main(mbi: u32, magic: u32) -> ! {
    percpu::init(0);
    idt::init();
    idt::load();
    mbi::init(mbi, magic);
    cmdline::init();
    pic::disable();
    lapic::enable();
    // SAFETY: `__guest_main` is defined by the guest binary through `entry!`.
    unsafe { __guest_main() };
    exit::exit(exit::SUCCESS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    print::_print_crash(format_args!(
        "panic on cpu {}: {}\n",
        percpu::cpu_id(),
        info
    ));
    exit::exit(exit::CRASH)
}
