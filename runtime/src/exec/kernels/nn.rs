//! Matmul, convolution, norms, softmax, attention, embedding, pooling, resampling (the registry's
//! `nn.rs`).

use tch::Tensor;

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
    // Resampling.
    ("aten.upsample_nearest2d.vec", |a| {
        let x = a.tensor(0)?;
        let (size, scales) = upsample_size(a, x, 1, 2)?;
        one(x.f_upsample_nearest2d(size, scales.map(|s| s[0]), scales.map(|s| s[1]))?)
    }),
    ("aten.upsample_bilinear2d.vec", |a| {
        let x = a.tensor(0)?;
        let (size, scales) = upsample_size(a, x, 1, 3)?;
        one(x.f_upsample_bilinear2d(size, a.bool(2)?, scales.map(|s| s[0]), scales.map(|s| s[1]))?)
    }),
    ("aten.glu.default", |a| one(a.tensor(0)?.f_glu(a.int(1)?)?)),
    ("aten.pixel_shuffle.default", |a| one(a.tensor(0)?.f_pixel_shuffle(a.int(1)?)?)),
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

/// The output size of a 2-d `upsample_*.vec` and the scales to pass on: exactly one of
/// `output_size` (argument `size_at`) and `scale_factors` (argument `scales_at`) is given; from
/// scales the size is `floor(input * scale)` as ATen computes it.
fn upsample_size(
    a: &Args,
    x: &Tensor,
    size_at: usize,
    scales_at: usize,
) -> Result<(Vec<i64>, Option<[f64; 2]>), super::KernelError> {
    let dims = x.size();
    if dims.len() != 4 {
        return Err(a.bad(0, format!("expected a 4-d input, got {dims:?}")));
    }
    match (a.opt_ints(size_at)?, a.opt_floats(scales_at)?) {
        (Some(size), None) if size.len() == 2 => Ok((size, None)),
        (None, Some(s)) if s.len() == 2 => {
            let size = vec![(dims[2] as f64 * s[0]).floor() as i64, (dims[3] as f64 * s[1]).floor() as i64];
            Ok((size, Some([s[0], s[1]])))
        }
        _ => Err(a.bad(size_at, "exactly one of output_size (2 ints) and scale_factors (2 floats) must be given")),
    }
}
