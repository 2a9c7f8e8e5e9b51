//! The registers a vCPU starts with (as Firecracker's
//! `arch/x86_64/regs.rs`): MSRs as firmware leaves them on every vCPU, and
//! for the BSP the segments, control registers, general registers and FPU
//! at the image's entry point. The GDT and page tables these point at are
//! written into guest memory by [`super::load`] ([`super::layout`],
//! [`super::paging`]).
//!
//! [`entry_sregs`] and [`entry_regs`] compute the state without KVM, so the
//! entry state is unit-tested; the `set_*` functions write it to a vCPU.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;

use super::{layout, multiboot, BootEntry, EntryMode};
use crate::VmError;

const CR0_PE: u64 = 1 << 0;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// `IA32_MTRR_DEF_TYPE`: enable MTRRs (bit 11), default type write-back (6).
/// At reset the default type is uncacheable; without firmware to set it, a
/// guest that never programs MTRRs would run from uncached memory wherever
/// KVM honours guest MTRRs (as Firecracker and Cloud Hypervisor also do).
const MSR_MTRR_DEF_TYPE: u32 = 0x2FF;
const MTRR_ENABLE_WB: u64 = (1 << 11) | 6;

/// x87 control word and MXCSR at reset (SDM Vol. 1, 8.1.5 and 10.2.3.1):
/// every exception masked, round to nearest.
const FPU_FCW_RESET: u16 = 0x37F;
const MXCSR_RESET: u32 = 0x1F80;

/// A flat 4 GiB code or data segment at ring 0.
fn segment(selector: u16, code: bool, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_: if code { 0xB } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long && code),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// `sregs` (as KVM reset them) changed to the entry state of `entry`:
/// flat segments from the boot GDT, protected mode, and for a 64-bit entry
/// paging on the identity map with long mode active.
pub fn entry_sregs(mut sregs: kvm_sregs, entry: &BootEntry) -> kvm_sregs {
    let long = entry.mode == EntryMode::Long;
    let (code_sel, cr0, cr4, efer) = if long {
        (
            layout::SEL_CODE64,
            CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
            CR4_PAE,
            EFER_LME | EFER_LMA,
        )
    } else {
        (layout::SEL_CODE32, CR0_PE | CR0_ET, 0, 0)
    };
    sregs.cs = segment(code_sel, true, long);
    let data = segment(layout::SEL_DATA, false, long);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment {
        base: 0,
        limit: 0x67,
        selector: layout::SEL_TSS,
        type_: 0xB,
        present: 1,
        ..Default::default()
    };
    sregs.gdt.base = layout::GDT_ADDR;
    sregs.gdt.limit = (layout::GDT.len() * 8 - 1) as u16;
    sregs.cr0 = cr0;
    sregs.cr4 = cr4;
    sregs.efer = efer;
    if long {
        sregs.cr3 = layout::PML4_ADDR;
    }
    sregs
}

/// The general registers at the entry point: the Multiboot v1 handoff
/// (EAX = bootloader magic, EBX = information structure) for both modes.
pub fn entry_regs(entry: &BootEntry) -> kvm_regs {
    kvm_regs {
        rip: entry.entry,
        rax: u64::from(multiboot::BOOTLOADER_MAGIC),
        rbx: entry.mbi,
        rflags: 0x2,
        ..Default::default()
    }
}

/// MSRs every vCPU starts with, as firmware would leave them.
pub fn set_boot_msrs(fd: &VcpuFd) -> Result<(), VmError> {
    let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index: MSR_MTRR_DEF_TYPE,
        data: MTRR_ENABLE_WB,
        ..Default::default()
    }])
    .map_err(|e| VmError::Config(format!("MSR list: {e:?}")))?;
    let written = fd
        .set_msrs(&msrs)
        .map_err(|e| VmError::Kvm("KVM_SET_MSRS", e))?;
    if written != 1 {
        log::warn!("KVM did not take IA32_MTRR_DEF_TYPE: the guest may run from uncached memory");
    }
    Ok(())
}

/// The BSP's registers at the image's entry point: sregs, general
/// registers and the FPU.
pub fn set_entry_state(fd: &VcpuFd, entry: &BootEntry) -> Result<(), VmError> {
    let sregs = fd
        .get_sregs()
        .map_err(|e| VmError::Kvm("KVM_GET_SREGS", e))?;
    fd.set_sregs(&entry_sregs(sregs, entry))
        .map_err(|e| VmError::Kvm("KVM_SET_SREGS", e))?;
    fd.set_regs(&entry_regs(entry))
        .map_err(|e| VmError::Kvm("KVM_SET_REGS", e))?;
    set_fpu(fd)
}

/// The x87 and SSE control state at reset, written explicitly rather than
/// left to KVM's vCPU reset (as Firecracker's `setup_fpu`).
fn set_fpu(fd: &VcpuFd) -> Result<(), VmError> {
    let fpu = kvm_fpu {
        fcw: FPU_FCW_RESET,
        mxcsr: MXCSR_RESET,
        ..Default::default()
    };
    fd.set_fpu(&fpu).map_err(|e| VmError::Kvm("KVM_SET_FPU", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::ImageFormat;

    fn entry(mode: EntryMode) -> BootEntry {
        BootEntry {
            format: ImageFormat::Elf64,
            mode,
            entry: 0x10_0040,
            mbi: layout::MBI_ADDR,
        }
    }

    #[test]
    fn long_mode_entry_pages_on_the_identity_map() {
        let s = entry_sregs(kvm_sregs::default(), &entry(EntryMode::Long));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.cr4 & CR4_PAE, CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, layout::PML4_ADDR);
        assert_eq!(s.cs.selector, layout::SEL_CODE64);
        assert_eq!((s.cs.l, s.cs.db), (1, 0));
        assert_eq!((s.ss.l, s.ss.db, s.ss.selector), (0, 0, layout::SEL_DATA));
        assert_eq!(s.tr.selector, layout::SEL_TSS);
        assert_eq!(s.gdt.base, layout::GDT_ADDR);
        assert_eq!(usize::from(s.gdt.limit) + 1, layout::GDT.len() * 8);
    }

    #[test]
    fn protected_mode_entry_has_paging_off() {
        let reset = kvm_sregs {
            cr3: 0x1234_5000,
            ..Default::default()
        };
        let s = entry_sregs(reset, &entry(EntryMode::Protected));
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!((s.cr4, s.efer), (0, 0));
        assert_eq!(s.cr3, 0x1234_5000, "CR3 is left as KVM reset it");
        assert_eq!(s.cs.selector, layout::SEL_CODE32);
        assert_eq!((s.cs.l, s.cs.db), (0, 1));
        assert_eq!(s.ds.db, 1);
    }

    #[test]
    fn entry_registers_carry_the_multiboot_handoff() {
        let r = entry_regs(&entry(EntryMode::Protected));
        assert_eq!(r.rip, 0x10_0040);
        assert_eq!(r.rax, u64::from(multiboot::BOOTLOADER_MAGIC));
        assert_eq!(r.rbx, layout::MBI_ADDR);
        assert_eq!(r.rflags, 0x2);
    }
}
