//! `residual`: x + f(x), where f contains a dense layer, convolution or attention.

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::Tag;

/// Checked on the add node's own operands: class representatives may be views of them.
fn skip_around_compute(m: &MatchCtx) -> bool {
    let Some(node) = m.root_node() else { return false };
    let [a, b] = node.inputs()[..] else { return false };
    m.is_skip_connection(a, b) || m.is_skip_connection(b, a)
}

pub fn table() -> RuleTable {
    RuleTable {
        domain: "residual",
        tag: Tag::Residual,
        rules: vec![
            Rule::new("add(x, f(x))", "(aten.add.Tensor ?a ?b)", skip_around_compute),
            Rule::new("in-place add(x, f(x))", "(aten.add_.Tensor ?a ?b)", skip_around_compute),
        ],
    }
}
