//! Translation of guest events to `perf_event_attr` for a host with a `cpu`
//! PMU, a hybrid host, an AMD host and a host without a hardware PMU.

use perf_event_open_sys::bindings as b;
use vpmu::host::perf::translate::{arch_code, raw_config, PERIOD_NEVER};
use vpmu::host::perf::{translate, PmuPlan, Unit};
use vpmu::host::{EventName, Modifiers};

fn cpu() -> PmuPlan {
    PmuPlan::Core {
        name: "cpu".into(),
        perf_type: 4,
        raw: true,
        hybrid: false,
    }
}
fn core(ty: u32, name: &str) -> PmuPlan {
    PmuPlan::Core {
        name: name.into(),
        perf_type: ty,
        raw: true,
        hybrid: true,
    }
}
fn amd() -> PmuPlan {
    PmuPlan::Core {
        name: "cpu".into(),
        perf_type: 4,
        raw: false,
        hybrid: false,
    }
}
fn amd_hybrid(ty: u32) -> PmuPlan {
    PmuPlan::Core {
        name: "cpu_x".into(),
        perf_type: ty,
        raw: false,
        hybrid: true,
    }
}

/// Every combination of the guest's flags.
fn all_modifiers() -> Vec<Modifiers> {
    let mut v = Vec::new();
    for bits in 0..32u32 {
        for cmask in [0u8, 1, 0xFF] {
            v.push(Modifiers {
                usr: bits & 1 != 0,
                os: bits & 2 != 0,
                edge: bits & 4 != 0,
                inv: bits & 8 != 0,
                any_thread: bits & 16 != 0,
                cmask,
            });
        }
    }
    v
}

const ARCH: [(EventName, u64); 8] = [
    (EventName::Cycles, 0x003C),
    (EventName::Instructions, 0x00C0),
    (EventName::RefCycles, 0x013C),
    (EventName::CacheReferences, 0x4F2E),
    (EventName::CacheMisses, 0x412E),
    (EventName::Branches, 0x00C4),
    (EventName::BranchMisses, 0x00C5),
    (EventName::TopdownSlots, 0x01A4),
];

#[test]
fn arch_codes_match_the_sdm() {
    for (e, code) in ARCH {
        let c = arch_code(e);
        assert_eq!(c.select as u64 | (c.umask as u64) << 8, code, "{e}");
        assert_eq!(EventName::from_code(c), Some(e));
    }
}

#[test]
fn cpu_pmu_raw_table() {
    for (e, code) in ARCH {
        for m in all_modifiers() {
            let s = translate(&cpu(), e, &m).unwrap();
            assert_eq!(s.type_, 4, "{e} on cpu is PERF_TYPE_RAW");
            let exotic = m.edge || m.inv || m.cmask != 0;
            let want = match e {
                EventName::RefCycles if !exotic => 0x0300,
                EventName::TopdownSlots if !exotic => 0x0400,
                _ => code | (m.edge as u64) << 18 | (m.inv as u64) << 23 | (m.cmask as u64) << 24,
            };
            assert_eq!(s.config, want, "{e} {m:?}");
            // AnyThread never reaches the host; USR/OS/INT/EN are not in config.
            assert_eq!(
                s.config & (1 << 21 | 1 << 16 | 1 << 17 | 1 << 20 | 1 << 22),
                0
            );
            assert_eq!(s.exclude_user, !m.usr);
            assert_eq!(s.exclude_kernel, !m.os);
            assert!(s.exclude_host, "a guest counts only guest execution");
            assert!(!s.exclude_guest);
            assert_eq!(s.silent, !m.usr && !m.os);
            assert_eq!(s.unit, Unit::Events);
        }
    }
}

#[test]
fn hybrid_uses_each_pmus_type() {
    for (ty, name) in [(4u32, "cpu_core"), (10, "cpu_atom")] {
        for (e, code) in ARCH {
            let s = translate(&core(ty, name), e, &Modifiers::plain()).unwrap();
            assert_eq!(s.type_, ty, "{e} on {name}");
            if !matches!(e, EventName::RefCycles | EventName::TopdownSlots) {
                assert_eq!(s.config, code);
            }
        }
    }
    // Generic events on a hybrid host name their PMU in config[63:32].
    let s = translate(
        &amd_hybrid(10),
        EventName::Instructions,
        &Modifiers::plain(),
    )
    .unwrap();
    assert_eq!(s.type_, b::PERF_TYPE_HARDWARE);
    assert_eq!(s.config, 10 << 32 | b::PERF_COUNT_HW_INSTRUCTIONS as u64);
}

#[test]
fn other_vendor_uses_generic_events() {
    let want = [
        (EventName::Cycles, Some(b::PERF_COUNT_HW_CPU_CYCLES)),
        (EventName::Instructions, Some(b::PERF_COUNT_HW_INSTRUCTIONS)),
        (EventName::RefCycles, Some(b::PERF_COUNT_HW_REF_CPU_CYCLES)),
        (
            EventName::CacheReferences,
            Some(b::PERF_COUNT_HW_CACHE_REFERENCES),
        ),
        (EventName::CacheMisses, Some(b::PERF_COUNT_HW_CACHE_MISSES)),
        (
            EventName::Branches,
            Some(b::PERF_COUNT_HW_BRANCH_INSTRUCTIONS),
        ),
        (
            EventName::BranchMisses,
            Some(b::PERF_COUNT_HW_BRANCH_MISSES),
        ),
        (EventName::TopdownSlots, None),
    ];
    for (e, id) in want {
        for m in all_modifiers() {
            let s = translate(&amd(), e, &m);
            let exotic = m.edge || m.inv || m.cmask != 0;
            match (id, exotic) {
                (Some(id), false) => {
                    let s = s.unwrap();
                    assert_eq!((s.type_, s.config), (b::PERF_TYPE_HARDWARE, id as u64));
                    assert_eq!(s.exclude_user, !m.usr);
                    assert_eq!(s.exclude_kernel, !m.os);
                    assert!(s.exclude_host);
                }
                // Never silently wrong: what cannot be expressed is unavailable.
                _ => assert!(s.is_none(), "{e} {m:?}"),
            }
        }
    }
}

#[test]
fn no_hardware_pmu_task_clock_table() {
    for (e, _) in ARCH {
        for m in all_modifiers() {
            let s = translate(&PmuPlan::TaskClock, e, &m);
            let exotic = m.edge || m.inv || m.cmask != 0;
            if matches!(e, EventName::Cycles | EventName::RefCycles) && !exotic {
                let s = s.unwrap();
                assert_eq!(s.type_, b::PERF_TYPE_SOFTWARE);
                assert_eq!(s.config, b::PERF_COUNT_SW_TASK_CLOCK as u64);
                assert_eq!(s.unit, Unit::TaskClockNs);
                assert!(!s.exclude_host && !s.exclude_user && !s.exclude_kernel);
                // Guest time is attributed to CPL 0: only OS counts it.
                assert_eq!(s.silent, !m.os);
            } else {
                assert!(
                    s.is_none(),
                    "{e} {m:?} is unavailable without a hardware PMU"
                );
            }
        }
    }
}

#[test]
fn attr_fields() {
    let m = Modifiers {
        usr: true,
        os: false,
        ..Modifiers::default()
    };
    let s = translate(&cpu(), EventName::Branches, &m).unwrap();
    let a = s.to_attr();
    assert_eq!(a.type_, 4);
    assert_eq!(a.config, 0xC4);
    assert_eq!(a.size as usize, std::mem::size_of::<b::perf_event_attr>());
    assert_eq!(a.disabled(), 1);
    assert_eq!(a.exclude_user(), 0);
    assert_eq!(a.exclude_kernel(), 1);
    assert_eq!(a.exclude_host(), 1);
    assert_eq!(a.exclude_guest(), 0);
    assert_eq!(a.inherit(), 0);
    assert_eq!(a.sample_period, PERIOD_NEVER);
    assert_eq!(
        a.read_format,
        (b::PERF_FORMAT_TOTAL_TIME_ENABLED | b::PERF_FORMAT_TOTAL_TIME_RUNNING) as u64
    );
    let full = Modifiers {
        usr: true,
        os: true,
        edge: true,
        inv: true,
        cmask: 3,
        any_thread: false,
    };
    assert_eq!(
        raw_config(arch_code(EventName::CacheMisses), &full),
        0x412E | 1 << 18 | 1 << 23 | 3 << 24
    );
}
