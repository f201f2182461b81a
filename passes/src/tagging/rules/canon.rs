//! Canonicalising rewrites: they only add equalities, so patterns can look through layout ops
//! and match one spelling of each operation. None of them grows the graph by more than one
//! e-node per match.

use egg::{rewrite as rw, Rewrite, SymbolLang};
use genie_ir::registry;

use crate::tagging::egraph::SrgAnalysis;

/// True when canonicalisation looks through an op: it changes layout, dtype or nothing at all
/// (the registry's [`OpFacts::same_data`](genie_ir::registry::OpFacts::same_data)).
pub fn is_look_through(op: &str) -> bool {
    registry::facts(op).same_data()
}

fn weight(var: &'static str) -> impl Fn(&mut egg::EGraph<SymbolLang, SrgAnalysis>, egg::Id, &egg::Subst) -> bool {
    let v: egg::Var = var.parse().expect("static variable name");
    move |eg, _, subst| eg[subst[v]].data.weight
}

/// The canonicalising rewrites.
pub fn rules() -> Vec<Rewrite<SymbolLang, SrgAnalysis>> {
    let mut rules: Vec<Rewrite<SymbolLang, SrgAnalysis>> = Vec::new();
    // `(op ?x)` is `?x` for ops that keep their input's data; ops that take their shape or
    // dtype from a second tensor (`type_as`, `view_as`, `expand_as`) match `(op ?x ?like)`.
    for (op, def) in registry::registry().ops().filter(|(_, def)| def.facts.same_data()) {
        let children = match def.tensor_arity() {
            1 => "?x",
            2 => "?x ?like",
            _ => continue,
        };
        let lhs: egg::Pattern<SymbolLang> = format!("({op} {children})").parse().expect("an op name is a symbol");
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
