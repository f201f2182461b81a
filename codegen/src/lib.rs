//! Codegen: a placed SRG program (every node has `ann.device`) becomes per-device execution plans.
//!
//! - [`generate`]: for each entry graph, one [`DevicePlan`] per device — ordered `Recv` / `Exec` /
//!   `Send` / `Free` / `SaveState` steps over tensor ids (the entry's value ids) — plus the
//!   client's (send the user inputs, receive the outputs); the transfers of one call; each
//!   device's resident set (weight hashes, KV-cache state slots) and peak memory.
//! - [`memory`]: the activation peak of a device plan (buffers freed after their last use).
//! - [`summary`]: the `--summary` structure, the text dump, and the placed program rebuilt from
//!   a plan (for DOT coloured by device).
//! - Serialisation: RON for people ([`to_ron`]), a compact versioned binary for the wire
//!   ([`to_binary`], format in [`binary`]); both deterministic for the same inputs.

pub mod binary;
mod check;
pub mod fusion;
mod generate;
pub mod memory;
pub mod plan;
pub mod summary;

pub use check::{check_types, PlanCheckError};
pub use fusion::{FusedBias, FusedRegion};
pub use generate::generate;
pub use plan::*;
pub use summary::{summary, JitSummary, PlanSummary};

use genie_ir::NodeId;

/// Why a plan could not be generated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodegenError {
    /// The program has not been placed (no placement record).
    #[error("the program has not been placed; run placement first")]
    NotPlaced,
    /// The placement record lists no devices.
    #[error("the placement lists no devices")]
    NoDevices,
    /// A node has no `ann.device` (placement has not run).
    #[error("entry `{entry}`: node {node} has no device; place the program first")]
    Unplaced { entry: String, node: NodeId },
    /// A node names a device the placement record does not have.
    #[error("entry `{entry}`: node {node} is placed on `{device}`, which is not a device of the placement")]
    UnknownDevice { entry: String, node: NodeId, device: String },
    /// A state slot's users are on more than one device.
    #[error("state `{slot}` must stay on one device but is used on {devices}")]
    StateSplit { slot: String, devices: String },
    /// The graph or the program's state bindings are inconsistent.
    #[error("entry `{entry}`: {reason}")]
    Graph { entry: String, reason: String },
    /// A tensor's size cannot be evaluated with the bindings.
    #[error("entry `{entry}`: size of `{value}`: {reason}")]
    Size { entry: String, value: String, reason: String },
}

/// Why a plan could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PlanIoError {
    /// The RON text does not parse as a plan.
    #[error("not a Genie plan (RON): {0}")]
    Ron(#[from] ron::error::SpannedError),
    /// RON serialisation failed.
    #[error("cannot write RON: {0}")]
    RonWrite(#[from] ron::Error),
    /// The binary encoding failed or the bytes do not decode.
    #[error("plan binary: {0}")]
    Binary(#[from] binary::BinaryError),
    /// The bytes do not start with the plan magic.
    #[error("not a Genie plan (no `GENIEPLN` header)")]
    Magic,
    /// A plan written by an incompatible version.
    #[error("plan format version {found} is not supported (this build reads version {expected})")]
    Version { found: u32, expected: u32 },
    /// A plan file could not be read or written.
    #[error("{path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A plan file is neither binary nor text.
    #[error("{path} is neither a binary plan nor text")]
    NotText { path: std::path::PathBuf },
}

/// The first bytes of a binary plan, followed by the format version (u32, little-endian).
pub const MAGIC: &[u8; 8] = b"GENIEPLN";

/// The plan as RON text (deterministic; parses back to the same plan).
pub fn to_ron(plan: &ProgramPlan) -> Result<String, PlanIoError> {
    let config = ron::ser::PrettyConfig::new()
        .indentor("  ".to_string())
        .struct_names(false)
        .separate_tuple_members(false)
        .enumerate_arrays(false);
    let mut text = ron::ser::to_string_pretty(plan, config)?;
    text.push('\n');
    Ok(text)
}

/// Parse a RON plan.
pub fn from_ron(text: &str) -> Result<ProgramPlan, PlanIoError> {
    let plan: ProgramPlan = genie_ir::program::ron_read_options().from_str(text)?;
    if plan.version != PLAN_FORMAT_VERSION {
        return Err(PlanIoError::Version { found: plan.version, expected: PLAN_FORMAT_VERSION });
    }
    Ok(plan)
}

/// The plan as binary: `GENIEPLN`, the version (u32 LE), then the [`binary`] encoding.
pub fn to_binary(plan: &ProgramPlan) -> Result<Vec<u8>, PlanIoError> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&PLAN_FORMAT_VERSION.to_le_bytes());
    out.extend(binary::to_bytes(plan)?);
    Ok(out)
}

/// Parse a binary plan.
pub fn from_binary(bytes: &[u8]) -> Result<ProgramPlan, PlanIoError> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(PlanIoError::Magic);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let found = u32::from_le_bytes(v);
    if found != PLAN_FORMAT_VERSION {
        return Err(PlanIoError::Version { found, expected: PLAN_FORMAT_VERSION });
    }
    Ok(binary::from_bytes(&bytes[12..])?)
}

/// Write a plan file: RON when the name ends in `.ron`, else binary.
pub fn write_file(path: &std::path::Path, plan: &ProgramPlan) -> Result<(), PlanIoError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let bytes = if name.ends_with(".ron") { to_ron(plan)?.into_bytes() } else { to_binary(plan)? };
    std::fs::write(path, bytes).map_err(|source| PlanIoError::File { path: path.into(), source })
}

/// Read a plan file, binary or RON (by its first bytes).
pub fn read_file(path: &std::path::Path) -> Result<ProgramPlan, PlanIoError> {
    let bytes = std::fs::read(path).map_err(|source| PlanIoError::File { path: path.into(), source })?;
    if is_binary_plan(&bytes) {
        return from_binary(&bytes);
    }
    let text = String::from_utf8(bytes).map_err(|_| PlanIoError::NotText { path: path.into() })?;
    from_ron(&text)
}

/// True when the bytes start like a binary plan.
pub fn is_binary_plan(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..8] == MAGIC
}
