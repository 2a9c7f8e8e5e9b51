//! Groups and events of a context.
//!
//! An [`Event`] is one host counter opened for a guest counter (the
//! `perf_event` analogue). A [`Group`] is a leader and siblings scheduled
//! all-or-nothing on one hardware PMU (`group_sched_in()`); software events
//! may ride in any group (they need no counter and are switched on and off
//! with it), and a set of events spanning two hardware PMUs is split into one
//! group per PMU by [`super::Context::add_group`].

use super::list::{Link, Linked};
use super::time::EventTimes;
use crate::backend::HostHandle;
use crate::event::HostEvent;

/// An event of a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u32);

/// A group of a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u32);

/// Most events in one group (hardware members are also bounded by the PMU).
pub const MAX_GROUP_EVENTS: usize = 32;

/// `PERF_EVENT_STATE_*` of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// Waiting for counters.
    Inactive,
    /// Holding counters, counting.
    Active,
    /// Pinned and could not be placed: not counting, shown in statistics.
    Error,
}

#[derive(Debug)]
pub(crate) struct Group {
    /// Stable number shown in statistics (slab ids are reused).
    pub(crate) serial: u64,
    /// The hardware PMU of the group (or the software PMU for a group of
    /// software events only).
    pub(crate) pmu: usize,
    pub(crate) members: Vec<u32>,
    pub(crate) pinned: bool,
    pub(crate) state: GroupState,
    pub(crate) link: Link,
    /// Slices (schedule-ins) the group got.
    pub(crate) slices: u64,
}

impl Linked for Group {
    fn link(&self) -> &Link {
        &self.link
    }
    fn link_mut(&mut self) -> &mut Link {
        &mut self.link
    }
}

#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) host: HostEvent,
    pub(crate) handle: HostHandle,
    pub(crate) software: bool,
    pub(crate) group: Option<u32>,
    pub(crate) slot: Option<u8>,
    pub(crate) active: bool,
    pub(crate) times: EventTimes,
    /// Count as of the last read (exact while inactive).
    pub(crate) count: u64,
    /// Bit of the guest counter it counts for, in the rotation history
    /// ([`super::history::counter_bit`]); `None`: not recorded.
    pub(crate) tag: Option<u8>,
}

/// Count and times of an event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventReading {
    /// Events counted by the host counter over all its slices.
    pub count: u64,
    pub enabled: u64,
    pub running: u64,
}

/// Where an event stands, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventInfo {
    pub pmu: usize,
    /// The group's serial number, if grouped.
    pub group: Option<u64>,
    /// `None` while not grouped.
    pub state: Option<GroupState>,
    pub software: bool,
    pub slot: Option<u8>,
}
