//! `norm`: layer norm, group norm and RMS norm (fused or written out).

use super::{always, Rule, RuleTable};
use genie_ir::Tag;

pub fn table() -> RuleTable {
    let mut rules = vec![
        Rule::new("layer_norm", "(aten.layer_norm.default ?x ?w ?b)", always),
        Rule::new("rms_norm", "(aten.rms_norm.default ?x ?w)", always),
        Rule::new("group_norm", "(aten.group_norm.default ?x ?w ?b)", always),
        Rule::new("native_group_norm", "(aten.native_group_norm.default#0 ?x ?w ?b)", always),
    ];
    // RMS norm written out: x · rsqrt(mean(x²) + eps) (· weight), in the spellings exporters use.
    let squares = ["(aten.pow.Tensor_Scalar ?x)", "(aten.mul.Tensor ?x ?x)"];
    for (si, sq) in squares.iter().enumerate() {
        let mean = format!("(aten.mean.dim {sq})");
        let variances = [format!("(aten.add.Tensor {mean} ?eps)"), format!("(aten.add.Scalar {mean})")];
        for (vi, var) in variances.iter().enumerate() {
            let normalised = [
                format!("(aten.mul.Tensor ?x (aten.rsqrt.default {var}))"),
                format!("(aten.mul.Tensor (aten.rsqrt.default {var}) ?x)"),
                format!("(aten.div.Tensor ?x (aten.sqrt.default {var}))"),
                format!("(aten.mul.Tensor ?x (aten.reciprocal.default (aten.sqrt.default {var})))"),
                format!("(aten.mul.Tensor (aten.reciprocal.default (aten.sqrt.default {var})) ?x)"),
            ];
            for (ni, n) in normalised.iter().enumerate() {
                let id = format!("{si}{vi}{ni}");
                rules.push(Rule::new(
                    format!("rms norm {id} with weight"),
                    format!("(aten.mul.Tensor ?w {n})"),
                    always,
                ));
                rules.push(Rule::new(
                    format!("rms norm {id} with weight (commuted)"),
                    format!("(aten.mul.Tensor {n} ?w)"),
                    always,
                ));
                rules.push(Rule::new(format!("rms norm {id}"), n.clone(), always));
            }
        }
    }
    RuleTable { domain: "norm", tag: Tag::Norm, rules }
}
