//! Tests that boot guests on real KVM. They run wherever `/dev/kvm` opens;
//! elsewhere they are reported as ignored, with a banner saying why.

mod api;
mod bench;
mod boot;
mod demo;
mod faults;
mod harness;
mod mux;
#[path = "../common/openapi.rs"]
mod openapi;
mod operators;
mod pmu;
#[path = "../common/prometheus.rs"]
mod prometheus;
mod sandbox;

use libtest_mimic::{Arguments, Trial};

/// A test that boots guests: `Ok` passes, `Err` fails with the message.
pub type KvmTest = fn() -> Result<(), String>;

fn main() {
    let mut args = Arguments::from_args();
    // One guest at a time unless asked otherwise: each boots vCPUs on a
    // small host, and the cycle-rate checks measure the vCPU's share of it.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let kvm = harness::kvm_available();
    if !kvm {
        eprintln!("\n*** /dev/kvm is not available: every guest-booting test is SKIPPED (reported as ignored) ***\n");
    }
    let trials = boot::TESTS
        .iter()
        .chain(pmu::TESTS)
        .chain(mux::TESTS)
        .chain(api::TESTS)
        .chain(demo::TESTS)
        .chain(faults::TESTS)
        .chain(bench::TESTS)
        .chain(sandbox::TESTS)
        .chain(operators::TESTS)
        .map(|&(name, f)| {
            Trial::test(name, move || f().map_err(Into::into)).with_ignored_flag(!kvm)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
