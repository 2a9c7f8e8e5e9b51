//! Self-test of the guest runtime (TAP): exception-table recovery of RDMSR,
//! WRMSR and RDPMC on every CPU, interrupt and NMI handlers, IPIs, barriers,
//! the command line and the multiboot memory map.
//! Expects the command line `selftest=1 answer=0x2a` (other words ignored).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU32, Ordering};
use guest_tests::idt::{self, InterruptFrame};
use guest_tests::sync::Barrier;
use guest_tests::{cmdline, exceptions, lapic, mbi, msr, percpu, smp, Tap};

guest_tests::entry!(main);

const IA32_APIC_BASE: u32 = 0x1B;
/// An MSR index no CPU implements.
const BOGUS_MSR: u32 = 0x4000_0FFF;
const TEST_VECTOR: u8 = 0x40;

static TEST_IRQS: AtomicU32 = AtomicU32::new(0);
static NMIS: AtomicU32 = AtomicU32::new(0);
static BARRIER: Barrier = Barrier::all_cpus();
static ARRIVED: AtomicU32 = AtomicU32::new(0);

fn test_irq(frame: &mut InterruptFrame) {
    assert_eq!(frame.vector, u64::from(TEST_VECTOR));
    TEST_IRQS.fetch_add(1, Ordering::SeqCst);
}

fn nmi(_frame: &mut InterruptFrame) {
    NMIS.fetch_add(1, Ordering::SeqCst);
}

/// Spin (about a second at most) until `counter` is non-zero.
fn wait_for(counter: &AtomicU32) {
    let start = msr::rdtsc();
    while counter.load(Ordering::SeqCst) == 0 && msr::rdtsc() - start < 2_000_000_000 {
        core::hint::spin_loop();
    }
}

fn per_cpu(cpu: u32) {
    let tap = Tap::new();
    tap.check_eq(
        format_args!("cpu {cpu}: cpu id matches the APIC ID"),
        cpu,
        lapic::id(),
    );
    let base = msr::try_rdmsr(IA32_APIC_BASE);
    tap.check(
        format_args!("cpu {cpu}: rdmsr IA32_APIC_BASE works"),
        base.is_ok(),
    );
    let bsp_flag = base.map(|b| b & (1 << 8) != 0).unwrap_or(false);
    tap.check_eq(format_args!("cpu {cpu}: BSP flag"), bsp_flag, cpu == 0);
    let before = percpu::recovered_faults(cpu);
    let r = msr::try_rdmsr(BOGUS_MSR);
    tap.check_diag(
        format_args!("cpu {cpu}: rdmsr of a bogus MSR raises #GP"),
        matches!(r, Err(f) if f.is_gp()),
        format_args!("got {:?}", r),
    );
    let w = msr::try_wrmsr(BOGUS_MSR, 0x1234_5678_9abc_def0);
    tap.check_diag(
        format_args!("cpu {cpu}: wrmsr of a bogus MSR raises #GP"),
        matches!(w, Err(f) if f.is_gp()),
        format_args!("got {:?}", w),
    );
    tap.check(
        format_args!("cpu {cpu}: catch on this CPU"),
        exceptions::expect_gp(|| msr::wrmsr(BOGUS_MSR, 0)),
    );
    tap.check_eq(
        format_args!("cpu {cpu}: two faults recovered"),
        percpu::recovered_faults(cpu) - before,
        2,
    );
    ARRIVED.fetch_add(1, Ordering::SeqCst);
    BARRIER.wait();
    tap.check_eq(
        format_args!("cpu {cpu}: barrier saw every CPU"),
        ARRIVED.load(Ordering::SeqCst),
        smp::online_cpus(),
    );
}

fn main() -> ! {
    let tap = Tap::new();
    tap.diag(format_args!("cmdline: {}", cmdline::raw()));
    tap.check_eq("boot magic", mbi::boot_magic(), mbi::BOOT_MAGIC);
    tap.check_eq("cmdline key=value", cmdline::get("selftest"), Some("1"));
    tap.check_eq("cmdline hex value", cmdline::get_u64("answer"), Some(42));
    tap.check_eq("cmdline missing key", cmdline::get("nope"), None);
    tap.check_eq("parse decimal", cmdline::parse_u64("1_000"), Some(1000));
    tap.check_eq("parse junk", cmdline::parse_u64("12x"), None);
    let ram: u64 = mbi::memory_map()
        .filter(|r| r.kind == 1)
        .map(|r| r.length)
        .sum();
    tap.check_diag(
        "memory map lists RAM",
        ram >= 16 << 20,
        format_args!("{ram} bytes"),
    );
    tap.check("mem_upper set", mbi::mem_upper_kib() > 0);

    // RDPMC: KVM without its own vPMU raises #GP; either way it must return.
    let pmc = msr::try_rdpmc(0);
    tap.diag(format_args!("rdpmc(0) -> {:?}", pmc));
    tap.check(
        "rdpmc returns (value or fault)",
        pmc.is_ok() || pmc.err().is_some_and(|f| f.is_gp()),
    );

    // Generic recovery: a fault anywhere in a closure, nested catches.
    let r = exceptions::catch(|| {
        // SAFETY: ud2 raises #UD, recovered by `catch`.
        unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
        5
    });
    tap.check_diag(
        "catch(ud2) -> #UD",
        matches!(r, Err(f) if f.vector == exceptions::UD),
        format_args!("got {:?}", r),
    );
    tap.check_eq("catch(no fault) -> Ok", exceptions::catch(|| 7), Ok(7));
    tap.check(
        "expect_gp(rdmsr bogus)",
        exceptions::expect_gp(|| msr::rdmsr(BOGUS_MSR)),
    );
    let nested = exceptions::catch(|| {
        let inner = exceptions::expect_gp(|| msr::wrmsr(BOGUS_MSR, 1));
        msr::rdmsr(BOGUS_MSR);
        inner
    });
    tap.check_diag(
        "nested catch",
        matches!(nested, Err(f) if f.is_gp()),
        format_args!("got {:?}", nested),
    );
    tap.check(
        "try_rdmsr inside catch",
        exceptions::catch(|| msr::try_rdmsr(BOGUS_MSR).is_err()) == Ok(true),
    );

    // Settable interrupt handler + self IPI.
    idt::set_handler(TEST_VECTOR, test_irq);
    guest_tests::irq::enable();
    lapic::send_self(TEST_VECTOR);
    wait_for(&TEST_IRQS);
    guest_tests::irq::disable();
    tap.check_eq(
        "self IPI reaches the installed handler",
        TEST_IRQS.load(Ordering::SeqCst),
        1,
    );
    tap.check_eq("vector count", percpu::vector_count(0, TEST_VECTOR), 1);

    // NMI handler.
    idt::set_handler(exceptions::NMI, nmi);
    lapic::send_nmi(0);
    wait_for(&NMIS);
    tap.check_eq(
        "NMI reaches the installed handler",
        NMIS.load(Ordering::SeqCst),
        1,
    );

    // All CPUs, twice (jobs are reusable).
    let n = smp::boot_aps();
    tap.check_eq("every vCPU came online", n, smp::cpu_count());
    smp::run_on_all(per_cpu);
    ARRIVED.store(0, Ordering::SeqCst);
    smp::run_on_all(per_cpu);
    tap.finish()
}
