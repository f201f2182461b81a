//! Element-wise math, comparisons and activations.

use super::facts::{Comparison, Fold};
use super::scalar::{BinaryFn, Scalar, UnaryFn};
use super::shape::*;
use super::{op, Call, InferError, OpClass::Compute, OpDecl, ScalarArg};
use crate::graph::Arg;
use crate::types::{DType, TensorType};

/// Error unless `dtype` is floating or complex: the op has no integer or bool kernel.
fn need_float(c: &Call, dtype: DType) -> Result<(), InferError> {
    if dtype.is_floating() || dtype.is_complex() {
        Ok(())
    } else {
        Err(c.err(format!("not implemented for {dtype} inputs")))
    }
}

/// Error for a bool result: the op has no bool kernel.
fn need_not_bool(c: &Call, dtype: DType) -> Result<(), InferError> {
    if dtype == DType::Bool {
        return Err(c.err("not implemented for bool inputs"));
    }
    Ok(())
}

/// Error unless `dtype` is an integer or bool (bitwise ops).
fn need_bits(c: &Call, dtype: DType) -> Result<(), InferError> {
    if dtype.is_integral() || dtype == DType::Bool {
        Ok(())
    } else {
        Err(c.err(format!("bitwise op on {dtype}")))
    }
}

fn unary_same(c: &Call) -> Result<Vec<TensorType>, InferError> {
    Ok(vec![c.tensor(0)?.clone()])
}

fn unary_float(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![t.with_dtype(float_of(t.dtype))])
}

fn unary_bool(c: &Call) -> Result<Vec<TensorType>, InferError> {
    Ok(vec![c.tensor(0)?.with_dtype(DType::Bool)])
}

/// `neg`, `abs`, `floor`, `relu`, `hardtanh`: keep the dtype; no bool kernel.
fn unary_no_bool(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    need_not_bool(c, t.dtype)?;
    Ok(vec![t.clone()])
}

/// `gelu`, `silu`, `elu` and most activations: floating inputs only, dtype kept.
fn unary_float_only(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    need_float(c, t.dtype)?;
    Ok(vec![t.clone()])
}

fn gelu(c: &Call) -> Result<Vec<TensorType>, InferError> {
    match c.str(1)? {
        "none" | "tanh" => unary_float_only(c),
        other => Err(c.err(format!("approximate must be \"none\" or \"tanh\", got \"{other}\""))),
    }
}

/// `square(x)` is `pow(x, 2)`: bool becomes int64.
fn square(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    Ok(vec![t.with_dtype(if t.dtype == DType::Bool { DType::Int64 } else { t.dtype })])
}

fn bitwise_not(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    need_bits(c, t.dtype)?;
    Ok(vec![t.clone()])
}

fn binary(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(0)?, c.tensor(1)?);
    let shape = broadcast(c, &a.shape, &b.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Tensor(a), Operand::Tensor(b)]), shape)])
}

fn binary_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let a = c.tensor(0)?;
    let dtype = result_type(&[Operand::Tensor(a), Operand::Scalar(c.scalar(1)?)]);
    Ok(vec![a.with_dtype(dtype)])
}

/// `pow.Scalar(Scalar self, Tensor exponent)`.
fn scalar_binary(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let b = c.tensor(1)?;
    let dtype = result_type(&[Operand::Scalar(c.scalar(0)?), Operand::Tensor(b)]);
    Ok(vec![b.with_dtype(dtype)])
}

/// `alpha` (argument #2) must be an integer for integer results and may be bool only for bool ones.
fn check_alpha(c: &Call, out: Vec<TensorType>) -> Result<Vec<TensorType>, InferError> {
    let dtype = out.first().map_or(DType::Float32, |t| t.dtype);
    match c.scalar(2)? {
        ScalarArg::Bool(_) if dtype != DType::Bool => Err(c.err("a bool alpha needs a bool result")),
        ScalarArg::Float(_) if !dtype.is_floating() && !dtype.is_complex() => {
            Err(c.err(format!("alpha must not be a float for a {dtype} result")))
        }
        _ => Ok(out),
    }
}

fn add(c: &Call) -> Result<Vec<TensorType>, InferError> {
    check_alpha(c, binary(c)?)
}

fn add_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    check_alpha(c, binary_scalar(c)?)
}

/// `sub`/`rsub`: PyTorch refuses a bool operand (tensor or scalar).
fn no_bool_operand(c: &Call) -> Result<(), InferError> {
    let bool_tensor = c.all_tensor_inputs().iter().any(|t| t.dtype == DType::Bool);
    if bool_tensor || matches!(c.scalar(1), Ok(ScalarArg::Bool(_))) {
        return Err(c.err("subtraction with a bool operand is not supported"));
    }
    Ok(())
}

fn sub(c: &Call) -> Result<Vec<TensorType>, InferError> {
    no_bool_operand(c)?;
    add(c)
}

fn sub_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    no_bool_operand(c)?;
    add_scalar(c)
}

/// PyTorch's `canCast`: no complex to real, no float to integer, nothing but bool to bool.
fn can_cast(from: DType, to: DType) -> bool {
    !(from.is_complex() && !to.is_complex()
        || from.is_floating() && (to.is_integral() || to == DType::Bool)
        || from != DType::Bool && to == DType::Bool)
}

/// An in-place op: the out-of-place result must have `self`'s shape and cast to its dtype.
fn in_place(c: &Call, out: Vec<TensorType>) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    let Some(r) = out.first() else { return Err(c.err("no result")) };
    if r.shape != t.shape {
        return Err(c.err(format!(
            "output with shape {} does not match the broadcast shape {}",
            fmt_shape(&t.shape),
            fmt_shape(&r.shape)
        )));
    }
    if !can_cast(r.dtype, t.dtype) {
        return Err(c.err(format!("result type {} cannot be cast to {}", r.dtype, t.dtype)));
    }
    Ok(vec![t.clone()])
}

fn add_(c: &Call) -> Result<Vec<TensorType>, InferError> {
    in_place(c, add(c)?)
}

fn mul_(c: &Call) -> Result<Vec<TensorType>, InferError> {
    in_place(c, binary(c)?)
}

/// `floor_divide`, `remainder`, `fmod`: any dtype but bool.
fn binary_no_bool(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = binary(c)?;
    need_not_bool(c, out[0].dtype)?;
    Ok(out)
}

fn binary_scalar_no_bool(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = binary_scalar(c)?;
    need_not_bool(c, out[0].dtype)?;
    Ok(out)
}

fn bitwise(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = binary(c)?;
    need_bits(c, out[0].dtype)?;
    Ok(out)
}

fn bitwise_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = binary_scalar(c)?;
    need_bits(c, out[0].dtype)?;
    Ok(out)
}

/// `pow.Tensor_Scalar`: no bool result; integers to a negative integer power are refused.
fn pow_tensor_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let t = c.tensor(0)?;
    if let ScalarArg::Int(e) = c.scalar(1)? {
        if e < 0 && (t.dtype.is_integral() || t.dtype == DType::Bool) {
            return Err(c.err("integers to negative integer powers are not allowed"));
        }
    }
    binary_scalar_no_bool(c)
}

fn pow_tensor_tensor(c: &Call) -> Result<Vec<TensorType>, InferError> {
    binary_no_bool(c)
}

fn pow_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = scalar_binary(c)?;
    need_not_bool(c, out[0].dtype)?;
    Ok(out)
}

fn compare(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(0)?, c.tensor(1)?);
    Ok(vec![TensorType::with_dims(DType::Bool, broadcast(c, &a.shape, &b.shape)?)])
}

fn compare_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    c.scalar(1)?;
    Ok(vec![c.tensor(0)?.with_dtype(DType::Bool)])
}

fn true_div(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let mut out = binary(c)?;
    out[0].dtype = float_of(out[0].dtype);
    Ok(out)
}

fn true_div_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let mut out = binary_scalar(c)?;
    out[0].dtype = float_of(out[0].dtype);
    Ok(out)
}

/// `div.Tensor_mode`: true division unless a rounding mode ("trunc" or "floor") is given.
fn div_mode(c: &Call) -> Result<Vec<TensorType>, InferError> {
    match c.args.get(2) {
        Some(Arg::Str(m)) if m == "trunc" || m == "floor" => binary_no_bool(c),
        Some(Arg::Str(m)) => Err(c.err(format!("rounding_mode must be None, \"trunc\" or \"floor\", got \"{m}\""))),
        _ => true_div(c),
    }
}

fn div_mode_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    match c.args.get(2) {
        Some(Arg::Str(m)) if m == "trunc" || m == "floor" => binary_scalar_no_bool(c),
        Some(Arg::Str(m)) => Err(c.err(format!("rounding_mode must be None, \"trunc\" or \"floor\", got \"{m}\""))),
        _ => true_div_scalar(c),
    }
}

/// `where` accepts a bool condition (uint8 is deprecated but still accepted).
fn check_condition(c: &Call, cond: &TensorType) -> Result<(), InferError> {
    if cond.dtype != DType::Bool && cond.dtype != DType::Uint8 {
        return Err(c.err(format!("condition must be bool, got {}", cond.dtype)));
    }
    Ok(())
}

/// `where.self(condition, self, other)`.
fn where_self(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (cond, a, b) = (c.tensor(0)?, c.tensor(1)?, c.tensor(2)?);
    check_condition(c, cond)?;
    let shape = broadcast(c, &broadcast(c, &cond.shape, &a.shape)?, &b.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Tensor(a), Operand::Tensor(b)]), shape)])
}

/// `where.ScalarOther(condition, self, Scalar other)`.
fn where_scalar_other(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (cond, a) = (c.tensor(0)?, c.tensor(1)?);
    check_condition(c, cond)?;
    let shape = broadcast(c, &cond.shape, &a.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Tensor(a), Operand::Scalar(c.scalar(2)?)]), shape)])
}

/// `where.ScalarSelf(condition, Scalar self, other)`.
fn where_scalar_self(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (cond, b) = (c.tensor(0)?, c.tensor(2)?);
    check_condition(c, cond)?;
    let shape = broadcast(c, &cond.shape, &b.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Scalar(c.scalar(1)?), Operand::Tensor(b)]), shape)])
}

/// `masked_fill(self, mask, value)`: `self`'s dtype, `self` and the bool mask broadcast together;
/// a tensor value must be 0-dim.
fn masked_fill(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, mask) = (c.tensor(0)?, c.tensor(1)?);
    if mask.dtype != DType::Bool {
        return Err(c.err(format!("the mask must be bool, got {}", mask.dtype)));
    }
    if let Some(Arg::Tensor(_)) = c.args.get(2) {
        if c.tensor(2)?.rank() != 0 {
            return Err(c.err("the fill value must be a 0-dim tensor"));
        }
    }
    Ok(vec![TensorType::with_dims(a.dtype, broadcast(c, &a.shape, &mask.shape)?)])
}

/// `clamp(self, Scalar? min, Scalar? max)`.
fn clamp_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let a = c.tensor(0)?;
    let mut ops = vec![Operand::Tensor(a)];
    for i in 1..c.args.len() {
        if !matches!(c.args[i], Arg::None) {
            ops.push(Operand::Scalar(c.scalar(i)?));
        }
    }
    if ops.len() == 1 {
        return Err(c.err("clamp needs at least one of min and max"));
    }
    Ok(vec![a.with_dtype(result_type(&ops))])
}

/// `clamp.Tensor(self, Tensor? min, Tensor? max)`.
fn clamp_tensor(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let a = c.tensor(0)?;
    let mut shape = a.shape.clone();
    let mut ops = vec![Operand::Tensor(a)];
    for i in 1..3 {
        if let Some(t) = c.opt_tensor(i)? {
            shape = broadcast(c, &shape, &t.shape)?;
            ops.push(Operand::Tensor(t));
        }
    }
    if ops.len() == 1 {
        return Err(c.err("clamp needs at least one of min and max"));
    }
    Ok(vec![TensorType::with_dims(result_type(&ops), shape)])
}

/// `prelu(self, weight)`: one weight, or one per channel (dim 1; a 1-D input has one channel).
fn prelu(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, w) = (c.tensor(0)?, c.tensor(1)?);
    need_float(c, a.dtype)?;
    if w.rank() > 1 {
        return Err(c.err("prelu weight must be 0-D or 1-D"));
    }
    let channels = if a.rank() >= 2 { a.shape[1].as_const() } else { Some(1) };
    if let (Some(n), Some(ch)) = (w.numel().as_const(), channels) {
        if n != 1 && n != ch {
            return Err(c.err(format!("{n} prelu weights for {ch} channels")));
        }
    }
    Ok(vec![a.clone()])
}

/// Every element-wise op.
pub(super) const OPS: &[OpDecl] = &[
    // Arithmetic.
    op("aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", Compute, add, cost_elementwise)
        .fold(Fold::Add)
        .scalar(Scalar::WithAlpha(BinaryFn::Add)),
    op("aten::add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", Compute, add_scalar, cost_elementwise)
        .fold(Fold::Add)
        .scalar(Scalar::WithAlpha(BinaryFn::Add)),
    op(
        "aten::add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)",
        Compute,
        add_,
        cost_elementwise,
    ),
    op("aten::sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", Compute, sub, cost_elementwise)
        .fold(Fold::Sub)
        .scalar(Scalar::WithAlpha(BinaryFn::Sub)),
    op("aten::sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", Compute, sub_scalar, cost_elementwise)
        .fold(Fold::Sub)
        .scalar(Scalar::WithAlpha(BinaryFn::Sub)),
    op("aten::rsub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", Compute, sub, cost_elementwise)
        .scalar(Scalar::ReversedWithAlpha),
    op("aten::rsub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor", Compute, sub_scalar, cost_elementwise)
        .scalar(Scalar::ReversedWithAlpha),
    op("aten::mul.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise)
        .fold(Fold::Mul)
        .scalar(Scalar::Binary(BinaryFn::Mul)),
    op("aten::mul.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar, cost_elementwise)
        .fold(Fold::Mul)
        .scalar(Scalar::Binary(BinaryFn::Mul)),
    op("aten::mul_.Tensor(Tensor(a!) self, Tensor other) -> Tensor(a!)", Compute, mul_, cost_elementwise),
    op("aten::div.Tensor(Tensor self, Tensor other) -> Tensor", Compute, true_div, cost_elementwise)
        .fold(Fold::Div)
        .scalar(Scalar::Binary(BinaryFn::Div)),
    op("aten::div.Scalar(Tensor self, Scalar other) -> Tensor", Compute, true_div_scalar, cost_elementwise)
        .fold(Fold::Div)
        .scalar(Scalar::Binary(BinaryFn::Div)),
    op(
        "aten::div.Tensor_mode(Tensor self, Tensor other, *, str? rounding_mode) -> Tensor",
        Compute,
        div_mode,
        cost_elementwise,
    ),
    op(
        "aten::div.Scalar_mode(Tensor self, Scalar other, *, str? rounding_mode) -> Tensor",
        Compute,
        div_mode_scalar,
        cost_elementwise,
    ),
    op("aten::floor_divide(Tensor self, Tensor other) -> Tensor", Compute, binary_no_bool, cost_elementwise)
        .fold(Fold::FloorDiv),
    op("aten::remainder.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary_no_bool, cost_elementwise),
    op("aten::remainder.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar_no_bool, cost_elementwise),
    op("aten::fmod.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary_no_bool, cost_elementwise),
    op("aten::fmod.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar_no_bool, cost_elementwise),
    op(
        "aten::pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor",
        Compute,
        pow_tensor_scalar,
        cost_transcendental,
    )
    .scalar(Scalar::Binary(BinaryFn::Pow)),
    op(
        "aten::pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor",
        Compute,
        pow_tensor_tensor,
        cost_transcendental,
    )
    .scalar(Scalar::Binary(BinaryFn::Pow)),
    op("aten::pow.Scalar(Scalar self, Tensor exponent) -> Tensor", Compute, pow_scalar, cost_transcendental),
    op("aten::maximum(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Max)),
    op("aten::minimum(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Min)),
    // `torch.max(a, b)` / `torch.min(a, b)`: the elementwise maximum / minimum (T5's relative
    // position buckets use `torch.min`).
    op("aten::max.other(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Max)),
    op("aten::min.other(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Min)),
    op("aten::atan2(Tensor self, Tensor other) -> Tensor", Compute, true_div, cost_transcendental),
    op("aten::neg(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise)
        .fold(Fold::Neg)
        .scalar(Scalar::Unary(UnaryFn::Neg)),
    op("aten::abs(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise)
        .scalar(Scalar::Unary(UnaryFn::Abs)),
    op("aten::sign(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::square(Tensor self) -> Tensor", Compute, square, cost_elementwise).scalar(Scalar::Unary(UnaryFn::Square)),
    op("aten::floor(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise)
        .scalar(Scalar::Unary(UnaryFn::Floor)),
    op("aten::ceil(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise)
        .scalar(Scalar::Unary(UnaryFn::Ceil)),
    op("aten::round(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise),
    op("aten::trunc(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise)
        .scalar(Scalar::Unary(UnaryFn::Trunc)),
    op("aten::reciprocal(Tensor self) -> Tensor", Compute, unary_float, cost_elementwise)
        .scalar(Scalar::Unary(UnaryFn::Reciprocal)),
    op("aten::sqrt(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Sqrt)),
    op("aten::rsqrt(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Rsqrt)),
    op("aten::exp(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Exp)),
    op("aten::exp2(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::expm1(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::log(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Log)),
    op("aten::log2(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::log10(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::log1p(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::sin(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::cos(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::tan(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::asin(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::acos(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::atan(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::sinh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::cosh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::asinh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::acosh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::atanh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::erf(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Erf)),
    op(
        "aten::clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor",
        Compute,
        clamp_scalar,
        cost_elementwise,
    )
    .scalar(Scalar::Clamp),
    op(
        "aten::clamp.Tensor(Tensor self, Tensor? min=None, Tensor? max=None) -> Tensor",
        Compute,
        clamp_tensor,
        cost_elementwise,
    )
    .scalar(Scalar::Clamp),
    op("aten::clamp_min(Tensor self, Scalar min) -> Tensor", Compute, clamp_scalar, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Max)),
    op("aten::clamp_max(Tensor self, Scalar max) -> Tensor", Compute, clamp_scalar, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Min)),
    // Activations.
    op("aten::relu(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise)
        .scalar(Scalar::Unary(UnaryFn::Relu)),
    op("aten::relu_(Tensor(a!) self) -> Tensor(a!)", Compute, unary_no_bool, cost_elementwise),
    op("aten::relu6(Tensor self) -> Tensor", Compute, unary_no_bool, cost_elementwise),
    op("aten::gelu(Tensor self, *, str approximate=\"none\") -> Tensor", Compute, gelu, cost_transcendental)
        .scalar(Scalar::Gelu),
    op("aten::silu(Tensor self) -> Tensor", Compute, unary_float_only, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Silu)),
    op("aten::silu_(Tensor(a!) self) -> Tensor(a!)", Compute, unary_float_only, cost_transcendental),
    op("aten::sigmoid(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Sigmoid)),
    op("aten::tanh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental)
        .scalar(Scalar::Unary(UnaryFn::Tanh)),
    op("aten::mish(Tensor self) -> Tensor", Compute, unary_float_only, cost_transcendental),
    op("aten::hardswish(Tensor self) -> Tensor", Compute, unary_float_only, cost_elementwise),
    op("aten::hardsigmoid(Tensor self) -> Tensor", Compute, unary_float_only, cost_elementwise),
    op(
        "aten::hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor",
        Compute,
        unary_no_bool,
        cost_elementwise,
    ),
    op(
        "aten::hardtanh_(Tensor(a!) self, Scalar min_val=-1, Scalar max_val=1) -> Tensor(a!)",
        Compute,
        unary_no_bool,
        cost_elementwise,
    ),
    op(
        "aten::leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor",
        Compute,
        unary_float_only,
        cost_elementwise,
    ),
    op(
        "aten::elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor",
        Compute,
        unary_float_only,
        cost_transcendental,
    ),
    op("aten::celu(Tensor self, Scalar alpha=1.) -> Tensor", Compute, unary_float_only, cost_transcendental),
    op("aten::selu(Tensor self) -> Tensor", Compute, unary_float_only, cost_transcendental),
    op(
        "aten::softplus(Tensor self, Scalar beta=1, Scalar threshold=20) -> Tensor",
        Compute,
        unary_float_only,
        cost_transcendental,
    ),
    op("aten::prelu(Tensor self, Tensor weight) -> Tensor", Compute, prelu, cost_elementwise),
    // Comparisons and logic.
    op("aten::eq.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .fold(Fold::Compare(Comparison::Eq))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Eq))),
    op("aten::eq.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise)
        .fold(Fold::Compare(Comparison::Eq))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Eq))),
    op("aten::ne.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .fold(Fold::Compare(Comparison::Ne))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Ne))),
    op("aten::ne.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise)
        .fold(Fold::Compare(Comparison::Ne))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Ne))),
    op("aten::lt.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .fold(Fold::Compare(Comparison::Lt))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Lt))),
    op("aten::lt.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise)
        .fold(Fold::Compare(Comparison::Lt))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Lt))),
    op("aten::le.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .fold(Fold::Compare(Comparison::Le))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Le))),
    op("aten::le.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise)
        .fold(Fold::Compare(Comparison::Le))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Le))),
    op("aten::gt.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .fold(Fold::Compare(Comparison::Gt))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Gt))),
    op("aten::gt.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise)
        .fold(Fold::Compare(Comparison::Gt))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Gt))),
    op("aten::ge.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .fold(Fold::Compare(Comparison::Ge))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Ge))),
    op("aten::ge.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise)
        .fold(Fold::Compare(Comparison::Ge))
        .scalar(Scalar::Binary(BinaryFn::Compare(Comparison::Ge))),
    op("aten::logical_not(Tensor self) -> Tensor", Compute, unary_bool, cost_elementwise)
        .fold(Fold::LogicalNot)
        .scalar(Scalar::Unary(UnaryFn::LogicalNot)),
    op("aten::logical_and(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::And)),
    op("aten::logical_or(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise)
        .scalar(Scalar::Binary(BinaryFn::Or)),
    op("aten::logical_xor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::bitwise_not(Tensor self) -> Tensor", Compute, bitwise_not, cost_elementwise),
    op("aten::bitwise_and.Tensor(Tensor self, Tensor other) -> Tensor", Compute, bitwise, cost_elementwise),
    op("aten::bitwise_and.Scalar(Tensor self, Scalar other) -> Tensor", Compute, bitwise_scalar, cost_elementwise),
    op("aten::bitwise_or.Tensor(Tensor self, Tensor other) -> Tensor", Compute, bitwise, cost_elementwise),
    op("aten::bitwise_or.Scalar(Tensor self, Scalar other) -> Tensor", Compute, bitwise_scalar, cost_elementwise),
    op("aten::bitwise_xor.Tensor(Tensor self, Tensor other) -> Tensor", Compute, bitwise, cost_elementwise),
    op("aten::__and__.Tensor(Tensor self, Tensor other) -> Tensor", Compute, bitwise, cost_elementwise),
    op("aten::__or__.Tensor(Tensor self, Tensor other) -> Tensor", Compute, bitwise, cost_elementwise),
    op("aten::isnan(Tensor self) -> Tensor", Compute, unary_bool, cost_elementwise),
    op("aten::isinf(Tensor self) -> Tensor", Compute, unary_bool, cost_elementwise),
    op(
        "aten::where.self(Tensor condition, Tensor self, Tensor other) -> Tensor",
        Compute,
        where_self,
        cost_elementwise,
    )
    .fold(Fold::Where)
    .scalar(Scalar::Where),
    op(
        "aten::where.ScalarOther(Tensor condition, Tensor self, Scalar other) -> Tensor",
        Compute,
        where_scalar_other,
        cost_elementwise,
    )
    .scalar(Scalar::Where),
    op(
        "aten::where.ScalarSelf(Tensor condition, Scalar self, Tensor other) -> Tensor",
        Compute,
        where_scalar_self,
        cost_elementwise,
    )
    .scalar(Scalar::Where),
    op(
        "aten::masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor",
        Compute,
        masked_fill,
        cost_elementwise,
    )
    .scalar(Scalar::MaskedFill),
    op(
        "aten::masked_fill.Tensor(Tensor self, Tensor mask, Tensor value) -> Tensor",
        Compute,
        masked_fill,
        cost_elementwise,
    )
    .scalar(Scalar::MaskedFill),
];
