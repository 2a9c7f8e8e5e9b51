//! The kernel command line: whitespace-separated words, `key=value` pairs.
//!
//! Copied out of the multiboot info at boot, so it stays valid whatever the
//! guest does with low memory.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

const MAX_LEN: usize = 1024;

struct Buffer(UnsafeCell<[u8; MAX_LEN]>);
// SAFETY: written only by the BSP in `init` before `LEN` is published with
// Release ordering; read only after an Acquire load of `LEN`, never written
// again.
unsafe impl Sync for Buffer {}

static BUF: Buffer = Buffer(UnsafeCell::new([0; MAX_LEN]));
static LEN: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn init() {
    let Some(addr) = crate::mbi::cmdline_address() else {
        return;
    };
    if addr == 0 {
        return;
    }
    let mut len = 0;
    // SAFETY: see `Buffer`; the source is the loader's NUL-terminated string,
    // read up to MAX_LEN bytes.
    unsafe {
        let buf = &mut *BUF.0.get();
        while len < MAX_LEN {
            let b = core::ptr::read_volatile((u64::from(addr) + len as u64) as *const u8);
            if b == 0 {
                break;
            }
            buf[len] = b;
            len += 1;
        }
    }
    LEN.store(len, Ordering::Release);
}

/// The whole command line (lossy: stops at the first non-UTF-8 byte).
pub fn raw() -> &'static str {
    let len = LEN.load(Ordering::Acquire);
    // SAFETY: see `Buffer`: the first `len` bytes are initialized and frozen.
    let bytes = unsafe { &(&*BUF.0.get())[..len] };
    match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// Value of the last `key=value` word with this key.
pub fn get(key: &str) -> Option<&'static str> {
    raw()
        .split_ascii_whitespace()
        .rev()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Whether the bare word `flag` (or `flag=...`) appears.
pub fn has(flag: &str) -> bool {
    raw()
        .split_ascii_whitespace()
        .any(|w| w == flag || w.split_once('=').is_some_and(|(k, _)| k == flag))
}

/// Parse decimal or `0x`-prefixed hexadecimal (underscores allowed).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars() {
        if c == '_' {
            continue;
        }
        let d = c.to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
        any = true;
    }
    any.then_some(value)
}

/// `get(key)` parsed with [`parse_u64`].
pub fn get_u64(key: &str) -> Option<u64> {
    get(key).and_then(parse_u64)
}
