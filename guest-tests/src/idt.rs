//! The IDT: 256 entry stubs, the common save/restore path, and a table of
//! settable handlers.
//!
//! Every vector enters `dispatch` with a full [`InterruptFrame`]. Dispatch
//! order: exception-table fixups (faults of `try_*` instructions), then an
//! armed `exceptions::catch` on this CPU (exceptions other than NMI and #MC),
//! then the handler installed with [`set_handler`], then the runtime default (crash
//! report and exit 0x70 for exceptions, NMIs and unexpected interrupts;
//! the LAPIC spurious vector 0xFF and the legacy PIC's spurious IRQ 7/15
//! (vectors 0x27, 0x2F) are ignored). For vectors 32..=254 the
//! dispatcher sends the LAPIC EOI after the handler returns.

use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Register state saved on interrupt entry; handlers may modify it (the
/// values are restored by `iretq`).
#[repr(C)]
#[derive(Debug)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors without one.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// An interrupt or exception handler.
pub type Handler = fn(&mut InterruptFrame);

/// The spurious-interrupt vector programmed into the LAPIC.
pub const SPURIOUS_VECTOR: u8 = 0xFF;

const STUB_SIZE: usize = 16;

core::arch::global_asm!(
    r#"
    .pushsection .text.rt_isr, "ax"
    .balign 16
    .global rt_isr_stubs
rt_isr_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    .if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp rt_isr_common
    .set vec, vec + 1
    .endr

rt_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    cld
    call rt_interrupt_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp
    iretq
    .popsection
"#,
    options(att_syntax)
);

#[repr(C, align(16))]
struct Idt([u64; 512]);

struct IdtCell(core::cell::UnsafeCell<Idt>);
// SAFETY: the IDT is written only by the BSP in `init`, before any other CPU
// runs and before interrupts are enabled; afterwards it is only read (by the
// CPUs themselves through IDTR).
unsafe impl Sync for IdtCell {}

static IDT: IdtCell = IdtCell(core::cell::UnsafeCell::new(Idt([0; 512])));

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];

fn stub_address(vector: usize) -> u64 {
    extern "C" {
        static rt_isr_stubs: u8;
    }
    let base = core::ptr::addr_of!(rt_isr_stubs) as u64;
    base + (vector * STUB_SIZE) as u64
}

/// Fill the IDT (BSP, once, before anything else can take an interrupt).
pub(crate) fn init() {
    let mut entries = [0u64; 512];
    for vector in 0..256 {
        let addr = stub_address(vector);
        // 64-bit interrupt gate, present, DPL 0, selector 0x08, no IST.
        let low = (addr & 0xFFFF)
            | (u64::from(crate::boot::KERNEL_CS) << 16)
            | (0x8E00u64 << 32)
            | ((addr >> 16) & 0xFFFF) << 48;
        entries[2 * vector] = low;
        entries[2 * vector + 1] = addr >> 32;
    }
    // SAFETY: see `IdtCell`: no other CPU runs yet and nothing reads the IDT
    // concurrently.
    unsafe { (*IDT.0.get()).0 = entries };
}

/// Load the runtime IDT on this CPU.
pub(crate) fn load() {
    let mut ptr = [0u16; 5];
    let base = IDT.0.get() as u64;
    ptr[0] = (core::mem::size_of::<Idt>() - 1) as u16;
    ptr[1] = base as u16;
    ptr[2] = (base >> 16) as u16;
    ptr[3] = (base >> 32) as u16;
    ptr[4] = (base >> 48) as u16;
    // SAFETY: the descriptor points at the fully initialized, static IDT.
    unsafe { asm!("lidt [{}]", in(reg) ptr.as_ptr(), options(readonly, nostack, preserves_flags)) }
}

/// Load an empty IDT (limit 0) on this CPU: any exception then triple-faults.
///
/// # Safety
/// Every later interrupt or exception on this CPU shuts the VM down.
pub unsafe fn load_empty() {
    let ptr = [0u16; 5];
    // SAFETY: the caller accepts that the next exception is a triple fault.
    unsafe { asm!("lidt [{}]", in(reg) ptr.as_ptr(), options(readonly, nostack, preserves_flags)) }
}

/// Install `handler` for `vector` (all CPUs). Replaces any previous handler.
pub fn set_handler(vector: u8, handler: Handler) {
    HANDLERS[vector as usize].store(handler as usize, Ordering::Release);
}

/// Remove the handler of `vector`, restoring the runtime default.
pub fn clear_handler(vector: u8) {
    HANDLERS[vector as usize].store(0, Ordering::Release);
}

fn handler(vector: usize) -> Option<Handler> {
    let raw = HANDLERS[vector].load(Ordering::Acquire);
    if raw == 0 {
        None
    } else {
        // SAFETY: non-zero values are only ever stored from a `Handler` in
        // `set_handler`.
        Some(unsafe { core::mem::transmute::<usize, Handler>(raw) })
    }
}

#[no_mangle]
extern "C" fn rt_interrupt_dispatch(frame: &mut InterruptFrame) {
    let vector = (frame.vector & 0xFF) as usize;
    let cpu = crate::percpu::this();
    cpu.vector_counts[vector].fetch_add(1, Ordering::Relaxed);
    if vector < 32 && (crate::exceptions::try_fixup(frame) || crate::exceptions::try_catch(frame)) {
        return;
    }
    if let Some(h) = handler(vector) {
        h(frame);
    } else if vector == SPURIOUS_VECTOR as usize || crate::pic::is_spurious(vector) {
        return;
    } else {
        crate::exceptions::unhandled(frame);
    }
    if (32..255).contains(&vector) {
        crate::lapic::eoi();
    }
}
