//! Linear algebra, convolution, normalisation, softmax, attention, embedding, pooling.

use super::facts::Contraction::{Attention, Convolution, MatMul};
use super::shape::*;
use super::{op, Call, InferError, OpClass::Compute, OpCost, OpDecl};
use crate::dim::Dim;
use crate::types::{DType, TensorType};

fn matmul_dtype(c: &Call, a: &TensorType, b: &TensorType) -> Result<DType, InferError> {
    if a.dtype != b.dtype {
        return Err(c.err(format!("matmul of {} and {}", a.dtype, b.dtype)));
    }
    Ok(a.dtype)
}

fn check_inner(c: &Call, k1: &Dim, k2: &Dim) -> Result<(), InferError> {
    if let (Some(x), Some(y)) = (k1.as_const(), k2.as_const()) {
        if x != y {
            return Err(c.err(format!("inner dimensions differ: {x} vs {y}")));
        }
    }
    Ok(())
}

fn mm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(0)?, c.tensor(1)?);
    if a.rank() != 2 || b.rank() != 2 {
        return Err(c.err("mm expects 2-D tensors"));
    }
    check_inner(c, &a.shape[1], &b.shape[0])?;
    Ok(vec![TensorType::with_dims(matmul_dtype(c, a, b)?, vec![a.shape[0].clone(), b.shape[1].clone()])])
}

fn bmm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(0)?, c.tensor(1)?);
    if a.rank() != 3 || b.rank() != 3 {
        return Err(c.err("bmm expects 3-D tensors"));
    }
    check_inner(c, &a.shape[2], &b.shape[1])?;
    // Unlike `matmul`, `bmm` does not broadcast the batch.
    check_inner(c, &a.shape[0], &b.shape[0])?;
    Ok(vec![TensorType::with_dims(
        matmul_dtype(c, a, b)?,
        vec![a.shape[0].clone(), a.shape[1].clone(), b.shape[2].clone()],
    )])
}

/// `addmm(self, mat1, mat2)` / `baddbmm(self, batch1, batch2)`: the product, with `self` broadcast to it.
fn add_product(
    c: &Call,
    product: fn(&Call, usize) -> Result<Vec<TensorType>, InferError>,
) -> Result<Vec<TensorType>, InferError> {
    let bias = c.tensor(0)?;
    let out = product(c, 1)?;
    if bias.dtype != out[0].dtype {
        return Err(c.err(format!("bias of {} for a {} product", bias.dtype, out[0].dtype)));
    }
    let shape = broadcast(c, &bias.shape, &out[0].shape)?;
    if shape.len() != out[0].rank() {
        return Err(c.err("bias has more dims than the product"));
    }
    Ok(vec![TensorType::with_dims(out[0].dtype, out[0].shape.clone())])
}

fn mm_at(c: &Call, i: usize) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(i)?, c.tensor(i + 1)?);
    if a.rank() != 2 || b.rank() != 2 {
        return Err(c.err("expects 2-D matrices"));
    }
    check_inner(c, &a.shape[1], &b.shape[0])?;
    Ok(vec![TensorType::with_dims(matmul_dtype(c, a, b)?, vec![a.shape[0].clone(), b.shape[1].clone()])])
}

fn bmm_at(c: &Call, i: usize) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(i)?, c.tensor(i + 1)?);
    if a.rank() != 3 || b.rank() != 3 {
        return Err(c.err("expects 3-D batches"));
    }
    check_inner(c, &a.shape[2], &b.shape[1])?;
    check_inner(c, &a.shape[0], &b.shape[0])?;
    Ok(vec![TensorType::with_dims(
        matmul_dtype(c, a, b)?,
        vec![a.shape[0].clone(), a.shape[1].clone(), b.shape[2].clone()],
    )])
}

fn addmm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    add_product(c, mm_at)
}

fn baddbmm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    add_product(c, bmm_at)
}

/// `torch.matmul` shape rules, shared with `linear`.
pub(super) fn matmul_shape(c: &Call, a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, InferError> {
    if a.is_empty() || b.is_empty() {
        return Err(c.err("matmul operands must be at least 1-D"));
    }
    let (mut a2, mut b2) = (a.to_vec(), b.to_vec());
    let a_vec = a.len() == 1;
    let b_vec = b.len() == 1;
    if a_vec {
        a2.insert(0, Dim::constant(1));
    }
    if b_vec {
        b2.push(Dim::constant(1));
    }
    let (ra, rb) = (a2.len(), b2.len());
    check_inner(c, &a2[ra - 1], &b2[rb - 2])?;
    let mut shape = broadcast(c, &a2[..ra - 2], &b2[..rb - 2])?;
    if !a_vec {
        shape.push(a2[ra - 2].clone());
    }
    if !b_vec {
        shape.push(b2[rb - 1].clone());
    }
    Ok(shape)
}

fn matmul(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (a, b) = (c.tensor(0)?, c.tensor(1)?);
    Ok(vec![TensorType::with_dims(matmul_dtype(c, a, b)?, matmul_shape(c, &a.shape, &b.shape)?)])
}

fn linear(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (x, w) = (c.tensor(0)?, c.tensor(1)?);
    if w.rank() > 2 || w.rank() == 0 {
        return Err(c.err("linear weight must be 1-D or 2-D"));
    }
    let wt: Vec<Dim> = w.shape.iter().rev().cloned().collect();
    let shape = matmul_shape(c, &x.shape, &wt)?;
    if let Some(b) = c.opt_tensor(2)? {
        let out = broadcast(c, &shape, &b.shape)?;
        if out.len() != shape.len() {
            return Err(c.err("linear bias has too many dims"));
        }
    }
    Ok(vec![TensorType::with_dims(matmul_dtype(c, x, w)?, shape)])
}

/// `transformers::grouped_mm_fallback(input [S, K], weight [E, K, N], offs [E])` → [S, N] in the
/// input's dtype: rows `offs[i-1]..offs[i]` of the input times `weight[i]`. The checks are the
/// op's fake (its shape function: ranks, `offs` int32/int64 with one entry per expert, K) and
/// `mm`'s (one dtype, no bool kernel). The number of experts must be the same dim on both sides,
/// not merely not known to differ: `offs` holds one count per expert.
fn grouped_mm_fallback(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (x, w, offs) = (c.tensor(0)?, c.tensor(1)?, c.tensor(2)?);
    if x.rank() != 2 || w.rank() != 3 || offs.rank() != 1 {
        return Err(c.err(format!(
            "expects input [S, K], weight [E, K, N] and offs [E], got ranks {}, {} and {}",
            x.rank(),
            w.rank(),
            offs.rank()
        )));
    }
    if offs.shape[0] != w.shape[0] {
        return Err(c.err(format!("offs has {} entries for {} experts", offs.shape[0], w.shape[0])));
    }
    if !matches!(offs.dtype, DType::Int32 | DType::Int64) {
        return Err(c.err(format!("offs must be int32 or int64, got {}", offs.dtype)));
    }
    check_inner(c, &x.shape[1], &w.shape[1])?;
    let dtype = matmul_dtype(c, x, w)?;
    if dtype == DType::Bool {
        return Err(c.err("mm has no bool kernel"));
    }
    Ok(vec![TensorType::with_dims(dtype, vec![x.shape[0].clone(), w.shape[2].clone()])])
}

/// 2·M·N·K FLOPs for every matrix product: `numel(out) * 2 * K`.
fn cost_matmul(c: &Call, outs: &[TensorType]) -> OpCost {
    let inputs = c.all_tensor_inputs();
    // The contraction length is the last dim of the first matrix operand (skipping a bias).
    let first_matrix = match c.op {
        "aten.addmm.default" | "aten.baddbmm.default" | "aten.addbmm.default" => inputs.get(1),
        _ => inputs.first(),
    };
    let k = first_matrix.and_then(|t| t.shape.last().cloned()).unwrap_or(Dim::constant(1));
    OpCost {
        flops: outs.first().map(|o| o.numel().mul(&k).scale(2)).unwrap_or_default(),
        bytes_read: bytes_of(&inputs),
        bytes_written: out_bytes(outs),
    }
}

/// Window attributes (kernel, stride, padding, dilation) must be small enough for exact i64 window
/// arithmetic; anything near `2^31` is a corrupt graph.
fn small_attrs(c: &Call, values: impl IntoIterator<Item = i64>) -> Result<(), InferError> {
    match values.into_iter().find(|v| v.unsigned_abs() > 1 << 31) {
        Some(v) => Err(c.err(format!("window attribute {v} is out of range"))),
        None => Ok(()),
    }
}

fn conv_common(
    c: &Call,
    stride_i: usize,
    pad: Option<Vec<Dim>>,
    dilation_i: usize,
    transposed: bool,
    output_padding: Vec<Dim>,
    groups: i64,
) -> Result<Vec<TensorType>, InferError> {
    let (x, w) = (c.tensor(0)?, c.tensor(1)?);
    let spatial =
        w.rank().checked_sub(2).filter(|s| *s >= 1).ok_or_else(|| c.err("conv weight must be at least 3-D"))?;
    let batched = x.rank() == spatial + 2;
    if !batched && x.rank() != spatial + 1 {
        return Err(c.err(format!("conv input of rank {} for a {}-D kernel", x.rank(), spatial)));
    }
    if groups <= 0 {
        return Err(c.err("groups must be positive"));
    }
    let list = |i: usize, what: &str| -> Result<Vec<i64>, InferError> {
        let v = c
            .sym_ints(i)?
            .iter()
            .map(Dim::as_const)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| c.err(format!("symbolic {what}")))?;
        Ok(if v.len() == 1 { vec![v[0]; spatial] } else { v })
    };
    let stride = list(stride_i, "stride")?;
    let dilation = list(dilation_i, "dilation")?;
    if stride.len() != spatial || dilation.len() != spatial {
        return Err(c.err("stride/dilation length does not match the kernel"));
    }
    if stride.iter().chain(&dilation).any(|&v| v <= 0) {
        return Err(c.err("stride and dilation must be positive"));
    }
    let attrs = stride.iter().chain(&dilation).copied().chain(pad.iter().flatten().filter_map(Dim::as_const));
    small_attrs(c, attrs.chain(output_padding.iter().filter_map(Dim::as_const)))?;
    let off = if batched { 2 } else { 1 };
    let cin = &x.shape[off - 1];
    let expect_cin = if transposed { w.shape[0].clone() } else { w.shape[1].scale(groups) };
    if let (Some(a), Some(b)) = (cin.as_const(), expect_cin.as_const()) {
        if a != b {
            return Err(c.err(format!("input has {a} channels, weight expects {b}")));
        }
    }
    let cout = if transposed { w.shape[1].scale(groups) } else { w.shape[0].clone() };
    let mut shape = Vec::new();
    if batched {
        shape.push(x.shape[0].clone());
    }
    shape.push(cout);
    for i in 0..spatial {
        let n = &x.shape[off + i];
        let k = w.shape[2 + i].as_const().ok_or_else(|| c.err("symbolic kernel size"))?;
        small_attrs(c, [k])?;
        let out = match &pad {
            None => n.add(&Dim::constant(stride[i] - 1)).floor_div(&Dim::constant(stride[i])), // "same"
            Some(p) => {
                let p = p.get(i).or(p.first()).and_then(Dim::as_const).ok_or_else(|| c.err("symbolic padding"))?;
                if transposed {
                    let op = output_padding.get(i).or(output_padding.first()).and_then(Dim::as_const).unwrap_or(0);
                    if op >= stride[i] && op >= dilation[i] {
                        return Err(c.err(format!("output_padding {op} must be smaller than stride or dilation")));
                    }
                    n.sub(&Dim::constant(1))
                        .scale(stride[i])
                        .add(&Dim::constant(-2 * p + dilation[i] * (k - 1) + op + 1))
                } else {
                    window_out(n, k, stride[i], p, dilation[i], false)
                }
            }
        };
        if out.as_const().is_some_and(|v| v <= 0) {
            return Err(c.err(format!("output spatial size {out} is not positive")));
        }
        shape.push(out);
    }
    if let Some(b) = c.opt_tensor(2)? {
        if b.rank() != 1 {
            return Err(c.err("conv bias must be 1-D"));
        }
    }
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

/// `conv1d/2d/3d(input, weight, bias, stride, padding, dilation, groups)`.
fn conv_nd(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let groups = c.int(6)?;
    conv_common(c, 3, Some(c.sym_ints(4)?), 5, false, vec![], groups)
}

/// `conv2d.padding(..., str padding, ...)`: "same" or "valid".
fn conv_nd_padding_str(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let groups = c.int(6)?;
    let pad = match c.str(4)? {
        "valid" => Some(vec![Dim::constant(0)]),
        "same" if c.ints(3)?.iter().any(|&s| s != 1) => {
            return Err(c.err("padding=\"same\" is not supported for strided convolutions"))
        }
        "same" => None,
        other => return Err(c.err(format!("unknown padding mode `{other}`"))),
    };
    conv_common(c, 3, pad, 5, false, vec![], groups)
}

/// `convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)`.
fn convolution(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let groups = c.int(8)?;
    conv_common(c, 3, Some(c.sym_ints(4)?), 5, c.bool(6)?, c.sym_ints(7)?, groups)
}

/// `conv_transpose2d.input(input, weight, bias, stride, padding, output_padding, groups, dilation)`.
fn conv_transpose(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let groups = c.int(6)?;
    conv_common(c, 3, Some(c.sym_ints(4)?), 7, true, c.sym_ints(5)?, groups)
}

fn cost_conv(c: &Call, outs: &[TensorType]) -> OpCost {
    let inputs = c.all_tensor_inputs();
    // Each output element: 2 · (Cin/groups) · prod(kernel) FLOPs = 2 · prod(weight.shape[1..]).
    let per_out = inputs.get(1).map(|w| product(&w.shape[1..])).unwrap_or(Dim::constant(1));
    OpCost {
        flops: outs.first().map(|o| o.numel().mul(&per_out).scale(2)).unwrap_or_default(),
        bytes_read: bytes_of(&inputs),
        bytes_written: out_bytes(outs),
    }
}

/// The affine parameters at `params` (weight, and bias when given) must have `normalized_shape`.
fn check_affine(c: &Call, x: &TensorType, norm: &[Dim], params: &[usize]) -> Result<(), InferError> {
    for &i in params {
        if let Some(w) = c.opt_tensor(i)? {
            let differ = w.shape.len() != norm.len()
                || w.shape
                    .iter()
                    .zip(norm)
                    .any(|(a, b)| matches!((a.as_const(), b.as_const()), (Some(p), Some(q)) if p != q));
            if differ {
                return Err(c.err(format!(
                    "parameter of shape {} for normalized_shape {}",
                    fmt_shape(&w.shape),
                    fmt_shape(norm)
                )));
            }
        }
    }
    if norm.len() > x.rank() {
        return Err(c.err("normalized_shape longer than the input's rank"));
    }
    for (a, b) in x.shape[x.rank() - norm.len()..].iter().zip(norm) {
        if let (Some(p), Some(q)) = (a.as_const(), b.as_const()) {
            if p != q {
                return Err(c.err(format!("input trailing dims do not match normalized_shape {}", fmt_shape(norm))));
            }
        }
    }
    Ok(())
}

fn layer_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let norm = c.sym_ints(1)?;
    check_affine(c, x, &norm, &[2, 3])?;
    Ok(vec![x.clone()])
}

fn native_layer_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let norm = c.sym_ints(1)?;
    check_affine(c, x, &norm, &[2, 3])?;
    let keep = x.rank() - norm.len();
    let mut stat: Vec<Dim> = x.shape[..keep].to_vec();
    stat.extend(std::iter::repeat_n(Dim::constant(1), norm.len()));
    let stat_dtype = if x.dtype == DType::Float16 || x.dtype == DType::Bfloat16 { DType::Float32 } else { x.dtype };
    Ok(vec![x.clone(), TensorType::with_dims(stat_dtype, stat.clone()), TensorType::with_dims(stat_dtype, stat)])
}

fn rms_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let norm = c.sym_ints(1)?;
    check_affine(c, x, &norm, &[2])?;
    Ok(vec![x.clone()])
}

fn group_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    if x.rank() < 2 {
        return Err(c.err("group_norm input must be at least 2-D"));
    }
    let groups = c.int(1)?;
    if let Some(ch) = x.shape[1].as_const() {
        if groups <= 0 || ch % groups != 0 {
            return Err(c.err(format!("{ch} channels are not divisible into {groups} groups")));
        }
    }
    check_channel_params(c, x, &[2, 3])?;
    Ok(vec![x.clone()])
}

/// `native_group_norm(input, weight, bias, N, C, HxW, group, eps)` → (out, mean [N, G], rstd [N, G]).
fn native_group_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let (channels, groups) = (c.sym_int(4)?, c.int(6)?);
    if groups <= 0 || channels.as_const().is_some_and(|ch| ch % groups != 0) {
        return Err(c.err(format!("{channels} channels are not divisible into {groups} groups")));
    }
    check_channel_params(c, x, &[1, 2])?;
    let stat = TensorType::with_dims(x.dtype, vec![c.sym_int(3)?, Dim::constant(c.int(6)?)]);
    Ok(vec![x.clone(), stat.clone(), stat])
}

/// Per-channel parameters (at `params`, when given) must be 1-D with one entry per channel (dim 1).
fn check_channel_params(c: &Call, x: &TensorType, params: &[usize]) -> Result<(), InferError> {
    let channels = x.shape.get(1).ok_or_else(|| c.err("input must be at least 2-D"))?;
    for &i in params {
        if let Some(t) = c.opt_tensor(i)? {
            if t.rank() != 1 {
                return Err(c.err("per-channel parameters must be 1-D"));
            }
            if let (Some(a), Some(b)) = (t.shape[0].as_const(), channels.as_const()) {
                if a != b {
                    return Err(c.err(format!("parameter of size {a} for {b} channels")));
                }
            }
        }
    }
    Ok(())
}

fn batch_norm(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    if x.rank() < 2 {
        return Err(c.err("batch_norm input must be at least 2-D"));
    }
    check_channel_params(c, x, &[1, 2, 3, 4])?;
    Ok(vec![x.clone()])
}

/// `_native_batch_norm_legit_no_training` → (out, save_mean [0], save_invstd [0]).
fn native_batch_norm_no_training(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = batch_norm(c)?;
    let empty = TensorType::new(out[0].dtype, &[0]);
    Ok(vec![out[0].clone(), empty.clone(), empty])
}

/// `_native_batch_norm_legit.no_stats(input, weight?, bias?, training, momentum, eps)` → (out,
/// save_mean [C], save_invstd [C]) from the batch's statistics. With no running statistics there
/// is nothing to normalise with unless `training` is set (libtorch crashes on `False`), so that
/// is refused. The statistics take the parameters' dtype: float32 for a half or bfloat16 input
/// with float32 parameters (the mixed-type kernel), else the input's, which the parameters must
/// share.
fn native_batch_norm_no_stats(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    if x.rank() < 2 {
        return Err(c.err("batch_norm input must be at least 2-D"));
    }
    if !matches!(x.dtype, DType::Float16 | DType::Bfloat16 | DType::Float32 | DType::Float64) {
        return Err(c.err(format!("batch_norm of a {} input is not implemented", x.dtype)));
    }
    if x.numel().as_const() == Some(0) {
        return Err(c.err("input tensor must have at least one element"));
    }
    if !c.bool(3)? {
        return Err(c.err("without running statistics batch norm needs training=True"));
    }
    check_channel_params(c, x, &[1, 2])?;
    let params: Vec<DType> = [c.opt_tensor(1)?, c.opt_tensor(2)?].into_iter().flatten().map(|t| t.dtype).collect();
    let mixed = matches!(x.dtype, DType::Float16 | DType::Bfloat16) && params.contains(&DType::Float32);
    let stat_dtype = if mixed { DType::Float32 } else { x.dtype };
    if let Some(d) = params.iter().find(|d| **d != stat_dtype) {
        return Err(c.err(format!("a {d} parameter for a {} input", x.dtype)));
    }
    let stat = TensorType::with_dims(stat_dtype, vec![x.shape[1].clone()]);
    Ok(vec![x.clone(), stat.clone(), stat])
}

/// `softmax(self, dim, dtype?)` / `_softmax(self, dim, half_to_float)`: floating only, unless a
/// dtype converts the input first.
fn softmax(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    c.dim_index(c.int(1)?, x.rank())?;
    let dtype = match c.args.get(2) {
        Some(crate::graph::Arg::DType(d)) => *d,
        Some(crate::graph::Arg::Bool(true)) if x.dtype == DType::Float16 => DType::Float32,
        _ => x.dtype,
    };
    if !dtype.is_floating() && !dtype.is_complex() {
        return Err(c.err(format!("softmax of {dtype} is not implemented")));
    }
    Ok(vec![x.with_dtype(dtype)])
}

fn embedding(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (w, ix) = (c.tensor(0)?, c.tensor(1)?);
    if w.rank() != 2 {
        return Err(c.err("embedding weight must be 2-D"));
    }
    if !ix.dtype.is_integral() {
        return Err(c.err(format!("embedding indices must be integers, got {}", ix.dtype)));
    }
    let mut shape = ix.shape.clone();
    shape.push(w.shape[1].clone());
    Ok(vec![TensorType::with_dims(w.dtype, shape)])
}

fn cost_embedding(c: &Call, outs: &[TensorType]) -> OpCost {
    // A gather reads as many weight bytes as it writes, not the whole table.
    let inputs = c.all_tensor_inputs();
    let ix = inputs.get(1).map(|t| t.bytes()).unwrap_or_default();
    OpCost { flops: Dim::constant(0), bytes_read: out_bytes(outs).add(&ix), bytes_written: out_bytes(outs) }
}

/// `scaled_dot_product_attention(q [.., Hq, L, E], k [.., Hk, S, E], v [.., Hk, S, Ev])` → [.., Hq, L, Ev].
/// Batch dims broadcast; with `enable_gqa` the key/value heads Hk must divide Hq and repeat to it.
/// The mask broadcasts to the scores [.., Hq, L, S].
fn sdpa(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let (q, k, v) = (c.tensor(0)?, c.tensor(1)?, c.tensor(2)?);
    if q.rank() < 2 || k.rank() < 2 || v.rank() < 2 {
        return Err(c.err("attention inputs must be at least 2-D"));
    }
    if q.dtype != k.dtype || q.dtype != v.dtype {
        return Err(c.err(format!("query, key and value dtypes differ: {}, {}, {}", q.dtype, k.dtype, v.dtype)));
    }
    let (rq, rk, rv) = (q.rank(), k.rank(), v.rank());
    check_inner(c, &q.shape[rq - 1], &k.shape[rk - 1])?;
    check_inner(c, &k.shape[rk - 2], &v.shape[rv - 2])?;
    let (mut kb, mut vb) = (k.shape[..rk - 2].to_vec(), v.shape[..rv - 2].to_vec());
    if c.bool(7)? && rq >= 3 {
        let hq = &q.shape[rq - 3];
        for b in [&mut kb, &mut vb] {
            let Some(hk) = b.last_mut() else { continue };
            if let (Some(x), Some(y)) = (hq.as_const(), hk.as_const()) {
                if y <= 0 || x % y != 0 {
                    return Err(c.err(format!("{y} key/value heads do not divide {x} query heads")));
                }
            }
            *hk = hq.clone();
        }
    }
    let batch = broadcast(c, &broadcast(c, &q.shape[..rq - 2], &kb)?, &vb)?;
    let (l, s) = (&q.shape[rq - 2], &k.shape[rk - 2]);
    if let Some(m) = c.opt_tensor(3)? {
        let scores: Vec<Dim> = batch.iter().chain([l, s]).cloned().collect();
        if broadcast(c, &m.shape, &scores)? != scores {
            return Err(c.err(format!(
                "mask {} does not broadcast to scores {}",
                fmt_shape(&m.shape),
                fmt_shape(&scores)
            )));
        }
    }
    let mut shape = batch;
    shape.push(l.clone());
    shape.push(v.shape[rv - 1].clone());
    Ok(vec![TensorType::with_dims(q.dtype, shape)])
}

fn cost_sdpa(c: &Call, outs: &[TensorType]) -> OpCost {
    let inputs = c.all_tensor_inputs();
    let (Some(q), Some(k)) = (inputs.first(), inputs.get(1)) else {
        return OpCost::default();
    };
    let e = q.shape.last().cloned().unwrap_or(Dim::constant(1));
    let s = k.shape.get(k.rank().saturating_sub(2)).cloned().unwrap_or(Dim::constant(1));
    let ev = outs.first().and_then(|o| o.shape.last().cloned()).unwrap_or(Dim::constant(1));
    // Scores: numel(q)/E · S entries; QKᵀ costs 2·E each, softmax ~5, PV 2·Ev.
    let rows = q.numel().div_exact(&e).unwrap_or_else(|| q.numel());
    let scores = rows.mul(&s);
    let flops = scores.mul(&e.scale(2).add(&ev.scale(2)).add(&Dim::constant(5)));
    OpCost { flops, bytes_read: bytes_of(&inputs), bytes_written: out_bytes(outs) }
}

/// Shared by max/avg pooling: `(input, kernel, stride, padding, dilation, ceil_mode)`.
fn pool(
    c: &Call,
    dims: usize,
    k_i: usize,
    s_i: usize,
    p_i: usize,
    d_i: Option<usize>,
    ceil_i: usize,
) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    if x.rank() != dims + 1 && x.rank() != dims + 2 {
        return Err(c.err(format!("{dims}-D pooling of a rank-{} input", x.rank())));
    }
    let expand = |v: Vec<i64>, default: Vec<i64>| -> Vec<i64> {
        match v.len() {
            0 => default,
            1 => vec![v[0]; dims],
            _ => v,
        }
    };
    let k = expand(c.ints(k_i)?, vec![1; dims]);
    let s = expand(c.ints(s_i)?, k.clone());
    let p = expand(c.ints(p_i)?, vec![0; dims]);
    let d = match d_i {
        Some(i) => expand(c.ints(i)?, vec![1; dims]),
        None => vec![1; dims],
    };
    if [&k, &s, &p, &d].iter().any(|v| v.len() != dims) {
        return Err(c.err("pooling parameter length does not match the input"));
    }
    small_attrs(c, k.iter().chain(&s).chain(&p).chain(&d).copied())?;
    if k.iter().chain(&s).chain(&d).any(|&v| v <= 0) || p.iter().zip(&k).any(|(&pp, &kk)| pp < 0 || pp * 2 > kk) {
        return Err(c.err("invalid pooling kernel, stride or padding"));
    }
    let ceil = c.bool(ceil_i)?;
    let off = x.rank() - dims;
    let mut shape = x.shape[..off].to_vec();
    for i in 0..dims {
        let out = window_out(&x.shape[off + i], k[i], s[i], p[i], d[i], ceil);
        if out.as_const().is_some_and(|v| v <= 0) {
            return Err(c.err(format!("pooling output size {out} is not positive")));
        }
        shape.push(out);
    }
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

fn max_pool1d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    pool(c, 1, 1, 2, 3, Some(4), 5)
}
fn max_pool2d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    pool(c, 2, 1, 2, 3, Some(4), 5)
}
fn max_pool3d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    pool(c, 3, 1, 2, 3, Some(4), 5)
}
fn max_pool2d_with_indices(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = max_pool2d(c)?;
    Ok(vec![out[0].clone(), out[0].with_dtype(DType::Int64)])
}
fn avg_pool1d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    pool(c, 1, 1, 2, 3, None, 4)
}
fn avg_pool2d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    pool(c, 2, 1, 2, 3, None, 4)
}
fn avg_pool3d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    pool(c, 3, 1, 2, 3, None, 4)
}

fn cost_pool(c: &Call, outs: &[TensorType]) -> OpCost {
    let kernel: i64 = c.ints(1).map(|k| k.iter().fold(1i64, |a, &b| a.saturating_mul(b))).unwrap_or(1).max(1);
    streaming_cost(c, outs, kernel)
}

fn adaptive_pool(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let size = c.sym_ints(1)?;
    if x.rank() != size.len() + 1 && x.rank() != size.len() + 2 {
        return Err(c.err(format!("adaptive pooling to {} dims of a rank-{} input", size.len(), x.rank())));
    }
    let mut shape = x.shape[..x.rank() - size.len()].to_vec();
    shape.extend(size);
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

fn adaptive_max_pool(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let out = adaptive_pool(c)?;
    Ok(vec![out[0].clone(), out[0].with_dtype(DType::Int64)])
}

/// The dtypes ATen's pooling and interpolation kernels take (`AT_DISPATCH_FLOATING_TYPES_AND2(Half,
/// BFloat16)`).
fn pooling_float(d: DType) -> bool {
    matches!(d, DType::Float16 | DType::Bfloat16 | DType::Float32 | DType::Float64)
}

/// `adaptive_avg_pool3d(self, output_size [D, H, W])` → self's leading dims + output_size. As ATen
/// does, an output of `[1, 1, 1]` is the mean over the last three dims (any rank from 3, any
/// floating or complex dtype, empty dims allowed); any other goes to `_adaptive_avg_pool3d`: a
/// 4-D or 5-D floating input whose dims past the first are not empty. A symbolic output size
/// takes the second path.
fn adaptive_avg_pool3d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let size = c.sym_ints(1)?;
    if size.len() != 3 {
        return Err(c.err(format!("adaptive_avg_pool3d: output_size must be 3, got {}", size.len())));
    }
    if size.iter().any(|d| d.as_const().is_some_and(|v| v < 0)) {
        return Err(c.err(format!("elements of output_size must be >= 0, got {}", fmt_shape(&size))));
    }
    let rank = x.rank();
    if size.iter().all(|d| d.as_const() == Some(1)) {
        if rank < 3 {
            return Err(c.err(format!("the mean over the last 3 dims of a rank-{rank} input")));
        }
        if !(pooling_float(x.dtype) || x.dtype.is_complex()) {
            return Err(c.err(format!("mean of a {} input: a floating or complex dtype is needed", x.dtype)));
        }
    } else {
        if rank != 4 && rank != 5 {
            return Err(c.err(format!("adaptive_avg_pool3d expects a 4-D or 5-D input, got rank {rank}")));
        }
        if !pooling_float(x.dtype) {
            return Err(c.err(format!("adaptive_avg_pool3d of a {} input is not implemented", x.dtype)));
        }
        if x.shape[1..].iter().any(|d| d.as_const() == Some(0)) {
            return Err(c.err(format!("only dim 0 may be empty, got {}", fmt_shape(&x.shape))));
        }
    }
    let mut shape = x.shape[..rank - 3].to_vec();
    shape.extend(size);
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

/// `grid_sampler[_2d](input [N, C, *in], grid [N, *out, k], interpolation_mode, padding_mode,
/// align_corners)` → [N, C, *out], for `k` = the spatial dims of the input (2 or 3; `ranks` are
/// the input ranks the op takes). Modes are 0..=2 (bilinear, nearest, bicubic; zeros, border,
/// reflection; libtorch's CPU kernel does not check them, its meta function does), bicubic for
/// 2-D only. Input and grid have one floating dtype, the same batch dim (the same `Dim`, so a row
/// of one never meets another's), and the input no empty spatial dim.
fn grid_sampler_nd(c: &Call, ranks: &[usize]) -> Result<Vec<TensorType>, InferError> {
    let (x, grid) = (c.tensor(0)?, c.tensor(1)?);
    if !ranks.contains(&x.rank()) || grid.rank() != x.rank() {
        return Err(c.err(format!(
            "expects a {ranks:?}-D input and a grid of the same rank, got {} and {}",
            fmt_shape(&x.shape),
            fmt_shape(&grid.shape)
        )));
    }
    let spatial = x.rank() - 2;
    if grid.shape[spatial + 1].as_const() != Some(spatial as i64) {
        return Err(c.err(format!("expects grid [..., {spatial}], got {}", fmt_shape(&grid.shape))));
    }
    if x.shape[0] != grid.shape[0] {
        return Err(c.err(format!("input batch {} and grid batch {} differ", x.shape[0], grid.shape[0])));
    }
    let (interpolation, padding) = (c.int(2)?, c.int(3)?);
    if !(0..=2).contains(&interpolation) {
        return Err(c.err(format!("invalid interpolation mode {interpolation}")));
    }
    if !(0..=2).contains(&padding) {
        return Err(c.err(format!("invalid padding mode {padding}")));
    }
    if interpolation == 2 && spatial != 2 {
        return Err(c.err("bicubic interpolation only supports 4-D input"));
    }
    if !pooling_float(x.dtype) || grid.dtype != x.dtype {
        return Err(c.err(format!("grid_sampler of a {} input and a {} grid", x.dtype, grid.dtype)));
    }
    if x.shape[2..].iter().any(|d| d.as_const() == Some(0)) {
        return Err(c.err(format!("the input's spatial dims must not be empty, got {}", fmt_shape(&x.shape))));
    }
    let mut shape = x.shape[..2].to_vec();
    shape.extend_from_slice(&grid.shape[1..=spatial]);
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

fn grid_sampler(c: &Call) -> Result<Vec<TensorType>, InferError> {
    grid_sampler_nd(c, &[4, 5])
}

fn grid_sampler_2d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    grid_sampler_nd(c, &[4])
}

/// Grid sampling: per output element a weighted sum of 2^k taps (bilinear), 1 (nearest) or 4^k
/// (bicubic) for `k` spatial dims, two FLOPs a tap.
fn cost_grid_sampler(c: &Call, outs: &[TensorType]) -> OpCost {
    let spatial = c.tensor(0).map_or(2, |x| x.rank().saturating_sub(2)).min(3) as u32;
    let taps = match c.int(2) {
        Ok(1) => 1,
        Ok(2) => 4i64.pow(spatial),
        _ => 2i64.pow(spatial),
    };
    streaming_cost(c, outs, 2 * taps)
}

/// `upsample_{linear1d,bicubic2d}.vec(input [N, C, *in], output_size?, align_corners,
/// scale_factors?)` → [N, C, *out] for `spatial` spatial dims, as ATen's `compute_output_size`
/// and shape checks: exactly one of output_size and scale_factors, one entry per spatial dim; a
/// scaled size is `int64(in * scale)` (truncated; a symbolic dim only by a whole factor); every
/// output size positive, no empty dim past the batch. `uint8` is whether the CPU kernel also takes
/// uint8 (bicubic does).
fn upsample_interp(c: &Call, spatial: usize, uint8: bool) -> Result<Vec<TensorType>, InferError> {
    use crate::graph::Arg;
    let x = c.tensor(0)?;
    let sizes = match (&c.args[1], &c.args[3]) {
        (Arg::None, Arg::Floats(scales)) => {
            if scales.len() != spatial || x.rank() != spatial + 2 {
                return Err(c.err(format!("{} scale factors for a rank-{} input", scales.len(), x.rank())));
            }
            let mut sizes = Vec::with_capacity(spatial);
            for (n, &s) in x.shape[2..].iter().zip(scales) {
                sizes.push(match n.as_const() {
                    Some(n) => {
                        let out = n as f64 * s;
                        // `checked_convert<int64_t>`: NaN and values outside i64 are errors.
                        if !(out > -9.2e18 && out < 9.2e18) {
                            return Err(c.err(format!("output size {out} cannot be converted to int64")));
                        }
                        Dim::constant(out as i64)
                    }
                    None if s.fract() == 0.0 && (1.0..=2f64.powi(31)).contains(&s) => n.scale(s as i64),
                    None => return Err(c.err(format!("scaling the symbolic dim {n} by {s}"))),
                });
            }
            sizes
        }
        (Arg::None, _) | (_, Arg::Floats(_)) => {
            return Err(c.err("must specify exactly one of output_size and scale_factors"))
        }
        _ => {
            let sizes = c.sym_ints(1)?;
            if sizes.len() != spatial || x.rank() != spatial + 2 {
                return Err(c.err(format!("output_size {} for a rank-{} input", fmt_shape(&sizes), x.rank())));
            }
            sizes
        }
    };
    if sizes.iter().chain(&x.shape[2..]).any(|d| d.as_const().is_some_and(|v| v <= 0)) {
        return Err(c.err(format!(
            "input and output sizes should be greater than 0, got input {} and output {}",
            fmt_shape(&x.shape[2..]),
            fmt_shape(&sizes)
        )));
    }
    if x.shape[1].as_const() == Some(0) {
        return Err(c.err(format!("non-empty data tensor expected, got {}", fmt_shape(&x.shape))));
    }
    if !(pooling_float(x.dtype) || (uint8 && x.dtype == DType::Uint8)) {
        return Err(c.err(format!("interpolation of a {} input is not implemented", x.dtype)));
    }
    let mut shape = x.shape[..2].to_vec();
    shape.extend(sizes);
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

fn upsample_linear1d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    upsample_interp(c, 1, false)
}

fn upsample_bicubic2d(c: &Call) -> Result<Vec<TensorType>, InferError> {
    upsample_interp(c, 2, true)
}

/// Bicubic interpolation: 16 taps per output element.
fn cost_bicubic(c: &Call, outs: &[TensorType]) -> OpCost {
    streaming_cost(c, outs, 32)
}

/// `upsample_*.vec(input, output_size?, [align_corners,] scale_factors?)`.
fn upsample(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let scales_i = c.args.len() - 1;
    let spatial =
        x.rank().checked_sub(2).filter(|s| *s > 0).ok_or_else(|| c.err("upsample input must be at least 3-D"))?;
    let mut shape = x.shape[..2].to_vec();
    match (&c.args[1], &c.args[scales_i]) {
        (crate::graph::Arg::None, crate::graph::Arg::Floats(f)) => {
            if f.len() != spatial {
                return Err(c.err("scale_factors length does not match the input"));
            }
            for (i, s) in f.iter().enumerate() {
                let n = x.shape[2 + i].as_const().ok_or_else(|| c.err("scaling a symbolic dim"))?;
                shape.push(Dim::constant((n as f64 * s).floor() as i64));
            }
        }
        (crate::graph::Arg::None, _) => return Err(c.err("upsample needs output_size or scale_factors")),
        (_, crate::graph::Arg::Floats(_)) => return Err(c.err("give output_size or scale_factors, not both")),
        _ => {
            let size = c.sym_ints(1)?;
            if size.len() != spatial {
                return Err(c.err("output_size length does not match the input"));
            }
            shape.extend(size);
        }
    }
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

fn glu(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let d = c.size_dim(c.int(1)?, x.rank())?;
    let mut shape = x.shape.clone();
    if shape[d].as_const().is_some_and(|v| v % 2 != 0) {
        return Err(c.err("glu halves an odd dimension"));
    }
    shape[d] = shape[d].floor_div(&Dim::constant(2));
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

fn pixel_shuffle(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let r = c.int(1)?;
    if x.rank() < 3 || r <= 0 || r > 1 << 31 {
        return Err(c.err("pixel_shuffle needs a rank >= 3 input and a positive factor"));
    }
    let n = x.rank();
    let mut shape = x.shape.clone();
    let ch = shape[n - 3].as_const();
    if ch.is_some_and(|v| v % (r * r) != 0) {
        return Err(c.err("channels not divisible by upscale_factor²"));
    }
    shape[n - 3] = shape[n - 3].floor_div(&Dim::constant(r * r));
    shape[n - 2] = shape[n - 2].scale(r);
    shape[n - 1] = shape[n - 1].scale(r);
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

/// The `int[2]` kernel_size, dilation, padding and stride of `im2col`/`col2im` (from argument
/// `first` on), each of exactly two values, checked as ATen's shape checks do.
fn unfold_attrs(c: &Call, first: usize) -> Result<[[i64; 2]; 4], InferError> {
    let mut attrs = [[0; 2]; 4];
    for (k, name) in ["kernel_size", "dilation", "padding", "stride"].into_iter().enumerate() {
        match c.ints(first + k)?[..] {
            [a, b] => attrs[k] = [a, b],
            ref v => return Err(c.err(format!("{name} must have 2 values, got {}", v.len()))),
        }
    }
    small_attrs(c, attrs.iter().flatten().copied())?;
    let [kernel, dilation, padding, stride] = attrs;
    if kernel.iter().chain(&dilation).chain(&stride).any(|&v| v <= 0) || padding.iter().any(|&v| v < 0) {
        return Err(c.err(format!(
            "kernel_size {kernel:?}, dilation {dilation:?} and stride {stride:?} must be positive, padding {padding:?} non-negative"
        )));
    }
    Ok(attrs)
}

/// How many positions a window of `kernel_size` takes along each spatial dim (`sizes`).
fn unfold_blocks(c: &Call, sizes: &[Dim], attrs: &[[i64; 2]; 4]) -> Result<[Dim; 2], InferError> {
    let [k, d, p, s] = attrs;
    let blocks = [0, 1].map(|i| window_out(&sizes[i], k[i], s[i], p[i], d[i], false));
    if blocks.iter().any(|b| b.as_const().is_some_and(|v| v < 1)) {
        return Err(c.err(format!("the sliding blocks {} are too small (non-positive)", fmt_shape(&blocks))));
    }
    Ok(blocks)
}

/// Only the batch dim (the first of a batched input) may be empty.
fn nonempty_dims(c: &Call, x: &TensorType, batched: bool) -> Result<(), InferError> {
    if x.shape[usize::from(batched)..].iter().any(|d| d.as_const() == Some(0)) {
        return Err(c.err(format!("only the batch dim may be empty, got {}", fmt_shape(&x.shape))));
    }
    Ok(())
}

/// `im2col(self [N?, C, H, W], kernel_size, dilation, padding, stride)` (`unfold`) →
/// [N?, C·kh·kw, L] with L the number of window positions.
fn im2col(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let attrs = unfold_attrs(c, 1)?;
    let batched = match x.rank() {
        3 => false,
        4 => true,
        r => return Err(c.err(format!("im2col expects a 3-D or 4-D input, got rank {r}"))),
    };
    if x.dtype.is_integral() {
        return Err(c.err(format!("im2col of {} is not implemented", x.dtype)));
    }
    nonempty_dims(c, x, batched)?;
    let off = usize::from(batched);
    let [bh, bw] = unfold_blocks(c, &x.shape[off + 1..], &attrs)?;
    let mut shape = x.shape[..off].to_vec();
    shape.push(x.shape[off].scale(attrs[0][0] * attrs[0][1]));
    shape.push(bh.mul(&bw));
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

/// `col2im(self [N?, C·kh·kw, L], output_size, kernel_size, dilation, padding, stride)` (`fold`)
/// → [N?, C, oh, ow]; L must be the number of window positions in the output.
fn col2im(c: &Call) -> Result<Vec<TensorType>, InferError> {
    let x = c.tensor(0)?;
    let out = c.sym_ints(1)?;
    if out.len() != 2 {
        return Err(c.err(format!("output_size must have 2 values, got {}", out.len())));
    }
    small_attrs(c, out.iter().filter_map(Dim::as_const))?;
    let attrs = unfold_attrs(c, 2)?;
    let batched = match x.rank() {
        2 => false,
        3 => true,
        r => return Err(c.err(format!("col2im expects a 2-D or 3-D input, got rank {r}"))),
    };
    if x.dtype.is_integral() {
        return Err(c.err(format!("col2im of {} is not implemented", x.dtype)));
    }
    nonempty_dims(c, x, batched)?;
    let off = usize::from(batched);
    let window = attrs[0][0] * attrs[0][1];
    let (columns, positions) = (&x.shape[off], &x.shape[off + 1]);
    if columns.as_const().is_some_and(|v| v % window != 0) {
        return Err(c.err(format!("input dim {off} ({columns}) is not divisible by the kernel's {window} positions")));
    }
    let [bh, bw] = unfold_blocks(c, &out, &attrs)?;
    if let (Some(want), Some(got)) = (bh.mul(&bw).as_const(), positions.as_const()) {
        if want != got {
            return Err(c.err(format!("input dim {} has {got} positions, the output has {want}", off + 1)));
        }
    }
    let mut shape = x.shape[..off].to_vec();
    shape.push(columns.floor_div(&Dim::constant(window)));
    shape.extend(out);
    Ok(vec![TensorType::with_dims(x.dtype, shape)])
}

/// Every neural-network op.
pub(super) const OPS: &[OpDecl] = &[
    // Matrix products.
    op("aten::mm(Tensor self, Tensor mat2) -> Tensor", Compute, mm, cost_matmul).contraction(MatMul),
    op("aten::bmm(Tensor self, Tensor mat2) -> Tensor", Compute, bmm, cost_matmul).contraction(MatMul),
    op("aten::addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", Compute, addmm, cost_matmul).contraction(MatMul),
    op("aten::baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", Compute, baddbmm, cost_matmul).contraction(MatMul),
    op("aten::matmul(Tensor self, Tensor other) -> Tensor", Compute, matmul, cost_matmul).contraction(MatMul),
    op("aten::linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor", Compute, linear, cost_matmul).contraction(MatMul),
    op("transformers::grouped_mm_fallback(Tensor input, Tensor weight, Tensor offs) -> Tensor", Compute, grouped_mm_fallback, cost_matmul).contraction(MatMul),
    op("aten::einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor", Compute, super::einsum::einsum, super::einsum::cost_einsum),
    // Convolution.
    op("aten::conv1d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[1] stride=[1], SymInt[1] padding=[0], SymInt[1] dilation=[1], SymInt groups=1) -> Tensor", Compute, conv_nd, cost_conv).contraction(Convolution),
    op("aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], SymInt[2] padding=[0, 0], SymInt[2] dilation=[1, 1], SymInt groups=1) -> Tensor", Compute, conv_nd, cost_conv).contraction(Convolution),
    op("aten::conv3d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[3] stride=[1, 1, 1], SymInt[3] padding=[0, 0, 0], SymInt[3] dilation=[1, 1, 1], SymInt groups=1) -> Tensor", Compute, conv_nd, cost_conv).contraction(Convolution),
    op("aten::conv2d.padding(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], str padding=\"valid\", SymInt[2] dilation=[1, 1], SymInt groups=1) -> Tensor", Compute, conv_nd_padding_str, cost_conv).contraction(Convolution),
    op("aten::convolution(Tensor input, Tensor weight, Tensor? bias, SymInt[] stride, SymInt[] padding, SymInt[] dilation, bool transposed, SymInt[] output_padding, SymInt groups) -> Tensor", Compute, convolution, cost_conv).contraction(Convolution),
    op("aten::conv_transpose1d(Tensor input, Tensor weight, Tensor? bias=None, SymInt[1] stride=[1], SymInt[1] padding=[0], SymInt[1] output_padding=[0], SymInt groups=1, SymInt[1] dilation=[1]) -> Tensor", Compute, conv_transpose, cost_conv).contraction(Convolution),
    op("aten::conv_transpose2d.input(Tensor input, Tensor weight, Tensor? bias=None, SymInt[2] stride=[1, 1], SymInt[2] padding=[0, 0], SymInt[2] output_padding=[0, 0], SymInt groups=1, SymInt[2] dilation=[1, 1]) -> Tensor", Compute, conv_transpose, cost_conv).contraction(Convolution),
    // Normalisation.
    op("aten::layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, float eps=1.0000000000000001e-05, bool cudnn_enable=True) -> Tensor", Compute, layer_norm, cost_normalize).per_sample(),
    op("aten::native_layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight, Tensor? bias, float eps) -> (Tensor, Tensor, Tensor)", Compute, native_layer_norm, cost_normalize).per_sample(),
    op("aten::rms_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, float? eps=None) -> Tensor", Compute, rms_norm, cost_normalize).per_sample(),
    op("aten::group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1.0000000000000001e-05, bool cudnn_enabled=True) -> Tensor", Compute, group_norm, cost_normalize).per_sample(),
    op("aten::native_group_norm(Tensor input, Tensor? weight, Tensor? bias, SymInt N, SymInt C, SymInt HxW, int group, float eps) -> (Tensor, Tensor, Tensor)", Compute, native_group_norm, cost_normalize),
    op("aten::batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool training, float momentum, float eps, bool cudnn_enabled) -> Tensor", Compute, batch_norm, cost_normalize),
    op("aten::_native_batch_norm_legit_no_training(Tensor input, Tensor? weight, Tensor? bias, Tensor running_mean, Tensor running_var, float momentum, float eps) -> (Tensor, Tensor, Tensor)", Compute, native_batch_norm_no_training, cost_normalize),
    op("aten::_native_batch_norm_legit.no_stats(Tensor input, Tensor? weight, Tensor? bias, bool training, float momentum, float eps) -> (Tensor, Tensor, Tensor)", Compute, native_batch_norm_no_stats, cost_normalize),
    op("aten::instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, bool use_input_stats, float momentum, float eps, bool cudnn_enabled) -> Tensor", Compute, batch_norm, cost_normalize).per_sample(),
    // Softmax.
    op("aten::softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor", Compute, softmax, cost_normalize).per_sample(),
    op("aten::_softmax(Tensor self, int dim, bool half_to_float) -> Tensor", Compute, softmax, cost_normalize).per_sample(),
    op("aten::log_softmax.int(Tensor self, int dim, ScalarType? dtype=None) -> Tensor", Compute, softmax, cost_normalize).per_sample(),
    op("aten::_log_softmax(Tensor self, int dim, bool half_to_float) -> Tensor", Compute, softmax, cost_normalize).per_sample(),
    // Embedding and attention.
    op("aten::embedding(Tensor weight, Tensor indices, SymInt padding_idx=-1, bool scale_grad_by_freq=False, bool sparse=False) -> Tensor", Compute, embedding, cost_embedding).lookup(0, 1),
    op("aten::scaled_dot_product_attention(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, float dropout_p=0., bool is_causal=False, *, float? scale=None, bool enable_gqa=False) -> Tensor", Compute, sdpa, cost_sdpa).contraction(Attention),
    // Pooling and resampling.
    op("aten::max_pool1d(Tensor self, int[1] kernel_size, int[1] stride=[], int[1] padding=[0], int[1] dilation=[1], bool ceil_mode=False) -> Tensor", Compute, max_pool1d, cost_pool).per_sample(),
    op("aten::max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> Tensor", Compute, max_pool2d, cost_pool).per_sample(),
    op("aten::max_pool3d(Tensor self, int[3] kernel_size, int[3] stride=[], int[3] padding=0, int[3] dilation=1, bool ceil_mode=False) -> Tensor", Compute, max_pool3d, cost_pool).per_sample(),
    op("aten::max_pool2d_with_indices(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)", Compute, max_pool2d_with_indices, cost_pool).per_sample(),
    op("aten::avg_pool1d(Tensor self, int[1] kernel_size, int[1] stride=[], int[1] padding=[0], bool ceil_mode=False, bool count_include_pad=True) -> Tensor", Compute, avg_pool1d, cost_pool).per_sample(),
    op("aten::avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor", Compute, avg_pool2d, cost_pool).per_sample(),
    op("aten::avg_pool3d(Tensor self, int[3] kernel_size, int[3] stride=[], int[3] padding=0, bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None) -> Tensor", Compute, avg_pool3d, cost_pool).per_sample(),
    op("aten::adaptive_avg_pool1d(Tensor self, int[1] output_size) -> Tensor", Compute, adaptive_pool, cost_reduce).per_sample(),
    op("aten::adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor", Compute, adaptive_pool, cost_reduce).per_sample(),
    op("aten::_adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor", Compute, adaptive_pool, cost_reduce).per_sample(),
    op("aten::adaptive_max_pool2d(Tensor self, int[2] output_size) -> (Tensor, Tensor)", Compute, adaptive_max_pool, cost_reduce).per_sample(),
    op("aten::adaptive_avg_pool3d(Tensor self, SymInt[3] output_size) -> Tensor", Compute, adaptive_avg_pool3d, cost_reduce).per_sample(),
    op("aten::upsample_nearest2d.vec(Tensor input, SymInt[]? output_size, float[]? scale_factors) -> Tensor", Compute, upsample, cost_copy).per_sample(),
    op("aten::upsample_bilinear2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors) -> Tensor", Compute, upsample, cost_elementwise).per_sample(),
    op("aten::upsample_bicubic2d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors) -> Tensor", Compute, upsample_bicubic2d, cost_bicubic).per_sample(),
    op("aten::upsample_linear1d.vec(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors) -> Tensor", Compute, upsample_linear1d, cost_elementwise).per_sample(),
    op("aten::grid_sampler(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners) -> Tensor", Compute, grid_sampler, cost_grid_sampler).per_sample(),
    op("aten::grid_sampler_2d(Tensor input, Tensor grid, int interpolation_mode, int padding_mode, bool align_corners) -> Tensor", Compute, grid_sampler_2d, cost_grid_sampler).per_sample(),
    op("aten::glu(Tensor self, int dim=-1) -> Tensor", Compute, glu, cost_transcendental).per_sample(),
    op("aten::pixel_shuffle(Tensor self, int upscale_factor) -> Tensor", Compute, pixel_shuffle, cost_copy),
    op("aten::im2col(Tensor self, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride) -> Tensor", Compute, im2col, cost_copy),
    op("aten::col2im(Tensor self, SymInt[2] output_size, int[2] kernel_size, int[2] dilation, int[2] padding, int[2] stride) -> Tensor", Compute, col2im, cost_reduce),
];
