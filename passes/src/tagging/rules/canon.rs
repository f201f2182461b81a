//! Canonicalising rewrites: they only add equalities, so patterns can look through layout ops
//! and match one spelling of each operation. None of them grows the graph by more than one
//! e-node per match.

use egg::{rewrite as rw, Rewrite, SymbolLang};

use crate::tagging::egraph::SrgAnalysis;

/// Ops that change layout, dtype or nothing at all: `(op ?x ...)` is treated as `?x`.
const LOOK_THROUGH: &[&str] = &[
    "aten.view.default",
    "aten.reshape.default",
    "aten._unsafe_view.default",
    "aten.expand.default",
    "aten.clone.default",
    "aten.contiguous.default",
    "aten.alias.default",
    "aten.detach.default",
    "aten.lift_fresh_copy.default",
    "aten.dropout.default",
    "aten.feature_dropout.default",
    "aten._to_copy.default",
    "aten.to.dtype",
    "aten.to.dtype_layout",
    "aten.to.device",
    "aten.unsqueeze.default",
    "aten.squeeze.default",
    "aten.squeeze.dim",
    "aten.squeeze.dims",
    "aten.flatten.using_ints",
    "aten.unflatten.int",
];

/// Two-tensor ops that take their shape or dtype from the second argument.
const LOOK_THROUGH_LIKE: &[&str] =
    &["aten.type_as.default", "aten.view_as.default", "aten.reshape_as.default", "aten.expand_as.default"];

/// True when an op is one that canonicalisation looks through.
pub fn is_look_through(op: &str) -> bool {
    LOOK_THROUGH.contains(&op) || LOOK_THROUGH_LIKE.contains(&op)
}

fn weight(var: &'static str) -> impl Fn(&mut egg::EGraph<SymbolLang, SrgAnalysis>, egg::Id, &egg::Subst) -> bool {
    let v: egg::Var = var.parse().expect("static variable name");
    move |eg, _, subst| eg[subst[v]].data.weight
}

/// The canonicalising rewrites.
pub fn rules() -> Vec<Rewrite<SymbolLang, SrgAnalysis>> {
    let mut rules: Vec<Rewrite<SymbolLang, SrgAnalysis>> = Vec::new();
    for op in LOOK_THROUGH {
        let lhs: egg::Pattern<SymbolLang> = format!("({op} ?x)").parse().expect("static pattern");
        let rhs: egg::Pattern<SymbolLang> = "?x".parse().expect("static pattern");
        rules.push(Rewrite::new(format!("look-through {op}"), lhs, rhs).expect("valid rewrite"));
    }
    for op in LOOK_THROUGH_LIKE {
        let lhs: egg::Pattern<SymbolLang> = format!("({op} ?x ?like)").parse().expect("static pattern");
        let rhs: egg::Pattern<SymbolLang> = "?x".parse().expect("static pattern");
        rules.push(Rewrite::new(format!("look-through {op}"), lhs, rhs).expect("valid rewrite"));
    }
    rules.extend([
        // One spelling of a matrix product.
        rw!("mm is matmul"; "(aten.mm.default ?a ?b)" => "(aten.matmul.default ?a ?b)"),
        rw!("bmm is matmul"; "(aten.bmm.default ?a ?b)" => "(aten.matmul.default ?a ?b)"),
        // One spelling of a dense layer: x·Wᵀ + b, however the exporter wrote it.
        rw!("addmm of a transposed weight is linear"; "(aten.addmm.default ?b ?x (aten.permute.default ?w))" => "(aten.linear.default ?x ?w ?b)" if weight("?w")),
        rw!("addmm of t(weight) is linear"; "(aten.addmm.default ?b ?x (aten.t.default ?w))" => "(aten.linear.default ?x ?w ?b)" if weight("?w")),
        rw!("addmm of a weight is linear"; "(aten.addmm.default ?b ?x ?w)" => "(aten.linear.default ?x ?w ?b)" if weight("?w")),
        rw!("matmul by a transposed weight is linear"; "(aten.matmul.default ?x (aten.permute.default ?w))" => "(aten.linear.default ?x ?w none)" if weight("?w")),
        rw!("matmul by t(weight) is linear"; "(aten.matmul.default ?x (aten.t.default ?w))" => "(aten.linear.default ?x ?w none)" if weight("?w")),
        rw!("matmul by a weight is linear"; "(aten.matmul.default ?x ?w)" => "(aten.linear.default ?x ?w none)" if weight("?w")),
        rw!("linear plus bias is linear"; "(aten.add.Tensor (aten.linear.default ?x ?w none) ?b)" => "(aten.linear.default ?x ?w ?b)" if weight("?b")),
        rw!("bias plus linear is linear"; "(aten.add.Tensor ?b (aten.linear.default ?x ?w none))" => "(aten.linear.default ?x ?w ?b)" if weight("?b")),
        // One spelling of softmax, layer norm, batch norm, convolution, SiLU.
        rw!("softmax is _softmax"; "(aten.softmax.int ?x)" => "(aten._softmax.default ?x)"),
        rw!("native layer norm is layer norm"; "(aten.native_layer_norm.default#0 ?x ?w ?b)" => "(aten.layer_norm.default ?x ?w ?b)"),
        rw!("native batch norm is batch norm"; "(aten._native_batch_norm_legit_no_training.default#0 ?x ?w ?b ?m ?v)" => "(aten.batch_norm.default ?x ?w ?b ?m ?v)"),
        rw!("conv1d is convolution"; "(aten.conv1d.default ?x ?w ?b)" => "(aten.convolution.default ?x ?w ?b)"),
        rw!("conv2d is convolution"; "(aten.conv2d.default ?x ?w ?b)" => "(aten.convolution.default ?x ?w ?b)"),
        rw!("conv2d(padding) is convolution"; "(aten.conv2d.padding ?x ?w ?b)" => "(aten.convolution.default ?x ?w ?b)"),
        rw!("conv3d is convolution"; "(aten.conv3d.default ?x ?w ?b)" => "(aten.convolution.default ?x ?w ?b)"),
        rw!("x*sigmoid(x) is silu"; "(aten.mul.Tensor ?x (aten.sigmoid.default ?x))" => "(aten.silu.default ?x)"),
        rw!("sigmoid(x)*x is silu"; "(aten.mul.Tensor (aten.sigmoid.default ?x) ?x)" => "(aten.silu.default ?x)"),
    ]);
    rules
}
