//! The verifier catches each kind of broken graph with its own named error.

use genie_ir::example::tiny_decoder;
use genie_ir::{
    verify_program, Arg, DType, Dim, NodeId, Program, Region, RegionId, Residency, Tag, TensorType, ValueDef, ValueId,
    VerifyError,
};

fn example() -> Program {
    let p = tiny_decoder().expect("example builds");
    verify_program(&p).expect("the unbroken example verifies");
    p
}

/// Index of the first node with this op.
fn find(p: &Program, op: &str) -> usize {
    p.entries[0].nodes.iter().position(|n| n.op == op).unwrap_or_else(|| panic!("no {op} in the example"))
}

#[test]
fn cycle_is_caught() {
    let mut p = example();
    let g = &mut p.entries[0];
    // Make the first add read the output of a later node that depends on it.
    let first_add = g.nodes.iter().position(|n| n.op == "aten.add.Tensor").unwrap();
    let later = g.nodes.len() - 1;
    let later_out = g.nodes[later].outputs[0];
    let own_type = g.value(g.nodes[first_add].outputs[0]).ty.clone();
    g.value_mut(later_out).ty = own_type;
    g.nodes[first_add].args[1] = Arg::Tensor(later_out);
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::Cycle { .. }), "{err}");
}

#[test]
fn undefined_value_is_caught() {
    let mut p = example();
    let i = find(&p, "aten.gelu.default");
    p.entries[0].nodes[i].args[0] = Arg::Tensor(ValueId(9999));
    let err = verify_program(&p).unwrap_err();
    match &err {
        VerifyError::UndefinedValue { place, value, .. } => {
            assert_eq!(*value, ValueId(9999));
            assert_eq!(place, &format!("node n{i} (aten.gelu.default)"), "names the node reading it");
        }
        other => panic!("expected UndefinedValue, got {other}"),
    }
    assert!(err.to_string().contains(&format!("node n{i} ")), "{err}");
}

#[test]
fn unknown_op_is_caught() {
    let mut p = example();
    let i = find(&p, "aten.gelu.default");
    p.entries[0].nodes[i].op = "aten.frobnicate.default".into();
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(&err, VerifyError::UnknownOp { op, .. } if op == "aten.frobnicate.default"), "{err}");
}

#[test]
fn fact_mismatch_is_caught() {
    let mut p = example();
    let i = find(&p, "aten.gelu.default");
    let out = p.entries[0].nodes[i].outputs[0];
    p.entries[0].value_mut(out).ty.dtype = DType::Float16;
    let err = verify_program(&p).unwrap_err();
    match &err {
        VerifyError::FactMismatch { node, op, .. } => {
            assert_eq!(*node, NodeId(i as u32));
            assert_eq!(op, "aten.gelu.default");
        }
        other => panic!("expected FactMismatch, got {other}"),
    }
}

#[test]
fn wrong_argument_kind_is_caught() {
    let mut p = example();
    let i = find(&p, "aten.gelu.default");
    p.entries[0].nodes[i].args[1] = Arg::Int(3); // approximate must be a string
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadArgs { .. }), "{err}");
    assert!(err.to_string().contains("approximate"), "names the argument: {err}");
}

#[test]
fn incompatible_shapes_are_caught() {
    let mut p = example();
    let i = find(&p, "aten.add.Tensor");
    // Add a [32, 16] weight to a [1, s0, 16] activation: broadcastable? No: 32 vs s0 is fine
    // symbolically, so use a [3, 5] constant to force a static mismatch.
    let g = &mut p.entries[0];
    let c = g.add_const("bad", TensorType::new(DType::Float32, &[3, 5]), vec![0; 60]);
    g.nodes[i].args[1] = Arg::Tensor(c);
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadArgs { .. }), "{err}");
    assert!(err.to_string().contains("broadcast"), "{err}");
}

#[test]
fn bad_definition_is_caught() {
    let mut p = example();
    let i = find(&p, "aten.gelu.default");
    let out = p.entries[0].nodes[i].outputs[0];
    p.entries[0].value_mut(out).def = ValueDef::Node { node: NodeId(0), index: 0 };
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadDefinition { .. }), "{err}");
}

#[test]
fn undeclared_symbol_is_caught() {
    let mut p = example();
    p.entries[0].symbols.clear();
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(&err, VerifyError::UndeclaredSymbol { symbol, .. } if symbol == "s0"), "{err}");
}

#[test]
fn duplicate_output_name_is_caught() {
    let mut p = example();
    let g = &mut p.entries[0];
    let v = g.outputs[0].value;
    g.add_output("logits", v);
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::DuplicateName { what: "output", .. }), "{err}");
}

#[test]
fn missing_weight_is_caught() {
    let mut p = example();
    p.weights = genie_ir::WeightStore::new();
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadWeight { .. }), "{err}");
}

#[test]
fn inconsistent_annotations_are_caught() {
    // Residency: an activation cannot be a persistent weight.
    let mut p = example();
    let i = find(&p, "aten.gelu.default");
    let out = p.entries[0].nodes[i].outputs[0];
    p.entries[0].value_mut(out).ann.residency = Some(Residency::PersistentWeight);
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadAnnotation { .. }), "{err}");

    // Region membership: a node listing a region that does not cover it.
    let mut p = example();
    let g = &mut p.entries[0];
    g.regions.push(Region { tag: Tag::Mlp, nodes: vec![NodeId(0)], entries: vec![], exits: vec![] });
    g.nodes[1].ann.regions.push(RegionId(0));
    let err = verify_program(&p).unwrap_err();
    // n0 is covered by the region without listing it: the first node found out of step.
    assert!(matches!(&err, VerifyError::BadAnnotation { place, .. } if place == "node n0"), "{err}");

    // Cost hints whose intensity contradicts flops/bytes.
    let mut p = example();
    p.entries[0].nodes[0].ann.cost =
        Some(genie_ir::CostHints { flops: 100, bytes_read: 10, bytes_written: 10, intensity: 42.0 });
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadAnnotation { .. }), "{err}");
}

#[test]
fn bad_state_binding_is_caught() {
    let mut p = example();
    p.state_bindings.push(genie_ir::StateBinding {
        from: genie_ir::Port { entry: "prefill".into(), name: "present_key_0".into() },
        to: genie_ir::Port { entry: "decode".into(), name: "past_key_0".into() },
    });
    let err = verify_program(&p).unwrap_err();
    assert!(matches!(err, VerifyError::BadStateBinding { .. }), "{err}");
    assert!(err.to_string().contains("decode"), "{err}");
}

#[test]
fn symbolic_dims_verify_through_views() {
    // The example's view/reshape chain runs on symbolic s0: facts must agree symbolically.
    let p = example();
    let g = &p.entries[0];
    let logits = g.outputs[0].value;
    assert_eq!(g.value(logits).ty.shape, vec![Dim::constant(1), Dim::symbol("s0"), Dim::constant(32)]);
}
