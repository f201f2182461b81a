//! Mixture of experts: `moe_router` (a dense layer scoring the experts, a softmax or sigmoid,
//! the top-k choice, in either order) and `moe_expert` (a projection through the experts'
//! stacked weights: transformers' grouped matrix product over tokens sorted by expert, or a
//! batched product over the weights each token selected).

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

/// The most experts a router scores: a top-k over more columns is sampling from a vocabulary,
/// not routing.
const MAX_EXPERTS: i64 = 1024;

/// `?w` is a weight scoring at most [`MAX_EXPERTS`] experts.
fn router_weight(m: &MatchCtx) -> bool {
    let Some(w) = m.var_value("?w") else { return false };
    m.facts("?w").weight
        && m.graph.value(w).ty.shape.first().and_then(|d| d.as_const()).is_some_and(|n| n <= MAX_EXPERTS)
}

/// `?w` holds every expert's weights stacked: a 3-D weight, perhaps transposed or viewed.
fn stacked_expert_weights(m: &MatchCtx) -> bool {
    let Some(mut v) = m.var_value("?w") else { return false };
    if m.graph.value(v).ty.rank() != 3 {
        return false;
    }
    loop {
        if matches!(m.graph.value(v).def, genie_ir::ValueDef::Weight(_)) {
            return true;
        }
        let Some(p) = m.graph.producer(v) else { return false };
        let node = m.graph.node(p);
        match (genie_ir::registry::facts(&node.op).layout, node.inputs().first()) {
            (Some(_), Some(&input)) => v = input,
            _ => return false,
        }
    }
}

pub fn router_table() -> RuleTable {
    let logits = "(aten.linear.default ?x ?w ?b)";
    RuleTable {
        domain: "moe_router",
        tag: Tag::MoeRouter,
        rules: vec![
            // Mixtral, Qwen-MoE, OLMoE: softmax over the experts, then the top k.
            Rule::new(
                "topk(softmax(router))",
                format!("(aten.topk.default#1 (aten._softmax.default {logits}))"),
                router_weight,
            ),
            // The top k of the logits, softmax over those k afterwards.
            Rule::new("topk(router)", format!("(aten.topk.default#1 {logits})"), router_weight),
            // DeepSeek-style sigmoid scores.
            Rule::new(
                "topk(sigmoid(router))",
                format!("(aten.topk.default#1 (aten.sigmoid.default {logits}))"),
                router_weight,
            ),
        ],
    }
}

pub fn expert_table() -> RuleTable {
    RuleTable {
        domain: "moe_expert",
        tag: Tag::MoeExpert,
        rules: vec![
            // transformers' `grouped_mm` experts (its fallback op in exports): tokens sorted by
            // expert, one product per expert's rows.
            Rule::new(
                "grouped_mm(sorted tokens, experts' weights, offsets)",
                "(transformers.grouped_mm_fallback.default ?x ?w ?offs)",
                stacked_expert_weights,
            ),
            // `batched_mm` experts: each token's chosen experts' weights gathered, then a
            // batched product.
            Rule::new(
                "bmm(tokens, experts' weights[chosen])",
                "(aten.matmul.default ?x (aten.index.Tensor ?w ?chosen))",
                stacked_expert_weights,
            ),
        ],
    }
}
