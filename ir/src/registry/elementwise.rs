//! Element-wise math, comparisons and activations.

use super::shape::*;
use super::{op, Call, InferError, OpClass::Compute, OpDecl};
use crate::types::{DType, TensorType};

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

/// `abs`, `neg` and friends keep integers; bool input becomes... bool stays bool for these.
fn unary_int_or_float(c: &Call) -> Result<Vec<TensorType>, InferError> {
    unary_same(c)
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

/// `div.Tensor_mode`: true division unless a rounding mode is given.
fn div_mode(c: &Call) -> Result<Vec<TensorType>, InferError> {
    match c.args.get(2) {
        Some(crate::graph::Arg::Str(_)) => binary(c),
        _ => true_div(c),
    }
}

fn div_mode_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    match c.args.get(2) {
        Some(crate::graph::Arg::Str(_)) => binary_scalar(c),
        _ => true_div_scalar(c),
    }
}

/// `where.self(condition, self, other)`.
fn where_self(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (cond, a, b) = (c.tensor(0)?, c.tensor(1)?, c.tensor(2)?);
    let shape = broadcast(c, &broadcast(c, &cond.shape, &a.shape)?, &b.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Tensor(a), Operand::Tensor(b)]), shape)])
}

/// `where.ScalarOther(condition, self, Scalar other)`.
fn where_scalar_other(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (cond, a) = (c.tensor(0)?, c.tensor(1)?);
    let shape = broadcast(c, &cond.shape, &a.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Tensor(a), Operand::Scalar(c.scalar(2)?)]), shape)])
}

/// `where.ScalarSelf(condition, Scalar self, other)`.
fn where_scalar_self(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (cond, b) = (c.tensor(0)?, c.tensor(2)?);
    let shape = broadcast(c, &cond.shape, &b.shape)?;
    Ok(vec![TensorType::with_dims(result_type(&[Operand::Scalar(c.scalar(1)?), Operand::Tensor(b)]), shape)])
}

/// `masked_fill(self, mask, value)`: the shape and dtype of `self`; the mask must broadcast to it.
fn masked_fill(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, mask) = (c.tensor(0)?, c.tensor(1)?);
    let shape = broadcast(c, &a.shape, &mask.shape)?;
    if shape.len() != a.rank() {
        return Err(c.err("mask has more dims than the input"));
    }
    Ok(vec![a.clone()])
}

/// `clamp(self, Scalar? min, Scalar? max)`.
fn clamp_scalar(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let a = c.tensor(0)?;
    let mut ops = vec![Operand::Tensor(a)];
    for i in 1..c.args.len() {
        if !matches!(c.args[i], crate::graph::Arg::None) {
            ops.push(Operand::Scalar(c.scalar(i)?));
        }
    }
    if ops.len() == 1 && c.args.len() > 2 {
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
    Ok(vec![TensorType::with_dims(result_type(&ops), shape)])
}

fn prelu(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, w) = (c.tensor(0)?, c.tensor(1)?);
    if w.rank() > 1 || a.rank() == 0 {
        // ATen accepts a 1-D weight of size 1 or of the channel count.
        return Err(c.err("prelu weight must be 1-D and input at least 1-D"));
    }
    Ok(vec![a.clone()])
}

/// Every element-wise op.
pub(super) const OPS: &[OpDecl] = &[
    // Arithmetic.
    op("aten::add.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", Compute, binary, cost_elementwise),
    op(
        "aten::add.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
        Compute,
        binary_scalar,
        cost_elementwise,
    ),
    op(
        "aten::add_.Tensor(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)",
        Compute,
        binary,
        cost_elementwise,
    ),
    op("aten::sub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", Compute, binary, cost_elementwise),
    op(
        "aten::sub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
        Compute,
        binary_scalar,
        cost_elementwise,
    ),
    op("aten::rsub.Tensor(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", Compute, binary, cost_elementwise),
    op(
        "aten::rsub.Scalar(Tensor self, Scalar other, Scalar alpha=1) -> Tensor",
        Compute,
        binary_scalar,
        cost_elementwise,
    ),
    op("aten::mul.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::mul.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar, cost_elementwise),
    op("aten::mul_.Tensor(Tensor(a!) self, Tensor other) -> Tensor(a!)", Compute, binary, cost_elementwise),
    op("aten::div.Tensor(Tensor self, Tensor other) -> Tensor", Compute, true_div, cost_elementwise),
    op("aten::div.Scalar(Tensor self, Scalar other) -> Tensor", Compute, true_div_scalar, cost_elementwise),
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
    op("aten::floor_divide(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::remainder.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::remainder.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar, cost_elementwise),
    op("aten::fmod.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::fmod.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar, cost_elementwise),
    op("aten::pow.Tensor_Scalar(Tensor self, Scalar exponent) -> Tensor", Compute, binary_scalar, cost_transcendental),
    op("aten::pow.Tensor_Tensor(Tensor self, Tensor exponent) -> Tensor", Compute, binary, cost_transcendental),
    op("aten::pow.Scalar(Scalar self, Tensor exponent) -> Tensor", Compute, scalar_binary, cost_transcendental),
    op("aten::maximum(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::minimum(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::atan2(Tensor self, Tensor other) -> Tensor", Compute, true_div, cost_transcendental),
    op("aten::neg(Tensor self) -> Tensor", Compute, unary_int_or_float, cost_elementwise),
    op("aten::abs(Tensor self) -> Tensor", Compute, unary_int_or_float, cost_elementwise),
    op("aten::sign(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::square(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::floor(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::ceil(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::round(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::trunc(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::reciprocal(Tensor self) -> Tensor", Compute, unary_float, cost_elementwise),
    op("aten::sqrt(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::rsqrt(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::exp(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::exp2(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::expm1(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::log(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
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
    op("aten::erf(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op(
        "aten::clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor",
        Compute,
        clamp_scalar,
        cost_elementwise,
    ),
    op(
        "aten::clamp.Tensor(Tensor self, Tensor? min=None, Tensor? max=None) -> Tensor",
        Compute,
        clamp_tensor,
        cost_elementwise,
    ),
    op("aten::clamp_min(Tensor self, Scalar min) -> Tensor", Compute, clamp_scalar, cost_elementwise),
    op("aten::clamp_max(Tensor self, Scalar max) -> Tensor", Compute, clamp_scalar, cost_elementwise),
    // Activations.
    op("aten::relu(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::relu_(Tensor(a!) self) -> Tensor(a!)", Compute, unary_same, cost_elementwise),
    op("aten::relu6(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::gelu(Tensor self, *, str approximate=\"none\") -> Tensor", Compute, unary_same, cost_transcendental),
    op("aten::silu(Tensor self) -> Tensor", Compute, unary_same, cost_transcendental),
    op("aten::silu_(Tensor(a!) self) -> Tensor(a!)", Compute, unary_same, cost_transcendental),
    op("aten::sigmoid(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::tanh(Tensor self) -> Tensor", Compute, unary_float, cost_transcendental),
    op("aten::mish(Tensor self) -> Tensor", Compute, unary_same, cost_transcendental),
    op("aten::hardswish(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::hardsigmoid(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op(
        "aten::hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor",
        Compute,
        unary_same,
        cost_elementwise,
    ),
    op(
        "aten::hardtanh_(Tensor(a!) self, Scalar min_val=-1, Scalar max_val=1) -> Tensor(a!)",
        Compute,
        unary_same,
        cost_elementwise,
    ),
    op("aten::leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor", Compute, unary_same, cost_elementwise),
    op(
        "aten::elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor",
        Compute,
        unary_same,
        cost_transcendental,
    ),
    op("aten::celu(Tensor self, Scalar alpha=1.0) -> Tensor", Compute, unary_same, cost_transcendental),
    op("aten::selu(Tensor self) -> Tensor", Compute, unary_same, cost_transcendental),
    op(
        "aten::softplus(Tensor self, Scalar beta=1, Scalar threshold=20) -> Tensor",
        Compute,
        unary_same,
        cost_transcendental,
    ),
    op("aten::softsign(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::prelu(Tensor self, Tensor weight) -> Tensor", Compute, prelu, cost_elementwise),
    // Comparisons and logic.
    op("aten::eq.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::eq.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise),
    op("aten::ne.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::ne.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise),
    op("aten::lt.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::lt.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise),
    op("aten::le.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::le.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise),
    op("aten::gt.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::gt.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise),
    op("aten::ge.Tensor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::ge.Scalar(Tensor self, Scalar other) -> Tensor", Compute, compare_scalar, cost_elementwise),
    op("aten::logical_not(Tensor self) -> Tensor", Compute, unary_bool, cost_elementwise),
    op("aten::logical_and(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::logical_or(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::logical_xor(Tensor self, Tensor other) -> Tensor", Compute, compare, cost_elementwise),
    op("aten::bitwise_not(Tensor self) -> Tensor", Compute, unary_same, cost_elementwise),
    op("aten::bitwise_and.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::bitwise_and.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar, cost_elementwise),
    op("aten::bitwise_or.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::bitwise_or.Scalar(Tensor self, Scalar other) -> Tensor", Compute, binary_scalar, cost_elementwise),
    op("aten::bitwise_xor.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::__and__.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::__or__.Tensor(Tensor self, Tensor other) -> Tensor", Compute, binary, cost_elementwise),
    op("aten::isnan(Tensor self) -> Tensor", Compute, unary_bool, cost_elementwise),
    op("aten::isinf(Tensor self) -> Tensor", Compute, unary_bool, cost_elementwise),
    op(
        "aten::where.self(Tensor condition, Tensor self, Tensor other) -> Tensor",
        Compute,
        where_self,
        cost_elementwise,
    ),
    op(
        "aten::where.ScalarOther(Tensor condition, Tensor self, Scalar other) -> Tensor",
        Compute,
        where_scalar_other,
        cost_elementwise,
    ),
    op(
        "aten::where.ScalarSelf(Tensor condition, Scalar self, Tensor other) -> Tensor",
        Compute,
        where_scalar_self,
        cost_elementwise,
    ),
    op(
        "aten::masked_fill.Scalar(Tensor self, Tensor mask, Scalar value) -> Tensor",
        Compute,
        masked_fill,
        cost_elementwise,
    ),
    op(
        "aten::masked_fill.Tensor(Tensor self, Tensor mask, Tensor value) -> Tensor",
        Compute,
        masked_fill,
        cost_elementwise,
    ),
];
