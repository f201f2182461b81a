//! Model readers. [`load`] picks a reader by file extension and merges several files into one
//! program (entry graphs share one weight store).
//!
//! - `.ron`: a Genie program as written by `genie inspect --format ron`.
//! - `.pt2`: a `torch.export.save` archive ([`pt2`]).
//! - `.onnx`: an ONNX model ([`onnx`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genie_ir::{Program, ProgramIoError};
use rayon::prelude::*;

mod mmap;
pub mod onnx;
pub mod pt2;

/// Why a model file could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The extension names no format Genie reads.
    #[error("{path}: unknown model format (expected .ron, .pt2 or .onnx)")]
    UnknownFormat { path: PathBuf },
    /// A RON program that does not parse.
    #[error("{path}: {source}")]
    Ron {
        path: PathBuf,
        #[source]
        source: Box<ProgramIoError>,
    },
    /// A `.pt2` archive that could not be imported.
    #[error("{path}: {source}")]
    Pt2 {
        path: PathBuf,
        #[source]
        source: pt2::Pt2Error,
    },
    /// An ONNX model that could not be imported.
    #[error("{path}: {source}")]
    Onnx {
        path: PathBuf,
        #[source]
        source: onnx::OnnxError,
    },
    /// Two files define entries with the same name.
    #[error("{path}: entry `{entry}` is already defined by an earlier file")]
    DuplicateEntry { path: PathBuf, entry: String },
    /// The imported program does not verify (an importer bug or an inconsistent file).
    #[error("{path}: {source}")]
    Verify {
        path: PathBuf,
        #[source]
        source: genie_ir::VerifyError,
    },
}

/// Ops a file uses that Genie does not support, with every node that uses each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnsupportedOps {
    /// op type → names of the nodes using it.
    pub ops: BTreeMap<String, Vec<String>>,
}

impl UnsupportedOps {
    pub fn add(&mut self, op: impl Into<String>, node: impl Into<String>) {
        self.ops.entry(op.into()).or_default().push(node.into());
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

impl std::fmt::Display for UnsupportedOps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} unsupported op type(s):", self.ops.len())?;
        for (op, nodes) in &self.ops {
            const SHOWN: usize = 8;
            let mut names = nodes.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            if nodes.len() > SHOWN {
                names.push_str(&format!(", … {} more", nodes.len() - SHOWN));
            }
            write!(f, "\n  {op} ×{} ({names})", nodes.len())?;
            if let Some((namespace, library)) = custom_op_origin(op) {
                write!(f, " — a custom op of namespace `{namespace}`, registered by {library}")?;
            }
        }
        Ok(())
    }
}

/// For an op outside PyTorch's own namespaces: its namespace and the library that most likely
/// registered it with `torch.library`.
pub fn custom_op_origin(op: &str) -> Option<(&str, &'static str)> {
    let namespace = op.split('.').next()?;
    const LIBRARIES: [(&str, &str); 13] = [
        ("transformers", "Hugging Face transformers"),
        ("torchvision", "torchvision"),
        ("torchaudio", "torchaudio"),
        ("torchao", "torchao"),
        ("fbgemm", "fbgemm-gpu"),
        ("bitsandbytes", "bitsandbytes"),
        ("bnb", "bitsandbytes"),
        ("vllm", "vLLM"),
        ("_C", "vLLM or another C++ extension"),
        ("flash_attn", "flash-attn"),
        ("xformers", "xFormers"),
        ("mmcv", "mmcv"),
        ("quantized", "PyTorch's quantization"),
    ];
    match namespace {
        "aten" | "prims" | "_operator" | "operator" | "torch" | "math" | "" => None,
        ns => Some((
            ns,
            LIBRARIES.iter().find(|(n, _)| *n == ns).map_or("a library's torch.library registration", |(_, l)| *l),
        )),
    }
}

/// Read one model file.
pub fn load_file(path: &Path) -> Result<Program, FrontendError> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let program = match ext.as_str() {
        "ron" => {
            let text =
                std::fs::read_to_string(path).map_err(|source| FrontendError::Io { path: path.into(), source })?;
            Program::from_ron(&text)
                .map_err(|source| FrontendError::Ron { path: path.into(), source: Box::new(source) })?
        }
        "pt2" => pt2::read(path).map_err(|source| FrontendError::Pt2 { path: path.into(), source })?,
        "onnx" => onnx::read(path).map_err(|source| FrontendError::Onnx { path: path.into(), source })?,
        _ => return Err(FrontendError::UnknownFormat { path: path.into() }),
    };
    genie_ir::verify_program(&program).map_err(|source| FrontendError::Verify { path: path.into(), source })?;
    Ok(program)
}

/// Read one or more files as one program: entries in file order, weights shared by hash.
/// A single file keeps its program as it is; several files make a program named after them.
pub fn load(paths: &[PathBuf]) -> Result<Program, FrontendError> {
    // Files are independent until merged: read them in parallel (the import is mostly
    // hashing weights), then merge in file order; the first failing file in order is reported.
    let loaded: Vec<Result<Program, FrontendError>> = paths.par_iter().map(|p| load_file(p)).collect();
    let mut programs = Vec::with_capacity(paths.len());
    for (p, program) in paths.iter().zip(loaded) {
        programs.push((p.clone(), program?));
    }
    if programs.len() == 1 {
        return Ok(programs.remove(0).1);
    }
    let name = programs.iter().map(|(_, p)| p.name.as_str()).collect::<Vec<_>>().join("+");
    let mut merged = Program::new(name);
    for (path, p) in programs {
        for g in p.entries {
            if merged.entry(&g.name).is_some() {
                return Err(FrontendError::DuplicateEntry { path, entry: g.name });
            }
            merged.entries.push(g);
        }
        merged.weights.absorb(p.weights);
        merged.state_bindings.extend(p.state_bindings);
    }
    Ok(merged)
}
