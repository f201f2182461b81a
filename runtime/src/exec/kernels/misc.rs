//! Creation, conversion, asserts, reductions and sorting (the registry's `misc.rs`).
//!
//! Creation ops ignore their `device`, `layout` and `pin_memory` arguments: a tensor is always
//! made on the executing device, which is where the plan put the node. Conversions (`_to_copy`,
//! `to.*`) change the dtype only, for the same reason. Dtypes default as in PyTorch: the default
//! float dtype (float32) for `zeros`/`ones`/`eye`/`scalar_tensor`, the fill value's kind for
//! `full`, the input's dtype for `*_like` and `new_*`.

use tch::{Kind, Tensor};

use super::{one, to_kind, Args, KResult, KernelError, KernelFn};
use crate::exec::args::Num;

pub(super) const KERNELS: &[(&str, KernelFn)] = &[
    // Creation.
    ("aten.arange.default", |a| arange(a, None, 0, None, 1)),
    ("aten.arange.start", |a| arange(a, Some(0), 1, None, 2)),
    ("aten.arange.start_step", |a| arange(a, Some(0), 1, Some(2), 3)),
    ("aten.full.default", |a| {
        let kind = a.opt_dtype(2)?.unwrap_or(default_kind(a, 1)?);
        one(Tensor::f_full(a.ints(0)?, a.scalar(1)?, (kind, a.device))?)
    }),
    ("aten.zeros.default", |a| one(Tensor::f_zeros(a.ints(0)?, (a.opt_dtype(1)?.unwrap_or(Kind::Float), a.device))?)),
    ("aten.ones.default", |a| one(Tensor::f_ones(a.ints(0)?, (a.opt_dtype(1)?.unwrap_or(Kind::Float), a.device))?)),
    // `empty` is zero-filled: uninitialised memory would make runs irreproducible.
    ("aten.empty.memory_format", |a| {
        one(Tensor::f_zeros(a.ints(0)?, (a.opt_dtype(1)?.unwrap_or(Kind::Float), a.device))?)
    }),
    ("aten.zeros_like.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_zeros(x.size(), (a.opt_dtype(1)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.ones_like.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_ones(x.size(), (a.opt_dtype(1)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.empty_like.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_zeros(x.size(), (a.opt_dtype(1)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.full_like.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_full(x.size(), a.scalar(1)?, (a.opt_dtype(2)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.new_ones.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_ones(a.ints(1)?, (a.opt_dtype(2)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.new_zeros.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_zeros(a.ints(1)?, (a.opt_dtype(2)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.new_empty.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_zeros(a.ints(1)?, (a.opt_dtype(2)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.new_full.default", |a| {
        let x = a.tensor(0)?;
        one(Tensor::f_full(a.ints(1)?, a.scalar(2)?, (a.opt_dtype(3)?.unwrap_or(x.f_kind()?), a.device))?)
    }),
    ("aten.scalar_tensor.default", |a| {
        one(Tensor::f_scalar_tensor(a.scalar(0)?, (a.opt_dtype(1)?.unwrap_or(Kind::Float), a.device))?)
    }),
    ("aten.eye.default", |a| one(Tensor::f_eye(a.int(0)?, (a.opt_dtype(1)?.unwrap_or(Kind::Float), a.device))?)),
    // Conversion.
    ("aten._to_copy.default", |a| convert(a.tensor(0)?, a.opt_dtype(1)?)),
    ("aten.to.dtype", |a| convert(a.tensor(0)?, Some(a.dtype(1)?))),
    ("aten.to.device", |a| convert(a.tensor(0)?, Some(a.dtype(2)?))),
    ("aten.to.dtype_layout", |a| convert(a.tensor(0)?, a.opt_dtype(1)?)),
    ("aten.type_as.default", |a| convert(a.tensor(0)?, Some(a.tensor(1)?.f_kind()?))),
    // Asserts: no outputs; a failed check is an error.
    ("aten._assert_tensor_metadata.default", assert_tensor_metadata),
    ("aten._assert_async.msg", |a| {
        let x = a.tensor(0)?;
        if x.numel() != 1 {
            return Err(a.bad(0, format!("expected a one-element tensor, got {:?}", x.size())));
        }
        let nonzero = x.f_ne(0)?.f_to_dtype(Kind::Int64, false, false)?.f_int64_value(&[])?;
        if nonzero == 0 {
            return Err(a.bad(0, format!("assertion failed: {}", a.str(1)?)));
        }
        Ok(Vec::new())
    }),
    ("aten._assert_scalar.default", |a| {
        if a.num(0)?.f64() == 0.0 {
            return Err(a.bad(0, format!("assertion failed: {}", a.str(1)?)));
        }
        Ok(Vec::new())
    }),
    // Reductions.
    ("aten.sum.default", |a| one(a.tensor(0)?.f_sum(a.opt_dtype(1)?)?)),
    ("aten.sum.dim_IntList", |a| one(a.tensor(0)?.f_sum_dim_intlist(a.opt_ints(1)?, a.bool(2)?, a.opt_dtype(3)?)?)),
    ("aten.prod.dim_int", |a| one(a.tensor(0)?.f_prod_dim_int(a.int(1)?, a.bool(2)?, a.opt_dtype(3)?)?)),
    ("aten.mean.default", |a| one(a.tensor(0)?.f_mean(a.opt_dtype(1)?)?)),
    ("aten.mean.dim", |a| one(a.tensor(0)?.f_mean_dim(a.opt_ints(1)?, a.bool(2)?, a.opt_dtype(3)?)?)),
    ("aten.amax.default", |a| one(a.tensor(0)?.f_amax(a.ints(1)?, a.bool(2)?)?)),
    ("aten.amin.default", |a| one(a.tensor(0)?.f_amin(a.ints(1)?, a.bool(2)?)?)),
    ("aten.max.dim", |a| {
        let (v, i) = a.tensor(0)?.f_max_dim(a.int(1)?, a.bool(2)?)?;
        Ok(vec![v, i])
    }),
    ("aten.min.dim", |a| {
        let (v, i) = a.tensor(0)?.f_min_dim(a.int(1)?, a.bool(2)?)?;
        Ok(vec![v, i])
    }),
    ("aten.max.default", |a| one(a.tensor(0)?.f_max()?)),
    ("aten.min.default", |a| one(a.tensor(0)?.f_min()?)),
    ("aten.argmax.default", |a| one(a.tensor(0)?.f_argmax(a.opt_int(1)?, a.bool(2)?)?)),
    ("aten.argmin.default", |a| one(a.tensor(0)?.f_argmin(a.opt_int(1)?, a.bool(2)?)?)),
    ("aten.var.correction", |a| {
        let correction = a.opt_scalar(2)?.unwrap_or(tch::Scalar::int(1));
        one(a.tensor(0)?.f_var_correction(a.opt_ints(1)?, correction, a.bool(3)?)?)
    }),
    ("aten.std.correction", |a| {
        let correction = a.opt_scalar(2)?.unwrap_or(tch::Scalar::int(1));
        one(a.tensor(0)?.f_std_correction(a.opt_ints(1)?, correction, a.bool(3)?)?)
    }),
    ("aten.any.dim", |a| one(a.tensor(0)?.f_any_dim(a.int(1)?, a.bool(2)?)?)),
    ("aten.any.default", |a| one(a.tensor(0)?.f_any()?)),
    ("aten.all.dim", |a| one(a.tensor(0)?.f_all_dim(a.int(1)?, a.bool(2)?)?)),
    ("aten.all.default", |a| one(a.tensor(0)?.f_all()?)),
    ("aten.logsumexp.default", |a| one(a.tensor(0)?.f_logsumexp(a.ints(1)?, a.bool(2)?)?)),
    ("aten.linalg_vector_norm.default", linalg_vector_norm),
    ("aten.histc.default", histc),
    ("aten.cumsum.default", |a| one(a.tensor(0)?.f_cumsum(a.int(1)?, a.opt_dtype(2)?)?)),
    ("aten.cumprod.default", |a| one(a.tensor(0)?.f_cumprod(a.int(1)?, a.opt_dtype(2)?)?)),
    // Sorting.
    ("aten.topk.default", |a| {
        let (v, i) = a.tensor(0)?.f_topk(a.int(1)?, a.int(2)?, a.bool(3)?, a.bool(4)?)?;
        Ok(vec![v, i])
    }),
    ("aten.sort.default", |a| {
        let (v, i) = a.tensor(0)?.f_sort(a.int(1)?, a.bool(2)?)?;
        Ok(vec![v, i])
    }),
    ("aten.argsort.default", |a| one(a.tensor(0)?.f_argsort(a.int(1)?, a.bool(2)?)?)),
    ("aten.one_hot.default", |a| one(a.tensor(0)?.f_one_hot(a.int(1)?)?)),
];

/// The dtype PyTorch gives a tensor created from the Scalar at `i`: bool, int64 or float32.
fn default_kind(a: &Args, i: usize) -> Result<Kind, KernelError> {
    Ok(match a.num(i)? {
        Num::Int(_) if a.is_bool(i) => Kind::Bool,
        Num::Int(_) => Kind::Int64,
        Num::Float(_) => Kind::Float,
    })
}

/// `arange` with its start (default 0), end, step (default 1) and dtype arguments.
fn arange(a: &Args, start: Option<usize>, end: usize, step: Option<usize>, dtype: usize) -> KResult {
    let start = start.map(|i| a.num(i)).transpose()?.unwrap_or(Num::Int(0));
    let end_n = a.num(end)?;
    let step = step.map(|i| a.num(i)).transpose()?.unwrap_or(Num::Int(1));
    if step.f64() == 0.0 {
        return Err(a.bad(end + 1, "step must not be 0"));
    }
    let integral = [start, end_n, step].iter().all(|n| matches!(n, Num::Int(_)));
    let kind = a.opt_dtype(dtype)?.unwrap_or(if integral { Kind::Int64 } else { Kind::Float });
    one(Tensor::f_arange_start_step(start.scalar(), end_n.scalar(), step.scalar(), (kind, a.device))?)
}

fn convert(x: &Tensor, kind: Option<Kind>) -> KResult {
    match kind {
        Some(k) => one(to_kind(x.shallow_clone(), k)?),
        None => one(x.shallow_clone()),
    }
}

/// Checks the dtype and size when given; strides, device and layout are the executor's business.
fn assert_tensor_metadata(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    if let Some(size) = a.opt_ints(1)? {
        if size != x.size() {
            return Err(a.bad(1, format!("expected size {size:?}, the tensor has {:?}", x.size())));
        }
    }
    if let Some(kind) = a.opt_dtype(3)? {
        if kind != x.f_kind()? {
            return Err(a.bad(3, format!("expected dtype {kind:?}, the tensor has {:?}", x.f_kind()?)));
        }
    }
    Ok(Vec::new())
}

/// The vector norm over `dim` (every dim when None), as `torch.linalg.vector_norm`.
fn linalg_vector_norm(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let ord = a.scalar(1)?;
    let dims = a.opt_ints(2)?.unwrap_or_else(|| (0..x.dim() as i64).collect());
    let keepdim = a.bool(3)?;
    one(match a.opt_dtype(4)? {
        Some(kind) => x.f_norm_scalaropt_dim_dtype(ord, dims, keepdim, kind)?,
        None => x.f_norm_scalaropt_dim(ord, dims, keepdim)?,
    })
}

/// `histc(self, bins, min, max)`. tch exposes only `histc(bins)` (the data's range), so this is
/// ATen's kernel (`histogramdd_cpu_contiguous`, linear bins, as `histc` calls it) in tensor ops:
/// the range is `[min, max]`, or the data's extrema when `min == max` (widened by 1 each way when
/// those are equal too), held in self's dtype; an element `x` in range counts in bin
/// `trunc((x - min) * bins / (max - min))`, each step in self's dtype, the last bin also taking
/// `x == max`; NaNs and elements outside are not counted. Counts are exact and converted once
/// (ATen adds 1 at a time in self's dtype, which stops counting at 2048 in half, 256 in bfloat16).
fn histc(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let kind = x.f_kind()?;
    if !matches!(kind, Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double) {
        return Err(a.bad(0, format!("histc of {kind:?} is not implemented")));
    }
    let bins = a.int(1)?;
    if bins <= 0 {
        return Err(a.bad(1, format!("bins must be > 0, got {bins}")));
    }
    let (mut lo, mut hi) = (a.num(2)?.f64(), a.num(3)?.f64());
    if lo == hi && x.numel() > 0 {
        let (min, max) = x.f_aminmax(None, false)?;
        (lo, hi) = (min.f_double_value(&[])?, max.f_double_value(&[])?);
    }
    if lo == hi {
        (lo, hi) = (lo - 1.0, hi + 1.0);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return Err(a.bad(2, format!("histc range [{lo}, {hi}] is not finite")));
    }
    if lo >= hi {
        return Err(a.bad(3, format!("histc max {hi} must be larger than min {lo}")));
    }
    let in_dtype = |v: f64| Tensor::f_scalar_tensor(v, (kind, x.device()));
    let (lo, hi, bins_t) = (in_dtype(lo)?, in_dtype(hi)?, in_dtype(bins as f64)?);
    let flat = x.f_reshape([-1])?;
    let inside = flat.f_ge_tensor(&lo)?.f_logical_and(&flat.f_le_tensor(&hi)?)?;
    let pos = flat.f_masked_select(&inside)?.f_sub(&lo)?.f_mul(&bins_t)?.f_div(&hi.f_sub(&lo)?)?;
    let bin = pos.f_to_kind(Kind::Int64)?.f_clamp_max(bins - 1)?;
    one(bin.f_bincount(None::<Tensor>, bins)?.f_to_kind(kind)?)
}
