//! Host counter backends.
//!
//! The multiplexer ([`crate::core`]) decides *which* guest counters hold a
//! host counter; a [`HostBackend`] owns the host counters themselves. The
//! operations are the ones the perf core performs on a `perf_event`:
//! open (`perf_event_open`), enable/disable (`pmu->add`/`pmu->del`, or the
//! `PERF_EVENT_IOC_ENABLE`/`DISABLE` ioctls for a user-space backend), read
//! (`read(2)` with `PERF_FORMAT_TOTAL_TIME_ENABLED | _RUNNING`) and close.
//!
//! - [`sim`]: a simulated host PMU described by a [`profile::Profile`]; counts
//!   `rate x running time`, so the multiplexer's error against the truth
//!   (`rate x enabled time`) is measurable. Always labelled *simulated*.
//! - [`perf`]: Linux perf events opened on the vCPU thread
//!   (`perf_event_open`), with discovery of this host's PMUs; where there is
//!   no hardware PMU, cycles come from the task clock.
//! - [`noop`]: counts nothing, checks nothing; for benchmarks of the scheduler.
//! - [`sysfs`]: reading per-PMU settings of perf-backed host PMUs.
//! - [`profile`]: host PMU descriptions (built-in and user profiles).
//! - [`assembly`]: the one place where a host side (perf or simulated) and
//!   the multiplexer are put together into a vCPU's [`crate::core::VcpuCounters`];
//!   the VMM and the tests build counters through it.
//!
//! The trait and its types live in [`crate::backend`], shared with the
//! multiplexer; they are re-exported here.
//!
//! Time (`now`) is vCPU run time in nanoseconds, passed in by the caller: a
//! vCPU that does not run advances nothing.

pub mod assembly;
pub mod noop;
pub mod perf;
pub mod profile;
pub mod sim;
pub mod sysfs;

pub use crate::backend::{EventMapping, HostBackend, HostError, HostHandle, HostReading, PmuKind};
pub use crate::event;
pub use crate::event::{EventName, HostEvent, Modifiers};
