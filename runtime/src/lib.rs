//! The runtime: workers, client, wire protocol (quinn) and the libtorch executor.
//!
//! Only this crate (and the CLI that links it) touches libtorch. It is built out by the runtime
//! issue; today it holds the bridge between SRG element types and libtorch kinds.

pub mod tensor;
