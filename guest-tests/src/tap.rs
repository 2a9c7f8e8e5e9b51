//! A TAP (Test Anything Protocol) harness shared by all CPUs.
//!
//! Output: `ok N - name` / `not ok N - name` (plus `# ...` diagnostics),
//! then from [`Tap::finish`] the plan `1..N` and the summary line
//! `P passed, F failed`; the guest exits 0 iff no check failed.

use core::fmt::Display;
use core::sync::atomic::{AtomicU32, Ordering};

static TOTAL: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

/// Handle to the global TAP state; cheap to copy, usable on any CPU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tap;

impl Tap {
    /// A handle to the (global) TAP state.
    pub fn new() -> Tap {
        Tap
    }

    /// Record a check. Returns `cond`.
    pub fn check(&self, name: impl Display, cond: bool) -> bool {
        self.check_diag(name, cond, "")
    }

    /// Record a check, printing `# diag` under it when it fails (and `diag`
    /// is not empty).
    pub fn check_diag(&self, name: impl Display, cond: bool, diag: impl Display) -> bool {
        let _console = crate::print::lock();
        let n = TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
        if cond {
            crate::println!("ok {} - {}", n, name);
        } else {
            FAILED.fetch_add(1, Ordering::Relaxed);
            crate::println!("not ok {} - {}", n, name);
            let mut w = DiagWriter {
                at_line_start: true,
                empty: true,
            };
            let _ = core::fmt::write(&mut w, format_args!("{}", diag));
            if !w.empty {
                crate::print!("\n");
            }
        }
        cond
    }

    /// Check `got == expected`, with a diagnostic showing both on failure.
    pub fn check_eq<T: PartialEq + core::fmt::Debug>(
        &self,
        name: impl Display,
        got: T,
        expected: T,
    ) -> bool {
        let ok = got == expected;
        self.check_diag(
            name,
            ok,
            format_args!("expected {:?}, got {:?}", expected, got),
        )
    }

    /// Record a skipped check (counts as passed): `ok N - name # SKIP why`.
    pub fn skip(&self, name: impl Display, why: impl Display) {
        let _console = crate::print::lock();
        let n = TOTAL.fetch_add(1, Ordering::Relaxed) + 1;
        crate::println!("ok {} - {} # SKIP {}", n, name, why);
    }

    /// Print a diagnostic line `# msg`.
    pub fn diag(&self, msg: impl Display) {
        crate::println!("# {}", msg);
    }

    /// Checks recorded so far.
    pub fn total(&self) -> u32 {
        TOTAL.load(Ordering::Relaxed)
    }

    /// Failed checks so far.
    pub fn failed(&self) -> u32 {
        FAILED.load(Ordering::Relaxed)
    }

    /// Print the plan and summary and exit: 0 if every check passed, 1
    /// otherwise. Call after the APs have finished their checks.
    pub fn finish(&self) -> ! {
        let total = self.total();
        let failed = self.failed();
        {
            let _console = crate::print::lock();
            crate::println!("1..{}", total);
            crate::println!("{} passed, {} failed", total - failed, failed);
        }
        crate::exit::exit(if failed == 0 {
            crate::exit::SUCCESS
        } else {
            crate::exit::FAILURE
        })
    }
}

/// Writes text as `# `-prefixed lines.
struct DiagWriter {
    at_line_start: bool,
    empty: bool,
}

impl core::fmt::Write for DiagWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for (i, line) in s.split('\n').enumerate() {
            if i > 0 {
                crate::serial::write_byte(b'\n');
                self.at_line_start = true;
            }
            if line.is_empty() {
                continue;
            }
            if self.at_line_start {
                crate::serial::write_bytes(b"# ");
                self.at_line_start = false;
            }
            crate::serial::write_bytes(line.as_bytes());
            self.empty = false;
        }
        Ok(())
    }
}
