//! A [`CountSource`] for the guest PMU tests: records every call, feeds
//! counts the test chooses, and checks the call protocol (drain and stop only
//! of started counters).

#![allow(dead_code)]

use std::collections::BTreeMap;
use vpmu::source::{CountSource, CounterConfig, CounterIndex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Start(CounterIndex, CounterConfig),
    Stop(CounterIndex),
    Drain(CounterIndex, u64),
}

#[derive(Debug, Default)]
pub struct Mock {
    pub calls: Vec<Call>,
    /// Counts the next drain of a counter returns.
    pub pending: BTreeMap<CounterIndex, u64>,
    /// Started, not stopped counters and their last configuration.
    pub running: BTreeMap<CounterIndex, CounterConfig>,
    /// Protocol violations seen.
    pub violations: Vec<String>,
}

impl Mock {
    pub fn new() -> Self {
        Self::default()
    }

    /// `n` more events for `c` (counted only if it runs).
    pub fn feed(&mut self, c: CounterIndex, n: u64) {
        if self.running.contains_key(&c) {
            let p = self.pending.entry(c).or_insert(0);
            *p = p.saturating_add(n);
        }
    }

    /// Takes the recorded calls.
    pub fn take(&mut self) -> Vec<Call> {
        std::mem::take(&mut self.calls)
    }

    pub fn starts(&self) -> Vec<(CounterIndex, CounterConfig)> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Start(i, cfg) => Some((*i, *cfg)),
                _ => None,
            })
            .collect()
    }
}

impl CountSource for Mock {
    fn start(&mut self, counter: CounterIndex, config: &CounterConfig) {
        if self.pending.get(&counter).copied().unwrap_or(0) != 0 {
            self.violations
                .push(format!("start of {counter:?} with undrained counts"));
        }
        self.calls.push(Call::Start(counter, *config));
        self.running.insert(counter, *config);
    }

    fn stop(&mut self, counter: CounterIndex) {
        if self.running.remove(&counter).is_none() {
            self.violations.push(format!("stop of stopped {counter:?}"));
        }
        if self.pending.get(&counter).copied().unwrap_or(0) != 0 {
            self.violations
                .push(format!("stop of {counter:?} with undrained counts"));
        }
        self.calls.push(Call::Stop(counter));
    }

    fn drain(&mut self, counter: CounterIndex) -> u64 {
        if !self.running.contains_key(&counter) {
            self.violations
                .push(format!("drain of stopped {counter:?}"));
        }
        let n = self.pending.remove(&counter).unwrap_or(0);
        self.calls.push(Call::Drain(counter, n));
        n
    }
}
