//! The COM1 16550 UART at 0x3F8 (vm-superio), writing to the VMM's stdout,
//! its interrupt wired to GSI 4 through an irqfd.

use std::io::{self, Write};

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// First port of COM1.
pub const PORT_BASE: u16 = 0x3F8;
/// Number of UART registers.
pub const PORT_COUNT: u16 = 8;
/// COM1's legacy interrupt line.
pub const IRQ: u32 = 4;

/// Raises the UART interrupt by signalling an irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// The UART type the VMM uses.
pub type Uart = Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>;

/// A UART writing to `out`.
pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Uart {
    Serial::new(IrqTrigger(irq), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_written_to_thr_reach_the_output_and_lsr_says_ready() {
        let sink = Sink::default();
        let mut uart = new(EventFd::new(0).unwrap(), Box::new(sink.clone()));
        for b in b"hi\n" {
            uart.write(0, *b).unwrap();
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
        // LSR (offset 5): THR empty (bit 5) and transmitter idle (bit 6).
        assert_eq!(uart.read(5) & 0x60, 0x60);
    }
}
