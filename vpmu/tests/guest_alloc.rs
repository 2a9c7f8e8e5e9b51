//! The MSR path of the guest PMU must not allocate: a counting global
//! allocator watches this thread while a busy sequence of accesses runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use vpmu::arch::msr::*;
use vpmu::config::PmuConfig;
use vpmu::guest::GuestPmu;
use vpmu::source::{CountSource, CounterConfig, CounterIndex};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every allocation and deallocation is forwarded unchanged to the
// system allocator, which upholds GlobalAlloc's contract; the counting
// touches only thread-local cells and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A source that counts a fixed amount per drain, without allocating.
struct Steady(u64);

impl CountSource for Steady {
    fn start(&mut self, _: CounterIndex, _: &CounterConfig) {}
    fn stop(&mut self, _: CounterIndex) {}
    fn drain(&mut self, _: CounterIndex) -> u64 {
        self.0
    }
}

#[test]
fn msr_path_does_not_allocate() {
    let cfg = PmuConfig {
        version: 5,
        fixed_counters: 4,
        ..Default::default()
    };
    let mut p = GuestPmu::new(cfg);
    let mut src = Steady(1 << 40);
    ARMED.with(|a| a.set(true));
    for round in 0..50u64 {
        for i in 0..8 {
            let _ = p.wrmsr(
                IA32_PERFEVTSEL0 + i,
                0x3C | 0x43 << 16 | (round & 1) << 20,
                &mut src,
            );
            let _ = p.wrmsr(IA32_PMC0 + i, round, &mut src);
            let _ = p.rdmsr(IA32_A_PMC0 + i, &mut src);
        }
        let _ = p.wrmsr(IA32_FIXED_CTR_CTRL, 0xBBBB, &mut src);
        let _ = p.wrmsr(
            IA32_PERF_GLOBAL_CTRL,
            if round & 1 == 0 { 0xF_0000_00FF } else { 0x0F },
            &mut src,
        );
        for i in 0..4 {
            let _ = p.rdmsr(IA32_FIXED_CTR0 + i, &mut src);
        }
        let _ = p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut src);
        let _ = p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut src);
        let _ = p.wrmsr(IA32_PERF_GLOBAL_STATUS_RESET, 0xF_0000_00FF, &mut src);
        let _ = p.wrmsr(IA32_PERF_GLOBAL_STATUS_SET, 0x1, &mut src);
        let _ = p.wrmsr(0x10, 0, &mut src);
        p.retire_emulated_instruction(true);
        p.sync(&mut src);
        let _ = p.take_pmi();
    }
    ARMED.with(|a| a.set(false));
    assert_eq!(ALLOCS.with(Cell::get), 0);
}
