//! `mark-batching`: selective batching, derived from the graph. In every entry that reads state
//! (a decode step), each node is marked with how it runs when the calls of several sessions
//! execute as one batched step (`NodeAnn::batching`):
//! - [`Batching::Rows`]: once, on the calls' rows stacked along dim 0: the op is row-wise over
//!   the batch (dense layers, norms, activations, embeddings, residual adds, the LM head);
//! - [`Batching::PerCall`]: once per call, with that call's tensors and symbol values: it reads
//!   a session's state or a value shaped by the session's length (attention over the KV cache,
//!   the cache update, masks);
//! - [`Batching::Shared`]: once for all calls: it reads only weights, constants and shared
//!   values and has no symbolic argument.
//!
//! Nothing here knows an architecture. Values are *shared* (weights, constants, what only they
//! make) or *per call* (inputs, state, what they reach). A node runs on rows when every per-call
//! tensor it reads and every output is static with 1 row (dim 0 = 1), its registry facts say
//! each output row depends only on the same rows of its inputs (element-wise with the per-call
//! operands at the output's rank, a layout op, a table lookup into a shared table, a
//! contraction, or `per_sample` with no argument naming dim 0), and shape inference with the
//! row count made a symbol gives the outputs with that symbol as their rows. State inputs and
//! everything shaped by the session's length are symbolic, so they run per call; a per-call
//! value that is static with one row is stacked again where a row-wise op reads it (after
//! attention), so only what touches state runs per call.

use std::collections::{BTreeMap, HashSet};

use genie_ir::registry::{self, Layout, Reorder};
use genie_ir::{Arg, Batching, Dim, Graph, Node, Program, TensorType, ValueDef, ValueId};

use crate::manager::{Pass, PassError};

/// Marks how each node of a decode entry runs in a batched step.
pub struct MarkBatching;

/// The symbol the row count becomes in the shape check.
const ROWS: &str = "__rows";

impl Pass for MarkBatching {
    fn name(&self) -> &'static str {
        "mark-batching"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let mut summary = Vec::new();
        for g in 0..program.entries.len() {
            let name = program.entries[g].name.clone();
            let state: HashSet<ValueId> = {
                let graph = &program.entries[g];
                program
                    .state_bindings
                    .iter()
                    .filter(|b| b.to.entry == name)
                    .filter_map(|b| graph.inputs.iter().copied().find(|&v| graph.value(v).name == b.to.name))
                    .collect()
            };
            let graph = &mut program.entries[g];
            if state.is_empty() {
                graph.nodes.iter_mut().for_each(|n| n.ann.batching = None);
                continue;
            }
            let counts = mark(graph);
            summary.push(format!("{name}: {} on rows, {} per call, {} shared", counts[0], counts[1], counts[2]));
        }
        Ok(if summary.is_empty() { "no entry reads state".into() } else { summary.join("; ") })
    }
}

/// Mark every node of `graph`; returns how many run on rows, per call, shared.
fn mark(graph: &mut Graph) -> [usize; 3] {
    let order = match graph.topo_order() {
        Ok(order) => order,
        // The verifier refuses cycles before any pass runs; leave every node per call.
        Err(_) => return [0, graph.nodes.len(), 0],
    };
    let mut shared: HashSet<ValueId> = HashSet::new();
    for (i, v) in graph.values.iter().enumerate() {
        if matches!(v.def, ValueDef::Weight(_) | ValueDef::Const(_)) {
            shared.insert(ValueId(i as u32));
        }
    }
    let mut counts = [0; 3];
    for id in order {
        let node = graph.node(id);
        let mode = decide(graph, node, &shared);
        if mode == Batching::Shared {
            shared.extend(node.outputs.iter().copied());
        }
        counts[match mode {
            Batching::Rows { .. } => 0,
            Batching::PerCall => 1,
            Batching::Shared => 2,
        }] += 1;
        graph.node_mut(id).ann.batching = Some(mode);
    }
    counts
}

fn decide(graph: &Graph, node: &Node, shared: &HashSet<ValueId>) -> Batching {
    let symbolic = node.args.iter().any(|a| matches!(a, Arg::SymInt(_) | Arg::SymInts(_)))
        || node.outputs.iter().any(|&v| graph.value(v).ty.static_shape().is_none());
    let per_call: Vec<ValueId> = node.inputs().into_iter().filter(|v| !shared.contains(v)).collect();
    if per_call.is_empty() {
        return if symbolic { Batching::PerCall } else { Batching::Shared };
    }
    if symbolic {
        return Batching::PerCall;
    }
    rows(graph, node, &per_call).unwrap_or(Batching::PerCall)
}

/// One row: static, at least 1-D, 1 at dim 0.
fn one_row(ty: &TensorType) -> bool {
    ty.static_shape().is_some_and(|s| s.first() == Some(&1))
}

/// The type with its rows made the [`ROWS`] symbol.
fn with_rows(ty: &TensorType) -> TensorType {
    let mut t = ty.clone();
    t.shape[0] = Dim::symbol(ROWS);
    t
}

/// `Rows` when the op may run once on stacked rows, else `None`.
fn rows(graph: &Graph, node: &Node, per_call: &[ValueId]) -> Option<Batching> {
    let def = registry::lookup(&node.op).ok()?;
    let facts = def.facts;
    if !(facts.elementwise
        || facts.layout.is_some()
        || facts.lookup.is_some()
        || facts.contraction.is_some()
        || facts.per_sample)
    {
        return None;
    }
    let ty = |v: ValueId| &graph.value(v).ty;
    let outputs: Vec<&TensorType> = node.outputs.iter().map(|&v| ty(v)).collect();
    if outputs.is_empty() || !outputs.iter().all(|t| one_row(t)) || !per_call.iter().all(|&v| one_row(ty(v))) {
        return None;
    }
    let out_rank = outputs[0].rank();
    if facts.elementwise && per_call.iter().any(|&v| ty(v).rank() != out_rank) {
        return None;
    }
    if let Some((table, _)) = facts.lookup {
        if matches!(node.args.get(table), Some(Arg::Tensor(t)) if per_call.contains(t)) {
            return None;
        }
    }
    let in_rank = node.inputs().first().map_or(out_rank, |&v| ty(v).rank());
    let names_dim0 = |d: i64| d == 0 || d == -(in_rank as i64) || d == -(out_rank as i64);
    let permutation = match facts.layout {
        Some(Layout::Reorder(Reorder::Permutation { dims })) => Some(dims),
        _ => None,
    };
    let mut resize = None;
    for (index, (spec, arg)) in def.schema.args.iter().zip(&node.args).enumerate() {
        let dims: Option<Vec<i64>> = match arg {
            Arg::Int(d) => Some(vec![*d]),
            Arg::Ints(ds) => Some(ds.clone()),
            Arg::None => Some(Vec::new()),
            _ => None,
        };
        match spec.name.as_str() {
            _ if Some(index) == permutation => {
                let first = dims?.first().copied()?;
                if !names_dim0(first) {
                    return None;
                }
            }
            // A dim argument left out (or empty) means every dim, dim 0 among them.
            "dim" | "dims" | "dim0" | "dim1" | "start_dim" | "end_dim" => {
                let dims = dims?;
                if dims.is_empty() || dims.iter().any(|&d| names_dim0(d)) {
                    return None;
                }
            }
            "normalized_shape" if dims?.len() >= in_rank => return None,
            "size" | "shape" if matches!(facts.layout, Some(Layout::Reshape | Layout::Broadcast)) => {
                let Arg::Ints(sizes) = arg else { return None };
                if !matches!(sizes.first(), Some(1 | -1)) {
                    return None;
                }
                resize = Some(index as u32);
            }
            _ => {}
        }
    }
    // The shape check: with the row count a symbol, the outputs must have exactly those rows.
    let mut args = node.args.clone();
    if let Some(i) = resize {
        if let Arg::Ints(sizes) = &args[i as usize] {
            let mut dims: Vec<Dim> = sizes.iter().map(|&d| Dim::constant(d)).collect();
            dims[0] = Dim::symbol(ROWS);
            args[i as usize] = Arg::SymInts(dims);
        }
    }
    let stacked: BTreeMap<ValueId, TensorType> = per_call.iter().map(|&v| (v, with_rows(ty(v)))).collect();
    let lookup = |v: ValueId| stacked.get(&v).or_else(|| Some(&graph.value(v).ty));
    let inferred = registry::infer(&node.op, &args, &lookup).ok()?;
    let expected: Vec<TensorType> = outputs.iter().map(|t| with_rows(t)).collect();
    (inferred == expected).then_some(Batching::Rows { resize })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;

    fn marks(program: &Program, entry: &str) -> BTreeMap<String, Batching> {
        let g = program.entries.iter().find(|g| g.name == entry).expect("entry");
        g.nodes.iter().filter_map(|n| n.ann.batching.map(|b| (format!("{} {}", n.op, n.outputs[0]), b))).collect()
    }

    #[test]
    fn decode_marks_dense_layers_on_rows_and_attention_per_call() {
        let mut program = genie_ir::example::tiny_decoder_pair().expect("example");
        PassManager::standard().run(&mut program, None).expect("passes");
        let decode = marks(&program, "decode");
        assert!(!decode.is_empty(), "decode is marked");
        assert!(marks(&program, "prefill").is_empty(), "prefill reads no state: not marked");
        let g = program.entries.iter().find(|g| g.name == "decode").expect("decode");
        let state: HashSet<ValueId> = program
            .state_bindings
            .iter()
            .filter(|b| b.to.entry == "decode")
            .filter_map(|b| g.inputs.iter().copied().find(|&v| g.value(v).name == b.to.name))
            .collect();
        assert!(!state.is_empty());
        let mut rows_ops = HashSet::new();
        for n in &g.nodes {
            let mode = n.ann.batching.expect("every decode node is marked");
            if n.inputs().iter().any(|v| state.contains(v)) {
                assert_eq!(mode, Batching::PerCall, "{} reads state: per call", n.op);
            }
            if let Batching::Rows { .. } = mode {
                rows_ops.insert(n.op.clone());
            }
        }
        for op in ["aten.embedding.default", "aten.linear.default"] {
            if g.nodes.iter().any(|n| n.op == op) {
                assert!(rows_ops.contains(op), "{op} runs on rows: {rows_ops:?}");
            }
        }
    }
}
