//! Host failures never stop the VM: a backend whose `open` fails with each
//! errno leaves a degraded, zero-counting guest counter, and the count
//! source keeps working.

mod perf_common;

use perf_common::*;
use vpmu::core::{MuxPolicy, VcpuCounters};
use vpmu::host::assembly::HostAssembly;
use vpmu::host::perf::{open_error, PerfBackend, PerfHost};
use vpmu::host::{HostBackend, HostError, HostEvent, HostHandle, HostReading};
use vpmu::source::{CountSource, CounterIndex};
use vpmu::stats::CounterState;

/// The perf backend, with `open` failing with `errno` for `failures`
/// opens.
struct Faulty {
    inner: PerfBackend,
    errno: i32,
    failures: u32,
}

impl HostBackend for Faulty {
    fn open(&mut self, event: &HostEvent) -> Result<HostHandle, HostError> {
        if self.failures > 0 {
            self.failures -= 1;
            return Err(open_error(
                std::io::Error::from_raw_os_error(self.errno),
                "software",
                event.name,
            ));
        }
        self.inner.open(event)
    }
    fn enable(&mut self, h: HostHandle, slot: Option<u8>, now: u64) -> Result<(), HostError> {
        self.inner.enable(h, slot, now)
    }
    fn disable(&mut self, h: HostHandle, now: u64) -> Result<(), HostError> {
        self.inner.disable(h, now)
    }
    fn read(&mut self, h: HostHandle, now: u64) -> Result<HostReading, HostError> {
        self.inner.read(h, now)
    }
    fn set_overflow(&mut self, h: HostHandle, after: Option<u64>) -> Result<(), HostError> {
        self.inner.set_overflow(h, after)
    }
    fn close(&mut self, h: HostHandle) -> Result<(), HostError> {
        self.inner.close(h)
    }
    fn kind(&self) -> &'static str {
        "perf"
    }
}

#[test]
fn errno_maps_to_typed_errors() {
    use vpmu::host::EventName::Cycles;
    let e = |n| open_error(std::io::Error::from_raw_os_error(n), "cpu", Cycles);
    assert!(matches!(e(libc::ENOENT), HostError::Unsupported { .. }));
    assert!(matches!(e(libc::EOPNOTSUPP), HostError::Unsupported { .. }));
    assert!(matches!(e(libc::ENOSPC), HostError::NoCounter { .. }));
    for n in [libc::EACCES, libc::EMFILE] {
        match e(n) {
            HostError::Io(io) => assert_eq!(io.raw_os_error(), Some(n)),
            other => panic!("{n}: {other:?}"),
        }
    }
}

#[test]
fn failed_open_degrades_the_counter() {
    let fs = FakeSysfs::new("faults");
    fs.software_pmus();
    let h = PerfHost::discover_in(fs.path(), &intel(4, 3), false, 2_000_000).unwrap();
    for errno in [
        libc::ENOENT,
        libc::EOPNOTSUPP,
        libc::EACCES,
        libc::ENOSPC,
        libc::EMFILE,
    ] {
        let backend = Faulty {
            inner: h.backend(None),
            errno,
            failures: 1,
        };
        let mut vc = VcpuCounters::new(
            0,
            h.host_pmus(),
            h.event_table(),
            backend,
            MuxPolicy::default(),
        );
        let cyc = config(0x3C, 0x00);
        vc.start(CounterIndex::Gp(0), &cyc);
        vc.start(CounterIndex::Gp(1), &cyc);
        vc.sched_in_pending(0);
        spin_cpu(5_000_000);
        assert_eq!(vc.drain(CounterIndex::Gp(0)), 0, "errno {errno}");
        assert!(vc.drain(CounterIndex::Gp(1)) > 0, "errno {errno}");
        vc.advance(5_000_000);
        let s = vc.snapshot();
        let c0 = &s.counters[0];
        assert_eq!(c0.counter, CounterIndex::Gp(0));
        assert_eq!(c0.state, CounterState::Degraded, "errno {errno}");
        assert!(c0.labels.contains(&"unavailable".to_string()));
        assert_eq!(s.counters[1].state, CounterState::Active);
        // Reprogramming after the failure gets a host counter again.
        vc.stop(CounterIndex::Gp(0));
        vc.start(CounterIndex::Gp(0), &config(0x3C, 0x01));
        vc.sched_in_pending(5_000_000);
        spin_cpu(2_000_000);
        assert!(vc.drain(CounterIndex::Gp(0)) > 0);
        vc.stop(CounterIndex::Gp(0));
        vc.stop(CounterIndex::Gp(1));
        assert_eq!(vc.drain(CounterIndex::Gp(0)), 0);
    }
}

/// Real refusals of this kernel: hardware and raw events do not exist here
/// (ENOENT), which the backend reports as unsupported.
#[test]
fn real_hardware_open_fails_cleanly() {
    use vpmu::host::perf::{PmuPlan, Unit};
    use vpmu::host::{EventName, Modifiers};
    let fs = FakeSysfs::new("hwfail");
    fs.software_pmus().pmu("cpu", 4, 4, None);
    let h = PerfHost::discover_in(fs.path(), &intel(4, 3), false, 2_000_000).unwrap();
    assert!(matches!(h.plans[0], PmuPlan::Core { .. }));
    let mut b = h.backend(None);
    let ev = HostEvent {
        name: EventName::Cycles,
        pmu: 0,
        mask: 1,
        modifiers: Modifiers::plain(),
    };
    let real_cpu_pmu = std::path::Path::new("/sys/bus/event_source/devices/cpu").exists();
    match b.open(&ev) {
        Ok(hd) => {
            assert!(real_cpu_pmu, "raw events opened without a cpu PMU");
            b.close(hd).unwrap();
        }
        Err(e) => assert!(
            matches!(e, HostError::Unsupported { .. } | HostError::Io(_)),
            "{e:?}"
        ),
    }
    let _ = Unit::Events;
    // Through the multiplexer: the counter is degraded, nothing panics.
    let mut vc = HostAssembly::perf(h.clone())
        .perf_vcpu_counters(0, None)
        .unwrap();
    vc.start(CounterIndex::Fixed(1), &config(0x3C, 0));
    vc.sched_in_pending(0);
    let _ = vc.drain(CounterIndex::Fixed(1));
    if !real_cpu_pmu {
        assert_eq!(vc.snapshot().counters[0].state, CounterState::Degraded);
    }
}
