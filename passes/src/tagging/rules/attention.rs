//! `attention`: softmax(scores)·V, fused or written out, where the scores are any element-wise
//! function of an activation product Q·Kᵀ: scaled before or after, with an additive bias (ALiBi
//! through `baddbmm`, relative positions), a mask (added, `where`, `masked_fill`), a cast, or a
//! sink's logit column joined to them. The e-graph analysis tracks such scores
//! ([`Facts::scores`](crate::tagging::egraph::Facts)), so one rule covers every spelling instead
//! of one pattern per combination; fused QKV projections, multi-query and grouped heads
//! (`expand` + `reshape`, looked through) need nothing more.

use std::collections::HashSet;

use super::{always, Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

/// The softmax's input is attention scores.
fn softmax_of_scores(m: &MatchCtx) -> bool {
    m.facts("?s").scores.is_some()
}

/// The region runs from V, Q and K (and the mask, bias and scale operands) to the output: it
/// stops at every input of the score chain that is not itself part of it.
fn score_chain_stops(m: &MatchCtx) -> Vec<egg::Id> {
    let eg = &m.srg.egraph;
    let canonical = |(q, k): (egg::Id, egg::Id)| (eg.find(q), eg.find(k));
    let Some(qk) = m.facts("?s").scores.map(canonical) else { return Vec::new() };
    let mut stops: Vec<egg::Id> = ["?v", "?guard", "?zero"].iter().filter_map(|v| m.bound_class(v)).collect();
    let mut queue: Vec<genie_ir::ValueId> = m.values_of(m.class("?s")).to_vec();
    let mut seen = HashSet::new();
    while let Some(v) = queue.pop() {
        if !seen.insert(v) {
            continue;
        }
        let Some(producer) = m.graph.producer(v) else { continue };
        for u in m.graph.node(producer).inputs() {
            let class = m.srg.class(u);
            if m.class_facts(class).scores.map(canonical) == Some(qk) {
                queue.push(u);
            } else {
                stops.push(class);
            }
        }
    }
    stops
}

pub fn table() -> RuleTable {
    let softmax = "(aten._softmax.default ?s)";
    RuleTable {
        domain: "attention",
        tag: Tag::Attention,
        rules: vec![
            Rule::new(
                "fused scaled_dot_product_attention",
                "(aten.scaled_dot_product_attention.default ?q ?k ?v ?mask)",
                always,
            ),
            Rule::new("softmax(scores)·v", format!("(aten.matmul.default {softmax} ?v)"), softmax_of_scores)
                .with_stops(score_chain_stops),
            // Attention sinks (GPT-OSS, DeepSeek-V4, Flint): a learned logit column joined to the
            // scores takes part in the softmax and is sliced off before V.
            Rule::new(
                "softmax(scores ++ sink)[..n]·v",
                format!("(aten.matmul.default (aten.slice.Tensor {softmax}) ?v)"),
                softmax_of_scores,
            )
            .with_stops(score_chain_stops),
            // Decompositions guard fully masked rows: where(any-row-valid, softmax, 0) (core
            // ATen) or where(isnan(p), 0, p) (ONNX exports).
            Rule::new(
                "guarded softmax(scores)·v",
                format!("(aten.matmul.default (aten.where.self ?guard ?zero {softmax}) ?v)"),
                softmax_of_scores,
            )
            .with_stops(score_chain_stops),
            Rule::new(
                "guarded' softmax(scores)·v",
                format!("(aten.matmul.default (aten.where.self ?guard {softmax} ?zero) ?v)"),
                softmax_of_scores,
            )
            .with_stops(score_chain_stops),
        ],
    }
}
