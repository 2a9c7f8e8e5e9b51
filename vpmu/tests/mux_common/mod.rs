//! Helpers shared by the multiplexer tests (included with `mod`).
#![allow(dead_code)]

use std::sync::Arc;

use vpmu::core::{HostPmu, MuxPolicy, VcpuCounters};
use vpmu::host::assembly::HostAssembly;
use vpmu::host::profile::Profile;
use vpmu::host::sim::SimBackend;
use vpmu::source::{CounterConfig, EventCode};

pub const MS: u64 = 1_000_000;

pub fn cfg(select: u16, umask: u8) -> CounterConfig {
    CounterConfig::counting(EventCode { select, umask })
}

pub const CYCLES: (u16, u8) = (0x3C, 0x00);
pub const INSTRUCTIONS: (u16, u8) = (0xC0, 0x00);
pub const LLC_REFS: (u16, u8) = (0x2E, 0x4F);
pub const LLC_MISSES: (u16, u8) = (0x2E, 0x41);
pub const BRANCHES: (u16, u8) = (0xC4, 0x00);
pub const BRANCH_MISSES: (u16, u8) = (0xC5, 0x00);

pub fn vcpu(profile: &str, policy: MuxPolicy) -> (VcpuCounters<SimBackend>, Vec<Arc<HostPmu>>) {
    let p = Profile::builtin(profile).expect("profile");
    let host = HostAssembly::sim(Arc::new(p)).with_policy(policy);
    let v = host.sim_vcpu_counters(0).expect("simulated host");
    (v, host.pmus().to_vec())
}

/// Runs the vCPU from `now` through `rotations` rotation deadlines (or for
/// `fallback` ns if nothing needs rotation), like a VMM whose timers fire
/// exactly on time. Returns the new run time.
pub fn run_rotations(
    v: &mut VcpuCounters<SimBackend>,
    mut now: u64,
    rotations: u32,
    fallback: u64,
) -> u64 {
    v.sched_in_pending(now);
    for _ in 0..rotations {
        now = v.next_rotation_deadline().unwrap_or(now + fallback);
        v.advance(now);
        v.tick(now);
        v.sched_in_pending(now);
        v.context().backend().verify().expect("sim invariants");
    }
    now
}
