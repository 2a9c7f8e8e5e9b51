//! `print!`/`println!` on the serial port, serialized across CPUs.
//!
//! The lock is owned by a CPU and re-entrant on that CPU, so an exception or
//! NMI handler that prints while its CPU holds the lock does not deadlock.

use crate::percpu::cpu_id;
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// 0 = free, otherwise owner CPU ID + 1.
static OWNER: AtomicU32 = AtomicU32::new(0);

/// Holds the console lock until dropped.
pub struct ConsoleGuard {
    release: bool,
}

/// Take the console lock (re-entrant per CPU). Keep the guard while several
/// lines must come out together.
pub fn lock() -> ConsoleGuard {
    let me = cpu_id() + 1;
    if OWNER.load(Ordering::Relaxed) == me {
        return ConsoleGuard { release: false };
    }
    while OWNER
        .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        core::hint::spin_loop();
    }
    ConsoleGuard { release: true }
}

impl Drop for ConsoleGuard {
    fn drop(&mut self) {
        if self.release {
            OWNER.store(0, Ordering::Release);
        }
    }
}

struct Serial;

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        crate::serial::write_bytes(s.as_bytes());
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments) {
    let _guard = lock();
    let _ = fmt::Write::write_fmt(&mut Serial, args);
}

/// Print to the serial console without waiting for the lock (crash paths).
#[doc(hidden)]
pub fn _print_unlocked(args: fmt::Arguments) {
    let _ = fmt::Write::write_fmt(&mut Serial, args);
}

/// Print to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::print::_print(format_args!($($arg)*)) };
}

/// Print a line to the serial console (one line is never interleaved with
/// output of other CPUs).
#[macro_export]
macro_rules! println {
    () => { $crate::print::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::print::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Print on a crash path: wait for the lock only for a bounded time (another
/// CPU may have died holding it), then print anyway.
#[doc(hidden)]
pub fn _print_crash(args: fmt::Arguments) {
    let me = cpu_id() + 1;
    let mut release = false;
    if OWNER.load(Ordering::Relaxed) != me {
        for _ in 0..10_000_000u32 {
            if OWNER
                .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                release = true;
                break;
            }
            core::hint::spin_loop();
        }
    }
    _print_unlocked(args);
    if release {
        OWNER.store(0, Ordering::Release);
    }
}
