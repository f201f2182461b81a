//! `attention`: softmax(scale(Q·Kᵀ) + mask)·V, fused or written out.

use super::{always, Rule, RuleTable};
use genie_ir::Tag;

/// The score Q·Kᵀ, with any scaling written around it.
fn scaled(scores: &str) -> Vec<(String, String)> {
    vec![
        ("plain".into(), scores.to_string()),
        ("div".into(), format!("(aten.div.Tensor {scores} ?scale)")),
        ("div-scalar".into(), format!("(aten.div.Scalar {scores})")),
        ("mul".into(), format!("(aten.mul.Tensor {scores} ?scale)")),
        ("mul-commuted".into(), format!("(aten.mul.Tensor ?scale {scores})")),
        ("mul-scalar".into(), format!("(aten.mul.Scalar {scores})")),
    ]
}

/// An additive or selecting mask around the scores.
fn masked(x: &str) -> Vec<(String, String)> {
    vec![
        ("unmasked".into(), x.to_string()),
        ("add-mask".into(), format!("(aten.add.Tensor {x} ?mask)")),
        ("add-mask-commuted".into(), format!("(aten.add.Tensor ?mask {x})")),
        ("where-mask".into(), format!("(aten.where.self ?keep {x} ?fill)")),
        ("masked-fill".into(), format!("(aten.masked_fill.Scalar {x} ?mask)")),
        ("masked-fill-tensor".into(), format!("(aten.masked_fill.Tensor {x} ?mask ?fill)")),
    ]
}

pub fn table() -> RuleTable {
    let mut rules = vec![Rule::new(
        "fused scaled_dot_product_attention",
        "(aten.scaled_dot_product_attention.default ?q ?k ?v ?mask)",
        always,
    )];
    // Grouped-query attention's repeat_kv (expand + reshape) is looked through by canon rules.
    for (sname, s) in scaled("(aten.matmul.default ?q ?k)") {
        for (mname, m) in masked(&s) {
            // Decompositions guard fully masked rows: where(any-row-valid, softmax, 0) (core
            // ATen) or where(isnan(p), 0, p) (ONNX exports).
            let softmax = format!("(aten._softmax.default {m})");
            let probs = [
                ("", softmax.clone()),
                ("guarded ", format!("(aten.where.self ?guard ?zero {softmax})")),
                ("guarded' ", format!("(aten.where.self ?guard {softmax} ?zero)")),
            ];
            for (pname, p) in probs {
                rules.push(Rule::new(
                    format!("{pname}softmax({mname}({sname}(q·k)))·v"),
                    format!("(aten.matmul.default {p} ?v)"),
                    always,
                ));
            }
        }
    }
    RuleTable { domain: "attention", tag: Tag::Attention, rules }
}
