//! Delivering a performance-monitoring interrupt through the guest's LAPIC
//! LVT performance counter register (LVTPC), as the hardware does.

use kvm_bindings::kvm_msi;
use kvm_ioctls::{VcpuFd, VmFd};

/// Offset of LVTPC in the LAPIC register page.
const APIC_LVTPC: usize = 0x340;
/// LVT mask bit.
const LVT_MASKED: u32 = 1 << 16;
/// LVT delivery mode field, bits 10:8.
const LVT_DELIVERY_MODE_SHIFT: u32 = 8;
const LVT_DELIVERY_FIXED: u32 = 0b000;
const LVT_DELIVERY_NMI: u32 = 0b100;
/// MSI address of the local APIC with destination ID 0.
const MSI_ADDRESS_BASE: u32 = 0xFEE0_0000;

/// What happened to a PMI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmiOutcome {
    /// Delivered as an NMI.
    Nmi,
    /// Delivered as a fixed interrupt with this vector.
    Fixed(u8),
    /// LVTPC was masked: nothing delivered (GLOBAL_STATUS still has the bit).
    Masked,
    /// LVTPC names a delivery mode a PMI cannot use (SMI, INIT, ExtINT).
    Unsupported(u32),
}

fn reg(regs: &[libc::c_char], off: usize) -> u32 {
    let b = |i: usize| regs.get(off + i).map_or(0, |&c| c as u8);
    u32::from_le_bytes([b(0), b(1), b(2), b(3)])
}

fn set_reg(regs: &mut [libc::c_char], off: usize, v: u32) {
    for (i, byte) in v.to_le_bytes().into_iter().enumerate() {
        if let Some(c) = regs.get_mut(off + i) {
            *c = byte as libc::c_char;
        }
    }
}

/// Raises a PMI on the vCPU that owns `fd` (called on its own thread, outside
/// `KVM_RUN`). Sets LVTPC's mask bit on delivery, as real hardware does.
pub fn deliver(fd: &VcpuFd, vm: &VmFd, apic_id: u8) -> Result<PmiOutcome, kvm_ioctls::Error> {
    let mut lapic = fd.get_lapic()?;
    let lvtpc = reg(&lapic.regs, APIC_LVTPC);
    if lvtpc & LVT_MASKED != 0 {
        return Ok(PmiOutcome::Masked);
    }
    let mode = (lvtpc >> LVT_DELIVERY_MODE_SHIFT) & 0b111;
    let vector = (lvtpc & 0xFF) as u8;
    if mode != LVT_DELIVERY_NMI && mode != LVT_DELIVERY_FIXED {
        return Ok(PmiOutcome::Unsupported(mode));
    }
    set_reg(&mut lapic.regs, APIC_LVTPC, lvtpc | LVT_MASKED);
    fd.set_lapic(&lapic)?;
    if mode == LVT_DELIVERY_NMI {
        fd.nmi()?;
        Ok(PmiOutcome::Nmi)
    } else {
        let msi = kvm_msi {
            address_lo: MSI_ADDRESS_BASE | (u32::from(apic_id) << 12),
            address_hi: 0,
            data: u32::from(vector),
            ..Default::default()
        };
        vm.signal_msi(msi)?;
        Ok(PmiOutcome::Fixed(vector))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_accessors_are_little_endian_and_bounded() {
        let mut regs = [0 as libc::c_char; 1024];
        set_reg(&mut regs, APIC_LVTPC, 0x0001_04FE);
        assert_eq!(reg(&regs, APIC_LVTPC), 0x0001_04FE);
        assert_eq!(regs[APIC_LVTPC] as u8, 0xFE);
        // Out of range reads are zero and writes are dropped, never a panic.
        set_reg(&mut regs, 1022, u32::MAX);
        assert_eq!(reg(&regs, 1022), 0xFFFF);
    }
}
