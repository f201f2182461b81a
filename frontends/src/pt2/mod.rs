//! `torch.export.save` archives (`.pt2`).

use std::path::Path;

use genie_ir::Program;

/// Why a `.pt2` archive could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum Pt2Error {
    /// Reading `.pt2` archives is not implemented yet.
    #[error(".pt2 import is not implemented yet")]
    NotImplemented,
}

/// Import a `.pt2` archive.
pub fn read(_path: &Path) -> Result<Program, Pt2Error> {
    Err(Pt2Error::NotImplemented)
}
