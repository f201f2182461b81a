//! ONNX models (`.onnx`, with external data beside them).
//!
//! [`read`] decodes the protobuf ([`proto`], hand-written prost bindings), turns initializers into
//! weights (`tensor.rs`: typed fields, `raw_data`, or external data referenced in place and hashed
//! over an mmap), folds static subgraphs such as shape arithmetic into constants (`fold.rs`, over
//! the host tensors of `host.rs`), and lowers every other node onto the SRG's ATen-named ops
//! (`lower/`, one table keyed by ONNX op type). The importer itself (values, symbols, graph
//! inputs and outputs, checks against declared types) is `import.rs`.
//!
//! Initializers become weights only when the graph uses them; those that only feed folded shape
//! arithmetic leave nothing behind. Values that must be known at import time (Reshape's shape,
//! Slice's bounds, ...) may be symbolic: a `Shape` of a symbolic input folds to a vector of dims.
//!
//! The program and its one entry are named after the file stem; inputs and outputs keep their
//! ONNX names and order. Symbolic dims (`dim_param`) become symbols with range `[1, inf]`.

mod fold;
mod host;
mod import;
mod lower;
pub mod proto;
mod tensor;

use std::path::{Path, PathBuf};

use genie_ir::{InferError, Program};

use crate::UnsupportedOps;

/// Why an ONNX model could not be imported. Every variant names what went wrong and where: the
/// node (by name, or `#index` when unnamed, with its op type), the value, or the tensor.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The model file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf (truncated, corrupt, or another format).
    #[error("not an ONNX model (protobuf decoding failed): {0}")]
    Decode(#[from] prost::DecodeError),
    /// The model has no graph.
    #[error("the model has no graph")]
    NoGraph,
    /// The model imports a version of the default (`ai.onnx`) opset this reader does not know.
    #[error("opset {version} of the default domain is not supported (supported: {min}..={max})")]
    Opset { version: i64, min: i64, max: i64 },
    /// Ops the reader cannot lower, with every node using each: one error for the whole model.
    #[error("{0}")]
    Unsupported(UnsupportedOps),
    /// A graph input, output or value has a type the SRG cannot represent (sequences, maps,
    /// strings, missing shapes).
    #[error("value `{value}`: {reason}")]
    UnsupportedType { value: String, reason: String },
    /// A tensor uses an element type code ONNX does not define or the SRG has no dtype for.
    #[error("tensor `{tensor}`: unsupported element type {code} ({name})")]
    Dtype { tensor: String, code: i32, name: &'static str },
    /// A tensor's dims and data disagree (wrong byte count, negative dims, too large, segments).
    #[error("tensor `{tensor}`: {reason}")]
    BadTensor { tensor: String, reason: String },
    /// A tensor's external data could not be located: missing file, bad keys, or a byte range
    /// outside the file.
    #[error("tensor `{tensor}`: external data {path}: {reason}")]
    ExternalData { tensor: String, path: PathBuf, reason: String },
    /// Two definitions (initializers, inputs or node outputs) share a name.
    #[error("value `{0}` is defined twice")]
    DuplicateValue(String),
    /// A node reads a value that no input, initializer or earlier node defines.
    #[error("node {node} ({op}): input `{value}` is not defined by any input, initializer or earlier node")]
    UndefinedValue { node: String, op: String, value: String },
    /// A graph output names a value nothing defines.
    #[error("graph output `{0}` is not defined")]
    UndefinedOutput(String),
    /// Two graph outputs share a name.
    #[error("graph output `{0}` is listed twice")]
    DuplicateOutput(String),
    /// A node lacks a required input, or has too many.
    #[error("node {node} ({op}): {reason}")]
    Arity { node: String, op: String, reason: String },
    /// A node's attribute is missing, has the wrong type, or an unsupported value.
    #[error("node {node} ({op}): attribute `{attr}`: {reason}")]
    Attribute { node: String, op: String, attr: String, reason: String },
    /// A node is of a supported op type but uses a configuration the reader cannot lower
    /// (a data-dependent shape, an unsupported mode, a training-only output).
    #[error("node {node} ({op}): {reason}")]
    Lowering { node: String, op: String, reason: String },
    /// The op registry rejected the lowered node (shapes or dtypes that do not fit).
    #[error("node {node} ({op}): {source}")]
    Infer {
        node: String,
        op: String,
        #[source]
        source: Box<InferError>,
    },
    /// A value's type as declared by the model (`value_info` or graph output) differs from the
    /// type the lowered graph computes.
    #[error("value `{value}`: the model declares {declared} but the import computes {inferred}")]
    TypeMismatch { value: String, declared: String, inferred: String },
}

/// Import an ONNX model. External data files are resolved beside the model and referenced in
/// place ([`genie_ir::WeightData::External`]); nothing is copied.
pub fn read(path: &Path) -> Result<Program, OnnxError> {
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io { path: path.into(), source })?;
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    import::import(&bytes, &name, &dir)
}

/// The SRG dtype of an ONNX element type code (`TensorProto.DataType`), if it has one.
pub fn dtype_of_code(code: i32) -> Option<genie_ir::DType> {
    tensor::dtype_of(code)
}

/// Decode a serialised `TensorProto` (a `.pb` file such as the backend test data's
/// `input_0.pb`): its name, type and little-endian bytes. External data is looked up in `dir`.
pub fn read_tensor_proto(bytes: &[u8], dir: &Path) -> Result<(String, genie_ir::TensorType, Vec<u8>), OnnxError> {
    use prost::Message;
    let t = proto::TensorProto::decode(bytes)?;
    let name = t.name.clone();
    let mut files = tensor::ExternalFiles::new(dir);
    let decoded = tensor::decode_owned(t, &name, &mut files)?;
    let data = match decoded.payload {
        tensor::Payload::Inline(b) => b,
        tensor::Payload::External { path, offset, len } => files
            .bytes(&path, offset, len)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| OnnxError::BadTensor { tensor: name.clone(), reason: "external data vanished".into() })?,
    };
    Ok((name, decoded.ty, data))
}

/// Import an ONNX model from bytes (external data, if any, is looked up in `dir`). `name` names
/// the program and its entry.
pub fn read_bytes(bytes: &[u8], name: &str, dir: &Path) -> Result<Program, OnnxError> {
    import::import(bytes, name, dir)
}
