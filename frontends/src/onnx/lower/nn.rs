//! Matrix products, convolution, pooling, normalisation, resampling and dropout.

use genie_ir::{Arg, DType, Dim, ValueId};

use super::{Ctx, Out};
use crate::onnx::OnnxError;

type R = Result<Vec<Out>, OnnxError>;

fn t(v: ValueId) -> Arg {
    Arg::Tensor(v)
}

pub(super) fn mat_mul(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let (a, b) = (c.x(0)?, c.x(1)?);
    c.one("aten.matmul.default", vec![t(a), t(b)], vec![])
}

/// `Gemm`: `alpha * op(A) @ op(B) + beta * C`. The common `transB=1` form with a 1-D bias is
/// `aten.linear`; otherwise `addmm` (or `mm` without `C`).
pub(super) fn gemm(c: &mut Ctx) -> R {
    c.expect_inputs(2, 3)?;
    let (a, b) = (c.x(0)?, c.x(1)?);
    let bias = c.opt_x(2)?;
    let dtype = c.vty(a).dtype;
    let (alpha, beta) = (c.float("alpha", 1.0)?, c.float("beta", 1.0)?);
    let (ta, tb) = (c.int("transA", 0)? != 0, c.int("transB", 0)? != 0);
    let bias = bias.filter(|_| beta != 0.0);
    let linear_bias = bias.is_none_or(|v| beta == 1.0 && c.vty(v).rank() == 1);
    if alpha == 1.0 && !ta && tb && linear_bias {
        return c.one("aten.linear.default", vec![t(a), t(b), bias.map_or(Arg::None, t)], vec![]);
    }
    let a = if ta { c.op("aten.t.default", vec![t(a)], vec![])? } else { a };
    let b = if tb { c.op("aten.t.default", vec![t(b)], vec![])? } else { b };
    match bias {
        Some(bias) => c.one(
            "aten.addmm.default",
            vec![t(bias), t(a), t(b)],
            vec![("beta", Ctx::scalar_arg(dtype, beta)), ("alpha", Ctx::scalar_arg(dtype, alpha))],
        ),
        None => {
            let y = c.op("aten.mm.default", vec![t(a), t(b)], vec![])?;
            if alpha == 1.0 {
                return Ok(vec![Out::Value(y)]);
            }
            c.one("aten.mul.Scalar", vec![t(y), Ctx::scalar_arg(dtype, alpha)], vec![])
        }
    }
}

/// Static sizes of the spatial dims of `x` (from dim 2 on), when known.
fn spatial_sizes(c: &Ctx, x: ValueId, n: usize) -> Option<Vec<i64>> {
    let ty = c.vty(x);
    (0..n).map(|i| ty.shape.get(2 + i).and_then(Dim::as_const)).collect()
}

/// An ints attribute of length `n`, or `default` repeated.
fn ints_n(c: &Ctx, name: &str, n: usize, default: i64) -> Result<Vec<i64>, OnnxError> {
    match c.small_ints(name)? {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => Ok(v),
        Some(v) => Err(c.attr_err(name, format!("has {} values, the kernel has {n} spatial dims", v.len()))),
    }
}

/// Window geometry shared by convolution and pooling: kernel, strides, dilations and the
/// (begin, end) padding of every spatial dim, with `auto_pad` resolved.
struct Window {
    kernel: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    pads: Vec<(i64, i64)>,
}

impl Window {
    fn read(c: &Ctx, x: ValueId, kernel: Vec<i64>) -> Result<Window, OnnxError> {
        let n = kernel.len();
        let strides = ints_n(c, "strides", n, 1)?;
        let dilations = ints_n(c, "dilations", n, 1)?;
        if strides.iter().chain(&dilations).chain(&kernel).any(|&v| v <= 0) {
            return Err(c.err("kernel, strides and dilations must be positive"));
        }
        let auto_pad = c.string("auto_pad", "NOTSET")?;
        let pads = match auto_pad.as_str() {
            "NOTSET" => {
                let p = ints_n(c, "pads", 2 * n, 0)?;
                (0..n).map(|i| (p[i], p[n + i])).collect()
            }
            "VALID" => vec![(0, 0); n],
            "SAME_UPPER" | "SAME_LOWER" => {
                let sizes = spatial_sizes(c, x, n).ok_or_else(|| c.err("auto_pad SAME needs static spatial dims"))?;
                (0..n)
                    .map(|i| {
                        let out = (sizes[i] + strides[i] - 1) / strides[i];
                        let total = ((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - sizes[i]).max(0);
                        let small = total / 2;
                        if auto_pad == "SAME_UPPER" {
                            (small, total - small)
                        } else {
                            (total - small, small)
                        }
                    })
                    .collect()
            }
            other => return Err(c.attr_err("auto_pad", format!("unknown value `{other}`"))),
        };
        Ok(Window { kernel, strides, dilations, pads })
    }

    fn symmetric(&self) -> bool {
        self.pads.iter().all(|(b, e)| b == e)
    }

    fn begin_pads(&self) -> Vec<i64> {
        self.pads.iter().map(|p| p.0).collect()
    }

    /// `constant_pad_nd` padding list (last dim first) for the spatial pads.
    fn torch_pad(&self) -> Vec<i64> {
        self.pads.iter().rev().flat_map(|&(b, e)| [b, e]).collect()
    }
}

/// Pad `x` explicitly (for asymmetric pads) with `value`.
fn pad_explicit(c: &mut Ctx, x: ValueId, w: &Window, value: Arg) -> Result<ValueId, OnnxError> {
    c.op("aten.constant_pad_nd.default", vec![t(x), Arg::Ints(w.torch_pad()), value], vec![])
}

/// The kernel's spatial size: the `kernel_shape` attribute, or the weight's trailing dims.
fn kernel_of(c: &Ctx, w: ValueId) -> Result<Vec<i64>, OnnxError> {
    let ty = c.vty(w);
    let from_weight: Option<Vec<i64>> = ty.shape.iter().skip(2).map(Dim::as_const).collect();
    match (c.small_ints("kernel_shape")?, from_weight) {
        (Some(k), _) => Ok(k),
        (None, Some(k)) if !k.is_empty() => Ok(k),
        _ => Err(c.err("the kernel size is unknown")),
    }
}

/// `Conv`: `aten.convolution`; asymmetric padding is applied with `constant_pad_nd` first.
pub(super) fn conv(c: &mut Ctx) -> R {
    c.expect_inputs(2, 3)?;
    let (mut x, w) = (c.x(0)?, c.x(1)?);
    let bias = c.opt_x(2)?;
    let win = Window::read(c, x, kernel_of(c, w)?)?;
    let n = win.kernel.len();
    let padding = if win.symmetric() {
        win.begin_pads()
    } else {
        x = pad_explicit(c, x, &win, Arg::Int(0))?;
        vec![0; n]
    };
    let group = c.small_int("group", 1)?;
    c.one(
        "aten.convolution.default",
        vec![
            t(x),
            t(w),
            bias.map_or(Arg::None, t),
            Arg::Ints(win.strides),
            Arg::Ints(padding),
            Arg::Ints(win.dilations),
            Arg::Bool(false),
            Arg::Ints(vec![0; n]),
            Arg::Int(group),
        ],
        vec![],
    )
}

/// `ConvTranspose`: `aten.convolution(transposed=True)` when the padding is symmetric;
/// otherwise the full transposed convolution is cropped/extended with `constant_pad_nd` and the
/// bias added after.
pub(super) fn conv_transpose(c: &mut Ctx) -> R {
    c.expect_inputs(2, 3)?;
    let (x, w) = (c.x(0)?, c.x(1)?);
    let bias = c.opt_x(2)?;
    let kernel = kernel_of(c, w)?;
    let n = kernel.len();
    let strides = ints_n(c, "strides", n, 1)?;
    let dilations = ints_n(c, "dilations", n, 1)?;
    let out_pad = ints_n(c, "output_padding", n, 0)?;
    let group = c.small_int("group", 1)?;
    let auto_pad = c.string("auto_pad", "NOTSET")?;
    let output_shape = c.small_ints("output_shape")?;
    let split = |total: i64| -> (i64, i64) {
        if auto_pad == "SAME_UPPER" {
            (total / 2, total - total / 2)
        } else {
            (total - total / 2, total / 2)
        }
    };
    let full = |i: usize, size: i64| strides[i] * (size - 1) + out_pad[i] + (kernel[i] - 1) * dilations[i] + 1;
    let pads: Vec<(i64, i64)> = if let Some(os) = output_shape {
        let sizes = spatial_sizes(c, x, n).ok_or_else(|| c.err("output_shape needs static spatial dims"))?;
        let os = if os.len() == n { os } else { os[os.len().saturating_sub(n)..].to_vec() };
        if os.len() != n {
            return Err(c.attr_err("output_shape", "length does not match the kernel"));
        }
        (0..n).map(|i| split(full(i, sizes[i]) - os[i])).collect()
    } else if auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" {
        let sizes = spatial_sizes(c, x, n).ok_or_else(|| c.err("auto_pad SAME needs static spatial dims"))?;
        (0..n).map(|i| split(full(i, sizes[i]) - sizes[i] * strides[i])).collect()
    } else if auto_pad == "VALID" {
        vec![(0, 0); n]
    } else {
        let p = ints_n(c, "pads", 2 * n, 0)?;
        (0..n).map(|i| (p[i], p[n + i])).collect()
    };
    let direct = pads
        .iter()
        .zip(&out_pad)
        .enumerate()
        .all(|(i, (&(b, e), &op))| b == e && b >= 0 && op >= 0 && op < strides[i].max(dilations[i]));
    let conv = |c: &mut Ctx, bias: Option<ValueId>, padding: Vec<i64>, op: Vec<i64>| {
        c.op(
            "aten.convolution.default",
            vec![
                t(x),
                t(w),
                bias.map_or(Arg::None, t),
                Arg::Ints(strides.clone()),
                Arg::Ints(padding),
                Arg::Ints(dilations.clone()),
                Arg::Bool(true),
                Arg::Ints(op),
                Arg::Int(group),
            ],
            vec![],
        )
    };
    if direct {
        let y = conv(c, bias, pads.iter().map(|p| p.0).collect(), out_pad.clone())?;
        return Ok(vec![Out::Value(y)]);
    }
    let y = conv(c, None, vec![0; n], vec![0; n])?;
    let crop: Vec<i64> = pads.iter().zip(&out_pad).rev().flat_map(|(&(b, e), &op)| [-b, op - e]).collect();
    let mut y = c.op("aten.constant_pad_nd.default", vec![t(y), Arg::Ints(crop)], vec![])?;
    if let Some(b) = bias {
        let mut shape = vec![Dim::constant(-1)];
        shape.extend(std::iter::repeat_n(Dim::constant(1), n));
        let b = c.op("aten.reshape.default", vec![t(b), Arg::sym_ints(shape)], vec![])?;
        y = c.op("aten.add.Tensor", vec![t(y), t(b)], vec![])?;
    }
    Ok(vec![Out::Value(y)])
}

fn pool_op(c: &Ctx, kind: &str, n: usize) -> Result<&'static str, OnnxError> {
    Ok(match (kind, n) {
        ("max", 1) => "aten.max_pool1d.default",
        ("max", 2) => "aten.max_pool2d.default",
        ("max", 3) => "aten.max_pool3d.default",
        ("avg", 1) => "aten.avg_pool1d.default",
        ("avg", 2) => "aten.avg_pool2d.default",
        ("avg", 3) => "aten.avg_pool3d.default",
        _ => return Err(c.err(format!("{n}-D pooling is not supported"))),
    })
}

/// Pads PyTorch's pooling accepts directly: symmetric and at most half the kernel.
fn torch_pool_pads(w: &Window) -> bool {
    w.symmetric() && w.pads.iter().zip(&w.kernel).all(|(&(p, _), &k)| p >= 0 && 2 * p <= k)
}

pub(super) fn max_pool(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    if c.wants_output(1) {
        return Err(c.err("the Indices output is not supported"));
    }
    let mut x = c.x(0)?;
    let kernel = c.small_ints("kernel_shape")?.ok_or_else(|| c.attr_err("kernel_shape", "required"))?;
    let win = Window::read(c, x, kernel)?;
    let n = win.kernel.len();
    let op = pool_op(c, "max", n)?;
    let ceil = c.int("ceil_mode", 0)? != 0;
    let padding = if torch_pool_pads(&win) {
        win.begin_pads()
    } else {
        let dtype = c.vty(x).dtype;
        let lowest = if dtype.is_floating() { Arg::Float(f64::NEG_INFINITY) } else { Arg::Int(int_min(dtype)) };
        x = pad_explicit(c, x, &win, lowest)?;
        vec![0; n]
    };
    c.one(
        op,
        vec![
            t(x),
            Arg::Ints(win.kernel),
            Arg::Ints(win.strides),
            Arg::Ints(padding),
            Arg::Ints(win.dilations),
            Arg::Bool(ceil),
        ],
        vec![],
    )
}

fn int_min(d: DType) -> i64 {
    match d {
        DType::Uint8 | DType::Bool => 0,
        DType::Int8 => i8::MIN as i64,
        DType::Int16 => i16::MIN as i64,
        DType::Int32 => i32::MIN as i64,
        _ => i64::MIN,
    }
}

/// `AveragePool`. Asymmetric pads: explicit zero padding; without `count_include_pad` the sum is
/// divided by the pooled count of ones (the same average over the real elements only).
pub(super) fn average_pool(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    let x = c.x(0)?;
    let kernel = c.small_ints("kernel_shape")?.ok_or_else(|| c.attr_err("kernel_shape", "required"))?;
    let win = Window::read(c, x, kernel)?;
    if win.dilations.iter().any(|&d| d != 1) {
        return Err(c.attr_err("dilations", "dilated average pooling is not supported"));
    }
    let n = win.kernel.len();
    let op = pool_op(c, "avg", n)?;
    let ceil = c.int("ceil_mode", 0)? != 0;
    let include = c.int("count_include_pad", 0)? != 0;
    let pool = |c: &mut Ctx, v: ValueId, padding: Vec<i64>, include: bool| {
        c.op(
            op,
            vec![
                t(v),
                Arg::Ints(win.kernel.clone()),
                Arg::Ints(win.strides.clone()),
                Arg::Ints(padding),
                Arg::Bool(ceil),
                Arg::Bool(include),
            ],
            vec![],
        )
    };
    if torch_pool_pads(&win) {
        let y = pool(c, x, win.begin_pads(), include)?;
        return Ok(vec![Out::Value(y)]);
    }
    let padded = pad_explicit(c, x, &win, Arg::Int(0))?;
    let y = pool(c, padded, vec![0; n], true)?;
    if include {
        return Ok(vec![Out::Value(y)]);
    }
    let ones = c.op("aten.ones_like.default", vec![t(x)], vec![])?;
    let ones = pad_explicit(c, ones, &win, Arg::Int(0))?;
    let count = pool(c, ones, vec![0; n], true)?;
    c.one("aten.div.Tensor", vec![t(y), t(count)], vec![])
}

fn spatial_axes(c: &Ctx, x: ValueId) -> Vec<i64> {
    (2..c.vty(x).rank() as i64).collect()
}

pub(super) fn global_average_pool(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let axes = spatial_axes(c, x);
    c.one("aten.mean.dim", vec![t(x), Arg::Ints(axes), Arg::Bool(true)], vec![])
}

pub(super) fn global_max_pool(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let axes = spatial_axes(c, x);
    c.one("aten.amax.default", vec![t(x), Arg::Ints(axes), Arg::Bool(true)], vec![])
}

/// `BatchNormalization` at inference: the first output of `_native_batch_norm_legit_no_training`.
pub(super) fn batch_norm(c: &mut Ctx) -> R {
    c.expect_inputs(5, 5)?;
    if c.int("training_mode", 0)? != 0 {
        return Err(c.attr_err("training_mode", "training-mode batch normalization is not supported"));
    }
    if c.opset() < 9 && c.int("spatial", 1)? == 0 {
        return Err(c.attr_err("spatial", "per-activation batch normalization is not supported"));
    }
    let x = c.x(0)?;
    let params = (1..5).map(|i| c.x(i)).collect::<Result<Vec<_>, _>>()?;
    let eps = c.float("epsilon", 1e-5)?;
    let momentum = 1.0 - c.float("momentum", 0.9)?;
    let outs = c.op_n(
        "aten._native_batch_norm_legit_no_training.default",
        vec![t(x), t(params[0]), t(params[1]), t(params[2]), t(params[3]), Arg::Float(momentum), Arg::Float(eps)],
        vec![],
    )?;
    // Old opsets may list the running statistics as outputs; at inference they are the inputs.
    let mut result = vec![Out::Value(outs[0])];
    if c.node.output.len() > 1 {
        result.push(Out::Alias(c.input_name_owned(3)?));
        result.push(Out::Alias(c.input_name_owned(4)?));
    }
    Ok(result)
}

pub(super) fn instance_norm(c: &mut Ctx) -> R {
    c.expect_inputs(3, 3)?;
    let (x, s, b) = (c.x(0)?, c.x(1)?, c.x(2)?);
    let eps = c.float("epsilon", 1e-5)?;
    c.one(
        "aten.instance_norm.default",
        vec![
            t(x),
            t(s),
            t(b),
            Arg::None,
            Arg::None,
            Arg::Bool(true),
            Arg::Float(0.1),
            Arg::Float(eps),
            Arg::Bool(false),
        ],
        vec![],
    )
}

/// `LayerNormalization` over the dims from `axis` on: `aten.layer_norm`, or
/// `native_layer_norm` when the mean and inverse standard deviation are requested.
pub(super) fn layer_norm(c: &mut Ctx) -> R {
    c.expect_inputs(2, 3)?;
    let x = c.x(0)?;
    let tx = c.vty(x);
    let axis = c.axis(c.int("axis", -1)?, tx.rank(), "axis")?;
    let norm: Vec<Dim> = tx.shape[axis..].to_vec();
    let mut affine = Vec::new();
    for i in 1..3 {
        let Some(v) = c.opt_x(i)? else {
            affine.push(Arg::None);
            continue;
        };
        let v = if c.vty(v).shape == norm {
            v
        } else {
            c.op("aten.expand.default", vec![t(v), Arg::sym_ints(norm.clone())], vec![])?
        };
        affine.push(t(v));
    }
    let eps = c.float("epsilon", 1e-5)?;
    let (w, b) = (affine[0].clone(), affine[1].clone());
    if c.wants_output(1) || c.wants_output(2) {
        let outs =
            c.op_n("aten.native_layer_norm.default", vec![t(x), Arg::sym_ints(norm), w, b, Arg::Float(eps)], vec![])?;
        return Ok(outs.into_iter().map(Out::Value).collect());
    }
    c.one("aten.layer_norm.default", vec![t(x), Arg::sym_ints(norm), w, b, Arg::Float(eps)], vec![])
}

/// `GroupNormalization`: scale and bias per channel (opset 21) or per group (opset 18, repeated
/// to channels).
pub(super) fn group_norm(c: &mut Ctx) -> R {
    c.expect_inputs(3, 3)?;
    let (x, mut s, mut b) = (c.x(0)?, c.x(1)?, c.x(2)?);
    let groups = c.small_int("num_groups", 0)?;
    if groups <= 0 {
        return Err(c.attr_err("num_groups", "must be positive"));
    }
    let eps = c.float("epsilon", 1e-5)?;
    let channels = c.vty(x).shape.get(1).and_then(Dim::as_const);
    let per_group = c.vty(s).shape.first().and_then(Dim::as_const) == Some(groups) && channels != Some(groups);
    if per_group {
        let ch = channels.ok_or_else(|| c.err("per-group scale needs a static channel count"))?;
        let rep = Arg::Int(ch / groups.max(1));
        s = c.op("aten.repeat_interleave.self_int", vec![t(s), rep.clone(), Arg::Int(0)], vec![])?;
        b = c.op("aten.repeat_interleave.self_int", vec![t(b), rep, Arg::Int(0)], vec![])?;
    }
    c.one(
        "aten.group_norm.default",
        vec![t(x), Arg::Int(groups), t(s), t(b), Arg::Float(eps), Arg::Bool(false)],
        vec![],
    )
}

/// `LRN` as PyTorch's `local_response_norm`: the channel-window mean of `x²` (an average pool over
/// a padded channel axis), then `x / (bias + alpha * mean)^beta`.
pub(super) fn lrn(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    let x = c.x(0)?;
    let tx = c.vty(x);
    if tx.rank() < 2 {
        return Err(c.err("LRN input must be at least 2-D"));
    }
    let size = c.small_int("size", 0)?;
    if size <= 0 {
        return Err(c.attr_err("size", "must be positive"));
    }
    let alpha = c.float("alpha", 1e-4)?;
    let beta = c.float("beta", 0.75)?;
    let bias = c.float("bias", 1.0)?;
    let rest = tx.shape[2..].iter().fold(Dim::constant(1), |a, d| a.mul(d));
    let sq = c.op("aten.mul.Tensor", vec![t(x), t(x)], vec![])?;
    let shape4 = vec![tx.shape[0].clone(), Dim::constant(1), tx.shape[1].clone(), rest];
    let sq = c.op("aten.reshape.default", vec![t(sq), Arg::sym_ints(shape4)], vec![])?;
    let (front, back) = ((size - 1) / 2, size - 1 - (size - 1) / 2);
    let sq = c.op("aten.constant_pad_nd.default", vec![t(sq), Arg::Ints(vec![0, 0, front, back])], vec![])?;
    let avg = c.op(
        "aten.avg_pool2d.default",
        vec![
            t(sq),
            Arg::Ints(vec![size, 1]),
            Arg::Ints(vec![1, 1]),
            Arg::Ints(vec![0, 0]),
            Arg::Bool(false),
            Arg::Bool(true),
        ],
        vec![],
    )?;
    let avg = c.op("aten.reshape.default", vec![t(avg), Arg::sym_ints(tx.shape.clone())], vec![])?;
    let den = c.op("aten.mul.Scalar", vec![t(avg), Arg::Float(alpha)], vec![])?;
    let den = c.op("aten.add.Scalar", vec![t(den), Arg::Float(bias)], vec![])?;
    let den = c.op("aten.pow.Tensor_Scalar", vec![t(den), Arg::Float(beta)], vec![])?;
    c.one("aten.div.Tensor", vec![t(x), t(den)], vec![])
}

/// `Dropout` at inference: the identity; the mask (if requested) is all true.
pub(super) fn dropout(c: &mut Ctx) -> R {
    c.expect_inputs(1, 3)?;
    if c.opset() >= 12 && c.has(2) {
        let training = c.host(2).and_then(|h| h.as_f64()).ok_or_else(|| c.err("training_mode must be a constant"))?;
        if training.first().is_some_and(|&v| v != 0.0) {
            return Err(c.err("training-mode dropout is not supported"));
        }
    }
    let mut outs = vec![Out::Alias(c.input_name_owned(0)?)];
    if c.wants_output(1) {
        let x = c.x(0)?;
        let dtype = if c.opset() >= 10 { DType::Bool } else { c.vty(x).dtype };
        outs.push(Out::Value(c.op("aten.ones_like.default", vec![t(x)], vec![("dtype", Arg::DType(dtype))])?));
    }
    Ok(outs)
}

/// Resampling of a 4-D input by `upsample_nearest2d` or `upsample_bilinear2d`.
fn resample(
    c: &mut Ctx,
    x: ValueId,
    mode: &str,
    coord: &str,
    nearest: &str,
    scales: Option<Vec<f64>>,
    sizes: Option<Vec<i64>>,
) -> R {
    let tx = c.vty(x);
    if tx.rank() != 4 {
        return Err(c.err(format!("only 4-D resizing is supported, the input is {tx}")));
    }
    if let Some(s) = &scales {
        if s.len() != 4 || s[0] != 1.0 || s[1] != 1.0 {
            return Err(c.err(format!("scales {s:?} must keep the batch and channel dims")));
        }
    }
    if let Some(s) = &sizes {
        if s.len() != 4 || Some(s[0]) != tx.shape[0].as_const() || Some(s[1]) != tx.shape[1].as_const() {
            return Err(c.err(format!("sizes {s:?} must keep the batch and channel dims")));
        }
    }
    let (size_arg, scale_arg) = match (&sizes, &scales) {
        (Some(s), _) => (Arg::Ints(s[2..].to_vec()), Arg::None),
        (None, Some(s)) => (Arg::None, Arg::Floats(s[2..].to_vec())),
        (None, None) => return Err(c.err("needs scales or sizes")),
    };
    let integer_up = scales.as_ref().is_some_and(|s| s[2..].iter().all(|v| v.fract() == 0.0 && *v >= 1.0));
    match mode {
        "nearest" => {
            let floor = coord == "asymmetric" && nearest == "floor";
            let half = matches!(coord, "half_pixel" | "pytorch_half_pixel" | "tf_half_pixel_for_nn")
                && matches!(nearest, "round_prefer_floor" | "round_prefer_ceil")
                && integer_up;
            if !floor && !half {
                return Err(c.err(format!("nearest resizing with `{coord}`/`{nearest}` is not supported")));
            }
            c.one("aten.upsample_nearest2d.vec", vec![t(x), size_arg, scale_arg], vec![])
        }
        "linear" | "bilinear" => {
            let align = match coord {
                "half_pixel" | "pytorch_half_pixel" => false,
                "align_corners" => true,
                other => return Err(c.err(format!("linear resizing with `{other}` is not supported"))),
            };
            c.one("aten.upsample_bilinear2d.vec", vec![t(x), size_arg, Arg::Bool(align), scale_arg], vec![])
        }
        other => Err(c.err(format!("`{other}` resizing is not supported"))),
    }
}

/// `Resize` (opset 10: `X, scales`; 11+: `X, roi, scales, sizes`).
pub(super) fn resize(c: &mut Ctx) -> R {
    c.expect_inputs(1, 4)?;
    let x = c.x(0)?;
    let mode = c.string("mode", "nearest")?;
    if c.int("antialias", 0)? != 0 {
        return Err(c.attr_err("antialias", "antialiased resizing is not supported"));
    }
    if c.ints("axes")?.is_some() {
        return Err(c.attr_err("axes", "resizing selected axes is not supported"));
    }
    let (coord, nearest) = if c.opset() < 11 {
        ("asymmetric".to_string(), "floor".to_string())
    } else {
        (c.string("coordinate_transformation_mode", "half_pixel")?, c.string("nearest_mode", "round_prefer_floor")?)
    };
    let scales_i = if c.opset() < 11 { 1 } else { 2 };
    let scales = if c.has(scales_i) && c.host(scales_i).is_some_and(|h| h.numel() > 0) {
        Some(c.const_f64(scales_i, "scales")?)
    } else {
        None
    };
    let sizes = if c.opset() >= 11 && c.has(3) { Some(c.const_ints(3, "sizes")?) } else { None };
    resample(c, x, &mode, &coord, &nearest, scales, sizes)
}

/// `Upsample` (opset 7: `scales` attribute; 9: input): asymmetric coordinates.
pub(super) fn upsample(c: &mut Ctx) -> R {
    c.expect_inputs(1, 2)?;
    let x = c.x(0)?;
    let mode = c.string("mode", "nearest")?;
    let scales = match c.floats("scales")? {
        Some(s) => s.into_iter().map(f64::from).collect(),
        None => c.const_f64(1, "scales")?,
    };
    if mode != "nearest" && scales.iter().any(|&s| s != 1.0) {
        return Err(c.err("linear Upsample (asymmetric coordinates) is not supported"));
    }
    resample(c, x, "nearest", "asymmetric", "floor", Some(scales), None)
}

/// `DepthToSpace(blocksize, mode)`: DCR (default) or CRD (`pixel_shuffle` order).
pub(super) fn depth_to_space(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let tx = c.vty(x);
    let b = c.small_int("blocksize", 0)?;
    if tx.rank() != 4 || b <= 0 || b > 1 << 16 {
        return Err(c.err("DepthToSpace needs a 4-D input and a positive blocksize"));
    }
    let (n, ch, h, w) = (tx.shape[0].clone(), tx.shape[1].clone(), tx.shape[2].clone(), tx.shape[3].clone());
    let bd = Dim::constant(b);
    let cc = ch.floor_div(&Dim::constant(b * b));
    let crd = c.string("mode", "DCR")? == "CRD";
    let (split, perm) = if crd {
        (vec![n.clone(), cc.clone(), bd.clone(), bd.clone(), h.clone(), w.clone()], vec![0, 1, 4, 2, 5, 3])
    } else {
        (vec![n.clone(), bd.clone(), bd.clone(), cc.clone(), h.clone(), w.clone()], vec![0, 3, 4, 1, 5, 2])
    };
    let v = c.op("aten.reshape.default", vec![t(x), Arg::sym_ints(split)], vec![])?;
    let v = c.op("aten.permute.default", vec![t(v), Arg::Ints(perm)], vec![])?;
    c.one("aten.reshape.default", vec![t(v), Arg::sym_ints(vec![n, cc, h.scale(b), w.scale(b)])], vec![])
}

/// `SpaceToDepth(blocksize)`.
pub(super) fn space_to_depth(c: &mut Ctx) -> R {
    let x = c.x(0)?;
    let tx = c.vty(x);
    let b = c.small_int("blocksize", 0)?;
    if tx.rank() != 4 || b <= 0 || b > 1 << 16 {
        return Err(c.err("SpaceToDepth needs a 4-D input and a positive blocksize"));
    }
    let (n, ch, h, w) = (tx.shape[0].clone(), tx.shape[1].clone(), tx.shape[2].clone(), tx.shape[3].clone());
    let bd = Dim::constant(b);
    let (hb, wb) = (h.floor_div(&bd), w.floor_div(&bd));
    let split = vec![n.clone(), ch.clone(), hb.clone(), bd.clone(), wb.clone(), bd];
    let v = c.op("aten.reshape.default", vec![t(x), Arg::sym_ints(split)], vec![])?;
    let v = c.op("aten.permute.default", vec![t(v), Arg::Ints(vec![0, 3, 5, 1, 2, 4])], vec![])?;
    c.one("aten.reshape.default", vec![t(v), Arg::sym_ints(vec![n, ch.scale(b * b), hb, wb])], vec![])
}
