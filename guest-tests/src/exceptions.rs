//! Exception reporting and recovery.
//!
//! Recovery uses an exception table (like Linux's `__ex_table`): an `asm!`
//! block that may fault lists `(faulting RIP, fixup RIP)` in the
//! `.rt_extable` section. When an exception (vector < 32) hits a listed RIP,
//! the handler resumes at the fixup with RAX = vector and RDX = error code.
//! No per-CPU arming is needed, so it is safe on every CPU, in handlers and
//! when nested. See `msr::try_rdmsr` for the pattern.

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
