//! MSR access, CPUID, TSC and RDPMC.
//!
//! The `try_*` variants recover from a fault (normally #GP) raised by the
//! instruction itself and report it as `Err(Fault)`. They work on any CPU, at
//! any time, nested or not: the faulting instruction's address is listed in
//! the runtime's exception table (see [`crate::exceptions`]).

use crate::exceptions::Fault;
use core::arch::asm;

/// `rdmsr`. A fault is an unexpected exception (the guest exits with 0x70).
pub fn rdmsr(index: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading an MSR has no memory effects visible to Rust; a fault
    // goes to the runtime's exception handler.
    unsafe {
        asm!("rdmsr", in("ecx") index, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// `wrmsr`. A fault is an unexpected exception (the guest exits with 0x70).
pub fn wrmsr(index: u32, value: u64) {
    // SAFETY: the runtime never relies on MSR state that guest code might
    // break through this call (callers own the MSRs they write).
    unsafe {
        asm!("wrmsr", in("ecx") index, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Runs the one instruction `$insn` with an exception-table entry: if it
/// faults, the handler resumes at the fixup label with RAX = vector and
/// RDX = error code. Evaluates to non-zero when it faulted. The caller
/// passes the instruction's operands (trailing comma) and wraps the use in
/// `unsafe` with its own SAFETY argument.
macro_rules! guarded {
    ($insn:literal, $($operand:tt)*) => {{
        let faulted: u32;
        asm!(
            "xor {f:e}, {f:e}",
            concat!("2: ", $insn),
            "jmp 4f",
            "3: mov {f:e}, 1",
            "4:",
            ".pushsection .rt_extable, \"a\"",
            ".balign 8",
            ".quad 2b, 3b",
            ".popsection",
            f = out(reg) faulted,
            $($operand)*
            options(nostack),
        );
        faulted
    }};
}

/// The value in EDX:EAX, or the fault the guarded instruction took.
fn edx_eax(faulted: u32, rax: u64, rdx: u64) -> Result<u64, Fault> {
    if faulted != 0 {
        Err(Fault::from_regs(rax, rdx))
    } else {
        Ok((rdx << 32) | (rax & 0xFFFF_FFFF))
    }
}

/// `rdmsr` that reports a fault instead of crashing.
pub fn try_rdmsr(index: u32) -> Result<u64, Fault> {
    let (rax, rdx): (u64, u64);
    // SAFETY: the rdmsr is listed in the exception table with its fixup: on
    // a fault the handler resumes there with RAX = vector and RDX = error
    // code; every register the sequence touches is an operand here.
    let faulted = unsafe { guarded!("rdmsr", in("ecx") index, out("rax") rax, out("rdx") rdx,) };
    edx_eax(faulted, rax, rdx)
}

/// `wrmsr` that reports a fault instead of crashing.
pub fn try_wrmsr(index: u32, value: u64) -> Result<(), Fault> {
    let (rax, rdx): (u64, u64);
    // SAFETY: as in `try_rdmsr`; RAX/RDX are in-out operands.
    let faulted = unsafe {
        guarded!(
            "wrmsr",
            in("ecx") index,
            inout("rax") value & 0xFFFF_FFFF => rax,
            inout("rdx") value >> 32 => rdx,
        )
    };
    edx_eax(faulted, rax, rdx).map(|_| ())
}

/// `rdpmc` that reports a fault instead of crashing (under KVM without its
/// own vPMU, RDPMC raises #GP).
pub fn try_rdpmc(counter: u32) -> Result<u64, Fault> {
    let (rax, rdx): (u64, u64);
    // SAFETY: as in `try_rdmsr`.
    let faulted = unsafe { guarded!("rdpmc", in("ecx") counter, out("rax") rax, out("rdx") rdx,) };
    edx_eax(faulted, rax, rdx)
}

/// Result of `cpuid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpuid {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// `cpuid` with leaf and sub-leaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> Cpuid {
    let (eax, ebx, ecx, edx): (u32, u32, u32, u32);
    // SAFETY: cpuid has no memory effects; RBX (reserved by LLVM) is saved and
    // restored around it.
    unsafe {
        asm!(
            "mov {tmp:r}, rbx",
            "cpuid",
            "xchg {tmp:r}, rbx",
            tmp = out(reg) ebx,
            inout("eax") leaf => eax,
            inout("ecx") subleaf => ecx,
            out("edx") edx,
            options(nomem, nostack, preserves_flags),
        );
    }
    Cpuid { eax, ebx, ecx, edx }
}

/// `rdtsc`.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads the TSC; no memory effects.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Busy-wait for at least `cycles` TSC ticks.
pub fn spin_tsc(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}
