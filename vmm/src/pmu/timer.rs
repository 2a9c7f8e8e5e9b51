//! The vCPU thread's clock and its one timer.
//!
//! Run time of a vCPU is its thread's CPU time: the time KVM spends running
//! the guest plus the VMM's exit handling on that thread (a halted vCPU
//! sleeps and accrues none). The timer is a POSIX timer on `CLOCK_MONOTONIC`
//! that sends the kick signal to the vCPU thread; wall time runs at least as
//! fast as thread CPU time, so a run-time deadline armed as a wall-time delay
//! can only fire early, never late, and an early wake-up re-arms.

use crate::kick;

/// Thread CPU time of the calling thread, in ns.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant
    // every Linux supports, so the call cannot fail on valid arguments.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// A one-shot POSIX timer that kicks the vCPU thread that created it.
pub struct VcpuTimer {
    id: libc::timer_t,
}

impl VcpuTimer {
    /// Creates the timer for the calling thread (must be the vCPU thread).
    pub fn for_this_thread() -> std::io::Result<Self> {
        // SAFETY: a zeroed sigevent is a valid value of the type.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = kick::kick_signal();
        // SAFETY: gettid has no preconditions.
        sev.sigev_notify_thread_id = unsafe { libc::gettid() };
        let mut id: libc::timer_t = std::ptr::null_mut();
        // SAFETY: `sev` and `id` are valid for the call; the kernel writes `id`.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut id) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(VcpuTimer { id })
    }

    /// Fires once after `ns` (0 disarms).
    pub fn arm(&self, ns: u64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `self.id` is a live timer created by `timer_create`.
        if unsafe { libc::timer_settime(self.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            log::warn!(
                "arming the overflow timer: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

impl Drop for VcpuTimer {
    fn drop(&mut self) {
        // SAFETY: `self.id` is a live timer, deleted exactly once here.
        unsafe { libc::timer_delete(self.id) };
    }
}
