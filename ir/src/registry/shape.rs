//! Shared pieces of shape inference, type promotion and cost.

use super::{Call, InferError, OpCost, ScalarArg};
use crate::dim::Dim;
use crate::types::{promote, DType, TensorType};

/// The default floating dtype (`torch.get_default_dtype()`).
pub const DEFAULT_FLOAT: DType = DType::Float32;

/// Broadcast two shapes (numpy rules). Symbolic dims broadcast against 1 and against themselves;
/// two different symbolic dims are assumed equal (the exporter guarded them) and the first wins.
pub fn broadcast(call: &Call, a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, InferError> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n { Some(&a[i + a.len() - n]) } else { None };
        let db = if i + b.len() >= n { Some(&b[i + b.len() - n]) } else { None };
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) => match (x.as_const(), y.as_const()) {
                (Some(1), _) => y.clone(),
                (_, Some(1)) => x.clone(),
                (Some(p), Some(q)) if p != q => {
                    return Err(call.err(format!("shapes {} and {} do not broadcast", fmt_shape(a), fmt_shape(b))))
                }
                (None, Some(_)) => y.clone(),
                _ => x.clone(),
            },
            (None, None) => unreachable_dim(),
        });
    }
    Ok(out)
}

fn unreachable_dim() -> Dim {
    // Both indices are computed from `n = max(len)`, so one side always exists.
    Dim::constant(1)
}

pub fn fmt_shape(s: &[Dim]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

/// One operand of type promotion.
pub enum Operand<'a> {
    Tensor(&'a TensorType),
    Scalar(ScalarArg),
}

fn category(d: DType) -> u8 {
    if d == DType::Bool {
        0
    } else if d.is_integral() {
        1
    } else if d.is_complex() {
        3
    } else {
        2
    }
}

/// PyTorch's `result_type`: dimensioned tensors, then zero-dim tensors, then Python scalars
/// (int as int64, float as the default float), where a later tier only matters when its
/// category is higher.
pub fn result_type(operands: &[Operand]) -> DType {
    let mut dimensioned: Option<DType> = None;
    let mut zero_dim: Option<DType> = None;
    let mut scalar: Option<DType> = None;
    let merge = |slot: &mut Option<DType>, d: DType| *slot = Some(slot.map_or(d, |s| promote(s, d)));
    for op in operands {
        match op {
            Operand::Tensor(t) if t.rank() == 0 => merge(&mut zero_dim, t.dtype),
            Operand::Tensor(t) => merge(&mut dimensioned, t.dtype),
            Operand::Scalar(s) => merge(
                &mut scalar,
                match s {
                    ScalarArg::Bool(_) => DType::Bool,
                    ScalarArg::Int(_) | ScalarArg::Sym => DType::Int64,
                    ScalarArg::Float(_) => DEFAULT_FLOAT,
                },
            ),
        }
    }
    let mut result = dimensioned;
    for tier in [zero_dim, scalar] {
        let Some(t) = tier else { continue };
        result = Some(match result {
            None => t,
            Some(r) if category(t) > category(r) => t,
            Some(r) => r,
        });
    }
    result.unwrap_or(DEFAULT_FLOAT)
}

/// The dtype that `float-only` unary ops produce (`sin` of an int tensor is float32).
pub fn float_of(d: DType) -> DType {
    if d.is_floating() || d.is_complex() {
        d
    } else {
        DEFAULT_FLOAT
    }
}

/// Output size of a sliding window: `floor((n + 2p - d*(k-1) - 1) / s) + 1` (or ceil).
pub fn window_out(n: &Dim, k: i64, s: i64, p: i64, d: i64, ceil: bool) -> Dim {
    let span = n.add(&Dim::constant(2 * p - d * (k - 1) - 1));
    let mut out = if ceil {
        span.add(&Dim::constant(s - 1)).floor_div(&Dim::constant(s)).add(&Dim::constant(1))
    } else {
        span.floor_div(&Dim::constant(s)).add(&Dim::constant(1))
    };
    // PyTorch: with ceil_mode the last window must start inside the input or left padding.
    if ceil {
        if let (Some(o), Some(nv)) = (out.as_const(), n.as_const()) {
            if (o - 1) * s >= nv + p {
                out = Dim::constant(o - 1);
            }
        }
    }
    out
}

/// Product of dims.
pub fn product(ds: &[Dim]) -> Dim {
    ds.iter().fold(Dim::constant(1), |a, d| a.mul(d))
}

/// Product of dims from attributes: static values that overflow i64 are an error, not a panic.
pub fn checked_product(call: &Call, ds: &[Dim]) -> Result<Dim, InferError> {
    match ds.iter().map(Dim::as_const).collect::<Option<Vec<_>>>() {
        Some(vs) => vs
            .into_iter()
            .try_fold(1i64, i64::checked_mul)
            .map(Dim::constant)
            .ok_or_else(|| call.err(format!("the product of {} overflows", fmt_shape(ds)))),
        None => Ok(product(ds)),
    }
}

/// Sum of dims from attributes: static values that overflow i64 are an error, not a panic.
pub fn checked_sum(call: &Call, ds: &[Dim]) -> Result<Dim, InferError> {
    match ds.iter().map(Dim::as_const).collect::<Option<Vec<_>>>() {
        Some(vs) => vs
            .into_iter()
            .try_fold(0i64, i64::checked_add)
            .map(Dim::constant)
            .ok_or_else(|| call.err(format!("the sum of {} overflows", fmt_shape(ds)))),
        None => Ok(ds.iter().fold(Dim::constant(0), |a, d| a.add(d))),
    }
}

/// Sum of the byte sizes of tensors.
pub fn bytes_of(ts: &[&TensorType]) -> Dim {
    ts.iter().fold(Dim::constant(0), |a, t| a.add(&t.bytes()))
}

/// Sum of the byte sizes of outputs.
pub fn out_bytes(outs: &[TensorType]) -> Dim {
    outs.iter().fold(Dim::constant(0), |a, t| a.add(&t.bytes()))
}

/// Cost of an op that reads its inputs, writes its outputs and does `per_elem` FLOPs per output element.
pub fn streaming_cost(call: &Call, outs: &[TensorType], per_elem: i64) -> OpCost {
    let flops = outs.first().map(|t| t.numel().scale(per_elem)).unwrap_or_default();
    OpCost { flops, bytes_read: bytes_of(&call.all_tensor_inputs()), bytes_written: out_bytes(outs) }
}

// Cost functions referenced from the tables.

pub fn cost_free(_: &Call, _: &[TensorType]) -> OpCost {
    OpCost::default()
}

pub fn cost_copy(call: &Call, outs: &[TensorType]) -> OpCost {
    streaming_cost(call, outs, 0)
}

pub fn cost_write(_: &Call, outs: &[TensorType]) -> OpCost {
    OpCost { flops: Dim::constant(0), bytes_read: Dim::constant(0), bytes_written: out_bytes(outs) }
}

pub fn cost_elementwise(call: &Call, outs: &[TensorType]) -> OpCost {
    streaming_cost(call, outs, 1)
}

/// Transcendental functions (exp, tanh, gelu): a handful of FLOPs each.
pub fn cost_transcendental(call: &Call, outs: &[TensorType]) -> OpCost {
    streaming_cost(call, outs, 8)
}

/// Reductions: one FLOP per input element.
pub fn cost_reduce(call: &Call, outs: &[TensorType]) -> OpCost {
    let inputs = call.all_tensor_inputs();
    OpCost {
        flops: inputs.first().map(|t| t.numel()).unwrap_or_default(),
        bytes_read: bytes_of(&inputs),
        bytes_written: out_bytes(outs),
    }
}

/// Normalisations and softmax: about five FLOPs per element.
pub fn cost_normalize(call: &Call, outs: &[TensorType]) -> OpCost {
    let inputs = call.all_tensor_inputs();
    OpCost {
        flops: inputs.first().map(|t| t.numel().scale(5)).unwrap_or_default(),
        bytes_read: bytes_of(&inputs),
        bytes_written: out_bytes(outs),
    }
}

/// Normalise dims of a reduction (`None` or empty means all dims); a dim may appear once.
pub fn reduce_dims(call: &Call, dims: Option<Vec<i64>>, rank: usize) -> Result<Vec<usize>, InferError> {
    match dims {
        None => Ok((0..rank).collect()),
        Some(v) if v.is_empty() => Ok((0..rank).collect()),
        Some(v) => {
            let mut out = Vec::with_capacity(v.len());
            for d in v {
                let d = call.dim_index(d, rank)?;
                if out.contains(&d) {
                    return Err(call.err(format!("dim {d} appears more than once in the reduction")));
                }
                out.push(d);
            }
            Ok(out)
        }
    }
}

/// Shape after reducing `dims` (kept as 1 with `keepdim`).
pub fn reduced_shape(shape: &[Dim], dims: &[usize], keepdim: bool) -> Vec<Dim> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| if dims.contains(&i) { keepdim.then(|| Dim::constant(1)) } else { Some(d.clone()) })
        .collect()
}
