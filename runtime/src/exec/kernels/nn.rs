//! Matmul, convolution, norms, softmax, attention, embedding, pooling, resampling (the registry's
//! `nn.rs`).

use tch::{Device, Kind, Tensor};

use super::{one, Args, KResult, KernelFn};

pub(super) const KERNELS: &[(&str, KernelFn)] = &[
    ("aten.mm.default", |a| one(a.tensor(0)?.f_mm(a.tensor(1)?)?)),
    ("aten.bmm.default", |a| one(a.tensor(0)?.f_bmm(a.tensor(1)?)?)),
    ("aten.addmm.default", addmm),
    ("aten.baddbmm.default", |a| {
        one(a.tensor(0)?.f_baddbmm(a.tensor(1)?, a.tensor(2)?, a.scalar(3)?, a.scalar(4)?)?)
    }),
    ("aten.matmul.default", |a| one(a.tensor(0)?.f_matmul(a.tensor(1)?)?)),
    ("aten.linear.default", |a| one(a.tensor(0)?.f_linear(a.tensor(1)?, a.opt_tensor(2)?)?)),
    ("transformers.grouped_mm_fallback.default", grouped_mm_fallback),
    ("aten.einsum.default", |a| one(Tensor::f_einsum(a.str(0)?, &a.tensors(1)?, a.opt_ints(2)?)?)),
    // Convolution.
    ("aten.conv1d.default", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        one(x.f_conv1d(w, b, a.ints(3)?, a.ints(4)?, a.ints(5)?, a.int(6)?)?)
    }),
    ("aten.conv2d.default", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        one(x.f_conv2d(w, b, a.ints(3)?, a.ints(4)?, a.ints(5)?, a.int(6)?)?)
    }),
    ("aten.conv3d.default", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        one(x.f_conv3d(w, b, a.ints(3)?, a.ints(4)?, a.ints(5)?, a.int(6)?)?)
    }),
    ("aten.conv2d.padding", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        let padding = a.str(4)?;
        if !matches!(padding, "same" | "valid") {
            return Err(a.bad(4, format!("padding must be \"same\" or \"valid\", got {padding:?}")));
        }
        one(x.f_conv2d_padding(w, b, a.ints(3)?, padding, a.ints(5)?, a.int(6)?)?)
    }),
    ("aten.convolution.default", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        one(x.f_convolution(w, b, a.ints(3)?, a.ints(4)?, a.ints(5)?, a.bool(6)?, a.ints(7)?, a.int(8)?)?)
    }),
    ("aten.conv_transpose1d.default", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        one(x.f_conv_transpose1d(w, b, a.ints(3)?, a.ints(4)?, a.ints(5)?, a.int(6)?, a.ints(7)?)?)
    }),
    ("aten.conv_transpose2d.input", |a| {
        let (x, w, b) = (a.tensor(0)?, a.tensor(1)?, a.opt_tensor(2)?);
        one(x.f_conv_transpose2d(w, b, a.ints(3)?, a.ints(4)?, a.ints(5)?, a.int(6)?, a.ints(7)?)?)
    }),
    // Normalisation.
    ("aten.layer_norm.default", |a| {
        let x = a.tensor(0)?;
        one(x.f_layer_norm(a.ints(1)?, a.opt_tensor(2)?, a.opt_tensor(3)?, a.float(4)?, a.bool(5)?)?)
    }),
    ("aten.native_layer_norm.default", |a| {
        let x = a.tensor(0)?;
        let (y, mean, rstd) = x.f_native_layer_norm(a.ints(1)?, a.opt_tensor(2)?, a.opt_tensor(3)?, a.float(4)?)?;
        Ok(vec![y, mean, rstd])
    }),
    ("aten.rms_norm.default", |a| one(a.tensor(0)?.f_rms_norm(a.ints(1)?, a.opt_tensor(2)?, a.opt_float(3)?)?)),
    ("aten.group_norm.default", |a| {
        let x = a.tensor(0)?;
        one(x.f_group_norm(a.int(1)?, a.opt_tensor(2)?, a.opt_tensor(3)?, a.float(4)?, a.bool(5)?)?)
    }),
    ("aten.native_group_norm.default", |a| {
        let x = a.tensor(0)?;
        let (w, b) = (a.opt_tensor(1)?, a.opt_tensor(2)?);
        let (y, mean, rstd) = x.f_native_group_norm(w, b, a.int(3)?, a.int(4)?, a.int(5)?, a.int(6)?, a.float(7)?)?;
        Ok(vec![y, mean, rstd])
    }),
    ("aten.batch_norm.default", |a| {
        let x = a.tensor(0)?;
        let (w, b, m, v) = (a.opt_tensor(1)?, a.opt_tensor(2)?, a.opt_tensor(3)?, a.opt_tensor(4)?);
        one(x.f_batch_norm(w, b, m, v, a.bool(5)?, a.float(6)?, a.float(7)?, a.bool(8)?)?)
    }),
    ("aten._native_batch_norm_legit_no_training.default", |a| {
        let x = a.tensor(0)?;
        let (w, b, m, v) = (a.opt_tensor(1)?, a.opt_tensor(2)?, a.tensor(3)?, a.tensor(4)?);
        let (y, mean, rstd) = x.f_internal_native_batch_norm_legit_no_training(w, b, m, v, a.float(5)?, a.float(6)?)?;
        Ok(vec![y, mean, rstd])
    }),
    ("aten._native_batch_norm_legit.no_stats", native_batch_norm_no_stats),
    ("aten.instance_norm.default", |a| {
        let x = a.tensor(0)?;
        let (w, b, m, v) = (a.opt_tensor(1)?, a.opt_tensor(2)?, a.opt_tensor(3)?, a.opt_tensor(4)?);
        one(x.f_instance_norm(w, b, m, v, a.bool(5)?, a.float(6)?, a.float(7)?, a.bool(8)?)?)
    }),
    // Softmax.
    ("aten.softmax.int", |a| one(a.tensor(0)?.f_softmax(a.int(1)?, a.opt_dtype(2)?)?)),
    ("aten._softmax.default", |a| one(a.tensor(0)?.f_internal_softmax(a.int(1)?, a.bool(2)?)?)),
    ("aten.log_softmax.int", |a| one(a.tensor(0)?.f_log_softmax(a.int(1)?, a.opt_dtype(2)?)?)),
    ("aten._log_softmax.default", |a| one(a.tensor(0)?.f_internal_log_softmax(a.int(1)?, a.bool(2)?)?)),
    // Embedding and attention.
    ("aten.embedding.default", |a| {
        one(Tensor::f_embedding(a.tensor(0)?, a.tensor(1)?, a.int(2)?, a.bool(3)?, a.bool(4)?)?)
    }),
    ("aten.scaled_dot_product_attention.default", |a| {
        let (q, k, v, mask) = (a.tensor(0)?, a.tensor(1)?, a.tensor(2)?, a.opt_tensor(3)?);
        let (dropout, causal, scale, gqa) = (a.float(4)?, a.bool(5)?, a.opt_float(6)?, a.bool(7)?);
        one(Tensor::f_scaled_dot_product_attention(q, k, v, mask, dropout, causal, scale, gqa)?)
    }),
    // Pooling.
    ("aten.max_pool1d.default", |a| {
        one(a.tensor(0)?.f_max_pool1d(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.ints(4)?, a.bool(5)?)?)
    }),
    ("aten.max_pool2d.default", |a| {
        one(a.tensor(0)?.f_max_pool2d(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.ints(4)?, a.bool(5)?)?)
    }),
    ("aten.max_pool3d.default", |a| {
        one(a.tensor(0)?.f_max_pool3d(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.ints(4)?, a.bool(5)?)?)
    }),
    ("aten.max_pool2d_with_indices.default", |a| {
        let x = a.tensor(0)?;
        let (v, i) = x.f_max_pool2d_with_indices(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.ints(4)?, a.bool(5)?)?;
        Ok(vec![v, i])
    }),
    ("aten.avg_pool1d.default", |a| {
        one(a.tensor(0)?.f_avg_pool1d(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.bool(4)?, a.bool(5)?)?)
    }),
    ("aten.avg_pool2d.default", |a| {
        let x = a.tensor(0)?;
        one(x.f_avg_pool2d(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.bool(4)?, a.bool(5)?, a.opt_int(6)?)?)
    }),
    ("aten.avg_pool3d.default", |a| {
        let x = a.tensor(0)?;
        one(x.f_avg_pool3d(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.bool(4)?, a.bool(5)?, a.opt_int(6)?)?)
    }),
    ("aten.adaptive_avg_pool1d.default", |a| one(a.tensor(0)?.f_adaptive_avg_pool1d(a.ints(1)?)?)),
    ("aten.adaptive_avg_pool2d.default", |a| one(a.tensor(0)?.f_adaptive_avg_pool2d(a.ints(1)?)?)),
    ("aten._adaptive_avg_pool2d.default", |a| one(a.tensor(0)?.f_internal_adaptive_avg_pool2d(a.ints(1)?)?)),
    ("aten.adaptive_max_pool2d.default", |a| {
        let (v, i) = a.tensor(0)?.f_adaptive_max_pool2d(a.ints(1)?)?;
        Ok(vec![v, i])
    }),
    // ATen's own dispatch: `[1, 1, 1]` is the mean over the last three dims.
    ("aten.adaptive_avg_pool3d.default", |a| one(a.tensor(0)?.f_adaptive_avg_pool3d(a.ints(1)?)?)),
    // Resampling.
    ("aten.upsample_nearest2d.vec", |a| {
        let x = a.tensor(0)?;
        let (size, scales) = upsample_size(a, x, 2, 1, 2)?;
        one(x.f_upsample_nearest2d(size, scales[0], scales[1])?)
    }),
    ("aten.upsample_bilinear2d.vec", |a| {
        let x = a.tensor(0)?;
        let (size, scales) = upsample_size(a, x, 2, 1, 3)?;
        one(x.f_upsample_bilinear2d(size, a.bool(2)?, scales[0], scales[1])?)
    }),
    ("aten.upsample_bicubic2d.vec", |a| {
        let x = a.tensor(0)?;
        let (size, scales) = upsample_size(a, x, 2, 1, 3)?;
        one(x.f_upsample_bicubic2d(size, a.bool(2)?, scales[0], scales[1])?)
    }),
    ("aten.upsample_linear1d.vec", |a| {
        let x = a.tensor(0)?;
        let (size, scales) = upsample_size(a, x, 1, 1, 3)?;
        one(x.f_upsample_linear1d(size, a.bool(2)?, scales[0])?)
    }),
    ("aten.grid_sampler.default", |a| grid_sampler(a, Tensor::f_grid_sampler)),
    ("aten.grid_sampler_2d.default", |a| grid_sampler(a, Tensor::f_grid_sampler_2d)),
    ("aten.glu.default", |a| one(a.tensor(0)?.f_glu(a.int(1)?)?)),
    ("aten.pixel_shuffle.default", |a| one(a.tensor(0)?.f_pixel_shuffle(a.int(1)?)?)),
    ("aten.im2col.default", |a| one(a.tensor(0)?.f_im2col(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.ints(4)?)?)),
    ("aten.col2im.default", |a| {
        one(a.tensor(0)?.f_col2im(a.ints(1)?, a.ints(2)?, a.ints(3)?, a.ints(4)?, a.ints(5)?)?)
    }),
];

/// `beta * self + alpha * (mat1 @ mat2)`; `self` is ignored when beta is 0 (as in ATen).
fn addmm(a: &Args) -> KResult {
    let (this, m1, m2) = (a.tensor(0)?, a.tensor(1)?, a.tensor(2)?);
    let (beta, alpha) = (a.num(3)?, a.num(4)?);
    if beta.is_one() && alpha.is_one() {
        return one(this.f_addmm(m1, m2)?);
    }
    let mut prod = m1.f_mm(m2)?;
    if !alpha.is_one() {
        prod = prod.f_mul_scalar(alpha.scalar())?;
    }
    if beta.f64() == 0.0 {
        return one(prod);
    }
    let base = if beta.is_one() { this.shallow_clone() } else { this.f_mul_scalar(beta.scalar())? };
    one(prod.f_add(&base)?)
}

/// `transformers::grouped_mm_fallback(input [S, K], weight [E, K, N], offs [E])` as the Python
/// fallback computes it: the offsets are read on the CPU (one copy, as its `offs.tolist()`), then
/// one `mm` per non-empty group, rows `offs[i-1]..offs[i]` of the input times `weight[i]`; rows
/// past `offs[E-1]` are zero. Python's slicing clamps offsets that decrease or leave `[0, S]`;
/// here they are an error, as are shapes that do not fit (before libtorch sees them).
fn grouped_mm_fallback(a: &Args) -> KResult {
    let (x, w, offs) = (a.tensor(0)?, a.tensor(1)?, a.tensor(2)?);
    let (xs, ws, os) = (x.size(), w.size(), offs.size());
    let (&[rows, k], &[experts, wk, n]) = (&xs[..], &ws[..]) else {
        return Err(a.bad(0, format!("expects input [S, K] and weight [E, K, N], got {xs:?} and {ws:?}")));
    };
    if k != wk {
        return Err(a.bad(1, format!("input has {k} columns, weight expects {wk}")));
    }
    if os != [experts] || !matches!(offs.f_kind()?, Kind::Int | Kind::Int64) {
        return Err(
            a.bad(2, format!("offs must be int32 or int64 of shape [{experts}], got {:?} {os:?}", offs.f_kind()?))
        );
    }
    let ends = Vec::<i64>::try_from(offs.f_to_kind(Kind::Int64)?.f_to_device(Device::Cpu)?)?;
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        if end < start || end > rows {
            return Err(a.bad(
                2,
                format!("offs[{i}] = {end} is outside [{start}, {rows}]: offs must be non-decreasing row counts"),
            ));
        }
        if end > start {
            pieces.push(x.f_narrow(0, start, end - start)?.f_mm(&w.f_select(0, i as i64)?)?);
        }
        start = end;
    }
    pieces.push(Tensor::f_zeros([rows - start, n], (x.f_kind()?, x.device()))?);
    one(Tensor::f_cat(&pieces, 0)?)
}

/// `_native_batch_norm_legit.no_stats`: batch norm from the batch's statistics. Checked before
/// libtorch: eval mode without running statistics crashes it, and the CPU kernel reads C
/// elements of weight and bias whatever their size.
fn native_batch_norm_no_stats(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let (w, b) = (a.opt_tensor(1)?, a.opt_tensor(2)?);
    if !a.bool(3)? {
        return Err(a.bad(3, "without running statistics batch norm needs training=True"));
    }
    let sizes = x.size();
    if sizes.len() < 2 || x.numel() == 0 {
        return Err(a.bad(0, format!("expects a non-empty input of at least 2 dims, got {sizes:?}")));
    }
    for (i, p) in [(1, w), (2, b)] {
        if let Some(p) = p {
            if p.size() != [sizes[1]] {
                return Err(a.bad(i, format!("expects [{}] for the channels, got {:?}", sizes[1], p.size())));
            }
        }
    }
    let (y, mean, invstd) = x.f_internal_native_batch_norm_legit_no_stats(w, b, true, a.float(4)?, a.float(5)?)?;
    Ok(vec![y, mean, invstd])
}

/// The output size of an `upsample_*.vec` over `spatial` dims and the scale of each dim to pass on
/// (`None` without scale_factors): exactly one of `output_size` (argument `size_at`) and
/// `scale_factors` (argument `scales_at`) is given; from scales the size is `int64(input * scale)`
/// as ATen's `compute_output_size` computes it (truncated, an error when NaN or past int64).
fn upsample_size(
    a: &Args,
    x: &Tensor,
    spatial: usize,
    size_at: usize,
    scales_at: usize,
) -> Result<(Vec<i64>, Vec<Option<f64>>), super::KernelError> {
    let dims = x.size();
    if dims.len() != spatial + 2 {
        return Err(a.bad(0, format!("expected a {}-d input, got {dims:?}", spatial + 2)));
    }
    match (a.opt_ints(size_at)?, a.opt_floats(scales_at)?) {
        (Some(size), None) if size.len() == spatial => Ok((size, vec![None; spatial])),
        (None, Some(scales)) if scales.len() == spatial => {
            let mut size = Vec::with_capacity(spatial);
            for (&n, &s) in dims[2..].iter().zip(&scales) {
                let out = n as f64 * s;
                if !(out > -9.2e18 && out < 9.2e18) {
                    return Err(a.bad(scales_at, format!("output size {n} * {s} cannot be converted to int64")));
                }
                size.push(out as i64);
            }
            Ok((size, scales.into_iter().map(Some).collect()))
        }
        _ => Err(a.bad(
            size_at,
            format!("exactly one of output_size ({spatial} ints) and scale_factors ({spatial} floats) must be given"),
        )),
    }
}

/// `grid_sampler[_2d](input, grid, interpolation_mode, padding_mode, align_corners)` through
/// `sample`. The modes are checked here: libtorch's CPU kernel takes any int (what its enum does
/// not name is undefined), its meta function refuses all but 0..=2.
fn grid_sampler(a: &Args, sample: fn(&Tensor, &Tensor, i64, i64, bool) -> Result<Tensor, tch::TchError>) -> KResult {
    let (x, grid) = (a.tensor(0)?, a.tensor(1)?);
    let (interpolation, padding) = (a.int(2)?, a.int(3)?);
    if !(0..=2).contains(&interpolation) {
        return Err(a.bad(2, format!("invalid interpolation mode {interpolation}: 0 bilinear, 1 nearest, 2 bicubic")));
    }
    if !(0..=2).contains(&padding) {
        return Err(a.bad(3, format!("invalid padding mode {padding}: 0 zeros, 1 border, 2 reflection")));
    }
    one(sample(x, grid, interpolation, padding, a.bool(4)?)?)
}
