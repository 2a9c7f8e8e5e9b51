//! End to end: the guest PMU model fed by the multiplexer over a simulated
//! host PMU, programmed through MSRs like a guest would.

mod mux_common;
use mux_common::*;

use vpmu::config::PmuConfig;
use vpmu::core::MuxPolicy;
use vpmu::guest::GuestPmu;
use vpmu::host::EventName;

const PERFEVTSEL0: u32 = 0x186;
const PMC0: u32 = 0xC1;
const GLOBAL_CTRL: u32 = 0x38F;

#[test]
fn guest_counts_through_the_multiplexer() {
    let (mut v, pmus) = vcpu("intel-4gp-3fixed", MuxPolicy::default());
    let mut g = GuestPmu::new(PmuConfig::default());
    // 8 guest GP counters counting branches (USR|OS|EN), 4 host GP counters.
    let evtsel = 0xC4u64 | (1 << 16) | (1 << 17) | (1 << 22);
    for i in 0..8 {
        g.wrmsr(PERFEVTSEL0 + i, evtsel, &mut v).unwrap();
    }
    g.wrmsr(GLOBAL_CTRL, 0xff, &mut v).unwrap();
    let now = run_rotations(&mut v, 0, 20, 4 * MS);
    let truth = v.context().backend().truth(0, EventName::Branches, 0, now);
    for i in 0..8 {
        let value = g.rdmsr(PMC0 + i, &mut v).unwrap();
        let err = (value as f64 - truth as f64).abs() / truth as f64;
        assert!(err < 0.02, "PMC{i} = {value}, truth {truth}");
    }
    assert_eq!(pmus[0].rotations(), 20);
}

#[test]
fn amd_guest_six_counters_on_four_host_counters() {
    use vpmu::arch::amd::msr::{perf_ctl, PERF_CTL0, PERF_CTR0};
    use vpmu::config::PmuArch;
    let (v, pmus) = vcpu("amd-4gp", MuxPolicy::default());
    let mut v = v.with_guest_arch(PmuArch::Amd);
    let mut g = GuestPmu::new(PmuConfig::amd(2, 6));
    // Six PERF_CTLs on retired branches (PMCx0C2), USR|OS|EN.
    let ctl = 0xC2u64 | perf_ctl::USR | perf_ctl::OS | perf_ctl::EN;
    for i in 0..6 {
        g.wrmsr(PERF_CTL0 + 2 * i, ctl, &mut v).unwrap();
    }
    let now = run_rotations(&mut v, 0, 30, 4 * MS);
    let truth = v.context().backend().truth(0, EventName::Branches, 0, now);
    for i in 0..6 {
        let value = g.rdmsr(PERF_CTR0 + 2 * i, &mut v).unwrap();
        let err = (value as f64 - truth as f64).abs() / truth as f64;
        assert!(err < 0.02, "PERF_CTR{i} = {value}, truth {truth}");
    }
    let stats = v.snapshot();
    assert_eq!(stats.counters.len(), 6);
    for c in &stats.counters {
        assert!(c.name.starts_with("perf_ctr"), "{}", c.name);
        assert_eq!(c.event, "branches");
        assert!(
            (c.running_pct - 400.0 / 6.0).abs() < 3.0,
            "{}: {}%",
            c.name,
            c.running_pct
        );
    }
    assert_eq!(pmus[0].rotations(), 30);
}
