//! Cost hints per node: FLOPs, bytes read and written, arithmetic intensity, from the op
//! registry's symbolic cost with symbols bound to sizes.
//!
//! A symbol is bound by `--bind s0=512`; otherwise, in an LLM entry given a request shape, to the
//! request's length (prefill: the prompt, decode: the mean context over the generation); otherwise
//! to its range's maximum when that is finite and at most [`genie_ir::DEFAULT_BIND_CAP`], else to
//! its minimum (at least 1). The choice is logged. Placement binds the same way
//! ([`entry_bindings`]), so its estimates and these hints agree.

use std::collections::BTreeMap;

use genie_ir::registry;
use genie_ir::{CostHints, Dim, Graph, InputRole, Phase, Program, RequestShape};

use crate::manager::{for_each_entry, Pass, PassError};

/// The cost-hint pass.
pub struct CostHintsPass {
    pub bindings: BTreeMap<String, i64>,
    pub request: Option<RequestShape>,
}

/// The symbol values an entry's time estimates use: `given` (`--bind`) first; then, for an LLM
/// entry and a request shape, the prompt length (prefill) or the mean decode context (decode),
/// clamped to the symbol's range, for every symbol but the batch (the first dim of token ids
/// `[batch, seq]`); then [`Graph::bind_symbols`]'s default.
pub fn entry_bindings(
    g: &Graph,
    given: &BTreeMap<String, i64>,
    request: Option<&RequestShape>,
) -> BTreeMap<String, i64> {
    let length = match (request, g.phase) {
        (Some(r), Phase::LlmPrefill) => Some(r.prompt_len),
        (Some(r), Phase::LlmDecode) => Some(r.decode_context()),
        _ => None,
    };
    let batch: std::collections::BTreeSet<String> = g
        .inputs
        .iter()
        .map(|v| g.value(*v))
        .filter(|v| v.ann.role == Some(InputRole::TokenIds) && v.ty.shape.len() >= 2)
        .flat_map(|v| v.ty.shape[0].symbols())
        .collect();
    let mut bound = g.bind_symbols(given);
    if let Some(n) = length {
        for (name, range) in &g.symbols {
            if !given.contains_key(name) && !batch.contains(name) {
                bound.insert(name.clone(), n.max(range.min).min(range.max.unwrap_or(i64::MAX)).max(1));
            }
        }
    }
    bound
}

fn eval(d: &Dim, b: &BTreeMap<String, i64>) -> u64 {
    d.eval(b).map(|v| v.max(0) as u64).unwrap_or(u64::MAX)
}

/// Total FLOPs of a graph's cost hints.
pub fn total_flops(g: &Graph) -> u64 {
    g.nodes.iter().filter_map(|n| n.ann.cost.as_ref()).map(|c| c.flops).fold(0u64, u64::saturating_add)
}

impl Pass for CostHintsPass {
    fn name(&self) -> &'static str {
        "cost"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let notes = for_each_entry(program, |g| {
            let bound = entry_bindings(g, &self.bindings, self.request.as_ref());
            for (s, v) in &bound {
                if !self.bindings.contains_key(s) {
                    tracing::info!(graph = %g.name, "symbol {s} not bound by --bind; using {v}");
                }
            }
            for (s, v) in &self.bindings {
                if let Some(r) = g.symbols.get(s) {
                    if !r.contains(*v) {
                        return Err(PassError::Failed {
                            pass: "cost",
                            reason: format!("--bind {s}={v} is outside its range {r} in `{}`", g.name),
                        });
                    }
                }
            }
            let mut costs = Vec::with_capacity(g.nodes.len());
            for node in &g.nodes {
                let outs: Vec<_> = node.outputs.iter().map(|v| g.value(*v).ty.clone()).collect();
                let types = |v: genie_ir::ValueId| g.values.get(v.index()).map(|x| &x.ty);
                let c = registry::cost(&node.op, &node.args, &types, &outs)
                    .map_err(|e| PassError::Failed { pass: "cost", reason: e.to_string() })?;
                costs.push(CostHints::new(
                    eval(&c.flops, &bound),
                    eval(&c.bytes_read, &bound),
                    eval(&c.bytes_written, &bound),
                ));
            }
            for (n, c) in g.nodes.iter_mut().zip(costs) {
                n.ann.cost = Some(c);
            }
            let b: Vec<String> = bound.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Ok(format!(
                "{}: {:.3} GFLOP at {}",
                g.name,
                total_flops(g) as f64 / 1e9,
                if b.is_empty() { "static shapes".into() } else { b.join(",") }
            ))
        })?;
        Ok(notes.join("; "))
    }
}
