//! Views, reshapes, slicing, joining, indexing and identity ops.

use super::facts::EvalIdentity::Always;
use super::facts::Layout::{Broadcast, Reorder, Reshape, Select};
use super::facts::{EvalIdentity, Fold};
use super::shape::*;
use super::{op, Call, InferError, OpClass::*, OpDecl};
use crate::dim::Dim;
use crate::graph::Arg;
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
    let known = checked_product(c, &size.iter().filter(|d| d.as_const() != Some(-1)).cloned().collect::<Vec<_>>())?;
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
    let d = c.size_dim(c.int(1)?, t.rank())?;
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
                (Some(x), Some(n)) => Dim::constant(if x < 0 { x.saturating_add(n).max(0) } else { x.min(n) }),
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

/// The shape of `t[dim, start:end:step]` with the slice arguments starting at argument `i`.
fn slice_shape(c: &Call, t: &TensorType, i: usize) -> Result<Vec<Dim>, InferError> {
    let d = c.size_dim(c.int(i)?, t.rank())?;
    let step = c.sym_int(i + 3)?.as_const().ok_or_else(|| c.err("symbolic slice step"))?;
    let (_, len) = slice_len(c, &t.shape[d], c.opt_sym_int(i + 1)?, c.opt_sym_int(i + 2)?, step)?;
    let mut shape = t.shape.clone();
    shape[d] = len;
    Ok(shape)
}

fn slice(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![TensorType::with_dims(t.dtype, slice_shape(c, t, 1)?)])
}

/// `narrow(self, dim, start, length)`: `start` may be negative; the range must lie inside the dim.
fn narrow(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.size_dim(c.int(1)?, t.rank())?;
    let (start, len) = (c.sym_int(2)?, c.sym_int(3)?);
    if len.as_const().is_some_and(|l| l < 0) {
        return Err(c.err(format!("narrow length {len} is negative")));
    }
    if let (Some(s), Some(l), Some(n)) = (start.as_const(), len.as_const(), t.shape[d].as_const()) {
        let s0 = if s < 0 { s + n } else { s };
        if s0 < 0 || s0 > n || s0 + l > n {
            return Err(c.err(format!("narrow start {s} + length {l} exceeds dim {d} of size {n}")));
        }
    }
    let mut shape = t.shape.clone();
    shape[d] = len;
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

/// The shape of `t.select(dim, index)` with `dim` and `index` at arguments `i` and `i + 1`.
fn select_shape(c: &Call, t: &TensorType, i: usize) -> Result<Vec<Dim>, InferError> {
    let d = c.size_dim(c.int(i)?, t.rank())?;
    if let (Some(ix), Some(n)) = (c.sym_int(i + 1)?.as_const(), t.shape[d].as_const()) {
        if ix < -n || ix >= n {
            return Err(c.err(format!("index {ix} out of range for dim {d} of size {n}")));
        }
    }
    let mut shape = t.shape.clone();
    shape.remove(d);
    Ok(shape)
}

fn select(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![TensorType::with_dims(t.dtype, select_shape(c, t, 1)?)])
}

/// Error unless every static dim of `a` and `b` agrees (ranks must match), skipping dim `skip`.
fn same_sizes(c: &Call, what: &str, a: &[Dim], b: &[Dim], skip: Option<usize>) -> Result<(), InferError> {
    let differ = a.len() != b.len()
        || a.iter()
            .zip(b)
            .enumerate()
            .any(|(i, (x, y))| Some(i) != skip && matches!((x.as_const(), y.as_const()), (Some(p), Some(q)) if p != q));
    if differ {
        return Err(c.err(format!("{what}: shapes {} and {} differ", fmt_shape(a), fmt_shape(b))));
    }
    Ok(())
}

fn cat(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let all = c.tensors(0)?;
    if all.iter().any(|t| t.rank() == 0) {
        return Err(c.err("a 0-dim tensor cannot be concatenated"));
    }
    // Legacy behaviour: 1-D empty tensors are skipped (but still take part in type promotion).
    let ts: Vec<&TensorType> =
        all.iter().copied().filter(|t| !(t.rank() == 1 && t.shape[0].as_const() == Some(0))).collect();
    let Some(first) = ts.first().or(all.first()) else {
        return Err(c.err("cat of an empty list"));
    };
    let dtype = all.iter().map(|t| t.dtype).reduce(promote).unwrap_or(first.dtype);
    if ts.is_empty() {
        return Ok(vec![first.with_dtype(dtype)]);
    }
    let d = c.size_dim(c.int(1)?, first.rank())?;
    let mut shape = first.shape.clone();
    let mut total = Dim::constant(0);
    for t in &ts {
        same_sizes(c, "cat", &first.shape, &t.shape, Some(d))?;
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
    for t in &ts {
        same_sizes(c, "stack", &first.shape, &t.shape, None)?;
    }
    let dtype = ts.iter().map(|t| t.dtype).reduce(promote).unwrap_or(first.dtype);
    let mut shape = first.shape.clone();
    shape.insert(d, Dim::constant(ts.len() as i64));
    Ok(vec![TensorType::with_dims(dtype, shape)])
}

/// Most outputs one node may have (`split`, `chunk`, `unbind`); more is a corrupt graph.
const MAX_OUTPUTS: i64 = 1 << 16;

fn static_dim(c: &Call, t: &TensorType, d: usize) -> Result<i64, InferError> {
    t.shape[d].as_const().ok_or_else(|| c.err(format!("the number of outputs depends on symbolic dim {}", t.shape[d])))
}

fn check_output_count(c: &Call, n: i64) -> Result<(), InferError> {
    if n > MAX_OUTPUTS {
        return Err(c.err(format!("{n} outputs is more than the {MAX_OUTPUTS} supported")));
    }
    Ok(())
}

fn pieces(t: &TensorType, d: usize, sizes: Vec<Dim>) -> Vec<TensorType> {
    sizes
        .into_iter()
        .map(|s| {
            let mut shape = t.shape.clone();
            shape[d] = s;
            TensorType::with_dims(t.dtype, shape)
        })
        .collect()
}

/// `n` split into pieces of `k` (the last one shorter); an empty dim gives one empty piece.
fn split_sizes(n: i64, k: i64) -> Vec<Dim> {
    let mut sizes = Vec::new();
    let mut left = n;
    while left > 0 {
        sizes.push(Dim::constant(left.min(k)));
        left -= k;
    }
    if sizes.is_empty() {
        sizes.push(Dim::constant(0));
    }
    sizes
}

fn split(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.size_dim(c.int(2)?, t.rank())?;
    let n = static_dim(c, t, d)?;
    let k = c.sym_int(1)?.as_const().ok_or_else(|| c.err("symbolic split size"))?;
    if k < 0 || (k == 0 && n > 0) {
        return Err(c.err(format!("split size {k} for a dim of size {n}")));
    }
    check_output_count(c, if k == 0 { 1 } else { n / k })?;
    Ok(pieces(t, d, split_sizes(n, k)))
}

fn split_with_sizes(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.size_dim(c.int(2)?, t.rank())?;
    let sizes = c.sym_ints(1)?;
    if let Some(bad) = sizes.iter().find(|s| s.as_const().is_some_and(|v| v < 0)) {
        return Err(c.err(format!("negative split size {bad}")));
    }
    let total = checked_sum(c, &sizes)?;
    if let (Some(a), Some(b)) = (total.as_const(), t.shape[d].as_const()) {
        if a != b {
            return Err(c.err(format!("split sizes sum to {a}, dim {d} has size {b}")));
        }
    }
    Ok(pieces(t, d, sizes))
}

/// `chunk(self, chunks, dim)`: pieces of `ceil(n / chunks)`, so there may be fewer than `chunks`;
/// an empty dim gives `chunks` empty pieces.
fn chunk(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.size_dim(c.int(2)?, t.rank())?;
    let chunks = c.int(1)?;
    if chunks <= 0 {
        return Err(c.err("chunk count must be positive"));
    }
    let n = static_dim(c, t, d)?;
    check_output_count(c, if n == 0 { chunks } else { chunks.min(n) })?;
    if n == 0 {
        return Ok(pieces(t, d, vec![Dim::constant(0); chunks as usize]));
    }
    Ok(pieces(t, d, split_sizes(n, (n - 1) / chunks + 1)))
}

fn unbind(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.size_dim(c.int(1)?, t.rank())?;
    let n = static_dim(c, t, d)?;
    check_output_count(c, n)?;
    let mut shape = t.shape.clone();
    shape.remove(d);
    Ok((0..n).map(|_| TensorType::with_dims(t.dtype, shape.clone())).collect())
}

/// The shape of `t[i0, i1, ...]` (advanced indexing, some indices `None`). Boolean masks give a
/// data-dependent shape, which is not modelled: `Ok(None)`.
fn index_shape(c: &Call, t: &TensorType, idx: &[Option<&TensorType>]) -> Result<Option<Vec<Dim>>, InferError> {
    if idx.len() > t.rank() {
        return Err(c.err(format!("too many indices ({}) for rank {}", idx.len(), t.rank())));
    }
    let mut bshape: Vec<Dim> = Vec::new();
    let mut positions = Vec::new();
    for (i, ix) in idx.iter().enumerate() {
        let Some(ix) = ix else { continue };
        if ix.dtype == DType::Bool || ix.dtype == DType::Uint8 {
            return Ok(None);
        }
        if !ix.dtype.is_integral() {
            return Err(c.err(format!("index tensor of dtype {}", ix.dtype)));
        }
        bshape = broadcast(c, &bshape, &ix.shape)?;
        positions.push(i);
    }
    let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
        return Err(c.err("indexing needs at least one index tensor"));
    };
    let rest = |range: std::ops::Range<usize>| -> Vec<Dim> {
        range.filter(|i| !positions.contains(i)).map(|i| t.shape[i].clone()).collect()
    };
    // Adjacent indices replace their dims in place; separated ones move the result to the front.
    let shape = if positions.windows(2).all(|w| w[1] == w[0] + 1) {
        let mut s = rest(0..first);
        s.extend(bshape);
        s.extend(rest(last + 1..t.rank()));
        s
    } else {
        let mut s = bshape;
        s.extend(rest(0..t.rank()));
        s
    };
    Ok(Some(shape))
}

fn index(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    match index_shape(c, t, &c.opt_tensors(1)?)? {
        Some(shape) => Ok(vec![TensorType::with_dims(t.dtype, shape)]),
        None => Err(c.err("boolean mask indexing has a data-dependent shape")),
    }
}

fn need_index_dtype(c: &Call, ix: &TensorType, long_only: bool) -> Result<(), InferError> {
    if ix.dtype == DType::Int64 || (!long_only && ix.dtype == DType::Int32) {
        return Ok(());
    }
    Err(c.err(format!("index tensor of dtype {}", ix.dtype)))
}

fn index_select(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix) = (c.tensor(0)?, c.tensor(2)?);
    need_index_dtype(c, ix, false)?;
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

/// `gather`/`scatter` index: `self`'s rank, no larger than `self` (and `src`) off `dim`.
fn check_scatter_index(
    c: &Call,
    t: &TensorType,
    d: usize,
    ix: &TensorType,
    src: Option<&TensorType>,
) -> Result<(), InferError> {
    if ix.rank() != t.rank() || src.is_some_and(|s| s.rank() != t.rank()) {
        return Err(c.err("the index must have the same rank as self (and src)"));
    }
    for (i, n) in ix.shape.iter().enumerate() {
        let bound = |s: &TensorType| s.shape[i].as_const();
        let too_big = |limit: Option<i64>| matches!((n.as_const(), limit), (Some(a), Some(b)) if a > b);
        if (i != d && too_big(bound(t))) || src.is_some_and(|s| too_big(bound(s))) {
            return Err(c.err(format!(
                "index {} is larger than self {} off dim {d}",
                fmt_shape(&ix.shape),
                fmt_shape(&t.shape)
            )));
        }
    }
    Ok(())
}

fn gather(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix) = (c.tensor(0)?, c.tensor(2)?);
    let d = c.dim_index(c.int(1)?, t.rank())?;
    need_index_dtype(c, ix, false)?;
    check_scatter_index(c, t, d, ix, None)?;
    Ok(vec![TensorType::with_dims(t.dtype, ix.shape.clone())])
}

/// `scatter.src(self, dim, index, src)` / `scatter.value(self, dim, index, value)`: `self`'s type.
fn scatter(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix) = (c.tensor(0)?, c.tensor(2)?);
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let src = match c.args.get(3) {
        Some(Arg::Tensor(_)) => Some(c.tensor(3)?),
        _ => None,
    };
    if let Some(s) = src.filter(|s| s.dtype != t.dtype) {
        return Err(c.err(format!("src dtype {} differs from self dtype {}", s.dtype, t.dtype)));
    }
    need_index_dtype(c, ix, true)?;
    check_scatter_index(c, t, d, ix, src)?;
    Ok(vec![t.clone()])
}

/// `index_copy(self, dim, index, source)`: an int64 index with one entry per `source` slice.
fn index_copy(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix, src) = (c.tensor(0)?, c.tensor(2)?, c.tensor(3)?);
    let d = c.dim_index(c.int(1)?, t.rank())?;
    need_index_dtype(c, ix, true)?;
    if ix.rank() > 1 {
        return Err(c.err("index_copy index must be 0-D or 1-D"));
    }
    if src.dtype != t.dtype {
        return Err(c.err(format!("source dtype {} differs from self dtype {}", src.dtype, t.dtype)));
    }
    if src.rank() > 0 {
        same_sizes(c, "index_copy", &t.shape, &src.shape, Some(d))?;
        if let (Some(a), Some(b)) = (ix.numel().as_const(), src.shape[d].as_const()) {
            if a != b {
                return Err(c.err(format!("{a} indices for {b} source slices")));
            }
        }
    }
    Ok(vec![t.clone()])
}

/// `index_add(self, dim, index, source, *, alpha)`: an int32/int64 index of at most one dim and a
/// `source` of self's dtype with one slice per index along `dim` (a 0-dim source is one slice)
/// and self's sizes elsewhere (all of them when either is 0-dim).
fn index_add(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix, src) = (c.tensor(0)?, c.tensor(2)?, c.tensor(3)?);
    let d = c.dim_index(c.int(1)?, t.rank())?;
    if ix.rank() > 1 {
        return Err(c.err(format!("index_add index must be 0-D or 1-D, got rank {}", ix.rank())));
    }
    if !matches!(ix.dtype, DType::Int32 | DType::Int64) {
        return Err(c.err(format!("index_add index must be int32 or int64, got {}", ix.dtype)));
    }
    if src.dtype != t.dtype {
        return Err(c.err(format!("source dtype {} differs from self dtype {}", src.dtype, t.dtype)));
    }
    let slices = match src.rank() {
        0 => Dim::constant(1),
        _ => src.shape.get(d).cloned().ok_or_else(|| c.err(format!("dim {d} out of range for the source")))?,
    };
    if let (Some(a), Some(b)) = (ix.numel().as_const(), slices.as_const()) {
        if a != b {
            return Err(c.err(format!("{a} indices for {b} source slices")));
        }
    }
    let skip = (t.rank() > 0 && src.rank() > 0).then_some(d);
    same_sizes(c, "index_add", &t.shape, &src.shape, skip)?;
    Ok(vec![t.clone()])
}

/// `masked_scatter(self, mask, source)`: self and the bool mask broadcast together; `source` (of
/// self's dtype) gives the masked elements in order (whether it has enough depends on the mask's
/// data, which the kernel checks).
fn masked_scatter(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, mask, src) = (c.tensor(0)?, c.tensor(1)?, c.tensor(2)?);
    if mask.dtype != DType::Bool {
        return Err(c.err(format!("masked_scatter only supports boolean masks, got {}", mask.dtype)));
    }
    if src.dtype != t.dtype {
        return Err(c.err(format!("source dtype {} differs from self dtype {}", src.dtype, t.dtype)));
    }
    Ok(vec![TensorType::with_dims(t.dtype, broadcast(c, &mask.shape, &t.shape)?)])
}

/// `as_strided(self, size, stride, storage_offset)` over self's elements in row-major order (an
/// SRG value has no strides of its own: the exported tensor is contiguous). Sizes, strides and
/// the offset are non-negative, and the furthest element reached lies inside self.
fn as_strided(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let (size, stride) = (c.sym_ints(1)?, c.sym_ints(2)?);
    if size.len() != stride.len() {
        return Err(c.err(format!("{} sizes for {} strides", size.len(), stride.len())));
    }
    let offset = c.opt_sym_int(3)?.unwrap_or(Dim::constant(0));
    negative_count(c, "size", &size)?;
    negative_count(c, "stride", &stride)?;
    negative_count(c, "storage offset", std::slice::from_ref(&offset))?;
    let consts = |ds: &[Dim]| ds.iter().map(Dim::as_const).collect::<Option<Vec<i64>>>();
    if let (Some(size), Some(stride), Some(offset), Some(numel)) =
        (consts(&size), consts(&stride), offset.as_const(), t.numel().as_const())
    {
        if !size.contains(&0) {
            // offset + Σ (size - 1)·stride is the last element reached; checked, as the values
            // come from a file.
            let last = size
                .iter()
                .zip(&stride)
                .try_fold(offset, |acc, (n, s)| (n - 1).checked_mul(*s).and_then(|x| acc.checked_add(x)));
            if last.is_none_or(|l| l >= numel) {
                return Err(c.err(format!(
                    "sizes {size:?}, strides {stride:?} and offset {offset} reach past the {numel} elements of the input"
                )));
            }
        }
    }
    Ok(vec![TensorType::with_dims(t.dtype, size)])
}

/// `unfold(self, dimension, size, step)` (`Tensor.unfold`): the windows of `size` elements every
/// `step` along `dimension`, `(n - size) / step + 1` of them, in place of that dim, with the
/// window as a new last dim; a 0-dim self is one element and gives `[size]`. `size` is at most
/// `n` (checked when `n` is static; a symbolic `n` keeps the floor division).
fn unfold(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let (size, step) = (c.int(2)?, c.int(3)?);
    if size < 0 {
        return Err(c.err(format!("size is {size} but must be >= 0")));
    }
    if step <= 0 {
        return Err(c.err(format!("step is {step} but must be > 0")));
    }
    let n = t.shape.get(d).cloned().unwrap_or(Dim::constant(1));
    if let Some(n) = n.as_const() {
        if size > n {
            return Err(c.err(format!("maximum size for tensor at dimension {d} is {n} but size is {size}")));
        }
    }
    if t.rank() == 0 {
        return Ok(vec![TensorType::new(t.dtype, &[size])]);
    }
    let windows = n.sub(&Dim::constant(size)).floor_div(&Dim::constant(step)).add(&Dim::constant(1));
    let mut shape = t.shape.clone();
    shape[d] = windows;
    shape.push(Dim::constant(size));
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

/// `scatter_reduce.two(self, dim, index, src, reduce, *, include_self)`: self's type. `reduce` is
/// one of sum, prod, mean, amax, amin; `src` has self's dtype. An empty index is a no-op that is
/// not checked further; otherwise it is int32/int64 of self's and src's rank (a 0-dim tensor
/// counting as 1-D of one element), no larger than src anywhere nor than self off `dim`. The
/// CPU kernels have no mean for bool or float8 (its division runs even when nothing is
/// scattered), no amax/amin for complex and no scatter at all for float8.
fn scatter_reduce(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, ix, src) = (c.tensor(0)?, c.tensor(2)?, c.tensor(3)?);
    let d = c.dim_index(c.int(1)?, t.rank())?;
    let reduce = c.str(4)?;
    if !matches!(reduce, "sum" | "prod" | "mean" | "amax" | "amin") {
        return Err(c.err(format!("reduce must be one of sum, prod, mean, amax or amin, got {reduce:?}")));
    }
    if src.dtype != t.dtype {
        return Err(c.err(format!("src dtype {} differs from self dtype {}", src.dtype, t.dtype)));
    }
    let float8 = matches!(t.dtype, DType::Float8E4m3fn | DType::Float8E5m2);
    let unsupported = || c.err(format!("scatter_reduce {reduce} of {} is not implemented", t.dtype));
    // The mean's division runs even when nothing is scattered.
    if reduce == "mean" && (float8 || t.dtype == DType::Bool) {
        return Err(unsupported());
    }
    if ix.numel().as_const() == Some(0) {
        return Ok(vec![t.clone()]);
    }
    if float8 || (matches!(reduce, "amax" | "amin") && t.dtype.is_complex()) {
        return Err(unsupported());
    }
    need_index_dtype(c, ix, false)?;
    let rank = |x: &TensorType| x.rank().max(1);
    if rank(ix) != rank(t) || rank(src) != rank(ix) {
        return Err(c.err(format!(
            "index {} must have the rank of self {} and src {}",
            fmt_shape(&ix.shape),
            fmt_shape(&t.shape),
            fmt_shape(&src.shape)
        )));
    }
    let size = |x: &TensorType, i: usize| x.shape.get(i).map_or(Some(1), Dim::as_const);
    for i in 0..rank(t) {
        let Some(n) = size(ix, i) else { continue };
        let over = |limit: Option<i64>| limit.is_some_and(|l| n > l);
        if (i != d && over(size(t, i))) || over(size(src, i)) {
            return Err(c.err(format!(
                "index {} must be no larger than self {} apart from dim {d} and no larger than src {}",
                fmt_shape(&ix.shape),
                fmt_shape(&t.shape),
                fmt_shape(&src.shape)
            )));
        }
    }
    Ok(vec![t.clone()])
}

/// `index_put(self, indices, values, accumulate)`: `values` (of `self`'s dtype) must broadcast to
/// the indexed shape; with a boolean mask that shape depends on the data and is not checked.
fn index_put(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, v) = (c.tensor(0)?, c.tensor(2)?);
    if v.dtype != t.dtype {
        return Err(c.err(format!("values dtype {} differs from self dtype {}", v.dtype, t.dtype)));
    }
    if let Some(target) = index_shape(c, t, &c.opt_tensors(1)?)? {
        if broadcast(c, &v.shape, &target)? != target {
            return Err(c.err(format!("values {} do not broadcast to {}", fmt_shape(&v.shape), fmt_shape(&target))));
        }
    }
    Ok(vec![t.clone()])
}

/// `slice_scatter(self, src, dim, start, end, step)`: `src` has the slice's shape (any dtype).
fn slice_scatter(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, src) = (c.tensor(0)?, c.tensor(1)?);
    same_sizes(c, "slice_scatter", &slice_shape(c, t, 2)?, &src.shape, None)?;
    Ok(vec![t.clone()])
}

/// `select_scatter(self, src, dim, index)`: `src` has the selected slice's shape (any dtype).
fn select_scatter(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, src) = (c.tensor(0)?, c.tensor(1)?);
    same_sizes(c, "select_scatter", &select_shape(c, t, 2)?, &src.shape, None)?;
    Ok(vec![t.clone()])
}

/// `copy_(self, src)`: `src` broadcasts to `self`, whose type the result keeps.
fn copy_(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (t, src) = (c.tensor(0)?, c.tensor(1)?);
    if broadcast(c, &t.shape, &src.shape)? != t.shape {
        return Err(c.err(format!("src {} does not broadcast to self {}", fmt_shape(&src.shape), fmt_shape(&t.shape))));
    }
    Ok(vec![t.clone()])
}

fn negative_count(c: &Call, what: &str, ds: &[Dim]) -> Result<(), InferError> {
    match ds.iter().find(|d| d.as_const().is_some_and(|v| v < 0)) {
        Some(bad) => Err(c.err(format!("negative {what} {bad}"))),
        None => Ok(()),
    }
}

fn repeat(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let reps = c.sym_ints(1)?;
    negative_count(c, "repeat count", &reps)?;
    if reps.len() < t.rank() {
        return Err(c.err("repeat needs at least as many repeats as dims"));
    }
    let lead = reps.len() - t.rank();
    let shape = reps
        .iter()
        .enumerate()
        .map(
            |(i, r)| if i < lead { Ok(r.clone()) } else { checked_product(c, &[r.clone(), t.shape[i - lead].clone()]) },
        )
        .collect::<Result<_, _>>()?;
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

fn repeat_interleave(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let r = c.sym_int(1)?;
    negative_count(c, "repeat count", std::slice::from_ref(&r))?;
    match c.opt_int(2)? {
        None => Ok(vec![TensorType::with_dims(t.dtype, vec![t.numel().mul(&r)])]),
        Some(d) => {
            let d = c.size_dim(d, t.rank())?;
            let mut shape = t.shape.clone();
            shape[d] = shape[d].mul(&r);
            Ok(vec![TensorType::with_dims(t.dtype, shape)])
        }
    }
}

/// Distinct, in-range dims (`flip`).
fn distinct_dims(c: &Call, dims: &[i64], rank: usize) -> Result<(), InferError> {
    let mut seen = Vec::new();
    for &d in dims {
        let d = c.dim_index(d, rank)?;
        if seen.contains(&d) {
            return Err(c.err(format!("dim {d} appears more than once")));
        }
        seen.push(d);
    }
    Ok(())
}

fn flip(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    distinct_dims(c, &c.ints(1)?, t.rank())?;
    Ok(vec![t.clone()])
}

/// `roll(self, shifts, dims)`: one shift per dim, or a single shift of the flattened tensor.
fn roll(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let (shifts, dims) = (c.sym_ints(1)?, c.ints(2)?);
    if shifts.len() != dims.len().max(1) {
        return Err(c.err(format!("{} shifts for {} dims", shifts.len(), dims.len())));
    }
    for d in dims {
        c.dim_index(d, t.rank())?;
    }
    Ok(vec![t.clone()])
}

/// Pad the trailing dims by `(before, after)` pairs, last dim first; sizes must stay non-negative.
fn padded_shape(c: &Call, t: &TensorType, pad: &[Dim]) -> Result<Vec<Dim>, InferError> {
    if pad.len() % 2 != 0 || pad.len() / 2 > t.rank() {
        return Err(c.err(format!("pad of length {} for rank {}", pad.len(), t.rank())));
    }
    let mut shape = t.shape.clone();
    for (k, pair) in pad.chunks(2).enumerate() {
        let d = t.rank() - 1 - k;
        shape[d] = checked_sum(c, &[shape[d].clone(), pair[0].clone(), pair[1].clone()])?;
    }
    negative_count(c, "padded size", &shape)?;
    Ok(shape)
}

fn constant_pad(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![TensorType::with_dims(t.dtype, padded_shape(c, t, &c.sym_ints(1)?)?)])
}

/// `pad(self, pad, mode, value)`: "constant" takes a value; "reflect" pads less than the dim,
/// "circular" at most the dim.
fn pad(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let pad = c.sym_ints(1)?;
    let mode = c.str(2)?;
    let limit = match mode {
        "constant" => return constant_pad(c),
        "reflect" => 1,
        "replicate" => i64::MAX,
        "circular" => 0,
        other => return Err(c.err(format!("unknown padding mode \"{other}\""))),
    };
    if !matches!(c.args.get(3), Some(Arg::None) | None) {
        return Err(c.err(format!("padding mode \"{mode}\" takes no value")));
    }
    for (k, pair) in pad.chunks(2).enumerate() {
        let Some(size) = t.rank().checked_sub(k + 1).and_then(|d| t.shape[d].as_const()) else { continue };
        if pair.iter().any(|p| p.as_const().is_some_and(|p| limit != i64::MAX && p > size - limit)) {
            return Err(c.err(format!("{mode} padding {} is too large for a dim of size {size}", fmt_shape(pair))));
        }
    }
    Ok(vec![TensorType::with_dims(t.dtype, padded_shape(c, t, &pad)?)])
}

fn tril(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if t.rank() < 2 {
        return Err(c.err("the input must have at least 2 dims"));
    }
    Ok(vec![t.clone()])
}

/// `diff(self, n, dim, prepend, append)`: prepend/append match `self` off `dim`.
fn diff(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let n = c.int(1)?;
    let d = c.size_dim(c.int(2)?, t.rank())?;
    if n < 0 {
        return Err(c.err(format!("diff order {n} is negative")));
    }
    let mut len = t.shape[d].clone();
    for i in [3, 4] {
        if let Some(p) = c.opt_tensor(i)? {
            same_sizes(c, "diff prepend/append", &t.shape, &p.shape, Some(d))?;
            len = len.add(&p.shape[d]);
        }
    }
    let mut shape = t.shape.clone();
    shape[d] = len.sub(&Dim::constant(n));
    if shape[d].as_const().is_some_and(|v| v < 0) {
        shape[d] = Dim::constant(0);
    }
    Ok(vec![TensorType::with_dims(t.dtype, shape)])
}

/// Every view, reshape, indexing and identity op.
/// `dropout(input, p, train)`: the identity when `train` is false or `p` is 0.
const DROPOUT_IN_EVAL: EvalIdentity = EvalIdentity::Dropout { p: 1, train: 2 };

pub(super) const OPS: &[OpDecl] = &[
    // Identity at inference.
    op("aten::alias(Tensor(a) self) -> Tensor(a)", Identity, identity, cost_free).eval_identity(Always).per_sample(),
    op("aten::detach(Tensor(a) self) -> Tensor(a)", Identity, identity, cost_free).eval_identity(Always).per_sample(),
    op("aten::detach_(Tensor(a!) self) -> Tensor(a!)", Identity, identity, cost_free).eval_identity(Always),
    op("aten::lift_fresh_copy(Tensor self) -> Tensor", Identity, identity, cost_free).eval_identity(Always).per_sample(),
    op("aten::clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor", Identity, identity, cost_copy).eval_identity(Always).fold(Fold::SameElements).per_sample(),
    op("aten::contiguous(Tensor(a) self, *, MemoryFormat memory_format=0) -> Tensor(a)", Identity, identity, cost_copy).eval_identity(Always).per_sample(),
    op("aten::dropout(Tensor input, float p, bool train) -> Tensor", Identity, identity, cost_free).eval_identity(DROPOUT_IN_EVAL),
    op("aten::feature_dropout(Tensor input, float p, bool train) -> Tensor", Identity, identity, cost_free).eval_identity(DROPOUT_IN_EVAL),
    // Views and reshapes.
    op("aten::view(Tensor(a) self, SymInt[] size) -> Tensor(a)", View, view, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::reshape(Tensor(a) self, SymInt[] shape) -> Tensor(a)", View, view, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::_unsafe_view(Tensor self, SymInt[] size) -> Tensor", View, view, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::view_as(Tensor(a) self, Tensor other) -> Tensor(a)", View, view_as, cost_free).layout(Reshape),
    op("aten::reshape_as(Tensor(a) self, Tensor other) -> Tensor(a)", View, view_as, cost_free).layout(Reshape),
    op("aten::expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)", View, expand, cost_free).layout(Broadcast).fold(Fold::Expand),
    op("aten::expand_as(Tensor(a) self, Tensor other) -> Tensor(a)", View, expand_as, cost_free).layout(Broadcast),
    op("aten::permute(Tensor(a) self, int[] dims) -> Tensor(a)", View, permute, cost_free).layout(Reorder(super::facts::Reorder::Permutation { dims: 1 })),
    op("aten::transpose.int(Tensor(a) self, int dim0, int dim1) -> Tensor(a)", View, transpose, cost_free).layout(Reorder(super::facts::Reorder::Swap { a: 1, b: 2 })),
    op("aten::t(Tensor(a) self) -> Tensor(a)", View, t_2d, cost_free).layout(Reorder(super::facts::Reorder::Matrix)),
    op("aten::unsqueeze(Tensor(a) self, int dim) -> Tensor(a)", View, unsqueeze, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::squeeze(Tensor(a) self) -> Tensor(a)", View, squeeze_all, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::squeeze.dim(Tensor(a) self, int dim) -> Tensor(a)", View, squeeze_dim, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::squeeze.dims(Tensor(a) self, int[] dim) -> Tensor(a)", View, squeeze_list, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::flatten.using_ints(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)", View, flatten, cost_free).layout(Reshape).fold(Fold::SameElements),
    op("aten::unflatten.int(Tensor(a) self, int dim, SymInt[] sizes) -> Tensor(a)", View, unflatten, cost_free).layout(Reshape),
    op("aten::slice.Tensor(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor(a)", View, slice, cost_free).layout(Select),
    op("aten::narrow(Tensor(a) self, int dim, SymInt start, SymInt length) -> Tensor(a)", View, narrow, cost_free).layout(Select),
    op("aten::select.int(Tensor(a) self, int dim, SymInt index) -> Tensor(a)", View, select, cost_free).layout(Select),
    op("aten::split.Tensor(Tensor(a -> *) self, SymInt split_size, int dim=0) -> Tensor(a)[]", View, split, cost_free).layout(Select),
    op("aten::split_with_sizes(Tensor(a -> *) self, SymInt[] split_sizes, int dim=0) -> Tensor(a)[]", View, split_with_sizes, cost_free).layout(Select),
    op("aten::chunk(Tensor(a -> *) self, int chunks, int dim=0) -> Tensor(a)[]", View, chunk, cost_free).layout(Select),
    op("aten::unbind.int(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]", View, unbind, cost_free).layout(Select),
    // Joining and copying.
    op("aten::cat(Tensor[] tensors, int dim=0) -> Tensor", Compute, cat, cost_copy).fold(Fold::Cat).per_sample(),
    op("aten::stack(Tensor[] tensors, int dim=0) -> Tensor", Compute, stack, cost_copy).per_sample(),
    op("aten::repeat(Tensor self, SymInt[] repeats) -> Tensor", Compute, repeat, cost_copy).per_sample(),
    op("aten::repeat_interleave.self_int(Tensor self, SymInt repeats, int? dim=None, *, SymInt? output_size=None) -> Tensor", Compute, repeat_interleave, cost_copy),
    op("aten::flip(Tensor self, int[] dims) -> Tensor", Compute, flip, cost_copy).per_sample(),
    op("aten::roll(Tensor self, SymInt[1] shifts, int[1] dims=[]) -> Tensor", Compute, roll, cost_copy).per_sample(),
    op("aten::constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor", Compute, constant_pad, cost_copy),
    op("aten::pad(Tensor self, SymInt[] pad, str mode=\"constant\", float? value=None) -> Tensor", Compute, pad, cost_copy),
    op("aten::tril(Tensor self, SymInt diagonal=0) -> Tensor", Compute, tril, cost_copy),
    op("aten::triu(Tensor self, SymInt diagonal=0) -> Tensor", Compute, tril, cost_copy),
    op("aten::diff(Tensor self, int n=1, int dim=-1, Tensor? prepend=None, Tensor? append=None) -> Tensor", Compute, diff, cost_elementwise).per_sample(),
    // Indexing and scattering.
    op("aten::index.Tensor(Tensor self, Tensor?[] indices) -> Tensor", Compute, index, cost_copy),
    op("aten::index_select(Tensor self, int dim, Tensor index) -> Tensor", Compute, index_select, cost_copy).lookup(0, 2),
    op("aten::gather(Tensor self, int dim, Tensor index, *, bool sparse_grad=False) -> Tensor", Compute, gather, cost_copy),
    op("aten::scatter.src(Tensor self, int dim, Tensor index, Tensor src) -> Tensor", Compute, scatter, cost_copy),
    op("aten::scatter.value(Tensor self, int dim, Tensor index, Scalar value) -> Tensor", Compute, scatter, cost_copy),
    op("aten::index_add(Tensor self, int dim, Tensor index, Tensor source, *, Scalar alpha=1) -> Tensor", Compute, index_add, cost_elementwise),
    op("aten::index_copy(Tensor self, int dim, Tensor index, Tensor source) -> Tensor", Compute, index_copy, cost_copy),
    op("aten::index_copy_(Tensor(a!) self, int dim, Tensor index, Tensor source) -> Tensor(a!)", Compute, index_copy, cost_copy),
    op("aten::index_put(Tensor self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor", Compute, index_put, cost_copy),
    op("aten::index_put_(Tensor(a!) self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor(a!)", Compute, index_put, cost_copy),
    op("aten::slice_scatter(Tensor self, Tensor src, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor", Compute, slice_scatter, cost_copy),
    op("aten::select_scatter(Tensor self, Tensor src, int dim, SymInt index) -> Tensor", Compute, select_scatter, cost_copy),
    op("aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)", Compute, copy_, cost_copy),
    op("aten::masked_scatter(Tensor self, Tensor mask, Tensor source) -> Tensor", Compute, masked_scatter, cost_copy),
    op("aten::scatter_reduce.two(Tensor self, int dim, Tensor index, Tensor src, str reduce, *, bool include_self=True) -> Tensor", Compute, scatter_reduce, cost_elementwise),
    // A view in PyTorch, but of strides the SRG does not have (any element order, overlaps):
    // computed as new data, with no layout fact for passes to look through.
    op("aten::as_strided(Tensor(a) self, SymInt[] size, SymInt[] stride, SymInt? storage_offset=None) -> Tensor(a)", Compute, as_strided, cost_copy),
    // A view in PyTorch whose windows overlap when `step < size`: computed as new data too, with
    // no layout fact (it is neither a reshape nor a sub-range of its input).
    op("aten::unfold(Tensor(a) self, int dimension, int size, int step) -> Tensor(a)", Compute, unfold, cost_copy),
];
