//! Getting a vCPU thread out of `KVM_RUN`.
//!
//! A kick is a real-time signal sent to the vCPU thread. If the thread is in
//! the guest, `KVM_RUN` returns `EINTR`. If the signal lands between the
//! thread's last check of its flags and its entry into `KVM_RUN`, the handler
//! sets `kvm_run.immediate_exit`, so `KVM_RUN` returns at once instead of
//! entering the guest: no kick is ever lost (the protocol of the KVM API
//! documentation for `immediate_exit`).

use std::cell::Cell;
use std::ptr;

use vmm_sys_util::signal::{register_signal_handler, SIGRTMIN};

/// The signal that kicks a vCPU thread.
pub fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

thread_local! {
    /// `&mut kvm_run.immediate_exit` of the vCPU that runs on this thread,
    /// or null on threads that run no vCPU.
    static IMMEDIATE_EXIT: Cell<*mut u8> = const { Cell::new(ptr::null_mut()) };
}

extern "C" fn handle_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // `IMMEDIATE_EXIT` has a const initializer and no destructor, so this
    // access performs no lazy initialization and is async-signal-safe.
    let p = IMMEDIATE_EXIT.with(|c| c.get());
    if !p.is_null() {
        // SAFETY: the pointer was set by this thread from its own `VcpuFd`'s
        // mmapped `kvm_run`, and is cleared (`clear_immediate_exit_target`)
        // before that `VcpuFd` is dropped; a volatile byte store is safe to
        // race with nothing, since only this thread touches it.
        unsafe { ptr::write_volatile(p, 1) };
    }
}

/// Installs the kick handler once per process.
pub fn install_handler() -> Result<(), vmm_sys_util::errno::Error> {
    register_signal_handler(kick_signal(), handle_kick)
}

/// Called on a vCPU thread: where the handler should set `immediate_exit`.
pub fn set_immediate_exit_target(p: *mut u8) {
    IMMEDIATE_EXIT.with(|c| c.set(p));
}

/// Called on a vCPU thread before its `VcpuFd` goes away.
pub fn clear_immediate_exit_target() {
    IMMEDIATE_EXIT.with(|c| c.set(ptr::null_mut()));
}

/// Sends the kick signal to a thread.
pub fn kick(thread: libc::pthread_t) {
    // SAFETY: `thread` is the handle of a vCPU thread the VM has not joined
    // yet (the VM joins its vCPU threads only after the last kick), and the
    // signal has a handler installed, so delivery cannot kill the process.
    let rc = unsafe { libc::pthread_kill(thread, kick_signal()) };
    if rc != 0 {
        log::warn!(
            "kicking vCPU thread failed: {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
}
