//! Small helpers that are not about PMUs.

pub mod file;
