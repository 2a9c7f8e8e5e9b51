//! RDMSR/WRMSR semantics of the guest PMU, one SDM rule per test.

mod guest_mock;

use guest_mock::{Call, Mock};
use vpmu::arch::msr::*;
use vpmu::config::PmuConfig;
use vpmu::guest::{Gp, GuestPmu};
use vpmu::source::{CounterIndex, EventCode};

const W: u64 = 1 << 48;
const MASK: u64 = W - 1;
const EN_ALL: u64 = evtsel::EN | evtsel::OS | evtsel::USR;
const G0: CounterIndex = CounterIndex::Gp(0);
const G1: CounterIndex = CounterIndex::Gp(1);
const F0: CounterIndex = CounterIndex::Fixed(0);

fn cfg(version: u8, gp: u8, fixed: u8) -> PmuConfig {
    PmuConfig {
        version,
        gp_counters: gp,
        fixed_counters: fixed,
        ..Default::default()
    }
}

fn pmu(version: u8, gp: u8, fixed: u8) -> GuestPmu {
    let c = cfg(version, gp, fixed);
    c.validate().unwrap();
    GuestPmu::new(c)
}

fn all_trapped() -> impl Iterator<Item = u32> {
    trapped_ranges().iter().flat_map(|&(f, n)| f..f + n)
}

#[test]
fn vpmu_off_every_pmu_msr_gp() {
    let mut p = GuestPmu::new(PmuConfig::disabled());
    let mut m = Mock::new();
    for i in all_trapped() {
        assert_eq!(p.rdmsr(i, &mut m), Err(Gp), "{i:#x}");
        assert_eq!(p.wrmsr(i, 0, &mut m), Err(Gp), "{i:#x}");
    }
    p.retire_emulated_instruction(true);
    p.sync(&mut m);
    assert!(m.calls.is_empty());
    assert!(!p.take_pmi());
}

#[test]
fn non_pmu_msr_gp() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    for i in [0u32, 0x10, 0x1B, 0xC0, 0x18E, 0x30D, 0x393, 0x4C9, u32::MAX] {
        assert_eq!(p.rdmsr(i, &mut m), Err(Gp));
        assert_eq!(p.wrmsr(i, 0, &mut m), Err(Gp));
    }
}

#[test]
fn counter_msrs_exist_only_below_configured_counts() {
    let mut p = pmu(4, 3, 2);
    let mut m = Mock::new();
    for i in 0..8u32 {
        let ok = i < 3;
        assert_eq!(p.rdmsr(IA32_PMC0 + i, &mut m).is_ok(), ok);
        assert_eq!(p.rdmsr(IA32_A_PMC0 + i, &mut m).is_ok(), ok);
        assert_eq!(p.rdmsr(IA32_PERFEVTSEL0 + i, &mut m).is_ok(), ok);
        assert_eq!(p.wrmsr(IA32_PMC0 + i, 1, &mut m).is_ok(), ok);
        assert_eq!(p.wrmsr(IA32_A_PMC0 + i, 1, &mut m).is_ok(), ok);
        assert_eq!(p.wrmsr(IA32_PERFEVTSEL0 + i, 0x3C, &mut m).is_ok(), ok);
    }
    for i in 0..4u32 {
        let ok = i < 2;
        assert_eq!(p.rdmsr(IA32_FIXED_CTR0 + i, &mut m).is_ok(), ok);
        assert_eq!(p.wrmsr(IA32_FIXED_CTR0 + i, 1, &mut m).is_ok(), ok);
    }
    assert!(m.calls.is_empty());
}

#[test]
fn version_1_has_no_fixed_and_no_global_msrs() {
    let mut p = pmu(1, 2, 0);
    let mut m = Mock::new();
    for i in [
        IA32_FIXED_CTR0,
        IA32_FIXED_CTR_CTRL,
        IA32_PERF_GLOBAL_STATUS,
        IA32_PERF_GLOBAL_CTRL,
        IA32_PERF_GLOBAL_OVF_CTRL,
        IA32_PERF_GLOBAL_STATUS_SET,
        IA32_PERF_GLOBAL_INUSE,
    ] {
        assert_eq!(p.rdmsr(i, &mut m), Err(Gp), "{i:#x}");
        assert_eq!(p.wrmsr(i, 0, &mut m), Err(Gp), "{i:#x}");
    }
    assert_eq!(p.rdmsr(IA32_PMC0 + 1, &mut m), Ok(0));
    assert_eq!(
        p.rdmsr(IA32_PERF_CAPABILITIES, &mut m),
        Ok(PERF_CAP_FW_WRITE)
    );
    assert_eq!(p.wrmsr(IA32_A_PMC0, 5, &mut m), Ok(()));
}

#[test]
fn versions_2_and_3_lack_status_set_and_inuse() {
    for v in [2, 3] {
        let mut p = pmu(v, 4, 3);
        let mut m = Mock::new();
        for i in [
            IA32_FIXED_CTR_CTRL,
            IA32_PERF_GLOBAL_STATUS,
            IA32_PERF_GLOBAL_CTRL,
        ] {
            assert!(p.rdmsr(i, &mut m).is_ok());
        }
        assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_OVF_CTRL, &mut m), Ok(0));
        assert_eq!(p.wrmsr(IA32_PERF_GLOBAL_OVF_CTRL, 1, &mut m), Ok(()));
        for i in [IA32_PERF_GLOBAL_STATUS_SET, IA32_PERF_GLOBAL_INUSE] {
            assert_eq!(p.rdmsr(i, &mut m), Err(Gp));
            assert_eq!(p.wrmsr(i, 0, &mut m), Err(Gp));
        }
    }
    for v in [4, 5] {
        let mut p = pmu(v, 4, 3);
        let mut m = Mock::new();
        assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS_SET, &mut m), Ok(0));
        assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut m), Ok(0));
    }
}

#[test]
fn full_width_aliases_need_fw_write() {
    let c = PmuConfig {
        full_width_writes: false,
        ..Default::default()
    };
    let mut p = GuestPmu::new(c);
    let mut m = Mock::new();
    assert_eq!(p.rdmsr(IA32_PERF_CAPABILITIES, &mut m), Ok(0));
    assert_eq!(p.rdmsr(IA32_A_PMC0, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_A_PMC0, 1, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_PMC0, 1, &mut m), Ok(()));
}

#[test]
fn legacy_pmc_write_sign_extends_bit_31() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PMC0, 0x8000_0000, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(0xFFFF_8000_0000));
    assert_eq!(p.rdmsr(IA32_A_PMC0, &mut m), Ok(0xFFFF_8000_0000));
    p.wrmsr(IA32_PMC0, 0x7FFF_FFFF, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(0x7FFF_FFFF));
    // Bits 63:32 of the value are ignored.
    p.wrmsr(IA32_PMC0, 0xFFFF_FFFF_0000_0001, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(1));
    p.wrmsr(IA32_PMC0, 0x1234_FFFF_FFFF, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(MASK));
}

#[test]
fn full_width_and_fixed_writes_take_48_bits_gp_above() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_A_PMC0 + 1, 0x8000_0000, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PMC0 + 1, &mut m), Ok(0x8000_0000));
    p.wrmsr(IA32_A_PMC0 + 1, MASK, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_A_PMC0 + 1, &mut m), Ok(MASK));
    assert_eq!(p.wrmsr(IA32_A_PMC0 + 1, W, &mut m), Err(Gp));
    assert_eq!(p.rdmsr(IA32_A_PMC0 + 1, &mut m), Ok(MASK));
    p.wrmsr(IA32_FIXED_CTR0 + 2, 0x1_0000_0000, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_FIXED_CTR0 + 2, &mut m), Ok(0x1_0000_0000));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR0 + 2, W, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR0, u64::MAX, &mut m), Err(Gp));
}

#[test]
fn global_ctrl_reset_value_enables_gp_counters() {
    let mut m = Mock::new();
    assert_eq!(
        GuestPmu::new(PmuConfig::default()).rdmsr(IA32_PERF_GLOBAL_CTRL, &mut m),
        Ok(0xFF)
    );
    assert_eq!(pmu(2, 3, 3).rdmsr(IA32_PERF_GLOBAL_CTRL, &mut m), Ok(0x7));
    let mut p = pmu(5, 1, 4);
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_CTRL, &mut m), Ok(0x1));
    assert_eq!(p.rdmsr(IA32_FIXED_CTR_CTRL, &mut m), Ok(0));
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m), Ok(0));
    assert_eq!(p.rdmsr(IA32_PERFEVTSEL0, &mut m), Ok(0));
}

#[test]
fn global_ctrl_reserved_bits() {
    let mut p = pmu(4, 3, 2);
    let mut m = Mock::new();
    let ok = 0x7 | 0x3 << 32;
    assert_eq!(p.wrmsr(IA32_PERF_GLOBAL_CTRL, ok, &mut m), Ok(()));
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_CTRL, &mut m), Ok(ok));
    for bad in [1 << 3, 1 << 34, 1 << 48, 1 << 63, 1 << 31] {
        assert_eq!(p.wrmsr(IA32_PERF_GLOBAL_CTRL, ok | bad, &mut m), Err(Gp));
    }
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_CTRL, &mut m), Ok(ok));
    assert!(m.calls.is_empty());
}

#[test]
fn read_only_msrs_gp_on_write() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    for i in [
        IA32_PERF_GLOBAL_STATUS,
        IA32_PERF_GLOBAL_INUSE,
        IA32_PERF_CAPABILITIES,
    ] {
        assert_eq!(p.wrmsr(i, 0, &mut m), Err(Gp), "{i:#x}");
    }
    assert_eq!(p.rdmsr(IA32_PERF_CAPABILITIES, &mut m), Ok(1 << 13));
}

#[test]
fn status_reset_clears_and_status_set_sets_without_pmi() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    let bits = 0b1010_0101 | 0b101 << 32;
    p.wrmsr(IA32_PERF_GLOBAL_STATUS_SET, bits, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m), Ok(bits));
    assert!(!p.take_pmi());
    p.wrmsr(IA32_PERF_GLOBAL_STATUS_RESET, 0b101 | 1 << 32, &mut m)
        .unwrap();
    assert_eq!(
        p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m),
        Ok(0b1010_0000 | 1 << 34)
    );
    // ClrOvfBuf / ClrCondChgd are accepted.
    p.wrmsr(IA32_PERF_GLOBAL_STATUS_RESET, 3 << 62, &mut m)
        .unwrap();
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS_RESET, &mut m), Ok(0));
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS_SET, &mut m), Ok(0));
    assert!(m.calls.is_empty());
}

#[test]
fn status_reset_and_set_reserved_bits() {
    let mut p = pmu(4, 4, 3);
    let mut m = Mock::new();
    for bad in [1 << 4, 1 << 35, 1 << 55, 1 << 61, 1 << 40] {
        assert_eq!(p.wrmsr(IA32_PERF_GLOBAL_STATUS_RESET, bad, &mut m), Err(Gp));
    }
    for bad in [1 << 4, 1 << 35, 1 << 62, 1 << 63, 1 << 55] {
        assert_eq!(
            p.wrmsr(IA32_PERF_GLOBAL_STATUS_SET, bad | 1, &mut m),
            Err(Gp)
        );
    }
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m), Ok(0));
}

#[test]
fn inuse_reflects_programming() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    // Event select non-zero, even disabled: in use.
    p.wrmsr(IA32_PERFEVTSEL0 + 2, 0x3C, &mut m).unwrap();
    // Unit mask alone: not in use.
    p.wrmsr(IA32_PERFEVTSEL0 + 3, 0x100, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut m), Ok(1 << 2));
    // Fixed counter 1 enabled (USR only).
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x2 << 4, &mut m).unwrap();
    assert_eq!(
        p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut m),
        Ok(1 << 2 | 1 << 33)
    );
    // PMI bit alone on fixed counter 2: PMI_InUse but not counter in use.
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x2 << 4 | 0x8 << 8, &mut m)
        .unwrap();
    assert_eq!(
        p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut m),
        Ok(1 << 2 | 1 << 33 | 1 << 63)
    );
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 3, 0x100 | evtsel::INT, &mut m)
        .unwrap();
    assert_eq!(
        p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut m),
        Ok(1 << 2 | 1 << 63)
    );
}

#[test]
fn evtsel_reserved_bits() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    for b in 32..64 {
        assert_eq!(
            p.wrmsr(IA32_PERFEVTSEL0, 1 << b, &mut m),
            Err(Gp),
            "bit {b}"
        );
    }
    assert_eq!(
        p.wrmsr(IA32_PERFEVTSEL0, 0xFFFF_FFFF & !evtsel::EN, &mut m),
        Ok(())
    );
    assert_eq!(p.rdmsr(IA32_PERFEVTSEL0, &mut m), Ok(0xFFBF_FFFF));
}

#[test]
fn anythread_per_version() {
    let sel = 0x3C | EN_ALL | evtsel::ANY_THREAD;
    for v in [1, 2] {
        let mut p = pmu(v, 2, 0);
        let mut m = Mock::new();
        assert_eq!(p.wrmsr(IA32_PERFEVTSEL0, sel, &mut m), Err(Gp), "v{v}");
    }
    let mut p = pmu(2, 2, 1);
    let mut m = Mock::new();
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 0x4, &mut m), Err(Gp));
    for v in [3, 4] {
        let mut p = pmu(v, 2, 1);
        let mut m = Mock::new();
        p.wrmsr(IA32_PERFEVTSEL0, sel, &mut m).unwrap();
        p.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 | 1 << 32, &mut m).unwrap();
        p.wrmsr(IA32_FIXED_CTR_CTRL, 0x7, &mut m).unwrap();
        let s = m.starts();
        assert_eq!(s.len(), 2);
        assert!(s.iter().all(|(_, c)| c.modifiers.any_thread), "v{v}");
    }
    // Version 5: deprecated, accepted and read back, no effect.
    let mut p = pmu(5, 2, 1);
    let mut m = Mock::new();
    p.wrmsr(IA32_PERFEVTSEL0, sel, &mut m).unwrap();
    assert_eq!(p.rdmsr(IA32_PERFEVTSEL0, &mut m), Ok(sel));
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 | 1 << 32, &mut m).unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x7, &mut m).unwrap();
    let s = m.starts();
    assert_eq!(s.len(), 2);
    assert!(s.iter().all(|(_, c)| !c.modifiers.any_thread));
}

#[test]
fn fixed_ctr_ctrl_reserved_bits() {
    let mut p = pmu(4, 8, 3);
    let mut m = Mock::new();
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 0xFFF, &mut m), Ok(()));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 0x1000, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 1 << 63, &mut m), Err(Gp));
    assert_eq!(p.rdmsr(IA32_FIXED_CTR_CTRL, &mut m), Ok(0xFFF));
    // Version 2 without fixed counters: the MSR exists, every bit reserved.
    let mut p = pmu(2, 8, 0);
    assert_eq!(p.rdmsr(IA32_FIXED_CTR_CTRL, &mut m), Ok(0));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 1, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 0, &mut m), Ok(()));
}

#[test]
fn no_source_calls_for_accesses_that_change_nothing() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    // Event select of a disabled counter.
    p.wrmsr(IA32_PERFEVTSEL0, 0xC0 | evtsel::OS, &mut m)
        .unwrap();
    // EN but neither USR nor OS: counts nothing.
    p.wrmsr(IA32_PERFEVTSEL0 + 1, 0xC0 | evtsel::EN, &mut m)
        .unwrap();
    // GLOBAL_CTRL to the same value.
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0xFF, &mut m).unwrap();
    // Fixed counter enabled locally but not globally.
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x3, &mut m).unwrap();
    // Reads of stopped counters and control MSRs, writes of stopped counters.
    for i in all_trapped() {
        let _ = p.rdmsr(i, &mut m);
    }
    p.wrmsr(IA32_PMC0, 5, &mut m).unwrap();
    p.wrmsr(IA32_FIXED_CTR0, 5, &mut m).unwrap();
    p.sync(&mut m);
    assert!(m.calls.is_empty(), "{:?}", m.calls);
    // A running counter: rewriting its event select with the same value,
    // reading control MSRs, and enabling an unrelated disabled counter
    // globally do not touch it.
    p.wrmsr(IA32_PERFEVTSEL0 + 2, 0x3C | EN_ALL, &mut m)
        .unwrap();
    assert_eq!(m.take().len(), 1);
    p.wrmsr(IA32_PERFEVTSEL0 + 2, 0x3C | EN_ALL, &mut m)
        .unwrap();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0xFF | 1 << 33, &mut m)
        .unwrap();
    let _ = p.rdmsr(IA32_PERFEVTSEL0 + 2, &mut m);
    let _ = p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m);
    let _ = p.rdmsr(IA32_PERF_GLOBAL_INUSE, &mut m);
    assert!(m.calls.is_empty(), "{:?}", m.calls);
}

#[test]
fn enable_reconfigure_disable_gp_counter() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(
        IA32_PERFEVTSEL0,
        0x412E | evtsel::EN | evtsel::USR | evtsel::EDGE | 3 << 24,
        &mut m,
    )
    .unwrap();
    let calls = m.take();
    assert_eq!(calls.len(), 1);
    let Call::Start(G0, c) = calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        c.event,
        EventCode {
            select: 0x2E,
            umask: 0x41
        }
    );
    assert!(
        c.modifiers.usr
            && !c.modifiers.os
            && c.modifiers.edge
            && !c.modifiers.inv
            && !c.modifiers.any_thread
    );
    assert_eq!(c.modifiers.cmask, 3);
    assert_eq!(c.overflow_after, None);
    assert!(p.is_running(G0));

    // New event: drain, then start.
    m.feed(G0, 7);
    p.wrmsr(IA32_PERFEVTSEL0, 0xC0 | EN_ALL, &mut m).unwrap();
    let calls = m.take();
    assert_eq!(calls[0], Call::Drain(G0, 7));
    assert!(
        matches!(calls[1], Call::Start(G0, c) if c.modifiers.os && c.modifiers.usr && c.event.select == 0xC0)
    );
    assert_eq!(calls.len(), 2);

    // Disable: drain, stop; the count stays.
    m.feed(G0, 3);
    p.wrmsr(IA32_PERFEVTSEL0, 0xC0 | evtsel::USR | evtsel::OS, &mut m)
        .unwrap();
    assert_eq!(m.take(), vec![Call::Drain(G0, 3), Call::Stop(G0)]);
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(10));
    assert!(m.calls.is_empty());
    assert!(m.violations.is_empty(), "{:?}", m.violations);
}

#[test]
fn global_ctrl_starts_and_stops() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 1, 0xC4 | EN_ALL, &mut m)
        .unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x333, &mut m).unwrap();
    assert!(m.calls.is_empty());
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0x3 | 0x7 << 32, &mut m)
        .unwrap();
    let mut started: Vec<_> = m
        .starts()
        .into_iter()
        .map(|(c, cfg)| (c, cfg.event))
        .collect();
    started.sort_by_key(|(c, e)| (*c, e.select, e.umask));
    let code = |select, umask| EventCode { select, umask };
    assert_eq!(
        started,
        vec![
            (G0, code(0x3C, 0)),
            (G1, code(0xC4, 0)),
            (CounterIndex::Fixed(0), code(0xC0, 0)),
            (CounterIndex::Fixed(1), code(0x3C, 0)),
            (CounterIndex::Fixed(2), code(0x3C, 1)),
        ]
    );
    m.take();
    m.feed(G1, 4);
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0x1 | 0x7 << 32, &mut m)
        .unwrap();
    assert_eq!(m.take(), vec![Call::Drain(G1, 4), Call::Stop(G1)]);
    assert_eq!(p.rdmsr(IA32_PMC0 + 1, &mut m), Ok(4));
    assert!(m.violations.is_empty());
}

#[test]
fn fixed_ctrl_nibble_change_reconfigures_only_that_counter() {
    let mut p = pmu(5, 8, 4);
    let mut m = Mock::new();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0xFF | 0xF << 32, &mut m)
        .unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x1 << 12, &mut m).unwrap();
    let s = m.starts();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].0, CounterIndex::Fixed(3));
    assert_eq!(
        s[0].1.event,
        EventCode {
            select: 0xA4,
            umask: 0x01
        }
    );
    assert!(s[0].1.modifiers.os && !s[0].1.modifiers.usr);
    m.take();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x1 << 12 | 0x2, &mut m)
        .unwrap();
    assert_eq!(m.starts().len(), 1);
    assert_eq!(m.starts()[0].0, F0);
    assert_eq!(m.calls.len(), 1);
}

#[test]
fn reading_a_running_counter_drains_it() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_A_PMC0, 1000, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL, &mut m).unwrap();
    m.take();
    m.feed(G0, 234);
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(1234));
    assert_eq!(m.take(), vec![Call::Drain(G0, 234)]);
    assert_eq!(p.rdmsr(IA32_A_PMC0, &mut m), Ok(1234));
}

#[test]
fn overflow_after_with_int() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PMC0, (-100i64) as u64, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL | evtsel::INT, &mut m)
        .unwrap();
    assert_eq!(m.starts()[0].1.overflow_after, Some(100));
    m.take();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0xFF | 1 << 32, &mut m)
        .unwrap();
    p.wrmsr(IA32_FIXED_CTR0, 0, &mut m).unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0xB, &mut m).unwrap();
    assert_eq!(m.starts()[0], (F0, m.starts()[0].1));
    assert_eq!(m.starts()[0].1.overflow_after, Some(W));
}

#[test]
fn preload_while_running() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL | evtsel::INT, &mut m)
        .unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 1, 0x3C | EN_ALL, &mut m)
        .unwrap();
    m.take();
    // With INT: drain, re-arm with the new distance to the wrap.
    m.feed(G0, 5);
    p.wrmsr(IA32_A_PMC0, W - 50, &mut m).unwrap();
    let calls = m.take();
    assert_eq!(calls[0], Call::Drain(G0, 5));
    assert!(matches!(calls[1], Call::Start(G0, c) if c.overflow_after == Some(50)));
    assert_eq!(calls.len(), 2);
    // Without INT: drain (the old counts are dropped), no restart.
    m.feed(G1, 5);
    p.wrmsr(IA32_PMC0 + 1, 9, &mut m).unwrap();
    assert_eq!(m.take(), vec![Call::Drain(G1, 5)]);
    assert_eq!(p.rdmsr(IA32_PMC0 + 1, &mut m), Ok(9));
}

#[test]
fn wrap_sets_status_raises_pmi_and_rearms() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_A_PMC0, W - 10, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL | evtsel::INT, &mut m)
        .unwrap();
    m.take();
    m.feed(G0, 9);
    p.sync(&mut m);
    assert_eq!(m.take(), vec![Call::Drain(G0, 9)]);
    assert!(!p.take_pmi());
    m.feed(G0, 6);
    p.sync(&mut m);
    let calls = m.take();
    assert_eq!(calls[0], Call::Drain(G0, 6));
    assert!(matches!(calls[1], Call::Start(G0, c) if c.overflow_after == Some(W - 5)));
    assert!(p.take_pmi());
    assert!(!p.take_pmi());
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m), Ok(1));
    assert_eq!(p.rdmsr(IA32_PMC0, &mut m), Ok(5));
    let snap = p.snapshot();
    assert!(snap.gp[0].overflowed && !snap.pmi_pending);
}

#[test]
fn wrap_without_int_sets_status_only() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_A_PMC0 + 3, W - 1, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 3, 0x3C | EN_ALL, &mut m)
        .unwrap();
    m.take();
    m.feed(CounterIndex::Gp(3), 2);
    assert_eq!(p.rdmsr(IA32_PMC0 + 3, &mut m), Ok(1));
    assert_eq!(m.take(), vec![Call::Drain(CounterIndex::Gp(3), 2)]);
    assert!(!p.take_pmi());
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m), Ok(1 << 3));
}

#[test]
fn fixed_counter_wrap_sets_bit_32_plus_i() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    let f2 = CounterIndex::Fixed(2);
    p.wrmsr(IA32_FIXED_CTR0 + 2, MASK, &mut m).unwrap();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 << 34, &mut m).unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0xA << 8, &mut m).unwrap();
    m.take();
    m.feed(f2, 1);
    p.sync(&mut m);
    assert!(p.take_pmi());
    assert_eq!(p.rdmsr(IA32_PERF_GLOBAL_STATUS, &mut m), Ok(1 << 34));
    assert_eq!(p.rdmsr(IA32_FIXED_CTR0 + 2, &mut m), Ok(0));
    // Multiple wraps in one drain still leave the counter in range.
    m.feed(f2, u64::MAX);
    p.sync(&mut m);
    assert_eq!(p.rdmsr(IA32_FIXED_CTR0 + 2, &mut m), Ok(MASK)); // (2^64 - 1) mod 2^48
}

#[test]
fn version_1_counts_with_en_only_and_pmi_without_status() {
    let mut p = pmu(1, 2, 0);
    let mut m = Mock::new();
    p.wrmsr(IA32_A_PMC0, MASK, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL | evtsel::INT, &mut m)
        .unwrap();
    assert_eq!(m.starts().len(), 1);
    m.take();
    m.feed(G0, 1);
    p.sync(&mut m);
    assert!(p.take_pmi());
    assert_eq!(p.snapshot().global_status, 0);
    assert!(matches!(m.take()[1], Call::Start(G0, c) if c.overflow_after == Some(W)));
}

#[test]
fn emulated_instructions_count_on_instruction_counters() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PERFEVTSEL0, 0xC0 | evtsel::EN | evtsel::OS, &mut m)
        .unwrap();
    p.wrmsr(
        IA32_PERFEVTSEL0 + 1,
        0xC0 | evtsel::EN | evtsel::USR,
        &mut m,
    )
    .unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 2, 0x3C | EN_ALL, &mut m)
        .unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 3, 0xC0 | EN_ALL | 1 << 24, &mut m)
        .unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 4, 0xC0 | evtsel::OS, &mut m)
        .unwrap();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0xFF | 0x3 << 32, &mut m)
        .unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x11, &mut m).unwrap();
    m.take();
    p.retire_emulated_instruction(true);
    p.retire_emulated_instruction(true);
    p.retire_emulated_instruction(false);
    assert!(m.calls.is_empty());
    let v: Vec<u64> = (0..5)
        .map(|i| p.rdmsr(IA32_PMC0 + i, &mut m).unwrap())
        .collect();
    assert_eq!(v, vec![2, 1, 0, 0, 0]);
    assert_eq!(p.rdmsr(IA32_FIXED_CTR0, &mut m), Ok(2));
    assert_eq!(p.rdmsr(IA32_FIXED_CTR0 + 1, &mut m), Ok(0));
}

#[test]
fn emulated_instruction_wrap_raises_pmi_and_sync_rearms() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_A_PMC0, MASK, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0, 0xC0 | EN_ALL | evtsel::INT, &mut m)
        .unwrap();
    m.take();
    p.retire_emulated_instruction(true);
    assert!(m.calls.is_empty());
    assert!(p.take_pmi());
    assert_eq!(p.snapshot().global_status, 1);
    p.sync(&mut m);
    let calls = m.take();
    assert_eq!(calls[0], Call::Drain(G0, 0));
    assert!(matches!(calls[1], Call::Start(G0, c) if c.overflow_after == Some(W)));
    p.sync(&mut m);
    assert_eq!(m.take(), vec![Call::Drain(G0, 0)]);
}

#[test]
fn gp_leaves_state_unchanged() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PERFEVTSEL0, 0x3C | EN_ALL, &mut m).unwrap();
    let before = p.snapshot();
    m.take();
    assert_eq!(p.wrmsr(IA32_PERFEVTSEL0, 1 << 40, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 << 40, &mut m), Err(Gp));
    assert_eq!(p.wrmsr(IA32_FIXED_CTR_CTRL, 1 << 40, &mut m), Err(Gp));
    assert!(m.calls.is_empty());
    assert_eq!(p.snapshot(), before);
}

#[test]
fn snapshot_names_and_serializes() {
    let mut p = GuestPmu::new(PmuConfig::default());
    let mut m = Mock::new();
    p.wrmsr(IA32_PERFEVTSEL0, 0x412E | EN_ALL, &mut m).unwrap();
    p.wrmsr(IA32_PERFEVTSEL0 + 1, 0x99 | EN_ALL, &mut m)
        .unwrap();
    p.wrmsr(IA32_PERF_GLOBAL_CTRL, 0x1, &mut m).unwrap();
    p.wrmsr(IA32_FIXED_CTR_CTRL, 0x3 << 8, &mut m).unwrap();
    m.feed(G0, 42);
    p.sync(&mut m);
    let s = p.snapshot();
    assert_eq!(s.version, 4);
    assert_eq!(s.gp.len(), 8);
    assert_eq!(s.fixed.len(), 3);
    assert_eq!(s.gp[0].event_name.as_deref(), Some("cache-misses"));
    assert_eq!(s.gp[0].value, 42);
    assert!(s.gp[0].running && s.gp[0].enabled);
    assert_eq!(s.gp[1].event_name, None);
    assert!(s.gp[1].enabled && !s.gp[1].running);
    assert_eq!(s.fixed[2].event_name, "ref-cycles");
    assert!(s.fixed[2].enabled && !s.fixed[2].running);
    assert_eq!(s.fixed[0].event_name, "instructions");
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"cache-misses\""));
    let back: vpmu::guest::GuestPmuState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}
