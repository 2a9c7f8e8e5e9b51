//! Property test standing in for fuzzing the host PMU profile parser
//! (`Profile::parse`, fed by `--host-pmu sim:PATH`): arbitrary text and
//! mutated real profiles never panic, and what parses is consistent.

use proptest::prelude::*;
use vpmu::host::profile::Profile;

const PROFILES: &[&str] = &[
    include_str!("../../resources/pmus/intel-4gp-3fixed.toml"),
    include_str!("../../resources/pmus/intel-4gp.toml"),
    include_str!("../../resources/pmus/intel-8gp-4fixed.toml"),
    include_str!("../../resources/pmus/amd-4gp.toml"),
    include_str!("../../resources/pmus/amd-zen4.toml"),
    include_str!("../../resources/pmus/hybrid.toml"),
    include_str!("../../resources/pmus/no-pmu.toml"),
];

/// Tokens that matter to the profile format, to splice in.
const TOKENS: &[&str] = &[
    "[[pmu]]",
    "[pmu.rates]",
    "[pmu.constraints]",
    "name = ",
    "kind = ",
    "gp_counters = ",
    "fixed_counters = ",
    "mux_interval_ms = ",
    "\"hardware\"",
    "\"software\"",
    "cycles = ",
    "= 0x0",
    "= -1",
    "= 1e308",
    "= nan",
    "= inf",
    "= 18446744073709551616",
    "= 255",
    "[]",
    "[\"cycles\", \"cycles\"]",
    "\n",
    "\"\"",
    "=",
    "#",
    "\\u0000",
];

#[derive(Clone, Debug)]
enum Edit {
    Flip(prop::sample::Index, u8),
    Splice(prop::sample::Index, &'static str),
    DropLine(prop::sample::Index),
    DupLine(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => (any::<prop::sample::Index>(), 0x20u8..0x7F).prop_map(|(i, b)| Edit::Flip(i, b)),
        3 => (any::<prop::sample::Index>(), prop::sample::select(TOKENS)).prop_map(|(i, t)| Edit::Splice(i, t)),
        2 => any::<prop::sample::Index>().prop_map(Edit::DropLine),
        2 => any::<prop::sample::Index>().prop_map(Edit::DupLine),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        match e {
            Edit::Flip(i, b) => {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] = *b;
                }
            }
            Edit::Splice(i, t) => {
                let at = i.index(bytes.len() + 1);
                bytes.splice(at..at, t.bytes());
            }
            Edit::DropLine(i) | Edit::DupLine(i) => {
                let s = String::from_utf8_lossy(&bytes).into_owned();
                let mut lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let at = i.index(lines.len());
                    if matches!(e, Edit::DropLine(_)) {
                        lines.remove(at);
                    } else {
                        lines.insert(at, lines[at]);
                    }
                }
                bytes = lines.join("\n").into_bytes();
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What a parsed profile must satisfy whatever the input was.
fn check(text: &str) -> Result<(), TestCaseError> {
    if let Ok(p) = Profile::parse(text, "prop") {
        let again = Profile::parse(text, "prop").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(format!("{p:?}"), format!("{again:?}"));
        // What the multiplexer relies on.
        prop_assert!(!p.pmus.is_empty() && p.pmus.len() <= 64);
        for d in &p.pmus {
            prop_assert!(!d.name.is_empty());
            prop_assert!(vpmu::core::host_pmu::MUX_INTERVAL_RANGE_MS.contains(&d.mux_interval_ms));
            prop_assert_eq!(usize::from(d.counters()), usize::from(d.gp) + d.fixed.len());
            for e in vpmu::host::event::EventName::ALL {
                prop_assert_eq!(
                    d.mask(e) & !((1u64 << d.counters()) - 1) as u32,
                    0,
                    "{:?}",
                    e
                );
                if let Some(r) = d.rate(e) {
                    prop_assert!(r.is_finite() && r >= 0.0, "{:?} rate {}", e, r);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_shipped_profiles_parse() {
    for text in PROFILES {
        Profile::parse(text, "shipped").expect("shipped profile");
    }
}

/// Cases per property: `PROPTEST_CASES` if set (long runs), else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(4096), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        check(&text)?;
    }

    #[test]
    fn mutated_profiles_never_panic(
        which in 0..PROFILES.len(),
        edits in prop::collection::vec(edit(), 1..10),
    ) {
        check(&apply(PROFILES[which], &edits))?;
    }
}
