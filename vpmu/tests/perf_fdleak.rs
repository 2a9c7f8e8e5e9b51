//! 10,000 reprogrammings of guest counters leave the process's fd count
//! where it was, beyond a small constant. (One test in this binary: other
//! tests would open fds concurrently.)

mod perf_common;

use perf_common::*;
use vpmu::host::assembly::HostAssembly;
use vpmu::host::perf::{PerfHost, IDLE_FDS};
use vpmu::source::{CountSource, CounterIndex};

#[test]
fn reprogramming_does_not_leak_fds() {
    let fs = FakeSysfs::new("fdleak");
    fs.software_pmus();
    let h = PerfHost::discover_in(fs.path(), &intel(4, 3), false, 2_000_000).unwrap();
    let mut vc = HostAssembly::perf(h.clone())
        .perf_vcpu_counters(0, Some(libc::SIGRTMIN()))
        .unwrap();
    // Block the kick signal: a stray overflow must not kill the test.
    // SAFETY: a valid, initialised signal set for this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGRTMIN());
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    let before = fd_count();
    let counters = [
        CounterIndex::Gp(0),
        CounterIndex::Gp(1),
        CounterIndex::Fixed(1),
        CounterIndex::Fixed(2),
    ];
    let mut now = 0;
    for i in 0..10_000u32 {
        let c = counters[i as usize % counters.len()];
        let mut cfg = config(0x3C, (i % 2) as u8);
        cfg.usr = i % 3 != 0;
        cfg.os = i % 5 != 0;
        cfg.cmask = if i % 7 == 0 { 1 } else { 0 };
        cfg.overflow_after = (i % 4 == 0).then_some(1 << 40);
        vc.start(c, &cfg);
        if i % 3 == 0 {
            vc.stop(c);
            vc.start(c, &cfg);
        }
        now += 1000;
        vc.sched_in_pending(now);
        let _ = vc.drain(c);
        if i % 11 == 0 {
            vc.stop(c);
        }
        assert!(vc.context().backend().fds() <= counters.len() + IDLE_FDS);
    }
    // The idle cache absorbed those: same task-clock configuration.
    let opens = vc.context().backend().opens();
    assert!(opens < 10, "{opens}");
    // Eight counters at once, all stopped together: more than the idle
    // cache holds, so fds are really closed and opened again.
    let many: Vec<CounterIndex> = (0..8).map(CounterIndex::Gp).collect();
    for round in 0..1250u32 {
        for (k, &c) in many.iter().enumerate() {
            let mut cfg = config(0x3C, (k % 2) as u8);
            cfg.overflow_after = (round % 2 == 0).then_some(1 << 40);
            vc.start(c, &cfg);
        }
        now += 1000;
        vc.sched_in_pending(now);
        for &c in &many {
            let _ = vc.drain(c);
            vc.stop(c);
        }
        assert!(vc.context().backend().fds() <= many.len() + counters.len() + IDLE_FDS);
    }
    let opens = vc.context().backend().opens() - opens;
    assert!(opens >= 1250 * 4, "{opens} perf_event_open calls");
    let during = fd_count();
    for c in counters {
        vc.stop(c);
    }
    assert!(
        during <= before + counters.len() + IDLE_FDS,
        "{before} fds before, {during} after 20,000 reprogrammings"
    );
    drop(vc);
    assert_eq!(fd_count(), before, "dropping the backend closes every fd");
}
