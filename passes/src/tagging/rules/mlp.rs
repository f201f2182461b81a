//! `mlp`: linear → activation → linear, and gated SiLU (down(silu(gate(x)) * up(x))).

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

/// `?h` is an element-wise function of one dense result (an activation, however written).
fn activated_dense(m: &MatchCtx) -> bool {
    let facts = m.facts("?h");
    match facts.act_root {
        Some(root) => root != m.class("?h") && m.class_facts(root).dense,
        None => false,
    }
}

fn always_gated(_: &MatchCtx) -> bool {
    true
}

pub fn table() -> RuleTable {
    let gate = "(aten.silu.default (aten.linear.default ?x ?wg ?bg))";
    let up = "(aten.linear.default ?x ?wu ?bu)";
    RuleTable {
        domain: "mlp",
        tag: Tag::Mlp,
        rules: vec![
            Rule::new("linear(act(linear))", "(aten.linear.default ?h ?w2 ?b2)", activated_dense),
            Rule::new(
                "gated silu",
                format!("(aten.linear.default (aten.mul.Tensor {gate} {up}) ?wd ?bd)"),
                always_gated,
            ),
            Rule::new(
                "gated silu (commuted)",
                format!("(aten.linear.default (aten.mul.Tensor {up} {gate}) ?wd ?bd)"),
                always_gated,
            ),
        ],
    }
}
