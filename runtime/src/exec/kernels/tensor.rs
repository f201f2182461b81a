//! Views, slicing, joining, indexing and identities (the registry's `tensor.rs`).
//!
//! Views return libtorch views (no copy); that is safe because no kernel writes into a tensor.
//! `view` is run as `reshape`: the SRG's tensors need not have eager PyTorch's strides (an
//! in-place op's result here is a fresh tensor), and `reshape` is `view` whenever a view exists.

use tch::Tensor;

use super::{like_self, one, Args, KResult, KernelFn};

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
