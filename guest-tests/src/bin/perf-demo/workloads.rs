//! The measured workloads.

use core::hint::black_box;
use core::sync::atomic::{AtomicU64, Ordering};
use guest_tests::mbi;

/// Cache line size: one node of the memory walk per line.
const LINE: u64 = 64;
const TWO_MIB: u64 = 2 << 20;

/// The buffer of the memory walk: [base, base + len), set up once by the BSP
/// (a single random cycle through all its cache lines), then only read.
static BUF_BASE: AtomicU64 = AtomicU64::new(0);
static BUF_LEN: AtomicU64 = AtomicU64::new(0);

/// xorshift64: cheap, and unpredictable enough for a branch predictor.
#[inline(always)]
pub fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Integer arithmetic: a multiply-add chain (LCG) mixed into an accumulator.
#[inline(never)]
pub fn int_loop(iters: u64) -> u64 {
    let mut x = black_box(0x9E37_79B9_7F4A_7C15u64);
    let mut acc = 0u64;
    for _ in 0..iters {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        acc = acc.rotate_left(5) ^ (x >> 29);
    }
    black_box(acc)
}

/// Branches the predictor cannot learn: each step takes one of four paths
/// chosen by two bits of a xorshift sequence. The path bodies hold
/// `black_box` calls, so they stay real branches (no cmov).
#[inline(never)]
pub fn branchy(iters: u64) -> u64 {
    let mut x = black_box(0x2545_F491_4F6C_DD1Du64);
    let (mut a, mut b) = (0u64, 0u64);
    for _ in 0..iters {
        x = xorshift(x);
        if x & 1 == 0 {
            a = a.wrapping_add(black_box(x >> 3));
        } else {
            b ^= black_box(x >> 5);
        }
        if x & 0x100 == 0 {
            a = black_box(a.rotate_left(3));
        } else {
            b = black_box(b.wrapping_mul(3));
        }
    }
    black_box(a ^ b)
}

/// Choose the memory-walk buffer: `want` bytes of RAM above the image (from
/// the multiboot memory map), 2 MiB aligned, whole cache lines. Nothing is
/// written to it: the walk's addresses come from a stride, not from links
/// stored in the buffer, so no set-up pass is needed (which matters where
/// guest code runs slowly, e.g. under an emulating or nested hypervisor).
/// Returns the buffer length (0: no RAM).
pub fn setup_buffer(want: u64) -> u64 {
    extern "C" {
        static __image_end: u8;
    }
    let image_end = core::ptr::addr_of!(__image_end) as u64;
    let floor = image_end.div_ceil(TWO_MIB) * TWO_MIB;
    let mut best = (0u64, 0u64);
    for region in mbi::memory_map().filter(|r| r.kind == 1) {
        let start = region.base.max(floor).div_ceil(TWO_MIB) * TWO_MIB;
        // The runtime identity maps the first 4 GiB.
        let end = region.base.saturating_add(region.length).min(1 << 32);
        let len = end.saturating_sub(start);
        if len > best.1 {
            best = (start, len);
        }
    }
    // Leave 2 MiB of slack at the end of the region; a power of two of
    // lines, so that any odd stride visits every line once per lap.
    let avail = want.min(best.1.saturating_sub(TWO_MIB)) / LINE;
    if avail < 1024 {
        return 0;
    }
    let lines = 1u64 << (63 - avail.leading_zeros());
    BUF_BASE.store(best.0, Ordering::Release);
    BUF_LEN.store(lines * LINE, Ordering::Release);
    lines * LINE
}

/// The memory-walk buffer (base, length); length 0 if not set up.
pub fn buffer() -> (u64, u64) {
    (
        BUF_BASE.load(Ordering::Acquire),
        BUF_LEN.load(Ordering::Acquire),
    )
}

/// Lines between two steps of the walk: odd (visits every line of a
/// power-of-two buffer), and far more than a page, so that neither the
/// adjacent-line nor the in-page stride prefetchers help.
const STRIDE: u64 = 4099;

/// Walk the buffer one cache line per step, `steps` dependent loads (each
/// next address depends on the value loaded), each a cache miss for a
/// buffer much larger than the LLC. Returns the position to resume from.
#[inline(never)]
pub fn mem_walk_from(start: u64, steps: u64) -> u64 {
    let (base, len) = buffer();
    if len == 0 {
        return 0;
    }
    let mask = len / LINE - 1;
    // Zero at run time, unknown to the compiler: makes each address depend
    // on the previous load.
    let zero = black_box(0u64);
    let mut i = start & mask;
    for _ in 0..steps {
        // SAFETY: `i <= mask`, so the address lies inside the buffer: RAM
        // from the memory map, identity mapped, used by nothing else (only
        // read).
        let v = unsafe { ((base + i * LINE) as *const u64).read_volatile() };
        i = (i + STRIDE + (v & zero)) & mask;
    }
    i
}

/// The function `mode=record` should find on top.
#[inline(never)]
pub fn hot_loop(iters: u64) -> u64 {
    let mut x = black_box(0x0123_4567_89AB_CDEFu64);
    for _ in 0..iters {
        x = black_box(xorshift(x).wrapping_add(0x51));
    }
    x
}

/// A function with a smaller share.
#[inline(never)]
pub fn warm_loop(iters: u64) -> u64 {
    let mut x = black_box(0x0FED_CBA9_8765_4321u64);
    for _ in 0..iters {
        x = black_box(xorshift(x).wrapping_add(0x7777));
    }
    x
}

/// A function with a small share.
#[inline(never)]
pub fn cold_loop(iters: u64) -> u64 {
    let mut x = black_box(0x1357_9BDF_0246_8ACEu64);
    for _ in 0..iters {
        x = black_box(xorshift(x) ^ 0x3333_3333);
    }
    x
}
