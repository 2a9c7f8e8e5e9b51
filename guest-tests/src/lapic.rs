//! Local APIC in xAPIC (MMIO) mode at 0xFEE00000.

/// Physical (= virtual, identity mapped) base of the xAPIC registers.
pub const BASE: u64 = 0xFEE0_0000;

pub const ID: u32 = 0x20;
pub const VERSION: u32 = 0x30;
pub const TPR: u32 = 0x80;
pub const EOI: u32 = 0xB0;
pub const SVR: u32 = 0xF0;
pub const ESR: u32 = 0x280;
pub const ICR_LOW: u32 = 0x300;
pub const ICR_HIGH: u32 = 0x310;
pub const LVT_TIMER: u32 = 0x320;
/// LVT performance-monitoring counter entry (LVTPC).
pub const LVT_PERF: u32 = 0x340;
pub const LVT_LINT0: u32 = 0x350;
pub const LVT_LINT1: u32 = 0x360;
pub const LVT_ERROR: u32 = 0x370;

/// LVT mask bit.
pub const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode NMI (bits 10:8 = 100b).
pub const LVT_NMI: u32 = 0b100 << 8;
/// LVT/ICR delivery status (send pending).
pub const DELIVERY_PENDING: u32 = 1 << 12;

/// Read a LAPIC register.
pub fn read(reg: u32) -> u32 {
    // SAFETY: the LAPIC page is identity mapped; registers are 32-bit
    // aligned MMIO.
    unsafe { core::ptr::read_volatile((BASE + u64::from(reg)) as *const u32) }
}

/// Write a LAPIC register.
pub fn write(reg: u32, value: u32) {
    // SAFETY: as for `read`.
    unsafe { core::ptr::write_volatile((BASE + u64::from(reg)) as *mut u32, value) }
}

/// This CPU's APIC ID.
pub fn id() -> u32 {
    read(ID) >> 24
}

/// Signal end of interrupt.
pub fn eoi() {
    write(EOI, 0);
}

/// Software-enable the LAPIC with the spurious vector 0xFF, TPR 0.
pub fn enable() {
    write(TPR, 0);
    write(SVR, 0x100 | u32::from(crate::idt::SPURIOUS_VECTOR));
}

/// Program the LVT performance-counter entry (e.g. `vector` for fixed
/// delivery, or [`LVT_NMI`]); `LVT_MASKED` masks it.
pub fn set_lvt_perf(value: u32) {
    write(LVT_PERF, value);
}

/// Read the LVT performance-counter entry.
pub fn lvt_perf() -> u32 {
    read(LVT_PERF)
}

fn wait_icr_idle() {
    for _ in 0..1_000_000 {
        if read(ICR_LOW) & DELIVERY_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// Send an IPI: `icr_low` is the ICR low word (vector, delivery mode,
/// level, shorthand), `dest` the destination APIC ID.
pub fn send_ipi(dest: u32, icr_low: u32) {
    wait_icr_idle();
    write(ICR_HIGH, dest << 24);
    write(ICR_LOW, icr_low);
    wait_icr_idle();
}

/// Send a fixed interrupt with `vector` to the CPU with APIC ID `dest`.
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, u32::from(vector) | (1 << 14));
}

/// Send a fixed interrupt with `vector` to every CPU except this one.
pub fn send_fixed_all_but_self(vector: u8) {
    send_ipi(0, u32::from(vector) | (1 << 14) | (0b11 << 18));
}

/// Send a fixed interrupt with `vector` to this CPU (self shorthand).
pub fn send_self(vector: u8) {
    send_ipi(0, u32::from(vector) | (1 << 14) | (0b01 << 18));
}

/// Send an NMI to `dest`.
pub fn send_nmi(dest: u32) {
    send_ipi(dest, (0b100 << 8) | (1 << 14));
}
