//! The kernel table: ATen overload name → libtorch call. One file per domain, mirroring the op
//! registry's tables (`ir/src/registry/{elementwise,tensor,nn,misc}.rs`).
//!
//! A kernel reads its arguments through [`Args`] (the full positional list of the op's schema,
//! defaults filled) and returns the node's outputs in order. Kernels use the fallible `f_` forms
//! of tch only, so bad input is a [`KernelError`], never a panic. Ops named with a trailing `_`
//! compute a new tensor (functional semantics); nothing here writes into an argument.

mod elementwise;
mod misc;
mod nn;
mod tensor;

use std::collections::HashMap;
use std::sync::OnceLock;

use tch::{Kind, TchError, Tensor};

pub(crate) use super::args::Args;

/// Why a kernel failed; the caller adds the node and op.
#[derive(Debug)]
pub(crate) enum KernelError {
    /// An argument is missing, of the wrong kind, or has a value the op does not accept.
    Arg { index: usize, reason: String },
    /// libtorch rejected the call.
    Torch(TchError),
}

impl From<TchError> for KernelError {
    fn from(e: TchError) -> Self {
        KernelError::Torch(e)
    }
}

pub(crate) type KResult = Result<Vec<Tensor>, KernelError>;
pub(crate) type KernelFn = fn(&Args) -> KResult;

/// The whole table.
fn table() -> &'static HashMap<&'static str, KernelFn> {
    static TABLE: OnceLock<HashMap<&'static str, KernelFn>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut m = HashMap::new();
        for rows in [elementwise::KERNELS, tensor::KERNELS, nn::KERNELS, misc::KERNELS] {
            for (name, f) in rows {
                m.insert(*name, *f);
            }
        }
        m
    })
}

/// The kernel of an op.
pub(crate) fn lookup(op: &str) -> Option<KernelFn> {
    table().get(op).copied()
}

/// Every op name the executor can run, sorted.
pub fn kernel_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = table().keys().copied().collect();
    v.sort_unstable();
    v
}

/// One output.
pub(crate) fn one(t: Tensor) -> KResult {
    Ok(vec![t])
}

/// Convert to `kind` when the tensor is of another kind (in-place ops keep their input's dtype).
pub(crate) fn to_kind(t: Tensor, kind: Kind) -> Result<Tensor, KernelError> {
    if t.f_kind()? == kind {
        Ok(t)
    } else {
        Ok(t.f_to_dtype(kind, false, false)?)
    }
}

/// The result of an in-place op `self.op_(...)`: the value computed functionally, in `self`'s
/// dtype and (broadcast) shape, as the mutated `self` would be.
pub(crate) fn like_self(out: Tensor, this: &Tensor) -> Result<Tensor, KernelError> {
    let out = to_kind(out, this.f_kind()?)?;
    let size = this.size();
    if out.size() == size {
        Ok(out)
    } else {
        Ok(out.f_expand(size, false)?.f_contiguous()?)
    }
}
