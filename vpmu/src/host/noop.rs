//! A backend that counts nothing and checks nothing: benchmarks use it so
//! they measure the scheduler alone.

use super::{HostBackend, HostError, HostEvent, HostHandle, HostReading};

/// Counts nothing; every operation succeeds.
#[derive(Debug, Default)]
pub struct NoopBackend {
    next: u32,
}

impl HostBackend for NoopBackend {
    fn open(&mut self, _event: &HostEvent) -> Result<HostHandle, HostError> {
        self.next = self.next.wrapping_add(1);
        Ok(HostHandle(self.next))
    }
    fn enable(&mut self, _h: HostHandle, _slot: Option<u8>, _now: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn disable(&mut self, _h: HostHandle, _now: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn read(&mut self, _h: HostHandle, _now: u64) -> Result<HostReading, HostError> {
        Ok(HostReading::default())
    }
    fn close(&mut self, _h: HostHandle) -> Result<(), HostError> {
        Ok(())
    }
    fn kind(&self) -> crate::backend::BackendKind {
        crate::backend::BackendKind::Noop
    }
}
