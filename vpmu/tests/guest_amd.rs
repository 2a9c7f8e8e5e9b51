//! The AMD64 guest PMU model: one test per APM rule (and per place where we
//! chose between the APM and KVM), against a recording count source.

mod guest_mock;

use guest_mock::{Call, Mock};
use vpmu::arch::amd::msr::{
    perf_ctl, PERF_CNTR_GLOBAL_CTL, PERF_CNTR_GLOBAL_STATUS, PERF_CNTR_GLOBAL_STATUS_CLR,
    PERF_CNTR_GLOBAL_STATUS_SET, PERF_CTL0, PERF_CTR0, PERF_CTR_LEGACY0, PERF_EVT_SEL0,
};
use vpmu::arch::msr::{IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, IA32_PMC0};
use vpmu::config::{PmuArch, PmuConfig};
use vpmu::guest::{GpSelect, GuestPmu};
use vpmu::source::{CounterIndex, EventCode};

const CYCLES: u64 = 0x76 | perf_ctl::USR | perf_ctl::OS | perf_ctl::EN;
const MASK48: u64 = (1 << 48) - 1;

fn ctl(n: u32) -> u32 {
    PERF_CTL0 + 2 * n
}

fn ctr(n: u32) -> u32 {
    PERF_CTR0 + 2 * n
}

fn pmu(version: u8, gp: u8) -> (GuestPmu, Mock) {
    let cfg = PmuConfig::amd(version, gp);
    assert_eq!(cfg.validate(), Ok(()));
    (GuestPmu::new(cfg), Mock::new())
}

#[test]
fn legacy_msrs_exist_below_the_counter_count_in_every_version() {
    for v in 0..=2 {
        for gp in 1..=PmuConfig::amd_max_counters(v) {
            let (mut p, mut m) = pmu(v, gp);
            for i in 0..4u32 {
                let exists = i < u32::from(gp);
                assert_eq!(
                    p.rdmsr(PERF_EVT_SEL0 + i, &mut m).is_ok(),
                    exists,
                    "v{v} gp{gp} sel{i}"
                );
                assert_eq!(p.rdmsr(PERF_CTR_LEGACY0 + i, &mut m).is_ok(), exists);
                assert_eq!(p.wrmsr(PERF_EVT_SEL0 + i, 0, &mut m).is_ok(), exists);
                assert_eq!(p.wrmsr(PERF_CTR_LEGACY0 + i, 0, &mut m).is_ok(), exists);
            }
        }
    }
}

#[test]
fn core_msrs_need_perfctr_core() {
    let (mut p, mut m) = pmu(0, 4);
    for n in 0..6 {
        assert!(p.rdmsr(ctl(n), &mut m).is_err());
        assert!(p.wrmsr(ctr(n), 1, &mut m).is_err());
    }
    for v in 1..=2 {
        for gp in 1..=6u8 {
            let (mut p, mut m) = pmu(v, gp);
            for n in 0..6u32 {
                let exists = n < u32::from(gp);
                assert_eq!(
                    p.rdmsr(ctl(n), &mut m).is_ok(),
                    exists,
                    "v{v} gp{gp} ctl{n}"
                );
                assert_eq!(p.wrmsr(ctr(n), 5, &mut m).is_ok(), exists);
            }
        }
    }
}

#[test]
fn legacy_msrs_alias_the_first_four_core_pairs() {
    let (mut p, mut m) = pmu(2, 6);
    for n in 0..4u32 {
        let sel = 0x1213_00C0 | u64::from(n);
        p.wrmsr(PERF_EVT_SEL0 + n, sel, &mut m).unwrap();
        assert_eq!(p.rdmsr(ctl(n), &mut m), Ok(sel));
        p.wrmsr(ctr(n), 1000 + u64::from(n), &mut m).unwrap();
        assert_eq!(
            p.rdmsr(PERF_CTR_LEGACY0 + n, &mut m),
            Ok(1000 + u64::from(n))
        );
    }
}

#[test]
fn global_msrs_need_perfmon_v2() {
    for v in 0..=1 {
        let (mut p, mut m) = pmu(v, 4);
        for msr in [
            PERF_CNTR_GLOBAL_STATUS,
            PERF_CNTR_GLOBAL_CTL,
            PERF_CNTR_GLOBAL_STATUS_CLR,
            PERF_CNTR_GLOBAL_STATUS_SET,
        ] {
            assert!(p.rdmsr(msr, &mut m).is_err(), "v{v} {msr:#x}");
            assert!(p.wrmsr(msr, 0, &mut m).is_err());
        }
    }
    let (mut p, mut m) = pmu(2, 5);
    assert_eq!(
        p.rdmsr(PERF_CNTR_GLOBAL_CTL, &mut m),
        Ok(0x1F),
        "reset enables all"
    );
    assert_eq!(p.rdmsr(PERF_CNTR_GLOBAL_STATUS, &mut m), Ok(0));
    assert!(
        p.wrmsr(PERF_CNTR_GLOBAL_STATUS, 0, &mut m).is_err(),
        "read-only"
    );
    assert!(
        p.wrmsr(PERF_CNTR_GLOBAL_CTL, 0x20, &mut m).is_err(),
        "absent counter"
    );
    p.wrmsr(PERF_CNTR_GLOBAL_STATUS_SET, 0x11, &mut m).unwrap();
    assert_eq!(p.rdmsr(PERF_CNTR_GLOBAL_STATUS, &mut m), Ok(0x11));
    assert_eq!(
        p.rdmsr(PERF_CNTR_GLOBAL_STATUS_SET, &mut m),
        Ok(0),
        "write-only"
    );
    p.wrmsr(PERF_CNTR_GLOBAL_STATUS_CLR, 0x01, &mut m).unwrap();
    assert_eq!(p.rdmsr(PERF_CNTR_GLOBAL_STATUS, &mut m), Ok(0x10));
    assert_eq!(p.rdmsr(PERF_CNTR_GLOBAL_STATUS_CLR, &mut m), Ok(0));
    assert!(p
        .wrmsr(PERF_CNTR_GLOBAL_STATUS_CLR, 1 << 5, &mut m)
        .is_err());
    assert!(p
        .wrmsr(PERF_CNTR_GLOBAL_STATUS_SET, 1 << 63, &mut m)
        .is_err());
    assert!(!p.take_pmi(), "STATUS_SET raises no PMI");
}

#[test]
fn reserved_event_select_bits_raise_gp_and_change_nothing() {
    let (mut p, mut m) = pmu(2, 6);
    p.wrmsr(ctl(0), CYCLES, &mut m).unwrap();
    for bit in [19, 21, 36, 37, 38, 39, 42, 50, 63] {
        assert!(
            p.wrmsr(ctl(0), CYCLES | 1 << bit, &mut m).is_err(),
            "bit {bit}"
        );
        assert!(
            p.wrmsr(PERF_EVT_SEL0, 1 << bit, &mut m).is_err(),
            "legacy bit {bit}"
        );
    }
    assert_eq!(p.rdmsr(ctl(0), &mut m), Ok(CYCLES));
    let all = perf_ctl::DEFINED;
    p.wrmsr(ctl(1), all, &mut m).unwrap();
    assert_eq!(
        p.rdmsr(ctl(1), &mut m),
        Ok(all),
        "every defined bit reads back"
    );
}

#[test]
fn counters_are_48_bits_wide() {
    let (mut p, mut m) = pmu(1, 6);
    p.wrmsr(ctr(2), u64::MAX, &mut m).unwrap();
    assert_eq!(p.rdmsr(ctr(2), &mut m), Ok(MASK48));
    p.wrmsr(PERF_CTR_LEGACY0 + 1, 0xFFFF_8000_0000_0001, &mut m)
        .unwrap();
    assert_eq!(p.rdmsr(ctr(1), &mut m), Ok(0x8000_0000_0001));
}

#[test]
fn counting_needs_en_a_privilege_level_and_no_lone_host_or_guest_only() {
    let c = CounterIndex::Gp(0);
    let cases = [
        (CYCLES, true),
        (CYCLES & !perf_ctl::EN, false),
        (CYCLES & !(perf_ctl::USR | perf_ctl::OS), false),
        (CYCLES & !perf_ctl::USR, true),
        (CYCLES | perf_ctl::HOST_ONLY, false),
        (CYCLES | perf_ctl::GUEST_ONLY, false),
        (CYCLES | perf_ctl::HOST_ONLY | perf_ctl::GUEST_ONLY, true),
    ];
    for (sel, counts) in cases {
        let (mut p, mut m) = pmu(2, 6);
        p.wrmsr(ctl(0), sel, &mut m).unwrap();
        assert_eq!(p.is_running(c), counts, "{sel:#x}");
        assert_eq!(m.running.contains_key(&c), counts);
    }
}

#[test]
fn the_source_sees_the_12_bit_event_select() {
    let (mut p, mut m) = pmu(1, 6);
    let sel = CYCLES & !0xFF | 0x2_0000_00AB | 0x5 << 8;
    p.wrmsr(ctl(3), sel, &mut m).unwrap();
    let started = m.starts();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, CounterIndex::Gp(3));
    assert_eq!(
        started[0].1.event,
        EventCode {
            select: 0x2AB,
            umask: 5
        }
    );
}

#[test]
fn global_ctl_gates_counting_with_perfmon_v2() {
    let (mut p, mut m) = pmu(2, 6);
    p.wrmsr(ctl(1), CYCLES, &mut m).unwrap();
    assert!(p.is_running(CounterIndex::Gp(1)));
    p.wrmsr(PERF_CNTR_GLOBAL_CTL, 0x3D, &mut m).unwrap();
    assert!(!p.is_running(CounterIndex::Gp(1)));
    assert!(m.take().contains(&Call::Stop(CounterIndex::Gp(1))));
    p.wrmsr(PERF_CNTR_GLOBAL_CTL, 0x3F, &mut m).unwrap();
    assert!(p.is_running(CounterIndex::Gp(1)));
    // Without PerfMonV2 there is no global gate: EN alone counts.
    let (mut p, mut m) = pmu(1, 6);
    p.wrmsr(ctl(1), CYCLES, &mut m).unwrap();
    assert!(p.is_running(CounterIndex::Gp(1)));
}

#[test]
fn overflow_sets_status_with_v2_and_int_raises_a_pmi() {
    for v in 0..=2 {
        let (mut p, mut m) = pmu(v, 4);
        let c = CounterIndex::Gp(2);
        p.wrmsr(PERF_CTR_LEGACY0 + 2, MASK48 - 9, &mut m).unwrap();
        p.wrmsr(PERF_EVT_SEL0 + 2, CYCLES | perf_ctl::INT, &mut m)
            .unwrap();
        let (_, cfg) = m.starts()[0];
        assert_eq!(cfg.overflow_after, Some(10));
        m.feed(c, 15);
        assert_eq!(p.rdmsr(PERF_CTR_LEGACY0 + 2, &mut m), Ok(5));
        assert!(p.take_pmi(), "v{v}");
        let status = p.rdmsr(PERF_CNTR_GLOBAL_STATUS, &mut m);
        if v == 2 {
            assert_eq!(status, Ok(1 << 2));
        } else {
            assert!(status.is_err());
        }
    }
}

#[test]
fn vpmu_off_and_the_other_vendor_raise_gp() {
    let off = PmuConfig {
        enabled: false,
        ..PmuConfig::amd(2, 6)
    };
    let mut m = Mock::new();
    let mut p = GuestPmu::new(off);
    for msr in [
        PERF_EVT_SEL0,
        PERF_CTR_LEGACY0,
        ctl(0),
        ctr(5),
        PERF_CNTR_GLOBAL_CTL,
    ] {
        assert!(p.rdmsr(msr, &mut m).is_err(), "{msr:#x}");
        assert!(p.wrmsr(msr, 0, &mut m).is_err());
    }
    let (mut amd, mut m) = pmu(2, 6);
    for msr in [IA32_PMC0, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL] {
        assert!(amd.rdmsr(msr, &mut m).is_err(), "AMD PMU answers {msr:#x}");
    }
    let mut intel = GuestPmu::new(PmuConfig::default());
    for msr in [PERF_EVT_SEL0, ctl(0), PERF_CNTR_GLOBAL_CTL] {
        assert!(
            intel.rdmsr(msr, &mut m).is_err(),
            "Intel PMU answers {msr:#x}"
        );
    }
}

#[test]
fn retired_instructions_count_emulated_instructions() {
    let (mut p, mut m) = pmu(2, 6);
    let inst = 0xC0 | perf_ctl::OS | perf_ctl::EN;
    p.wrmsr(ctl(0), inst, &mut m).unwrap();
    p.wrmsr(ctl(1), CYCLES, &mut m).unwrap();
    p.retire_emulated_instruction(true);
    p.retire_emulated_instruction(false);
    assert_eq!(p.rdmsr(ctr(0), &mut m), Ok(1), "OS only: the CPL 0 one");
    assert_eq!(p.rdmsr(ctr(1), &mut m), Ok(0));
}

#[test]
fn snapshot_names_amd_counters() {
    let (mut p, mut m) = pmu(2, 6);
    p.wrmsr(ctl(4), CYCLES, &mut m).unwrap();
    let s = p.snapshot();
    assert_eq!(s.arch, PmuArch::Amd);
    assert_eq!(s.gp.len(), 6);
    assert!(s.fixed.is_empty());
    assert_eq!(s.gp[4].name, "perf_ctr4");
    assert_eq!(s.gp[4].event_name.as_deref(), Some("cycles"));
    assert!(s.gp[4].running);
    assert!(matches!(s.gp[4].select, GpSelect::Amd(c) if c.en && c.event == 0x76));
    let json = serde_json::to_string(&s).unwrap();
    let back: vpmu::guest::GuestPmuState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!(m.violations, Vec::<String>::new());
}
