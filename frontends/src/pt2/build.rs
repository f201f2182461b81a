//! Exported program JSON → SRG graph.

use std::collections::{BTreeSet, HashMap};

use genie_ir::registry::{self, ArgKind, OpClass};
use genie_ir::{Arg, DType, Dim, Graph, GraphOutput, OutputKind, SymRange, TensorType, ValueId, WeightStore};

use super::archive::Archive;
use super::ops::{self, ImportAs};
use super::payload::{External, Payloads};
use super::schema::{
    Argument, ExportedProgram, InputSpec, Node, OptionalTensorArgument, OutputSpec, SymBool, SymBoolArgument, SymFloat,
    SymFloatArgument, SymInt, SymIntArgument,
};
use super::sym::{linear_bounds, parse_sym_expr_bounded};
use super::{dtype_of, Pt2Error};
use crate::UnsupportedOps;

/// Where a mutable value came from, for in-place ops that write into it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    /// A parameter or buffer, by FQN.
    Weight(String),
    /// A user input, by name.
    Input(String),
}

/// Largest bound on a tensor's byte count (per symbol-free coefficient) the reader accepts, so
/// size arithmetic on the imported types cannot overflow `i64`.
const MAX_EXTENT: u128 = 1 << 62;

/// The registry name of a node target (`torch.ops.aten.mm.default` → `aten.mm.default`).
fn op_name(target: &str) -> &str {
    target.strip_prefix("torch.ops.").unwrap_or(target)
}

fn memory_format_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "contiguous_format",
        2 => "channels_last",
        3 => "channels_last_3d",
        4 => "preserve_format",
        _ => return None,
    })
}

fn layout_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "sparse_coo",
        2 => "sparse_csr",
        3 => "sparse_csc",
        4 => "sparse_bsr",
        5 => "sparse_bsc",
        6 => "_mkldnn",
        7 => "strided",
        _ => return None,
    })
}

/// The innermost module's dotted path from `nn_module_stack` (`key,path,type;key,path,type`).
fn module_path(stack: &str) -> Option<String> {
    let last = stack.rsplit(';').next()?;
    let (_key, rest) = last.split_once(',')?;
    let path = rest.rsplit_once(',').map_or(rest, |(p, _ty)| p);
    if path.starts_with("_empty_nn_module_stack") {
        return None;
    }
    // Older exports write `L['self'].layers[0]`; normalise to `layers.0`.
    let path = path.strip_prefix("L['self']").unwrap_or(path);
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(c) = rest.chars().next() {
        if let Some(r) = rest.strip_prefix("._modules['").or_else(|| rest.strip_prefix("['")) {
            let end = r.find("']").unwrap_or(r.len());
            out.push('.');
            out.push_str(&r[..end]);
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            out.push('.');
            out.push_str(&r[..end]);
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let out = out.trim_start_matches('.').to_string();
    (!out.is_empty()).then_some(out)
}

/// `file:line` of the innermost frame of a `stack_trace`. Library files are shown relative to
/// `site-packages/`, others by file name.
fn source_of(trace: &str) -> Option<String> {
    let mut found = None;
    let mut rest = trace;
    while let Some(i) = rest.find("File \"") {
        let after = &rest[i + 6..];
        let Some(q) = after.find('"') else { break };
        let file = &after[..q];
        let tail = &after[q + 1..];
        if let Some(t) = tail.strip_prefix(", line ") {
            let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                found = Some((file, digits));
            }
        }
        rest = tail;
    }
    let (file, line) = found?;
    let shown = match file.rfind("site-packages/") {
        Some(i) => &file[i + "site-packages/".len()..],
        None => file.rsplit(['/', '\\']).next().unwrap_or(file),
    };
    Some(format!("{shown}:{line}"))
}

/// Builds one entry graph from an exported program.
pub struct Builder<'e> {
    ep: &'e ExportedProgram,
    member: &'e str,
    graph: Graph,
    /// Tensor name in the JSON → value.
    names: HashMap<String, ValueId>,
    /// The newer version of a value an in-place op wrote.
    latest: HashMap<ValueId, ValueId>,
    /// Outputs of each node, by node name (for `getitem`).
    node_outputs: HashMap<String, Vec<ValueId>>,
    origin: HashMap<ValueId, Origin>,
    /// The last version of every mutated weight or input, in first-mutation order.
    mutations: Vec<(Origin, ValueId)>,
    sym_cache: HashMap<String, (Dim, u128)>,
    /// How many nodes (and graph outputs) read each tensor, by name.
    readers: HashMap<String, usize>,
}

/// The tensor names an argument reads.
fn tensor_names(arg: &Argument) -> Vec<&str> {
    match arg {
        Argument::Tensor(t) | Argument::OptionalTensor(OptionalTensorArgument::Tensor(t)) => vec![t.name.as_str()],
        Argument::Tensors(ts) => ts.iter().map(|t| t.name.as_str()).collect(),
        Argument::OptionalTensors(ts) => ts
            .iter()
            .filter_map(|t| match t {
                OptionalTensorArgument::Tensor(t) => Some(t.name.as_str()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Where in the graph an argument is being read, for errors.
struct At<'a> {
    node: &'a str,
    op: &'static str,
}

impl<'e> Builder<'e> {
    pub fn new(ep: &'e ExportedProgram, member: &'e str, entry: &str) -> Builder<'e> {
        Builder {
            ep,
            member,
            graph: Graph::new(entry),
            names: HashMap::new(),
            latest: HashMap::new(),
            node_outputs: HashMap::new(),
            origin: HashMap::new(),
            mutations: Vec::new(),
            sym_cache: HashMap::new(),
            readers: {
                let graph = &ep.graph_module.graph;
                let mut readers: HashMap<String, usize> = HashMap::new();
                for arg in graph.nodes.iter().flat_map(|n| n.inputs.iter().map(|i| &i.arg)) {
                    for name in tensor_names(arg) {
                        *readers.entry(name.to_string()).or_default() += 1;
                    }
                }
                // A graph output is read outside the graph.
                for spec in &ep.graph_module.signature.output_specs {
                    if let OutputSpec::User { arg: Argument::Tensor(t) } = spec {
                        *readers.entry(t.name.clone()).or_default() += 1;
                    }
                }
                readers
            },
        }
    }

    fn sig_err(&self, reason: String) -> Pt2Error {
        Pt2Error::Signature { member: self.member.to_string(), reason }
    }

    fn node_err(&self, at: &At<'_>, reason: String) -> Pt2Error {
        Pt2Error::BadNode { member: self.member.to_string(), node: at.node.to_string(), op: at.op, reason }
    }

    /// A symbolic int by its `SymInt` record.
    fn sym_dim(&mut self, name: &str, s: &SymInt) -> Result<Dim, Pt2Error> {
        self.sym_dim_bounded(name, s).map(|(d, _)| d)
    }

    /// A symbolic int and a bound on its coefficients (see [`parse_sym_expr_bounded`]).
    fn sym_dim_bounded(&mut self, name: &str, s: &SymInt) -> Result<(Dim, u128), Pt2Error> {
        match s {
            SymInt::Int(v) => Ok((Dim::constant(*v), v.unsigned_abs() as u128)),
            SymInt::Expr(e) => {
                if let Some(d) = self.sym_cache.get(&e.expr_str) {
                    return Ok(d.clone());
                }
                let d = parse_sym_expr_bounded(&e.expr_str, &self.graph.symbols).map_err(|why| Pt2Error::SymExpr {
                    member: self.member.to_string(),
                    name: name.to_string(),
                    reason: format!("`{}`: {why}", e.expr_str),
                })?;
                self.sym_cache.insert(e.expr_str.clone(), d.clone());
                Ok(d)
            }
        }
    }

    /// The dim a named sym-int value stands for.
    fn sym_named(&mut self, name: &str) -> Result<Dim, Pt2Error> {
        let ep = self.ep;
        let s = ep.graph_module.graph.sym_int_values.get(name).ok_or_else(|| Pt2Error::SymExpr {
            member: self.member.to_string(),
            name: name.to_string(),
            reason: "no such symbolic int in the graph".into(),
        })?;
        self.sym_dim(name, s)
    }

    /// The recorded type of a tensor.
    fn tensor_type(&mut self, name: &str) -> Result<TensorType, Pt2Error> {
        let ep = self.ep;
        let terr =
            |reason: String| Pt2Error::TensorMeta { member: self.member.to_string(), name: name.to_string(), reason };
        let meta = ep.graph_module.graph.tensor_values.get(name).ok_or_else(|| terr("no tensor metadata".into()))?;
        let dtype = dtype_of(meta.dtype).ok_or_else(|| terr(format!("unsupported dtype code {}", meta.dtype)))?;
        if meta.layout.is_some_and(|l| l != 7) {
            return Err(terr(format!("layout {} is not strided", meta.layout.unwrap_or_default())));
        }
        let mut shape = Vec::with_capacity(meta.sizes.len());
        // Keep `numel` and byte counts computable: the product of the dims' coefficient bounds
        // bounds every coefficient of the element count.
        let mut extent: u128 = dtype.size_bytes() as u128;
        for (i, s) in meta.sizes.iter().enumerate() {
            let (d, b) = self.sym_dim_bounded(&format!("{name}.size({i})"), s)?;
            if d.as_const().is_some_and(|v| v < 0) {
                return Err(terr(format!("negative size {d}")));
            }
            extent = extent.saturating_mul(b.max(1));
            shape.push(d);
        }
        if extent > MAX_EXTENT {
            return Err(terr("sizes too large".into()));
        }
        Ok(TensorType::with_dims(dtype, shape))
    }

    /// The current version of a value.
    fn current(&self, mut v: ValueId) -> ValueId {
        while let Some(&n) = self.latest.get(&v) {
            v = n;
        }
        v
    }

    fn value(&self, name: &str, at: &At<'_>) -> Result<ValueId, Pt2Error> {
        let v = self.names.get(name).ok_or_else(|| self.node_err(at, format!("uses undefined tensor `{name}`")))?;
        Ok(self.current(*v))
    }

    fn arg(&mut self, a: &Argument, at: &At<'_>) -> Result<Arg, Pt2Error> {
        Ok(match a {
            Argument::None(_) => Arg::None,
            Argument::Tensor(t) => Arg::Tensor(self.value(&t.name, at)?),
            Argument::Tensors(ts) => {
                Arg::Tensors(ts.iter().map(|t| self.value(&t.name, at)).collect::<Result<_, _>>()?)
            }
            Argument::OptionalTensors(ts) => Arg::OptTensors(
                ts.iter()
                    .map(|t| match t {
                        OptionalTensorArgument::Tensor(t) => self.value(&t.name, at).map(Some),
                        OptionalTensorArgument::None(_) => Ok(None),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Argument::OptionalTensor(OptionalTensorArgument::Tensor(t)) => Arg::Tensor(self.value(&t.name, at)?),
            Argument::OptionalTensor(OptionalTensorArgument::None(_)) => Arg::None,
            Argument::Int(v) => Arg::Int(*v),
            Argument::Ints(v) => Arg::Ints(v.clone()),
            Argument::Float(f) => Arg::Float(f.0),
            Argument::Floats(v) => Arg::Floats(v.iter().map(|f| f.0).collect()),
            Argument::String(s) => Arg::Str(s.clone()),
            Argument::Bool(b) => Arg::Bool(*b),
            Argument::Bools(v) => Arg::Bools(v.clone()),
            Argument::SymInt(SymIntArgument::Int(v)) => Arg::Int(*v),
            Argument::SymInt(SymIntArgument::Name(n)) => Arg::sym_int(self.sym_named(n)?),
            Argument::SymInts(list) => {
                let mut dims = Vec::with_capacity(list.len());
                for s in list {
                    dims.push(match s {
                        SymIntArgument::Int(v) => Dim::constant(*v),
                        SymIntArgument::Name(n) => self.sym_named(n)?,
                    });
                }
                Arg::sym_ints(dims)
            }
            Argument::ScalarType(c) => {
                Arg::DType(dtype_of(*c).ok_or_else(|| self.node_err(at, format!("unsupported dtype code {c}")))?)
            }
            Argument::MemoryFormat(c) => Arg::MemoryFormat(
                memory_format_name(*c).ok_or_else(|| self.node_err(at, format!("unknown memory format {c}")))?.into(),
            ),
            Argument::Layout(c) => {
                Arg::Layout(layout_name(*c).ok_or_else(|| self.node_err(at, format!("unknown layout {c}")))?.into())
            }
            Argument::Device(d) => Arg::Device(match d.index {
                Some(i) => format!("{}:{i}", d.kind),
                None => d.kind.clone(),
            }),
            Argument::SymBool(s) => Arg::Bool(self.sym_bool(s, at)?),
            Argument::SymBools(list) => {
                Arg::Bools(list.iter().map(|s| self.sym_bool(s, at)).collect::<Result<_, _>>()?)
            }
            Argument::SymFloat(s) => Arg::Float(self.sym_float(s, at)?),
            Argument::SymFloats(list) => {
                Arg::Floats(list.iter().map(|s| self.sym_float(s, at)).collect::<Result<_, _>>()?)
            }
            other @ (Argument::Strings(_)
            | Argument::Graph(_)
            | Argument::CustomObj(_)
            | Argument::Operator(_)
            | Argument::Complex(_)
            | Argument::NestedTensors(_)
            | Argument::IntLists(_)
            | Argument::StringMap(_)) => {
                return Err(self.node_err(at, format!("argument kind `{}` has no SRG form", other.kind_name())));
            }
        })
    }

    fn sym_bool(&self, s: &SymBoolArgument, at: &At<'_>) -> Result<bool, Pt2Error> {
        match s {
            SymBoolArgument::Bool(b) => Ok(*b),
            SymBoolArgument::Name(n) => match self.ep.graph_module.graph.sym_bool_values.get(n) {
                Some(SymBool::Bool(b)) => Ok(*b),
                Some(SymBool::Expr(e)) => {
                    Err(self.node_err(at, format!("symbolic bool `{n}` = `{}` has no SRG form", e.expr_str)))
                }
                None => Err(self.node_err(at, format!("uses undefined symbolic bool `{n}`"))),
            },
        }
    }

    fn sym_float(&self, s: &SymFloatArgument, at: &At<'_>) -> Result<f64, Pt2Error> {
        match s {
            SymFloatArgument::Float(f) => Ok(f.0),
            SymFloatArgument::Name(n) => match self.ep.graph_module.graph.sym_float_values.get(n) {
                Some(SymFloat::Float(f)) => Ok(f.0),
                Some(SymFloat::Expr(e)) => {
                    Err(self.node_err(at, format!("symbolic float `{n}` = `{}` has no SRG form", e.expr_str)))
                }
                None => Err(self.node_err(at, format!("uses undefined symbolic float `{n}`"))),
            },
        }
    }

    /// Build the graph, importing its weights into `store`.
    pub fn build(
        &mut self,
        archive: &mut Archive<'_>,
        payloads: &mut Payloads,
        store: &mut WeightStore,
        external: Option<&External<'_>>,
    ) -> Result<Graph, Pt2Error> {
        let ep = self.ep;
        for (name, r) in &ep.range_constraints {
            let plain = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if plain {
                let min = r.min_val.unwrap_or(0);
                self.graph.add_symbol(name.clone(), SymRange { min, max: r.max_val.filter(|&m| m >= min) });
            }
        }
        self.inputs(archive, payloads, store, external)?;
        self.check_ops()?;
        for (i, node) in ep.graph_module.graph.nodes.iter().enumerate() {
            self.node(i, node)?;
        }
        self.outputs()?;
        for s in self.graph.used_symbols() {
            if !self.graph.symbols.contains_key(&s) {
                self.graph.add_symbol(s, SymRange { min: 0, max: None });
            }
        }
        Ok(std::mem::replace(&mut self.graph, Graph::new("")))
    }

    fn inputs(
        &mut self,
        archive: &mut Archive<'_>,
        payloads: &mut Payloads,
        store: &mut WeightStore,
        external: Option<&External<'_>>,
    ) -> Result<(), Pt2Error> {
        let ep = self.ep;
        if let Some(ext) = external {
            let fqns: Vec<&str> = ep
                .graph_module
                .signature
                .input_specs
                .iter()
                .filter_map(|spec| match spec {
                    InputSpec::Parameter { parameter_name: fqn, .. }
                    | InputSpec::Buffer { buffer_name: fqn, .. }
                    | InputSpec::TensorConstant { tensor_constant_name: fqn, .. } => Some(fqn.as_str()),
                    _ => None,
                })
                .collect();
            payloads.prehash(archive, &fqns, ext);
        }
        for spec in &ep.graph_module.signature.input_specs {
            let (arg, fqn) = match spec {
                InputSpec::Parameter { arg, parameter_name } => (arg, parameter_name),
                InputSpec::Buffer { arg, buffer_name } => (arg, buffer_name),
                InputSpec::TensorConstant { arg, tensor_constant_name } => (arg, tensor_constant_name),
                InputSpec::User { arg } => {
                    match arg {
                        Argument::Tensor(t) => {
                            let ty = self.tensor_type(&t.name)?;
                            let v = self.graph.add_input(t.name.clone(), ty);
                            self.names.insert(t.name.clone(), v);
                            self.origin.insert(v, Origin::Input(t.name.clone()));
                        }
                        // Constants burnt into the graph at export time.
                        Argument::None(_)
                        | Argument::Int(_)
                        | Argument::Float(_)
                        | Argument::Bool(_)
                        | Argument::String(_) => {}
                        other => {
                            return Err(self.sig_err(format!(
                                "user input of kind `{}` (only tensor inputs are supported)",
                                other.kind_name()
                            )))
                        }
                    }
                    continue;
                }
                InputSpec::ConstantInput(_) => continue,
                InputSpec::CustomObj(_) => return Err(self.sig_err("custom-object inputs are not supported".into())),
                InputSpec::Token(_) => return Err(self.sig_err("effect-token inputs are not supported".into())),
            };
            let (ty, hash) = payloads.import(archive, fqn, store, external)?;
            if ep.graph_module.graph.tensor_values.contains_key(&arg.name) {
                let recorded = self.tensor_type(&arg.name)?;
                if recorded != ty {
                    return Err(Pt2Error::TensorMeta {
                        member: self.member.to_string(),
                        name: arg.name.clone(),
                        reason: format!("the graph records {recorded} but the stored weight `{fqn}` is {ty}"),
                    });
                }
            }
            let v = self.graph.add_weight(fqn.clone(), ty, hash);
            self.names.insert(arg.name.clone(), v);
            self.origin.insert(v, Origin::Weight(fqn.clone()));
        }
        Ok(())
    }

    /// Every op the graph uses must be in the registry; report all that are not at once.
    fn check_ops(&self) -> Result<(), Pt2Error> {
        let mut unsupported = UnsupportedOps::default();
        for (i, node) in self.ep.graph_module.graph.nodes.iter().enumerate() {
            if self.skipped(node) || node.target == "_operator.getitem" {
                continue;
            }
            let op = op_name(&node.target);
            if ops::import_as(op).is_none() {
                unsupported.add(op, node.name.clone().unwrap_or_else(|| format!("node{i}")));
            }
        }
        if unsupported.is_empty() {
            Ok(())
        } else {
            Err(Pt2Error::UnsupportedOps { member: self.member.to_string(), ops: unsupported })
        }
    }

    /// Nodes that do not become SRG nodes: sym-int arithmetic and shape asserts.
    fn skipped(&self, node: &Node) -> bool {
        let symbolic = !node.outputs.is_empty() && node.outputs.iter().all(Argument::is_symbolic_scalar);
        (symbolic && ops::is_sym_target(&node.target)) || ops::is_shape_assert(&node.target)
    }

    fn node(&mut self, index: usize, node: &Node) -> Result<(), Pt2Error> {
        if self.skipped(node) {
            return Ok(());
        }
        let node_name = node.name.clone().unwrap_or_else(|| format!("node{index}"));
        if node.target == "_operator.getitem" {
            return self.getitem(node, &At { node: &node_name, op: "_operator.getitem" });
        }
        let exported = op_name(&node.target);
        let how = ops::import_as(exported)
            .ok_or_else(|| self.node_err(&At { node: &node_name, op: "?" }, format!("unsupported op `{exported}`")))?;
        let schema = match &how {
            ImportAs::Registered(def) => &def.schema,
            ImportAs::InPlace(f) => f.schema(),
            ImportAs::Decomposed(_, schema) => *schema,
        };
        let at = At { node: &node_name, op: schema.name.as_str() };
        let mut positional = Vec::new();
        let mut keywords = Vec::new();
        for na in &node.inputs {
            let a = self.arg(&na.arg, &at)?;
            if na.kind == Some(1) {
                positional.push(a);
            } else {
                keywords.push((na.name.clone(), a));
            }
        }
        let def = match how {
            ImportAs::Registered(def) => def,
            ImportAs::InPlace(f) => return self.in_place_as_functional(node, f, positional, keywords, &at),
            ImportAs::Decomposed(d, schema) => return self.decomposed(node, d, schema, positional, keywords, &at),
        };
        let (op, def, mut args) = self.bind(def, positional, keywords, &at)?;
        if op == "aten.slice.Tensor" {
            // The exported length of the slice, which the exporter proved.
            let recorded = match node.outputs.first() {
                Some(Argument::Tensor(t)) => self.tensor_type(&t.name).ok(),
                _ => None,
            };
            self.settle_negative_slice_bounds(&mut args, recorded.as_ref());
        }
        let at = At { node: &node_name, op };
        let mutated = def.schema.mutated_arg().and_then(|i| match args.get(i) {
            Some(Arg::Tensor(v)) => Some(*v),
            _ => None,
        });
        if let Some(v) = mutated {
            self.check_inplace_target(v, &at)?;
        }
        let mut out_names = Vec::new();
        for o in &node.outputs {
            match o {
                Argument::Tensor(t) | Argument::OptionalTensor(OptionalTensorArgument::Tensor(t)) => {
                    out_names.push(t.name.clone())
                }
                Argument::Tensors(ts) => out_names.extend(ts.iter().map(|t| t.name.clone())),
                Argument::None(_) | Argument::OptionalTensor(OptionalTensorArgument::None(_)) => {}
                other => {
                    return Err(self.node_err(&at, format!("output of kind `{}` has no SRG form", other.kind_name())))
                }
            }
        }
        let mut types = Vec::with_capacity(out_names.len());
        for n in &out_names {
            types.push(self.tensor_type(n)?);
        }
        let (nid, outs) = self.graph.add_node_typed(op, args, types);
        for (&v, n) in outs.iter().zip(&out_names) {
            self.graph.value_mut(v).name = n.clone();
            self.names.insert(n.clone(), v);
        }
        self.annotate_from(nid.index(), node);
        if let (Some(old), Some(&new)) = (mutated, outs.first()) {
            self.written(old, new);
        }
        self.node_outputs.insert(node_name, outs);
        Ok(())
    }

    /// Nodes from index `first` on were made for the exported `node`: they get its module path
    /// and source line.
    fn annotate_from(&mut self, first: usize, node: &Node) {
        let module = node.metadata.get("nn_module_stack").and_then(|s| module_path(s));
        let source = node.metadata.get("stack_trace").and_then(|s| source_of(s));
        for i in first..self.graph.nodes.len() {
            let ann = &mut self.graph.nodes[i].ann;
            ann.module_path = module.clone();
            ann.source = source.clone();
        }
    }

    /// An in-place op wrote `new` as the next version of `old`: later reads see `new`, and a
    /// write to an input or buffer becomes a mutation of it.
    fn written(&mut self, old: ValueId, new: ValueId) {
        self.latest.insert(old, new);
        if let Some(origin) = self.origin.get(&old).cloned() {
            self.origin.insert(new, origin.clone());
            match self.mutations.iter_mut().find(|(o, _)| *o == origin) {
                Some(slot) => slot.1 = new,
                None => self.mutations.push((origin, new)),
            }
        }
    }

    fn bind_err(&self, at: &At<'_>, source: registry::ArgError) -> Pt2Error {
        Pt2Error::Bind {
            member: self.member.to_string(),
            node: at.node.to_string(),
            op: at.op,
            source: Box::new(source),
        }
    }

    /// The single tensor output name of an exported node.
    fn single_output(&self, node: &Node, at: &At<'_>) -> Result<String, Pt2Error> {
        match node.outputs.as_slice() {
            [Argument::Tensor(t)] => Ok(t.name.clone()),
            _ => Err(self.node_err(at, "expected exactly one tensor output".into())),
        }
    }

    /// `op_(self, …)` whose functional `op` is supported: `op(self, …)`, cast back to `self`'s
    /// dtype if the functional op promotes, written back into `self`.
    fn in_place_as_functional(
        &mut self,
        node: &Node,
        functional: ops::Functional,
        positional: Vec<Arg>,
        keywords: Vec<(String, Arg)>,
        at: &At<'_>,
    ) -> Result<(), Pt2Error> {
        let out_name = self.single_output(node, at)?;
        let (op, args) = match &functional {
            ops::Functional::Registered(def) => {
                let (op, _, args) = self.bind(def, positional, keywords, at)?;
                (op, args)
            }
            ops::Functional::Decomposed(_, schema) => {
                let args = schema.bind(positional, keywords).map_err(|source| self.bind_err(at, source))?;
                (schema.name.as_str(), args)
            }
        };
        let Some(&Arg::Tensor(target)) = args.first() else {
            return Err(self.node_err(at, "the written argument `self` is not a tensor".into()));
        };
        self.check_inplace_target(target, at)?;
        let first = self.graph.nodes.len();
        let made = match functional {
            ops::Functional::Registered(_) => self.graph.add_op(op, args),
            ops::Functional::Decomposed(d, _) => (d.lower)(&mut self.graph, &args)
                .and_then(|outs| outs.first().copied().ok_or_else(|| genie_ir::InferError::new(op, "no output"))),
        };
        let mut value = made.map_err(|e| self.node_err(at, e.to_string()))?;
        let want = self.graph.value(target).ty.dtype;
        if self.graph.value(value).ty.dtype != want {
            let cast = vec![Arg::Tensor(value), Arg::DType(want)];
            value = ops::emit(&mut self.graph, "aten.to.dtype", cast, vec![])
                .map_err(|e| self.node_err(at, e.to_string()))?;
        }
        self.annotate_from(first, node);
        self.graph.value_mut(value).name = out_name.clone();
        self.names.insert(out_name, value);
        self.written(target, value);
        Ok(())
    }

    /// A composite or alias op: lowered into registry ops by its decomposition.
    fn decomposed(
        &mut self,
        node: &Node,
        d: &'static ops::Decomposition,
        schema: &'static registry::Schema,
        positional: Vec<Arg>,
        keywords: Vec<(String, Arg)>,
        at: &At<'_>,
    ) -> Result<(), Pt2Error> {
        let mut out_names = Vec::new();
        for o in &node.outputs {
            match o {
                Argument::Tensor(t) => out_names.push(t.name.clone()),
                Argument::Tensors(ts) => out_names.extend(ts.iter().map(|t| t.name.clone())),
                other => {
                    return Err(self.node_err(at, format!("output of kind `{}` has no SRG form", other.kind_name())))
                }
            }
        }
        let args = schema.bind(positional, keywords).map_err(|source| self.bind_err(at, source))?;
        let first = self.graph.nodes.len();
        let outs = (d.lower)(&mut self.graph, &args).map_err(|e| self.node_err(at, e.to_string()))?;
        if outs.len() != out_names.len() {
            return Err(self.node_err(
                at,
                format!("the export lists {} outputs, the decomposition made {}", out_names.len(), outs.len()),
            ));
        }
        self.annotate_from(first, node);
        for (&v, name) in outs.iter().zip(&out_names) {
            self.graph.value_mut(v).name = name.clone();
            self.names.insert(name.clone(), v);
        }
        let node_name = node.name.clone().unwrap_or_else(|| at.node.to_string());
        self.node_outputs.insert(node_name, outs);
        Ok(())
    }

    /// Bind arguments to the op's schema. Python scalars passed where the schema has a
    /// `Tensor` (`aten.add.Tensor(x, 1.0)`, which PyTorch wraps into a tensor at dispatch) bind
    /// to the op's scalar overload when the registry has one (`aten.add.Scalar`), else become
    /// zero-dim constants (int64, float32 or bool, the dtypes PyTorch gives Python numbers), or,
    /// for a symbolic int, a zero-dim int64 tensor made by `aten.scalar_tensor`.
    fn bind(
        &mut self,
        def: &'static registry::OpDef,
        positional: Vec<Arg>,
        keywords: Vec<(String, Arg)>,
        at: &At<'_>,
    ) -> Result<(&'static str, &'static registry::OpDef, Vec<Arg>), Pt2Error> {
        let op: &'static str = def.schema.name.as_str();
        let err = match def.schema.bind(positional.clone(), keywords.clone()) {
            Ok(args) => return Ok((op, def, args)),
            Err(e) => e,
        };
        let bind_err = |source| Pt2Error::Bind {
            member: self.member.to_string(),
            node: at.node.to_string(),
            op,
            source: Box::new(source),
        };
        let is_scalar = |a: &Arg| matches!(a, Arg::Int(_) | Arg::Float(_) | Arg::Bool(_) | Arg::SymInt(_));
        let scalar_in_tensor_slot = def.schema.args.iter().enumerate().any(|(i, spec)| {
            spec.kind == ArgKind::Tensor
                && (positional.get(i).is_some_and(is_scalar)
                    || keywords.iter().any(|(n, a)| *n == spec.name && is_scalar(a)))
        });
        if !scalar_in_tensor_slot {
            return Err(bind_err(err));
        }
        // Another overload of the same op that takes these arguments as they are.
        let base = op.rsplit_once('.').map_or(op, |(b, _)| b);
        for name in registry::registry().names() {
            if name == op || name.rsplit_once('.').map(|(b, _)| b) != Some(base) {
                continue;
            }
            let Ok(alt) = registry::lookup(name) else { continue };
            if alt.schema.mutated_arg() != def.schema.mutated_arg() {
                continue;
            }
            if let Ok(args) = alt.schema.bind(positional.clone(), keywords.clone()) {
                return Ok((alt.schema.name.as_str(), alt, args));
            }
        }
        // No scalar overload: wrap the numbers as zero-dim constants.
        let mut positional = positional;
        let mut keywords = keywords;
        for (i, spec) in def.schema.args.iter().enumerate() {
            if spec.kind != ArgKind::Tensor {
                continue;
            }
            let slot = match positional.get_mut(i) {
                Some(a) => Some(a),
                None => keywords.iter_mut().find(|(n, _)| *n == spec.name).map(|(_, a)| a),
            };
            if let Some(a) = slot.filter(|a| is_scalar(a)) {
                if let Arg::SymInt(d) = a {
                    // A symbolic int (`x + sym_size(y, 2)`) has no constant form: a zero-dim
                    // int64 tensor made at run time, once the symbol is bound.
                    let make = "aten.scalar_tensor.default";
                    let made = registry::lookup(make)
                        .and_then(|def| {
                            let dtype = vec![("dtype".to_string(), Arg::DType(DType::Int64))];
                            def.schema
                                .bind(vec![Arg::SymInt(d.clone())], dtype)
                                .map_err(|e| genie_ir::InferError::new(make, e.to_string()))
                        })
                        .map_err(|e| self.node_err(at, e.to_string()))?;
                    let (_, outs) = self.graph.add_node_typed(make, made, vec![TensorType::new(DType::Int64, &[])]);
                    self.graph.value_mut(outs[0]).name = format!("{}.{}", at.node, spec.name);
                    *a = Arg::Tensor(outs[0]);
                    continue;
                }
                let (dtype, bytes) = match *a {
                    Arg::Int(v) => (DType::Int64, v.to_le_bytes().to_vec()),
                    Arg::Float(v) => (DType::Float32, (v as f32).to_le_bytes().to_vec()),
                    Arg::Bool(b) => (DType::Bool, vec![b as u8]),
                    _ => continue,
                };
                let name = format!("{}.{}", at.node, spec.name);
                *a = Arg::Tensor(self.graph.add_const(name, TensorType::new(dtype, &[]), bytes));
            }
        }
        def.schema.bind(positional, keywords).map(|args| (op, def, args)).map_err(bind_err)
    }

    /// `x[..., -k:]` over a symbolic dim `n` has length `min(n, k)`, which a polynomial cannot
    /// state; the symbol's range often settles it (transformers' sliding-window caches slice
    /// the last 4095 positions of a cache at most 4094 long). A negative constant bound of
    /// `slice.Tensor` becomes `0` when the dim never exceeds `k`, or `n - k` when it is never
    /// below `k`; otherwise it stays and verification names the node.
    fn settle_negative_slice_bounds(&self, args: &mut [Arg], recorded: Option<&TensorType>) {
        let (Some(Arg::Tensor(x)), Some(Arg::Int(dim))) = (args.first(), args.get(1)) else { return };
        let shape = &self.graph.value(*x).ty.shape;
        let Some(dim_index) = usize::try_from(if *dim < 0 { dim + shape.len() as i64 } else { *dim }).ok() else {
            return;
        };
        let Some(size) = shape.get(dim_index).cloned() else { return };
        if size.is_const() {
            return;
        }
        let symbols = &self.graph.symbols;
        let (lo, hi) = linear_bounds(&size, symbols).unwrap_or((None, None));
        for bound in args.iter_mut().skip(2).take(2) {
            match bound {
                Arg::Int(v) => {
                    let v = *v;
                    if v >= 0 || v == i64::MIN {
                        continue;
                    }
                    let k = -v;
                    if hi.is_some_and(|h| h <= k) {
                        *bound = Arg::Int(0);
                    } else if lo.is_some_and(|l| l >= k) {
                        *bound = Arg::sym_int(size.add(&Dim::constant(v)));
                    }
                }
                // `x[:, -n:]` with n symbolic (the last `seq` positions of a mask over the whole
                // sequence): the bound is `size - n` when n is surely positive and `size - n`
                // surely not negative, by the symbols' ranges or because the export recorded
                // the slice n long (it proved `size >= n`).
                Arg::SymInt(d) => {
                    let negative = matches!(linear_bounds(d, symbols), Some((_, Some(h))) if h < 0);
                    let start = size.add(d);
                    let n = Dim::constant(0).sub(d);
                    let fits = matches!(linear_bounds(&start, symbols), Some((Some(l), _)) if l >= 0)
                        || recorded.and_then(|t| t.shape.get(dim_index)) == Some(&n);
                    if negative && fits {
                        *bound = Arg::sym_int(start);
                    }
                }
                _ => {}
            }
        }
    }

    /// An in-place op must not write through a view whose base is visible elsewhere: the SRG has
    /// no aliasing, so the write would not reach the viewed tensor. A chain of views each of
    /// whose bases is an intermediate read only by the next view (`flatten(x).dropout_()`, with
    /// `x` used nowhere else) is fine: nothing else can see the write.
    fn check_inplace_target(&self, v: ValueId, at: &At<'_>) -> Result<(), Pt2Error> {
        let mut current = v;
        while let Some(p) = self.graph.producer(current) {
            let producer = &self.graph.node(p).op;
            let aliases = registry::lookup(producer).is_ok_and(|d| d.class == OpClass::View)
                || producer.starts_with("aten.alias.")
                || producer.starts_with("aten.detach.");
            if !aliases {
                return Ok(());
            }
            let base = self.graph.node(p).inputs().first().copied();
            let private = base.is_some_and(|b| {
                self.graph.producer(b).is_some()
                    && !self.origin.contains_key(&b)
                    && self.readers.get(&self.graph.value(b).name) == Some(&1)
            });
            if !private {
                return Err(self.node_err(
                    at,
                    format!(
                        "writes in place into `{}`, a view made by {producer} of a tensor read elsewhere; export \
                         the functional graph (`ep.run_decompositions()`) instead",
                        self.graph.value(v).name
                    ),
                ));
            }
            current = base.expect("checked above");
        }
        Ok(())
    }

    /// `operator.getitem(multi_output_node, k)` is the node's k-th output.
    fn getitem(&mut self, node: &Node, at: &At<'_>) -> Result<(), Pt2Error> {
        let (src, k) = match node.inputs.as_slice() {
            [a, b] => (&a.arg, &b.arg),
            _ => return Err(self.node_err(at, "getitem needs two arguments".into())),
        };
        let outs = match src {
            Argument::Tensor(t) => self.node_outputs.get(&t.name).cloned(),
            _ => None,
        }
        .ok_or_else(|| self.node_err(at, "getitem of something that is not a multi-output node".into()))?;
        let Argument::Int(k) = k else {
            return Err(self.node_err(at, "getitem index is not an int".into()));
        };
        let v = usize::try_from(*k)
            .ok()
            .and_then(|k| outs.get(k))
            .copied()
            .ok_or_else(|| self.node_err(at, format!("getitem index {k} out of range")))?;
        for o in &node.outputs {
            if let Argument::Tensor(t) = o {
                self.names.insert(t.name.clone(), v);
            }
        }
        Ok(())
    }

    fn outputs(&mut self) -> Result<(), Pt2Error> {
        let ep = self.ep;
        let mut covered = BTreeSet::new();
        let mut used_names = BTreeSet::new();
        let at = At { node: "output", op: "output" };
        for spec in &ep.graph_module.signature.output_specs {
            let (name, tensor, kind) = match spec {
                OutputSpec::User { arg } => match arg {
                    Argument::Tensor(t) => (t.name.clone(), &t.name, OutputKind::User),
                    Argument::None(_) => continue,
                    other => {
                        return Err(self.sig_err(format!(
                            "user output of kind `{}` (only tensor outputs are supported)",
                            other.kind_name()
                        )))
                    }
                },
                OutputSpec::BufferMutation { arg, buffer_name } => {
                    covered.insert(Origin::Weight(buffer_name.clone()));
                    (arg.name.clone(), &arg.name, OutputKind::BufferMutation { buffer: buffer_name.clone() })
                }
                OutputSpec::ParameterMutation { arg, parameter_name } => {
                    covered.insert(Origin::Weight(parameter_name.clone()));
                    (arg.name.clone(), &arg.name, OutputKind::BufferMutation { buffer: parameter_name.clone() })
                }
                OutputSpec::UserInputMutation { arg, user_input_name } => {
                    covered.insert(Origin::Input(user_input_name.clone()));
                    (user_input_name.clone(), &arg.name, OutputKind::User)
                }
                OutputSpec::Loss(_) => return Err(self.sig_err("loss outputs are not supported".into())),
                OutputSpec::GradientToParameter(_) | OutputSpec::GradientToUserInput(_) => {
                    return Err(self.sig_err("gradient outputs are not supported".into()))
                }
                OutputSpec::Token(_) => return Err(self.sig_err("effect-token outputs are not supported".into())),
            };
            let value = self.value(tensor, &at)?;
            let name = unique_name(&mut used_names, name);
            self.graph.outputs.push(GraphOutput { name, value, kind });
        }
        // In-place writes into buffers and inputs that the signature does not list (the default,
        // non-functional export keeps them implicit): make them explicit outputs.
        for (origin, value) in std::mem::take(&mut self.mutations) {
            if covered.contains(&origin) {
                continue;
            }
            let (name, kind) = match origin {
                Origin::Weight(fqn) => {
                    (self.graph.value(value).name.clone(), OutputKind::BufferMutation { buffer: fqn })
                }
                Origin::Input(input) => (input, OutputKind::User),
            };
            let name = unique_name(&mut used_names, name);
            self.graph.outputs.push(GraphOutput { name, value, kind });
        }
        Ok(())
    }
}

/// `name`, or `name_1`, `name_2`, … when already taken.
fn unique_name(used: &mut BTreeSet<String>, name: String) -> String {
    let mut candidate = name.clone();
    let mut k = 1;
    while used.contains(&candidate) {
        candidate = format!("{name}_{k}");
        k += 1;
    }
    used.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_paths() {
        assert_eq!(
            module_path("L__self__,,__main__.M;L__self__lin,lin,torch.nn.modules.linear.Linear").as_deref(),
            Some("lin")
        );
        assert_eq!(module_path("L__self__,,__main__.M"), None);
        assert_eq!(module_path("_empty_nn_module_stack_from_metadata_hook,_empty_nn_module_stack_from_metadata_hook,_empty_nn_module_stack_from_metadata_hook"), None);
        assert_eq!(module_path("a,L['self'].layers[0]._modules['attn'],x.Attn").as_deref(), Some("layers.0.attn"));
    }

    #[test]
    fn float_arguments_parse_to_the_exact_double() {
        // float32's minimum, as exporters write `torch.finfo(torch.float32).min` (T5's mask
        // fill): a double one ulp off overflows float in libtorch.
        let arg: Argument = serde_json::from_str(r#"{"as_float": -3.4028234663852886e+38}"#).unwrap();
        assert!(matches!(arg, Argument::Float(f) if f.0 == f32::MIN as f64), "{arg:?}");
    }

    #[test]
    fn sources() {
        let t = "File \"/tmp/a.py\", line 12, in forward\n    y = s.lin(x)\n  File \"/v/lib/python3.11/site-packages/torch/nn/modules/linear.py\", line 134, in forward\n    return F.linear(input, self.weight, self.bias)";
        assert_eq!(source_of(t).as_deref(), Some("torch/nn/modules/linear.py:134"));
        assert_eq!(source_of("File \"/tmp/a.py\", line 12, in forward").as_deref(), Some("a.py:12"));
        assert_eq!(source_of("nothing"), None);
    }
}
