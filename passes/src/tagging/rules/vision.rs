//! `patch_embed`: a convolution over the input image whose stride equals its kernel and whose
//! output becomes a token sequence (flatten + transpose, or a permute in core ATen).

use super::{Rule, RuleTable};
use crate::tagging::MatchCtx;
use genie_ir::registry::Contraction;
use genie_ir::{Arg, Tag};

/// The convolution reads a graph input and steps one whole kernel at a time.
fn image_patches(m: &MatchCtx) -> bool {
    if !m.facts("?img").input {
        return false;
    }
    let (img, w) = (m.class("?img"), m.class("?w"));
    m.graph.nodes.iter().any(|node| {
        if genie_ir::registry::facts(&node.op).contraction != Some(Contraction::Convolution) {
            return false;
        }
        let (Some(Arg::Tensor(x)), Some(Arg::Tensor(k))) = (node.args.first(), node.args.get(1)) else { return false };
        if m.srg.class(*x) != img || m.srg.class(*k) != w {
            return false;
        }
        let kernel = m.graph.value(*k).ty.static_shape().map(|s| s.get(2..).unwrap_or_default().to_vec());
        let stride = match node.args.get(3) {
            Some(Arg::Ints(s)) => s.clone(),
            _ => return false,
        };
        match kernel {
            Some(k) if !k.is_empty() => k == stride || (stride.len() == 1 && k.iter().all(|x| *x == stride[0])),
            _ => false,
        }
    })
}

pub fn table() -> RuleTable {
    let conv = "(aten.convolution.default ?img ?w ?b)";
    RuleTable {
        domain: "vision",
        tag: Tag::PatchEmbed,
        rules: vec![
            Rule::new("conv → tokens (transpose)", format!("(aten.transpose.int {conv})"), image_patches),
            Rule::new("conv → tokens (permute)", format!("(aten.permute.default {conv})"), image_patches),
        ],
    }
}
