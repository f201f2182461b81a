//! `kv_cache_update`: state extended by new positions along the sequence dim (`cat(past, new)`),
//! or written in place for static caches (`index_copy`, `slice_scatter`).

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

/// The cache operand is a graph input (state passed in), concatenated along a sequence-like dim:
/// not the last (feature) dim of a rank >= 3 tensor.
fn past_is_state_on_sequence_dim(m: &MatchCtx) -> bool {
    let Some(past) = m.var_value("?past") else { return false };
    if !m.facts("?past").input {
        return false;
    }
    let rank = m.graph.value(past).ty.rank();
    match m.root_node().map(|n| &n.args) {
        Some(args) => match args.get(1) {
            Some(genie_ir::Arg::Int(d)) => {
                let d = if *d < 0 { d + rank as i64 } else { *d };
                rank >= 3 && d >= 1 && d < rank as i64 - 1
            }
            _ => false,
        },
        None => false,
    }
}

fn cache_is_state(m: &MatchCtx) -> bool {
    m.facts("?cache").input
}

pub fn table() -> RuleTable {
    RuleTable {
        domain: "kv_cache",
        tag: Tag::KvCacheUpdate,
        rules: vec![
            Rule::new("cat(past, new)", "(aten.cat.default ?past ?new)", past_is_state_on_sequence_dim),
            Rule::new("index_copy(cache, pos, new)", "(aten.index_copy.default ?cache ?pos ?new)", cache_is_state),
            Rule::new("slice_scatter(cache, new)", "(aten.slice_scatter.default ?cache ?new)", cache_is_state),
            Rule::new("index_put(cache, [pos], new)", "(aten.index_put.default ?cache ?pos ?new)", cache_is_state),
        ],
    }
}
