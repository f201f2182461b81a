//! Lowering ONNX nodes onto the SRG's ATen-named ops.
//!
//! [`lowering`] is the one table, keyed by ONNX op type: simple element-wise ops map straight to
//! an ATen op, everything else to a small function in [`math`], [`nn`] or [`shape`]. A node is
//! supported exactly when this table has an entry for its op type. Every node is built with
//! [`Ctx::op`], which binds arguments through the op's ATen schema and lets the registry infer the
//! output types.

pub(crate) mod math;
mod nn;
pub(crate) mod shape;

use std::rc::Rc;

use genie_ir::registry::lookup;
use genie_ir::{Arg, DType, Dim, TensorType, ValueId};

use super::host::HostTensor;
use super::import::{Importer, MAX_DIM, MAX_NUMEL};

/// Largest magnitude of window and count attributes (kernel sizes, strides, pads, groups).
const MAX_ATTR: i64 = 1 << 31;
use super::proto::{attribute_type as at, AttributeProto, NodeProto, TensorProto};
use super::OnnxError;

/// What a lowering produced for one ONNX output.
#[derive(Debug)]
pub(crate) enum Out {
    /// A graph value.
    Value(ValueId),
    /// A value known at import time.
    Host(HostTensor),
    /// Exactly the value of another ONNX name (`Identity`, `Dropout` at inference).
    Alias(String),
}

/// A lowering function.
pub(crate) type LowerFn = fn(&mut Ctx) -> Result<Vec<Out>, OnnxError>;

/// How an ONNX op type is lowered.
#[derive(Clone, Copy)]
pub(crate) enum Lower {
    /// `op(x)` with one ATen op of schema `(Tensor self) -> Tensor`.
    Unary(&'static str),
    /// `op(a, b)` with ONNX multidirectional broadcasting, one ATen `(Tensor, Tensor)` op.
    Binary(&'static str),
    /// Anything else.
    Custom(LowerFn),
}

/// The lowering table: every supported ONNX op type.
pub(crate) fn lowering(op_type: &str) -> Option<Lower> {
    use Lower::*;
    Some(match op_type {
        // Element-wise unary.
        "Abs" => Unary("aten.abs.default"),
        "Acos" => Unary("aten.acos.default"),
        "Acosh" => Unary("aten.acosh.default"),
        "Asin" => Unary("aten.asin.default"),
        "Asinh" => Unary("aten.asinh.default"),
        "Atan" => Unary("aten.atan.default"),
        "Atanh" => Unary("aten.atanh.default"),
        "Ceil" => Unary("aten.ceil.default"),
        "Cos" => Unary("aten.cos.default"),
        "Cosh" => Unary("aten.cosh.default"),
        "Erf" => Unary("aten.erf.default"),
        "Exp" => Unary("aten.exp.default"),
        "Floor" => Unary("aten.floor.default"),
        "HardSwish" => Unary("aten.hardswish.default"),
        "IsNaN" => Unary("aten.isnan.default"),
        "Log" => Unary("aten.log.default"),
        "Mish" => Unary("aten.mish.default"),
        "Neg" => Unary("aten.neg.default"),
        "Not" => Unary("aten.logical_not.default"),
        "BitwiseNot" => Unary("aten.bitwise_not.default"),
        "Reciprocal" => Unary("aten.reciprocal.default"),
        "Relu" => Unary("aten.relu.default"),
        "Round" => Unary("aten.round.default"),
        "Sigmoid" => Unary("aten.sigmoid.default"),
        "Sign" => Unary("aten.sign.default"),
        "Sin" => Unary("aten.sin.default"),
        "Sinh" => Unary("aten.sinh.default"),
        "Softsign" => Unary("aten.softsign.default"),
        "Sqrt" => Unary("aten.sqrt.default"),
        "Tan" => Unary("aten.tan.default"),
        "Tanh" => Unary("aten.tanh.default"),
        // Element-wise binary (ONNX broadcasting).
        "Add" => Binary("aten.add.Tensor"),
        "Sub" => Binary("aten.sub.Tensor"),
        "Mul" => Binary("aten.mul.Tensor"),
        "Equal" => Binary("aten.eq.Tensor"),
        "Less" => Binary("aten.lt.Tensor"),
        "LessOrEqual" => Binary("aten.le.Tensor"),
        "Greater" => Binary("aten.gt.Tensor"),
        "GreaterOrEqual" => Binary("aten.ge.Tensor"),
        "And" => Binary("aten.logical_and.default"),
        "Or" => Binary("aten.logical_or.default"),
        "Xor" => Binary("aten.logical_xor.default"),
        "BitwiseAnd" => Binary("aten.bitwise_and.Tensor"),
        "BitwiseOr" => Binary("aten.bitwise_or.Tensor"),
        "BitwiseXor" => Binary("aten.bitwise_xor.Tensor"),
        "Div" => Custom(math::div),
        "Mod" => Custom(math::modulo),
        "Pow" => Custom(math::pow),
        "Max" => Custom(math::max),
        "Min" => Custom(math::min),
        "Sum" => Custom(math::sum),
        "Mean" => Custom(math::mean),
        "Where" => Custom(math::where_),
        // Activations with attributes.
        "Clip" => Custom(math::clip),
        "Celu" => Custom(math::celu),
        "Elu" => Custom(math::elu),
        "Gelu" => Custom(math::gelu),
        "HardSigmoid" => Custom(math::hard_sigmoid),
        "IsInf" => Custom(math::is_inf),
        "LeakyRelu" => Custom(math::leaky_relu),
        "PRelu" => Custom(math::prelu),
        "Selu" => Custom(math::selu),
        "Shrink" => Custom(math::shrink),
        "Softplus" => Custom(math::softplus),
        "ThresholdedRelu" => Custom(math::thresholded_relu),
        "Softmax" => Custom(math::softmax),
        "LogSoftmax" => Custom(math::log_softmax),
        // Reductions and scans.
        "ReduceSum" => Custom(math::reduce_sum),
        "ReduceMean" => Custom(math::reduce_mean),
        "ReduceMax" => Custom(math::reduce_max),
        "ReduceMin" => Custom(math::reduce_min),
        "ReduceProd" => Custom(math::reduce_prod),
        "ReduceL1" => Custom(math::reduce_l1),
        "ReduceL2" => Custom(math::reduce_l2),
        "ReduceSumSquare" => Custom(math::reduce_sum_square),
        "ReduceLogSumExp" => Custom(math::reduce_log_sum_exp),
        "ReduceLogSum" => Custom(math::reduce_log_sum),
        "ArgMax" => Custom(math::arg_max),
        "ArgMin" => Custom(math::arg_min),
        "CumSum" => Custom(math::cum_sum),
        "TopK" => Custom(math::top_k),
        // Linear algebra, convolution, pooling, normalisation.
        "MatMul" => Custom(nn::mat_mul),
        "Gemm" => Custom(nn::gemm),
        "Conv" => Custom(nn::conv),
        "ConvTranspose" => Custom(nn::conv_transpose),
        "MaxPool" => Custom(nn::max_pool),
        "AveragePool" => Custom(nn::average_pool),
        "GlobalAveragePool" => Custom(nn::global_average_pool),
        "GlobalMaxPool" => Custom(nn::global_max_pool),
        "BatchNormalization" => Custom(nn::batch_norm),
        "InstanceNormalization" => Custom(nn::instance_norm),
        "LayerNormalization" => Custom(nn::layer_norm),
        "GroupNormalization" => Custom(nn::group_norm),
        "LRN" => Custom(nn::lrn),
        "Dropout" => Custom(nn::dropout),
        "Resize" => Custom(nn::resize),
        "Upsample" => Custom(nn::upsample),
        "DepthToSpace" => Custom(nn::depth_to_space),
        "SpaceToDepth" => Custom(nn::space_to_depth),
        // Shapes, views, indexing and constants.
        "Identity" => Custom(shape::identity),
        "Cast" => Custom(shape::cast),
        "CastLike" => Custom(shape::cast_like),
        "Constant" => Custom(shape::constant),
        "ConstantOfShape" => Custom(shape::constant_of_shape),
        "Shape" => Custom(shape::shape),
        "Size" => Custom(shape::size),
        "Range" => Custom(shape::range),
        "Reshape" => Custom(shape::reshape),
        "Flatten" => Custom(shape::flatten),
        "Squeeze" => Custom(shape::squeeze),
        "Unsqueeze" => Custom(shape::unsqueeze),
        "Transpose" => Custom(shape::transpose),
        "Concat" => Custom(shape::concat),
        "Split" => Custom(shape::split),
        "Slice" => Custom(shape::slice),
        "Gather" => Custom(shape::gather),
        "GatherElements" => Custom(shape::gather_elements),
        "GatherND" => Custom(shape::gather_nd),
        "Expand" => Custom(shape::expand),
        "Tile" => Custom(shape::tile),
        "Pad" => Custom(shape::pad),
        "Trilu" => Custom(shape::trilu),
        _ => return None,
    })
}

/// Lower one node (the table has an entry: the importer checked every node first).
pub(crate) fn lower(ctx: &mut Ctx) -> Result<Vec<Out>, OnnxError> {
    match lowering(&ctx.node.op_type) {
        Some(Lower::Unary(op)) => {
            ctx.expect_inputs(1, 1)?;
            let x = ctx.x(0)?;
            ctx.one(op, vec![Arg::Tensor(x)], vec![])
        }
        Some(Lower::Binary(op)) => {
            ctx.expect_inputs(2, 2)?;
            let (a, b) = ctx.broadcast_pair()?;
            ctx.one(op, vec![Arg::Tensor(a), Arg::Tensor(b)], vec![])
        }
        Some(Lower::Custom(f)) => f(ctx),
        None => Err(ctx.err("no lowering for this op type")),
    }
}

/// One node being lowered: its inputs, attributes, and the graph being built.
pub(crate) struct Ctx<'a> {
    pub imp: &'a mut Importer,
    pub node: &'a NodeProto,
    /// The node's name for messages.
    pub label: String,
}

impl<'a> Ctx<'a> {
    pub fn opset(&self) -> i64 {
        self.imp.opset
    }

    /// A lowering error naming this node.
    pub fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Lowering { node: self.label.clone(), op: self.node.op_type.clone(), reason: reason.into() }
    }

    /// An attribute error naming this node.
    pub fn attr_err(&self, attr: &str, reason: impl Into<String>) -> OnnxError {
        OnnxError::Attribute {
            node: self.label.clone(),
            op: self.node.op_type.clone(),
            attr: attr.to_string(),
            reason: reason.into(),
        }
    }

    /// Check the number of inputs (omitted trailing optionals count as absent).
    pub fn expect_inputs(&self, min: usize, max: usize) -> Result<(), OnnxError> {
        let n = self.node.input.len();
        if n < min || n > max || (0..min).any(|i| !self.has(i)) {
            return Err(OnnxError::Arity {
                node: self.label.clone(),
                op: self.node.op_type.clone(),
                reason: format!("expects {min}..={max} inputs with the first {min} present, got {:?}", self.node.input),
            });
        }
        Ok(())
    }

    /// True when input `i` is given (not omitted and not the empty name).
    pub fn has(&self, i: usize) -> bool {
        self.node.input.get(i).is_some_and(|n| !n.is_empty())
    }

    pub fn n_inputs(&self) -> usize {
        self.node.input.len()
    }

    fn input_name(&self, i: usize) -> Result<&str, OnnxError> {
        match self.node.input.get(i) {
            Some(n) if !n.is_empty() => Ok(n),
            _ => Err(OnnxError::Arity {
                node: self.label.clone(),
                op: self.node.op_type.clone(),
                reason: format!("input #{i} is required"),
            }),
        }
    }

    /// The ONNX name of input `i`, for aliases.
    pub fn input_name_owned(&self, i: usize) -> Result<String, OnnxError> {
        self.input_name(i).map(str::to_string)
    }

    /// Input `i` as a graph value.
    pub fn x(&mut self, i: usize) -> Result<ValueId, OnnxError> {
        let name = self.input_name(i)?.to_string();
        self.imp.materialize(&name)
    }

    /// An optional input as a graph value.
    pub fn opt_x(&mut self, i: usize) -> Result<Option<ValueId>, OnnxError> {
        if self.has(i) {
            self.x(i).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The type of input `i`.
    pub fn ty(&self, i: usize) -> Result<TensorType, OnnxError> {
        let name = self.input_name(i)?;
        Ok(self.imp.slots.get(name).map(|s| s.ty.clone()).unwrap_or_else(|| TensorType::new(DType::Float32, &[])))
    }

    /// The value of input `i` when known at import time.
    pub fn host(&self, i: usize) -> Option<Rc<HostTensor>> {
        let name = self.node.input.get(i).filter(|n| !n.is_empty())?;
        self.imp.slots.get(name)?.host.clone()
    }

    /// Input `i` as integers known at import time, possibly symbolic, of any size (slice
    /// bounds, which are clamped).
    pub fn const_dims_unbounded(&self, i: usize, what: &str) -> Result<Vec<Dim>, OnnxError> {
        let h = self.host(i).ok_or_else(|| self.err(format!("`{what}` (input #{i}) must be known at import time")))?;
        h.dims().map(<[Dim]>::to_vec).ok_or_else(|| self.err(format!("`{what}` (input #{i}) must be integers")))
    }

    /// Input `i` as integers known at import time, possibly symbolic (shapes, axes, pads), each
    /// at most [`MAX_DIM`] in size and their product at most [`MAX_NUMEL`].
    pub fn const_dims(&self, i: usize, what: &str) -> Result<Vec<Dim>, OnnxError> {
        let v = self.const_dims_unbounded(i, what)?;
        let mut numel: i64 = 1;
        for d in &v {
            if let Some(c) = d.as_const() {
                if c.unsigned_abs() > MAX_DIM as u64 {
                    return Err(self.err(format!("`{what}` (input #{i}) holds {c}, larger than any tensor dim")));
                }
                numel = numel.saturating_mul(c.abs().max(1));
            }
        }
        if numel > MAX_NUMEL {
            return Err(self.err(format!("`{what}` (input #{i}) describes more than {MAX_NUMEL} elements")));
        }
        Ok(v)
    }

    /// Input `i` as static integers known at import time.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Vec<i64>, OnnxError> {
        self.const_dims(i, what)?
            .iter()
            .map(Dim::as_const)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.err(format!("`{what}` (input #{i}) must be static, not symbolic")))
    }

    /// Input `i` as numbers known at import time.
    pub fn const_f64(&self, i: usize, what: &str) -> Result<Vec<f64>, OnnxError> {
        self.host(i)
            .and_then(|h| h.as_f64())
            .ok_or_else(|| self.err(format!("`{what}` (input #{i}) must be known at import time")))
    }

    // Attributes.

    pub fn attr(&self, name: &str) -> Option<&'a AttributeProto> {
        let node: &'a NodeProto = self.node;
        node.attribute.iter().find(|a| a.name == name)
    }

    fn typed_attr(&self, name: &str, kind: i32, what: &str) -> Result<Option<&'a AttributeProto>, OnnxError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) if a.kind() == kind => Ok(Some(a)),
            Some(a) => Err(self.attr_err(name, format!("expected {what}, got attribute type {}", a.kind()))),
        }
    }

    /// An int attribute with a default.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.typed_attr(name, at::INT, "an int")?.map_or(default, |a| a.i))
    }

    /// An optional int attribute.
    pub fn opt_int(&self, name: &str) -> Result<Option<i64>, OnnxError> {
        Ok(self.typed_attr(name, at::INT, "an int")?.map(|a| a.i))
    }

    /// A float attribute with a default (as stored, a float32, widened).
    pub fn float(&self, name: &str, default: f32) -> Result<f64, OnnxError> {
        Ok(self.typed_attr(name, at::FLOAT, "a float")?.map_or(default, |a| a.f) as f64)
    }

    /// An ints attribute, if present.
    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.typed_attr(name, at::INTS, "ints")?.map(|a| a.ints.clone()))
    }

    /// An ints attribute of window sizes, strides, pads or counts: each at most `2^31` in
    /// magnitude.
    pub fn small_ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        let v = self.ints(name)?;
        if let Some(bad) = v.iter().flatten().find(|x| x.unsigned_abs() > MAX_ATTR as u64) {
            return Err(self.attr_err(name, format!("{bad} is out of range")));
        }
        Ok(v)
    }

    /// An int attribute that counts something (groups, block sizes): at most `2^31` in magnitude.
    pub fn small_int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        let v = self.int(name, default)?;
        if v.unsigned_abs() > MAX_ATTR as u64 {
            return Err(self.attr_err(name, format!("{v} is out of range")));
        }
        Ok(v)
    }

    /// A floats attribute, if present.
    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>, OnnxError> {
        Ok(self.typed_attr(name, at::FLOATS, "floats")?.map(|a| a.floats.clone()))
    }

    /// A string attribute with a default.
    pub fn string(&self, name: &str, default: &str) -> Result<String, OnnxError> {
        match self.typed_attr(name, at::STRING, "a string")? {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s.clone()).map_err(|_| self.attr_err(name, "not UTF-8")),
        }
    }

    /// A tensor attribute, if present.
    pub fn tensor_attr(&self, name: &str) -> Result<Option<&'a TensorProto>, OnnxError> {
        Ok(self.typed_attr(name, at::TENSOR, "a tensor")?.and_then(|a| a.t.as_ref()))
    }

    // Graph building.

    /// The type of a graph value.
    pub fn vty(&self, v: ValueId) -> TensorType {
        self.imp.g.value(v).ty.clone()
    }

    /// Apply an ATen op, binding positional and keyword arguments through its schema; all
    /// outputs.
    pub fn op_n(&mut self, op: &str, pos: Vec<Arg>, kw: Vec<(&str, Arg)>) -> Result<Vec<ValueId>, OnnxError> {
        let infer = |source| OnnxError::Infer {
            node: self.label.clone(),
            op: self.node.op_type.clone(),
            source: Box::new(source),
        };
        let def = lookup(op).map_err(infer)?;
        let kw = kw.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let args = def.schema.bind(pos, kw).map_err(|e| infer(e.into()))?;
        let (_, outs) = self.imp.g.add_node(op, args).map_err(infer)?;
        Ok(outs)
    }

    /// Apply a single-output ATen op.
    pub fn op(&mut self, op: &str, pos: Vec<Arg>, kw: Vec<(&str, Arg)>) -> Result<ValueId, OnnxError> {
        let outs = self.op_n(op, pos, kw)?;
        outs.first().copied().ok_or_else(|| self.err(format!("{op} gave no output")))
    }

    /// Apply a single-output ATen op as the node's only result.
    pub fn one(&mut self, op: &str, pos: Vec<Arg>, kw: Vec<(&str, Arg)>) -> Result<Vec<Out>, OnnxError> {
        Ok(vec![Out::Value(self.op(op, pos, kw)?)])
    }

    /// A graph constant from a host tensor.
    pub fn konst(&mut self, h: &HostTensor) -> Result<ValueId, OnnxError> {
        let name = format!("{}_const", self.node.output.first().map(String::as_str).unwrap_or("onnx"));
        self.imp.host_value(&name, h)
    }

    /// A 0-d constant of `dtype` holding `v`.
    pub fn scalar(&mut self, dtype: DType, v: f64) -> Result<ValueId, OnnxError> {
        let h = match super::host::kind(dtype) {
            super::host::Kind::Int => HostTensor::ints(dtype, vec![], vec![Dim::constant(v as i64)]),
            super::host::Kind::Bool => HostTensor::bools(vec![], vec![v != 0.0]),
            super::host::Kind::Float => HostTensor::floats(dtype, vec![], vec![v]),
            super::host::Kind::Other => return Err(self.err(format!("cannot make a {dtype} constant"))),
        };
        self.konst(&h)
    }

    /// A Scalar argument of the same kind as `dtype` (an int for integer tensors), so that
    /// `*.Scalar` ops keep the tensor's dtype.
    pub fn scalar_arg(dtype: DType, v: f64) -> Arg {
        if dtype.is_floating() {
            Arg::Float(v)
        } else if dtype == DType::Bool {
            Arg::Bool(v != 0.0)
        } else {
            Arg::Int(v as i64)
        }
    }

    /// Inputs 0 and 1, with opset < 7 `broadcast`/`axis` attributes applied.
    pub fn broadcast_pair(&mut self) -> Result<(ValueId, ValueId), OnnxError> {
        let a = self.x(0)?;
        let b = self.x(1)?;
        if self.opset() >= 7 || self.int("broadcast", 0)? == 0 {
            return Ok((a, b));
        }
        let b = self.legacy_broadcast(a, b)?;
        Ok((a, b))
    }

    /// Opset < 7 broadcasting: `b` is aligned with `a` starting at `axis` (default: suffix).
    pub fn legacy_broadcast(&mut self, a: ValueId, b: ValueId) -> Result<ValueId, OnnxError> {
        let (ra, tb) = (self.vty(a).rank(), self.vty(b));
        let Some(axis) = self.opt_int("axis")? else { return Ok(b) };
        let axis = if axis < 0 { axis + ra as i64 } else { axis };
        let trailing = ra as i64 - axis - tb.rank() as i64;
        if axis < 0 || trailing < 0 {
            return Err(self.attr_err("axis", format!("cannot align rank {} at axis {axis} of rank {ra}", tb.rank())));
        }
        if trailing == 0 {
            return Ok(b);
        }
        let mut dims = tb.shape.clone();
        dims.extend(std::iter::repeat_n(Dim::constant(1), trailing as usize));
        self.op("aten.reshape.default", vec![Arg::Tensor(b), Arg::sym_ints(dims)], vec![])
    }

    /// Normalise an axis against a rank (`-1` is the last).
    pub fn axis(&self, axis: i64, rank: usize, what: &str) -> Result<usize, OnnxError> {
        let r = rank as i64;
        let a = if axis < 0 { axis + r } else { axis };
        if a < 0 || a >= r.max(1) {
            return Err(self.err(format!("{what} {axis} is out of range for rank {rank}")));
        }
        Ok(a as usize)
    }

    /// An axis that picks one of the input's dims (`shape[axis]`). [`Ctx::axis`] lets a rank-0
    /// input take axis 0 or -1, as PyTorch's dim arguments do; a rank-0 input has no dim to pick.
    pub fn dim_axis(&self, axis: i64, rank: usize, what: &str) -> Result<usize, OnnxError> {
        if rank == 0 {
            return Err(self.err(format!("{what} {axis} is out of range for rank 0")));
        }
        self.axis(axis, rank, what)
    }

    /// Is output `i` requested (present and named)?
    pub fn wants_output(&self, i: usize) -> bool {
        self.node.output.get(i).is_some_and(|n| !n.is_empty())
    }
}
