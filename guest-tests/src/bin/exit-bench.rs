//! The exit-path benchmark: what one trapped PMU MSR access costs the guest,
//! against the floor of every user-space exit (an `OUT` to a port the VMM
//! ignores), and what the vPMU costs a CPU-bound guest.
//!
//! Command line (all optional):
//! - `n=N` accesses per variant and repetition (default 100000; rounded up
//!   to whole loop iterations), `reps=R` repetitions (default 7, 1..=31),
//!   `short` (n=512, reps=7, a short CPU-bound loop: the test mode);
//! - `arch=intel|amd` (default: CPUID; the AMD PMU with `AuthenticAMD`);
//! - `mode=all|access|loop|hold` (default all), `only=VARIANT` (one access
//!   variant, no null exit, no ratio: for counting host syscalls);
//! - `units=U` work units per CPU-bound run (default 2000), `period=P` core
//!   cycles between PMIs of the sampling run (default 2600000: 1 kHz at the
//!   2.6 GHz this host's software-emulated cycles count at);
//! - `ticks=T`: how long `mode=hold` keeps every counter enabled.
//!
//! Output, one line per variant (medians over the repetitions; the ratio is
//! taken in each repetition against that repetition's null exit):
//! `bench <variant> ticks_per_access=<t> ratio=<r> ratio_min=<a> ratio_max=<b>`
//! and for the CPU-bound loop `bench loop_<state> ticks_per_unit=<t>
//! ratio=<r> ...` against the idle run of the same pair.
//!
//! Accesses are unrolled in asm, 8 per loop iteration, results discarded:
//! guest instructions are emulated on a nested host, so every extra
//! instruction of a compiled loop would distort the ratios. The variants
//! that need a value change between accesses (CPUID's leaf, GLOBAL_CTRL's
//! toggle, the PMI sequence) pay one or two register moves per access.
#![no_std]
#![no_main]

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_tests::idt::{self, InterruptFrame};
use guest_tests::pmu::{
    EN, IA32_FIXED_CTR_CTRL, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, IA32_PERF_GLOBAL_OVF_CTRL,
    IA32_PERF_GLOBAL_STATUS, IA32_PMC0, INT, OS, USR,
};
use guest_tests::{cmdline, cpuid, exit, irq, lapic, println, rdtsc, try_rdmsr, try_wrmsr};

guest_tests::entry!(main);

/// A port no device claims: the VMM returns from the exit and does nothing
/// (`vmm/src/devices/mod.rs`: unclaimed writes are ignored, logged once),
/// and KVM's in-kernel devices (PIC, PIT, speaker) do not cover it.
const NULL_PORT: u16 = 0x80;

/// AMD64 PMU MSRs (APM Vol. 2 §13.2).
const AMD_PERF_EVT_SEL0: u32 = 0xC001_0000;
const AMD_PERF_CTR0: u32 = 0xC001_0004;
const AMD_PERF_CTL0: u32 = 0xC001_0200;
const AMD_PERF_CTR_CORE0: u32 = 0xC001_0201;
const AMD_GLOBAL_STATUS: u32 = 0xC000_0300;
const AMD_GLOBAL_CTL: u32 = 0xC000_0301;
const AMD_GLOBAL_STATUS_CLR: u32 = 0xC000_0302;

/// Core cycles: Intel architectural event 3CH, AMD PMCx076.
const INTEL_CYCLES: u64 = 0x3C;
const AMD_CYCLES: u64 = 0x76;

/// Vector of the sampling run's PMIs (fixed delivery through LVTPC).
const PMI_VECTOR: u8 = 0x50;

const MAX_REPS: usize = 31;
const MAX_VARIANTS: usize = 12;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arch {
    Intel,
    Amd,
}

/// The guest-visible PMU, as CPUID (and a probe, for AMD) shows it.
#[derive(Clone, Copy)]
struct Pmu {
    arch: Arch,
    /// Any PMU at all (`--vpmu off`: none).
    present: bool,
    gp: u32,
    fixed: u32,
    /// Global control and status MSRs (Intel version >= 2, AMD PerfMonV2).
    global: bool,
    /// AMD PerfCtrCore: the interleaved PERF_CTL/PERF_CTR MSRs.
    core: bool,
}

impl Pmu {
    fn detect() -> Pmu {
        let leaf0 = cpuid(0, 0);
        let amd_vendor =
            (leaf0.ebx, leaf0.edx, leaf0.ecx) == (0x6874_7541, 0x6974_6E65, 0x444D_4163);
        let ext_max = cpuid(0x8000_0000, 0).eax;
        let perf_ctr_core = ext_max >= 0x8000_0001 && cpuid(0x8000_0001, 0).ecx & (1 << 23) != 0;
        let arch = match cmdline::get("arch") {
            Some("amd") => Arch::Amd,
            Some("intel") => Arch::Intel,
            _ if amd_vendor => Arch::Amd,
            _ => Arch::Intel,
        };
        match arch {
            Arch::Intel => {
                let a = if leaf0.eax >= 0xA {
                    cpuid(0xA, 0)
                } else {
                    guest_tests::msr::Cpuid {
                        eax: 0,
                        ebx: 0,
                        ecx: 0,
                        edx: 0,
                    }
                };
                let version = a.eax & 0xFF;
                Pmu {
                    arch,
                    present: version >= 1,
                    gp: (a.eax >> 8) & 0xFF,
                    fixed: if version >= 2 { a.edx & 0x1F } else { 0 },
                    global: version >= 2,
                    core: false,
                }
            }
            Arch::Amd => {
                let v2 = ext_max >= 0x8000_0022 && cpuid(0x8000_0022, 0).eax & 1 != 0;
                let gp = if v2 {
                    cpuid(0x8000_0022, 0).ebx & 0xF
                } else if perf_ctr_core {
                    6
                } else {
                    4
                };
                Pmu {
                    arch,
                    present: try_rdmsr(AMD_PERF_EVT_SEL0).is_ok(),
                    gp,
                    fixed: 0,
                    global: v2,
                    core: perf_ctr_core,
                }
            }
        }
    }

    fn evtsel(&self, i: u32) -> u32 {
        match (self.arch, self.core) {
            (Arch::Intel, _) => IA32_PERFEVTSEL0 + i,
            (Arch::Amd, true) => AMD_PERF_CTL0 + 2 * i,
            (Arch::Amd, false) => AMD_PERF_EVT_SEL0 + i,
        }
    }

    fn ctr(&self, i: u32) -> u32 {
        match (self.arch, self.core) {
            (Arch::Intel, _) => IA32_PMC0 + i,
            (Arch::Amd, true) => AMD_PERF_CTR_CORE0 + 2 * i,
            (Arch::Amd, false) => AMD_PERF_CTR0 + i,
        }
    }

    fn global_status(&self) -> u32 {
        match self.arch {
            Arch::Intel => IA32_PERF_GLOBAL_STATUS,
            Arch::Amd => AMD_GLOBAL_STATUS,
        }
    }

    fn global_ctrl(&self) -> u32 {
        match self.arch {
            Arch::Intel => IA32_PERF_GLOBAL_CTRL,
            Arch::Amd => AMD_GLOBAL_CTL,
        }
    }

    /// IA32_PERF_GLOBAL_OVF_CTRL / PerfCntrGlobalStatusClr.
    fn status_clear(&self) -> u32 {
        match self.arch {
            Arch::Intel => IA32_PERF_GLOBAL_OVF_CTRL,
            Arch::Amd => AMD_GLOBAL_STATUS_CLR,
        }
    }

    fn cycles(&self) -> u64 {
        let event = match self.arch {
            Arch::Intel => INTEL_CYCLES,
            Arch::Amd => AMD_CYCLES,
        };
        event | USR | OS | EN
    }

    fn name(&self) -> &'static str {
        match self.arch {
            Arch::Intel => "intel",
            Arch::Amd => "amd",
        }
    }

    /// Every counter stopped and zero, status clear.
    fn reset(&self) {
        if !self.present {
            return;
        }
        if self.global {
            let _ = try_wrmsr(self.global_ctrl(), 0);
        }
        if self.arch == Arch::Intel && self.fixed > 0 {
            let _ = try_wrmsr(IA32_FIXED_CTR_CTRL, 0);
        }
        for i in 0..self.gp {
            let _ = try_wrmsr(self.evtsel(i), 0);
            let _ = try_wrmsr(self.ctr(i), 0);
        }
        if self.global {
            let _ = try_wrmsr(self.status_clear(), self.gp_mask() | self.fixed_mask());
        }
    }

    fn gp_mask(&self) -> u64 {
        (1u64 << self.gp) - 1
    }

    fn fixed_mask(&self) -> u64 {
        ((1u64 << self.fixed) - 1) << 32
    }

    /// Counters `0..n` programmed on core cycles, globally disabled.
    fn program_cycles(&self, n: u32) {
        self.reset();
        for i in 0..n.min(self.gp) {
            let _ = try_wrmsr(self.evtsel(i), self.cycles());
        }
    }

    /// Counter 0 counting core cycles (the state of the single-MSR variants).
    fn one_running(&self) {
        self.program_cycles(1);
        if self.global {
            let _ = try_wrmsr(self.global_ctrl(), 1);
        }
    }

    /// Every counter counting: GP counters on core cycles, Intel's fixed
    /// counters in both rings.
    fn all_running(&self) {
        self.program_cycles(self.gp);
        if self.arch == Arch::Intel && self.fixed > 0 {
            let mut ctrl = 0;
            for i in 0..self.fixed {
                ctrl |= 3 << (4 * i);
            }
            let _ = try_wrmsr(IA32_FIXED_CTR_CTRL, ctrl);
        }
        if self.global {
            let _ = try_wrmsr(self.global_ctrl(), self.gp_mask() | self.fixed_mask());
        }
    }
}

/// One measured access pattern.
#[derive(Clone, Copy)]
enum Variant {
    /// `OUT` to [`NULL_PORT`]: the user-space exit round trip.
    NullExit,
    /// `CPUID` leaf 0: an exit KVM answers in the kernel.
    Cpuid,
    RdmsrEvtsel,
    /// WRMSR of the value the event select already holds.
    WrmsrEvtsel,
    RdmsrGlobalStatus,
    /// RDMSR of counter 0 while it counts core cycles.
    RdmsrRunningCounter,
    /// WRMSR of the global control, enabling then disabling `n` counters
    /// (per WRMSR).
    WrmsrGlobalCtrl(u32),
    /// One PMI handler's MSR sequence (per access, 6 accesses).
    PmiSequence,
}

impl Variant {
    fn name(self) -> &'static str {
        const TOGGLE: [&str; 9] = [
            "wrmsr_global_ctrl_toggle_0",
            "wrmsr_global_ctrl_toggle_1",
            "wrmsr_global_ctrl_toggle_2",
            "wrmsr_global_ctrl_toggle_3",
            "wrmsr_global_ctrl_toggle_4",
            "wrmsr_global_ctrl_toggle_5",
            "wrmsr_global_ctrl_toggle_6",
            "wrmsr_global_ctrl_toggle_7",
            "wrmsr_global_ctrl_toggle_8",
        ];
        match self {
            Variant::NullExit => "null_exit",
            Variant::Cpuid => "cpuid",
            Variant::RdmsrEvtsel => "rdmsr_evtsel",
            Variant::WrmsrEvtsel => "wrmsr_evtsel_same",
            Variant::RdmsrGlobalStatus => "rdmsr_global_status",
            Variant::RdmsrRunningCounter => "rdmsr_running_counter",
            Variant::WrmsrGlobalCtrl(n) => TOGGLE[(n as usize).min(8)],
            Variant::PmiSequence => "pmi_handler_sequence",
        }
    }

    /// Accesses per loop iteration.
    fn per_iteration(self) -> u64 {
        match self {
            Variant::PmiSequence => 24,
            _ => 8,
        }
    }
}

/// The access variants this PMU has, in output order (null exit first).
fn variants(pmu: &Pmu, out: &mut [Variant; MAX_VARIANTS]) -> usize {
    let mut n = 0;
    let mut push = |v| {
        if n < MAX_VARIANTS {
            out[n] = v;
            n += 1;
        }
    };
    push(Variant::NullExit);
    push(Variant::Cpuid);
    if !pmu.present {
        return n;
    }
    push(Variant::RdmsrEvtsel);
    push(Variant::WrmsrEvtsel);
    if pmu.global {
        push(Variant::RdmsrGlobalStatus);
    }
    push(Variant::RdmsrRunningCounter);
    if pmu.global {
        push(Variant::WrmsrGlobalCtrl(4.min(pmu.gp)));
        // Intel: 8 counters; the AMD PMU has at most 6.
        let most = match pmu.arch {
            Arch::Intel => 8,
            Arch::Amd => 6,
        };
        if pmu.gp > 4 {
            push(Variant::WrmsrGlobalCtrl(most.min(pmu.gp)));
        }
        push(Variant::PmiSequence);
    }
    n
}

/// `iters` x 8 `OUT`s to the null port.
fn loop_out(iters: u64) {
    // SAFETY: port writes to a port no device claims; no memory effects.
    unsafe {
        asm!(
            "2:",
            "out dx, al", "out dx, al", "out dx, al", "out dx, al",
            "out dx, al", "out dx, al", "out dx, al", "out dx, al",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            in("dx") NULL_PORT,
            in("al") 0u8,
            options(nomem, nostack),
        );
    }
}

/// `iters` x 8 `CPUID` leaf 0 (one `mov` each to reload the leaf).
fn loop_cpuid(iters: u64) {
    // SAFETY: CPUID has no memory effects; RBX (not an allowed operand, but
    // possibly holding a value of the caller) is saved in R9 and restored
    // after the loop; the counter is in R8, so CPUID cannot clobber it.
    unsafe {
        asm!(
            "mov r9, rbx",
            "2:",
            "xor eax, eax", "cpuid", "xor eax, eax", "cpuid",
            "xor eax, eax", "cpuid", "xor eax, eax", "cpuid",
            "xor eax, eax", "cpuid", "xor eax, eax", "cpuid",
            "xor eax, eax", "cpuid", "xor eax, eax", "cpuid",
            "dec r8",
            "jnz 2b",
            "mov rbx, r9",
            inout("r8") iters => _,
            out("r9") _,
            out("eax") _,
            out("ecx") _,
            out("edx") _,
            options(nomem, nostack),
        );
    }
}

/// `iters` x 8 `RDMSR` of `msr`, results discarded.
fn loop_rdmsr(iters: u64, msr: u32) {
    // SAFETY: the caller reads a PMU MSR this PMU has (no #GP); reading has
    // no memory effects.
    unsafe {
        asm!(
            "2:",
            "rdmsr", "rdmsr", "rdmsr", "rdmsr",
            "rdmsr", "rdmsr", "rdmsr", "rdmsr",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            in("ecx") msr,
            out("eax") _,
            out("edx") _,
            options(nomem, nostack),
        );
    }
}

/// `iters` x 8 `WRMSR` of `value` to `msr`.
fn loop_wrmsr(iters: u64, msr: u32, value: u64) {
    // SAFETY: the caller writes a PMU MSR this PMU has, a value it accepts;
    // the PMU state it changes is the benchmark's own.
    unsafe {
        asm!(
            "2:",
            "wrmsr", "wrmsr", "wrmsr", "wrmsr",
            "wrmsr", "wrmsr", "wrmsr", "wrmsr",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            in("ecx") msr,
            in("eax") value as u32,
            in("edx") (value >> 32) as u32,
            options(nomem, nostack),
        );
    }
}

/// `iters` x 4 pairs of `WRMSR` of `msr`: `mask`, then 0 (low 32 bits).
fn loop_toggle(iters: u64, msr: u32, mask: u32) {
    // SAFETY: as for `loop_wrmsr`.
    unsafe {
        asm!(
            "2:",
            "mov eax, {on:e}", "wrmsr", "xor eax, eax", "wrmsr",
            "mov eax, {on:e}", "wrmsr", "xor eax, eax", "wrmsr",
            "mov eax, {on:e}", "wrmsr", "xor eax, eax", "wrmsr",
            "mov eax, {on:e}", "wrmsr", "xor eax, eax", "wrmsr",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            on = in(reg) mask,
            in("ecx") msr,
            in("edx") 0u32,
            out("eax") _,
            options(nomem, nostack),
        );
    }
}

/// The MSRs of one PMI handler's sequence.
struct Sequence {
    status: u32,
    ctrl: u32,
    ctr: u32,
    clear: u32,
    /// Counter preload (low 32 bits; EDX is 0).
    preload: u32,
    /// Bits cleared in the status and re-enabled in the global control.
    mask: u32,
}

/// `iters` x 4 PMI handler sequences: RDMSR GLOBAL_STATUS, WRMSR
/// GLOBAL_CTRL 0, RDMSR counter, WRMSR counter, WRMSR status clear, WRMSR
/// GLOBAL_CTRL mask.
fn loop_pmi_sequence(iters: u64, s: &Sequence) {
    // SAFETY: as for `loop_wrmsr`; every MSR exists on this PMU.
    unsafe {
        asm!(
            "2:",
            "mov ecx, {status:e}", "rdmsr",
            "mov ecx, {ctrl:e}", "xor eax, eax", "xor edx, edx", "wrmsr",
            "mov ecx, {ctr:e}", "rdmsr",
            "mov eax, {preload:e}", "xor edx, edx", "wrmsr",
            "mov ecx, {clear:e}", "mov eax, {mask:e}", "wrmsr",
            "mov ecx, {ctrl:e}", "wrmsr",

            "mov ecx, {status:e}", "rdmsr",
            "mov ecx, {ctrl:e}", "xor eax, eax", "xor edx, edx", "wrmsr",
            "mov ecx, {ctr:e}", "rdmsr",
            "mov eax, {preload:e}", "xor edx, edx", "wrmsr",
            "mov ecx, {clear:e}", "mov eax, {mask:e}", "wrmsr",
            "mov ecx, {ctrl:e}", "wrmsr",

            "mov ecx, {status:e}", "rdmsr",
            "mov ecx, {ctrl:e}", "xor eax, eax", "xor edx, edx", "wrmsr",
            "mov ecx, {ctr:e}", "rdmsr",
            "mov eax, {preload:e}", "xor edx, edx", "wrmsr",
            "mov ecx, {clear:e}", "mov eax, {mask:e}", "wrmsr",
            "mov ecx, {ctrl:e}", "wrmsr",

            "mov ecx, {status:e}", "rdmsr",
            "mov ecx, {ctrl:e}", "xor eax, eax", "xor edx, edx", "wrmsr",
            "mov ecx, {ctr:e}", "rdmsr",
            "mov eax, {preload:e}", "xor edx, edx", "wrmsr",
            "mov ecx, {clear:e}", "mov eax, {mask:e}", "wrmsr",
            "mov ecx, {ctrl:e}", "wrmsr",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iters => _,
            status = in(reg) s.status,
            ctrl = in(reg) s.ctrl,
            ctr = in(reg) s.ctr,
            clear = in(reg) s.clear,
            preload = in(reg) s.preload,
            mask = in(reg) s.mask,
            out("eax") _,
            out("ecx") _,
            out("edx") _,
            options(nomem, nostack),
        );
    }
}

/// Sets up the PMU state of `v`, runs `iters` loop iterations of it, and
/// returns the TSC ticks the loop took.
fn measure(pmu: &Pmu, v: Variant, iters: u64) -> u64 {
    match v {
        Variant::NullExit | Variant::Cpuid => {}
        Variant::WrmsrGlobalCtrl(n) => {
            pmu.program_cycles(n);
        }
        _ => pmu.one_running(),
    }
    let t0 = rdtsc();
    match v {
        Variant::NullExit => loop_out(iters),
        Variant::Cpuid => loop_cpuid(iters),
        Variant::RdmsrEvtsel => loop_rdmsr(iters, pmu.evtsel(0)),
        Variant::WrmsrEvtsel => loop_wrmsr(iters, pmu.evtsel(0), pmu.cycles()),
        Variant::RdmsrGlobalStatus => loop_rdmsr(iters, pmu.global_status()),
        Variant::RdmsrRunningCounter => loop_rdmsr(iters, pmu.ctr(0)),
        Variant::WrmsrGlobalCtrl(n) => loop_toggle(iters, pmu.global_ctrl(), (1u32 << n) - 1),
        Variant::PmiSequence => loop_pmi_sequence(
            iters,
            &Sequence {
                status: pmu.global_status(),
                ctrl: pmu.global_ctrl(),
                ctr: pmu.ctr(0),
                clear: pmu.status_clear(),
                // Intel's legacy counter write sign-extends: 2^48 - 2^31.
                preload: 0x8000_0000,
                mask: 1,
            },
        ),
    }
    let t1 = rdtsc();
    t1.wrapping_sub(t0).max(1)
}

fn median_u64(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    match v.len() {
        0 => 0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn median_f64(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

struct Params {
    n: u64,
    reps: usize,
    units: u64,
    period: u64,
}

fn access_variants(pmu: &Pmu, p: &Params) {
    let mut list = [Variant::NullExit; MAX_VARIANTS];
    let count = variants(pmu, &mut list);
    if let Some(only) = cmdline::get("only") {
        for &v in &list[..count] {
            if v.name() == only {
                let iters = p.n.div_ceil(v.per_iteration()).max(1);
                for _ in 0..p.reps {
                    measure(pmu, v, iters);
                }
                println!(
                    "bench {} accesses={} reps={}",
                    only,
                    iters * v.per_iteration(),
                    p.reps
                );
                pmu.reset();
                return;
            }
        }
        println!("exit-bench: no variant {} on this PMU", only);
        exit::exit(exit::FAILURE);
    }
    // Per variant and repetition: ticks per access, and the ratio to the
    // null exit of the same repetition.
    let mut ticks = [[0f64; MAX_REPS]; MAX_VARIANTS];
    let mut ratio = [[0f64; MAX_REPS]; MAX_VARIANTS];
    for rep in 0..p.reps {
        let mut null = 1.0;
        for (i, &v) in list[..count].iter().enumerate() {
            let iters = p.n.div_ceil(v.per_iteration()).max(1);
            let t = measure(pmu, v, iters) as f64 / (iters * v.per_iteration()) as f64;
            if i == 0 {
                null = t;
            }
            ticks[i][rep] = t;
            ratio[i][rep] = t / null;
        }
        pmu.reset();
    }
    for (i, &v) in list[..count].iter().enumerate() {
        let accesses = p.n.div_ceil(v.per_iteration()).max(1) * v.per_iteration();
        let per = median_f64(&mut ticks[i][..p.reps]);
        let ratios = &mut ratio[i][..p.reps];
        let r = median_f64(ratios);
        println!(
            "bench {} ticks_per_access={:.1} ratio={:.3} ratio_min={:.3} ratio_max={:.3} accesses={} reps={}",
            v.name(),
            per,
            r,
            ratios[0],
            ratios[p.reps - 1],
            accesses,
            p.reps
        );
    }
}

/// One unit of CPU-bound work: a dependent integer chain with no exits.
#[inline(never)]
fn work_unit(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}

static SINK: AtomicU64 = AtomicU64::new(0);

/// TSC ticks `units` work units take.
fn run_units(units: u64) -> u64 {
    let t0 = rdtsc();
    let mut acc = 0u64;
    for i in 0..units {
        acc = acc.wrapping_add(work_unit(acc ^ i));
    }
    let t1 = rdtsc();
    SINK.fetch_add(acc, Ordering::Relaxed);
    t1.wrapping_sub(t0).max(1)
}

/// PMIs taken by the sampling run.
static PMIS: AtomicU32 = AtomicU32::new(0);
/// The sampling counter's re-arm value and MSRs (set before PMIs start).
static REARM_CTR: AtomicU32 = AtomicU32::new(0);
static REARM_CLEAR: AtomicU32 = AtomicU32::new(0);
static REARM_VALUE: AtomicU64 = AtomicU64::new(0);

/// A PMI handler that only re-arms: preload the counter, clear its
/// overflow bit, unmask LVTPC (masked on delivery). The runtime sends EOI.
fn pmi_handler(_frame: &mut InterruptFrame) {
    PMIS.fetch_add(1, Ordering::Relaxed);
    let _ = try_wrmsr(
        REARM_CTR.load(Ordering::Relaxed),
        REARM_VALUE.load(Ordering::Relaxed),
    );
    let clear = REARM_CLEAR.load(Ordering::Relaxed);
    if clear != 0 {
        let _ = try_wrmsr(clear, 1);
    }
    lapic::set_lvt_perf(u32::from(PMI_VECTOR));
}

/// Counter 0 sampling core cycles every `period` cycles, with INT.
fn start_sampling(pmu: &Pmu, period: u64) {
    pmu.reset();
    let value = match pmu.arch {
        // The legacy alias sign-extends bit 31: -period for period < 2^31.
        Arch::Intel => u64::from((period.min(0x7FFF_FFFF) as u32).wrapping_neg()),
        Arch::Amd => (1u64 << 48) - period.min(1 << 47),
    };
    REARM_CTR.store(pmu.ctr(0), Ordering::Relaxed);
    REARM_CLEAR.store(
        if pmu.global { pmu.status_clear() } else { 0 },
        Ordering::Relaxed,
    );
    REARM_VALUE.store(value, Ordering::Relaxed);
    idt::set_handler(PMI_VECTOR, pmi_handler);
    lapic::set_lvt_perf(u32::from(PMI_VECTOR));
    let _ = try_wrmsr(pmu.ctr(0), value);
    let _ = try_wrmsr(pmu.evtsel(0), pmu.cycles() | INT);
    if pmu.global {
        let _ = try_wrmsr(pmu.global_ctrl(), 1);
    }
    irq::enable();
}

fn stop_sampling(pmu: &Pmu) {
    irq::disable();
    pmu.reset();
    lapic::set_lvt_perf(lapic::LVT_MASKED | u32::from(PMI_VECTOR));
}

/// The CPU-bound loop, paired and interleaved: per repetition one idle
/// run, one with every counter counting, one sampling at `period`.
fn cpu_loop(pmu: &Pmu, p: &Params) {
    let mut idle = [0u64; MAX_REPS];
    let mut counting = [0f64; MAX_REPS];
    let mut sampling = [0f64; MAX_REPS];
    let mut pmis = [0u64; MAX_REPS];
    let mut r_count = [0f64; MAX_REPS];
    let mut r_sample = [0f64; MAX_REPS];
    let mut idle_pair = [0f64; MAX_REPS];
    let mut prev_idle = 0u64;
    // Warm-up: the first run pays for page faults and cold caches.
    run_units(p.units / 4 + 1);
    for rep in 0..p.reps {
        pmu.reset();
        let i = run_units(p.units);
        idle[rep] = i;
        // Idle against the previous idle: the noise of the pairing itself.
        idle_pair[rep] = if prev_idle == 0 {
            1.0
        } else {
            i as f64 / prev_idle as f64
        };
        prev_idle = i;
        if pmu.present {
            pmu.all_running();
            let c = run_units(p.units);
            pmu.reset();
            counting[rep] = c as f64 / p.units as f64;
            r_count[rep] = c as f64 / i as f64;
            let before = PMIS.load(Ordering::Relaxed);
            start_sampling(pmu, p.period);
            let s = run_units(p.units);
            stop_sampling(pmu);
            pmis[rep] = u64::from(PMIS.load(Ordering::Relaxed).wrapping_sub(before));
            sampling[rep] = s as f64 / p.units as f64;
            r_sample[rep] = s as f64 / i as f64;
        }
    }
    let reps = p.reps;
    let idle_med = median_u64(&mut idle[..reps]) as f64 / p.units as f64;
    // Noise: the spread of successive idle runs, as a ratio.
    let noise = &mut idle_pair[1..reps.max(1)];
    let (noise_lo, noise_hi) = if noise.is_empty() {
        (1.0, 1.0)
    } else {
        let _ = median_f64(noise);
        (noise[0], noise[noise.len() - 1])
    };
    println!(
        "bench loop_idle ticks_per_unit={:.1} ratio=1.000 noise_min={:.3} noise_max={:.3} units={} reps={}",
        idle_med, noise_lo, noise_hi, p.units, reps
    );
    if !pmu.present {
        return;
    }
    let c = median_f64(&mut counting[..reps]);
    let rc = &mut r_count[..reps];
    let rcm = median_f64(rc);
    println!(
        "bench loop_all_counting ticks_per_unit={:.1} ratio={:.3} ratio_min={:.3} ratio_max={:.3} units={} reps={}",
        c,
        rcm,
        rc[0],
        rc[reps - 1],
        p.units,
        reps
    );
    let s = median_f64(&mut sampling[..reps]);
    let rs = &mut r_sample[..reps];
    let rsm = median_f64(rs);
    let pm = median_u64(&mut pmis[..reps]);
    println!(
        "bench loop_sampling ticks_per_unit={:.1} ratio={:.3} ratio_min={:.3} ratio_max={:.3} pmis={} period={} units={} reps={}",
        s,
        rsm,
        rs[0],
        rs[reps - 1],
        pm,
        p.period,
        p.units,
        reps
    );
}

/// Every counter enabled for `ticks` TSC ticks: the host samples the VMM's
/// resident memory and descriptors meanwhile.
fn hold(pmu: &Pmu) {
    let ticks = cmdline::get_u64("ticks").unwrap_or(3_000_000_000);
    pmu.all_running();
    println!("exit-bench holding gp={} fixed={}", pmu.gp, pmu.fixed);
    guest_tests::msr::spin_tsc(ticks);
    pmu.reset();
}

fn main() {
    irq::disable();
    let pmu = Pmu::detect();
    let short = cmdline::has("short");
    let p = Params {
        n: cmdline::get_u64("n")
            .unwrap_or(if short { 512 } else { 100_000 })
            .max(1),
        reps: cmdline::get_u64("reps")
            .unwrap_or(7)
            .clamp(1, MAX_REPS as u64) as usize,
        units: cmdline::get_u64("units")
            .unwrap_or(if short { 20 } else { 2000 })
            .max(1),
        period: cmdline::get_u64("period").unwrap_or(2_600_000).max(1),
    };
    let mode = cmdline::get("mode").unwrap_or("all");
    println!(
        "exit-bench arch={} pmu={} gp={} fixed={} global={} n={} reps={} mode={}",
        pmu.name(),
        if pmu.present { "on" } else { "off" },
        pmu.gp,
        pmu.fixed,
        pmu.global,
        p.n,
        p.reps,
        mode
    );
    pmu.reset();
    match mode {
        "access" => access_variants(&pmu, &p),
        "loop" => cpu_loop(&pmu, &p),
        "hold" => hold(&pmu),
        "all" => {
            access_variants(&pmu, &p);
            if cmdline::get("only").is_none() {
                cpu_loop(&pmu, &p);
            }
        }
        other => {
            println!("exit-bench: unknown mode {}", other);
            exit::exit(exit::FAILURE);
        }
    }
    pmu.reset();
    println!("exit-bench done");
    exit::exit(exit::SUCCESS);
}
