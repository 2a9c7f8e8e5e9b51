//! `time_enabled` / `time_running` of one host event, in vCPU run-time ns.
//!
//! As in `perf_event_update_time()`: enabled time runs while the event is
//! enabled (here: from open to close, also while it waits for a counter or
//! sits in ERROR, so starvation shows), running time while it holds a
//! counter. Both are updated lazily from the time of the last transition.

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventTimes {
    enabled: u64,
    running: u64,
    enabled_since: Option<u64>,
    running_since: Option<u64>,
}

impl EventTimes {
    /// Enabled from `now`.
    pub fn enabled_at(now: u64) -> EventTimes {
        EventTimes {
            enabled_since: Some(now),
            ..EventTimes::default()
        }
    }

    pub fn sched_in(&mut self, now: u64) {
        if self.running_since.is_none() {
            self.running_since = Some(now);
        }
    }

    pub fn sched_out(&mut self, now: u64) {
        if let Some(t) = self.running_since.take() {
            self.running += now.saturating_sub(t);
        }
    }

    pub fn enabled(&self, now: u64) -> u64 {
        self.enabled + self.enabled_since.map_or(0, |t| now.saturating_sub(t))
    }

    pub fn running(&self, now: u64) -> u64 {
        self.running + self.running_since.map_or(0, |t| now.saturating_sub(t))
    }
}
