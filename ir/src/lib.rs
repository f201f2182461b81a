//! The Semantically Rich Graph (SRG): Genie's intermediate representation.
//!
//! - [`Graph`]: op nodes over typed values ([`TensorType`] facts with static or symbolic
//!   [`Dim`]s), with the annotation schema of [`annot`].
//! - [`registry`]: every op, keyed by ATen overload name, with schema, inference and cost.
//! - [`verify`]: the checks every pass must leave true.
//! - [`Program`]: entry graphs + a content-addressed [`WeightStore`] + state bindings (grouped
//!   into [`StateSlots`]) + placement's [`PlacementRecord`] once placed.
//! - [`render`]: text dump, DOT and the JSON summary; RON through [`Program::to_ron`].

pub mod annot;
pub mod dim;
mod edit;
pub mod example;
pub mod graph;
pub mod placed;
pub mod program;
pub mod registry;
pub mod render;
pub mod synthetic;
pub mod types;
pub mod union_find;
pub mod verify;
pub mod weights;

pub use annot::{
    Batching, CostHints, EdgeRef, InputRole, Modality, NodeAnn, Phase, Region, RegionId, Residency, Tag, ValueAnn,
};
pub use dim::{Dim, DimError, SymRange};
pub use graph::{Arg, Edge, Graph, GraphOutput, Node, NodeId, OutputKind, Value, ValueDef, ValueId, DEFAULT_BIND_CAP};
pub use placed::{Estimate, PhaseEstimate, PhaseRecord, PlacedDevice, PlacementRecord, RequestShape, CLIENT};
pub use program::{Port, Program, ProgramIoError, StateBinding, StateSlotDef, StateSlots, PROGRAM_FORMAT_VERSION};
pub use registry::{InferError, OpClass};
pub use types::{DType, TensorType};
pub use verify::{verify_graph, verify_program, VerifyError};
pub use weights::{HexBytes, WeightData, WeightEntry, WeightHash, WeightStore};
