//! Port-I/O devices of the platform: the COM1 UART, the debug-exit port and
//! fw_cfg. Unclaimed ports read as all ones and ignore writes, as on a PC.

pub mod debug_exit;
pub mod fw_cfg;
pub mod serial;

use std::sync::Mutex;

use fw_cfg::FwCfg;
use serial::Uart;

/// What a port write asks of the VMM beyond the device's own state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PioAction {
    None,
    /// The guest wrote the debug-exit port: stop with this status.
    Exit(u8),
}

/// The devices on the I/O port bus, shared by every vCPU thread.
pub struct PioBus {
    uart: Mutex<Uart>,
    fw_cfg: Mutex<FwCfg>,
}

impl PioBus {
    pub fn new(uart: Uart, fw_cfg: FwCfg) -> Self {
        PioBus {
            uart: Mutex::new(uart),
            fw_cfg: Mutex::new(fw_cfg),
        }
    }

    /// Whether a device claims `port` (unclaimed ports are logged once by the
    /// caller).
    pub fn claims(port: u16) -> bool {
        (serial::PORT_BASE..serial::PORT_BASE + serial::PORT_COUNT).contains(&port)
            || port == debug_exit::PORT
            || port == fw_cfg::PORT_SELECTOR
            || port == fw_cfg::PORT_DATA
    }

    /// A guest `in` from `port` into `data`.
    pub fn read(&self, port: u16, data: &mut [u8]) {
        if (serial::PORT_BASE..serial::PORT_BASE + serial::PORT_COUNT).contains(&port) {
            // A poisoned lock means another vCPU thread panicked: the device
            // state is still a plain register file, so keep serving it.
            let mut uart = self.uart.lock().unwrap_or_else(|p| p.into_inner());
            for b in data.iter_mut() {
                *b = uart.read((port - serial::PORT_BASE) as u8);
            }
        } else if port == fw_cfg::PORT_SELECTOR || port == fw_cfg::PORT_DATA {
            self.fw_cfg
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .read(port, data);
        } else {
            data.fill(0xFF);
        }
    }

    /// A guest `out` of `data` to `port`.
    pub fn write(&self, port: u16, data: &[u8]) -> PioAction {
        if (serial::PORT_BASE..serial::PORT_BASE + serial::PORT_COUNT).contains(&port) {
            let mut uart = self.uart.lock().unwrap_or_else(|p| p.into_inner());
            for b in data {
                // The output is the user's stdout; if it went away (closed
                // pipe), the guest keeps running and its output is dropped.
                let _ = uart.write((port - serial::PORT_BASE) as u8, *b);
            }
        } else if port == debug_exit::PORT {
            return PioAction::Exit(debug_exit::status(data));
        } else if port == fw_cfg::PORT_SELECTOR || port == fw_cfg::PORT_DATA {
            self.fw_cfg
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(port, data);
        }
        PioAction::None
    }
}
