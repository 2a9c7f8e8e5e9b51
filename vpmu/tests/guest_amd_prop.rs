//! Property test (a CI-time stand-in for fuzzing the AMD guest PMU model):
//! arbitrary RDMSR/WRMSR sequences over every AMD PMU MSR and its
//! neighbours, interleaved with counting, never panic, raise #GP exactly
//! where an independent reading of the APM says, leave the state unchanged
//! on #GP, read back what was written and keep counters 48 bits wide.

mod guest_mock;

use guest_mock::Mock;
use proptest::prelude::*;
use vpmu::config::PmuConfig;
use vpmu::guest::GuestPmu;
use vpmu::source::CounterIndex;

const W: u64 = 1 << 48;
/// `PerfEvtSel`/`PERF_CTL` bits the APM defines: event 7:0, unit mask,
/// USR, OS, Edge, INT, EN, Inv, CntMask, event 11:8, GuestOnly, HostOnly.
const CTL_DEFINED: u64 = 0xFFFF
    | 1 << 16
    | 1 << 17
    | 1 << 18
    | 1 << 20
    | 1 << 22
    | 1 << 23
    | 0xFF << 24
    | 0xF << 32
    | 1 << 40
    | 1 << 41;

#[derive(Clone, Debug)]
enum Op {
    Rd(u32),
    Wr(u32, u64),
    Feed(u8, u64),
    Sync,
    TakePmi,
}

/// What an MSR index is on an AMD PMU of `version` with `n` counters,
/// restated from the APM.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ctl(u8),
    Ctr(u8),
    Status,
    GlobalCtl,
    StatusClr,
    StatusSet,
    None,
}

fn kind(c: &PmuConfig, idx: u32) -> Kind {
    if !c.enabled {
        return Kind::None;
    }
    let n = u32::from(c.gp_counters);
    match idx {
        0xC001_0000..=0xC001_0003 if idx - 0xC001_0000 < n => Kind::Ctl((idx - 0xC001_0000) as u8),
        0xC001_0004..=0xC001_0007 if idx - 0xC001_0004 < n => Kind::Ctr((idx - 0xC001_0004) as u8),
        0xC001_0200..=0xC001_020B if c.version >= 1 && (idx - 0xC001_0200) / 2 < n => {
            let i = ((idx - 0xC001_0200) / 2) as u8;
            if idx % 2 == 0 {
                Kind::Ctl(i)
            } else {
                Kind::Ctr(i)
            }
        }
        0xC000_0300 if c.version >= 2 => Kind::Status,
        0xC000_0301 if c.version >= 2 => Kind::GlobalCtl,
        0xC000_0302 if c.version >= 2 => Kind::StatusClr,
        0xC000_0303 if c.version >= 2 => Kind::StatusSet,
        _ => Kind::None,
    }
}

fn should_gp(c: &PmuConfig, write: bool, idx: u32, val: u64) -> bool {
    let counters = (1u64 << c.gp_counters) - 1;
    match kind(c, idx) {
        Kind::None => true,
        Kind::Ctl(_) => write && val & !CTL_DEFINED != 0,
        Kind::Ctr(_) => false,
        Kind::Status => write,
        Kind::GlobalCtl | Kind::StatusClr | Kind::StatusSet => write && val & !counters != 0,
    }
}

const MSRS: &[u32] = &[
    0xC001_0000,
    0xC001_0001,
    0xC001_0002,
    0xC001_0003,
    0xC001_0004,
    0xC001_0005,
    0xC001_0006,
    0xC001_0007,
    0xC001_0200,
    0xC001_0201,
    0xC001_0202,
    0xC001_0203,
    0xC001_0204,
    0xC001_0205,
    0xC001_0206,
    0xC001_0207,
    0xC001_0208,
    0xC001_0209,
    0xC001_020A,
    0xC001_020B,
    0xC000_0300,
    0xC000_0301,
    0xC000_0302,
    0xC000_0303,
];
const NEIGHBOURS: &[u32] = &[
    0xC000_FFFF,
    0xC001_0008,
    0xC001_01FF,
    0xC001_020C,
    0xC000_02FF,
    0xC000_0304,
    0xC1,
    0x186,
    0x38F,
];

fn config() -> impl Strategy<Value = PmuConfig> {
    (0u8..=2, 1u8..=6, prop::bool::weighted(0.95)).prop_map(|(version, gp, enabled)| {
        let gp = gp.min(PmuConfig::amd_max_counters(version));
        let mut c = PmuConfig::amd(version, gp);
        c.enabled = enabled;
        c
    })
}

fn index() -> impl Strategy<Value = u32> {
    prop_oneof![
        16 => prop::sample::select(MSRS),
        2 => prop::sample::select(NEIGHBOURS),
        1 => any::<u32>(),
    ]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        // PERF_CTL-like: events, USR/OS, INT, EN, sometimes reserved bits.
        4 => (any::<u16>(), any::<u8>(), any::<bool>())
            .prop_map(|(ev, flags, reserved)| {
                u64::from(ev) | u64::from(flags) << 16 | if reserved { 1 << 19 } else { 0 }
            }),
        3 => 0u64..64,
        3 => prop_oneof![0u64..3, 0u64..64].prop_map(|d| W - 1 - d),
        1 => any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => index().prop_map(Op::Rd),
        8 => (index(), value()).prop_map(|(i, v)| Op::Wr(i, v)),
        3 => (0u8..6, prop_oneof![0u64..3, 0u64..2000, W - 100..W + 100, any::<u64>()])
            .prop_map(|(c, n)| Op::Feed(c, n)),
        2 => Just(Op::Sync),
        1 => Just(Op::TakePmi),
    ]
}

/// Cases per property: `PROPTEST_CASES` if set (long runs), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2048), ..ProptestConfig::default() })]

    #[test]
    fn amd_msr_sequences_follow_the_apm(cfg in config(), ops in prop::collection::vec(op(), 1..80)) {
        let mut p = GuestPmu::new(cfg);
        let mut m = Mock::new();
        let counters = (1u64 << cfg.gp_counters) - 1;
        for op in &ops {
            let before = p.snapshot();
            m.take();
            match *op {
                Op::Rd(i) => {
                    let r = p.rdmsr(i, &mut m);
                    prop_assert_eq!(r.is_err(), should_gp(&cfg, false, i, 0), "rdmsr {:#x}", i);
                    match (r, kind(&cfg, i)) {
                        (Err(_), _) => {
                            prop_assert!(m.calls.is_empty());
                            prop_assert_eq!(&p.snapshot(), &before);
                        }
                        (Ok(v), Kind::Ctr(_)) => prop_assert!(v < W, "counter {:#x}", v),
                        (Ok(v), Kind::Ctl(c)) => {
                            prop_assert_eq!(v, before.gp[usize::from(c)].evtsel);
                        }
                        (Ok(v), Kind::StatusClr | Kind::StatusSet) => prop_assert_eq!(v, 0),
                        (Ok(v), Kind::Status) => prop_assert_eq!(v & !counters, 0),
                        (Ok(v), Kind::GlobalCtl) => prop_assert_eq!(v, before.global_ctrl),
                        (Ok(_), Kind::None) => prop_assert!(false, "read of a missing MSR"),
                    }
                }
                Op::Wr(i, v) => {
                    let r = p.wrmsr(i, v, &mut m);
                    prop_assert_eq!(r.is_err(), should_gp(&cfg, true, i, v), "wrmsr {:#x} {:#x}", i, v);
                    if r.is_err() {
                        prop_assert!(m.calls.is_empty());
                        prop_assert_eq!(&p.snapshot(), &before);
                        continue;
                    }
                    // Read-back of what was written.
                    match kind(&cfg, i) {
                        Kind::Ctl(c) => {
                            prop_assert_eq!(p.rdmsr(i, &mut m), Ok(v));
                            // The legacy and PerfCtrCore names alias.
                            if cfg.version >= 1 && c < 4 {
                                prop_assert_eq!(p.rdmsr(0xC001_0000 + u32::from(c), &mut m), Ok(v));
                                prop_assert_eq!(p.rdmsr(0xC001_0200 + 2 * u32::from(c), &mut m), Ok(v));
                            }
                        }
                        Kind::Ctr(c) => {
                            // Nothing counted since the write: it holds
                            // the low 48 bits.
                            prop_assert_eq!(p.snapshot().gp[usize::from(c)].value, v & (W - 1));
                        }
                        Kind::GlobalCtl => prop_assert_eq!(p.rdmsr(i, &mut m), Ok(v)),
                        Kind::StatusClr => prop_assert_eq!(p.snapshot().global_status & v, 0),
                        Kind::StatusSet => {
                            prop_assert_eq!(p.snapshot().global_status & v, v);
                        }
                        Kind::Status | Kind::None => prop_assert!(false, "write accepted"),
                    }
                }
                Op::Feed(c, n) => {
                    if c < cfg.gp_counters {
                        m.feed(CounterIndex::Gp(c), n);
                    }
                }
                Op::Sync => p.sync(&mut m),
                Op::TakePmi => {
                    let _ = p.take_pmi();
                }
            }
            let after = p.snapshot();
            prop_assert!(m.violations.is_empty(), "{:?}", m.violations);
            prop_assert!(after.gp.len() == usize::from(cfg.gp_counters) || !cfg.enabled);
            for g in &after.gp {
                prop_assert!(g.value < W);
                prop_assert_eq!(g.evtsel & !CTL_DEFINED, 0);
            }
            prop_assert_eq!(after.global_status & !counters, 0);
            prop_assert_eq!(after.global_ctrl & !counters, 0);
            prop_assert!(after.fixed.is_empty());
        }
    }
}
