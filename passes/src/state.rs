//! Program-level state bindings, detected from the annotated graphs:
//! - a decode step's present K/V outputs feed its past K/V inputs at the next step;
//! - a prefill's K/V outputs feed the first decode step's past inputs.
//!
//! When detection cannot decide (counts or types disagree), explicit bindings given by the user
//! (`--state out=in`) take its place.

use genie_ir::{Graph, Phase, Port, Program, StateBinding, TensorType, ValueId};

use crate::annotate::kv_state;
use crate::manager::{Pass, PassError};

/// Detects state bindings, or applies the user's.
pub struct StateBindings {
    /// Explicit bindings; when non-empty they replace detection.
    pub overrides: Vec<StateBinding>,
}

/// Two state tensors can be bound when dtype and rank agree and static dims match, except the
/// sequence dim that grows (at most one static difference).
fn compatible(a: &TensorType, b: &TensorType) -> bool {
    if a.dtype != b.dtype || a.rank() != b.rank() {
        return false;
    }
    let differing = a
        .shape
        .iter()
        .zip(&b.shape)
        .filter(|(x, y)| matches!((x.as_const(), y.as_const()), (Some(p), Some(q)) if p != q))
        .count();
    differing <= 1
}

fn port(g: &Graph, name: &str) -> Port {
    Port { entry: g.name.clone(), name: name.to_string() }
}

/// Pair decode's present outputs with its past inputs: the cache update of each past input
/// produces the output bound to it.
fn decode_self_bindings(g: &Graph) -> Vec<StateBinding> {
    let (past, present) = kv_state(g);
    let mut out = Vec::new();
    for r in g.regions.iter().filter(|r| r.tag == genie_ir::Tag::KvCacheUpdate) {
        let Some(p) = r.entries.iter().find(|e| past.contains(e)).or_else(|| {
            // The cache may enter the region through a layout op: match by the update's operand.
            past.iter().find(|p| r.entries.iter().any(|e| crate::annotate::same_source(g, *e, **p)))
        }) else {
            continue;
        };
        let Some(exit) = r.exits.first() else { continue };
        let produced =
            present.iter().map(|&i| &g.outputs[i]).find(|o| o.value == *exit || feeds_unchanged(g, *exit, o.value));
        if let Some(o) = produced {
            out.push(StateBinding { from: port(g, &o.name), to: port(g, &g.value(*p).name) });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// True when `to` is `from` after layout-only ops.
fn feeds_unchanged(g: &Graph, from: ValueId, to: ValueId) -> bool {
    let mut cur = to;
    for _ in 0..16 {
        if cur == from {
            return true;
        }
        let Some(n) = g.producer(cur) else { return false };
        let node = g.node(n);
        if !crate::tagging::rules::canon::is_look_through(&node.op) {
            return false;
        }
        match node.args.first() {
            Some(genie_ir::Arg::Tensor(v)) => cur = *v,
            _ => return false,
        }
    }
    false
}

/// Pair a prefill's state outputs with a decode's past inputs, in declaration order.
fn prefill_to_decode(prefill: &Graph, decode: &Graph) -> Result<Vec<StateBinding>, String> {
    let (_, present) = kv_state(prefill);
    let (past, _) = kv_state(decode);
    if present.len() != past.len() {
        return Err(format!(
            "`{}` returns {} state tensors but `{}` takes {}; give the bindings with --state",
            prefill.name,
            present.len(),
            decode.name,
            past.len()
        ));
    }
    let mut out = Vec::new();
    for (&oi, &p) in present.iter().zip(&past) {
        let o = &prefill.outputs[oi];
        let (a, b) = (&prefill.value(o.value).ty, &decode.value(p).ty);
        if !compatible(a, b) {
            return Err(format!(
                "`{}.{}` ({a}) does not fit `{}.{}` ({b}); give the bindings with --state",
                prefill.name,
                o.name,
                decode.name,
                decode.value(p).name
            ));
        }
        out.push(StateBinding { from: port(prefill, &o.name), to: port(decode, &decode.value(p).name) });
    }
    Ok(out)
}

impl Pass for StateBindings {
    fn name(&self) -> &'static str {
        "state-bindings"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        if !self.overrides.is_empty() {
            program.state_bindings = self.overrides.clone();
            return Ok(format!("{} bindings given explicitly", self.overrides.len()));
        }
        let mut bindings = Vec::new();
        let decodes: Vec<&Graph> = program.entries.iter().filter(|g| g.phase == Phase::LlmDecode).collect();
        let prefills: Vec<&Graph> = program.entries.iter().filter(|g| g.phase == Phase::LlmPrefill).collect();
        let mut undecided = Vec::new();
        for d in &decodes {
            bindings.extend(decode_self_bindings(d));
            for p in &prefills {
                match prefill_to_decode(p, d) {
                    Ok(b) => bindings.extend(b),
                    Err(reason) => undecided.push(reason),
                }
            }
        }
        for reason in &undecided {
            tracing::warn!("state bindings undecided: {reason}");
        }
        let n = bindings.len();
        program.state_bindings = bindings;
        Ok(if undecided.is_empty() {
            format!("{n} bindings detected")
        } else {
            format!("{n} bindings detected; undecided: {}", undecided.join("; "))
        })
    }
}

/// Parse `--state` values: `OUT=IN`, each side `entry.name` or a bare name. A bare output is
/// looked up in every entry (it must be unique); a bare input likewise.
pub fn parse_state_overrides(program: &Program, specs: &[String]) -> Result<Vec<StateBinding>, String> {
    let find = |side: &str, want_output: bool| -> Result<Port, String> {
        let matches: Vec<Port> = program
            .entries
            .iter()
            .filter(|g| match side.split_once('.') {
                Some((e, _)) if program.entry(e).is_some() => g.name == e,
                _ => true,
            })
            .filter_map(|g| {
                let name = match side.split_once('.') {
                    Some((e, n)) if program.entry(e).is_some() => n,
                    _ => side,
                };
                let exists = if want_output {
                    g.outputs.iter().any(|o| o.name == name)
                } else {
                    g.inputs.iter().any(|v| g.value(*v).name == name)
                };
                exists.then(|| Port { entry: g.name.clone(), name: name.to_string() })
            })
            .collect();
        match matches.len() {
            1 => Ok(matches.into_iter().next().expect("one match")),
            0 => Err(format!("no {} named `{side}`", if want_output { "output" } else { "input" })),
            _ => Err(format!("`{side}` is ambiguous; write it as entry.name")),
        }
    };
    specs
        .iter()
        .map(|s| {
            let (from, to) = s.split_once('=').ok_or_else(|| format!("--state `{s}` is not OUT=IN"))?;
            Ok(StateBinding { from: find(from.trim(), true)?, to: find(to.trim(), false)? })
        })
        .collect()
}
