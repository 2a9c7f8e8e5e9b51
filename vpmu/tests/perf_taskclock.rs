//! Real perf events on this machine (no hardware PMU): cycles from the
//! task clock through `VcpuCounters<PerfBackend>`.

mod perf_common;

use perf_common::*;
use vpmu::host::assembly::HostAssembly;
use vpmu::host::perf::{PerfHost, PmuPlan};
use vpmu::host::{EventName, HostBackend, HostEvent, Modifiers};
use vpmu::source::{CountSource, CounterIndex};
use vpmu::stats::CounterState;

const TSC_KHZ: u32 = 2_100_000;

/// The host as discovered, forced to the task clock if this machine
/// happens to have a hardware PMU (the test is about the software path).
fn host() -> PerfHost {
    let fs = FakeSysfs::new("tc");
    fs.software_pmus();
    PerfHost::discover_in(fs.path(), &intel(4, 3), false, TSC_KHZ).unwrap()
}

#[test]
fn task_clock_cycles_track_thread_cpu_time() {
    let h = host();
    assert_eq!(h.plans, vec![PmuPlan::TaskClock]);
    let mut vc = HostAssembly::perf(h.clone())
        .perf_vcpu_counters(0, None)
        .unwrap();
    let cyc = config(0x3C, 0x00);
    let t0 = thread_cpu_ns();
    vc.start(CounterIndex::Fixed(1), &cyc);
    vc.start(CounterIndex::Fixed(2), &cyc);
    vc.start(CounterIndex::Gp(0), &cyc);
    vc.start(CounterIndex::Gp(1), &config(0x3C, 0x01));
    vc.start(CounterIndex::Gp(2), &config(0xC0, 0x00));
    vc.start(CounterIndex::Fixed(0), &cyc);
    vc.sched_in_pending(0);
    spin_cpu(200_000_000);
    let mut got = [0u64; 4];
    for (i, c) in [
        CounterIndex::Fixed(1),
        CounterIndex::Fixed(2),
        CounterIndex::Gp(0),
        CounterIndex::Gp(1),
    ]
    .into_iter()
    .enumerate()
    {
        got[i] = vc.drain(c);
    }
    let cpu_ns = thread_cpu_ns() - t0;
    let want = cpu_ns as f64 * TSC_KHZ as f64 / 1e6;
    for (i, g) in got.iter().enumerate() {
        let err = (*g as f64 - want).abs() / want;
        assert!(err < 0.20, "counter {i}: {g} cycles vs {want} ({err:.3})");
    }
    // Instructions and fixed counter 0 are unavailable: they read zero.
    assert_eq!(vc.drain(CounterIndex::Gp(2)), 0);
    assert_eq!(vc.drain(CounterIndex::Fixed(0)), 0);
    vc.advance(cpu_ns);
    let s = vc.snapshot();
    for c in &s.counters {
        match c.counter {
            CounterIndex::Gp(2) | CounterIndex::Fixed(0) => {
                assert_eq!(c.state, CounterState::Degraded);
                assert!(c.labels.contains(&"unavailable".to_string()));
            }
            _ => {
                assert_eq!(c.state, CounterState::Active, "{c:?}");
                assert!(c.labels.contains(&"software-emulated".to_string()), "{c:?}");
                assert!(!c.labels.contains(&"simulated".to_string()));
            }
        }
    }
    assert_eq!(s.pmus[0].backend, "perf");
    // Software groups never rotate.
    assert_eq!(vc.next_rotation_deadline(), None);
    // A second drain counts only the new time.
    spin_cpu(20_000_000);
    let d = vc.drain(CounterIndex::Gp(0));
    assert!(d > 0 && (d as f64) < want * 0.5, "{d}");
}

#[test]
fn conversion_is_exact_over_cumulative_counts() {
    // 1 kHz TSC: 1 cycle per ms. Reads at arbitrary moments must never
    // lose remainders: the total equals floor(total_ns / 1e6).
    let h = host();
    let mut b = h.backend(None);
    let ev = HostEvent {
        name: EventName::Cycles,
        pmu: 0,
        mask: 0,
        modifiers: Modifiers::plain(),
    };
    let hd = b.open(&ev).unwrap();
    b.enable(hd, None, 0).unwrap();
    spin_cpu(5_000_000);
    let r = b.read(hd, 0).unwrap();
    b.disable(hd, 0).unwrap();
    let r2 = b.read(hd, 0).unwrap();
    assert_eq!(r.time_enabled, r.time_running);
    assert!(r2.count >= r.count);
    let expect = r2.time_running as u128 * TSC_KHZ as u128 / 1_000_000;
    // time_running of a task clock equals its count (ns).
    assert!((r2.count as i128 - expect as i128).abs() <= TSC_KHZ as i128 / 1000 + 1);
    b.close(hd).unwrap();
}

#[test]
fn silent_counter_needs_no_fd() {
    let h = host();
    let mut b = h.backend(None);
    let m = Modifiers {
        usr: false,
        os: false,
        ..Modifiers::default()
    };
    let hd = b
        .open(&HostEvent {
            name: EventName::Cycles,
            pmu: 0,
            mask: 0,
            modifiers: m,
        })
        .unwrap();
    assert_eq!(b.fds(), 0);
    b.enable(hd, None, 0).unwrap();
    spin_cpu(1_000_000);
    assert_eq!(b.read(hd, 0).unwrap().count, 0);
    b.close(hd).unwrap();
}

#[test]
fn idle_fds_are_reused() {
    let h = host();
    let mut b = h.backend(None);
    let ev = HostEvent {
        name: EventName::Cycles,
        pmu: 0,
        mask: 0,
        modifiers: Modifiers::plain(),
    };
    let a = b.open(&ev).unwrap();
    b.enable(a, None, 0).unwrap();
    spin_cpu(2_000_000);
    b.disable(a, 0).unwrap();
    b.close(a).unwrap();
    let opens = b.opens();
    let a = b.open(&ev).unwrap();
    assert_eq!(b.opens(), opens, "same configuration: no perf_event_open");
    // A reused fd starts from zero.
    assert_eq!(b.read(a, 0).unwrap().count, 0);
    b.close(a).unwrap();
    let _ = b.open(&HostEvent {
        name: EventName::RefCycles,
        ..ev
    });
    assert_eq!(b.opens(), opens, "ref-cycles is the same task clock");
}
