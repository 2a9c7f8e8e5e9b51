//! Application-processor bring-up and cross-CPU job dispatch.
//!
//! The BSP copies a 16-bit trampoline to 0x8000 and sends INIT, SIPI, SIPI
//! (vector 0x08) to every APIC ID 1..n, n from fw_cfg. Each AP goes real ->
//! protected -> long mode on the BSP's CR3, takes the stack of its APIC ID,
//! loads GDT/IDT, enables its LAPIC and waits (halted, interrupts on) for
//! jobs. A job is a `fn(cpu)` run once on every AP; the BSP is woken with a
//! fixed IPI ([`WAKE_VECTOR`]).

use crate::{lapic, msr};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Most CPUs the runtime supports (APIC IDs 0..MAX_CPUS).
pub const MAX_CPUS: usize = 16;
/// Stack size of each CPU.
pub const STACK_SIZE: usize = 32 * 1024;
/// Vector of the IPI that wakes idle APs.
pub const WAKE_VECTOR: u8 = 0xF0;
/// Physical address of the AP trampoline (SIPI vector 0x08).
pub const TRAMPOLINE: u64 = 0x8000;

const SIPI_VECTOR: u32 = (TRAMPOLINE >> 12) as u32;

core::arch::global_asm!(
    r#"
    .pushsection .rodata.rt_trampoline, "a"
    .balign 16
    .global rt_tramp_start
rt_tramp_start:
    .code16
    cli
    cld
    xorw %ax, %ax
    movw %ax, %ds
    lgdtl ({base} + rt_tramp_gdt_ptr - rt_tramp_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x18, $({base} + rt_tramp_pm - rt_tramp_start)
    .code32
rt_tramp_pm:
    movl $0x10, %eax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl ({base} + rt_tramp_cr3 - rt_tramp_start), %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $0xC0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000000, %eax
    movl %eax, %cr0
    ljmp $0x08, $({base} + rt_tramp_lm - rt_tramp_start)
    .code64
rt_tramp_lm:
    movq ({base} + rt_tramp_entry - rt_tramp_start), %rax
    jmpq *%rax
    .balign 8
rt_tramp_gdt_ptr:
    .word rt_gdt_end - rt_gdt - 1
    .quad rt_gdt
    .balign 8
    .global rt_tramp_cr3
rt_tramp_cr3:
    .quad 0
rt_tramp_entry:
    .quad rt_ap_entry64
    .global rt_tramp_end
rt_tramp_end:
    .popsection
"#,
    base = const TRAMPOLINE,
    options(att_syntax)
);

static BOOTED: AtomicBool = AtomicBool::new(false);
static CPUS: AtomicU32 = AtomicU32::new(0);
static APS_ONLINE: AtomicU32 = AtomicU32::new(0);
static JOB: AtomicUsize = AtomicUsize::new(0);
static JOB_GENERATION: AtomicU32 = AtomicU32::new(0);
static JOBS_DONE: AtomicU32 = AtomicU32::new(0);

/// Number of vCPUs of the VM: fw_cfg's count, capped at [`MAX_CPUS`]
/// (1 without fw_cfg).
pub fn cpu_count() -> u32 {
    let cached = CPUS.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    let n = u32::from(crate::fwcfg::cpu_count().unwrap_or(1).max(1)).min(MAX_CPUS as u32);
    CPUS.store(n, Ordering::Relaxed);
    n
}

/// CPUs running now: the BSP plus the APs that came online.
pub fn online_cpus() -> u32 {
    1 + APS_ONLINE.load(Ordering::Acquire)
}

/// The running CPU's ID (its APIC ID; the BSP is 0).
pub fn this_cpu() -> u32 {
    crate::percpu::cpu_id()
}

fn copy_trampoline() {
    extern "C" {
        static rt_tramp_start: u8;
        static rt_tramp_end: u8;
        static rt_tramp_cr3: u8;
    }
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: the platform reserves 0x8000-0x8FFF for the guest's trampoline;
    // the trampoline (a few hundred bytes, checked below) is copied there from
    // the image, then its CR3 slot is patched. No AP runs yet.
    unsafe {
        let start = core::ptr::addr_of!(rt_tramp_start);
        let len = core::ptr::addr_of!(rt_tramp_end) as usize - start as usize;
        assert!(len <= 4096, "AP trampoline too large");
        core::ptr::copy_nonoverlapping(start, TRAMPOLINE as *mut u8, len);
        let cr3_offset = core::ptr::addr_of!(rt_tramp_cr3) as usize - start as usize;
        core::ptr::write_volatile((TRAMPOLINE as usize + cr3_offset) as *mut u64, cr3);
    }
}

fn wake_handler(_frame: &mut crate::idt::InterruptFrame) {}

/// Bring up every AP (idempotent). Returns the number of online CPUs.
/// Panics if not all APs arrive within a few seconds.
pub fn boot_aps() -> u32 {
    if BOOTED.swap(true, Ordering::AcqRel) {
        return online_cpus();
    }
    let n = cpu_count();
    if n <= 1 {
        return 1;
    }
    crate::idt::set_handler(WAKE_VECTOR, wake_handler);
    copy_trampoline();
    for apic_id in 1..n {
        lapic::send_ipi(apic_id, 0x4500); // INIT, assert
        msr::spin_tsc(100_000);
        lapic::send_ipi(apic_id, 0x4600 | SIPI_VECTOR); // SIPI
        msr::spin_tsc(10_000);
        lapic::send_ipi(apic_id, 0x4600 | SIPI_VECTOR); // second SIPI
    }
    let start = msr::rdtsc();
    while APS_ONLINE.load(Ordering::Acquire) < n - 1 {
        if msr::rdtsc().wrapping_sub(start) > 20_000_000_000 {
            panic!(
                "only {} of {} APs came online",
                APS_ONLINE.load(Ordering::Acquire),
                n - 1
            );
        }
        core::hint::spin_loop();
    }
    n
}

/// Start `f(cpu)` on every AP (booting them first if needed) and return
/// without waiting; pair with [`wait_aps`]. Waits for a previous job first.
pub fn start_aps(f: fn(u32)) {
    boot_aps();
    wait_aps();
    if APS_ONLINE.load(Ordering::Acquire) == 0 {
        return;
    }
    JOBS_DONE.store(0, Ordering::Relaxed);
    JOB.store(f as usize, Ordering::Relaxed);
    JOB_GENERATION.fetch_add(1, Ordering::Release);
    lapic::send_fixed_all_but_self(WAKE_VECTOR);
}

/// Wait until every AP finished the job of the last [`start_aps`].
pub fn wait_aps() {
    if JOB_GENERATION.load(Ordering::Acquire) == 0 {
        return;
    }
    let aps = APS_ONLINE.load(Ordering::Acquire);
    while JOBS_DONE.load(Ordering::Acquire) < aps {
        core::hint::spin_loop();
    }
}

/// Run `f(cpu)` on every online CPU (the APs and then the BSP as `f(0)`),
/// and return when all have finished.
pub fn run_on_all(f: fn(u32)) {
    start_aps(f);
    f(this_cpu());
    wait_aps();
}

/// Rust entry of an AP (from `rt_ap_entry64`, on its own stack).
#[no_mangle]
extern "C" fn rt_ap_main(apic_id: u32) -> ! {
    crate::percpu::init(apic_id);
    crate::idt::load();
    lapic::enable();
    APS_ONLINE.fetch_add(1, Ordering::AcqRel);
    let mut seen = 0;
    loop {
        crate::irq::disable();
        let generation = JOB_GENERATION.load(Ordering::Acquire);
        if generation != seen {
            seen = generation;
            let raw = JOB.load(Ordering::Relaxed);
            // SAFETY: JOB only ever holds a `fn(u32)` stored by `start_aps`
            // before the generation was published (Release/Acquire).
            let job = unsafe { core::mem::transmute::<usize, fn(u32)>(raw) };
            job(apic_id);
            crate::irq::disable();
            JOBS_DONE.fetch_add(1, Ordering::AcqRel);
            continue;
        }
        // Sleep until the wake IPI; `sti; hlt` cannot miss it.
        crate::irq::enable_and_wait();
    }
}
