//! Interrupt flag control and halting.

use core::arch::asm;

/// Enable maskable interrupts (`sti`).
pub fn enable() {
    // SAFETY: the IDT is loaded before any guest code runs; every vector has a
    // handler.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Disable maskable interrupts (`cli`).
pub fn disable() {
    // SAFETY: clearing IF has no memory effects.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Whether RFLAGS.IF is set.
pub fn are_enabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack; no other effect.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

/// Run `f` with interrupts disabled, restoring the previous state after.
pub fn without<R>(f: impl FnOnce() -> R) -> R {
    let was = are_enabled();
    disable();
    let r = f();
    if was {
        enable();
    }
    r
}

/// Atomically enable interrupts and halt until one arrives (`sti; hlt`);
/// returns with interrupts enabled.
pub fn enable_and_wait() {
    // SAFETY: `sti; hlt` only waits for an interrupt, whose handler exists.
    unsafe { asm!("sti", "hlt", options(nomem, nostack)) }
}

/// Halt this CPU forever with interrupts disabled.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU; NMIs return to the loop.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
