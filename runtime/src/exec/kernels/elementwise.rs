//! Element-wise math, comparisons and activations (the registry's `elementwise.rs`).

use tch::Tensor;

use super::{like_self, one, Args, KResult, KernelFn};
use crate::exec::args::Num;

pub(super) const KERNELS: &[(&str, KernelFn)] = &[
    ("aten.add.Tensor", add_tensor),
    ("aten.add_.Tensor", add_tensor_),
    ("aten.add.Scalar", add_scalar),
    ("aten.sub.Tensor", sub_tensor),
    ("aten.sub.Scalar", sub_scalar),
    ("aten.rsub.Tensor", rsub_tensor),
    ("aten.rsub.Scalar", rsub_scalar),
    ("aten.mul.Tensor", |a| one(a.tensor(0)?.f_mul(a.tensor(1)?)?)),
    ("aten.mul_.Tensor", |a| one(like_self(a.tensor(0)?.f_mul(a.tensor(1)?)?, a.tensor(0)?)?)),
    ("aten.mul.Scalar", |a| one(a.tensor(0)?.f_mul_scalar(a.scalar(1)?)?)),
    ("aten.div.Tensor", |a| one(a.tensor(0)?.f_div(a.tensor(1)?)?)),
    ("aten.div.Scalar", |a| one(a.tensor(0)?.f_div_scalar(a.scalar(1)?)?)),
    ("aten.div.Tensor_mode", div_tensor_mode),
    ("aten.div.Scalar_mode", div_scalar_mode),
    ("aten.floor_divide.default", |a| one(a.tensor(0)?.f_floor_divide(a.tensor(1)?)?)),
    ("aten.remainder.Tensor", |a| one(a.tensor(0)?.f_remainder_tensor(a.tensor(1)?)?)),
    ("aten.remainder.Scalar", |a| one(a.tensor(0)?.f_remainder(a.scalar(1)?)?)),
    ("aten.fmod.Tensor", |a| one(a.tensor(0)?.f_fmod_tensor(a.tensor(1)?)?)),
    ("aten.fmod.Scalar", |a| one(a.tensor(0)?.f_fmod(a.scalar(1)?)?)),
    ("aten.pow.Scalar", |a| one(Tensor::f_pow_scalar(a.scalar(0)?, a.tensor(1)?)?)),
    ("aten.pow.Tensor_Scalar", |a| one(a.tensor(0)?.f_pow_tensor_scalar(a.scalar(1)?)?)),
    ("aten.pow.Tensor_Tensor", |a| one(a.tensor(0)?.f_pow(a.tensor(1)?)?)),
    ("aten.maximum.default", |a| one(a.tensor(0)?.f_maximum(a.tensor(1)?)?)),
    ("aten.minimum.default", |a| one(a.tensor(0)?.f_minimum(a.tensor(1)?)?)),
    ("aten.max.other", |a| one(a.tensor(0)?.f_maximum(a.tensor(1)?)?)),
    ("aten.min.other", |a| one(a.tensor(0)?.f_minimum(a.tensor(1)?)?)),
    ("aten.atan2.default", |a| one(a.tensor(0)?.f_atan2(a.tensor(1)?)?)),
    // Unary math.
    ("aten.neg.default", |a| one(a.tensor(0)?.f_neg()?)),
    ("aten.abs.default", |a| one(a.tensor(0)?.f_abs()?)),
    ("aten.sign.default", |a| one(a.tensor(0)?.f_sign()?)),
    ("aten.square.default", |a| one(a.tensor(0)?.f_square()?)),
    ("aten.floor.default", |a| one(a.tensor(0)?.f_floor()?)),
    ("aten.ceil.default", |a| one(a.tensor(0)?.f_ceil()?)),
    ("aten.round.default", |a| one(a.tensor(0)?.f_round()?)),
    ("aten.trunc.default", |a| one(a.tensor(0)?.f_trunc()?)),
    ("aten.reciprocal.default", |a| one(a.tensor(0)?.f_reciprocal()?)),
    ("aten.sqrt.default", |a| one(a.tensor(0)?.f_sqrt()?)),
    ("aten.rsqrt.default", |a| one(a.tensor(0)?.f_rsqrt()?)),
    ("aten.exp.default", |a| one(a.tensor(0)?.f_exp()?)),
    ("aten.exp2.default", |a| one(a.tensor(0)?.f_exp2()?)),
    ("aten.expm1.default", |a| one(a.tensor(0)?.f_expm1()?)),
    ("aten.log.default", |a| one(a.tensor(0)?.f_log()?)),
    ("aten.log2.default", |a| one(a.tensor(0)?.f_log2()?)),
    ("aten.log10.default", |a| one(a.tensor(0)?.f_log10()?)),
    ("aten.log1p.default", |a| one(a.tensor(0)?.f_log1p()?)),
    ("aten.sin.default", |a| one(a.tensor(0)?.f_sin()?)),
    ("aten.cos.default", |a| one(a.tensor(0)?.f_cos()?)),
    ("aten.tan.default", |a| one(a.tensor(0)?.f_tan()?)),
    ("aten.asin.default", |a| one(a.tensor(0)?.f_asin()?)),
    ("aten.acos.default", |a| one(a.tensor(0)?.f_acos()?)),
    ("aten.atan.default", |a| one(a.tensor(0)?.f_atan()?)),
    ("aten.sinh.default", |a| one(a.tensor(0)?.f_sinh()?)),
    ("aten.cosh.default", |a| one(a.tensor(0)?.f_cosh()?)),
    ("aten.asinh.default", |a| one(a.tensor(0)?.f_asinh()?)),
    ("aten.acosh.default", |a| one(a.tensor(0)?.f_acosh()?)),
    ("aten.atanh.default", |a| one(a.tensor(0)?.f_atanh()?)),
    ("aten.erf.default", |a| one(a.tensor(0)?.f_erf()?)),
    // Clamping and activations.
    ("aten.clamp.default", clamp),
    ("aten.clamp.Tensor", |a| one(a.tensor(0)?.f_clamp_tensor(a.opt_tensor(1)?, a.opt_tensor(2)?)?)),
    ("aten.clamp_min.default", |a| one(a.tensor(0)?.f_clamp_min(a.scalar(1)?)?)),
    ("aten.clamp_max.default", |a| one(a.tensor(0)?.f_clamp_max(a.scalar(1)?)?)),
    ("aten.relu.default", |a| one(a.tensor(0)?.f_relu()?)),
    ("aten.relu_.default", |a| one(a.tensor(0)?.f_relu()?)),
    ("aten.relu6.default", |a| one(a.tensor(0)?.f_relu6()?)),
    ("aten.hardtanh.default", |a| one(a.tensor(0)?.f_clamp(a.scalar(1)?, a.scalar(2)?)?)),
    ("aten.hardtanh_.default", |a| one(a.tensor(0)?.f_clamp(a.scalar(1)?, a.scalar(2)?)?)),
    ("aten.gelu.default", |a| one(a.tensor(0)?.f_gelu(a.str(1)?)?)),
    ("aten.silu.default", |a| one(a.tensor(0)?.f_silu()?)),
    ("aten.silu_.default", |a| one(a.tensor(0)?.f_silu()?)),
    ("aten.sigmoid.default", |a| one(a.tensor(0)?.f_sigmoid()?)),
    ("aten.tanh.default", |a| one(a.tensor(0)?.f_tanh()?)),
    ("aten.mish.default", |a| one(a.tensor(0)?.f_mish()?)),
    ("aten.hardswish.default", |a| one(a.tensor(0)?.f_hardswish()?)),
    ("aten.hardsigmoid.default", |a| one(a.tensor(0)?.f_hardsigmoid()?)),
    ("aten.leaky_relu.default", leaky_relu),
    ("aten.elu.default", elu),
    ("aten.celu.default", celu),
    ("aten.selu.default", |a| one(a.tensor(0)?.f_selu()?)),
    ("aten.softplus.default", softplus),
    ("aten.prelu.default", |a| one(a.tensor(0)?.f_prelu(a.tensor(1)?)?)),
    // Comparisons.
    ("aten.eq.Tensor", |a| one(a.tensor(0)?.f_eq_tensor(a.tensor(1)?)?)),
    ("aten.eq.Scalar", |a| one(a.tensor(0)?.f_eq(a.scalar(1)?)?)),
    ("aten.ne.Tensor", |a| one(a.tensor(0)?.f_ne_tensor(a.tensor(1)?)?)),
    ("aten.ne.Scalar", |a| one(a.tensor(0)?.f_ne(a.scalar(1)?)?)),
    ("aten.lt.Tensor", |a| one(a.tensor(0)?.f_lt_tensor(a.tensor(1)?)?)),
    ("aten.lt.Scalar", |a| one(a.tensor(0)?.f_lt(a.scalar(1)?)?)),
    ("aten.le.Tensor", |a| one(a.tensor(0)?.f_le_tensor(a.tensor(1)?)?)),
    ("aten.le.Scalar", |a| one(a.tensor(0)?.f_le(a.scalar(1)?)?)),
    ("aten.gt.Tensor", |a| one(a.tensor(0)?.f_gt_tensor(a.tensor(1)?)?)),
    ("aten.gt.Scalar", |a| one(a.tensor(0)?.f_gt(a.scalar(1)?)?)),
    ("aten.ge.Tensor", |a| one(a.tensor(0)?.f_ge_tensor(a.tensor(1)?)?)),
    ("aten.ge.Scalar", |a| one(a.tensor(0)?.f_ge(a.scalar(1)?)?)),
    // Logic and bits.
    ("aten.logical_not.default", |a| one(a.tensor(0)?.f_logical_not()?)),
    ("aten.logical_and.default", |a| one(a.tensor(0)?.f_logical_and(a.tensor(1)?)?)),
    ("aten.logical_or.default", |a| one(a.tensor(0)?.f_logical_or(a.tensor(1)?)?)),
    ("aten.logical_xor.default", |a| one(a.tensor(0)?.f_logical_xor(a.tensor(1)?)?)),
    ("aten.bitwise_not.default", |a| one(a.tensor(0)?.f_bitwise_not()?)),
    ("aten.bitwise_and.Tensor", |a| one(a.tensor(0)?.f_bitwise_and_tensor(a.tensor(1)?)?)),
    ("aten.bitwise_and.Scalar", |a| one(a.tensor(0)?.f_bitwise_and(a.scalar(1)?)?)),
    ("aten.bitwise_or.Tensor", |a| one(a.tensor(0)?.f_bitwise_or_tensor(a.tensor(1)?)?)),
    ("aten.bitwise_or.Scalar", |a| one(a.tensor(0)?.f_bitwise_or(a.scalar(1)?)?)),
    ("aten.bitwise_xor.Tensor", |a| one(a.tensor(0)?.f_bitwise_xor_tensor(a.tensor(1)?)?)),
    ("aten.__and__.Tensor", |a| one(a.tensor(0)?.f_bitwise_and_tensor(a.tensor(1)?)?)),
    ("aten.__or__.Tensor", |a| one(a.tensor(0)?.f_bitwise_or_tensor(a.tensor(1)?)?)),
    ("aten.isnan.default", |a| one(a.tensor(0)?.f_isnan()?)),
    ("aten.isinf.default", |a| one(a.tensor(0)?.f_isinf()?)),
    // Selection.
    ("aten.where.self", |a| one(a.tensor(1)?.f_where_self(a.tensor(0)?, a.tensor(2)?)?)),
    ("aten.where.ScalarOther", |a| one(a.tensor(1)?.f_where_scalarother(a.tensor(0)?, a.scalar(2)?)?)),
    ("aten.where.ScalarSelf", |a| one(Tensor::f_where_scalarself(a.tensor(0)?, a.scalar(1)?, a.tensor(2)?)?)),
    ("aten.masked_fill.Scalar", |a| one(a.tensor(0)?.f_masked_fill(a.tensor(1)?, a.scalar(2)?)?)),
    ("aten.masked_fill.Tensor", |a| one(a.tensor(0)?.f_masked_fill_tensor(a.tensor(1)?, a.tensor(2)?)?)),
];

/// `alpha * other`, skipped when alpha is 1.
fn scaled(other: &Tensor, alpha: Num) -> Result<Tensor, super::KernelError> {
    if alpha.is_one() {
        Ok(other.shallow_clone())
    } else {
        Ok(other.f_mul_scalar(alpha.scalar())?)
    }
}

fn add_tensor(a: &Args) -> KResult {
    one(a.tensor(0)?.f_add(&scaled(a.tensor(1)?, a.num(2)?)?)?)
}

fn add_tensor_(a: &Args) -> KResult {
    let this = a.tensor(0)?;
    one(like_self(this.f_add(&scaled(a.tensor(1)?, a.num(2)?)?)?, this)?)
}

fn add_scalar(a: &Args) -> KResult {
    one(a.tensor(0)?.f_add_scalar(a.num(1)?.mul(a.num(2)?).scalar())?)
}

fn sub_tensor(a: &Args) -> KResult {
    one(a.tensor(0)?.f_sub(&scaled(a.tensor(1)?, a.num(2)?)?)?)
}

fn sub_scalar(a: &Args) -> KResult {
    one(a.tensor(0)?.f_sub_scalar(a.num(1)?.mul(a.num(2)?).scalar())?)
}

/// `other - alpha * self`.
fn rsub_tensor(a: &Args) -> KResult {
    one(a.tensor(1)?.f_sub(&scaled(a.tensor(0)?, a.num(2)?)?)?)
}

/// `other - alpha * self` with a Scalar `other`.
fn rsub_scalar(a: &Args) -> KResult {
    one(scaled(a.tensor(0)?, a.num(2)?)?.f_rsub_scalar(a.scalar(1)?)?)
}

fn div_tensor_mode(a: &Args) -> KResult {
    let (x, y) = (a.tensor(0)?, a.tensor(1)?);
    one(match a.opt_str(2)? {
        None => x.f_div(y)?,
        Some(mode @ ("trunc" | "floor")) => x.f_div_tensor_mode(y, mode)?,
        Some(other) => {
            return Err(a.bad(2, format!("rounding_mode must be None, \"trunc\" or \"floor\", got {other:?}")))
        }
    })
}

fn div_scalar_mode(a: &Args) -> KResult {
    let (x, y) = (a.tensor(0)?, a.scalar(1)?);
    one(match a.opt_str(2)? {
        None => x.f_div_scalar(y)?,
        Some(mode @ ("trunc" | "floor")) => x.f_div_scalar_mode(y, mode)?,
        Some(other) => {
            return Err(a.bad(2, format!("rounding_mode must be None, \"trunc\" or \"floor\", got {other:?}")))
        }
    })
}

fn clamp(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    one(match (a.opt_scalar(1)?, a.opt_scalar(2)?) {
        (Some(lo), Some(hi)) => x.f_clamp(lo, hi)?,
        (Some(lo), None) => x.f_clamp_min(lo)?,
        (None, Some(hi)) => x.f_clamp_max(hi)?,
        (None, None) => return Err(a.bad(1, "at least one of min and max must be given")),
    })
}

/// `x > 0 ? x : x * slope`.
fn leaky_relu(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let slope = a.scalar(1)?;
    one(x.f_where_self(&x.f_gt(0)?, &x.f_mul_scalar(slope)?)?)
}

/// `scale * (x > 0 ? x : alpha * (exp(x * input_scale) - 1))`.
fn elu(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let (alpha, scale, input_scale) = (a.num(1)?, a.num(2)?, a.num(3)?);
    let neg = x.f_mul_scalar(input_scale.scalar())?.f_expm1()?.f_mul_scalar(alpha.scalar())?;
    let y = x.f_where_self(&x.f_gt(0)?, &neg)?;
    one(if scale.is_one() { y } else { y.f_mul_scalar(scale.scalar())? })
}

/// `max(0, x) + min(0, alpha * (exp(x / alpha) - 1))`.
fn celu(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let alpha = a.float(1)?;
    if alpha == 0.0 {
        return Err(a.bad(1, "alpha must not be 0"));
    }
    let neg = x.f_div_scalar(alpha)?.f_expm1()?.f_mul_scalar(alpha)?;
    one(x.f_where_self(&x.f_gt(0)?, &neg)?)
}

/// `x * beta > threshold ? x : log1p(exp(x * beta)) / beta`.
fn softplus(a: &Args) -> KResult {
    let x = a.tensor(0)?;
    let (beta, threshold) = (a.float(1)?, a.float(2)?);
    if beta == 0.0 {
        return Err(a.bad(1, "beta must not be 0"));
    }
    let xb = x.f_mul_scalar(beta)?;
    let soft = xb.f_exp()?.f_log1p()?.f_div_scalar(beta)?;
    let y = x.f_where_self(&xb.f_gt(threshold)?, &soft)?;
    one(if y.f_kind()? == x.f_kind()? { y } else { y.f_to_dtype(x.f_kind()?, false, false)? })
}
