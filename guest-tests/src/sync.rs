//! Minimal synchronization for several CPUs: a spin lock and a barrier.

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// A test-and-set spin lock protecting a `T`. Not re-entrant; do not take it
/// in an interrupt handler that can interrupt its holder.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: access to `value` is serialized by `locked`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Spin until the lock is free, then take it.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        SpinGuard { lock: self }
    }
}

/// Access to the value of a held [`SpinLock`].
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// A reusable (sense-counting) barrier for `parties` CPUs. `parties == 0`
/// means "every online CPU" ([`crate::smp::online_cpus`] at wait time).
pub struct Barrier {
    parties: u32,
    arrived: AtomicU32,
    generation: AtomicU32,
}

impl Barrier {
    pub const fn new(parties: u32) -> Self {
        Barrier {
            parties,
            arrived: AtomicU32::new(0),
            generation: AtomicU32::new(0),
        }
    }

    /// A barrier for every online CPU.
    pub const fn all_cpus() -> Self {
        Self::new(0)
    }

    /// Wait until all parties have called `wait`. Returns true on exactly
    /// one of them (the last to arrive).
    pub fn wait(&self) -> bool {
        let parties = if self.parties == 0 {
            crate::smp::online_cpus()
        } else {
            self.parties
        };
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == parties {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation.fetch_add(1, Ordering::Release);
            true
        } else {
            while self.generation.load(Ordering::Acquire) == generation {
                core::hint::spin_loop();
            }
            false
        }
    }
}
