//! The multiplexer, after the Linux perf core as rewritten in 2022 (Linux
//! 6.2, "perf: Rewrite core context handling").
//!
//! | perf core (`kernel/events/core.c`) | here |
//! |---|---|
//! | `perf_event_context` (task context) | [`Context`], one per vCPU |
//! | `perf_event_pmu_context`: active lists, `rotate_necessary` | [`PmuContext`], per (context, host PMU) |
//! | `perf_cpu_pmu_context`: mux hrtimer, interval | [`HostPmu`], shared (interval, statistics); the timer is per vCPU (the VMM's `VcpuTimer`) |
//! | `group_sched_in()` with `start_txn`/`commit_txn`/`cancel_txn` | `Sched::group_sched_in`, a saved [`Assignment`] as the transaction |
//! | `x86_schedule_events()` constraint solving | [`Assignment`]: bipartite matching |
//! | `ctx_sched_in()`: pinned, then flexible | same; flexible scan packs past failures, bounded |
//! | `perf_rotate_context()`, `rotate_ctx()` | [`Context::rotate`], from [`Context::tick`] when a deadline passed |
//! | `perf_mux_hrtimer_handler()` restarts only if rotations happened | [`Context::next_deadline`]: `None` when no PMU needs rotation, and the VMM leaves the timer disarmed |
//! | `time_enabled` / `time_running` | [`EventReading`], per event; [`policy::scale`] |
//!
//! Modules: [`host_pmu`] (per host PMU, shared), [`context`] (per vCPU),
//! [`pmu_context`] (scheduling on one PMU), [`group`] (groups and events),
//! [`assign`] (constraint matching), [`time`] (enabled/running),
//! [`history`] (who held the counters), [`policy`] (scaling and
//! grouping), [`vcpu`] (the [`crate::source::CountSource`] front).
//!
//! Who drives it: the VMM's vCPU thread, and nothing else. It calls
//! [`VcpuCounters::sched_in_pending`] before each VM entry after a PMU
//! MSR access, and [`VcpuCounters::tick`] when the vCPU's `VcpuTimer`
//! (armed for [`VcpuCounters::next_rotation_deadline`]) kicks it.
//!
//! Nothing here starts threads or reads clocks: time is vCPU run time in ns,
//! passed in, so every behaviour is deterministic under test.

pub mod assign;
pub mod context;
pub mod group;
pub mod history;
pub mod host_pmu;
mod list;
pub mod pmu_context;
pub mod policy;
pub mod time;
pub mod vcpu;

pub use assign::Assignment;
pub use context::{Context, CoreError};
pub use group::{EventId, EventInfo, EventReading, GroupId, GroupState};
pub use host_pmu::{parse_mux_interval, Capacity, HostPmu, MuxIntervalError};
pub use pmu_context::PmuContext;
pub use policy::{Grouping, MuxPolicy, Scaling};
pub use vcpu::{EventTable, VcpuCounters};
