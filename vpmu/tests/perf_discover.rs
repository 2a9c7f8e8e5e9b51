//! Discovery from a fake sysfs and a fake CPUID leaf 0xA.

mod perf_common;

use perf_common::*;
use vpmu::host::perf::{CpuInfo, PerfHost, PmuPlan, Vendor};
use vpmu::host::profile::PmuKind;
use vpmu::host::EventName;

#[test]
fn host_with_a_cpu_pmu() {
    let fs = FakeSysfs::new("cpu");
    fs.software_pmus().pmu("cpu", 4, 8, None);
    fs.cap("cpu", "pmu_name", "skylake");
    let h = PerfHost::discover_in(fs.path(), &intel(4, 3), false, 2_000_000).unwrap();
    assert!(!h.software_emulated());
    assert_eq!(h.profile.pmus.len(), 1);
    let p = &h.profile.pmus[0];
    assert_eq!(
        (p.name.as_str(), p.kind, p.gp),
        ("cpu", PmuKind::Hardware, 4)
    );
    assert_eq!(
        p.fixed,
        vec![
            EventName::Instructions,
            EventName::Cycles,
            EventName::RefCycles
        ]
    );
    assert_eq!(p.mux_interval_ms, 8);
    assert_eq!(
        h.plans,
        vec![PmuPlan::Core {
            name: "cpu".into(),
            perf_type: 4,
            raw: true,
            hybrid: false
        }]
    );
    let cpu = h.sysfs.iter().find(|s| s.name == "cpu").unwrap();
    assert_eq!(
        cpu.caps.get("pmu_name").map(String::as_str),
        Some("skylake")
    );
    // Every architectural event maps to the cpu PMU; fixed events may also
    // use their fixed counter.
    let t = h.event_table();
    for e in EventName::ALL {
        let m = t.get(e).unwrap();
        assert_eq!(m.pmu, 0);
        assert!(!m.software);
    }
    assert_eq!(t.get(EventName::Cycles).unwrap().mask, 0b10_1111);
    assert_eq!(t.get(EventName::Branches).unwrap().mask, 0b1111);
    assert!(h.unavailable_events().is_empty());
    let pmus = h.host_pmus();
    assert!(pmus[0].kind() == PmuKind::Hardware);
    assert_eq!(pmus[0].capacity().counters(), 7);
}

#[test]
fn nmi_watchdog_holds_one_counter() {
    let fs = FakeSysfs::new("nmi");
    fs.software_pmus().pmu("cpu", 4, 4, None);
    let h = PerfHost::discover_in(fs.path(), &intel(8, 4), true, 2_000_000).unwrap();
    let p = &h.profile.pmus[0];
    assert_eq!(p.gp, 8);
    assert_eq!(
        p.fixed,
        vec![
            EventName::Instructions,
            EventName::RefCycles,
            EventName::TopdownSlots
        ]
    );
    // Without fixed counters the watchdog takes a general-purpose one.
    let v1 = intel_cpu(leaf_0a(1, 2, 0, 0));
    let h = PerfHost::discover_in(fs.path(), &v1, true, 2_000_000).unwrap();
    assert_eq!(
        (h.profile.pmus[0].gp, h.profile.pmus[0].fixed.len()),
        (1, 0)
    );
}

#[test]
fn cpuid_missing_events_are_unavailable() {
    let fs = FakeSysfs::new("ebx");
    fs.software_pmus().pmu("cpu", 4, 4, None);
    // EBX bit 4 (LLC misses) and bit 6 (branch misses) set: missing.
    let h = PerfHost::discover_in(fs.path(), &intel_cpu(leaf_0a(4, 4, 3, 0x50)), false, 1).unwrap();
    assert_eq!(
        h.unavailable_events(),
        vec![EventName::CacheMisses, EventName::BranchMisses]
    );
    // A shorter EBX length (7): topdown slots is missing too.
    let mut leaf = leaf_0a(4, 4, 3, 0x50);
    leaf[0] = (leaf[0] & 0x00FF_FFFF) | 7 << 24;
    let h = PerfHost::discover_in(fs.path(), &intel_cpu(leaf), false, 1).unwrap();
    assert_eq!(h.unavailable_events().len(), 3);
}

#[test]
fn hybrid_host() {
    let fs = FakeSysfs::new("hybrid");
    fs.software_pmus()
        .pmu("cpu_atom", 10, 8, Some("16-23"))
        .pmu("cpu_core", 4, 4, Some("0-15"));
    let h = PerfHost::discover_in(fs.path(), &intel(8, 4), false, 3_000_000).unwrap();
    let names: Vec<&str> = h.profile.pmus.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["cpu_core", "cpu_atom"]);
    assert!(h.profile.pmus.iter().all(|p| p.kind == PmuKind::Hardware));
    assert_eq!(h.profile.pmus[1].mux_interval_ms, 8);
    assert_eq!(
        h.plans,
        vec![
            PmuPlan::Core {
                name: "cpu_core".into(),
                perf_type: 4,
                raw: true,
                hybrid: true
            },
            PmuPlan::Core {
                name: "cpu_atom".into(),
                perf_type: 10,
                raw: true,
                hybrid: true
            },
        ]
    );
    assert_eq!(
        h.sysfs
            .iter()
            .find(|s| s.name == "cpu_atom")
            .and_then(|s| s.cpus.clone())
            .as_deref(),
        Some("16-23")
    );
    let t = h.event_table();
    assert_eq!(t.get(EventName::Cycles).unwrap().pmu, 0);
    assert_eq!(h.host_pmus().len(), 2);
}

#[test]
fn amd_host_uses_generic_events() {
    let fs = FakeSysfs::new("amd");
    fs.software_pmus().pmu("cpu", 4, 4, None);
    let amd = CpuInfo {
        vendor: Vendor::Amd,
        leaf_0a: [0; 4],
        amd_perfctr_core: true,
    };
    let h = PerfHost::discover_in(fs.path(), &amd, false, 2_000_000).unwrap();
    assert_eq!(h.profile.pmus[0].gp, 6);
    assert_eq!(h.unavailable_events(), vec![EventName::TopdownSlots]);
    assert!(matches!(h.plans[0], PmuPlan::Core { raw: false, .. }));
}

/// This project's machines: software, tracepoint, breakpoint, msr, uprobe.
#[test]
fn host_without_a_hardware_pmu() {
    let fs = FakeSysfs::new("none");
    fs.software_pmus();
    fs.pmu("software", 1, 16, None);
    // Even an Intel CPUID with counters does not help without a core PMU.
    let h = PerfHost::discover_in(fs.path(), &intel(4, 3), false, 2_500_000).unwrap();
    assert!(h.software_emulated());
    assert_eq!(h.plans, vec![PmuPlan::TaskClock]);
    let p = &h.profile.pmus[0];
    assert_eq!((p.name.as_str(), p.kind), ("software", PmuKind::Software));
    assert_eq!(p.mux_interval_ms, 16);
    let t = h.event_table();
    for e in EventName::ALL {
        let m = t.get(e);
        if matches!(e, EventName::Cycles | EventName::RefCycles) {
            let m = m.unwrap();
            assert!(m.software);
            assert!((m.rate_per_ns - 2.5).abs() < 1e-9);
        } else {
            assert!(m.is_none(), "{e} must be unavailable");
        }
    }
    assert_eq!(h.unavailable_events().len(), 6);
    assert!(h.host_pmus()[0].is_software());
    // A core PMU but no architectural PMU in CPUID: the same.
    fs.pmu("cpu", 4, 4, None);
    let h = PerfHost::discover_in(fs.path(), &intel_cpu([0; 4]), false, 1).unwrap();
    assert!(h.software_emulated());
    // An empty (or missing) devices directory.
    let h = PerfHost::discover_in(&fs.path().join("nope"), &intel(4, 3), false, 1).unwrap();
    assert!(h.software_emulated());
}

/// The real host: on this project's machines there is no hardware PMU.
#[test]
fn real_host_discovers() {
    let h = PerfHost::discover(2_000_000).unwrap();
    assert!(h.sysfs.iter().any(|p| p.name == "software"));
    if !h
        .sysfs
        .iter()
        .any(|p| p.name == "cpu" || p.name.starts_with("cpu_"))
    {
        assert!(h.software_emulated());
    }
}
