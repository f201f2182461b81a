//! Views, slicing, joining, indexing and identities (the registry's `tensor.rs`).
//!
//! Views return libtorch views (no copy); that is safe because no kernel writes into a tensor.
//! `view` is run as `reshape`: the SRG's tensors need not have eager PyTorch's strides (an
//! in-place op's result here is a fresh tensor), and `reshape` is `view` whenever a view exists.

use tch::{Kind, Tensor};

use super::{like_self, one, to_kind, Args, KResult, KernelError, KernelFn};
use crate::exec::args::Num;

pub(super) const KERNELS: &[(&str, KernelFn)] = &[
    // Identities at inference.
    ("aten.alias.default", |a| one(a.tensor(0)?.shallow_clone())),
    ("aten.detach.default", |a| one(a.tensor(0)?.shallow_clone())),
    ("aten.detach_.default", |a| one(a.tensor(0)?.shallow_clone())),
    ("aten.lift_fresh_copy.default", |a| one(a.tensor(0)?.shallow_clone())),
    ("aten.clone.default", |a| one(a.tensor(0)?.shallow_clone())),
    ("aten.contiguous.default", |a| one(a.tensor(0)?.f_contiguous()?)),
    ("aten.dropout.default", dropout),
    ("aten.feature_dropout.default", dropout),
    // Views.
    ("aten.view.default", |a| one(a.tensor(0)?.f_reshape(a.ints(1)?)?)),
    ("aten.reshape.default", |a| one(a.tensor(0)?.f_reshape(a.ints(1)?)?)),
    ("aten._unsafe_view.default", |a| one(a.tensor(0)?.f_reshape(a.ints(1)?)?)),
    ("aten.view_as.default", |a| one(a.tensor(0)?.f_reshape(a.tensor(1)?.size())?)),
    ("aten.reshape_as.default", |a| one(a.tensor(0)?.f_reshape(a.tensor(1)?.size())?)),
    ("aten.expand.default", |a| one(a.tensor(0)?.f_expand(a.ints(1)?, a.bool(2)?)?)),
    ("aten.expand_as.default", |a| one(a.tensor(0)?.f_expand_as(a.tensor(1)?)?)),
    ("aten.permute.default", |a| one(a.tensor(0)?.f_permute(a.ints(1)?)?)),
    ("aten.transpose.int", |a| one(a.tensor(0)?.f_transpose(a.int(1)?, a.int(2)?)?)),
    ("aten.t.default", |a| one(a.tensor(0)?.f_tr()?)),
    ("aten.unsqueeze.default", |a| one(a.tensor(0)?.f_unsqueeze(a.int(1)?)?)),
    ("aten.squeeze.default", |a| one(a.tensor(0)?.f_squeeze()?)),
    ("aten.squeeze.dim", |a| one(a.tensor(0)?.f_squeeze_dim(a.int(1)?)?)),
    ("aten.squeeze.dims", |a| one(a.tensor(0)?.f_squeeze_dims(a.ints(1)?)?)),
    ("aten.flatten.using_ints", |a| one(a.tensor(0)?.f_flatten(a.int(1)?, a.int(2)?)?)),
    ("aten.unflatten.int", |a| one(a.tensor(0)?.f_unflatten(a.int(1)?, a.ints(2)?)?)),
    ("aten.slice.Tensor", |a| one(a.tensor(0)?.f_slice(a.int(1)?, a.opt_int(2)?, a.opt_int(3)?, a.int(4)?)?)),
    ("aten.narrow.default", |a| one(a.tensor(0)?.f_narrow(a.int(1)?, a.int(2)?, a.int(3)?)?)),
    ("aten.select.int", |a| one(a.tensor(0)?.f_select(a.int(1)?, a.int(2)?)?)),
    // Splitting and joining.
    ("aten.split.Tensor", |a| Ok(a.tensor(0)?.f_split(a.int(1)?, a.int(2)?)?)),
    ("aten.split_with_sizes.default", |a| Ok(a.tensor(0)?.f_split_with_sizes(a.ints(1)?, a.int(2)?)?)),
    ("aten.chunk.default", |a| Ok(a.tensor(0)?.f_chunk(a.int(1)?, a.int(2)?)?)),
    ("aten.unbind.int", |a| Ok(a.tensor(0)?.f_unbind(a.int(1)?)?)),
    ("aten.cat.default", |a| one(Tensor::f_cat(&a.tensors(0)?, a.int(1)?)?)),
    ("aten.stack.default", |a| one(Tensor::f_stack(&a.tensors(0)?, a.int(1)?)?)),
    ("aten.repeat.default", |a| one(a.tensor(0)?.f_repeat(a.ints(1)?)?)),
    ("aten.repeat_interleave.self_int", |a| {
        one(a.tensor(0)?.f_repeat_interleave_self_int(a.int(1)?, a.opt_int(2)?, a.opt_int(3)?)?)
    }),
    ("aten.flip.default", |a| one(a.tensor(0)?.f_flip(a.ints(1)?)?)),
    ("aten.roll.default", |a| one(a.tensor(0)?.f_roll(a.ints(1)?, a.ints(2)?)?)),
    ("aten.constant_pad_nd.default", constant_pad_nd),
    ("aten.pad.default", pad),
    ("aten.tril.default", |a| one(a.tensor(0)?.f_tril(a.int(1)?)?)),
    ("aten.triu.default", |a| one(a.tensor(0)?.f_triu(a.int(1)?)?)),
    ("aten.diff.default", |a| one(a.tensor(0)?.f_diff(a.int(1)?, a.int(2)?, a.opt_tensor(3)?, a.opt_tensor(4)?)?)),
    // Indexing and scattering.
    ("aten.index.Tensor", |a| one(a.tensor(0)?.f_index(&a.opt_tensors(1)?)?)),
    ("aten.index_select.default", |a| one(a.tensor(0)?.f_index_select(a.int(1)?, a.tensor(2)?)?)),
    ("aten.gather.default", |a| one(a.tensor(0)?.f_gather(a.int(1)?, a.tensor(2)?, a.bool(3)?)?)),
    ("aten.scatter.src", |a| one(a.tensor(0)?.f_scatter(a.int(1)?, a.tensor(2)?, a.tensor(3)?)?)),
    ("aten.scatter.value", |a| one(a.tensor(0)?.f_scatter_value(a.int(1)?, a.tensor(2)?, a.scalar(3)?)?)),
    ("aten.index_copy.default", |a| one(a.tensor(0)?.f_index_copy(a.int(1)?, a.tensor(2)?, a.tensor(3)?)?)),
    ("aten.index_copy_.default", |a| one(a.tensor(0)?.f_index_copy(a.int(1)?, a.tensor(2)?, a.tensor(3)?)?)),
    ("aten.index_put.default", index_put),
    ("aten.index_put_.default", index_put),
    ("aten.slice_scatter.default", |a| {
        one(a.tensor(0)?.f_slice_scatter(a.tensor(1)?, a.int(2)?, a.opt_int(3)?, a.opt_int(4)?, a.int(5)?)?)
    }),
    ("aten.select_scatter.default", |a| one(a.tensor(0)?.f_select_scatter(a.tensor(1)?, a.int(2)?, a.int(3)?)?)),
    // `self.copy_(src)`: src in self's dtype, broadcast to self's shape.
    ("aten.copy_.default", |a| one(like_self(a.tensor(1)?.shallow_clone(), a.tensor(0)?)?)),
    ("aten.index_add.default", index_add),
    ("aten.masked_scatter.default", masked_scatter),
    ("aten.as_strided.default", as_strided),
    ("aten.unfold.default", |a| one(a.tensor(0)?.f_unfold(a.int(1)?, a.int(2)?, a.int(3)?)?)),
    ("aten.scatter_reduce.two", scatter_reduce),
];

/// The identity in eval mode; random dropout when `train` is set.
fn dropout(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    if !a.bool(2)? {
        return one(x.shallow_clone());
    }
    let p = a.float(1)?;
    one(if a.op == "aten.feature_dropout.default" { x.f_feature_dropout(p, true)? } else { x.f_dropout(p, true)? })
}

fn constant_pad_nd(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let pad = a.ints(1)?;
    let value = a.num(2)?;
    if value.f64() == 0.0 {
        return one(x.f_constant_pad_nd(pad)?);
    }
    one(x.f_pad(pad, "constant", value.f64())?)
}

fn pad(a: &Args) -> KResult {
    let mode = a.str(2)?;
    if !matches!(mode, "constant" | "reflect" | "replicate" | "circular") {
        return Err(a.bad(2, format!("unknown padding mode {mode:?}")));
    }
    one(a.tensor(0)?.f_pad(a.ints(1)?, mode, a.opt_float(3)?)?)
}

fn index_put(a: &Args) -> KResult {
    let this = a.tensor(0)?;
    let values = a.tensor(2)?;
    // Eager `x[i] = v` converts `v` to x's dtype before the op; do the same.
    let values = super::to_kind(values.shallow_clone(), this.f_kind()?)?;
    one(this.f_index_put(&a.opt_tensors(1)?, &values, a.bool(3)?)?)
}

/// Error unless every value of the int `index` (argument `i`) lies in `[0, size)`. Checked before
/// libtorch sees it: on an accelerator an index out of range is a device-side assert, which
/// takes the process down instead of raising.
fn check_index_range(a: &Args, i: usize, index: &Tensor, size: i64) -> Result<(), KernelError> {
    if index.numel() == 0 {
        return Ok(());
    }
    let index = index.f_to_kind(Kind::Int64)?;
    let (lo, hi) = (index.f_min()?.f_int64_value(&[])?, index.f_max()?.f_int64_value(&[])?);
    if lo < 0 || hi >= size {
        let bad = if lo < 0 { lo } else { hi };
        return Err(a.bad(i, format!("index {bad} is out of range for a dim of size {size}")));
    }
    Ok(())
}

/// The size of `x` along `dim` (argument `i`, possibly negative); a 0-dim tensor has one slot
/// along its one implicit dim.
fn size_along(a: &Args, i: usize, x: &Tensor, dim: i64) -> Result<i64, KernelError> {
    let sizes = x.size();
    let rank = sizes.len().max(1) as i64;
    let d = if dim < 0 { dim + rank } else { dim };
    match sizes.len() {
        0 if d == 0 => Ok(1),
        _ => usize::try_from(d)
            .ok()
            .and_then(|d| sizes.get(d).copied())
            .ok_or_else(|| a.bad(i, format!("dim {dim} out of range for rank {}", sizes.len()))),
    }
}

/// `self.index_add(dim, index, source, alpha=alpha)`. tch's `index_add` takes no `alpha`, so
/// another alpha scales `source` first, converted as ATen converts it (`alpha.to<scalar_t>()`:
/// truncated for integer tensors, `alpha != 0` for bool).
fn index_add(a: &Args) -> KResult {
    let (x, index, source) = (a.tensor(0)?, a.tensor(2)?, a.tensor(3)?);
    let dim = a.int(1)?;
    let size = size_along(a, 1, x, dim)?;
    if !matches!(index.f_kind()?, Kind::Int | Kind::Int64) {
        return Err(a.bad(2, format!("index must be int32 or int64, got {:?}", index.f_kind()?)));
    }
    check_index_range(a, 2, index, size)?;
    let kind = x.f_kind()?;
    let alpha = match (a.num(4)?, kind) {
        (n, Kind::Bool) => Num::Int(i64::from(n.f64() != 0.0)),
        (Num::Float(f), Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64) => Num::Int(f as i64),
        (n, _) => n,
    };
    if alpha.is_one() {
        return one(x.f_index_add(dim, index, source)?);
    }
    let scaled = to_kind(source.f_mul_scalar(alpha.scalar())?, source.f_kind()?)?;
    one(x.f_index_add(dim, index, &scaled)?)
}

/// `self.masked_scatter(mask, source)`: self and mask broadcast together. `source` must hold at
/// least as many elements as the (broadcast) mask has ones, checked here: on an accelerator
/// libtorch checks it with a device-side assert.
fn masked_scatter(a: &Args) -> KResult {
    let (x, mask, source) = (a.tensor(0)?, a.tensor(1)?, a.tensor(2)?);
    if mask.f_kind()? != Kind::Bool {
        return Err(a.bad(1, format!("masked_scatter only supports boolean masks, got {:?}", mask.f_kind()?)));
    }
    let expanded = Tensor::f_broadcast_tensors(&[x, mask])?;
    let ones = expanded[1].f_sum(Kind::Int64)?.f_int64_value(&[])?;
    if source.numel() < ones as usize {
        return Err(a.bad(2, format!("source has {} elements for {ones} ones in the mask", source.numel())));
    }
    one(x.f_masked_scatter(mask, source)?)
}

/// `as_strided(self, size, stride, storage_offset)`. SRG values carry no strides, so it applies to
/// the contiguous form of its input, which is what it means on the exported (contiguous) tensor.
/// The input is copied into a tensor of its own, so that `storage_offset` counts from its first
/// element and libtorch's bounds check is against its elements (a view's storage may be larger
/// and start earlier).
fn as_strided(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let mut own = Tensor::f_empty(x.size(), (x.f_kind()?, x.device()))?;
    own.f_copy_(x)?;
    one(own.f_as_strided(a.ints(1)?, a.ints(2)?, a.opt_int(3)?.unwrap_or(0))?)
}

/// `self.scatter_reduce(dim, index, src, reduce, include_self=include_self)`. The reduction and a
/// non-empty index's dtype and range are checked here: on an accelerator an index out of range is
/// a device-side assert, and eager CPU takes `reduce="max"` where torch's meta function (what
/// export and the registry follow) refuses it.
fn scatter_reduce(a: &Args) -> KResult {
    let (x, index, src) = (a.tensor(0)?, a.tensor(2)?, a.tensor(3)?);
    let (dim, reduce) = (a.int(1)?, a.str(4)?);
    if !matches!(reduce, "sum" | "prod" | "mean" | "amax" | "amin") {
        return Err(a.bad(4, format!("reduce must be one of sum, prod, mean, amax or amin, got {reduce:?}")));
    }
    if index.numel() > 0 {
        if !matches!(index.f_kind()?, Kind::Int | Kind::Int64) {
            return Err(a.bad(2, format!("index must be int32 or int64, got {:?}", index.f_kind()?)));
        }
        check_index_range(a, 2, index, size_along(a, 1, x, dim)?)?;
    }
    one(x.f_internal_scatter_reduce(dim, index, src, reduce, a.bool(5)?)?)
}
