//! Element-wise math, activations, softmax, reductions, scans and top-k.

use genie_ir::{Arg, Dim, ValueId};

use super::{Ctx, Out};
use crate::onnx::OnnxError;

type R = Result<Vec<Out>, OnnxError>;

fn t(v: ValueId) -> Arg {
    Arg::Tensor(v)
}

/// `Div`: true division for floats, truncation toward zero for integers (C semantics).
pub(super) fn div(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let (a, b) = c.broadcast_pair()?;
    if c.vty(a).dtype.is_floating() {
        c.one("aten.div.Tensor", vec![t(a), t(b)], vec![])
    } else {
        c.one("aten.div.Tensor_mode", vec![t(a), t(b)], vec![("rounding_mode", Arg::Str("trunc".into()))])
    }
}

/// `Mod`: `fmod=1` is C `fmod` (sign of the dividend), `fmod=0` Python `%` (sign of the divisor).
pub(super) fn modulo(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let (a, b) = c.broadcast_pair()?;
    let op = if c.int("fmod", 0)? != 0 { "aten.fmod.Tensor" } else { "aten.remainder.Tensor" };
    c.one(op, vec![t(a), t(b)], vec![])
}

/// `Pow`: the result has the base's dtype; a constant scalar exponent stays a Scalar.
pub(super) fn pow(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let x = c.x(0)?;
    let dtype = c.vty(x).dtype;
    let exp = c.host(1).filter(|h| h.numel() == 1 && c.ty(1).is_ok_and(|t| t.rank() <= c.vty(x).rank()));
    let y = match exp.as_ref().and_then(|h| h.as_f64()) {
        Some(v) => {
            let scalar = if c.ty(1)?.dtype.is_floating() { Arg::Float(v[0]) } else { Arg::Int(v[0] as i64) };
            c.op("aten.pow.Tensor_Scalar", vec![t(x), scalar], vec![])?
        }
        None => {
            let (x, mut e) = c.broadcast_pair()?;
            if c.vty(e).dtype != dtype && dtype.is_floating() {
                e = c.op("aten._to_copy.default", vec![t(e)], vec![("dtype", Arg::DType(dtype))])?;
            }
            c.op("aten.pow.Tensor_Tensor", vec![t(x), t(e)], vec![])?
        }
    };
    if c.vty(y).dtype != dtype {
        return c.one("aten._to_copy.default", vec![t(y)], vec![("dtype", Arg::DType(dtype))]);
    }
    Ok(vec![Out::Value(y)])
}

/// Variadic ops folded left with a binary ATen op.
fn variadic(c: &mut Ctx, op: &str) -> Result<ValueId, OnnxError> {
    if c.n_inputs() == 0 {
        return Err(c.err("needs at least one input"));
    }
    let mut acc = c.x(0)?;
    for i in 1..c.n_inputs() {
        let v = c.x(i)?;
        acc = c.op(op, vec![t(acc), t(v)], vec![])?;
    }
    Ok(acc)
}

pub(super) fn max(c: &mut Ctx) -> R {
    Ok(vec![Out::Value(variadic(c, "aten.maximum.default")?)])
}

pub(super) fn min(c: &mut Ctx) -> R {
    Ok(vec![Out::Value(variadic(c, "aten.minimum.default")?)])
}

pub(super) fn sum(c: &mut Ctx) -> R {
    Ok(vec![Out::Value(variadic(c, "aten.add.Tensor")?)])
}

pub(super) fn mean(c: &mut Ctx) -> R {
    let n = c.n_inputs();
    let s = variadic(c, "aten.add.Tensor")?;
    if n == 1 {
        return Ok(vec![Out::Value(s)]);
    }
    c.one("aten.div.Scalar", vec![t(s), Arg::Float(n as f64)], vec![])
}

pub(super) fn where_(c: &mut Ctx) -> R {
    c.expect_inputs(3, 3)?;
    let (cond, a, b) = (c.x(0)?, c.x(1)?, c.x(2)?);
    c.one("aten.where.self", vec![t(cond), t(a), t(b)], vec![])
}

/// `Clip`: bounds are attributes before opset 11, optional inputs after.
pub(super) fn clip(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let dtype = c.vty(x).dtype;
    let (lo, hi) = if c.opset() < 11 {
        c.expect_inputs(1, 1)?;
        let lo = c.attr("min").map(|_| c.float("min", 0.0)).transpose()?;
        let hi = c.attr("max").map(|_| c.float("max", 0.0)).transpose()?;
        (lo.map(|v| Ctx::scalar_arg(dtype, v)), hi.map(|v| Ctx::scalar_arg(dtype, v)))
    } else {
        c.expect_inputs(1, 3)?;
        let bound = |c: &mut Ctx, i: usize| -> Result<Option<Arg>, OnnxError> {
            if !c.has(i) {
                return Ok(None);
            }
            match c.host(i).and_then(|h| h.as_f64()).filter(|v| v.len() == 1) {
                Some(v) => Ok(Some(Ctx::scalar_arg(dtype, v[0]))),
                None => Ok(Some(t(c.x(i)?))),
            }
        };
        (bound(c, 1)?, bound(c, 2)?)
    };
    let tensor = matches!(lo, Some(Arg::Tensor(_))) || matches!(hi, Some(Arg::Tensor(_)));
    if lo.is_none() && hi.is_none() {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    if tensor {
        let as_tensor = |c: &mut Ctx, a: Option<Arg>| -> Result<Arg, OnnxError> {
            Ok(match a {
                None => Arg::None,
                Some(Arg::Tensor(v)) => Arg::Tensor(v),
                Some(a) => {
                    let v = match a {
                        Arg::Int(i) => i as f64,
                        Arg::Float(f) => f,
                        Arg::Bool(b) => b as u8 as f64,
                        _ => 0.0,
                    };
                    Arg::Tensor(c.scalar(dtype, v)?)
                }
            })
        };
        let (lo, hi) = (as_tensor(c, lo)?, as_tensor(c, hi)?);
        return c.one("aten.clamp.Tensor", vec![t(x), lo, hi], vec![]);
    }
    c.one("aten.clamp.default", vec![t(x), lo.unwrap_or(Arg::None), hi.unwrap_or(Arg::None)], vec![])
}

pub(super) fn celu(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let alpha = c.float("alpha", 1.0)?;
    c.one("aten.celu.default", vec![t(x), Arg::Float(alpha)], vec![])
}

pub(super) fn elu(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let alpha = c.float("alpha", 1.0)?;
    c.one("aten.elu.default", vec![t(x), Arg::Float(alpha)], vec![])
}

/// `Selu(alpha, gamma)` is `elu` with `scale = gamma`, using the model's own constants.
pub(super) fn selu(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let alpha = c.float("alpha", 1.673_263_2)?;
    let gamma = c.float("gamma", 1.050_701)?;
    c.one("aten.elu.default", vec![t(x), Arg::Float(alpha), Arg::Float(gamma), Arg::Int(1)], vec![])
}

pub(super) fn gelu(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let approximate = c.string("approximate", "none")?;
    if approximate != "none" && approximate != "tanh" {
        return Err(c.attr_err("approximate", format!("unknown mode `{approximate}`")));
    }
    c.one("aten.gelu.default", vec![t(x)], vec![("approximate", Arg::Str(approximate))])
}

/// `HardSigmoid(alpha, beta)` = `clamp(alpha*x + beta, 0, 1)`; PyTorch's own constants map to
/// `hardsigmoid`.
pub(super) fn hard_sigmoid(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let alpha = c.float("alpha", 0.2)?;
    let beta = c.float("beta", 0.5)?;
    if alpha as f32 == 1.0f32 / 6.0 && beta == 0.5 {
        return c.one("aten.hardsigmoid.default", vec![t(x)], vec![]);
    }
    let ax = c.op("aten.mul.Scalar", vec![t(x), Arg::Float(alpha)], vec![])?;
    let axb = c.op("aten.add.Scalar", vec![t(ax), Arg::Float(beta)], vec![])?;
    c.one("aten.clamp.default", vec![t(axb), Arg::Float(0.0), Arg::Float(1.0)], vec![])
}

pub(super) fn is_inf(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let (neg, pos) = (c.int("detect_negative", 1)? != 0, c.int("detect_positive", 1)? != 0);
    let inf = c.op("aten.isinf.default", vec![t(x)], vec![])?;
    let sign = match (neg, pos) {
        (true, true) => return Ok(vec![Out::Value(inf)]),
        (false, true) => c.op("aten.gt.Scalar", vec![t(x), Arg::Float(0.0)], vec![])?,
        (true, false) => c.op("aten.lt.Scalar", vec![t(x), Arg::Float(0.0)], vec![])?,
        (false, false) => c.op("aten.isnan.default", vec![t(x)], vec![])?,
    };
    c.one("aten.logical_and.default", vec![t(inf), t(sign)], vec![])
}

pub(super) fn leaky_relu(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let alpha = c.float("alpha", 0.01)?;
    c.one("aten.leaky_relu.default", vec![t(x), Arg::Float(alpha)], vec![])
}

/// `PRelu(x, slope)`: `aten.prelu` when the slope is per channel (dim 1), otherwise
/// `where(x < 0, x * slope, x)` with ONNX broadcasting.
pub(super) fn prelu(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let (x, s) = (c.x(0)?, c.x(1)?);
    let (tx, ts) = (c.vty(x), c.vty(s));
    // Per-channel slopes: `[C]` before opset 7 (applied along dim 1), `[C, 1, ..., 1]` of rank
    // `rank(x) - 1` after; a single slope fits any shape.
    let mut trimmed = ts.shape.clone();
    while trimmed.len() > 1 && trimmed.last().and_then(Dim::as_const) == Some(1) {
        trimmed.pop();
    }
    let single = ts.numel().as_const() == Some(1);
    let channel = tx.rank() >= 2
        && trimmed.len() == 1
        && trimmed[0] == tx.shape[1]
        && ((c.opset() < 7 && ts.rank() == 1) || ts.rank() + 1 == tx.rank());
    if (single && tx.rank() >= 1) || channel {
        let len = if single { Dim::constant(1) } else { tx.shape[1].clone() };
        let w = c.op("aten.reshape.default", vec![t(s), Arg::sym_ints(vec![len])], vec![])?;
        return c.one("aten.prelu.default", vec![t(x), t(w)], vec![]);
    }
    let s = c.legacy_broadcast(x, s)?;
    let neg = c.op("aten.lt.Scalar", vec![t(x), Ctx::scalar_arg(tx.dtype, 0.0)], vec![])?;
    let scaled = c.op("aten.mul.Tensor", vec![t(x), t(s)], vec![])?;
    c.one("aten.where.self", vec![t(neg), t(scaled), t(x)], vec![])
}

/// `Shrink(lambd, bias)`: `x + bias` below `-lambd`, `x - bias` above `lambd`, 0 between.
pub(super) fn shrink(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let dtype = c.vty(x).dtype;
    let (lambd, bias) = (c.float("lambd", 0.5)?, c.float("bias", 0.0)?);
    let s = |v: f64| Ctx::scalar_arg(dtype, v);
    let below = c.op("aten.lt.Scalar", vec![t(x), s(-lambd)], vec![])?;
    let above = c.op("aten.gt.Scalar", vec![t(x), s(lambd)], vec![])?;
    let plus = c.op("aten.add.Scalar", vec![t(x), s(bias)], vec![])?;
    let minus = c.op("aten.sub.Scalar", vec![t(x), s(bias)], vec![])?;
    let inner = c.op("aten.where.ScalarOther", vec![t(above), t(minus), s(0.0)], vec![])?;
    c.one("aten.where.self", vec![t(below), t(plus), t(inner)], vec![])
}

pub(super) fn softplus(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    c.one("aten.softplus.default", vec![t(x)], vec![])
}

pub(super) fn thresholded_relu(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let dtype = c.vty(x).dtype;
    let alpha = c.float("alpha", 1.0)?;
    let above = c.op("aten.gt.Scalar", vec![t(x), Arg::Float(alpha)], vec![])?;
    c.one("aten.where.ScalarOther", vec![t(above), t(x), Ctx::scalar_arg(dtype, 0.0)], vec![])
}

/// Softmax-like ops. Before opset 13 the input is coerced to 2-D at `axis` (default 1) and
/// normalised over the second dim; from 13 on `axis` (default -1) is one dim.
fn softmax_like(c: &mut Ctx, op: &str) -> R {
    c.expect_inputs(1, 1)?;
    let x = c.x(0)?;
    let tx = c.vty(x);
    let rank = tx.rank();
    if c.opset() >= 13 {
        let axis = c.axis(c.int("axis", -1)?, rank, "axis")?;
        return c.one(op, vec![t(x), Arg::Int(axis as i64), Arg::Bool(false)], vec![]);
    }
    let axis = if rank == 0 { 0 } else { c.axis(c.int("axis", 1)?, rank, "axis")? };
    if axis + 1 >= rank {
        let last = rank.saturating_sub(1) as i64;
        return c.one(op, vec![t(x), Arg::Int(last), Arg::Bool(false)], vec![]);
    }
    let outer = tx.shape[..axis].iter().fold(Dim::constant(1), |a, d| a.mul(d));
    let inner = tx.shape[axis..].iter().fold(Dim::constant(1), |a, d| a.mul(d));
    let flat = c.op("aten.reshape.default", vec![t(x), Arg::sym_ints(vec![outer, inner])], vec![])?;
    let y = c.op(op, vec![t(flat), Arg::Int(1), Arg::Bool(false)], vec![])?;
    c.one("aten.reshape.default", vec![t(y), Arg::sym_ints(tx.shape.clone())], vec![])
}

pub(super) fn softmax(c: &mut Ctx) -> R {
    softmax_like(c, "aten._softmax.default")
}

pub(super) fn log_softmax(c: &mut Ctx) -> R {
    softmax_like(c, "aten._log_softmax.default")
}

/// The axes of a reduction, normalised: from the `axes` attribute before `input_from` opset,
/// from input #1 after. Empty means every axis unless `noop_with_empty_axes` (then `None`).
pub(crate) fn reduce_axes(c: &Ctx, input_from: i64, rank: usize) -> Result<Option<Vec<i64>>, OnnxError> {
    let axes = if c.opset() < input_from {
        c.expect_inputs(1, 1)?;
        c.ints("axes")?.unwrap_or_default()
    } else {
        c.expect_inputs(1, 2)?;
        if c.has(1) {
            c.const_ints(1, "axes")?
        } else {
            vec![]
        }
    };
    if axes.is_empty() {
        if c.opset() >= input_from && c.int("noop_with_empty_axes", 0)? != 0 {
            return Ok(None);
        }
        return Ok(Some((0..rank as i64).collect()));
    }
    let mut out = axes.iter().map(|&a| c.axis(a, rank, "axis").map(|a| a as i64)).collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// Shared shape of reductions: `f(c, x, axes, keepdim)`.
fn reduce(c: &mut Ctx, input_from: i64, f: fn(&mut Ctx, ValueId, Vec<i64>, bool) -> Result<ValueId, OnnxError>) -> R {
    let x = c.x(0)?;
    let rank = c.vty(x).rank();
    let keep = c.int("keepdims", 1)? != 0;
    let Some(axes) = reduce_axes(c, input_from, rank)? else {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    };
    if rank == 0 {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    Ok(vec![Out::Value(f(c, x, axes, keep)?)])
}

fn sum_of(c: &mut Ctx, x: ValueId, axes: Vec<i64>, keep: bool) -> Result<ValueId, OnnxError> {
    let dtype = c.vty(x).dtype;
    c.op("aten.sum.dim_IntList", vec![t(x), Arg::Ints(axes), Arg::Bool(keep)], vec![("dtype", Arg::DType(dtype))])
}

pub(super) fn reduce_sum(c: &mut Ctx) -> R {
    reduce(c, 13, sum_of)
}

pub(super) fn reduce_mean(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| c.op("aten.mean.dim", vec![t(x), Arg::Ints(axes), Arg::Bool(keep)], vec![]))
}

pub(super) fn reduce_max(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| c.op("aten.amax.default", vec![t(x), Arg::Ints(axes), Arg::Bool(keep)], vec![]))
}

pub(super) fn reduce_min(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| c.op("aten.amin.default", vec![t(x), Arg::Ints(axes), Arg::Bool(keep)], vec![]))
}

pub(super) fn reduce_prod(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| {
        let dtype = c.vty(x).dtype;
        let mut acc = x;
        // Highest axis first, so lower axis numbers stay valid without keepdim.
        for a in axes.into_iter().rev() {
            acc = c.op(
                "aten.prod.dim_int",
                vec![t(acc), Arg::Int(a), Arg::Bool(keep)],
                vec![("dtype", Arg::DType(dtype))],
            )?;
        }
        Ok(acc)
    })
}

fn norm(c: &mut Ctx, x: ValueId, ord: i64, axes: Vec<i64>, keep: bool) -> Result<ValueId, OnnxError> {
    c.op("aten.linalg_vector_norm.default", vec![t(x), Arg::Int(ord), Arg::Ints(axes), Arg::Bool(keep)], vec![])
}

pub(super) fn reduce_l1(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| norm(c, x, 1, axes, keep))
}

pub(super) fn reduce_l2(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| norm(c, x, 2, axes, keep))
}

pub(super) fn reduce_sum_square(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| {
        let sq = c.op("aten.mul.Tensor", vec![t(x), t(x)], vec![])?;
        sum_of(c, sq, axes, keep)
    })
}

pub(super) fn reduce_log_sum_exp(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| {
        c.op("aten.logsumexp.default", vec![t(x), Arg::Ints(axes), Arg::Bool(keep)], vec![])
    })
}

pub(super) fn reduce_log_sum(c: &mut Ctx) -> R {
    reduce(c, 18, |c, x, axes, keep| {
        let s = sum_of(c, x, axes, keep)?;
        c.op("aten.log.default", vec![t(s)], vec![])
    })
}

/// `ArgMax`/`ArgMin`; `select_last_index` flips the axis and maps indices back.
fn arg_reduce(c: &mut Ctx, op: &str) -> R {
    c.expect_inputs(1, 1)?;
    let x = c.x(0)?;
    let tx = c.vty(x);
    let axis = c.axis(c.int("axis", 0)?, tx.rank(), "axis")?;
    let keep = c.int("keepdims", 1)? != 0;
    let args = |v| vec![t(v), Arg::Int(axis as i64), Arg::Bool(keep)];
    if c.int("select_last_index", 0)? == 0 {
        return c.one(op, args(x), vec![]);
    }
    let n = tx.shape.get(axis).and_then(Dim::as_const).ok_or_else(|| c.err("select_last_index needs a static axis"))?;
    let flipped = c.op("aten.flip.default", vec![t(x), Arg::Ints(vec![axis as i64])], vec![])?;
    let i = c.op(op, args(flipped), vec![])?;
    c.one("aten.rsub.Scalar", vec![t(i), Arg::Int(n - 1)], vec![])
}

pub(super) fn arg_max(c: &mut Ctx) -> R {
    arg_reduce(c, "aten.argmax.default")
}

pub(super) fn arg_min(c: &mut Ctx) -> R {
    arg_reduce(c, "aten.argmin.default")
}

/// `CumSum(x, axis)`: `reverse` flips around the scan, `exclusive` shifts the input by one.
pub(super) fn cum_sum(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let x = c.x(0)?;
    let tx = c.vty(x);
    let axis = c.const_ints(1, "axis")?;
    let [axis] = axis[..] else { return Err(c.err("axis must hold one value")) };
    let axis = c.dim_axis(axis, tx.rank(), "axis")? as i64;
    let reverse = c.int("reverse", 0)? != 0;
    let mut v = x;
    if reverse {
        v = c.op("aten.flip.default", vec![t(v), Arg::Ints(vec![axis])], vec![])?;
    }
    if c.int("exclusive", 0)? != 0 {
        let mut pad = vec![0i64; 2 * (tx.rank() - axis as usize)];
        let k = pad.len() - 2;
        pad[k] = 1;
        pad[k + 1] = -1;
        v = c.op("aten.constant_pad_nd.default", vec![t(v), Arg::Ints(pad)], vec![])?;
    }
    v = c.op("aten.cumsum.default", vec![t(v), Arg::Int(axis)], vec![("dtype", Arg::DType(tx.dtype))])?;
    if reverse {
        v = c.op("aten.flip.default", vec![t(v), Arg::Ints(vec![axis])], vec![])?;
    }
    Ok(vec![Out::Value(v)])
}

/// `TopK`: `k` is an attribute before opset 10, an input after.
pub(super) fn top_k(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let rank = c.vty(x).rank();
    let k = if c.opset() < 10 {
        Dim::constant(c.small_int("k", -1)?)
    } else {
        let k = c.const_dims(1, "K")?;
        let [k] = &k[..] else { return Err(c.err("K must hold one value")) };
        k.clone()
    };
    let axis = c.axis(c.int("axis", -1)?, rank, "axis")? as i64;
    let largest = c.int("largest", 1)? != 0;
    let sorted = c.int("sorted", 1)? != 0;
    let outs = c.op_n(
        "aten.topk.default",
        vec![t(x), Arg::sym_int(k), Arg::Int(axis), Arg::Bool(largest), Arg::Bool(sorted)],
        vec![],
    )?;
    Ok(outs.into_iter().map(Out::Value).collect())
}
