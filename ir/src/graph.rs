//! The SRG graph: op nodes over typed values, with annotations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

use crate::annot::{EdgeRef, NodeAnn, Phase, Region, ValueAnn};
use crate::dim::{Dim, SymRange};
use crate::registry::{self, InferError};
use crate::types::{DType, TensorType};
use crate::weights::WeightHash;

/// The largest finite range maximum a symbol takes as its default value where a number is needed
/// for a symbolic size (cost hints, summaries, plans); larger or unbounded ranges take their
/// minimum.
pub const DEFAULT_BIND_CAP: i64 = 4096;

/// A node id, printed `n7`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

/// A value id, printed `%12`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ValueId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl ValueId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One argument of a node, in ATen schema order. Tensor arguments reference values; the rest
/// are attributes. Symbolic integers (`SymInt`) hold dim expressions, so shape arithmetic is
/// part of the attribute rather than a chain of scalar nodes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Arg {
    None,
    Tensor(ValueId),
    Tensors(Vec<ValueId>),
    /// `Tensor?[]`, as in `aten.index.Tensor`.
    OptTensors(Vec<Option<ValueId>>),
    Int(i64),
    /// A symbolic integer that is not a constant.
    SymInt(Dim),
    Ints(Vec<i64>),
    /// An integer list with at least one symbolic element.
    SymInts(Vec<Dim>),
    Float(f64),
    Floats(Vec<f64>),
    Bool(bool),
    Bools(Vec<bool>),
    Str(String),
    DType(DType),
    Device(String),
    Layout(String),
    MemoryFormat(String),
}

impl Arg {
    /// A symbolic int, normalised to `Int` when constant.
    pub fn sym_int(d: Dim) -> Arg {
        match d.as_const() {
            Some(v) => Arg::Int(v),
            None => Arg::SymInt(d),
        }
    }

    /// A symbolic int list, normalised to `Ints` when every element is constant.
    pub fn sym_ints(ds: Vec<Dim>) -> Arg {
        match ds.iter().map(Dim::as_const).collect::<Option<Vec<_>>>() {
            Some(v) => Arg::Ints(v),
            None => Arg::SymInts(ds),
        }
    }

    /// Every value this argument uses.
    pub fn values(&self) -> Vec<ValueId> {
        match self {
            Arg::Tensor(v) => vec![*v],
            Arg::Tensors(vs) => vs.clone(),
            Arg::OptTensors(vs) => vs.iter().flatten().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Rewrite every value this argument uses.
    pub fn map_values(&mut self, mut f: impl FnMut(ValueId) -> ValueId) {
        match self {
            Arg::Tensor(v) => *v = f(*v),
            Arg::Tensors(vs) => vs.iter_mut().for_each(|v| *v = f(*v)),
            Arg::OptTensors(vs) => vs.iter_mut().flatten().for_each(|v| *v = f(*v)),
            _ => {}
        }
    }

    /// Symbols used in symbolic attributes.
    pub fn symbols(&self) -> BTreeSet<String> {
        match self {
            Arg::SymInt(d) => d.symbols(),
            Arg::SymInts(ds) => ds.iter().flat_map(Dim::symbols).collect(),
            _ => BTreeSet::new(),
        }
    }
}

impl fmt::Display for Arg {
    /// Tensors as `%3`, lists in brackets, symbolic ints in parentheses, strings quoted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list<T>(f: &mut fmt::Formatter<'_>, items: &[T], one: impl Fn(&T) -> String) -> fmt::Result {
            let parts: Vec<String> = items.iter().map(one).collect();
            write!(f, "[{}]", parts.join(", "))
        }
        match self {
            Arg::None => f.write_str("None"),
            Arg::Tensor(v) => write!(f, "{v}"),
            Arg::Tensors(vs) => list(f, vs, ToString::to_string),
            Arg::OptTensors(vs) => list(f, vs, |v| v.map_or("None".into(), |v| v.to_string())),
            Arg::Int(v) => write!(f, "{v}"),
            Arg::SymInt(d) => write!(f, "({d})"),
            Arg::Ints(v) => list(f, v, ToString::to_string),
            Arg::SymInts(v) => list(f, v, ToString::to_string),
            Arg::Float(v) => write!(f, "{v:?}"),
            Arg::Floats(v) => list(f, v, |x| format!("{x:?}")),
            Arg::Bool(v) => write!(f, "{v}"),
            Arg::Bools(v) => list(f, v, ToString::to_string),
            Arg::Str(s) => write!(f, "{s:?}"),
            Arg::DType(d) => f.write_str(d.torch_name()),
            Arg::Device(s) | Arg::Layout(s) | Arg::MemoryFormat(s) => f.write_str(s),
        }
    }
}

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueDef {
    /// The i-th graph input.
    Input(u32),
    /// A persistent tensor in the program's weight store.
    Weight(WeightHash),
    /// A small constant stored inline (little-endian raw bytes of the value's type).
    Const(crate::weights::HexBytes),
    /// Output `index` of node `node`.
    Node { node: NodeId, index: u32 },
}

/// A typed value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Value {
    /// A readable name from the source model (`input_ids`, `linear_3`, `transformer.wte.weight`).
    pub name: String,
    pub ty: TensorType,
    pub def: ValueDef,
    #[serde(default, skip_serializing_if = "is_default")]
    pub ann: ValueAnn,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// An op application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// ATen overload name, the registry key (`aten.mm.default`).
    pub op: String,
    pub args: Vec<Arg>,
    pub outputs: Vec<ValueId>,
    #[serde(default, skip_serializing_if = "NodeAnn::is_empty")]
    pub ann: NodeAnn,
}

impl Node {
    /// Every value the node reads, in argument order (duplicates kept).
    pub fn inputs(&self) -> Vec<ValueId> {
        self.args.iter().flat_map(Arg::values).collect()
    }
}

/// What a graph output is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OutputKind {
    /// A value the caller asked for.
    #[default]
    User,
    /// The new contents of a mutated buffer (kept explicit, as in `torch.export`).
    BufferMutation { buffer: String },
}

/// A named graph output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphOutput {
    pub name: String,
    pub value: ValueId,
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: OutputKind,
}

/// One entry graph of a program.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    #[serde(default)]
    pub phase: Phase,
    /// Symbols used by symbolic dims, with their known ranges.
    #[serde(default)]
    pub symbols: BTreeMap<String, SymRange>,
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<GraphOutput>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    /// Edges on the critical path (filled by the cost model).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub critical_edges: BTreeSet<EdgeRef>,
}

/// A graph edge with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge<'g> {
    pub value: ValueId,
    /// The producing node; `None` for inputs, weights and constants.
    pub producer: Option<NodeId>,
    pub consumer: NodeId,
    pub ty: &'g TensorType,
    pub bytes: Dim,
    pub critical: bool,
}

/// A cycle found while ordering the graph.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the graph has a cycle through node {0}")]
pub struct CycleError(pub NodeId);

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            phase: Phase::Unknown,
            symbols: BTreeMap::new(),
            values: Vec::new(),
            nodes: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            regions: Vec::new(),
            critical_edges: BTreeSet::new(),
        }
    }

    fn push_value(&mut self, name: String, ty: TensorType, def: ValueDef) -> ValueId {
        let id = ValueId(self.values.len() as u32);
        self.values.push(Value { name, ty, def, ann: ValueAnn::default() });
        id
    }

    /// Declare a symbol and its range.
    pub fn add_symbol(&mut self, name: impl Into<String>, range: SymRange) {
        self.symbols.insert(name.into(), range);
    }

    /// Append a graph input.
    pub fn add_input(&mut self, name: impl Into<String>, ty: TensorType) -> ValueId {
        let idx = self.inputs.len() as u32;
        let id = self.push_value(name.into(), ty, ValueDef::Input(idx));
        self.inputs.push(id);
        id
    }

    /// Add a value backed by a weight in the program's store.
    pub fn add_weight(&mut self, name: impl Into<String>, ty: TensorType, hash: WeightHash) -> ValueId {
        self.push_value(name.into(), ty, ValueDef::Weight(hash))
    }

    /// Add a small inline constant.
    pub fn add_const(&mut self, name: impl Into<String>, ty: TensorType, bytes: Vec<u8>) -> ValueId {
        self.push_value(name.into(), ty, ValueDef::Const(crate::weights::HexBytes(bytes)))
    }

    /// Append a node whose output types are given. Output names default to `<op-stem>_<n>`.
    pub fn add_node_typed(
        &mut self,
        op: &str,
        args: Vec<Arg>,
        output_types: Vec<TensorType>,
    ) -> (NodeId, Vec<ValueId>) {
        let node = NodeId(self.nodes.len() as u32);
        let stem = op.split('.').nth(1).unwrap_or(op).to_string();
        let outputs: Vec<ValueId> = output_types
            .into_iter()
            .enumerate()
            .map(|(i, ty)| {
                let name = format!("{stem}_{}", self.values.len());
                self.push_value(name, ty, ValueDef::Node { node, index: i as u32 })
            })
            .collect();
        self.nodes.push(Node { op: op.to_string(), args, outputs: outputs.clone(), ann: NodeAnn::default() });
        (node, outputs)
    }

    /// Append a node, inferring its output types from the op registry.
    pub fn add_node(&mut self, op: &str, args: Vec<Arg>) -> Result<(NodeId, Vec<ValueId>), InferError> {
        let types = registry::infer(op, &args, &|v| self.values.get(v.index()).map(|x| &x.ty))?;
        Ok(self.add_node_typed(op, args, types))
    }

    /// Like [`Graph::add_node`] for single-output ops.
    pub fn add_op(&mut self, op: &str, args: Vec<Arg>) -> Result<ValueId, InferError> {
        let (_, outs) = self.add_node(op, args)?;
        outs.first().copied().ok_or_else(|| InferError::new(op, "op has no outputs"))
    }

    /// Append a user output.
    pub fn add_output(&mut self, name: impl Into<String>, value: ValueId) {
        self.outputs.push(GraphOutput { name: name.into(), value, kind: OutputKind::User });
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }

    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.index()]
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id.index()]
    }

    /// Node ids in storage order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len() as u32).map(NodeId)
    }

    /// The node producing a value, if any.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        match self.values.get(v.index())?.def {
            ValueDef::Node { node, .. } => Some(node),
            _ => None,
        }
    }

    /// For every value, the nodes that use it (in node order, duplicates removed).
    pub fn users(&self) -> Vec<Vec<NodeId>> {
        let mut users = vec![Vec::new(); self.values.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.inputs() {
                if let Some(u) = users.get_mut(v.index()) {
                    if u.last() != Some(&NodeId(i as u32)) {
                        u.push(NodeId(i as u32));
                    }
                }
            }
        }
        users
    }

    /// The node dependency graph (edge producer → consumer) as petgraph, indices equal to node ids.
    fn dependency_graph(&self) -> DiGraph<(), ValueId> {
        let mut g = DiGraph::with_capacity(self.nodes.len(), self.nodes.len() * 2);
        for _ in &self.nodes {
            g.add_node(());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            for v in node.inputs() {
                if let Some(p) = self.producer(v) {
                    if p.index() < self.nodes.len() {
                        g.add_edge(NodeIndex::new(p.index()), NodeIndex::new(i), v);
                    }
                }
            }
        }
        g
    }

    /// A topological order of the nodes, stable with respect to storage order.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, CycleError> {
        let g = self.dependency_graph();
        // Kahn's algorithm with a min-heap keeps the order deterministic and close to storage order.
        let mut indegree: Vec<usize> = (0..g.node_count())
            .map(|i| g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming).count())
            .collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<usize>> =
            (0..indegree.len()).filter(|&i| indegree[i] == 0).map(std::cmp::Reverse).collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(std::cmp::Reverse(i)) = ready.pop() {
            order.push(NodeId(i as u32));
            for n in g.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing) {
                indegree[n.index()] -= 1;
                if indegree[n.index()] == 0 {
                    ready.push(std::cmp::Reverse(n.index()));
                }
            }
        }
        if order.len() != self.nodes.len() {
            let stuck = indegree.iter().position(|&d| d > 0).unwrap_or(0);
            return Err(CycleError(NodeId(stuck as u32)));
        }
        Ok(order)
    }

    /// True when `to` is reachable from `from` along data edges.
    pub fn reaches(&self, from: NodeId, to: NodeId) -> bool {
        let g = self.dependency_graph();
        petgraph::algo::has_path_connecting(&g, NodeIndex::new(from.index()), NodeIndex::new(to.index()), None)
    }

    /// Every edge (one per distinct value use by a node), in consumer order.
    pub fn edges(&self) -> Vec<Edge<'_>> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let consumer = NodeId(i as u32);
            let mut seen = BTreeSet::new();
            for v in node.inputs() {
                if !seen.insert(v) {
                    continue;
                }
                let Some(value) = self.values.get(v.index()) else { continue };
                out.push(Edge {
                    value: v,
                    producer: self.producer(v),
                    consumer,
                    ty: &value.ty,
                    bytes: value.ty.bytes(),
                    critical: self.critical_edges.contains(&EdgeRef { value: v, consumer }),
                });
            }
        }
        out
    }

    /// Every symbol used by any value type or attribute.
    pub fn used_symbols(&self) -> BTreeSet<String> {
        let mut out: BTreeSet<String> =
            self.values.iter().flat_map(|v| v.ty.shape.iter().flat_map(Dim::symbols)).collect();
        for n in &self.nodes {
            for a in &n.args {
                out.extend(a.symbols());
            }
        }
        out
    }

    /// A value for every symbol: the given one, else the range's maximum when finite and at
    /// most [`DEFAULT_BIND_CAP`], else the range's minimum (at least 1). Used wherever a number
    /// is needed for a symbolic size (cost hints, byte totals, plans).
    pub fn bind_symbols(&self, given: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
        self.symbols
            .iter()
            .map(|(name, range)| {
                let v = given.get(name).copied().unwrap_or(match range.max {
                    Some(m) if m <= DEFAULT_BIND_CAP => m,
                    _ => range.min.max(1),
                });
                (name.clone(), v)
            })
            .collect()
    }

    /// Count of nodes per op name.
    pub fn op_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for n in &self.nodes {
            *counts.entry(n.op.clone()).or_insert(0) += 1;
        }
        counts
    }
}
