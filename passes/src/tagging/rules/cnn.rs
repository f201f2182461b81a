//! `conv_stage` (convolution, optional batch norm, optional activation) and `pooling`.

use super::{always, Rule, RuleTable};
use genie_ir::Tag;

const ACTIVATIONS: &[&str] = &[
    "aten.relu.default",
    "aten.relu_.default",
    "aten.relu6.default",
    "aten.silu.default",
    "aten.gelu.default",
    "aten.hardtanh.default",
    "aten.hardswish.default",
    "aten.leaky_relu.default",
    "aten.sigmoid.default",
    "aten.clamp.default",
];

pub fn conv_stage_table() -> RuleTable {
    let conv = "(aten.convolution.default ?x ?w ?b)";
    let bn = format!("(aten.batch_norm.default {conv} ?gamma ?beta ?mean ?var)");
    let mut rules = vec![Rule::new("conv", conv, always), Rule::new("conv + batch norm", bn.clone(), always)];
    for act in ACTIVATIONS {
        rules.push(Rule::new(format!("conv + {act}"), format!("({act} {conv})"), always));
        rules.push(Rule::new(format!("conv + batch norm + {act}"), format!("({act} {bn})"), always));
    }
    RuleTable { domain: "cnn", tag: Tag::ConvStage, rules }
}

pub fn pooling_table() -> RuleTable {
    let ops = [
        "aten.max_pool1d.default",
        "aten.max_pool2d.default",
        "aten.max_pool3d.default",
        "aten.max_pool2d_with_indices.default#0",
        "aten.avg_pool1d.default",
        "aten.avg_pool2d.default",
        "aten.avg_pool3d.default",
        "aten.adaptive_avg_pool1d.default",
        "aten.adaptive_avg_pool2d.default",
        "aten._adaptive_avg_pool2d.default",
        "aten.adaptive_max_pool2d.default#0",
    ];
    let mut rules: Vec<Rule> = ops.iter().map(|op| Rule::new(*op, format!("({op} ?x)"), always)).collect();
    rules.push(Rule::new("global average (mean over H, W)", "(aten.mean.dim ?x)", reduces_spatial_dims));
    rules.push(Rule::new("global max (amax over H, W)", "(aten.amax.default ?x)", reduces_spatial_dims));
    RuleTable { domain: "pooling", tag: Tag::Pooling, rules }
}

/// A reduction of an NCHW tensor over exactly its two spatial dims.
fn reduces_spatial_dims(m: &crate::tagging::MatchCtx) -> bool {
    let Some(node) = m.root_node() else { return false };
    let Some(genie_ir::Arg::Tensor(x)) = node.args.first() else { return false };
    if m.graph.value(*x).ty.rank() != 4 {
        return false;
    }
    let Some(genie_ir::Arg::Ints(dims)) = node.args.get(1) else { return false };
    let mut d: Vec<i64> = dims.iter().map(|&v| if v < 0 { v + 4 } else { v }).collect();
    d.sort();
    d == [2, 3]
}
