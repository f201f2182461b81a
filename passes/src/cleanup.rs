//! Cleanup: inference no-ops, dead code, common subexpressions.

use std::collections::{BTreeSet, HashMap};

use genie_ir::registry::{self, EvalIdentity, Layout, OpClass, Reorder};
use genie_ir::{Arg, Graph, NodeId, Program, ValueId};

use crate::manager::{for_each_entry, Pass, PassError};

/// Remove ops that are the identity at inference: `dropout` (eval), `alias`, `detach`, `clone`,
/// `lift_fresh_copy`, `contiguous`, assertions, and views or conversions that change nothing.
pub struct RemoveNoOps;

/// Remove nodes whose results nothing uses.
pub struct DeadCode;

/// Merge nodes that apply the same op to the same arguments.
pub struct CommonSubexpressions;

/// The value a no-op node passes through, if the node is one.
fn passthrough(g: &Graph, n: NodeId) -> Option<Option<genie_ir::ValueId>> {
    let node = g.node(n);
    let def = registry::registry().get(&node.op)?;
    match def.class {
        // Asserts have no outputs: removing them needs no redirection.
        OpClass::Assert => return Some(None),
        OpClass::Creation => return None,
        _ => {}
    }
    let [out] = node.outputs[..] else { return None };
    if node.op == "aten.cat.default" {
        return cat_of_one(g, node, out).map(Some);
    }
    let Some(Arg::Tensor(input)) = node.args.first() else { return None };
    let (tin, tout) = (&g.value(*input).ty, &g.value(out).ty);
    if tin != tout {
        return None;
    }
    let facts = &def.facts;
    let identity = if let Some(when) = facts.eval_identity {
        match when {
            EvalIdentity::Always => true,
            EvalIdentity::Dropout { p, train } => {
                matches!(node.args.get(train), Some(Arg::Bool(false)))
                    || matches!(node.args.get(p), Some(Arg::Float(p)) if *p == 0.0)
            }
        }
    } else if let Some(layout) = facts.layout {
        match layout {
            // Same type is not enough for reorderings: a square transpose keeps the type.
            Layout::Reorder(Reorder::Permutation { dims }) => match node.args.get(dims) {
                Some(Arg::Ints(dims)) => {
                    let r = tin.rank() as i64;
                    dims.iter().enumerate().all(|(i, d)| (if *d < 0 { d + r } else { *d }) == i as i64)
                }
                _ => false,
            },
            Layout::Reorder(Reorder::Swap { a, b }) => match (node.args.get(a), node.args.get(b)) {
                (Some(Arg::Int(a)), Some(Arg::Int(b))) => {
                    let r = tin.rank().max(1) as i64;
                    (if *a < 0 { a + r } else { *a }) == (if *b < 0 { b + r } else { *b })
                }
                _ => false,
            },
            Layout::Reorder(Reorder::Matrix) => tin.rank() < 2,
            // Multi-output views (split) are excluded above; the rest reinterpret row-major data
            // or select a full range, so an unchanged type means unchanged contents.
            Layout::Reshape | Layout::Broadcast | Layout::Select => true,
        }
    } else {
        // A conversion to the type the input already has.
        facts.cast
    };
    identity.then_some(Some(*input))
}

/// `cat` whose operands are all empty but one passes that one through. Exporters produce it
/// when a cache starts empty and the past is appended to it (a `DynamicCache` in
/// transformers: `cat([tensor([]), past_key], -2)`); PyTorch skips empty 1-D operands.
fn cat_of_one(g: &Graph, node: &genie_ir::Node, out: genie_ir::ValueId) -> Option<genie_ir::ValueId> {
    let Some(Arg::Tensors(parts)) = node.args.first() else { return None };
    let is_empty = |v: &genie_ir::ValueId| g.value(*v).ty.shape.iter().any(|d| d.as_const() == Some(0));
    let mut kept = parts.iter().filter(|v| !is_empty(v));
    let (Some(&only), None) = (kept.next(), kept.next()) else { return None };
    (g.value(only).ty == g.value(out).ty).then_some(only)
}

impl Pass for RemoveNoOps {
    fn name(&self) -> &'static str {
        "remove-noops"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let removed: usize = for_each_entry(program, |g| {
            let order = g.topo_order().map_err(|e| PassError::Failed { pass: self.name(), reason: e.to_string() })?;
            let mut dead = BTreeSet::new();
            // Uses are redirected once at the end. A no-op keeps its input's type, so what
            // `passthrough` reads of a later node is the same before and after redirection.
            let mut redirect: HashMap<ValueId, ValueId> = HashMap::new();
            for n in order {
                if let Some(through) = passthrough(g, n) {
                    if let Some(input) = through {
                        let out = g.node(n).outputs[0];
                        // The input may itself be an earlier no-op's output: go to its source.
                        let input = redirect.get(&input).copied().unwrap_or(input);
                        redirect.insert(out, input);
                    }
                    dead.insert(n);
                }
            }
            g.replace_uses(&redirect);
            g.remove_nodes(&dead);
            Ok(dead.len())
        })?
        .into_iter()
        .sum();
        Ok(format!("removed {removed} no-op nodes"))
    }
}

impl Pass for DeadCode {
    fn name(&self) -> &'static str {
        "dead-code"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let removed: usize = for_each_entry(program, |g| {
            let mut live = vec![false; g.nodes.len()];
            let mut work: Vec<NodeId> = g.outputs.iter().filter_map(|o| g.producer(o.value)).collect();
            while let Some(n) = work.pop() {
                if std::mem::replace(&mut live[n.index()], true) {
                    continue;
                }
                work.extend(g.node(n).inputs().into_iter().filter_map(|v| g.producer(v)));
            }
            let dead: BTreeSet<NodeId> = g.node_ids().filter(|n| !live[n.index()]).collect();
            g.remove_nodes(&dead);
            Ok(dead.len())
        })?
        .into_iter()
        .sum();
        Ok(format!("removed {removed} dead nodes"))
    }
}

impl Pass for CommonSubexpressions {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let merged: usize = for_each_entry(program, |g| {
            let order = g.topo_order().map_err(|e| PassError::Failed { pass: self.name(), reason: e.to_string() })?;
            // Key: op and arguments (after earlier merges rewrote them). Debug of f64 is exact.
            let mut seen: HashMap<String, NodeId> = HashMap::new();
            let mut dead = BTreeSet::new();
            // Uses are redirected once at the end; keys read arguments through the merges so
            // far. A kept node is never merged away, so there are no chains.
            let mut redirect: HashMap<ValueId, ValueId> = HashMap::new();
            for n in order {
                let node = g.node(n);
                if node.outputs.is_empty() {
                    continue;
                }
                let mut args = node.args.clone();
                for a in &mut args {
                    a.map_values(|v| redirect.get(&v).copied().unwrap_or(v));
                }
                let key = format!("{}{:?}", node.op, args);
                match seen.get(&key) {
                    Some(&first) if g.node(first).outputs.len() == node.outputs.len() => {
                        redirect.extend(node.outputs.iter().copied().zip(g.node(first).outputs.iter().copied()));
                        dead.insert(n);
                    }
                    _ => {
                        seen.insert(key, n);
                    }
                }
            }
            g.replace_uses(&redirect);
            g.remove_nodes(&dead);
            Ok(dead.len())
        })?
        .into_iter()
        .sum();
        Ok(format!("merged {merged} duplicate nodes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use genie_ir::{DType, TensorType};

    fn program(g: Graph) -> Program {
        let mut p = Program::new("t");
        p.entries.push(g);
        p
    }

    #[test]
    fn noops_dead_code_and_duplicates_go() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::new(DType::Float32, &[2, 2]));
        let d = g.add_op("aten.dropout.default", vec![Arg::Tensor(x), Arg::Float(0.1), Arg::Bool(false)]).unwrap();
        let c = g.add_op("aten.clone.default", vec![Arg::Tensor(d), Arg::None]).unwrap();
        let v = g.add_op("aten.view.default", vec![Arg::Tensor(c), Arg::Ints(vec![2, 2])]).unwrap();
        let t = g.add_op("aten.transpose.int", vec![Arg::Tensor(v), Arg::Int(0), Arg::Int(1)]).unwrap();
        let r1 = g.add_op("aten.relu.default", vec![Arg::Tensor(t)]).unwrap();
        let r2 = g.add_op("aten.relu.default", vec![Arg::Tensor(t)]).unwrap();
        let s = g.add_op("aten.add.Tensor", vec![Arg::Tensor(r1), Arg::Tensor(r2), Arg::Int(1)]).unwrap();
        let _unused = g.add_op("aten.exp.default", vec![Arg::Tensor(s)]).unwrap();
        g.add_node(
            "aten._assert_tensor_metadata.default",
            vec![Arg::Tensor(x), Arg::None, Arg::None, Arg::None, Arg::None, Arg::None],
        )
        .unwrap();
        g.add_output("y", s);
        let mut p = program(g);
        let reports = PassManager::standard().run(&mut p, None).unwrap();
        assert_eq!(reports.len(), 9);
        let ops: Vec<&str> = p.entries[0].nodes.iter().map(|n| n.op.as_str()).collect();
        // The square transpose stays: same type, different contents.
        assert_eq!(ops, ["aten.transpose.int", "aten.relu.default", "aten.add.Tensor"]);
    }

    #[test]
    fn cat_with_empty_operands_passes_the_other_through() {
        let mut g = Graph::new("g");
        let past = g.add_input("past", TensorType::new(DType::Float32, &[1, 2, 5, 4]));
        let new = g.add_input("new", TensorType::new(DType::Float32, &[1, 2, 1, 4]));
        // A cache that starts empty (a legacy 1-D `tensor([])`) with the past appended.
        let empty = g.add_const("empty", TensorType::new(DType::Float32, &[0]), Vec::new());
        let start = g.add_op("aten.cat.default", vec![Arg::Tensors(vec![empty, past]), Arg::Int(-2)]).unwrap();
        let present = g.add_op("aten.cat.default", vec![Arg::Tensors(vec![start, new]), Arg::Int(-2)]).unwrap();
        g.add_output("present", present);
        let mut p = program(g);
        RemoveNoOps.run(&mut p).unwrap();
        let g = &p.entries[0];
        assert_eq!(g.nodes.len(), 1, "{:?}", g.nodes);
        assert_eq!(g.nodes[0].args[0], Arg::Tensors(vec![past, new]), "the new position is appended to the past");
    }

    #[test]
    fn training_dropout_stays() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::new(DType::Float32, &[4]));
        let d = g.add_op("aten.dropout.default", vec![Arg::Tensor(x), Arg::Float(0.5), Arg::Bool(true)]).unwrap();
        g.add_output("y", d);
        let mut p = program(g);
        PassManager::standard().run(&mut p, None).unwrap();
        assert_eq!(p.entries[0].nodes.len(), 1);
    }

    #[test]
    fn stop_after_a_named_pass() {
        let p0 = genie_ir::example::tiny_decoder().unwrap();
        let mut p = p0.clone();
        let reports = PassManager::standard().run(&mut p, Some("remove-noops")).unwrap();
        assert_eq!(reports.len(), 1);
        let err = PassManager::standard().run(&mut p, Some("nope")).unwrap_err();
        assert!(err.to_string().contains("remove-noops"), "{err}");
    }
}
