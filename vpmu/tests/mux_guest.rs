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
