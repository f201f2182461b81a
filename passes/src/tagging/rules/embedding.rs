//! `embedding` (a lookup into a weight table) and `lm_head` (the projection back to the vocabulary).

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

fn table_is_weight(m: &MatchCtx) -> bool {
    m.facts("?table").weight
}

/// A dense layer whose result is a graph output with one feature per vocabulary entry of an
/// embedding table (tied weights, or the same vocabulary size; exporters may store the head
/// weight transposed, so the output width is compared, not the weight's rows).
fn projects_to_vocabulary(m: &MatchCtx) -> bool {
    if !m.facts("?w").weight || !m.root_class_has_output() {
        return false;
    }
    let Some(out) = m.root_value() else { return false };
    let width = m.graph.value(out).ty.shape.last().cloned();
    let vocab = m.embedding_tables();
    vocab.iter().any(|t| m.graph.value(*t).ty.shape.first().cloned() == width)
}

pub fn embedding_table() -> RuleTable {
    RuleTable {
        domain: "embedding",
        tag: Tag::Embedding,
        rules: vec![
            Rule::new("embedding", "(aten.embedding.default ?table ?ids)", table_is_weight),
            Rule::new("index_select rows", "(aten.index_select.default ?table ?ids)", table_is_weight),
        ],
    }
}

pub fn lm_head_table() -> RuleTable {
    RuleTable {
        domain: "lm_head",
        tag: Tag::LmHead,
        rules: vec![Rule::new("vocabulary projection", "(aten.linear.default ?x ?w ?b)", projects_to_vocabulary)],
    }
}
