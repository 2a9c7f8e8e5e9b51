//! Exception reporting and recovery.
//!
//! Recovery uses an exception table (like Linux's `__ex_table`): an `asm!`
//! block that may fault lists `(faulting RIP, fixup RIP)` in the
//! `.rt_extable` section. When an exception (vector < 32) hits a listed RIP,
//! the handler resumes at the fixup with RAX = vector and RDX = error code.
//! No per-CPU arming is needed, so it is safe on every CPU, in handlers and
//! when nested. See `msr::try_rdmsr` for the pattern.
//!
//! For arbitrary code there is [`catch`]: a per-CPU, nestable recovery point
//! (setjmp/longjmp style) that turns an exception raised anywhere inside a
//! closure into `Err(Fault)`.

use crate::idt::InterruptFrame;
use core::sync::atomic::Ordering;

/// Vector of #GP.
pub const GP: u8 = 13;
/// Vector of #UD.
pub const UD: u8 = 6;
/// Vector of NMI.
pub const NMI: u8 = 2;

/// A fault raised by a protected instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Exception vector (13 = #GP).
    pub vector: u8,
    /// Error code pushed by the CPU (0 if the vector has none).
    pub error_code: u64,
}

impl Fault {
    /// Build from the registers set by the fixup path (RAX, RDX).
    pub(crate) fn from_regs(rax: u64, rdx: u64) -> Fault {
        Fault {
            vector: rax as u8,
            error_code: rdx,
        }
    }

    /// Whether this is a general-protection fault.
    pub fn is_gp(&self) -> bool {
        self.vector == GP
    }
}

impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} ({}) error={:#x}",
            self.vector,
            name(self.vector),
            self.error_code
        )
    }
}

#[repr(C)]
struct ExtableEntry {
    insn: u64,
    fixup: u64,
}

fn extable() -> &'static [ExtableEntry] {
    extern "C" {
        static __rt_extable_start: ExtableEntry;
        static __rt_extable_end: ExtableEntry;
    }
    // SAFETY: the linker script brackets the `.rt_extable` section, an array
    // of 16-byte entries (pairs of .quad), with these two symbols.
    unsafe {
        let start = core::ptr::addr_of!(__rt_extable_start);
        let end = core::ptr::addr_of!(__rt_extable_end);
        let len = (end as usize - start as usize) / core::mem::size_of::<ExtableEntry>();
        core::slice::from_raw_parts(start, len)
    }
}

/// If the faulting RIP is in the exception table, redirect to the fixup.
pub(crate) fn try_fixup(frame: &mut InterruptFrame) -> bool {
    let Some(entry) = extable().iter().find(|e| e.insn == frame.rip) else {
        return false;
    };
    frame.rip = entry.fixup;
    frame.rax = frame.vector;
    frame.rdx = frame.error_code;
    crate::percpu::this()
        .recovered_faults
        .fetch_add(1, Ordering::Relaxed);
    true
}

/// Saved state of an armed [`catch`]; layout shared with `rt_catch_call`.
#[repr(C)]
struct CatchContext {
    /// rbx, rbp, r12, r13, r14, r15, rsp after return, return address.
    regs: [u64; 8],
    vector: u64,
    error_code: u64,
}

core::arch::global_asm!(
    r#"
    .pushsection .text.rt_catch, "ax"
    .global rt_catch_call
    /* u64 rt_catch_call(ctx: *mut CatchContext, f: extern "C" fn(*mut u8),
                         data: *mut u8): saves the callee-saved registers,
       calls f(data) and returns 0. A fault inside f resumes at the saved
       return address with these registers restored and RAX = 1. */
rt_catch_call:
    movq %rbx, 0(%rdi)
    movq %rbp, 8(%rdi)
    movq %r12, 16(%rdi)
    movq %r13, 24(%rdi)
    movq %r14, 32(%rdi)
    movq %r15, 40(%rdi)
    leaq 8(%rsp), %rax
    movq %rax, 48(%rdi)
    movq (%rsp), %rax
    movq %rax, 56(%rdi)
    movq %rdx, %rdi
    subq $8, %rsp
    call *%rsi
    addq $8, %rsp
    xorl %eax, %eax
    ret
    .popsection
"#,
    options(att_syntax)
);

extern "C" {
    fn rt_catch_call(ctx: *mut CatchContext, f: extern "C" fn(*mut u8), data: *mut u8) -> u64;
}

/// Run `f`; if it raises an exception (any vector < 32 except NMI and #MC,
/// not already recovered by a `try_*` helper), abandon it and return the
/// fault. Per CPU and nestable. On a fault, `f`'s frames are not unwound:
/// values it owned are leaked and locks it held stay held, so keep the
/// faulting part small (e.g. one instruction).
pub fn catch<F: FnOnce() -> R, R>(f: F) -> Result<R, Fault> {
    struct Data<G, S> {
        f: Option<G>,
        result: Option<S>,
    }
    extern "C" fn call<G: FnOnce() -> S, S>(data: *mut u8) {
        // SAFETY: `data` is the `Data<G, S>` that `catch` passed through
        // `rt_catch_call`, alive and not otherwise borrowed during the call.
        let data = unsafe { &mut *data.cast::<Data<G, S>>() };
        if let Some(f) = data.f.take() {
            data.result = Some(f());
        }
    }
    let mut data = Data {
        f: Some(f),
        result: None,
    };
    let mut ctx = CatchContext {
        regs: [0; 8],
        vector: 0,
        error_code: 0,
    };
    let cpu = crate::percpu::this();
    let ctx_ptr: *mut CatchContext = &mut ctx;
    let previous = cpu.catch_ctx.swap(ctx_ptr as u64, Ordering::SeqCst);
    // SAFETY: `ctx` and `data` outlive the call; `call::<F, R>` matches the
    // type of `data`. On a fault, `try_catch` resumes exactly as if
    // `rt_catch_call` had returned 1, with callee-saved registers restored.
    let faulted =
        unsafe { rt_catch_call(ctx_ptr, call::<F, R>, (&mut data as *mut Data<F, R>).cast()) };
    cpu.catch_ctx.store(previous, Ordering::SeqCst);
    if faulted == 0 {
        Ok(data
            .result
            .take()
            .expect("catch: closure finished without a result"))
    } else {
        Err(Fault {
            vector: ctx.vector as u8,
            error_code: ctx.error_code,
        })
    }
}

/// `catch(f)` and report whether it raised #GP.
pub fn expect_gp<R>(f: impl FnOnce() -> R) -> bool {
    matches!(catch(f), Err(fault) if fault.is_gp())
}

/// If a [`catch`] is armed on this CPU, resume at its return point.
pub(crate) fn try_catch(frame: &mut InterruptFrame) -> bool {
    if frame.vector == u64::from(NMI) || frame.vector == 18 {
        return false;
    }
    let raw = crate::percpu::this().catch_ctx.load(Ordering::SeqCst);
    if raw == 0 {
        return false;
    }
    // SAFETY: a non-zero `catch_ctx` points at the live `CatchContext` of the
    // innermost `catch` running on this CPU (it is reset before that frame
    // returns).
    let ctx = unsafe { &mut *(raw as *mut CatchContext) };
    ctx.vector = frame.vector;
    ctx.error_code = frame.error_code;
    frame.rbx = ctx.regs[0];
    frame.rbp = ctx.regs[1];
    frame.r12 = ctx.regs[2];
    frame.r13 = ctx.regs[3];
    frame.r14 = ctx.regs[4];
    frame.r15 = ctx.regs[5];
    frame.rsp = ctx.regs[6];
    frame.rip = ctx.regs[7];
    frame.rax = 1;
    true
}

/// Short name of an exception vector.
pub fn name(vector: u8) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        29 => "#VC",
        30 => "#SX",
        9 | 15 | 22..=28 | 31 => "reserved",
        _ => "interrupt",
    }
}

/// Default for anything without a handler: report and exit 0x70.
pub(crate) fn unhandled(frame: &InterruptFrame) -> ! {
    let cpu = crate::percpu::this();
    if cpu.exception_depth.fetch_add(1, Ordering::Relaxed) > 0 {
        // Fault while reporting a fault: do not recurse.
        crate::exit::exit(crate::exit::CRASH);
    }
    let vector = frame.vector as u8;
    crate::print::_print_crash(format_args!(
        "exception {} ({}) at rip={:#x} error={:#x}\n",
        vector,
        name(vector),
        frame.rip,
        frame.error_code
    ));
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags))
    };
    crate::print::_print_crash(format_args!(
        "# cpu={} rsp={:#x} rflags={:#x} cr2={:#x} rax={:#x} rcx={:#x} rdx={:#x}\n",
        crate::percpu::cpu_id(),
        frame.rsp,
        frame.rflags,
        cr2,
        frame.rax,
        frame.rcx,
        frame.rdx
    ));
    crate::exit::exit(crate::exit::CRASH)
}
