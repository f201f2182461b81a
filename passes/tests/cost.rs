//! The cost pass's numbers against formulas worked out by hand, independent of the registry's
//! cost functions: an element-wise op costs one FLOP per output element, a product `2·M·N·K`,
//! a convolution `2 · outputs · Cin · kh · kw`; bytes read are every tensor argument's bytes,
//! bytes written the outputs'. Symbols are bound as `--bind` says.

use std::collections::BTreeMap;

use genie_ir::{Arg, CostHints, DType, Dim, Graph, Program, SymRange, TensorType};
use genie_passes::cost::CostHintsPass;
use genie_passes::Pass;

fn f32s(shape: &[i64]) -> TensorType {
    TensorType::new(DType::Float32, shape)
}

/// Run the cost pass on a one-graph program and return each node's hints, in node order.
fn hints(g: Graph, bindings: &[(&str, i64)]) -> Vec<CostHints> {
    let mut p = Program::new("cost");
    p.entries.push(g);
    let bindings: BTreeMap<String, i64> = bindings.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    CostHintsPass { bindings, request: None }.run(&mut p).expect("the cost pass runs");
    p.entries[0].nodes.iter().map(|n| n.ann.cost.clone().expect("every node has hints")).collect()
}

#[test]
fn element_wise_add_is_one_flop_per_element() {
    let mut g = Graph::new("g");
    let a = g.add_input("a", f32s(&[1, 2, 32]));
    let b = g.add_input("b", f32s(&[1, 2, 32]));
    let y = g.add_op("aten.add.Tensor", vec![Arg::Tensor(a), Arg::Tensor(b), Arg::Int(1)]).unwrap();
    g.add_output("y", y);
    let h = &hints(g, &[])[0];
    assert_eq!(h.flops, 64, "1 × 2 × 32 elements");
    assert_eq!(h.bytes_read, 2 * 64 * 4, "two f32 operands");
    assert_eq!(h.bytes_written, 64 * 4);
    assert_eq!(h.intensity, 64.0 / (3.0 * 256.0));
}

#[test]
fn products_are_two_m_n_k() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[3, 5]));
    let w = g.add_input("w", f32s(&[5, 7]));
    let mm = g.add_op("aten.mm.default", vec![Arg::Tensor(x), Arg::Tensor(w)]).unwrap();
    let lx = g.add_input("lx", f32s(&[4, 8]));
    let lw = g.add_input("lw", f32s(&[16, 8]));
    let lb = g.add_input("lb", f32s(&[16]));
    let linear = g.add_op("aten.linear.default", vec![Arg::Tensor(lx), Arg::Tensor(lw), Arg::Tensor(lb)]).unwrap();
    g.add_output("mm", mm);
    g.add_output("linear", linear);
    let h = hints(g, &[]);
    // mm: M=3, N=7, K=5.
    assert_eq!(h[0].flops, 2 * 3 * 7 * 5);
    assert_eq!(h[0].bytes_read, (3 * 5 + 5 * 7) * 4);
    assert_eq!(h[0].bytes_written, 3 * 7 * 4);
    // linear: M=4, N=16, K=8; the bias is read.
    assert_eq!(h[1].flops, 2 * 4 * 16 * 8);
    assert_eq!(h[1].bytes_read, (4 * 8 + 16 * 8 + 16) * 4);
    assert_eq!(h[1].bytes_written, 4 * 16 * 4);
}

#[test]
fn a_convolution_is_two_flops_per_multiply_add_of_its_window() {
    let mut g = Graph::new("g");
    let x = g.add_input("x", f32s(&[1, 3, 8, 8]));
    let w = g.add_input("w", f32s(&[4, 3, 3, 3]));
    let args = vec![
        Arg::Tensor(x),
        Arg::Tensor(w),
        Arg::None,
        Arg::Ints(vec![1, 1]),
        Arg::Ints(vec![1, 1]),
        Arg::Ints(vec![1, 1]),
        Arg::Int(1),
    ];
    let y = g.add_op("aten.conv2d.default", args).unwrap();
    g.add_output("y", y);
    let h = &hints(g, &[])[0];
    // 4 × 8 × 8 outputs (padding 1 keeps 8 × 8), each 3 × 3 × 3 multiply-adds.
    assert_eq!(h.flops, 2 * (4 * 8 * 8) * (3 * 3 * 3));
    assert_eq!(h.bytes_read, (3 * 8 * 8 + 4 * 3 * 3 * 3) * 4);
    assert_eq!(h.bytes_written, 4 * 8 * 8 * 4);
}

#[test]
fn symbolic_sizes_are_bound_as_given() {
    let mut g = Graph::new("g");
    g.add_symbol("s0", SymRange { min: 1, max: Some(1024) });
    let s0 = Dim::symbol("s0");
    let x = g.add_input("x", TensorType::with_dims(DType::Float32, vec![Dim::constant(1), s0, Dim::constant(32)]));
    let w = g.add_input("w", f32s(&[64, 32]));
    let y = g.add_op("aten.linear.default", vec![Arg::Tensor(x), Arg::Tensor(w), Arg::None]).unwrap();
    g.add_output("y", y);
    let at = |s: i64| hints(g.clone(), &[("s0", s)])[0].clone();
    // M = s0 positions, N = 64, K = 32.
    assert_eq!(at(10).flops, 2 * 10 * 64 * 32);
    assert_eq!(at(512).flops, 2 * 512 * 64 * 32);
    assert_eq!(at(10).bytes_read, (10 * 32 + 64 * 32) * 4);
    // Unbound, the symbol takes its range's maximum (at most the default cap).
    assert_eq!(hints(g, &[])[0].flops, 2 * 1024 * 64 * 32);
}

/// With a request shape, an LLM entry's sequence symbols take the prompt length (prefill) or the
/// mean decode context (decode), clamped to their ranges; a batch symbol (the first dim of the
/// token ids) keeps its default; `--bind` overrides both.
#[test]
fn a_request_shape_binds_sequence_symbols_but_not_the_batch() {
    use genie_ir::{InputRole, Phase, RequestShape};
    use genie_passes::cost::entry_bindings;
    let mut g = Graph::new("prefill");
    g.symbols.insert("b".into(), SymRange { min: 1, max: Some(64) });
    g.symbols.insert("s".into(), SymRange { min: 1, max: Some(300) });
    let ty = TensorType { dtype: DType::Int64, shape: vec![Dim::symbol("b"), Dim::symbol("s")] };
    let ids = g.add_input("input_ids", ty);
    g.values[ids.index()].ann.role = Some(InputRole::TokenIds);
    let request = RequestShape { prompt_len: 256, new_tokens: 128 };
    let none = BTreeMap::new();
    g.phase = Phase::LlmPrefill;
    let b = entry_bindings(&g, &none, Some(&request));
    assert_eq!((b["b"], b["s"]), (64, 256), "the batch keeps its default (its range's maximum)");
    g.phase = Phase::LlmDecode;
    assert_eq!(entry_bindings(&g, &none, Some(&request))["s"], 300, "256 + 64, clamped to 300");
    let given = BTreeMap::from([("s".to_string(), 7)]);
    assert_eq!(entry_bindings(&g, &given, Some(&request))["s"], 7);
    g.phase = Phase::Encoder;
    assert_eq!(entry_bindings(&g, &none, Some(&request))["s"], 300, "not an LLM entry: the default");
}
