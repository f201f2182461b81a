//! Views, reshapes, slicing, joining, indexing and identity ops.

use super::shape::*;
use super::{op, Call, InferError, OpClass::*, OpDecl};
use crate::dim::Dim;
use crate::types::{promote, DType, TensorType};

/// PyTorch writes "to the end" as `INT64_MAX` in slices.
const SLICE_TO_END: i64 = i64::MAX;

fn identity(c: &Call) -> Result<Vec<TensorType>, InferError> {
    Ok(vec![c.tensor(0)?.clone()])
}

/// Resolve a target shape with at most one `-1` against the input's element count.
fn resolve_view_shape(c: &Call, input: &TensorType, size: Vec<Dim>) -> Result<Vec<Dim>, InferError> {
    let holes: Vec<usize> = size.iter().enumerate().filter(|(_, d)| d.as_const() == Some(-1)).map(|(i, _)| i).collect();
    if holes.len() > 1 {
        return Err(c.err("only one dimension can be -1"));
    }
    if let Some(bad) = size.iter().find(|d| d.as_const().is_some_and(|v| v < -1)) {
        return Err(c.err(format!("invalid size {bad}")));
    }
    let numel = input.numel();
    let known = product(&size.iter().filter(|d| d.as_const() != Some(-1)).cloned().collect::<Vec<_>>());
    let mut out = size;
    if let Some(&h) = holes.first() {
        if known.as_const() == Some(0) {
            return Err(c.err("cannot infer -1 with a zero-sized dimension"));
        }
        let inferred = numel
            .div_exact(&known)
            .ok_or_else(|| c.err(format!("shape {} is invalid for input of size {numel}", fmt_shape(&out))))?;
        out[h] = inferred;
    } else if let (Some(a), Some(b)) = (numel.as_const(), known.as_const()) {
        if a != b {
            return Err(c.err(format!("shape {} is invalid for input of size {a}", fmt_shape(&out))));
        }
    }
    Ok(out)
}

fn view(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let shape = resolve_view_shape(c, t, c.sym_ints(1)?)?;
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn view_as(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, other) = (c.tensor(0)?, c.tensor(1)?);
    let shape = resolve_view_shape(c, t, other.shape.clone())?;
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn expand_to(c: &Call, t: &TensorType, size: Vec<Dim>) -> Result<Vec<TensorType>, InferError> {
    if size.len() < t.rank() {
        return Err(c.err(format!("cannot expand rank {} to {}", t.rank(), size.len())));
    }
    let lead = size.len() - t.rank();
    let mut out = Vec::with_capacity(size.len());
    for (i, s) in size.into_iter().enumerate() {
        if i < lead {
            if s.as_const() == Some(-1) {
                return Err(c.err("-1 is not allowed in a new leading dimension"));
            }
            out.push(s);
            continue;
        }
        let cur = &t.shape[i - lead];
        out.push(match (s.as_const(), cur.as_const()) {
            (Some(-1), _) => cur.clone(),
            (_, Some(1)) => s,
            (Some(a), Some(b)) if a != b => return Err(c.err(format!("cannot expand dim {i} of size {b} to {a}"))),
            _ => cur.clone(),
        });
    }
    Ok(vec![TensorType::with_dims(t.dtype, out)])
}

fn expand(c: &Call) -> Result<Vec<TensorType>, InferError> {
    expand_to(c, c.tensor(0)?, c.sym_ints(1)?)
}

fn expand_as(c: &Call) -> Result<Vec<TensorType>, InferError> {
    expand_to(c, c.tensor(0)?, c.tensor(1)?.shape.clone())
}

fn permute(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let dims = c.ints(1)?;
    if dims.len() != t.rank() {
        return Err(c.err(format!("permute of rank {} needs {} dims, got {}", t.rank(), t.rank(), dims.len())));
    }
    let mut seen = vec![false; t.rank()];
    let mut shape = Vec::with_capacity(t.rank());
    for d in dims {
        let d = c.dim_index(d, t.rank())?;
        if std::mem::replace(&mut seen[d], true) {
            return Err(c.err(format!("dim {d} repeated in permute")));
        }
        shape.push(t.shape[d].clone());
    }
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn transpose(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let mut shape = t.shape.clone();
    if t.rank() > 0 {
        let (a, b) = (c.dim_index(c.int(1)?, t.rank())?, c.dim_index(c.int(2)?, t.rank())?);
        shape.swap(a, b);
    }
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn t_2d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.rank() > 2 {
        return Err(c.err("t() expects a tensor with <= 2 dims"));
    }
    let mut shape = t.shape.clone();
    shape.reverse();
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn unsqueeze(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank() + 1)?;
    let mut shape = t.shape.clone();
    shape.insert(d, Dim::constant(1));
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn squeeze_dims(c: &Call, t: &TensorType, dims: &[usize]) -> Vec<TensorType> {
    let shape = t
        .shape
        .iter()
        .enumerate()
        .filter(|(i, d)| !(dims.contains(i) && d.as_const() == Some(1)))
        .map(|(_, d)| d.clone())
        .collect();
    let _ = c;
    vec![TensorType::with_dims(t.dtype, shape)]
}

fn squeeze_all(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let all: Vec<usize> = (0..t.rank()).collect();
    Ok(squeeze_dims(c, t, &all))
}

fn squeeze_dim(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.rank() == 0 {
        return Ok(vec![t.clone()]);
    }
    let d = c.dim_index(c.int(1)?, t.rank())?;
    Ok(squeeze_dims(c, t, &[d]))
}

fn squeeze_list(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.rank() == 0 {
        return Ok(vec![t.clone()]);
    }
    let dims = c.ints(1)?.into_iter().map(|d| c.dim_index(d, t.rank())).collect::<Result<Vec<_>, _>>()?;
    Ok(squeeze_dims(c, t, &dims))
}

fn flatten(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.rank() == 0 {
        return Ok(vec![TensorType::with_dims(t.dtype, vec![Dim::constant(1)])]);
    }
    let (s, e) = (c.dim_index(c.int(1)?, t.rank())?, c.dim_index(c.int(2)?, t.rank())?);
    if s > e {
        return Err(c.err("flatten start_dim comes after end_dim"));
    }
    let mut shape: Vec<Dim> = t.shape[..s].to_vec();
    shape.push(product(&t.shape[s..=e]));
    shape.extend_from_slice(&t.shape[e + 1..]);
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn unflatten(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let part = TensorType::with_dims(t.dtype, vec![t.shape[d].clone()]);
    let sizes = resolve_view_shape(c, &part, c.sym_ints(2)?)?;
    let mut shape = t.shape[..d].to_vec();
    shape.extend(sizes);
    shape.extend_from_slice(&t.shape[d + 1..]);
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

/// Length of `slice(start, end, step)` over a dim of size `size`, clamped as PyTorch does.
fn slice_len(c: &Call, size: &Dim, start: Option<Dim>, end: Option<Dim>, step: i64) -> Result<(Dim, Dim), InferError> {
    if step <= 0 {
        return Err(c.err("slice step must be positive"));
    }
    let norm = |v: Option<Dim>, default: Dim| -> Dim {
        match v {
            None => default,
            Some(d) => match (d.as_const(), size.as_const()) {
                (Some(x), _) if x >= SLICE_TO_END / 2 => size.clone(),
                (Some(x), Some(n)) => Dim::constant(if x < 0 { (x + n).max(0) } else { x.min(n) }),
                (Some(x), None) if x < 0 => size.add(&Dim::constant(x)),
                _ => d,
            },
        }
    };
    let start = norm(start, Dim::constant(0));
    let end = norm(end, size.clone());
    let span = end.sub(&start);
    let len = match span.as_const() {
        Some(v) if v <= 0 => Dim::constant(0),
        _ => span.add(&Dim::constant(step - 1)).floor_div(&Dim::constant(step)),
    };
    Ok((start, len))
}

fn slice(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let step = c.sym_int(4)?.as_const().ok_or_else(|| c.err("symbolic slice step"))?;
    let (_, len) = slice_len(c, &t.shape[d], c.opt_sym_int(2)?, c.opt_sym_int(3)?, step)?;
    let mut shape = t.shape.clone();
    shape[d] = len;
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn narrow(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let mut shape = t.shape.clone();
    shape[d] = c.sym_int(3)?;
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn select(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank())?;
    if let (Some(i), Some(n)) = (c.sym_int(2)?.as_const(), t.shape[d].as_const()) {
        if i < -n || i >= n {
            return Err(c.err(format!("index {i} out of range for dim {d} of size {n}")));
        }
    }
    let mut shape = t.shape.clone();
    shape.remove(d);
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn cat(c: &Call) -> Result<Vec<TensorType>, InferError> {
    // Legacy behaviour: 1-D empty tensors are skipped.
    let ts: Vec<&TensorType> =
        c.tensors(0)?.into_iter().filter(|t| !(t.rank() == 1 && t.shape[0].as_const() == Some(0))).collect();
    let all = c.tensors(0)?;
    let Some(first) = ts.first().or(all.first()) else {
        return Err(c.err("cat of an empty list"));
    };
    let dtype = all.iter().map(|t| t.dtype).reduce(promote).unwrap_or(first.dtype);
    if ts.is_empty() {
        return Ok(vec![first.with_dtype(dtype)]);
    }
    let d = c.dim_index(c.int(1)?, first.rank())?;
    let mut shape = first.shape.clone();
    let mut total = Dim::constant(0);
    for t in &ts {
        if t.rank() != first.rank() {
            return Err(c.err(format!("cat of tensors with ranks {} and {}", first.rank(), t.rank())));
        }
        for (i, (a, b)) in first.shape.iter().zip(&t.shape).enumerate() {
            if i != d {
                if let (Some(x), Some(y)) = (a.as_const(), b.as_const()) {
                    if x != y {
                        return Err(c.err(format!("cat sizes differ in dim {i}: {x} vs {y}")));
                    }
                }
            }
        }
        total = total.add(&t.shape[d]);
    }
    shape[d] = total;
    Ok(vec![TensorType::with_dims(dtype, shape)])
}

fn stack(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let ts = c.tensors(0)?;
    let Some(first) = ts.first() else {
        return Err(c.err("stack of an empty list"));
    };
    let d = c.dim_index(c.int(1)?, first.rank() + 1)?;
    if ts.iter().any(|t| t.rank() != first.rank()) {
        return Err(c.err("stack of tensors with different ranks"));
    }
    let dtype = ts.iter().map(|t| t.dtype).reduce(promote).unwrap_or(first.dtype);
    let mut shape = first.shape.clone();
    shape.insert(d, Dim::constant(ts.len() as i64));
    Ok(vec![TensorType::with_dims(dtype, shape)])
}

fn static_dim(c: &Call, t: &TensorType, d: usize) -> Result<i64, InferError> {
    t.shape[d].as_const().ok_or_else(|| c.err(format!("the number of outputs depends on symbolic dim {}", t.shape[d])))
}

fn pieces(c: &Call, t: &TensorType, d: usize, sizes: Vec<Dim>) -> Vec<TensorType> {
    let _ = c;
    sizes
        .into_iter()
        .map(|s| {
            let mut shape = t.shape.clone();
            shape[d] = s;
            TensorType::with_dims(t.dtype, shape)
        })
        .collect()
}

fn split(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(2)?, t.rank())?;
    let n = static_dim(c, t, d)?;
    let k = c.sym_int(1)?.as_const().ok_or_else(|| c.err("symbolic split size"))?;
    if k <= 0 {
        return Err(c.err("split size must be positive"));
    }
    let mut sizes = Vec::new();
    let mut left = n;
    while left > 0 {
        sizes.push(Dim::constant(left.min(k)));
        left -= k;
    }
    if sizes.is_empty() {
        sizes.push(Dim::constant(0));
    }
    Ok(pieces(c, t, d, sizes))
}

fn split_with_sizes(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(2)?, t.rank())?;
    let sizes = c.sym_ints(1)?;
    let total = sizes.iter().fold(Dim::constant(0), |a, s| a.add(s));
    if let (Some(a), Some(b)) = (total.as_const(), t.shape[d].as_const()) {
        if a != b {
            return Err(c.err(format!("split sizes sum to {a}, dim {d} has size {b}")));
        }
    }
    Ok(pieces(c, t, d, sizes))
}

fn chunk(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(2)?, t.rank())?;
    let chunks = c.int(1)?;
    if chunks <= 0 {
        return Err(c.err("chunk count must be positive"));
    }
    let n = static_dim(c, t, d)?;
    let size = ((n + chunks - 1) / chunks).max(1);
    let mut sizes = Vec::new();
    let mut left = n;
    while left > 0 {
        sizes.push(Dim::constant(left.min(size)));
        left -= size;
    }
    Ok(pieces(c, t, d, sizes))
}

fn unbind(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let n = static_dim(c, t, d)?;
    let mut shape = t.shape.clone();
    shape.remove(d);
    Ok((0..n).map(|_| TensorType::with_dims(t.dtype, shape.clone())).collect())
}

/// Advanced indexing: `self[i0, i1, ...]` with some indices `None`.
fn index(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let idx = c.opt_tensors(1)?;
    if idx.len() > t.rank() {
        return Err(c.err(format!("too many indices ({}) for rank {}", idx.len(), t.rank())));
    }
    let mut bshape: Vec<Dim> = Vec::new();
    let mut positions = Vec::new();
    for (i, ix) in idx.iter().enumerate() {
        if let Some(ix) = ix {
            if ix.dtype == DType::Bool || ix.dtype == DType::Uint8 {
                return Err(c.err("boolean mask indexing has a data-dependent shape"));
            }
            if !ix.dtype.is_integral() {
                return Err(c.err(format!("index tensor of dtype {}", ix.dtype)));
            }
            bshape = broadcast(c, &bshape, &ix.shape)?;
            positions.push(i);
        }
    }
    if positions.is_empty() {
        return Ok(vec![t.clone()]);
    }
    let contiguous = positions.windows(2).all(|w| w[1] == w[0] + 1);
    let rest = |range: std::ops::Range<usize>| -> Vec<Dim> {
        range.filter(|i| !positions.contains(i)).map(|i| t.shape[i].clone()).collect()
    };
    let shape = if contiguous {
        let (first, last) = (positions[0], *positions.last().unwrap_or(&positions[0]));
        let mut s = rest(0..first);
        s.extend(bshape);
        s.extend(rest(last + 1..t.rank()));
        s
    } else {
        let mut s = bshape;
        s.extend(rest(0..t.rank()));
        s
    };
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn index_select(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix) = (c.tensor(0)?, c.tensor(2)?);
    if ix.rank() > 1 {
        return Err(c.err("index_select index must be 0-D or 1-D"));
    }
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let mut shape = t.shape.clone();
    if t.rank() > 0 {
        shape[d] = ix.numel();
    }
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn gather(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix) = (c.tensor(0)?, c.tensor(2)?);
    c.dim_index(c.int(1)?, t.rank())?;
    if ix.rank() != t.rank() {
        return Err(c.err("gather index must have the input's rank"));
    }
    Ok(vec![TensorType::with_dims(t.dtype, ix.shape.clone())])
}

/// Ops that write into a copy of `self` and return it (`index_copy`, `slice_scatter`, ...).
fn same_as_self(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    for other in c.all_tensor_inputs().iter().skip(1) {
        if !other.dtype.is_integral() && other.dtype != t.dtype && other.dtype != DType::Bool {
            // Sources must match `self`'s dtype; indices are integral.
            return Err(c.err(format!("source dtype {} differs from self dtype {}", other.dtype, t.dtype)));
        }
    }
    Ok(vec![t.clone()])
}

fn repeat(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let reps = c.sym_ints(1)?;
    if reps.len() < t.rank() {
        return Err(c.err("repeat needs at least as many repeats as dims"));
    }
    let lead = reps.len() - t.rank();
    let shape =
        reps.iter().enumerate().map(|(i, r)| if i < lead { r.clone() } else { r.mul(&t.shape[i - lead]) }).collect();
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn repeat_interleave(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let r = c.sym_int(1)?;
    match c.opt_int(2)? {
        None => Ok(vec![TensorType::with_dims(t.dtype, vec![t.numel().mul(&r)])]),
        Some(d) => {
            let d = c.dim_index(d, t.rank())?;
            let mut shape = t.shape.clone();
            shape[d] = shape[d].mul(&r);
            Ok(vec![TensorType::with_dims(t.dtype, shape)])
        }
    }
}

fn constant_pad(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let pad = c.sym_ints(1)?;
    if pad.len() % 2 != 0 || pad.len() / 2 > t.rank() {
        return Err(c.err(format!("pad of length {} for rank {}", pad.len(), t.rank())));
    }
    let mut shape = t.shape.clone();
    for (k, pair) in pad.chunks(2).enumerate() {
        let d = t.rank() - 1 - k;
        shape[d] = shape[d].add(&pair[0]).add(&pair[1]);
    }
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn diff(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let n = c.int(1)?;
    let d = c.dim_index(c.int(2)?, t.rank())?;
    let mut len = t.shape[d].clone();
    for i in [3, 4] {
        if let Some(p) = c.opt_tensor(i)? {
            len = len.add(p.shape.get(d).ok_or_else(|| c.err("prepend/append rank mismatch"))?);
        }
    }
    let mut shape = t.shape.clone();
    shape[d] = len.sub(&Dim::constant(n));
    if shape[d].as_const().is_some_and(|v| v < 0) {
        shape[d] = Dim::constant(0);
    }
    let dtype = if t.dtype == DType::Bool { DType::Bool } else { t.dtype };
    Ok(vec![TensorType::with_dims(dtype, shape)])
}

/// Every view, reshape, indexing and identity op.
pub(super) const OPS: &[OpDecl] = &[
    // Identity at inference.
    op("aten::alias(Tensor(a) self) -> Tensor(a)", Identity, identity, cost_free),
    op("aten::detach(Tensor(a) self) -> Tensor(a)", Identity, identity, cost_free),
    op("aten::detach_(Tensor(a!) self) -> Tensor(a!)", Identity, identity, cost_free),
    op("aten::lift_fresh_copy(Tensor self) -> Tensor", Identity, identity, cost_free),
    op("aten::clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor", Identity, identity, cost_copy),
    op("aten::contiguous(Tensor(a) self, *, MemoryFormat memory_format=contiguous_format) -> Tensor(a)", Identity, identity, cost_copy),
    op("aten::dropout(Tensor input, float p, bool train) -> Tensor", Identity, identity, cost_free),
    op("aten::feature_dropout(Tensor input, float p, bool train) -> Tensor", Identity, identity, cost_free),
    // Views and reshapes.
    op("aten::view(Tensor(a) self, SymInt[] size) -> Tensor(a)", View, view, cost_free),
    op("aten::reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)", View, view, cost_free),
    op("aten::_unsafe_view(Tensor self, SymInt[] size) -> Tensor", View, view, cost_free),
    op("aten::view_as(Tensor(a) self, Tensor other) -> Tensor(a)", View, view_as, cost_free),
    op("aten::reshape_as(Tensor(a) self, Tensor other) -> Tensor(a)", View, view_as, cost_free),
    op("aten::expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)", View, expand, cost_free),
    op("aten::expand_as(Tensor(a) self, Tensor other) -> Tensor(a)", View, expand_as, cost_free),
    op("aten::permute(Tensor(a) self, int[] dims) -> Tensor(a)", View, permute, cost_free),
    op("aten::transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)", View, transpose, cost_free),
    op("aten::t(Tensor(a) self) -> Tensor(a)", View, t_2d, cost_free),
    op("aten::unsqueeze(Tensor(a) self, int dim) -> Tensor(a)", View, unsqueeze, cost_free),
    op("aten::squeeze(Tensor(a) self) -> Tensor(a)", View, squeeze_all, cost_free),
    op("aten::squeeze.dim(Tensor(a) self, int dim) -> Tensor(a)", View, squeeze_dim, cost_free),
    op("aten::squeeze.dims(Tensor(a) self, int[] dim) -> Tensor(a)", View, squeeze_list, cost_free),
    op("aten::flatten.using_ints(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)", View, flatten, cost_free),
    op("aten::unflatten.int(Tensor(a) self, int dim, SymInt[] sizes) -> Tensor(a)", View, unflatten, cost_free),
    op("aten::slice.Tensor(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor(a)", View, slice, cost_free),
    op("aten::narrow(Tensor(a) self, int dim, SymInt start, SymInt length) -> Tensor(a)", View, narrow, cost_free),
    op("aten::select.int(Tensor(a) self, int dim, SymInt index) -> Tensor(a)", View, select, cost_free),
    op("aten::split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]", View, split, cost_free),
    op("aten::split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0) -> Tensor(a)[]", View, split_with_sizes, cost_free),
    op("aten::chunk(Tensor(a -> *) self, int chunks, int dim=0) -> Tensor(a)[]", View, chunk, cost_free),
    op("aten::unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]", View, unbind, cost_free),
    // Joining and copying.
    op("aten::cat(Tensor[] tensors, int dim=0) -> Tensor", Compute, cat, cost_copy),
    op("aten::stack(Tensor[] tensors, int dim=0) -> Tensor", Compute, stack, cost_copy),
    op("aten::repeat(Tensor self, SymInt[] repeats) -> Tensor", Compute, repeat, cost_copy),
    op("aten::repeat_interleave.self_int(Tensor self, SymInt repeats, int? dim=None, *, SymInt? output_size=None) -> Tensor", Compute, repeat_interleave, cost_copy),
    op("aten::flip(Tensor self, int[] dims) -> Tensor", Compute, identity, cost_copy),
    op("aten::roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor", Compute, identity, cost_copy),
    op("aten::constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor", Compute, constant_pad, cost_copy),
    op("aten::pad(Tensor self, SymInt[] pad, str mode=\"constant\", float? value=None) -> Tensor", Compute, constant_pad, cost_copy),
    op("aten::tril(Tensor self, int diagonal=0) -> Tensor", Compute, identity, cost_copy),
    op("aten::triu(Tensor self, int diagonal=0) -> Tensor", Compute, identity, cost_copy),
    op("aten::diff(Tensor self, int n=1, int dim=-1, Tensor? prepend=None, Tensor? append=None) -> Tensor", Compute, diff, cost_elementwise),
    // Indexing and scattering.
    op("aten::index.Tensor(Tensor self, Tensor?[] indices) -> Tensor", Compute, index, cost_copy),
    op("aten::index_select(Tensor self, int dim, Tensor index) -> Tensor", Compute, index_select, cost_copy),
    op("aten::gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor", Compute, gather, cost_copy),
    op("aten::scatter.src(Tensor self, int dim, Tensor index, Tensor src) -> Tensor", Compute, same_as_self, cost_copy),
    op("aten::scatter.value(Tensor self, int dim, Tensor index, Scalar value) -> Tensor", Compute, same_as_self, cost_copy),
    op("aten::index_copy(Tensor self, int dim, Tensor index, Tensor source) -> Tensor", Compute, same_as_self, cost_copy),
    op("aten::index_copy_(Tensor(a!) self, int dim, Tensor index, Tensor source) -> Tensor(a!)", Compute, same_as_self, cost_copy),
    op("aten::index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor", Compute, same_as_self, cost_copy),
    op("aten::index_put_(Tensor(a!) self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor(a!)", Compute, same_as_self, cost_copy),
    op("aten::slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor", Compute, same_as_self, cost_copy),
    op("aten::select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor", Compute, same_as_self, cost_copy),
    op("aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)", Compute, identity, cost_copy),
];
