//! Small helpers that are not about PMUs: the slab shared by the
//! multiplexer and the host backends, bounded file reads.

pub mod file;
pub mod slab;
