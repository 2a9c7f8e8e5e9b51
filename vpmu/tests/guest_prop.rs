//! Property test: arbitrary RDMSR/WRMSR sequences interleaved with counting
//! never panic, raise #GP exactly where an independent reading of the SDM
//! rules says, and keep the PMU invariants.

mod guest_mock;

use guest_mock::{Call, Mock};
use proptest::prelude::*;
use vpmu::arch::msr::evtsel;
use vpmu::config::{PmuArch, PmuConfig};
use vpmu::guest::GuestPmu;
use vpmu::source::CounterIndex;

const W: u64 = 1 << 48;

#[derive(Clone, Debug)]
enum Op {
    Rd(u32),
    Wr(u32, u64),
    Feed(CounterIndex, u64),
    Sync,
    Retire(bool),
    TakePmi,
}

/// The SDM rules, restated independently of the model: does this access
/// raise #GP?
fn should_gp(c: &PmuConfig, write: bool, idx: u32, val: u64) -> bool {
    if !c.enabled {
        return true;
    }
    let v = c.version;
    let ngp = u32::from(c.gp_counters);
    let nfx = if v >= 2 {
        u32::from(c.fixed_counters)
    } else {
        0
    };
    let counters = ((1u64 << ngp) - 1) | (((1u64 << nfx) - 1) << 32);
    let above_48 = val >> 48 != 0;
    match idx {
        0xC1..=0xC8 => idx - 0xC1 >= ngp,
        0x4C1..=0x4C8 => !c.full_width_writes || idx - 0x4C1 >= ngp || (write && above_48),
        0x186..=0x18D => {
            idx - 0x186 >= ngp || (write && (val >> 32 != 0 || (v < 3 && val & 1 << 21 != 0)))
        }
        0x309..=0x30C => idx - 0x309 >= nfx || (write && above_48),
        0x38D => {
            let nibble: u64 = if v >= 3 { 0xF } else { 0xB };
            let allowed: u64 = (0..nfx).map(|i| nibble << (4 * i)).sum();
            v < 2 || (write && val & !allowed != 0)
        }
        0x38E => v < 2 || write,
        0x38F => v < 2 || (write && val & !counters != 0),
        0x390 => v < 2 || (write && val & !(counters | 3 << 62) != 0),
        0x391 => v < 4 || (write && val & !counters != 0),
        0x392 => v < 4 || write,
        0x345 => write,
        _ => true,
    }
}

const PMU_MSRS: &[u32] = &[
    0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0x186, 0x187, 0x188, 0x189, 0x18A, 0x18B,
    0x18C, 0x18D, 0x309, 0x30A, 0x30B, 0x30C, 0x345, 0x38D, 0x38E, 0x38F, 0x390, 0x391, 0x392,
    0x4C1, 0x4C2, 0x4C3, 0x4C4, 0x4C5, 0x4C6, 0x4C7, 0x4C8,
];
const NEIGHBOURS: &[u32] = &[
    0xC0, 0xC9, 0x185, 0x18E, 0x308, 0x30D, 0x344, 0x346, 0x38C, 0x393, 0x4C0, 0x4C9,
];

fn config() -> impl Strategy<Value = PmuConfig> {
    (
        1u8..=5,
        1u8..=8,
        0u8..=4,
        any::<bool>(),
        prop::bool::weighted(0.92),
    )
        .prop_map(|(version, gp, fixed, fw, enabled)| {
            let fixed = match version {
                1 => 0,
                5 => fixed,
                _ => fixed.min(3),
            };
            PmuConfig {
                enabled,
                arch: PmuArch::Intel,
                version,
                gp_counters: gp,
                fixed_counters: fixed,
                full_width_writes: fw,
            }
        })
}

fn index() -> impl Strategy<Value = u32> {
    prop_oneof![
        16 => prop::sample::select(PMU_MSRS),
        2 => prop::sample::select(NEIGHBOURS),
        1 => any::<u32>(),
    ]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        // Event selects, mostly enabled, mostly architectural events.
        4 => (prop::sample::select(&[0x3Cu64, 0xC0, 0x2E, 0xC4, 0x00][..]), any::<u8>(), any::<u8>())
            .prop_map(|(e, um, flags)| e | u64::from(um & 1) << 8 | u64::from(flags) << 16 | 0x43 << 16),
        // Global-register-like bitmasks.
        3 => (any::<u8>(), 0u8..16).prop_map(|(g, f)| u64::from(g) | u64::from(f) << 32),
        // FIXED_CTR_CTRL-like.
        2 => any::<u16>().prop_map(u64::from),
        // Counter preloads near the wrap (also as legacy 32-bit values).
        3 => prop_oneof![0u64..3, 0u64..64].prop_map(|d| W - 1 - d),
        2 => (0u32..64).prop_map(|d| u64::from(u32::MAX - d)),
        1 => 0u64..16,
        1 => any::<u64>(),
    ]
}

fn counter() -> impl Strategy<Value = CounterIndex> {
    prop_oneof![
        (0u8..8).prop_map(CounterIndex::Gp),
        (0u8..4).prop_map(CounterIndex::Fixed),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => index().prop_map(Op::Rd),
        8 => (index(), value()).prop_map(|(i, v)| Op::Wr(i, v)),
        4 => (counter(), prop_oneof![0u64..3, 0u64..2000, W - 100..W + 100, any::<u64>()])
            .prop_map(|(c, n)| Op::Feed(c, n)),
        2 => Just(Op::Sync),
        2 => any::<bool>().prop_map(Op::Retire),
        1 => Just(Op::TakePmi),
    ]
}

fn all_counters(c: &PmuConfig) -> Vec<CounterIndex> {
    let mut v: Vec<_> = (0..c.effective_gp()).map(CounterIndex::Gp).collect();
    v.extend((0..c.effective_fixed()).map(CounterIndex::Fixed));
    v
}

fn bit(c: CounterIndex) -> u64 {
    match c {
        CounterIndex::Gp(i) => 1 << i,
        CounterIndex::Fixed(i) => 1 << (32 + i),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn msr_sequences_follow_the_sdm(cfg in config(), ops in prop::collection::vec(op(), 1..80)) {
        let mut p = GuestPmu::new(cfg);
        let mut m = Mock::new();
        let counters = all_counters(&cfg);
        let counter_mask: u64 = counters.iter().map(|c| bit(*c)).sum();
        for op in &ops {
            let before = p.snapshot();
            let value_of = |s: &vpmu::guest::GuestPmuState, c: CounterIndex| match c {
                CounterIndex::Gp(i) => s.gp[usize::from(i)].value,
                CounterIndex::Fixed(i) => s.fixed[usize::from(i)].value,
            };
            let pending_before = m.pending.clone();
            m.take();
            let mut status_set = 0u64;
            let mut status_reset = 0u64;
            match *op {
                Op::Rd(i) => {
                    let r = p.rdmsr(i, &mut m);
                    prop_assert_eq!(r.is_err(), should_gp(&cfg, false, i, 0), "rdmsr {:#x}", i);
                    if r.is_err() {
                        prop_assert!(m.calls.is_empty());
                    }
                    if let Ok(v) = r {
                        if matches!(i, 0xC1..=0xC8 | 0x4C1..=0x4C8 | 0x309..=0x30C) {
                            prop_assert!(v < W);
                        } else {
                            // Control MSRs never reach the source.
                            prop_assert!(m.calls.is_empty(), "rdmsr {:#x}: {:?}", i, m.calls);
                        }
                    }
                }
                Op::Wr(i, v) => {
                    let r = p.wrmsr(i, v, &mut m);
                    prop_assert_eq!(r.is_err(), should_gp(&cfg, true, i, v), "wrmsr {:#x} {:#x}", i, v);
                    if r.is_err() {
                        prop_assert!(m.calls.is_empty());
                        prop_assert_eq!(&p.snapshot(), &before);
                    } else if i == 0x391 {
                        status_set = v;
                    } else if i == 0x390 {
                        status_reset = v;
                    }
                }
                Op::Feed(c, n) => m.feed(c, n),
                Op::Sync => p.sync(&mut m),
                Op::Retire(cpl0) => p.retire_emulated_instruction(cpl0),
                Op::TakePmi => {
                    let _ = p.take_pmi();
                }
            }
            let after = p.snapshot();
            prop_assert!(m.violations.is_empty(), "{:?}", m.violations);

            // Which counters may have wrapped during this op.
            let retired = matches!(op, Op::Retire(_)) as u64;
            let mut may_wrap = 0u64;
            let mut must_wrap = 0u64;
            for &c in &counters {
                let pend = pending_before.get(&c).copied().unwrap_or(0);
                let v0 = u128::from(value_of(&before, c));
                if v0 + u128::from(pend) + u128::from(retired) >= u128::from(W) {
                    may_wrap |= bit(c);
                }
                // Its value went down without a write to it: it wrapped.
                let written = match *op {
                    Op::Wr(i, _) => match c {
                        CounterIndex::Gp(g) => i == 0xC1 + u32::from(g) || i == 0x4C1 + u32::from(g),
                        CounterIndex::Fixed(f) => i == 0x309 + u32::from(f),
                    },
                    _ => false,
                };
                if !written && value_of(&p.snapshot(), c) < value_of(&before, c) {
                    must_wrap |= bit(c);
                }
                for call in &m.calls {
                    if let Call::Drain(d, n) = call {
                        if *d == c && v0 + u128::from(*n) >= u128::from(W) {
                            must_wrap |= bit(c);
                        }
                    }
                }
            }

            // Counter values stay within the width.
            for &c in &counters {
                prop_assert!(value_of(&after, c) < W);
            }
            // STATUS: only existing counters; set only by a wrap or
            // STATUS_SET; cleared only by STATUS_RESET; every drained wrap
            // sets it (version 2+).
            prop_assert_eq!(after.global_status & !counter_mask, 0);
            let newly_set = after.global_status & !before.global_status;
            prop_assert_eq!(newly_set & !(status_set | may_wrap), 0, "status {:#x}", newly_set);
            let cleared = before.global_status & !after.global_status;
            prop_assert_eq!(cleared & !status_reset, 0);
            if cfg.version >= 2 && cfg.enabled {
                prop_assert_eq!(must_wrap & !after.global_status, 0);
            } else {
                prop_assert_eq!(after.global_status, 0);
            }
            // A new PMI only after a wrap.
            if after.pmi_pending && !before.pmi_pending {
                prop_assert!(may_wrap != 0);
            }
            // The source runs exactly the counters the model says count,
            // with the same configuration.
            for &c in &counters {
                let eff = p.effective(c);
                let src = m.running.get(&c);
                prop_assert_eq!(eff.is_some(), src.is_some(), "{:?}", c);
                if let (Some(e), Some(s)) = (eff, src) {
                    prop_assert_eq!(e.event, s.event);
                    prop_assert_eq!((e.modifiers.usr, e.modifiers.os, e.modifiers.edge, e.modifiers.inv, e.modifiers.cmask, e.modifiers.any_thread),
                                    (s.modifiers.usr, s.modifiers.os, s.modifiers.edge, s.modifiers.inv, s.modifiers.cmask, s.modifiers.any_thread));
                    prop_assert_eq!(e.overflow_after.is_some(), s.overflow_after.is_some());
                }
            }
            // INUSE agrees with the programming.
            if cfg.enabled && cfg.version >= 4 {
                let mut expect = 0u64;
                let mut pmi = false;
                for g in &after.gp {
                    if g.evtsel & 0xFF != 0 {
                        expect |= 1 << g.index;
                    }
                    pmi |= g.evtsel & evtsel::INT != 0;
                }
                for f in &after.fixed {
                    if f.ctrl.os || f.ctrl.usr {
                        expect |= 1 << (32 + f.index);
                    }
                    pmi |= f.ctrl.pmi;
                }
                if pmi {
                    expect |= 1 << 63;
                }
                prop_assert_eq!(after.global_inuse, expect);
                m.take();
                prop_assert_eq!(p.rdmsr(0x392, &mut m), Ok(expect));
                prop_assert!(m.calls.is_empty());
            }
        }
    }
}
