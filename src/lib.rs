//! Genie as a library: the compile pipeline shared by the CLI, benchmarks and end-to-end tests.

pub mod pipeline;
