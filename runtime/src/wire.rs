//! The wire protocol lives in `genie-wire` (no libtorch), so fuzzers and other tch-free tools
//! reach it; re-exported here so `crate::wire::…` and `genie_runtime::wire::…` keep working.
pub use genie_wire::*;
