//! The runtime: workers, client, wire protocol (quinn) and the libtorch executor.
//!
//! Only this crate (and the CLI that links it) touches libtorch.
//! - `exec/`: the tch executor (one kernel table keyed by ATen name) and symbol binding;
//! - `local.rs`: every device plan in-process (the `local` mode and the executor's harness);
//! - `wire.rs`: the protocol, every message and header; `streams.rs`: its async I/O;
//! - `transport/`: quinn endpoints, TLS (pinned or CA), tuning, transport benchmark;
//! - `worker/`: the worker, a sans-IO ledger (programs, sessions, weights, memory admission,
//!   sweeps) inside a quinn/tokio shell (connections, requests, runs, peer links);
//! - `handshake.rs`: the Hello/Welcome exchange, shared by the client, workers connecting to
//!   peers and workers accepting;
//! - `client.rs`: the other end; `generate.rs`: the greedy loop; `recovery.rs`: surviving a lost
//!   worker by replaying a session's lineage on the workers that answer;
//! - `metrics.rs`: the Prometheus listener and the client's generation metrics; `trace.rs`: the
//!   trace clock, spans and Chrome trace files; `progress.rs`: progress reports.

pub mod client;
pub mod cores;
pub mod deploy;
pub mod exec;
pub mod generate;
pub mod handshake;
pub mod local;
pub mod metrics;
pub mod per_op;
pub mod progress;
pub mod recovery;
pub mod streams;
pub mod tensor;
pub mod trace;
pub mod transport;
pub mod wire;
pub mod worker;
