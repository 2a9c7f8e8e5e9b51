//! Per-CPU data reached through the GS base (`IA32_GS_BASE`).

use crate::smp::MAX_CPUS;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const IA32_GS_BASE: u32 = 0xC000_0101;

/// Per-CPU runtime state. The first field must stay `cpu_id` (read via gs:0).
#[repr(C)]
pub struct PerCpu {
    cpu_id: AtomicU32,
    /// Nesting depth of the default exception handler (detects recursion).
    pub(crate) exception_depth: AtomicU32,
    /// Interrupts/exceptions taken on this CPU, per vector.
    pub(crate) vector_counts: [AtomicU64; 256],
    /// Faults recovered through the exception table on this CPU.
    pub(crate) recovered_faults: AtomicU64,
    /// Innermost armed `exceptions::catch` context (0 = none).
    pub(crate) catch_ctx: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const PERCPU_INIT: PerCpu = PerCpu {
    cpu_id: AtomicU32::new(0),
    exception_depth: AtomicU32::new(0),
    vector_counts: [const { AtomicU64::new(0) }; 256],
    recovered_faults: AtomicU64::new(0),
    catch_ctx: AtomicU64::new(0),
};

static PERCPU: [PerCpu; MAX_CPUS] = [PERCPU_INIT; MAX_CPUS];

/// Point this CPU's GS base at its per-CPU block. Called once per CPU, first
/// thing after boot, with the CPU's APIC ID (< MAX_CPUS).
pub(crate) fn init(cpu_id: u32) {
    let cpu = cpu_id as usize;
    assert!(cpu < MAX_CPUS);
    let block = &PERCPU[cpu];
    block.cpu_id.store(cpu_id, Ordering::Relaxed);
    crate::msr::wrmsr(IA32_GS_BASE, block as *const PerCpu as u64);
}

/// The ID (= APIC ID) of the CPU running this code.
#[inline]
pub fn cpu_id() -> u32 {
    let id: u32;
    // SAFETY: GS points at this CPU's `PerCpu`, whose first field is `cpu_id`.
    // Before `init` the GS base is 0 and this reads guest physical 0 (harmless).
    unsafe {
        core::arch::asm!("mov {:e}, gs:[0]", out(reg) id, options(nostack, readonly, preserves_flags))
    }
    id
}

/// The per-CPU block of `cpu`.
pub(crate) fn of(cpu: u32) -> &'static PerCpu {
    &PERCPU[cpu as usize]
}

/// The per-CPU block of the running CPU.
pub(crate) fn this() -> &'static PerCpu {
    of(cpu_id())
}

/// How many times `vector` was taken on `cpu`.
pub fn vector_count(cpu: u32, vector: u8) -> u64 {
    of(cpu).vector_counts[vector as usize].load(Ordering::Relaxed)
}

/// How many faults were recovered through the exception table on `cpu`.
pub fn recovered_faults(cpu: u32) -> u64 {
    of(cpu).recovered_faults.load(Ordering::Relaxed)
}
