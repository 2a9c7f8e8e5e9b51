//! Per-CPU check aggregation: every CPU records the same named checks; the
//! BSP then prints one TAP line per check saying on how many CPUs it ran,
//! with the CPUs it failed on and the first failure's diagnostic.

use core::fmt::{self, Write};
use guest_tests::sync::SpinLock;
use guest_tests::{smp, Fault, Tap};

const MAX_ENTRIES: usize = 160;
const NAME_LEN: usize = 100;
const DIAG_LEN: usize = 160;

/// A fixed-size, truncating string buffer.
pub struct Buf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> Buf<N> {
    pub const fn new() -> Self {
        Buf {
            bytes: [0; N],
            len: 0,
        }
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("?")
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Write for Buf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == N {
                break;
            }
            self.bytes[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

struct Entry {
    name: Buf<NAME_LEN>,
    ran: u32,
    failed: u32,
    diag: Buf<DIAG_LEN>,
}

impl Entry {
    const fn new() -> Self {
        Entry {
            name: Buf::new(),
            ran: 0,
            failed: 0,
            diag: Buf::new(),
        }
    }
}

struct Table {
    len: usize,
    lost: u32,
    entries: [Entry; MAX_ENTRIES],
}

static TABLE: SpinLock<Table> = SpinLock::new(Table {
    len: 0,
    lost: 0,
    entries: [const { Entry::new() }; MAX_ENTRIES],
});

/// Record check `name` on this CPU; returns `ok`.
pub fn check(name: fmt::Arguments, ok: bool, diag: fmt::Arguments) -> bool {
    let cpu = smp::this_cpu();
    let mut key = Buf::<NAME_LEN>::new();
    let _ = key.write_fmt(name);
    let mut t = TABLE.lock();
    let len = t.len;
    let idx = match t.entries[..len]
        .iter()
        .position(|e| e.name.as_str() == key.as_str())
    {
        Some(i) => i,
        None if len < MAX_ENTRIES => {
            let e = &mut t.entries[len];
            e.name.clear();
            let _ = e.name.write_str(key.as_str());
            e.ran = 0;
            e.failed = 0;
            e.diag.clear();
            t.len += 1;
            len
        }
        None => {
            t.lost += 1;
            return ok;
        }
    };
    let e = &mut t.entries[idx];
    e.ran |= 1 << cpu;
    if !ok {
        if e.failed == 0 {
            let _ = write!(e.diag, "cpu {cpu}: ");
            let _ = e.diag.write_fmt(diag);
        }
        e.failed |= 1 << cpu;
    }
    ok
}

/// `check` that `got == want` (hex diagnostic).
pub fn eq(name: fmt::Arguments, got: u64, want: u64) -> bool {
    check(
        name,
        got == want,
        format_args!("got {got:#x}, expected {want:#x}"),
    )
}

/// `check` that an MSR access raised #GP.
pub fn gp<T: fmt::Debug>(name: fmt::Arguments, r: Result<T, Fault>) -> bool {
    let ok = matches!(r, Err(f) if f.is_gp());
    check(name, ok, format_args!("expected #GP, got {r:x?}"))
}

/// Print every recorded check as one TAP line (BSP, all APs idle) and clear
/// the table.
pub fn flush(tap: &Tap) {
    let mut t = TABLE.lock();
    for e in &t.entries[..t.len] {
        let n = e.ran.count_ones();
        tap.check_diag(
            format_args!(
                "{} [{} cpu{}]",
                e.name.as_str(),
                n,
                if n == 1 { "" } else { "s" }
            ),
            e.failed == 0,
            format_args!("failed on cpu mask {:#x}; {}", e.failed, e.diag.as_str()),
        );
    }
    if t.lost != 0 {
        tap.check_diag(
            "aggregation table large enough",
            false,
            format_args!("{} results lost", t.lost),
        );
    }
    t.len = 0;
    t.lost = 0;
}
