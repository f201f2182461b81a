//! Constants, shapes, views, joining, slicing, indexing and padding.
//!
//! The `*_spec` helpers read a node's parameters (attributes in old opsets, inputs in new ones)
//! in one place; the constant folder uses them too, so both paths share one reading of the spec.

use genie_ir::{Arg, DType, Dim, ValueId};

use super::{Ctx, Out};
use crate::onnx::host::HostTensor;
use crate::onnx::import::{FOLD_LIMIT, HOST_LIMIT, MAX_DIM};
use crate::onnx::tensor::{decode, dtype_for, Payload};
use crate::onnx::OnnxError;

type R = Result<Vec<Out>, OnnxError>;

fn t(v: ValueId) -> Arg {
    Arg::Tensor(v)
}

pub(super) fn identity(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    Ok(vec![Out::Alias(c.input_name_owned(0)?)])
}

/// The target dtype of `Cast`.
pub(crate) fn cast_target(c: &Ctx) -> Result<DType, OnnxError> {
    let to = c.opt_int("to")?.ok_or_else(|| c.attr_err("to", "required"))?;
    dtype_for(to as i32, &format!("{} output", c.label))
}

fn convert(c: &mut Ctx, to: DType) -> R {
    if c.ty(0)?.dtype == to {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    let x = c.x(0)?;
    c.one("aten._to_copy.default", vec![t(x)], vec![("dtype", Arg::DType(to))])
}

pub(super) fn cast(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    let to = cast_target(c)?;
    convert(c, to)
}

pub(super) fn cast_like(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let to = c.ty(1)?.dtype;
    convert(c, to)
}

/// `Constant`: small values stay on the host (and fold); large ones are weights.
pub(super) fn constant(c: &mut Ctx) -> R {
    let name = c.node.output.first().cloned().unwrap_or_default();
    let attr = c.node.attribute.first().ok_or_else(|| c.err("a Constant needs a value attribute"))?;
    let host = match attr.name.as_str() {
        "value" => {
            let tp = c.tensor_attr("value")?.ok_or_else(|| c.attr_err("value", "missing tensor"))?;
            let d = decode(tp, &name, &mut c.imp.files)?;
            let bytes = match &d.payload {
                Payload::Inline(b) => Some(b.clone()),
                Payload::External { path, offset, len } => c.imp.files.bytes(path, *offset, *len).map(<[u8]>::to_vec),
            };
            let host = (d.numel() <= HOST_LIMIT)
                .then(|| bytes.as_ref().and_then(|b| HostTensor::from_le_bytes(d.ty.dtype, d.shape.clone(), b)))
                .flatten();
            match host {
                Some(h) => h,
                None => {
                    let bytes = bytes.ok_or_else(|| c.err("external constant data is not readable"))?;
                    let hash = c.imp.weights.insert_inline(d.ty.clone(), bytes);
                    return Ok(vec![Out::Value(c.imp.g.add_weight(name, d.ty, hash))]);
                }
            }
        }
        "value_float" => HostTensor::floats(DType::Float32, vec![], vec![attr.f as f64]),
        "value_floats" => {
            HostTensor::floats(DType::Float32, vec![attr.floats.len()], attr.floats.iter().map(|&f| f as f64).collect())
        }
        "value_int" => HostTensor::ints(DType::Int64, vec![], vec![Dim::constant(attr.i)]),
        "value_ints" => HostTensor::i64_vec(attr.ints.iter().map(|&i| Dim::constant(i)).collect()),
        other => return Err(c.attr_err(other, "this kind of constant is not supported")),
    };
    Ok(vec![Out::Host(host)])
}

/// The fill value of `ConstantOfShape` (default: float32 zero).
fn fill_value(c: &mut Ctx) -> Result<HostTensor, OnnxError> {
    let Some(tp) = c.tensor_attr("value")? else {
        return Ok(HostTensor::floats(DType::Float32, vec![], vec![0.0]));
    };
    let name = format!("{} value", c.label);
    let d = decode(tp, &name, &mut c.imp.files)?;
    let n = d.numel();
    let Payload::Inline(bytes) = d.payload else { return Err(c.attr_err("value", "must be inline")) };
    let h = HostTensor::from_le_bytes(d.ty.dtype, vec![1], &bytes)
        .filter(|_| n == 1)
        .ok_or_else(|| c.attr_err("value", format!("must be one number, got {}", d.ty)))?;
    Ok(h)
}

/// `ConstantOfShape`: a host value when small and static, `aten.full` otherwise.
pub(super) fn constant_of_shape(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    let shape = c.const_dims(0, "input")?;
    let value = fill_value(c)?;
    let fill = value.as_f64().and_then(|v| v.first().copied()).unwrap_or(0.0);
    let statics: Option<Vec<i64>> = shape.iter().map(Dim::as_const).collect();
    if let Some(s) = &statics {
        if s.iter().any(|&d| d < 0) {
            return Err(c.err(format!("negative dims in shape {s:?}")));
        }
        let numel = s.iter().try_fold(1usize, |a, &d| a.checked_mul(d as usize));
        if let Some(n) = numel.filter(|&n| n <= FOLD_LIMIT) {
            let shape = s.iter().map(|&d| d as usize).collect();
            return Ok(vec![Out::Host(value.take(shape, &vec![0; n]))]);
        }
    }
    let dtype = value.dtype;
    c.one(
        "aten.full.default",
        vec![Arg::sym_ints(shape), Ctx::scalar_arg(dtype, fill)],
        vec![("dtype", Arg::DType(dtype))],
    )
}

/// `Shape(start, end)`: the (possibly symbolic) dims, always known at import time.
pub(super) fn shape(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    let ty = c.ty(0)?;
    let r = ty.rank() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(c.int("start", 0)?);
    let end = clamp(c.int("end", r)?);
    let dims = ty.shape.get(start..end.max(start)).unwrap_or_default().to_vec();
    Ok(vec![Out::Host(HostTensor::i64_vec(dims))])
}

pub(super) fn size(c: &mut Ctx) -> R {
    c.expect_inputs(1, 1)?;
    let n = c.ty(0)?.numel();
    Ok(vec![Out::Host(HostTensor::ints(DType::Int64, vec![], vec![n]))])
}

/// `Range(start, limit, delta)`: folded when static and small, `aten.arange` otherwise (the
/// bounds may be symbolic).
pub(super) fn range(c: &mut Ctx) -> R {
    c.expect_inputs(3, 3)?;
    let dtype = c.ty(0)?.dtype;
    let scalar = |c: &Ctx, i: usize, what: &str| -> Result<HostTensor, OnnxError> {
        let h = c.host(i).ok_or_else(|| c.err(format!("`{what}` must be known at import time")))?;
        if h.numel() != 1 {
            return Err(c.err(format!("`{what}` must be a scalar")));
        }
        Ok((*h).clone())
    };
    let (start, limit, delta) = (scalar(c, 0, "start")?, scalar(c, 1, "limit")?, scalar(c, 2, "delta")?);
    if let Some(h) = crate::onnx::fold::range(&start, &limit, &delta).map_err(|e| c.err(e))? {
        return Ok(vec![Out::Host(h)]);
    }
    let arg = |h: &HostTensor| match h.dims() {
        Some(d) => Arg::sym_int(d[0].clone()),
        None => Arg::Float(h.as_f64().and_then(|v| v.first().copied()).unwrap_or(0.0)),
    };
    c.one("aten.arange.start_step", vec![arg(&start), arg(&limit), arg(&delta)], vec![("dtype", Arg::DType(dtype))])
}

/// `Reshape`'s target with `0` (copy the input dim, unless `allowzero`) resolved; `-1` stays.
pub(crate) fn reshape_spec(c: &Ctx, input: &[Dim]) -> Result<Vec<Dim>, OnnxError> {
    let target = if c.opset() < 5 {
        c.ints("shape")?.ok_or_else(|| c.attr_err("shape", "required"))?.into_iter().map(Dim::constant).collect()
    } else {
        c.expect_inputs(2, 2)?;
        c.const_dims(1, "shape")?
    };
    let allowzero = c.int("allowzero", 0)? != 0;
    if target.iter().filter(|d| d.as_const() == Some(-1)).count() > 1 {
        return Err(c.err("the shape has more than one -1"));
    }
    target
        .into_iter()
        .enumerate()
        .map(|(i, d)| match d.as_const() {
            Some(0) if !allowzero => {
                input.get(i).cloned().ok_or_else(|| c.err(format!("shape copies dim {i} the input lacks")))
            }
            Some(v) if v < -1 => Err(c.err(format!("invalid size {v}"))),
            _ => Ok(d),
        })
        .collect()
}

pub(super) fn reshape(c: &mut Ctx) -> R {
    let ty = c.ty(0)?;
    let target = reshape_spec(c, &ty.shape)?;
    if target == ty.shape {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    let x = c.x(0)?;
    c.one("aten.reshape.default", vec![t(x), Arg::sym_ints(target)], vec![])
}

/// `Flatten(axis)`: the 2-D shape `[prod(dims[..axis]), prod(dims[axis..])]`.
pub(crate) fn flatten_spec(c: &Ctx, input: &[Dim]) -> Result<Vec<Dim>, OnnxError> {
    c.expect_inputs(1, 1)?;
    let r = input.len() as i64;
    let axis = c.int("axis", 1)?;
    let axis = if axis < 0 { axis + r } else { axis };
    if axis < 0 || axis > r {
        return Err(c.attr_err("axis", format!("{axis} is out of range for rank {r}")));
    }
    let prod = |ds: &[Dim]| ds.iter().fold(Dim::constant(1), |a, d| a.mul(d));
    Ok(vec![prod(&input[..axis as usize]), prod(&input[axis as usize..])])
}

pub(super) fn flatten(c: &mut Ctx) -> R {
    let ty = c.ty(0)?;
    let target = flatten_spec(c, &ty.shape)?;
    let x = c.x(0)?;
    c.one("aten.reshape.default", vec![t(x), Arg::sym_ints(target)], vec![])
}

/// The `axes` of `Squeeze`/`Unsqueeze`: an attribute before opset 13, input #1 after.
fn axes_spec(c: &Ctx) -> Result<Option<Vec<i64>>, OnnxError> {
    if c.opset() < 13 {
        c.expect_inputs(1, 1)?;
        c.ints("axes")
    } else {
        c.expect_inputs(1, 2)?;
        if c.has(1) {
            c.const_ints(1, "axes").map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `Squeeze`: the squeezed axes and the output shape; the axes (default: every static 1) must
/// be size 1.
pub(crate) fn squeeze_spec(c: &Ctx, input: &[Dim]) -> Result<(Vec<usize>, Vec<Dim>), OnnxError> {
    let axes = match axes_spec(c)? {
        Some(a) => a.into_iter().map(|a| c.dim_axis(a, input.len(), "axis")).collect::<Result<Vec<_>, _>>()?,
        None => (0..input.len()).filter(|&i| input[i].as_const() == Some(1)).collect(),
    };
    for &a in &axes {
        if input[a].as_const().is_some_and(|v| v != 1) {
            return Err(c.err(format!("cannot squeeze dim {a} of size {}", input[a])));
        }
    }
    let out = input.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect();
    Ok((axes, out))
}

pub(super) fn squeeze(c: &mut Ctx) -> R {
    let ty = c.ty(0)?;
    let (axes, target) = squeeze_spec(c, &ty.shape)?;
    if target.len() == ty.rank() {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    let x = c.x(0)?;
    if axes.iter().all(|&a| ty.shape[a].as_const() == Some(1)) {
        let dims = axes.into_iter().map(|a| a as i64).collect();
        return c.one("aten.squeeze.dims", vec![t(x), Arg::Ints(dims)], vec![]);
    }
    // A symbolic dim the model asserts is 1.
    c.one("aten.reshape.default", vec![t(x), Arg::sym_ints(target)], vec![])
}

/// `Unsqueeze`: the new axes (counted in the output's rank, sorted) and the output shape.
pub(crate) fn unsqueeze_spec(c: &Ctx, input: &[Dim]) -> Result<(Vec<usize>, Vec<Dim>), OnnxError> {
    let axes = axes_spec(c)?.ok_or_else(|| c.err("axes are required"))?;
    let out_rank = input.len() + axes.len();
    let mut axes = axes.into_iter().map(|a| c.axis(a, out_rank, "axis")).collect::<Result<Vec<_>, _>>()?;
    axes.sort_unstable();
    if axes.windows(2).any(|w| w[0] == w[1]) {
        return Err(c.err("repeated axis"));
    }
    let mut out = input.to_vec();
    for &a in &axes {
        out.insert(a, Dim::constant(1));
    }
    Ok((axes, out))
}

pub(super) fn unsqueeze(c: &mut Ctx) -> R {
    let ty = c.ty(0)?;
    let (axes, target) = unsqueeze_spec(c, &ty.shape)?;
    let x = c.x(0)?;
    match axes[..] {
        [] => Ok(vec![Out::Alias(c.input_name_owned(0)?)]),
        [a] => c.one("aten.unsqueeze.default", vec![t(x), Arg::Int(a as i64)], vec![]),
        _ => c.one("aten.reshape.default", vec![t(x), Arg::sym_ints(target)], vec![]),
    }
}

/// `Transpose`'s permutation (default: reversed), checked.
pub(crate) fn perm_spec(c: &Ctx, rank: usize) -> Result<Vec<usize>, OnnxError> {
    c.expect_inputs(1, 1)?;
    let perm = match c.ints("perm")? {
        Some(p) => p.into_iter().map(|a| c.axis(a, rank, "perm entry")).collect::<Result<Vec<_>, _>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = vec![false; rank];
    if perm.len() != rank || perm.iter().any(|&p| std::mem::replace(&mut seen[p], true)) {
        return Err(c.attr_err("perm", format!("{perm:?} is not a permutation of rank {rank}")));
    }
    Ok(perm)
}

pub(super) fn transpose(c: &mut Ctx) -> R {
    let rank = c.ty(0)?.rank();
    let perm = perm_spec(c, rank)?;
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    let x = c.x(0)?;
    c.one("aten.permute.default", vec![t(x), Arg::Ints(perm.into_iter().map(|p| p as i64).collect())], vec![])
}

pub(super) fn concat(c: &mut Ctx) -> R {
    if c.n_inputs() == 0 || (0..c.n_inputs()).any(|i| !c.has(i)) {
        return Err(c.err("Concat needs one or more inputs"));
    }
    let rank = c.ty(0)?.rank();
    let axis = c.axis(c.opt_int("axis")?.unwrap_or(if c.opset() < 4 { 1 } else { 0 }), rank, "axis")?;
    let xs = (0..c.n_inputs()).map(|i| c.x(i)).collect::<Result<Vec<_>, _>>()?;
    if xs.len() == 1 {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    c.one("aten.cat.default", vec![Arg::Tensors(xs), Arg::Int(axis as i64)], vec![])
}

/// `Split`: the axis and the size of every output.
pub(crate) fn split_spec(c: &Ctx, input: &[Dim]) -> Result<(usize, Vec<Dim>), OnnxError> {
    let axis = c.dim_axis(c.int("axis", 0)?, input.len(), "axis")?;
    let n_out = c.node.output.len();
    let given = if c.opset() < 13 {
        c.small_ints("split")?.filter(|s| !s.is_empty()).map(|s| s.into_iter().map(Dim::constant).collect())
    } else if c.has(1) {
        Some(c.const_dims(1, "split")?)
    } else {
        None
    };
    if let Some(sizes) = given {
        if sizes.len() != n_out {
            return Err(c.err(format!("{} split sizes for {n_out} outputs", sizes.len())));
        }
        return Ok((axis, sizes));
    }
    let n = input[axis].as_const().ok_or_else(|| c.err("an even split of a symbolic dim"))?;
    let parts = match c.opt_int("num_outputs")? {
        Some(k) if k as usize != n_out => return Err(c.err(format!("num_outputs {k} but {n_out} outputs"))),
        _ => n_out as i64,
    };
    if parts <= 0 {
        return Err(c.err("Split needs outputs"));
    }
    let chunk = (n + parts - 1) / parts;
    if c.opset() < 18 && n % parts != 0 {
        return Err(c.err(format!("dim of size {n} does not split evenly into {parts}")));
    }
    let sizes = (0..parts).map(|i| Dim::constant((n - i * chunk).clamp(0, chunk))).collect();
    Ok((axis, sizes))
}

pub(super) fn split(c: &mut Ctx) -> R {
    c.expect_inputs(1, 2)?;
    let ty = c.ty(0)?;
    let (axis, sizes) = split_spec(c, &ty.shape)?;
    let x = c.x(0)?;
    let outs =
        c.op_n("aten.split_with_sizes.default", vec![t(x), Arg::sym_ints(sizes), Arg::Int(axis as i64)], vec![])?;
    Ok(outs.into_iter().map(Out::Value).collect())
}

/// One axis of a `Slice`, with ONNX's clamping applied where the dim is static.
#[derive(Debug)]
pub(crate) struct SliceAxis {
    pub axis: usize,
    pub start: Dim,
    /// `None`: to the end.
    pub end: Option<Dim>,
    pub step: i64,
}

/// ONNX clamping of a static slice over a dim of size `n`.
pub(crate) fn clamp_slice(start: i64, end: i64, step: i64, n: i64) -> (i64, i64) {
    let norm = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (s, e) = (norm(start), norm(end));
    if step > 0 {
        (s.clamp(0, n), e.clamp(0, n))
    } else {
        (s.clamp(0, (n - 1).max(0)), e.clamp(-1, n - 1))
    }
}

/// `Slice`: starts, ends, axes and steps as attributes (opset < 10) or inputs.
pub(crate) fn slice_spec(c: &Ctx, input: &[Dim]) -> Result<Vec<SliceAxis>, OnnxError> {
    let (starts, ends, axes, steps) = if c.opset() < 10 {
        c.expect_inputs(1, 1)?;
        let req = |n: &str| c.ints(n)?.ok_or_else(|| c.attr_err(n, "required"));
        let s = req("starts")?.into_iter().map(Dim::constant).collect::<Vec<_>>();
        let e = req("ends")?.into_iter().map(Dim::constant).collect();
        (s, e, c.ints("axes")?, None)
    } else {
        c.expect_inputs(3, 5)?;
        let axes = if c.has(3) { Some(c.const_ints(3, "axes")?) } else { None };
        let steps = if c.has(4) { Some(c.const_ints(4, "steps")?) } else { None };
        (c.const_dims_unbounded(1, "starts")?, c.const_dims_unbounded(2, "ends")?, axes, steps)
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err(c.err("starts, ends, axes and steps differ in length"));
    }
    let mut out = Vec::with_capacity(k);
    for i in 0..k {
        let axis = c.dim_axis(axes[i], input.len(), "axis")?;
        let step = steps[i];
        if step == 0 {
            return Err(c.err("slice step 0"));
        }
        let n = &input[axis];
        let (start, end) = match (n.as_const(), starts[i].as_const(), ends[i].as_const()) {
            (Some(n), Some(s), Some(e)) => {
                let (s, e) = clamp_slice(s, e, step, n);
                (Dim::constant(s), Some(Dim::constant(e)))
            }
            _ if step < 0 => return Err(c.err("a negative-step slice of a symbolic dim")),
            (_, s, e) => {
                // Bounds beyond any dim are clamped first, so dim arithmetic stays small.
                let bound = |v: i64| v.clamp(-MAX_DIM, MAX_DIM);
                let start = match s {
                    Some(v) if v < 0 => n.add(&Dim::constant(bound(v))),
                    Some(v) => Dim::constant(bound(v)),
                    None => starts[i].clone(),
                };
                let end = match e {
                    Some(v) if v >= i32::MAX as i64 => None,
                    Some(v) if v < 0 => Some(n.add(&Dim::constant(bound(v)))),
                    Some(v) => Some(Dim::constant(v)),
                    None => Some(ends[i].clone()),
                };
                (start, end)
            }
        };
        out.push(SliceAxis { axis, start, end, step });
    }
    Ok(out)
}

pub(super) fn slice(c: &mut Ctx) -> R {
    let ty = c.ty(0)?;
    let spec = slice_spec(c, &ty.shape)?;
    let mut v = c.x(0)?;
    for s in spec {
        let n = ty.shape[s.axis].clone();
        if s.step > 0 {
            let whole = s.start.as_const() == Some(0) && s.step == 1 && s.end.as_ref().is_none_or(|e| *e == n);
            if whole {
                continue;
            }
            let end = s.end.map_or(Arg::None, Arg::sym_int);
            v = c.op(
                "aten.slice.Tensor",
                vec![t(v), Arg::Int(s.axis as i64), Arg::sym_int(s.start), end, Arg::Int(s.step)],
                vec![],
            )?;
        } else {
            // Reverse stepping: flip, then slice forward from the mirrored bounds.
            let n = n.as_const().ok_or_else(|| c.err("a negative-step slice of a symbolic dim"))?;
            let start = s.start.as_const().unwrap_or(0);
            let end = s.end.and_then(|e| e.as_const()).unwrap_or(-1);
            v = c.op("aten.flip.default", vec![t(v), Arg::Ints(vec![s.axis as i64])], vec![])?;
            v = c.op(
                "aten.slice.Tensor",
                vec![t(v), Arg::Int(s.axis as i64), Arg::Int(n - 1 - start), Arg::Int(n - 1 - end), Arg::Int(-s.step)],
                vec![],
            )?;
        }
    }
    Ok(vec![Out::Value(v)])
}

/// Constant indices with negative entries made positive against a static dim.
fn normalized_indices(c: &Ctx, h: &HostTensor, n: &Dim) -> Result<HostTensor, OnnxError> {
    let idx = h.static_ints().ok_or_else(|| c.err("indices must be static integers"))?;
    let out = if idx.iter().any(|&i| i < 0) {
        let n = n.as_const().ok_or_else(|| c.err("negative indices into a symbolic dim"))?;
        idx.iter().map(|&i| Dim::constant(if i < 0 { i + n } else { i })).collect()
    } else {
        idx.into_iter().map(Dim::constant).collect()
    };
    Ok(HostTensor::ints(DType::Int64, h.shape.clone(), out))
}

/// `Gather(data, indices, axis)`: `select` for a constant scalar index, `index_select` for a
/// constant vector, `embedding` for looking up rows of a 2-D table, `index` otherwise.
pub(super) fn gather(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let ty = c.ty(0)?;
    let axis = c.dim_axis(c.int("axis", 0)?, ty.rank(), "axis")?;
    let x = c.x(0)?;
    let a = Arg::Int(axis as i64);
    if let Some(h) = c.host(1) {
        let idx = normalized_indices(c, &h, &ty.shape[axis])?;
        if idx.rank() == 0 {
            let i = idx.static_ints().unwrap_or_default().first().copied().unwrap_or(0);
            return c.one("aten.select.int", vec![t(x), a, Arg::Int(i)], vec![]);
        }
        let iv = c.konst(&idx)?;
        if idx.rank() == 1 {
            return c.one("aten.index_select.default", vec![t(x), a, t(iv)], vec![]);
        }
        let mut list = vec![None; axis];
        list.push(Some(iv));
        return c.one("aten.index.Tensor", vec![t(x), Arg::OptTensors(list)], vec![]);
    }
    let i = c.x(1)?;
    if axis == 0 && ty.rank() == 2 && c.vty(i).rank() > 0 {
        return c.one("aten.embedding.default", vec![t(x), t(i)], vec![]);
    }
    let mut list = vec![None; axis];
    list.push(Some(i));
    c.one("aten.index.Tensor", vec![t(x), Arg::OptTensors(list)], vec![])
}

pub(super) fn gather_elements(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let ty = c.ty(0)?;
    let axis = c.dim_axis(c.int("axis", 0)?, ty.rank(), "axis")?;
    let x = c.x(0)?;
    let i = match c.host(1) {
        Some(h) => {
            let idx = normalized_indices(c, &h, &ty.shape[axis])?;
            c.konst(&idx)?
        }
        None => c.x(1)?,
    };
    c.one("aten.gather.default", vec![t(x), Arg::Int(axis as i64), t(i)], vec![])
}

/// `GatherND(data, indices)` with `batch_dims = 0`: `data[idx[..., 0], idx[..., 1], ...]`.
pub(super) fn gather_nd(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    if c.int("batch_dims", 0)? != 0 {
        return Err(c.attr_err("batch_dims", "only batch_dims = 0 is supported"));
    }
    let x = c.x(0)?;
    let i = c.x(1)?;
    let ti = c.vty(i);
    let k = ti.shape.last().and_then(Dim::as_const).ok_or_else(|| c.err("the index depth must be static"))?;
    if k < 1 || k as usize > c.vty(x).rank() {
        return Err(c.err(format!("index depth {k} for a rank-{} input", c.vty(x).rank())));
    }
    let mut list = Vec::with_capacity(k as usize);
    for j in 0..k {
        list.push(Some(c.op("aten.select.int", vec![t(i), Arg::Int(-1), Arg::Int(j)], vec![])?));
    }
    c.one("aten.index.Tensor", vec![t(x), Arg::OptTensors(list)], vec![])
}

/// ONNX (numpy) broadcasting of two shapes; `None` when static sizes clash.
pub(crate) fn broadcast_dims(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    let one = Dim::constant(1);
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { &a[i + a.len() - n] } else { &one };
            let y = if i + b.len() >= n { &b[i + b.len() - n] } else { &one };
            match (x.as_const(), y.as_const()) {
                (Some(1), _) => Some(y.clone()),
                (_, Some(1)) => Some(x.clone()),
                (Some(p), Some(q)) if p != q => None,
                (None, Some(_)) => Some(y.clone()),
                _ => Some(x.clone()),
            }
        })
        .collect()
}

/// `Expand`: broadcast the input and the given shape both ways.
pub(super) fn expand(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let ty = c.ty(0)?;
    let shape = c.const_dims(1, "shape")?;
    let out = broadcast_dims(&ty.shape, &shape)
        .ok_or_else(|| c.err(format!("shape {shape:?} does not broadcast with the input {ty}")))?;
    if out == ty.shape {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    let x = c.x(0)?;
    c.one("aten.expand.default", vec![t(x), Arg::sym_ints(out)], vec![])
}

pub(super) fn tile(c: &mut Ctx) -> R {
    c.expect_inputs(2, 2)?;
    let reps = c.const_dims(1, "repeats")?;
    if reps.len() != c.ty(0)?.rank() {
        return Err(c.err("repeats must have one entry per dim"));
    }
    let x = c.x(0)?;
    c.one("aten.repeat.default", vec![t(x), Arg::sym_ints(reps)], vec![])
}

/// `Pad`: pads as attributes (opset < 11) or inputs, optional `axes` (opset 18); modes
/// constant, reflect, edge and wrap.
pub(super) fn pad(c: &mut Ctx) -> R {
    let ty = c.ty(0)?;
    let rank = ty.rank();
    let (pads, value, axes) = if c.opset() < 11 {
        c.expect_inputs(1, 1)?;
        let pads = match c.small_ints("pads")? {
            Some(p) => p,
            None => c.small_ints("paddings")?.ok_or_else(|| c.attr_err("pads", "required"))?,
        };
        (pads.into_iter().map(Dim::constant).collect::<Vec<_>>(), c.float("value", 0.0)?, None)
    } else {
        c.expect_inputs(2, 4)?;
        let value = if c.has(2) { c.const_f64(2, "constant_value")?.first().copied().unwrap_or(0.0) } else { 0.0 };
        let axes = if c.has(3) { Some(c.const_ints(3, "axes")?) } else { None };
        (c.const_dims(1, "pads")?, value, axes)
    };
    let axes = match axes {
        Some(a) => a.into_iter().map(|a| c.dim_axis(a, rank, "axis")).collect::<Result<Vec<_>, _>>()?,
        None => (0..rank).collect(),
    };
    let k = axes.len();
    if pads.len() != 2 * k {
        return Err(c.err(format!("{} pads for {k} axes", pads.len())));
    }
    let mut per_dim = vec![(Dim::constant(0), Dim::constant(0)); rank];
    for (j, &a) in axes.iter().enumerate() {
        per_dim[a] = (pads[j].clone(), pads[k + j].clone());
    }
    // PyTorch order: last dim first; leading dims without padding are left out.
    let zero = Dim::constant(0);
    let first = per_dim.iter().position(|(b, e)| *b != zero || *e != zero).unwrap_or(rank);
    let torch: Vec<Dim> = per_dim[first..].iter().rev().flat_map(|(b, e)| [b.clone(), e.clone()]).collect();
    if torch.is_empty() {
        return Ok(vec![Out::Alias(c.input_name_owned(0)?)]);
    }
    let x = c.x(0)?;
    let mode = c.string("mode", "constant")?;
    let torch_mode = match mode.as_str() {
        "constant" => {
            let v = Ctx::scalar_arg(ty.dtype, value);
            return c.one("aten.constant_pad_nd.default", vec![t(x), Arg::sym_ints(torch), v], vec![]);
        }
        "reflect" => "reflect",
        "edge" => "replicate",
        "wrap" => "circular",
        other => return Err(c.attr_err("mode", format!("unknown mode `{other}`"))),
    };
    c.one("aten.pad.default", vec![t(x), Arg::sym_ints(torch), Arg::Str(torch_mode.into())], vec![])
}

/// `Trilu(x, k)`: `triu` or `tril` with diagonal `k`.
pub(super) fn trilu(c: &mut Ctx) -> R {
    c.expect_inputs(1, 2)?;
    let k = if c.has(1) { c.const_ints(1, "k")?.first().copied().unwrap_or(0) } else { 0 };
    let x = c.x(0)?;
    let op = if c.int("upper", 1)? != 0 { "aten.triu.default" } else { "aten.tril.default" };
    c.one(op, vec![t(x), Arg::Int(k)], vec![])
}
