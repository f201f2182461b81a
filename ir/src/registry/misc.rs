//! Tensor creation, dtype conversion, assertions, reductions, sorting.

use super::facts::Fold;
use super::scalar::Scalar;
use super::shape::*;
use super::{op, Call, InferError, OpClass::*, OpDecl, ScalarArg};
use crate::dim::Dim;
use crate::graph::Arg;
use crate::types::{DType, TensorType};

fn scalar_dtype(s: ScalarArg) -> DType {
    match s {
        ScalarArg::Bool(_) => DType::Bool,
        ScalarArg::Int(_) | ScalarArg::Sym => DType::Int64,
        ScalarArg::Float(_) => DEFAULT_FLOAT,
    }
}

/// A Scalar argument as a dim (ints and symbolic ints), or its float value.
fn scalar_value(c: &Call, i: usize) -> Result<Result<Dim, f64>, InferError> {
    match &c.args[i] {
        Arg::Int(v) => Ok(Ok(Dim::constant(*v))),
        Arg::SymInt(d) => Ok(Ok(d.clone())),
        Arg::Float(f) => Ok(Err(*f)),
        other => Err(c.err(format!("argument #{i} should be a number, got {other:?}"))),
    }
}

/// `arange(start, end, step)` length, symbolic when the bounds are.
fn arange_impl(
    c: &Call,
    start: Option<usize>,
    end: usize,
    step: Option<usize>,
    dtype_i: usize,
) -> Result<Vec<TensorType>, InferError> {
    let start_v = match start {
        Some(i) => scalar_value(c, i)?,
        None => Ok(Dim::constant(0)),
    };
    let end_v = scalar_value(c, end)?;
    let step_v = match step {
        Some(i) => scalar_value(c, i)?,
        None => Ok(Dim::constant(1)),
    };
    let any_float = start_v.is_err() || end_v.is_err() || step_v.is_err();
    let len = match (&start_v, &end_v, &step_v) {
        (Ok(s), Ok(e), Ok(st)) => {
            let st_c = st.as_const().ok_or_else(|| c.err("symbolic arange step"))?;
            if st_c == 0 {
                return Err(c.err("arange step must be nonzero"));
            }
            let span = match (e.as_const(), s.as_const()) {
                (Some(a), Some(b)) => Dim::constant(a.checked_sub(b).ok_or_else(|| c.err("arange length overflows"))?),
                _ => e.sub(s),
            };
            match span.as_const() {
                Some(v) if v.signum() * st_c.signum() < 0 => return Err(inconsistent_bounds(c)),
                Some(0) => Dim::constant(0),
                // ceil(v / step) for v and step of one sign, without overflow near i64::MAX.
                Some(v) => Dim::constant((v - st_c.signum()) / st_c + 1),
                None if st_c > 0 => span.add(&Dim::constant(st_c - 1)).floor_div(&Dim::constant(st_c)),
                None => return Err(c.err("symbolic arange with a negative step")),
            }
        }
        _ => {
            let f = |v: &Result<Dim, f64>| -> Result<f64, InferError> {
                match v {
                    Ok(d) => {
                        d.as_const().map(|x| x as f64).ok_or_else(|| c.err("mixing symbolic and float arange bounds"))
                    }
                    Err(x) => Ok(*x),
                }
            };
            let (s, e, st) = (f(&start_v)?, f(&end_v)?, f(&step_v)?);
            if st == 0.0 || !st.is_finite() || !s.is_finite() || !e.is_finite() {
                return Err(c.err("invalid arange bounds"));
            }
            if (e - s) * st < 0.0 {
                return Err(inconsistent_bounds(c));
            }
            Dim::constant(((e - s) / st).ceil().max(0.0) as i64)
        }
    };
    let dtype = c.opt_dtype(dtype_i)?.unwrap_or(if any_float { DEFAULT_FLOAT } else { DType::Int64 });
    Ok(vec![TensorType::with_dims(dtype, vec![len])])
}

fn inconsistent_bounds(c: &Call) -> InferError {
    c.err("arange bounds are inconsistent with the step's sign")
}

fn arange(c: &Call) -> Result<Vec<TensorType>, InferError> {
    arange_impl(c, None, 0, None, 1)
}
fn arange_start(c: &Call) -> Result<Vec<TensorType>, InferError> {
    arange_impl(c, Some(0), 1, None, 2)
}
fn arange_start_step(c: &Call) -> Result<Vec<TensorType>, InferError> {
    arange_impl(c, Some(0), 1, Some(2), 3)
}

fn checked_size(c: &Call, i: usize) -> Result<Vec<Dim>, InferError> {
    let size = c.sym_ints(i)?;
    if size.iter().any(|d| d.as_const().is_some_and(|v| v < 0)) {
        return Err(c.err(format!("negative size {}", fmt_shape(&size))));
    }
    Ok(size)
}

/// `full(size, fill_value, *, dtype)`: dtype from the fill value when not given.
fn full(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let dtype = c.opt_dtype(2)?.unwrap_or(scalar_dtype(c.scalar(1)?));
    Ok(vec![TensorType::with_dims(dtype, checked_size(c, 0)?)])
}

/// `zeros/ones/empty(size, *, dtype)`: the default float dtype when not given.
fn fill_default(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let dtype = c.opt_dtype(1)?.unwrap_or(DEFAULT_FLOAT);
    Ok(vec![TensorType::with_dims(dtype, checked_size(c, 0)?)])
}

/// `*_like(self, ..., dtype)`: the input's shape, its dtype unless given. `dtype_i` locates the dtype.
fn like(c: &Call, dtype_i: usize) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![t.with_dtype(c.opt_dtype(dtype_i)?.unwrap_or(t.dtype))])
}
fn zeros_like(c: &Call) -> Result<Vec<TensorType>, InferError> {
    like(c, 1)
}
fn full_like(c: &Call) -> Result<Vec<TensorType>, InferError> {
    like(c, 2)
}

/// `new_ones/new_zeros/new_empty(self, size, *, dtype)`.
fn new_sized(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![TensorType::with_dims(c.opt_dtype(2)?.unwrap_or(t.dtype), checked_size(c, 1)?)])
}

/// `new_full(self, size, fill_value, *, dtype)`.
fn new_full(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![TensorType::with_dims(c.opt_dtype(3)?.unwrap_or(t.dtype), checked_size(c, 1)?)])
}

fn scalar_tensor(c: &Call) -> Result<Vec<TensorType>, InferError> {
    c.scalar(0)?;
    Ok(vec![TensorType::with_dims(c.opt_dtype(1)?.unwrap_or(DEFAULT_FLOAT), vec![])])
}

fn eye(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let n = c.sym_int(0)?;
    if n.as_const().is_some_and(|v| v < 0) {
        return Err(c.err(format!("eye size {n} is negative")));
    }
    Ok(vec![TensorType::with_dims(c.opt_dtype(1)?.unwrap_or(DEFAULT_FLOAT), vec![n.clone(), n])])
}

/// Conversions whose dtype argument is at `i` (optional: keep the input's).
fn convert_at(c: &Call, i: usize) -> Result<Vec<TensorType>, InferError> {
    like(c, i)
}
fn to_copy(c: &Call) -> Result<Vec<TensorType>, InferError> {
    convert_at(c, 1)
}
fn to_dtype(c: &Call) -> Result<Vec<TensorType>, InferError> {
    convert_at(c, 1)
}
fn to_device(c: &Call) -> Result<Vec<TensorType>, InferError> {
    convert_at(c, 2)
}
fn type_as(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, other) = (c.tensor(0)?, c.tensor(1)?);
    Ok(vec![t.with_dtype(other.dtype)])
}

fn no_outputs(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let _ = c;
    Ok(vec![])
}

/// `_assert_async.msg(self, msg)`: nothing out; the tensor must hold one element.
fn assert_async(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.numel().as_const().is_some_and(|n| n != 1) {
        return Err(c.err(format!("asserting on a tensor of {} elements", t.numel())));
    }
    Ok(vec![])
}

/// `_assert_tensor_metadata(a, size?, stride?, dtype?)`: nothing out; the check itself is verified.
fn assert_metadata(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if let Some(Arg::Ints(_) | Arg::SymInts(_)) = c.args.get(1) {
        let size = c.sym_ints(1)?;
        let differ = size.len() != t.rank()
            || size
                .iter()
                .zip(&t.shape)
                .any(|(a, b)| matches!((a.as_const(), b.as_const()), (Some(x), Some(y)) if x != y));
        if differ {
            return Err(c.err(format!("asserted size {}, the value has {}", fmt_shape(&size), fmt_shape(&t.shape))));
        }
    }
    if let Some(d) = c.opt_dtype(3)? {
        if d != t.dtype {
            return Err(c.err(format!("asserted dtype {d}, the value has {}", t.dtype)));
        }
    }
    Ok(vec![])
}

/// `sum/prod`: integers and bools accumulate in int64 unless a dtype is given.
fn accumulate_dtype(t: &TensorType, given: Option<DType>) -> DType {
    given.unwrap_or(if t.dtype.is_integral() || t.dtype == DType::Bool { DType::Int64 } else { t.dtype })
}

fn reduce_with(c: &Call, dims: Option<Vec<i64>>, keepdim: bool, dtype: DType) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let ds = reduce_dims(c, dims, t.rank())?;
    Ok(vec![TensorType::with_dims(dtype, reduced_shape(&t.shape, &ds, keepdim))])
}

/// `sum.dim_IntList(self, dim?, keepdim, *, dtype)`.
fn sum_dim(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    reduce_with(c, c.opt_ints(1)?, c.bool(2)?, accumulate_dtype(t, c.opt_dtype(3)?))
}
/// `sum(self, *, dtype)`.
fn sum_all(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    reduce_with(c, None, false, accumulate_dtype(t, c.opt_dtype(1)?))
}
/// `prod.dim_int(self, dim, keepdim, *, dtype)`.
fn prod_dim(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    reduce_with(c, Some(vec![c.int(1)?]), c.bool(2)?, accumulate_dtype(t, c.opt_dtype(3)?))
}
/// `mean.dim(self, dim?, keepdim, *, dtype)`: floating inputs only.
fn mean_dim(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let dtype = c.opt_dtype(3)?.unwrap_or(t.dtype);
    if !dtype.is_floating() && !dtype.is_complex() {
        return Err(c.err(format!("mean of a {dtype} tensor needs a floating dtype")));
    }
    reduce_with(c, c.opt_ints(1)?, c.bool(2)?, dtype)
}
fn mean_all(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let dtype = c.opt_dtype(1)?.unwrap_or(t.dtype);
    if !dtype.is_floating() && !dtype.is_complex() {
        return Err(c.err(format!("mean of a {dtype} tensor needs a floating dtype")));
    }
    reduce_with(c, None, false, dtype)
}
/// `amax/amin(self, dim[], keepdim)`: a reduced dim must not be empty (there is no identity).
fn amax(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    for d in reduce_dims(c, Some(c.ints(1)?), t.rank())? {
        if t.shape.get(d).and_then(|s| s.as_const()) == Some(0) {
            return Err(c.err(format!("reducing dim {d} of size 0")));
        }
    }
    reduce_with(c, Some(c.ints(1)?), c.bool(2)?, t.dtype)
}
/// `max.dim/min.dim(self, dim, keepdim)` → (values, indices).
fn max_dim(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let v = reduce_with(c, Some(vec![c.int(1)?]), c.bool(2)?, t.dtype)?;
    Ok(vec![v[0].clone(), v[0].with_dtype(DType::Int64)])
}
/// `max/min(self)` → a 0-d tensor; an empty input has no maximum.
fn max_all(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.numel().as_const() == Some(0) {
        return Err(c.err("reduction of an empty tensor needs a dim"));
    }
    reduce_with(c, None, false, t.dtype)
}
/// `argmax/argmin(self, dim?, keepdim)`: without a dim, `keepdim` keeps every dim as 1.
fn argmax(c: &Call) -> Result<Vec<TensorType>, InferError> {
    match c.opt_int(1)? {
        None => reduce_with(c, None, c.bool(2)?, DType::Int64),
        Some(d) => reduce_with(c, Some(vec![d]), c.bool(2)?, DType::Int64),
    }
}
/// Error unless `t` is floating or complex.
fn need_float(c: &Call, t: &TensorType) -> Result<(), InferError> {
    if t.dtype.is_floating() || t.dtype.is_complex() {
        return Ok(());
    }
    Err(c.err(format!("needs a floating input, got {}", t.dtype)))
}

/// `var/std.correction(self, dim?, *, correction?, keepdim)`: floating inputs only.
fn var(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    need_float(c, t)?;
    reduce_with(c, c.opt_ints(1)?, c.bool(3)?, float_of(t.dtype))
}
/// `any/all.dim(self, dim, keepdim)` → bool.
fn any_dim(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let dtype = if t.dtype == DType::Uint8 { DType::Uint8 } else { DType::Bool };
    reduce_with(c, Some(vec![c.int(1)?]), c.bool(2)?, dtype)
}
fn any_all(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let dtype = if t.dtype == DType::Uint8 { DType::Uint8 } else { DType::Bool };
    reduce_with(c, None, false, dtype)
}
/// `logsumexp(self, dim[], keepdim)`.
fn logsumexp(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    reduce_with(c, Some(c.ints(1)?), c.bool(2)?, float_of(t.dtype))
}
/// `linalg_vector_norm(self, ord, dim?, keepdim, *, dtype)`: floating inputs only.
fn vector_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    need_float(c, t)?;
    let dtype = c.opt_dtype(4)?.unwrap_or(float_of(t.dtype));
    reduce_with(c, c.opt_ints(2)?, c.bool(3)?, dtype)
}

/// `histc(self, bins, min, max)` → [bins] of self's dtype, floating only. `min == max` takes the
/// range from the data; otherwise it must be finite with `min < max`.
fn histc(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if !t.dtype.is_floating() {
        return Err(c.err(format!("histc of a {} tensor is not implemented", t.dtype)));
    }
    let bins = c.int(1)?;
    if bins <= 0 {
        return Err(c.err(format!("bins must be > 0, got {bins}")));
    }
    let bound = |i: usize| -> Result<Option<f64>, InferError> {
        Ok(match c.scalar(i)? {
            ScalarArg::Int(v) => Some(v as f64),
            ScalarArg::Float(v) => Some(v),
            ScalarArg::Bool(b) => Some(f64::from(u8::from(b))),
            ScalarArg::Sym => None,
        })
    };
    if let (Some(lo), Some(hi)) = (bound(2)?, bound(3)?) {
        if lo != hi && !(lo.is_finite() && hi.is_finite()) {
            return Err(c.err(format!("histc range [{lo}, {hi}] is not finite")));
        }
        if lo > hi {
            return Err(c.err(format!("histc max {hi} must be larger than min {lo}")));
        }
    }
    Ok(vec![TensorType::new(t.dtype, &[bins])])
}

/// `cumsum/cumprod(self, dim, *, dtype)`: there is no bool kernel.
fn cumulative(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    c.dim_index(c.int(1)?, t.rank())?;
    let dtype = accumulate_dtype(t, c.opt_dtype(2)?);
    if dtype == DType::Bool {
        return Err(c.err("cumulative ops have no bool kernel"));
    }
    Ok(vec![t.with_dtype(dtype)])
}

/// `topk(self, k, dim, largest, sorted)` → (values, indices).
fn topk(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let k = c.sym_int(1)?;
    let mut shape = t.shape.clone();
    if t.rank() > 0 {
        let d = c.dim_index(c.int(2)?, t.rank())?;
        if let (Some(kv), Some(n)) = (k.as_const(), shape[d].as_const()) {
            if kv < 0 || kv > n {
                return Err(c.err(format!("k={kv} out of range for dim of size {n}")));
            }
        }
        shape[d] = k;
    }
    let v = TensorType::with_dims(t.dtype, shape);
    Ok(vec![v.clone(), v.with_dtype(DType::Int64)])
}

/// `sort(self, dim, descending)` → (values, indices).
fn sort(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    c.dim_index(c.int(1)?, t.rank())?;
    Ok(vec![t.clone(), t.with_dtype(DType::Int64)])
}

fn argsort(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    c.dim_index(c.int(1)?, t.rank())?;
    Ok(vec![t.with_dtype(DType::Int64)])
}

fn one_hot(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.dtype != DType::Int64 {
        return Err(c.err(format!("one_hot needs int64 indices, got {}", t.dtype)));
    }
    let n = c.int(1)?;
    if n < 0 {
        return Err(c.err("one_hot without num_classes has a data-dependent shape"));
    }
    let mut shape = t.shape.clone();
    shape.push(Dim::constant(n));
    Ok(vec![TensorType::with_dims(DType::Int64, shape)])
}

/// Every creation, conversion, assertion and reduction op.
pub(super) const OPS: &[OpDecl] = &[
    // Creation.
    op("aten::arange(Scalar end, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, arange, cost_write).fold(Fold::Arange { start: None, step: None }),
    op("aten::arange.start(Scalar start, Scalar end, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, arange_start, cost_write).fold(Fold::Arange { start: Some(0), step: None }),
    op("aten::arange.start_step(Scalar start, Scalar end, Scalar step=1, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, arange_start_step, cost_write).fold(Fold::Arange { start: Some(0), step: Some(2) }),
    op("aten::full(SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, full, cost_write).fold(Fold::Fill { value: 1 }),
    op("aten::zeros(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, fill_default, cost_write),
    op("aten::ones(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, fill_default, cost_write),
    op("aten::empty.memory_format(SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor", Creation, fill_default, cost_write),
    op("aten::zeros_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor", Creation, zeros_like, cost_write),
    op("aten::ones_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor", Creation, zeros_like, cost_write),
    op("aten::empty_like(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor", Creation, zeros_like, cost_write),
    op("aten::full_like(Tensor self, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, MemoryFormat? memory_format=None) -> Tensor", Creation, full_like, cost_write),
    op("aten::new_ones(Tensor self, SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, new_sized, cost_write),
    op("aten::new_zeros(Tensor self, SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, new_sized, cost_write),
    op("aten::new_empty(Tensor self, SymInt[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, new_sized, cost_write),
    op("aten::new_full(Tensor self, SymInt[] size, Scalar fill_value, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, new_full, cost_write),
    op("aten::scalar_tensor(Scalar s, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, scalar_tensor, cost_write).fold(Fold::Fill { value: 0 }),
    op("aten::eye(SymInt n, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor", Creation, eye, cost_write),
    // Conversion.
    op("aten::_to_copy(Tensor self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, bool non_blocking=False, MemoryFormat? memory_format=None) -> Tensor", Compute, to_copy, cost_copy).cast().elementwise().fold(Fold::SameElements).scalar(Scalar::Convert),
    op("aten::to.dtype(Tensor(a) self, ScalarType dtype, bool non_blocking=False, bool copy=False, MemoryFormat? memory_format=None) -> Tensor(a)", Compute, to_dtype, cost_copy).cast().elementwise().fold(Fold::SameElements).scalar(Scalar::Convert),
    op("aten::to.device(Tensor(a) self, Device device, ScalarType dtype, bool non_blocking=False, bool copy=False, MemoryFormat? memory_format=None) -> Tensor(a)", Compute, to_device, cost_copy).cast().elementwise(),
    op("aten::to.dtype_layout(Tensor(a) self, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None, bool non_blocking=False, bool copy=False, MemoryFormat? memory_format=None) -> Tensor(a)", Compute, to_dtype, cost_copy).cast().elementwise().fold(Fold::SameElements).scalar(Scalar::Convert),
    op("aten::type_as(Tensor self, Tensor other) -> Tensor", Compute, type_as, cost_copy).cast().elementwise().scalar(Scalar::Convert),
    // Assertions (no outputs; removed by cleanup).
    op("aten::_assert_tensor_metadata(Tensor a, SymInt[]? size=None, SymInt[]? stride=None, ScalarType? dtype=None, *, Device? device=None, Layout? layout=None) -> ()", Assert, assert_metadata, cost_free),
    op("aten::_assert_async.msg(Tensor self, str assert_msg) -> ()", Assert, assert_async, cost_free),
    op("aten::_assert_scalar(Scalar self, str assert_msg) -> ()", Assert, no_outputs, cost_free),
    // Reductions.
    op("aten::sum(Tensor self, *, ScalarType? dtype=None) -> Tensor", Compute, sum_all, cost_reduce),
    op("aten::sum.dim_IntList(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor", Compute, sum_dim, cost_reduce).per_sample(),
    op("aten::prod.dim_int(Tensor self, int dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor", Compute, prod_dim, cost_reduce).per_sample(),
    op("aten::mean(Tensor self, *, ScalarType? dtype=None) -> Tensor", Compute, mean_all, cost_reduce),
    op("aten::mean.dim(Tensor self, int[1]? dim, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor", Compute, mean_dim, cost_reduce).per_sample(),
    op("aten::amax(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor", Compute, amax, cost_reduce).per_sample(),
    op("aten::amin(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor", Compute, amax, cost_reduce).per_sample(),
    op("aten::max.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)", Compute, max_dim, cost_reduce).per_sample(),
    op("aten::min.dim(Tensor self, int dim, bool keepdim=False) -> (Tensor values, Tensor indices)", Compute, max_dim, cost_reduce).per_sample(),
    op("aten::max(Tensor self) -> Tensor", Compute, max_all, cost_reduce),
    op("aten::min(Tensor self) -> Tensor", Compute, max_all, cost_reduce),
    op("aten::argmax(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", Compute, argmax, cost_reduce).per_sample(),
    op("aten::argmin(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", Compute, argmax, cost_reduce).per_sample(),
    op("aten::var.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor", Compute, var, cost_reduce).per_sample(),
    op("aten::std.correction(Tensor self, int[1]? dim=None, *, Scalar? correction=None, bool keepdim=False) -> Tensor", Compute, var, cost_reduce).per_sample(),
    op("aten::any.dim(Tensor self, int dim, bool keepdim=False) -> Tensor", Compute, any_dim, cost_reduce).per_sample(),
    op("aten::any(Tensor self) -> Tensor", Compute, any_all, cost_reduce),
    op("aten::all.dim(Tensor self, int dim, bool keepdim=False) -> Tensor", Compute, any_dim, cost_reduce).per_sample(),
    op("aten::all(Tensor self) -> Tensor", Compute, any_all, cost_reduce),
    op("aten::logsumexp(Tensor self, int[1] dim, bool keepdim=False) -> Tensor", Compute, logsumexp, cost_reduce).per_sample(),
    op("aten::linalg_vector_norm(Tensor self, Scalar ord=2, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor", Compute, vector_norm, cost_reduce).per_sample(),
    op("aten::histc(Tensor self, int bins=100, Scalar min=0, Scalar max=0) -> Tensor", Compute, histc, cost_reduce),
    op("aten::cumsum(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor", Compute, cumulative, cost_elementwise).per_sample(),
    op("aten::cumprod(Tensor self, int dim, *, ScalarType? dtype=None) -> Tensor", Compute, cumulative, cost_elementwise).per_sample(),
    // Sorting and selection.
    op("aten::topk(Tensor self, SymInt k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor indices)", Compute, topk, cost_reduce).per_sample(),
    op("aten::sort(Tensor self, int dim=-1, bool descending=False) -> (Tensor values, Tensor indices)", Compute, sort, cost_reduce).per_sample(),
    op("aten::argsort(Tensor self, int dim=-1, bool descending=False) -> Tensor", Compute, argsort, cost_reduce).per_sample(),
    op("aten::one_hot(Tensor self, int num_classes=-1) -> Tensor", Compute, one_hot, cost_write).per_sample(),
];
