//! Internal helpers; the MSR semantics are tested in `vpmu/tests/guest_*.rs`.

use super::*;

#[test]
fn global_bits_and_slots() {
    for i in 0..8u8 {
        let c = CounterIndex::Gp(i);
        let b = global_bit(c).trailing_zeros();
        assert_eq!(b, u32::from(i));
        assert_eq!(counter_of_bit(b), c);
        assert_eq!(slot_of_bit(b), usize::from(i));
    }
    for i in 0..4u8 {
        let c = CounterIndex::Fixed(i);
        let b = global_bit(c).trailing_zeros();
        assert_eq!(b, 32 + u32::from(i));
        assert_eq!(counter_of_bit(b), c);
        assert_eq!(slot_of_bit(b), 8 + usize::from(i));
    }
}

#[test]
fn unvalidated_config_is_clamped() {
    let p = GuestPmu::new(PmuConfig {
        version: 9,
        gp_counters: 200,
        fixed_counters: 200,
        ..Default::default()
    });
    assert_eq!((p.version, p.n_gp, p.n_fixed), (5, 8, 4));
    let p = GuestPmu::new(PmuConfig {
        version: 0,
        ..Default::default()
    });
    assert_eq!((p.version, p.n_gp, p.n_fixed), (0, 0, 0));
}

#[test]
fn reserved_masks() {
    let p = GuestPmu::new(PmuConfig {
        version: 2,
        fixed_counters: 2,
        ..Default::default()
    });
    assert_eq!(p.fixed_ctrl_reserved(), !0xBB);
    assert_eq!(p.evtsel_reserved(), !0xFFDF_FFFF);
    let p = GuestPmu::new(PmuConfig::default());
    assert_eq!(p.fixed_ctrl_reserved(), !0xFFF);
    assert_eq!(p.evtsel_reserved(), !0xFFFF_FFFF);
    assert_eq!(p.counter_mask(), 0x7_0000_00FF);
}
