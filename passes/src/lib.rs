//! Passes over the SRG. The [`PassManager`] runs them in a stated order and verifies the
//! program after each one.
//!
//! - [`cleanup`]: inference no-ops, dead code, common subexpressions.
//! - [`fold`]: constant folding of small static computations (shape arithmetic).
//! - [`tagging`]: egg pattern tagging (attention, MLP, KV-cache update, ...), one rule table per domain.
//! - [`annotate`]: residency, phase, modality.
//! - [`state`]: program-level state bindings (decode→decode, prefill→decode).
//! - [`cost`]: per-node FLOPs, bytes and arithmetic intensity.
//! - [`placement`]: cluster spec, cost model and `schedule`: which device runs each node.

pub mod annotate;
pub mod batching;
pub mod cleanup;
pub mod cost;
pub mod fold;
mod manager;
pub mod placement;
pub mod state;
pub mod tagging;

pub use manager::{Pass, PassError, PassManager, PassOptions, PassReport};
