//! Passes over the SRG. The [`PassManager`] runs them in a stated order and verifies the
//! program after each one.
//!
//! - [`cleanup`]: inference no-ops, dead code, common subexpressions.

pub mod cleanup;
mod manager;
pub mod tagging;

pub use manager::{Pass, PassError, PassManager, PassReport};
