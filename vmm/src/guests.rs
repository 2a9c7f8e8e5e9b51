//! Guest images compiled into the binary (built from `guest-tests/` by
//! `build.rs`), so `vmm run` works with no arguments.

/// The guest `vmm run` boots when no `--kernel` is given.
pub const DEFAULT: &[u8] = include_bytes!(concat!(env!("VMM_GUESTS_DIR"), "/hello.elf"));

/// Where the build put every guest image (`<name>.elf`, `<name>.mb.elf`).
pub const DIR: &str = env!("VMM_GUESTS_DIR");
