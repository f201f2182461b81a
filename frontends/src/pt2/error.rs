//! Why a `.pt2` archive could not be imported.

use crate::UnsupportedOps;

/// Why a `.pt2` archive could not be imported. Every variant names the archive member, and
/// where it applies the node, op, tensor or weight; [`crate::FrontendError::Pt2`] adds the file.
#[derive(Debug, thiserror::Error)]
pub enum Pt2Error {
    /// The file could not be opened or memory-mapped.
    #[error("cannot read the archive: {0}")]
    Io(#[source] std::io::Error),
    /// The bytes are not a zip archive, or its central directory is truncated or corrupt.
    #[error("not a readable zip archive (truncated or corrupt?): {0}")]
    NotZip(#[source] zip::result::ZipError),
    /// A readable zip that is not a `torch.export` archive: no `models/<name>.json`, or an
    /// `archive_format` other than `pt2`.
    #[error("not a torch.export archive: {reason}")]
    NotPt2 { reason: String },
    /// A member the program needs is not in the archive.
    #[error("member `{member}` is missing from the archive")]
    MissingMember { member: String },
    /// A member's bytes cannot be read: they run past the end of the file, fail their CRC,
    /// or use a compression method this reader does not support.
    #[error("member `{member}`: {reason}")]
    BadMember { member: String, reason: String },
    /// A JSON member does not parse, or does not match the `torch.export` schema.
    #[error("member `{member}`: invalid JSON: {source}")]
    Json {
        member: String,
        #[source]
        source: serde_json::Error,
    },
    /// The archive uses a format feature this reader does not support (a schema major
    /// version, a big-endian byte order).
    #[error("member `{member}`: unsupported: {reason}")]
    UnsupportedFormat { member: String, reason: String },
    /// The graph uses ops the registry does not know: every one of them, with counts and the
    /// names of the nodes using each.
    #[error("member `{member}`: {ops}")]
    UnsupportedOps { member: String, ops: UnsupportedOps },
    /// A node Genie cannot represent: an argument kind with no SRG form (strings lists,
    /// subgraphs, custom objects, symbolic bools), a reference to an undefined value, or an
    /// in-place write through a view.
    #[error("member `{member}`: node `{node}` ({op}): {reason}")]
    BadNode { member: String, node: String, op: &'static str, reason: String },
    /// A node's arguments do not fit its op's registry schema.
    #[error("member `{member}`: node `{node}` ({op}): {source}")]
    Bind {
        member: String,
        node: String,
        op: &'static str,
        #[source]
        source: Box<genie_ir::registry::ArgError>,
    },
    /// A symbolic integer whose expression has no [`genie_ir::Dim`] form (`Max`, rationals),
    /// or that is not defined at all. The reason quotes the expression.
    #[error("member `{member}`: symbolic value `{name}`: {reason}")]
    SymExpr { member: String, name: String, reason: String },
    /// Tensor metadata Genie cannot represent (an unknown dtype, a sparse layout), or a tensor
    /// name with no metadata.
    #[error("member `{member}`: tensor `{name}`: {reason}")]
    TensorMeta { member: String, name: String, reason: String },
    /// A graph signature entry Genie cannot represent (tokens, custom objects, symbolic-int
    /// inputs or outputs, losses and gradients) or that contradicts the graph.
    #[error("member `{member}`: graph signature: {reason}")]
    Signature { member: String, reason: String },
    /// A parameter, buffer or constant whose data cannot be read: not listed in the payload
    /// config, pickled, or a view that runs past its storage.
    #[error("weight `{fqn}` (member `{member}`): {reason}")]
    Weight { fqn: String, member: String, reason: String },
}
