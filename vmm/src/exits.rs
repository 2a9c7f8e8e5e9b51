//! Per-vCPU exit statistics, recorded by the vCPU thread on every PMU exit
//! with relaxed atomics only: no allocation, no lock, no syscall. Readers
//! sum them up with [`exits_of`] into [`Exits`], which the statistics API
//! serves as `GET /v1/exits` and renders as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use vpmu::arch::trapped_ranges;

/// Most trapped MSRs (the trapped ranges of both vendors hold 59 today).
const MAX_MSRS: usize = 64;
/// Sub-buckets per power of two (3 bits: percentiles within 1/8).
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Buckets: values 0..8 exactly, then 8 per power of two up to 2^64.
const BUCKETS: usize = SUB + (64 - SUB_BITS as usize) * SUB;

/// Index of `msr` among the trapped MSRs (order of
/// [`vpmu::arch::trapped_ranges`]), if trapped.
pub fn msr_slot(msr: u32) -> Option<usize> {
    let mut base = 0usize;
    for (start, n) in trapped_ranges() {
        if msr >= start && msr - start < n {
            let i = base + (msr - start) as usize;
            return (i < MAX_MSRS).then_some(i);
        }
        base += n as usize;
    }
    None
}

/// Every trapped MSR, in slot order.
pub fn trapped_msrs() -> impl Iterator<Item = u32> {
    trapped_ranges()
        .flat_map(|(start, n)| start..start + n)
        .take(MAX_MSRS)
}

/// SDM or APM name of a PMU MSR.
pub fn msr_name(msr: u32) -> String {
    vpmu::arch::msr_name(msr).unwrap_or_else(|| format!("MSR_{msr:#x}"))
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let msb = 63 - ns.leading_zeros(); // >= SUB_BITS
    let sub = ((ns >> (msb - SUB_BITS)) & (SUB as u64 - 1)) as usize;
    SUB + (msb - SUB_BITS) as usize * SUB + sub
}

/// Largest value that falls into bucket `b`.
fn bucket_max(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let msb = (b - SUB) / SUB + SUB_BITS as usize;
    let sub = ((b - SUB) % SUB) as u64;
    let lo = (1u64 << msb) | (sub << (msb - SUB_BITS as usize));
    lo.saturating_add((1u64 << (msb - SUB_BITS as usize)) - 1)
}

/// What one vCPU's PMU exits did. Shared (`Arc`) between the vCPU thread,
/// which records, and the API, which reads.
#[derive(Debug)]
pub struct ExitRecorder {
    vcpu: u32,
    /// `[slot][0]`: RDMSR, `[slot][1]`: WRMSR.
    msr: [[AtomicU64; 2]; MAX_MSRS],
    /// Accesses of MSRs outside the trapped ranges (should stay 0).
    other: [AtomicU64; 2],
    gp_injected: AtomicU64,
    pmis_injected: AtomicU64,
    pmis_masked: AtomicU64,
    hist: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl ExitRecorder {
    pub fn new(vcpu: u32) -> Self {
        ExitRecorder {
            vcpu,
            msr: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            other: [AtomicU64::new(0), AtomicU64::new(0)],
            gp_injected: AtomicU64::new(0),
            pmis_injected: AtomicU64::new(0),
            pmis_masked: AtomicU64::new(0),
            hist: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    pub fn vcpu(&self) -> u32 {
        self.vcpu
    }

    /// One trapped MSR access (`write`: WRMSR) that took `handling_ns` to
    /// answer; `gp`: it was answered with #GP.
    #[inline]
    pub fn record_msr(&self, msr: u32, write: bool, gp: bool, handling_ns: u64) {
        let dir = usize::from(write);
        match msr_slot(msr) {
            Some(s) => self.msr[s][dir].fetch_add(1, Ordering::Relaxed),
            None => self.other[dir].fetch_add(1, Ordering::Relaxed),
        };
        if gp {
            self.gp_injected.fetch_add(1, Ordering::Relaxed);
        }
        self.record_handling(handling_ns);
    }

    /// Handling time of a PMU exit that is not an MSR access (e.g. a
    /// rotation kick).
    #[inline]
    pub fn record_handling(&self, ns: u64) {
        self.hist[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(ns, Ordering::Relaxed);
        self.max.fetch_max(ns, Ordering::Relaxed);
    }

    /// A PMI was delivered (`true`) or dropped because LVTPC is masked or
    /// its delivery mode cannot carry one (`false`).
    #[inline]
    pub fn record_pmi(&self, delivered: bool) {
        if delivered {
            self.pmis_injected.fetch_add(1, Ordering::Relaxed);
        } else {
            self.pmis_masked.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn hist(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.hist[i].load(Ordering::Relaxed))
    }

    /// This vCPU's numbers.
    pub fn read(&self) -> VcpuExits {
        let (rd, wr) =
            self.msr
                .iter()
                .chain(std::iter::once(&self.other))
                .fold((0u64, 0u64), |(r, w), c| {
                    (
                        r + c[0].load(Ordering::Relaxed),
                        w + c[1].load(Ordering::Relaxed),
                    )
                });
        VcpuExits {
            vcpu: self.vcpu,
            rdmsr: rd,
            wrmsr: wr,
            gp_injected: self.gp_injected.load(Ordering::Relaxed),
            pmis_injected: self.pmis_injected.load(Ordering::Relaxed),
            pmis_masked: self.pmis_masked.load(Ordering::Relaxed),
            handling_ns: distribution(
                &self.hist(),
                self.sum.load(Ordering::Relaxed),
                self.max.load(Ordering::Relaxed),
            ),
        }
    }
}

/// Percentiles of a histogram: the upper bound of the bucket holding the
/// q-th value, capped at `max`.
fn distribution(hist: &[u64; BUCKETS], sum: u64, max: u64) -> Distribution {
    let count: u64 = hist.iter().sum();
    if count == 0 {
        return Distribution::default();
    }
    let pct = |q: f64| -> u64 {
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &n) in hist.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bucket_max(b).min(max);
            }
        }
        max
    };
    Distribution {
        count,
        p50: pct(0.50),
        p99: pct(0.99),
        max,
        mean: sum / count,
    }
}

/// `GET /v1/exits`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Exits {
    /// Per trapped MSR, all vCPUs together; MSRs never accessed included.
    pub msrs: Vec<MsrExits>,
    pub rdmsr: u64,
    pub wrmsr: u64,
    /// Accesses answered with #GP.
    pub gp_injected: u64,
    /// PMIs delivered to the guest (NMI or fixed vector).
    pub pmis_injected: u64,
    /// PMIs dropped: LVTPC masked or an unsupported delivery mode.
    pub pmis_masked: u64,
    /// Handling time of PMU exits (from the exit to the answer).
    pub handling_ns: Distribution,
    /// The same as a cumulative histogram: exits handled in less than
    /// `le_ns`, at powers of two from 256 ns to 2^27 ns (134 ms); the count
    /// of all is `handling_ns.count`.
    #[serde(default)]
    pub handling_buckets: Vec<HandlingBucket>,
    /// Sum of the handling times, ns.
    #[serde(default)]
    pub handling_sum_ns: u64,
    pub vcpus: Vec<VcpuExits>,
}

/// One cumulative bucket of [`Exits::handling_buckets`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlingBucket {
    pub le_ns: u64,
    pub count: u64,
}

/// Powers of two of the exported histogram's bucket bounds.
const EXPORT_BUCKET_LOG2: std::ops::RangeInclusive<u32> = 8..=27;

/// The cumulative histogram of `hist` at powers of two. Every fine bucket
/// lies within one power of two, so the counts are exact.
fn export_buckets(hist: &[u64; BUCKETS]) -> Vec<HandlingBucket> {
    EXPORT_BUCKET_LOG2
        .map(|k| {
            let le_ns = 1u64 << k;
            let count = hist
                .iter()
                .enumerate()
                .filter(|(b, _)| bucket_max(*b) < le_ns)
                .map(|(_, n)| n)
                .sum();
            HandlingBucket { le_ns, count }
        })
        .collect()
}

/// Accesses of one MSR.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MsrExits {
    pub msr: u32,
    /// SDM name, e.g. `IA32_PERFEVTSEL0`.
    pub name: String,
    pub rdmsr: u64,
    pub wrmsr: u64,
}

/// Exits of one vCPU.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VcpuExits {
    pub vcpu: u32,
    pub rdmsr: u64,
    pub wrmsr: u64,
    pub gp_injected: u64,
    pub pmis_injected: u64,
    pub pmis_masked: u64,
    pub handling_ns: Distribution,
}

/// A latency distribution in ns; percentiles are upper bounds of
/// histogram buckets (within 1/8 of the value), never above `max`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
}

/// All vCPUs' exits together (for [`crate::api::StatsSource::exits`]).
pub fn exits_of<'a>(recorders: impl IntoIterator<Item = &'a ExitRecorder>) -> Exits {
    let mut msr_counts = [[0u64; 2]; MAX_MSRS];
    let mut hist = [0u64; BUCKETS];
    let (mut sum, mut max) = (0u64, 0u64);
    let mut out = Exits::default();
    for r in recorders {
        for (acc, c) in msr_counts.iter_mut().zip(&r.msr) {
            acc[0] += c[0].load(Ordering::Relaxed);
            acc[1] += c[1].load(Ordering::Relaxed);
        }
        for (acc, h) in hist.iter_mut().zip(r.hist()) {
            *acc += h;
        }
        sum = sum.saturating_add(r.sum.load(Ordering::Relaxed));
        max = max.max(r.max.load(Ordering::Relaxed));
        let v = r.read();
        out.rdmsr += v.rdmsr;
        out.wrmsr += v.wrmsr;
        out.gp_injected += v.gp_injected;
        out.pmis_injected += v.pmis_injected;
        out.pmis_masked += v.pmis_masked;
        out.vcpus.push(v);
    }
    out.msrs = trapped_msrs()
        .enumerate()
        .map(|(i, msr)| MsrExits {
            msr,
            name: msr_name(msr),
            rdmsr: msr_counts[i][0],
            wrmsr: msr_counts[i][1],
        })
        .collect();
    out.handling_ns = distribution(&hist, sum, max);
    out.handling_buckets = export_buckets(&hist);
    out.handling_sum_ns = sum;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_buckets_are_cumulative_and_exact() {
        let mut hist = [0u64; BUCKETS];
        for ns in [100u64, 255, 256, 300, 1000, 1 << 20, u64::MAX] {
            hist[bucket_of(ns)] += 1;
        }
        let b = export_buckets(&hist);
        assert_eq!(b.len(), 20);
        assert_eq!((b[0].le_ns, b[0].count), (256, 2));
        assert_eq!((b[1].le_ns, b[1].count), (512, 4));
        assert_eq!((b[2].le_ns, b[2].count), (1024, 5));
        assert_eq!(b[12].count, 5, "1 << 20 is not below 1 << 20");
        assert_eq!(b[13].count, 6);
        assert_eq!(b[19].count, 6, "u64::MAX only in +Inf");
        assert!(b.windows(2).all(|w| w[0].count <= w[1].count));
    }

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for ns in [0u64, 1, 7, 8, 9, 15, 16, 100, 999, 8_200, 1 << 40, u64::MAX] {
            let b = bucket_of(ns);
            assert!(b < BUCKETS);
            assert!(b >= last);
            last = b;
            let hi = bucket_max(b);
            assert!(hi >= ns, "{ns} -> bucket {b} max {hi}");
            assert!(hi - ns <= ns / 8 + 1, "{ns} -> {hi}");
        }
    }

    #[test]
    fn counts_and_percentiles() {
        assert_eq!(trapped_msrs().count(), 35 + 24, "Intel and AMD PMU MSRs");
        let r = ExitRecorder::new(0);
        for i in 0..100u64 {
            r.record_msr(0x186, true, false, 1000 + i);
        }
        r.record_msr(0xC1, false, false, 50_000);
        r.record_msr(0x38F, false, true, 2000);
        r.record_pmi(true);
        r.record_pmi(false);
        let e = exits_of([&r]);
        assert_eq!(e.msrs.len(), 35 + 24);
        let sel0 = e.msrs.iter().find(|m| m.msr == 0x186).unwrap();
        assert_eq!(
            (sel0.name.as_str(), sel0.rdmsr, sel0.wrmsr),
            ("IA32_PERFEVTSEL0", 0, 100)
        );
        assert_eq!((e.rdmsr, e.wrmsr, e.gp_injected), (2, 100, 1));
        assert_eq!((e.pmis_injected, e.pmis_masked), (1, 1));
        let d = e.handling_ns;
        assert_eq!((d.count, d.max), (102, 50_000));
        assert!((1050..=1050 + 1050 / 8).contains(&d.p50), "{d:?}");
        assert!((2000..=2300).contains(&d.p99), "{d:?}");
    }
}
