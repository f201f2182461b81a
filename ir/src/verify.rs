//! The verifier: structural, type and annotation consistency. Runs after every pass.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;

use crate::annot::{CostHints, RegionId, Residency};
use crate::graph::{Graph, NodeId, ValueDef, ValueId};
use crate::program::Program;
use crate::registry::{self, InferError};
use crate::types::TensorType;

/// One thing wrong with a graph. Every variant names where it is.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    /// The data edges form a cycle.
    #[error("graph `{graph}`: cycle through node {node} ({op})")]
    Cycle { graph: String, node: NodeId, op: String },
    /// A node or output uses a value id that does not exist.
    #[error("graph `{graph}`: {place} uses undefined value {value}")]
    UndefinedValue { graph: String, place: String, value: ValueId },
    /// A node's op is not in the registry.
    #[error("graph `{graph}`: node {node} has unknown op `{op}`")]
    UnknownOp { graph: String, node: NodeId, op: String },
    /// A node's arguments do not fit its op's schema or each other.
    #[error("graph `{graph}`: node {node}: {source}")]
    BadArgs {
        graph: String,
        node: NodeId,
        #[source]
        source: Box<InferError>,
    },
    /// A value's recorded type differs from what its op infers.
    #[error(
        "graph `{graph}`: node {node} ({op}) output {value} is recorded as {recorded} but the op gives {inferred}"
    )]
    FactMismatch {
        graph: String,
        node: NodeId,
        op: String,
        value: ValueId,
        recorded: Box<TensorType>,
        inferred: Box<TensorType>,
    },
    /// A node has a different number of outputs than its op produces.
    #[error("graph `{graph}`: node {node} ({op}) has {recorded} outputs, the op gives {inferred}")]
    OutputCount { graph: String, node: NodeId, op: String, recorded: usize, inferred: usize },
    /// A value's definition disagrees with the node or input list that should define it.
    #[error("graph `{graph}`: value {value} `{name}`: {reason}")]
    BadDefinition { graph: String, value: ValueId, name: String, reason: String },
    /// A shape uses a symbol the graph does not declare.
    #[error("graph `{graph}`: value {value} uses undeclared symbol `{symbol}`")]
    UndeclaredSymbol { graph: String, value: ValueId, symbol: String },
    /// Two inputs or two outputs share a name.
    #[error("graph `{graph}`: duplicate {what} name `{name}`")]
    DuplicateName { graph: String, what: &'static str, name: String },
    /// A weight value refers to a hash missing from the store, or its type differs from the store's.
    #[error("graph `{graph}`: value {value} `{name}`: {reason}")]
    BadWeight { graph: String, value: ValueId, name: String, reason: String },
    /// Annotations contradict the graph (residency of a non-weight, a dangling region, ...).
    #[error("graph `{graph}`: {place}: {reason}")]
    BadAnnotation { graph: String, place: String, reason: String },
    /// A state binding names an entry, input or output that does not exist, or types differ.
    #[error("state binding {from} -> {to}: {reason}")]
    BadStateBinding { from: String, to: String, reason: String },
}

/// Verify a whole program: each entry against the shared weight store, and the state bindings.
pub fn verify_program(p: &Program) -> Result<(), VerifyError> {
    // Entries verify independently (the pass manager verifies after every pass, so this is on
    // the compile path); the error reported is the first in entry order, as if sequential.
    let checked: Vec<Result<(), VerifyError>> =
        p.entries.par_iter().map(|g| verify_graph(g).and_then(|()| verify_weights(p, g))).collect();
    checked.into_iter().collect::<Result<(), VerifyError>>()?;
    verify_bindings(p)
}

/// Verify one graph on its own.
pub fn verify_graph(g: &Graph) -> Result<(), VerifyError> {
    let graph = || g.name.clone();
    let nvalues = g.values.len();
    let defined = |v: ValueId| v.index() < nvalues;

    // Definitions: inputs, node outputs and value.def agree.
    for (i, &v) in g.inputs.iter().enumerate() {
        if !defined(v) {
            return Err(VerifyError::UndefinedValue { graph: graph(), place: format!("input #{i}"), value: v });
        }
        if g.value(v).def != ValueDef::Input(i as u32) {
            return Err(bad_def(g, v, format!("listed as input #{i} but defined as {:?}", g.value(v).def)));
        }
    }
    for (ni, node) in g.nodes.iter().enumerate() {
        for (k, &v) in node.outputs.iter().enumerate() {
            if !defined(v) {
                return Err(VerifyError::UndefinedValue {
                    graph: graph(),
                    place: format!("node n{ni} output #{k}"),
                    value: v,
                });
            }
            let expect = ValueDef::Node { node: NodeId(ni as u32), index: k as u32 };
            if g.value(v).def != expect {
                return Err(bad_def(g, v, format!("is output #{k} of n{ni} but defined as {:?}", g.value(v).def)));
            }
        }
        for v in node.inputs() {
            if !defined(v) {
                return Err(VerifyError::UndefinedValue {
                    graph: graph(),
                    place: format!("node n{ni} ({})", node.op),
                    value: v,
                });
            }
        }
    }
    for (vi, val) in g.values.iter().enumerate() {
        let v = ValueId(vi as u32);
        match &val.def {
            ValueDef::Input(i) if g.inputs.get(*i as usize) != Some(&v) => {
                return Err(bad_def(g, v, format!("claims to be input #{i} but is not listed there")));
            }
            ValueDef::Node { node, index } => {
                let ok = g.nodes.get(node.index()).and_then(|n| n.outputs.get(*index as usize)) == Some(&v);
                if !ok {
                    return Err(bad_def(
                        g,
                        v,
                        format!("claims to be output #{index} of {node}, which does not list it"),
                    ));
                }
            }
            ValueDef::Const(bytes) => {
                let want = val.ty.bytes().as_const();
                if want != Some(bytes.0.len() as i64) {
                    return Err(bad_def(
                        g,
                        v,
                        format!("constant has {} bytes, its type {} needs {want:?}", bytes.0.len(), val.ty),
                    ));
                }
            }
            _ => {}
        }
        for sym in val.ty.shape.iter().flat_map(|d| d.symbols()) {
            if !g.symbols.contains_key(&sym) {
                return Err(VerifyError::UndeclaredSymbol { graph: graph(), value: v, symbol: sym });
            }
        }
    }
    for (i, out) in g.outputs.iter().enumerate() {
        if !defined(out.value) {
            return Err(VerifyError::UndefinedValue {
                graph: graph(),
                place: format!("output #{i} `{}`", out.name),
                value: out.value,
            });
        }
    }
    unique_names(g, "input", g.inputs.iter().map(|v| g.value(*v).name.as_str()))?;
    unique_names(g, "output", g.outputs.iter().map(|o| o.name.as_str()))?;

    // Acyclic.
    if let Err(cycle) = g.topo_order() {
        return Err(VerifyError::Cycle { graph: graph(), node: cycle.0, op: g.node(cycle.0).op.clone() });
    }

    // Facts agree with the registry.
    let types = |v: ValueId| g.values.get(v.index()).map(|x| &x.ty);
    for (ni, node) in g.nodes.iter().enumerate() {
        let id = NodeId(ni as u32);
        let inferred = match registry::infer(&node.op, &node.args, &types) {
            Ok(t) => t,
            Err(InferError::UnknownOp(op)) => return Err(VerifyError::UnknownOp { graph: graph(), node: id, op }),
            Err(e) => return Err(VerifyError::BadArgs { graph: graph(), node: id, source: Box::new(e) }),
        };
        if inferred.len() != node.outputs.len() {
            return Err(VerifyError::OutputCount {
                graph: graph(),
                node: id,
                op: node.op.clone(),
                recorded: node.outputs.len(),
                inferred: inferred.len(),
            });
        }
        for (v, want) in node.outputs.iter().zip(inferred) {
            let have = &g.value(*v).ty;
            if *have != want {
                return Err(VerifyError::FactMismatch {
                    graph: graph(),
                    node: id,
                    op: node.op.clone(),
                    value: *v,
                    recorded: Box::new(have.clone()),
                    inferred: Box::new(want),
                });
            }
        }
        for sym in node.args.iter().flat_map(|a| a.symbols()) {
            if !g.symbols.contains_key(&sym) {
                return Err(VerifyError::BadAnnotation {
                    graph: graph(),
                    place: format!("node {id}"),
                    reason: format!("argument uses undeclared symbol `{sym}`"),
                });
            }
        }
    }
    verify_annotations(g)
}

fn bad_def(g: &Graph, v: ValueId, reason: String) -> VerifyError {
    VerifyError::BadDefinition {
        graph: g.name.clone(),
        value: v,
        name: g.values.get(v.index()).map(|x| x.name.clone()).unwrap_or_default(),
        reason,
    }
}

fn unique_names<'a>(g: &Graph, what: &'static str, names: impl Iterator<Item = &'a str>) -> Result<(), VerifyError> {
    let mut seen = BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(VerifyError::DuplicateName { graph: g.name.clone(), what, name: n.to_string() });
        }
    }
    Ok(())
}

fn verify_annotations(g: &Graph) -> Result<(), VerifyError> {
    let bad = |place: String, reason: String| VerifyError::BadAnnotation { graph: g.name.clone(), place, reason };
    for (vi, val) in g.values.iter().enumerate() {
        let is_weight = matches!(val.def, ValueDef::Weight(_) | ValueDef::Const(_));
        match val.ann.residency {
            Some(Residency::PersistentWeight) if !is_weight => {
                return Err(bad(
                    format!("value %{vi} `{}`", val.name),
                    "persistent_weight on a value that is not a weight or constant".into(),
                ));
            }
            Some(Residency::StatefulKvCache) if is_weight => {
                return Err(bad(format!("value %{vi} `{}`", val.name), "stateful_kv_cache on a weight".into()));
            }
            Some(Residency::EphemeralActivation) if is_weight => {
                return Err(bad(format!("value %{vi} `{}`", val.name), "ephemeral_activation on a weight".into()));
            }
            _ => {}
        }
    }
    let mut membership: BTreeMap<NodeId, BTreeSet<RegionId>> = BTreeMap::new();
    for (ri, region) in g.regions.iter().enumerate() {
        let rid = RegionId(ri as u32);
        if region.nodes.is_empty() {
            return Err(bad(format!("region {rid} ({})", region.tag), "covers no nodes".into()));
        }
        for n in &region.nodes {
            if n.index() >= g.nodes.len() {
                return Err(bad(format!("region {rid} ({})", region.tag), format!("covers missing node {n}")));
            }
            membership.entry(*n).or_default().insert(rid);
        }
        for v in region.entries.iter().chain(&region.exits) {
            if v.index() >= g.values.len() {
                return Err(bad(
                    format!("region {rid} ({})", region.tag),
                    format!("boundary value {v} does not exist"),
                ));
            }
        }
    }
    for (ni, node) in g.nodes.iter().enumerate() {
        let id = NodeId(ni as u32);
        let listed: BTreeSet<RegionId> = node.ann.regions.iter().copied().collect();
        let actual = membership.remove(&id).unwrap_or_default();
        if listed != actual {
            return Err(bad(format!("node {id}"), format!("lists regions {listed:?} but is covered by {actual:?}")));
        }
        if let Some(cost) = &node.ann.cost {
            let want = CostHints::intensity_of(cost.flops, cost.bytes_read, cost.bytes_written);
            if !cost.intensity.is_finite() || (cost.intensity - want).abs() > 1e-9 * want.max(1.0) {
                return Err(bad(
                    format!("node {id}"),
                    format!("intensity {} but flops/bytes give {want}", cost.intensity),
                ));
            }
        }
    }
    for e in &g.critical_edges {
        let ok = e.consumer.index() < g.nodes.len() && g.node(e.consumer).inputs().contains(&e.value);
        if !ok {
            return Err(bad(
                format!("critical edge {} -> {}", e.value, e.consumer),
                "is not an edge of the graph".into(),
            ));
        }
    }
    Ok(())
}

fn verify_weights(p: &Program, g: &Graph) -> Result<(), VerifyError> {
    for (vi, val) in g.values.iter().enumerate() {
        if let ValueDef::Weight(h) = &val.def {
            let bad = |reason: String| VerifyError::BadWeight {
                graph: g.name.clone(),
                value: ValueId(vi as u32),
                name: val.name.clone(),
                reason,
            };
            let Some(entry) = p.weights.get(h) else {
                return Err(bad(format!("weight {} is not in the store", h.short())));
            };
            if entry.ty != val.ty {
                return Err(bad(format!("typed {} but the stored weight is {}", val.ty, entry.ty)));
            }
            let want = entry.ty.bytes().as_const();
            if want != Some(entry.byte_len() as i64) {
                return Err(bad(format!("stored weight has {} bytes, its type needs {want:?}", entry.byte_len())));
            }
        }
    }
    Ok(())
}

fn verify_bindings(p: &Program) -> Result<(), VerifyError> {
    for b in &p.state_bindings {
        let from = format!("{}.{}", b.from.entry, b.from.name);
        let to = format!("{}.{}", b.to.entry, b.to.name);
        let bad = |reason: String| VerifyError::BadStateBinding { from: from.clone(), to: to.clone(), reason };
        let src = p.entry(&b.from.entry).ok_or_else(|| bad(format!("no entry `{}`", b.from.entry)))?;
        let dst = p.entry(&b.to.entry).ok_or_else(|| bad(format!("no entry `{}`", b.to.entry)))?;
        let out = src
            .outputs
            .iter()
            .find(|o| o.name == b.from.name)
            .ok_or_else(|| bad(format!("`{}` has no output `{}`", b.from.entry, b.from.name)))?;
        let input = dst
            .inputs
            .iter()
            .find(|v| dst.value(**v).name == b.to.name)
            .ok_or_else(|| bad(format!("`{}` has no input `{}`", b.to.entry, b.to.name)))?;
        let (a, c) = (&src.value(out.value).ty, &dst.value(*input).ty);
        if a.dtype != c.dtype || a.rank() != c.rank() {
            return Err(bad(format!("output is {a} but input is {c}")));
        }
    }
    Ok(())
}
