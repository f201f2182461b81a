//! ONNX models (`.onnx`, with external data beside them).

use std::path::Path;

use genie_ir::Program;

/// Why an ONNX model could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Reading ONNX models is not implemented yet.
    #[error("ONNX import is not implemented yet")]
    NotImplemented,
}

/// Import an ONNX model.
pub fn read(_path: &Path) -> Result<Program, OnnxError> {
    Err(OnnxError::NotImplemented)
}
