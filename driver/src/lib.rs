//! Genie's pipelines as library calls, shared by the CLI, the benchmark and the tests:
//! - [`cluster`]: which cluster a caller means (a cluster file, or embedded workers);
//! - [`pipeline`]: compile a program for a cluster (passes → placement → codegen);
//! - [`recovery`]: placing a program again on the workers that answer after one was lost;
//! - [`bench`]: `genie bench`, the semantic advantage measured against in-process execution,
//!   per-op remoting and semantics-blind remoting, all through the runtime's deployment API.

pub mod bench;
pub mod cluster;
pub mod pipeline;
pub mod recovery;
