//! The importer: ONNX values → SRG values, symbols for symbolic dims, the node loop, graph
//! inputs and outputs, and the checks against the types the model declares.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use genie_ir::registry::lookup;
use genie_ir::{Arg, DType, Dim, Graph, Program, SymRange, TensorType, ValueDef, ValueId, WeightHash, WeightStore};
use prost::Message;

use super::host::{kind, HostTensor, Kind};
use super::proto::{
    tensor_shape_proto::dimension::Value as DimValue, type_proto, GraphProto, ModelProto, NodeProto, TypeProto,
};
use super::tensor::{self, code_name, decode_owned, ExternalFiles, Payload};
use super::{fold, lower, OnnxError};
use crate::UnsupportedOps;

/// Oldest and newest default-domain opsets the lowering knows the semantics of.
pub(crate) const MIN_OPSET: i64 = 6;
pub(crate) const MAX_OPSET: i64 = 25;
/// Initializers and constants up to this many elements are also kept on the host for folding.
pub(crate) const HOST_LIMIT: usize = 1 << 12;
/// Folded results up to this many elements become constants; larger ones are lowered instead.
pub(crate) const FOLD_LIMIT: usize = 1 << 16;
/// Largest tensor dim the reader accepts (from inputs, initializers and shape values), and the
/// largest element count: shape arithmetic on bigger values could overflow `i64`.
pub(crate) const MAX_DIM: i64 = 1 << 40;
pub(crate) const MAX_NUMEL: i64 = 1 << 52;

/// How an ONNX value is (or will be) represented in the graph.
#[derive(Clone, Debug)]
pub(crate) enum Def {
    /// A graph value.
    Value(ValueId),
    /// An initializer: added to the weight store and the graph on first use, so initializers
    /// that only feed folded shape arithmetic leave no trace.
    Weight(Rc<Payload>),
    /// Known only on the host; added to the graph as a constant on first use.
    Host,
    /// An output the lowering of its node does not produce.
    Unavailable { node: String, op: String, index: usize },
}

/// One ONNX value.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub def: Def,
    pub ty: TensorType,
    /// The value, when known at import time.
    pub host: Option<Rc<HostTensor>>,
}

/// Symbols for `dim_param`s and unnamed dims.
#[derive(Default)]
struct Symbols {
    by_param: HashMap<String, String>,
    taken: HashSet<String>,
    fresh: usize,
}

impl Symbols {
    fn claim(&mut self, g: &mut Graph, base: String) -> String {
        let mut name = base.clone();
        let mut k = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        g.add_symbol(name.clone(), SymRange { min: 1, max: None });
        name
    }

    /// The symbol of a `dim_param`, made an identifier the `Dim` parser accepts.
    fn param(&mut self, g: &mut Graph, param: &str) -> Dim {
        if let Some(s) = self.by_param.get(param) {
            return Dim::symbol(s.clone());
        }
        let mut base: String =
            param.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
        if base.is_empty() || base.starts_with(|c: char| c.is_ascii_digit()) {
            base.insert_str(0, "s_");
        }
        let name = self.claim(g, base);
        self.by_param.insert(param.to_string(), name.clone());
        Dim::symbol(name)
    }

    /// A fresh symbol for a dim without value or name.
    fn fresh(&mut self, g: &mut Graph) -> Dim {
        loop {
            let base = format!("unk{}", self.fresh);
            self.fresh += 1;
            if !self.taken.contains(&base) {
                return Dim::symbol(self.claim(g, base));
            }
        }
    }
}

/// The import state of one graph.
pub(crate) struct Importer {
    pub g: Graph,
    pub weights: WeightStore,
    pub opset: i64,
    pub slots: HashMap<String, Slot>,
    pub files: ExternalFiles,
    syms: Symbols,
    /// Types the model declares for values (`value_info` and graph outputs).
    declared: HashMap<String, TypeProto>,
}

/// A node's name for messages: its name, or `#index` when it has none.
pub(crate) fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("#{index}")
    } else {
        format!("`{}`", node.name)
    }
}

fn is_default_domain(d: &str) -> bool {
    d.is_empty() || d == "ai.onnx"
}

/// The op type as listed in unsupported-op errors (`domain::Op` outside the default domain).
fn op_key(node: &NodeProto) -> String {
    if is_default_domain(&node.domain) {
        node.op_type.clone()
    } else {
        format!("{}::{}", node.domain, node.op_type)
    }
}

/// Import a model from its bytes.
pub(crate) fn import(bytes: &[u8], name: &str, dir: &Path) -> Result<Program, OnnxError> {
    let mut model = ModelProto::decode(bytes)?;
    let mut graph = model.graph.take().ok_or(OnnxError::NoGraph)?;
    let opset =
        model.opset_import.iter().filter(|o| is_default_domain(&o.domain)).map(|o| o.version).max().unwrap_or(1);
    if !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        return Err(OnnxError::Opset { version: opset, min: MIN_OPSET, max: MAX_OPSET });
    }

    let mut unsupported = UnsupportedOps::default();
    for (i, node) in graph.node.iter().enumerate() {
        if !is_default_domain(&node.domain) || lower::lowering(&node.op_type).is_none() {
            unsupported.add(op_key(node), if node.name.is_empty() { format!("#{i}") } else { node.name.clone() });
        }
    }
    if !unsupported.is_empty() {
        return Err(OnnxError::Unsupported(unsupported));
    }

    let mut imp = Importer {
        g: Graph::new(name),
        weights: WeightStore::new(),
        opset,
        slots: HashMap::new(),
        files: ExternalFiles::new(dir),
        syms: Symbols::default(),
        declared: HashMap::new(),
    };
    imp.read_graph(&mut graph)?;
    let mut program = Program::new(name);
    program.entries.push(imp.g);
    program.weights = imp.weights;
    Ok(program)
}

impl Importer {
    fn read_graph(&mut self, graph: &mut GraphProto) -> Result<(), OnnxError> {
        if let Some(sparse) = graph.sparse_initializer.first() {
            let name = sparse.values.as_ref().map(|v| v.name.clone()).unwrap_or_default();
            return Err(OnnxError::BadTensor { tensor: name, reason: "sparse initializers are not supported".into() });
        }
        for init in std::mem::take(&mut graph.initializer) {
            self.add_initializer(init)?;
        }
        for input in &graph.input {
            if self.slots.contains_key(&input.name) {
                // IR version 3 lists initializers among the inputs: those are weights.
                continue;
            }
            let ty = self.input_type(&input.name, input.r#type.as_ref())?;
            let id = self.g.add_input(input.name.clone(), ty.clone());
            self.define(&input.name, Slot { def: Def::Value(id), ty, host: None })?;
        }
        for vi in graph.value_info.iter().chain(&graph.output) {
            if let Some(t) = &vi.r#type {
                self.declared.insert(vi.name.clone(), t.clone());
            }
        }
        for (i, node) in graph.node.iter().enumerate() {
            self.node(node, i)?;
        }
        let mut seen = HashSet::new();
        for out in &graph.output {
            if !seen.insert(out.name.as_str()) {
                return Err(OnnxError::DuplicateOutput(out.name.clone()));
            }
            let slot = self.slots.get(&out.name).ok_or_else(|| OnnxError::UndefinedOutput(out.name.clone()))?;
            if let Def::Unavailable { node, op, index } = &slot.def {
                return Err(OnnxError::Lowering {
                    node: node.clone(),
                    op: op.clone(),
                    reason: format!("output #{index} `{}` is a graph output but is not supported", out.name),
                });
            }
            let v = self.materialize(&out.name)?;
            self.g.add_output(out.name.clone(), v);
        }
        Ok(())
    }

    /// Add a name to the value table; names are defined once.
    pub fn define(&mut self, name: &str, slot: Slot) -> Result<(), OnnxError> {
        if self.slots.insert(name.to_string(), slot).is_some() {
            return Err(OnnxError::DuplicateValue(name.to_string()));
        }
        Ok(())
    }

    /// An initializer: a weight (inline or external), also kept on the host when small.
    fn add_initializer(&mut self, t: super::proto::TensorProto) -> Result<(), OnnxError> {
        let name = t.name.clone();
        let d = decode_owned(t, &name, &mut self.files)?;
        let host = if d.numel() <= HOST_LIMIT {
            match &d.payload {
                Payload::Inline(bytes) => HostTensor::from_le_bytes(d.ty.dtype, d.shape.clone(), bytes),
                Payload::External { path, offset, len } => self
                    .files
                    .bytes(path, *offset, *len)
                    .and_then(|b| HostTensor::from_le_bytes(d.ty.dtype, d.shape.clone(), b)),
            }
        } else {
            None
        };
        self.define(&name, Slot { def: Def::Weight(Rc::new(d.payload)), ty: d.ty, host: host.map(Rc::new) })
    }

    /// Put an initializer's bytes into the weight store: inline bytes by value, external ones by
    /// reference, hashed over the mapped file.
    fn store_weight(&mut self, name: &str, ty: &TensorType, payload: Rc<Payload>) -> Result<WeightHash, OnnxError> {
        // The table usually held the only reference: then the bytes move without a copy.
        match Rc::try_unwrap(payload).unwrap_or_else(|shared| (*shared).clone()) {
            Payload::Inline(bytes) => Ok(self.weights.insert_inline(ty.clone(), bytes)),
            Payload::External { path, offset, len } => self.store_external(name, ty, path, offset, len),
        }
    }

    fn store_external(
        &mut self,
        name: &str,
        ty: &TensorType,
        path: std::path::PathBuf,
        offset: u64,
        len: u64,
    ) -> Result<WeightHash, OnnxError> {
        let hash = self.files.hash(ty, &path, offset, len).ok_or_else(|| OnnxError::ExternalData {
            tensor: name.to_string(),
            path: path.clone(),
            reason: "the mapped range is not readable".into(),
        })?;
        self.weights.insert_external(hash.clone(), ty.clone(), path, offset, len);
        Ok(hash)
    }

    /// The tensor type of a graph input.
    fn input_type(&mut self, name: &str, t: Option<&TypeProto>) -> Result<TensorType, OnnxError> {
        let unsupported = |reason: &str| OnnxError::UnsupportedType { value: name.to_string(), reason: reason.into() };
        let Some(type_proto::Value::TensorType(tt)) = t.and_then(|t| t.value.as_ref()) else {
            return Err(unsupported(match t.and_then(|t| t.value.as_ref()) {
                None => "the input has no type",
                Some(type_proto::Value::SequenceType(_)) => "sequence inputs are not supported",
                Some(type_proto::Value::MapType(_)) => "map inputs are not supported",
                Some(type_proto::Value::OptionalType(_)) => "optional inputs are not supported",
                Some(type_proto::Value::SparseTensorType(_)) => "sparse tensor inputs are not supported",
                _ => "opaque inputs are not supported",
            }));
        };
        let dtype = tensor::dtype_for(tt.elem_type, name)?;
        let shape = tt.shape.as_ref().ok_or_else(|| unsupported("the input has no shape (unknown rank)"))?;
        let mut dims = Vec::with_capacity(shape.dim.len());
        let mut numel: i64 = 1;
        for d in &shape.dim {
            dims.push(match &d.value {
                Some(DimValue::DimValue(v)) if (0..=MAX_DIM).contains(v) => {
                    numel = numel.saturating_mul(*v);
                    if numel > MAX_NUMEL {
                        return Err(unsupported("the input has too many elements"));
                    }
                    Dim::constant(*v)
                }
                Some(DimValue::DimValue(v)) => return Err(unsupported(&format!("dim {v} is out of range"))),
                Some(DimValue::DimParam(p)) if !p.is_empty() => self.syms.param(&mut self.g, p),
                _ => self.syms.fresh(&mut self.g),
            });
        }
        Ok(TensorType::with_dims(dtype, dims))
    }

    /// Check a computed type against the model's declaration, if any: the dtype, the rank and
    /// every dim that both sides know statically must agree.
    fn check_declared(&self, name: &str, ty: &TensorType) -> Result<(), OnnxError> {
        let Some(type_proto::Value::TensorType(tt)) = self.declared.get(name).and_then(|t| t.value.as_ref()) else {
            return Ok(());
        };
        let mismatch =
            |declared: String| OnnxError::TypeMismatch { value: name.to_string(), declared, inferred: ty.to_string() };
        if tt.elem_type != 0 && tensor::dtype_of(tt.elem_type) != Some(ty.dtype) {
            return Err(mismatch(format!("element type {}", code_name(tt.elem_type))));
        }
        if let Some(shape) = &tt.shape {
            let dims: Vec<String> = shape
                .dim
                .iter()
                .map(|d| match &d.value {
                    Some(DimValue::DimValue(v)) => v.to_string(),
                    Some(DimValue::DimParam(p)) => p.clone(),
                    None => "?".into(),
                })
                .collect();
            let text = || format!("shape [{}]", dims.join(", "));
            if shape.dim.len() != ty.rank() {
                return Err(mismatch(text()));
            }
            for (d, have) in shape.dim.iter().zip(&ty.shape) {
                if let (Some(DimValue::DimValue(v)), Some(h)) = (&d.value, have.as_const()) {
                    if *v != h {
                        return Err(mismatch(text()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Import one node: fold it when its inputs are known, lower it otherwise.
    fn node(&mut self, node: &NodeProto, index: usize) -> Result<(), OnnxError> {
        let label = node_label(node, index);
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            match self.slots.get(name) {
                None => {
                    return Err(OnnxError::UndefinedValue {
                        node: label,
                        op: node.op_type.clone(),
                        value: name.clone(),
                    })
                }
                Some(Slot { def: Def::Unavailable { node: producer, op, index }, .. }) => {
                    return Err(OnnxError::Lowering {
                        node: producer.clone(),
                        op: op.clone(),
                        reason: format!("output #{index} `{name}` (used by node {label}) is not supported"),
                    })
                }
                Some(_) => {}
            }
        }
        let first_new = self.g.values.len();
        let outs = {
            let mut ctx = lower::Ctx { imp: self, node, label: label.clone() };
            match fold::try_fold(&mut ctx)? {
                Some(hosts) => hosts.into_iter().map(lower::Out::Host).collect(),
                None => lower::lower(&mut ctx)?,
            }
        };
        for (i, name) in node.output.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            let slot = match outs.get(i) {
                Some(lower::Out::Value(v)) => {
                    let v = *v;
                    // Values this node created take the ONNX name; pass-throughs keep theirs.
                    if v.index() >= first_new && matches!(self.g.value(v).def, ValueDef::Node { .. }) {
                        self.g.value_mut(v).name = name.clone();
                    }
                    Slot { def: Def::Value(v), ty: self.g.value(v).ty.clone(), host: None }
                }
                Some(lower::Out::Host(h)) => Slot { def: Def::Host, ty: h.ty(), host: Some(Rc::new(h.clone())) },
                Some(lower::Out::Alias(src)) => self.slots.get(src).cloned().ok_or_else(|| OnnxError::Lowering {
                    node: label.clone(),
                    op: node.op_type.clone(),
                    reason: format!("alias of undefined value `{src}`"),
                })?,
                None => Slot {
                    def: Def::Unavailable { node: label.clone(), op: node.op_type.clone(), index: i },
                    ty: TensorType::new(DType::Float32, &[]),
                    host: None,
                },
            };
            if !matches!(slot.def, Def::Unavailable { .. }) {
                self.check_declared(name, &slot.ty)?;
            }
            self.define(name, slot)?;
        }
        Ok(())
    }

    /// The graph value of an ONNX value, adding weights and constants on first use.
    pub fn materialize(&mut self, name: &str) -> Result<ValueId, OnnxError> {
        let slot = self.slots.get(name).ok_or_else(|| OnnxError::UndefinedOutput(name.to_string()))?;
        let id = match &slot.def {
            Def::Value(v) => return Ok(*v),
            Def::Weight(payload) => {
                let (ty, payload) = (slot.ty.clone(), payload.clone());
                // Drop the table's reference so the bytes can be moved into the store.
                if let Some(s) = self.slots.get_mut(name) {
                    s.def = Def::Host;
                }
                let hash = self.store_weight(name, &ty, payload)?;
                self.g.add_weight(name.to_string(), ty, hash)
            }
            Def::Host => {
                let host = slot.host.clone().ok_or_else(|| OnnxError::UndefinedOutput(name.to_string()))?;
                self.host_value(name, &host)?
            }
            Def::Unavailable { node, op, index } => {
                return Err(OnnxError::Lowering {
                    node: node.clone(),
                    op: op.clone(),
                    reason: format!("output #{index} `{name}` is not supported"),
                })
            }
        };
        if let Some(slot) = self.slots.get_mut(name) {
            slot.def = Def::Value(id);
        }
        Ok(id)
    }

    /// A graph value holding a host tensor: a constant, or for symbolic integers, scalars built
    /// from the symbols and stacked.
    pub fn host_value(&mut self, name: &str, h: &HostTensor) -> Result<ValueId, OnnxError> {
        if let Some(bytes) = h.to_le_bytes() {
            return Ok(self.g.add_const(name.to_string(), h.ty(), bytes));
        }
        let err = |source: genie_ir::InferError| OnnxError::Lowering {
            node: format!("(value `{name}`)"),
            op: "Constant".into(),
            reason: format!("cannot build a symbolic integer tensor: {source}"),
        };
        let dims = h.dims().unwrap_or_default().to_vec();
        if kind(h.dtype) != Kind::Int {
            return Err(err(genie_ir::InferError::new("aten.scalar_tensor.default", "not an integer tensor")));
        }
        let mut scalars = Vec::with_capacity(dims.len());
        for d in dims {
            let args = lookup("aten.scalar_tensor.default")
                .and_then(|def| {
                    def.schema
                        .bind(vec![Arg::sym_int(d)], vec![("dtype".into(), Arg::DType(h.dtype))])
                        .map_err(Into::into)
                })
                .map_err(err)?;
            scalars.push(self.g.add_op("aten.scalar_tensor.default", args).map_err(err)?);
        }
        let v = if h.rank() == 0 && scalars.len() == 1 {
            scalars[0]
        } else {
            let stacked = self.g.add_op("aten.stack.default", vec![Arg::Tensors(scalars), Arg::Int(0)]).map_err(err)?;
            if h.rank() == 1 {
                stacked
            } else {
                let shape = h.shape.iter().map(|&d| d as i64).collect();
                self.g.add_op("aten.reshape.default", vec![Arg::Tensor(stacked), Arg::Ints(shape)]).map_err(err)?
            }
        };
        self.g.value_mut(v).name = name.to_string();
        Ok(v)
    }
}
