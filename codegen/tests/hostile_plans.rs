//! Plans built to hurt the readers, RON and binary: each is refused with a typed error, on a
//! test thread's stack, before it can overflow the stack or allocate what it claims.

mod common;

use common::*;
use genie_codegen::{
    check_types, from_binary, from_ron, to_binary, to_ron, PlanCheckError, PlanIoError, ProgramPlan, Step,
};
use genie_ir::TensorType;
use genie_passes::placement::ClusterSpec;

fn plan() -> ProgramPlan {
    let program = passes(gpt_pair(Gpt::small(1)));
    compile(&program, &ClusterSpec::local_workers(2, 1 << 30), &opts(Some(16))).expect("compiles").2
}

/// The RON plan with its first symbolic dim replaced by `dim`.
fn ron_with_dim(dim: &str) -> String {
    let text = to_ron(&plan()).unwrap();
    assert!(text.contains("\"s0\""), "the plan has a symbolic dim");
    text.replacen("\"s0\"", &format!("\"{dim}\""), 1)
}

/// The binary plan with its first symbolic dim replaced by `dim` (same length prefix width, so
/// the rest of the encoding is untouched).
fn binary_with_dim(dim: &str) -> Vec<u8> {
    let bytes = to_binary(&plan()).unwrap();
    let needle = genie_codegen::binary::to_bytes("s0").unwrap();
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("the plan has `s0`");
    let mut out = bytes[..at].to_vec();
    out.extend(genie_codegen::binary::to_bytes(dim).unwrap());
    out.extend_from_slice(&bytes[at + needle.len()..]);
    out
}

#[test]
fn plans_round_trip_through_the_splicing_helpers() {
    let p = plan();
    assert_eq!(from_ron(&ron_with_dim("s0")).unwrap(), p);
    assert_eq!(from_binary(&binary_with_dim("s0")).unwrap(), p);
    // And what they splice in is read: another dim makes another plan.
    assert_ne!(from_ron(&ron_with_dim("s0 + 1")).unwrap(), p);
    assert_ne!(from_binary(&binary_with_dim("s0 + 1")).unwrap(), p);
}

#[test]
fn a_dim_of_100000_nested_parentheses_is_refused() {
    let dim = format!("{}s0{}", "(".repeat(100_000), ")".repeat(100_000));
    let err = from_ron(&ron_with_dim(&dim)).unwrap_err();
    assert!(matches!(err, PlanIoError::Ron(_)), "{err}");
    assert!(err.to_string().contains("exceeds the 4096-byte limit"), "{err}");
    let err = from_binary(&binary_with_dim(&dim)).unwrap_err();
    assert!(matches!(err, PlanIoError::Binary(_)), "{err}");
    assert!(err.to_string().contains("exceeds the 4096-byte limit"), "{err}");
}

#[test]
fn deep_dims_are_refused_where_they_cross_the_limit() {
    let dim = format!("{}s0{}", "(".repeat(1000), ")".repeat(1000));
    for err in [from_ron(&ron_with_dim(&dim)).unwrap_err(), from_binary(&binary_with_dim(&dim)).unwrap_err()] {
        assert!(err.to_string().contains("nests deeper than 64 levels at byte 64"), "{err}");
    }
    let chain = format!("s0{}", "//s1".repeat(500));
    for err in [from_ron(&ron_with_dim(&chain)).unwrap_err(), from_binary(&binary_with_dim(&chain)).unwrap_err()] {
        assert!(err.to_string().contains("nests deeper than 32 levels"), "{err}");
    }
}

#[test]
fn deep_ron_structure_is_refused() {
    let text = to_ron(&plan()).unwrap();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let version = format!("version: {},", genie_codegen::PLAN_FORMAT_VERSION);
    let hostile = text.replacen(&version, &format!("{version} junk: {deep},"), 1);
    assert_ne!(hostile, text);
    let err = from_ron(&hostile).unwrap_err();
    assert!(err.to_string().contains("recursion limit"), "{err}");
}

#[test]
fn truncated_and_corrupted_binary_plans_are_errors() {
    let bytes = to_binary(&plan()).unwrap();
    for cut in (0..bytes.len()).step_by(97) {
        assert!(from_binary(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    // Every byte flipped in turn: an error or a plan, never a panic.
    for i in (12..bytes.len()).step_by(13) {
        let mut b = bytes.clone();
        b[i] ^= 0xff;
        let _ = from_binary(&b);
    }
}

/// The first `Exec` step of the plan: (entry index, device plan index, step index).
fn first_exec(p: &ProgramPlan) -> (usize, usize, usize) {
    for (e, entry) in p.entries.iter().enumerate() {
        for (d, dp) in entry.plans.iter().enumerate() {
            if let Some(s) = dp.steps.iter().position(|s| matches!(s, Step::Exec { .. })) {
                return (e, d, s);
            }
        }
    }
    panic!("the plan executes nothing")
}

#[test]
fn a_compiled_plan_passes_the_type_check() {
    assert_eq!(check_types(&plan()), Ok(()));
}

#[test]
fn an_output_typed_larger_than_its_op_makes_is_refused_naming_the_node() {
    let mut p = plan();
    let (e, d, s) = first_exec(&p);
    let Step::Exec { node, outputs, .. } = p.entries[e].plans[d].steps[s].clone() else { unreachable!() };
    let info = p.entries[e].tensors.get_mut(&outputs[0]).unwrap();
    let honest = info.ty.clone();
    // A worker sizing memory from this type would admit far more than the kernel makes.
    info.ty = TensorType::new(honest.dtype, &[1 << 20, 1 << 20]);
    match check_types(&p).unwrap_err() {
        PlanCheckError::Mismatch { node: n, tensor, types, .. } => {
            assert_eq!((n, tensor), (node, outputs[0]));
            assert_eq!(types.1, honest, "the inferred type is the honest one");
        }
        other => panic!("expected a mismatch, got {other}"),
    }
}

#[test]
fn a_step_naming_a_missing_tensor_or_an_unknown_op_is_refused() {
    let mut p = plan();
    let (e, d, s) = first_exec(&p);
    let Step::Exec { outputs, .. } = p.entries[e].plans[d].steps[s].clone() else { unreachable!() };
    p.entries[e].tensors.remove(&outputs[0]);
    let err = check_types(&p).unwrap_err();
    assert!(matches!(&err, PlanCheckError::UnknownTensor { tensor, .. } if *tensor == outputs[0]), "{err}");

    let mut p = plan();
    if let Step::Exec { op, .. } = &mut p.entries[e].plans[d].steps[s] {
        *op = "aten::launch_missiles".into();
    }
    let err = check_types(&p).unwrap_err();
    assert!(matches!(&err, PlanCheckError::Inference { op, .. } if op == "aten::launch_missiles"), "{err}");
}
