//! Guest images compiled into the binary (built from `guest-tests/` by
//! `build.rs`), so `vmm run` works with no arguments.

/// The guest `vmm run` boots when no `--kernel` is given: the guest perf
/// tool, counting and then sampling its own workloads.
pub const DEFAULT: &[u8] = include_bytes!(concat!(env!("VMM_GUESTS_DIR"), "/perf-demo.elf"));

/// Where the build put every guest image (`<name>.elf`, `<name>.mb.elf`).
pub const DIR: &str = env!("VMM_GUESTS_DIR");
