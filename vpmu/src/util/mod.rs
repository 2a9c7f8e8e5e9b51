//! Small data structures shared by the multiplexer and the host backends.

pub mod slab;
