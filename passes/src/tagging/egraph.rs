//! The SRG as an e-graph: one e-class per value, e-nodes named by ATen op, children the tensor
//! arguments. Leaves name where a value comes from (`in:3`, `w:17`, `c:5`, `none`).

use std::collections::HashMap;

use egg::{Analysis, DidMerge, EGraph, Id, Language, SymbolLang};
use genie_ir::registry::{self, ArgKind};
use genie_ir::{Arg, Graph, ValueDef, ValueId};

/// Per-class facts the rules and conditions read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Holds a weight (parameter, buffer or constant tensor from the store).
    pub weight: bool,
    /// Holds a graph input.
    pub input: bool,
    /// Holds an inline constant.
    pub constant: bool,
    /// Holds a dense layer result (`aten.linear.default` after canonicalisation).
    pub dense: bool,
    /// For element-wise chains: the dense class the chain starts from (GELU written out as
    /// `0.5 * x * (1 + tanh(...))` still has one source).
    pub act_root: Option<Id>,
    /// Attention scores: the (query, key) classes of a product of two activations
    /// (`matmul`/`bmm`, or `baddbmm` adding a bias such as ALiBi), or of an element-wise
    /// function of one (scaling, additive bias, masking, casts), however it is written.
    pub scores: Option<(Id, Id)>,
}

/// The analysis computing [`Facts`].
#[derive(Default)]
pub struct SrgAnalysis;

fn leaf_kind(op: &str) -> Option<&str> {
    op.split_once(':').map(|(k, _)| k)
}

impl Analysis<SymbolLang> for SrgAnalysis {
    type Data = Facts;

    fn make(egraph: &mut EGraph<SymbolLang, Self>, enode: &SymbolLang, _id: Id) -> Facts {
        let op = enode.op.as_str();
        let mut f = Facts::default();
        match leaf_kind(op) {
            Some("w") => f.weight = true,
            Some("in") => f.input = true,
            Some("c") => f.constant = true,
            _ => {}
        }
        let activation = |egraph: &EGraph<SymbolLang, Self>, c: Id| {
            let d = &egraph[egraph.find(c)].data;
            !(d.weight || d.constant)
        };
        let children = enode.children();
        f.scores = match (op, children) {
            ("aten.matmul.default" | "aten.bmm.default" | "aten.mm.default", [a, b])
            | ("aten.baddbmm.default", [_, a, b])
                if activation(egraph, *a) && activation(egraph, *b) =>
            {
                Some((egraph.find(*a), egraph.find(*b)))
            }
            // Element-wise arithmetic on the scores, or a column joined to them (an attention
            // sink's logit, dropped again after the softmax).
            _ if registry::facts(op).elementwise || op == "aten.cat.default" => {
                let mut found = children.iter().filter_map(|&c| egraph[egraph.find(c)].data.scores);
                let first = found.next();
                // Two different products combined element-wise are not one attention's scores.
                first.filter(|s| found.all(|other| other == *s))
            }
            _ => None,
        };
        if op == "aten.linear.default" {
            f.dense = true;
        } else if registry::facts(op).elementwise {
            let mut root: Option<Id> = None;
            let mut ok = !enode.children().is_empty();
            for &c in enode.children() {
                let c = egraph.find(c);
                let data = &egraph[c].data;
                if data.constant || data.weight {
                    continue;
                }
                let src = if data.dense { Some(c) } else { data.act_root };
                match (src, root) {
                    (None, _) => ok = false,
                    (Some(s), None) => root = Some(s),
                    (Some(s), Some(r)) if s != r => ok = false,
                    _ => {}
                }
            }
            if ok {
                f.act_root = root;
            }
        }
        f
    }

    fn merge(&mut self, to: &mut Facts, from: Facts) -> DidMerge {
        let before = to.clone();
        to.weight |= from.weight;
        to.input |= from.input;
        to.constant |= from.constant;
        to.dense |= from.dense;
        if to.act_root.is_none() {
            to.act_root = from.act_root;
        }
        if to.scores.is_none() {
            to.scores = from.scores;
        }
        DidMerge(*to != before, true)
    }
}

/// An e-graph built from one SRG graph, with the map back from classes to values.
pub struct SrgEGraph {
    pub egraph: EGraph<SymbolLang, SrgAnalysis>,
    /// The class each value was added as (not canonical: call `find`).
    pub class_of: Vec<Id>,
}

impl SrgEGraph {
    /// Build the e-graph of `g`, in topological order.
    pub fn build(g: &Graph) -> SrgEGraph {
        let mut egraph = EGraph::new(SrgAnalysis);
        let mut class_of: Vec<Option<Id>> = vec![None; g.values.len()];
        let none = egraph.add(SymbolLang::leaf("none"));
        for (vi, v) in g.values.iter().enumerate() {
            let leaf = match &v.def {
                ValueDef::Input(i) => format!("in:{i}"),
                ValueDef::Weight(_) => format!("w:{vi}"),
                ValueDef::Const(_) => format!("c:{vi}"),
                ValueDef::Node { .. } => continue,
            };
            class_of[vi] = Some(egraph.add(SymbolLang::leaf(leaf)));
        }
        let order = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
        for n in order {
            let node = g.node(n);
            let kinds: Vec<Option<&ArgKind>> = match registry::registry().get(&node.op) {
                Some(def) => def.schema.args.iter().map(|a| Some(&a.kind)).collect(),
                None => vec![None; node.args.len()],
            };
            let mut children = Vec::new();
            for (a, kind) in node.args.iter().zip(kinds.iter().chain(std::iter::repeat(&None))) {
                let tensor_slot = matches!(kind, Some(ArgKind::Tensor | ArgKind::TensorList | ArgKind::OptTensorList));
                match a {
                    Arg::Tensor(v) => children.push(class_of[v.index()].unwrap_or(none)),
                    Arg::Tensors(vs) => children.extend(vs.iter().map(|v| class_of[v.index()].unwrap_or(none))),
                    Arg::OptTensors(vs) => {
                        children.extend(vs.iter().map(|v| v.and_then(|v| class_of[v.index()]).unwrap_or(none)))
                    }
                    Arg::None if tensor_slot => children.push(none),
                    _ => {}
                }
            }
            let multi = node.outputs.len() > 1;
            for (k, out) in node.outputs.iter().enumerate() {
                let op = if multi { format!("{}#{k}", node.op) } else { node.op.clone() };
                class_of[out.index()] = Some(egraph.add(SymbolLang::new(op, children.clone())));
            }
        }
        egraph.rebuild();
        SrgEGraph { egraph, class_of: class_of.into_iter().map(|c| c.unwrap_or(none)).collect() }
    }

    /// The canonical class of a value.
    pub fn class(&self, v: ValueId) -> Id {
        self.egraph.find(self.class_of[v.index()])
    }

    /// Values per canonical class.
    pub fn values_by_class(&self) -> HashMap<Id, Vec<ValueId>> {
        let mut map: HashMap<Id, Vec<ValueId>> = HashMap::new();
        for (vi, &c) in self.class_of.iter().enumerate() {
            map.entry(self.egraph.find(c)).or_default().push(ValueId(vi as u32));
        }
        map
    }
}
