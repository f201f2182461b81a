//! `embedding` (a lookup into a weight table) and `lm_head` (the projection back to the vocabulary).

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

fn table_is_weight(m: &MatchCtx) -> bool {
    m.facts("?table").weight
}

/// A dense layer whose result is a graph output and whose rows match an embedding table's
/// (tied weights or the same vocabulary).
fn projects_to_vocabulary(m: &MatchCtx) -> bool {
    if !m.facts("?w").weight || !m.root_class_has_output() {
        return false;
    }
    let Some(w) = m.var_value("?w") else { return false };
    let rows = |v: genie_ir::ValueId| m.graph.value(v).ty.shape.first().cloned();
    let vocab = m.embedding_tables();
    !vocab.is_empty() && vocab.iter().any(|t| rows(*t) == rows(w) || *t == w)
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
