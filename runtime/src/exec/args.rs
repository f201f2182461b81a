//! Typed access to a node's arguments for kernels: tensors resolved, symbolic ints evaluated.

use genie_ir::{Arg, ValueId};
use tch::{Device, Kind, Scalar, Tensor};

use super::kernels::KernelError;
use super::{Bindings, ExecError};
use crate::tensor::kind_of;

/// One node's arguments, as a kernel sees them.
pub(crate) struct Args<'a> {
    pub op: &'a str,
    args: &'a [Arg],
    /// Per argument: its tensors (one for `Tensor`, a list for `Tensor[]`/`Tensor?[]`, none for
    /// attributes).
    tensors: Vec<Vec<Option<Tensor>>>,
    bindings: &'a Bindings,
    /// Where the op runs: tensors it creates go here.
    pub device: Device,
}

fn err(index: usize, reason: impl Into<String>) -> KernelError {
    KernelError::Arg { index, reason: reason.into() }
}

impl<'a> Args<'a> {
    /// Resolve every tensor argument.
    pub fn resolve(
        op: &'a str,
        args: &'a [Arg],
        resolve: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
        bindings: &'a Bindings,
        device: Device,
    ) -> Result<Args<'a>, ExecError> {
        // An undefined tensor would make libtorch's size queries abort; refuse it here.
        let resolve = |v: ValueId| {
            let t = resolve(v)?;
            if t.defined() {
                Ok(t)
            } else {
                Err(ExecError::BadTensor {
                    tensor: v.to_string(),
                    reason: format!("{op} was given an undefined tensor"),
                })
            }
        };
        let mut tensors = Vec::with_capacity(args.len());
        for a in args {
            tensors.push(match a {
                Arg::Tensor(v) => vec![Some(resolve(*v)?)],
                Arg::Tensors(vs) => vs.iter().map(|v| resolve(*v).map(Some)).collect::<Result<_, _>>()?,
                Arg::OptTensors(vs) => vs.iter().map(|v| v.map(&resolve).transpose()).collect::<Result<_, _>>()?,
                _ => Vec::new(),
            });
        }
        Ok(Args { op, args, tensors, bindings, device })
    }

    fn arg(&self, i: usize) -> Result<&'a Arg, KernelError> {
        self.args.get(i).ok_or_else(|| err(i, format!("missing (the node has {} arguments)", self.args.len())))
    }

    fn is_none(&self, i: usize) -> Result<bool, KernelError> {
        Ok(matches!(self.arg(i)?, Arg::None))
    }

    fn kind_err(&self, i: usize, want: &str) -> KernelError {
        match self.args.get(i) {
            Some(a) => err(i, format!("expected {want}, got {a}")),
            None => err(i, format!("missing (the node has {} arguments)", self.args.len())),
        }
    }

    /// The tensor at `i`.
    pub fn tensor(&self, i: usize) -> Result<&Tensor, KernelError> {
        match (self.arg(i)?, self.tensors.get(i).and_then(|v| v.first())) {
            (Arg::Tensor(_), Some(Some(t))) => Ok(t),
            _ => Err(self.kind_err(i, "a tensor")),
        }
    }

    /// An optional tensor.
    pub fn opt_tensor(&self, i: usize) -> Result<Option<&Tensor>, KernelError> {
        if self.is_none(i)? {
            return Ok(None);
        }
        self.tensor(i).map(Some)
    }

    /// A tensor list (`Tensor[]`).
    pub fn tensors(&self, i: usize) -> Result<Vec<&Tensor>, KernelError> {
        match self.arg(i)? {
            Arg::Tensors(_) | Arg::OptTensors(_) => {
                self.tensors[i].iter().map(|t| t.as_ref().ok_or_else(|| err(i, "a tensor list with a hole"))).collect()
            }
            Arg::Tensor(_) => Ok(vec![self.tensor(i)?]),
            _ => Err(self.kind_err(i, "a tensor list")),
        }
    }

    /// `Tensor?[]` with its holes.
    pub fn opt_tensors(&self, i: usize) -> Result<Vec<Option<&Tensor>>, KernelError> {
        match self.arg(i)? {
            Arg::Tensors(_) | Arg::OptTensors(_) | Arg::Tensor(_) => {
                Ok(self.tensors[i].iter().map(Option::as_ref).collect())
            }
            _ => Err(self.kind_err(i, "a tensor list")),
        }
    }

    fn eval(&self, i: usize, d: &genie_ir::Dim) -> Result<i64, KernelError> {
        d.eval(self.bindings).map_err(|e| err(i, format!("symbolic `{d}`: {e}")))
    }

    /// An int (a symbolic one evaluated, a bool as 0/1).
    pub fn int(&self, i: usize) -> Result<i64, KernelError> {
        match self.arg(i)? {
            Arg::Int(v) => Ok(*v),
            Arg::Bool(b) => Ok(*b as i64),
            Arg::SymInt(d) => self.eval(i, d),
            _ => Err(self.kind_err(i, "an int")),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, KernelError> {
        if self.is_none(i)? {
            return Ok(None);
        }
        self.int(i).map(Some)
    }

    /// An int list (symbolic elements evaluated; a single int is a one-element list).
    pub fn ints(&self, i: usize) -> Result<Vec<i64>, KernelError> {
        match self.arg(i)? {
            Arg::Ints(v) => Ok(v.clone()),
            Arg::SymInts(ds) => ds.iter().map(|d| self.eval(i, d)).collect(),
            Arg::Int(v) => Ok(vec![*v]),
            Arg::SymInt(d) => Ok(vec![self.eval(i, d)?]),
            _ => Err(self.kind_err(i, "an int list")),
        }
    }

    pub fn opt_ints(&self, i: usize) -> Result<Option<Vec<i64>>, KernelError> {
        if self.is_none(i)? {
            return Ok(None);
        }
        self.ints(i).map(Some)
    }

    /// A float (ints accepted).
    pub fn float(&self, i: usize) -> Result<f64, KernelError> {
        match self.arg(i)? {
            Arg::Float(v) => Ok(*v),
            Arg::Int(v) => Ok(*v as f64),
            Arg::SymInt(d) => Ok(self.eval(i, d)? as f64),
            Arg::Bool(b) => Ok(*b as i64 as f64),
            _ => Err(self.kind_err(i, "a float")),
        }
    }

    pub fn opt_float(&self, i: usize) -> Result<Option<f64>, KernelError> {
        if self.is_none(i)? {
            return Ok(None);
        }
        self.float(i).map(Some)
    }

    /// A float list (ints accepted).
    pub fn opt_floats(&self, i: usize) -> Result<Option<Vec<f64>>, KernelError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            Arg::Floats(v) => Ok(Some(v.clone())),
            Arg::Ints(v) => Ok(Some(v.iter().map(|&x| x as f64).collect())),
            Arg::Float(v) => Ok(Some(vec![*v])),
            _ => Err(self.kind_err(i, "a float list")),
        }
    }

    pub fn bool(&self, i: usize) -> Result<bool, KernelError> {
        match self.arg(i)? {
            Arg::Bool(b) => Ok(*b),
            Arg::Int(v) => Ok(*v != 0),
            _ => Err(self.kind_err(i, "a bool")),
        }
    }

    pub fn str(&self, i: usize) -> Result<&'a str, KernelError> {
        match self.arg(i)? {
            Arg::Str(s) => Ok(s),
            _ => Err(self.kind_err(i, "a string")),
        }
    }

    pub fn opt_str(&self, i: usize) -> Result<Option<&'a str>, KernelError> {
        if self.is_none(i)? {
            return Ok(None);
        }
        self.str(i).map(Some)
    }

    /// A Scalar: int, float, bool (as an int) or an evaluated symbolic int.
    pub fn scalar(&self, i: usize) -> Result<Scalar, KernelError> {
        Ok(match self.num(i)? {
            Num::Int(v) => Scalar::int(v),
            Num::Float(v) => Scalar::float(v),
        })
    }

    pub fn opt_scalar(&self, i: usize) -> Result<Option<Scalar>, KernelError> {
        if self.is_none(i)? {
            return Ok(None);
        }
        self.scalar(i).map(Some)
    }

    /// A Scalar as a number, keeping whether it is integral (for promotion).
    pub fn num(&self, i: usize) -> Result<Num, KernelError> {
        match self.arg(i)? {
            Arg::Int(v) => Ok(Num::Int(*v)),
            Arg::Bool(b) => Ok(Num::Int(*b as i64)),
            Arg::Float(v) => Ok(Num::Float(*v)),
            Arg::SymInt(d) => Ok(Num::Int(self.eval(i, d)?)),
            _ => Err(self.kind_err(i, "a scalar")),
        }
    }

    /// An optional dtype as a libtorch kind.
    pub fn opt_dtype(&self, i: usize) -> Result<Option<Kind>, KernelError> {
        match self.arg(i)? {
            Arg::None => Ok(None),
            Arg::DType(d) => kind_of(*d).map(Some).ok_or_else(|| err(i, format!("libtorch has no kind for {d}"))),
            _ => Err(self.kind_err(i, "a dtype")),
        }
    }

    pub fn dtype(&self, i: usize) -> Result<Kind, KernelError> {
        self.opt_dtype(i)?.ok_or_else(|| self.kind_err(i, "a dtype"))
    }

    /// True when argument `i` is a bool literal.
    pub fn is_bool(&self, i: usize) -> bool {
        matches!(self.args.get(i), Some(Arg::Bool(_)))
    }

    /// An error about argument `i`'s value.
    pub fn bad(&self, i: usize, reason: impl Into<String>) -> KernelError {
        err(i, reason)
    }
}

/// A Scalar argument's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub fn f64(self) -> f64 {
        match self {
            Num::Int(v) => v as f64,
            Num::Float(v) => v,
        }
    }

    pub fn is_one(self) -> bool {
        self.f64() == 1.0
    }

    pub fn scalar(self) -> Scalar {
        match self {
            Num::Int(v) => Scalar::int(v),
            Num::Float(v) => Scalar::float(v),
        }
    }

    /// `self * other`, integral when both are.
    pub fn mul(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_mul(b).map_or(Num::Float(a as f64 * b as f64), Num::Int),
            (a, b) => Num::Float(a.f64() * b.f64()),
        }
    }
}
