//! Overflow of a sampling task clock reaches the owning thread as a
//! real-time signal, without a ring buffer.

mod perf_common;

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use perf_common::*;
use vpmu::host::perf::{sys, PerfHost};
use vpmu::host::{EventName, HostBackend, HostEvent, Modifiers};

static SIGNALS: AtomicU64 = AtomicU64::new(0);
static WRONG_THREAD: AtomicU64 = AtomicU64::new(0);
static EXPECTED_TID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(_sig: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: gettid is async-signal-safe.
    let tid = unsafe { libc::gettid() };
    if tid == EXPECTED_TID.load(Ordering::Relaxed) {
        SIGNALS.fetch_add(1, Ordering::Relaxed);
    } else {
        WRONG_THREAD.fetch_add(1, Ordering::Relaxed);
    }
}

fn install(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction is valid; we fill handler, flags and an
    // empty mask before passing it to sigaction.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
    }
}

const TSC_KHZ: u32 = 1_000_000; // 1 cycle per ns

#[test]
fn sampling_task_clock_signals_the_vcpu_thread() {
    let sig = libc::SIGRTMIN();
    install(sig);
    let fs = FakeSysfs::new("sig");
    fs.software_pmus();
    let h = PerfHost::discover_in(fs.path(), &intel(4, 3), false, TSC_KHZ).unwrap();
    // The "vCPU thread": a thread of its own, so a signal sent to the
    // process (or to the main thread) would be caught as misdirected.
    let handle = std::thread::spawn(move || {
        EXPECTED_TID.store(sys::gettid(), Ordering::Relaxed);
        let mut b = h.backend(Some(sig));
        let hd = b
            .open(&HostEvent {
                name: EventName::Cycles,
                pmu: 0,
                mask: 0,
                modifiers: Modifiers::plain(),
            })
            .unwrap();
        let owner = b.fd_of(hd).unwrap().owner().unwrap();
        assert_eq!((owner.type_, owner.pid), (sys::F_OWNER_TID, sys::gettid()));
        // Overflow every 1 ms of thread CPU time (1e6 cycles at 1 GHz).
        b.set_overflow(hd, Some(1_000_000)).unwrap();
        b.enable(hd, None, 0).unwrap();
        let t0 = thread_cpu_ns();
        spin_cpu(300_000_000);
        b.disable(hd, 0).unwrap();
        let cpu_ms = (thread_cpu_ns() - t0) as f64 / 1e6;
        // Disarming stops the signals.
        b.set_overflow(hd, None).unwrap();
        b.enable(hd, None, 0).unwrap();
        let before = SIGNALS.load(Ordering::Relaxed);
        spin_cpu(50_000_000);
        let after = SIGNALS.load(Ordering::Relaxed);
        b.close(hd).unwrap();
        (before, after, cpu_ms)
    });
    let (got, after, cpu_ms) = handle.join().unwrap();
    let err = (got as f64 - cpu_ms).abs() / cpu_ms;
    assert!(err < 0.25, "{got} signals in {cpu_ms:.1} ms ({err:.3})");
    assert_eq!(WRONG_THREAD.load(Ordering::Relaxed), 0);
    assert!(after - got <= 1, "disarmed counter still signals");
}
