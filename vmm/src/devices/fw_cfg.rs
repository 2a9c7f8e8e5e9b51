//! A minimal QEMU fw_cfg device on the legacy I/O ports: a 16-bit selector
//! at 0x510 and a byte-wide data port at 0x511. Guests read the signature,
//! RAM size and CPU counts from it, as test kernels do under QEMU.

/// Selector port.
pub const PORT_SELECTOR: u16 = 0x510;
/// Data port.
pub const PORT_DATA: u16 = 0x511;

/// Item keys (QEMU's `FW_CFG_*`).
pub const FW_CFG_SIGNATURE: u16 = 0x0000;
pub const FW_CFG_ID: u16 = 0x0001;
pub const FW_CFG_RAM_SIZE: u16 = 0x0003;
pub const FW_CFG_NB_CPUS: u16 = 0x0005;
pub const FW_CFG_MAX_CPUS: u16 = 0x000F;

/// The device: a fixed set of items, the selected key and the read offset.
#[derive(Debug)]
pub struct FwCfg {
    ram_size: [u8; 8],
    nb_cpus: [u8; 2],
    selected: u16,
    offset: usize,
}

impl FwCfg {
    pub fn new(ram_size: u64, cpus: u16) -> Self {
        FwCfg {
            ram_size: ram_size.to_le_bytes(),
            nb_cpus: cpus.to_le_bytes(),
            selected: FW_CFG_SIGNATURE,
            offset: 0,
        }
    }

    fn item(&self, key: u16) -> &[u8] {
        match key {
            FW_CFG_SIGNATURE => b"QEMU",
            // Bit 0: the traditional (port) interface; no DMA.
            FW_CFG_ID => &[1, 0, 0, 0],
            FW_CFG_RAM_SIZE => &self.ram_size,
            FW_CFG_NB_CPUS | FW_CFG_MAX_CPUS => &self.nb_cpus,
            _ => &[],
        }
    }

    /// A write to `port`: a selector write picks an item and rewinds it.
    /// Data-port writes are ignored (the items are read-only).
    pub fn write(&mut self, port: u16, data: &[u8]) {
        if port == PORT_SELECTOR {
            let lo = data.first().copied().unwrap_or(0);
            let hi = data.get(1).copied().unwrap_or(0);
            self.selected = u16::from_le_bytes([lo, hi]);
            self.offset = 0;
        }
    }

    /// A read from `port`: the data port streams the selected item, then
    /// zeroes past its end, as QEMU does.
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        for b in data.iter_mut() {
            *b = if port == PORT_DATA {
                let v = self
                    .item(self.selected)
                    .get(self.offset)
                    .copied()
                    .unwrap_or(0);
                self.offset = self.offset.saturating_add(1);
                v
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_item(dev: &mut FwCfg, key: u16, len: usize) -> Vec<u8> {
        dev.write(PORT_SELECTOR, &key.to_le_bytes());
        let mut out = vec![0u8; len];
        for b in out.iter_mut() {
            let mut one = [0u8];
            dev.read(PORT_DATA, &mut one);
            *b = one[0];
        }
        out
    }

    #[test]
    fn answers_signature_ram_and_cpus() {
        let mut dev = FwCfg::new(256 << 20, 4);
        assert_eq!(read_item(&mut dev, FW_CFG_SIGNATURE, 4), b"QEMU");
        assert_eq!(
            read_item(&mut dev, FW_CFG_RAM_SIZE, 8),
            (256u64 << 20).to_le_bytes()
        );
        assert_eq!(read_item(&mut dev, FW_CFG_NB_CPUS, 2), [4, 0]);
        assert_eq!(read_item(&mut dev, FW_CFG_MAX_CPUS, 2), [4, 0]);
    }

    #[test]
    fn reads_past_the_end_and_unknown_keys_are_zero() {
        let mut dev = FwCfg::new(1 << 20, 1);
        assert_eq!(read_item(&mut dev, FW_CFG_SIGNATURE, 6), b"QEMU\0\0");
        assert_eq!(read_item(&mut dev, 0x1234, 3), [0, 0, 0]);
    }

    #[test]
    fn reselecting_rewinds() {
        let mut dev = FwCfg::new(1 << 20, 2);
        read_item(&mut dev, FW_CFG_SIGNATURE, 2);
        assert_eq!(read_item(&mut dev, FW_CFG_SIGNATURE, 4), b"QEMU");
    }
}
