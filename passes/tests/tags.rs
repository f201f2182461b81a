//! "This graph ⇒ these tag counts and this phase" on programs built in code.

use genie_ir::example::{tiny_decoder, tiny_decoder_pair};
use genie_ir::{Phase, Program, Residency};
use genie_passes::tagging::tag_counts;
use genie_passes::PassManager;

/// Run the standard pipeline on a program; assert an entry's tag counts and phase.
macro_rules! test_tags {
    ($name:ident, $program:expr, $entry:literal => $phase:expr, { $($tag:literal => $count:expr),* $(,)? }) => {
        #[test]
        fn $name() {
            let mut p: Program = $program;
            PassManager::standard().run(&mut p, None).expect("passes run and verify");
            let g = p.entry($entry).expect("entry exists");
            let want: std::collections::BTreeMap<String, usize> = [$(($tag.to_string(), $count)),*].into_iter().collect();
            assert_eq!(tag_counts(g), want, "tags of {}", g.name);
            assert_eq!(g.phase, $phase, "phase of {}", g.name);
        }
    };
}

test_tags!(example_prefill, tiny_decoder().unwrap(), "prefill" => Phase::LlmPrefill, {
    "attention" => 1, "mlp" => 1, "norm" => 3, "embedding" => 2, "lm_head" => 1, "residual" => 2,
});

test_tags!(example_decode, tiny_decoder_pair().unwrap(), "decode" => Phase::LlmDecode, {
    "attention" => 1, "mlp" => 1, "norm" => 3, "embedding" => 2, "lm_head" => 1, "residual" => 2,
    "kv_cache_update" => 2,
});

#[test]
fn state_bindings_are_detected_without_hints() {
    let mut p = tiny_decoder_pair().unwrap();
    PassManager::standard().run(&mut p, None).unwrap();
    let got: Vec<String> = p
        .state_bindings
        .iter()
        .map(|b| format!("{}.{}->{}.{}", b.from.entry, b.from.name, b.to.entry, b.to.name))
        .collect();
    assert_eq!(
        got,
        [
            "decode.present_key_0->decode.past_key_0",
            "decode.present_value_0->decode.past_value_0",
            "prefill.present_key_0->decode.past_key_0",
            "prefill.present_value_0->decode.past_value_0",
        ]
    );
    let decode = p.entry("decode").unwrap();
    let past = decode.inputs[1];
    assert_eq!(decode.value(past).ann.residency, Some(Residency::StatefulKvCache));
    let logits = decode.outputs[0].value;
    assert_eq!(decode.value(logits).ann.residency, Some(Residency::EphemeralActivation));
}

#[test]
fn explicit_state_bindings_replace_detection() {
    let mut p = tiny_decoder_pair().unwrap();
    let overrides =
        genie_passes::state::parse_state_overrides(&p, &["prefill.present_key_0=past_key_0".to_string()]).unwrap();
    let opts = genie_passes::PassOptions { state_overrides: overrides, ..Default::default() };
    PassManager::with_options(opts).run(&mut p, None).unwrap();
    assert_eq!(p.state_bindings.len(), 1);
    assert!(genie_passes::state::parse_state_overrides(&p, &["nope=past_key_0".to_string()]).is_err());
    assert!(
        genie_passes::state::parse_state_overrides(&p, &["present_key_0=past_key_0".to_string()]).is_err(),
        "ambiguous"
    );
}

#[test]
fn cost_hints_follow_bindings() {
    let run = |s0: i64| {
        let mut p = tiny_decoder().unwrap();
        let opts = genie_passes::PassOptions { bindings: [("s0".to_string(), s0)].into(), ..Default::default() };
        PassManager::with_options(opts).run(&mut p, None).unwrap();
        genie_passes::cost::total_flops(&p.entries[0])
    };
    let (small, large) = (run(8), run(32));
    assert!(small > 0 && large > 3 * small, "FLOPs grow with the sequence: {small} vs {large}");
    let mut p = tiny_decoder().unwrap();
    let opts = genie_passes::PassOptions { bindings: [("s0".to_string(), 100_000)].into(), ..Default::default() };
    let err = PassManager::with_options(opts).run(&mut p, None).unwrap_err();
    assert!(err.to_string().contains("outside its range"), "{err}");
}

use genie_ir::synthetic::{synthetic_llama, ExportForm, LlamaShape};

test_tags!(synthetic_llama_default_form, synthetic_llama(LlamaShape::small(4), ExportForm::Default).unwrap(), "prefill" => Phase::LlmPrefill, {
    "attention" => 4, "mlp" => 4, "norm" => 9, "embedding" => 1, "lm_head" => 1, "residual" => 8,
});

test_tags!(synthetic_llama_core_aten_form, synthetic_llama(LlamaShape::small(4), ExportForm::CoreAten).unwrap(), "prefill" => Phase::LlmPrefill, {
    "attention" => 4, "mlp" => 4, "norm" => 9, "embedding" => 1, "lm_head" => 1, "residual" => 8,
});

/// A decode step over a static (preallocated) cache written in place: `index_copy` or
/// `slice_scatter` at the current position, attention over the whole cache, the cache returned.
fn static_cache_decode(write: &str) -> Program {
    use genie_ir::{Arg, DType, Graph, TensorType};
    let mut g = Graph::new("decode");
    let cache_ty = TensorType::new(DType::Float32, &[1, 2, 16, 8]);
    let q = g.add_input("query", TensorType::new(DType::Float32, &[1, 2, 1, 8]));
    let new_k = g.add_input("key_states", TensorType::new(DType::Float32, &[1, 2, 1, 8]));
    let new_v = g.add_input("value_states", TensorType::new(DType::Float32, &[1, 2, 1, 8]));
    let pos = g.add_input("cache_position", TensorType::new(DType::Int64, &[1]));
    let cache_k = g.add_input("cache_key_0", cache_ty.clone());
    let cache_v = g.add_input("cache_value_0", cache_ty);
    let update = |g: &mut Graph, cache, new| match write {
        "index_copy" => g
            .add_op(
                "aten.index_copy.default",
                vec![Arg::Tensor(cache), Arg::Int(2), Arg::Tensor(pos), Arg::Tensor(new)],
            )
            .unwrap(),
        _ => g
            .add_op(
                "aten.slice_scatter.default",
                vec![Arg::Tensor(cache), Arg::Tensor(new), Arg::Int(2), Arg::Int(3), Arg::Int(4), Arg::Int(1)],
            )
            .unwrap(),
    };
    let k = update(&mut g, cache_k, new_k);
    let v = update(&mut g, cache_v, new_v);
    let att = g
        .add_op(
            "aten.scaled_dot_product_attention.default",
            vec![
                Arg::Tensor(q),
                Arg::Tensor(k),
                Arg::Tensor(v),
                Arg::None,
                Arg::Float(0.0),
                Arg::Bool(false),
                Arg::None,
                Arg::Bool(false),
            ],
        )
        .unwrap();
    g.add_output("attn_output", att);
    g.add_output("updated_key_0", k);
    g.add_output("updated_value_0", v);
    let mut p = Program::new("static_cache");
    p.entries.push(g);
    p
}

test_tags!(static_cache_index_copy, static_cache_decode("index_copy"), "decode" => Phase::LlmDecode, {
    "attention" => 1, "kv_cache_update" => 2,
});

test_tags!(static_cache_slice_scatter, static_cache_decode("slice_scatter"), "decode" => Phase::LlmDecode, {
    "attention" => 1, "kv_cache_update" => 2,
});

#[test]
fn static_cache_binds_to_itself() {
    let mut p = static_cache_decode("index_copy");
    PassManager::standard().run(&mut p, None).unwrap();
    let got: Vec<String> = p.state_bindings.iter().map(|b| format!("{}->{}", b.from.name, b.to.name)).collect();
    assert_eq!(got, ["updated_key_0->cache_key_0", "updated_value_0->cache_value_0"]);
}

/// Attention written by hand in the spellings transformers models use, each tagged once with
/// its region running from Q, K and V to the output: ALiBi's bias through `baddbmm` then a
/// mask (BLOOM), scaled scores with a sink's logit column joined and sliced off after the
/// softmax (GPT-OSS, Flint), and scores cast around the softmax.
fn hand_written_attention(spelling: &str) -> Program {
    use genie_ir::{Arg, DType, Graph, TensorType};
    let f32 = |shape: &[i64]| TensorType::new(DType::Float32, shape);
    let mut g = Graph::new("model");
    let q = g.add_input("q", f32(&[4, 6, 8]));
    let k = g.add_input("k", f32(&[4, 6, 8]));
    let v = g.add_input("v", f32(&[4, 6, 8]));
    let mask = g.add_input("mask", f32(&[4, 6, 6]));
    let kt = g.add_op("aten.transpose.int", vec![Arg::Tensor(k), Arg::Int(1), Arg::Int(2)]).unwrap();
    let scores = match spelling {
        "alibi" => {
            let alibi = g.add_input("alibi", f32(&[4, 1, 6]));
            let s = g
                .add_op(
                    "aten.baddbmm.default",
                    vec![Arg::Tensor(alibi), Arg::Tensor(q), Arg::Tensor(kt), Arg::Float(1.0), Arg::Float(0.35)],
                )
                .unwrap();
            g.add_op("aten.add.Tensor", vec![Arg::Tensor(s), Arg::Tensor(mask), Arg::Int(1)]).unwrap()
        }
        _ => {
            let s = g.add_op("aten.bmm.default", vec![Arg::Tensor(q), Arg::Tensor(kt)]).unwrap();
            let s = g.add_op("aten.mul.Scalar", vec![Arg::Tensor(s), Arg::Float(0.35)]).unwrap();
            g.add_op("aten.add.Tensor", vec![Arg::Tensor(s), Arg::Tensor(mask), Arg::Int(1)]).unwrap()
        }
    };
    let probs = match spelling {
        "sink" => {
            let sink = g.add_input("sink", f32(&[4, 6, 1]));
            let joined = g.add_op("aten.cat.default", vec![Arg::Tensors(vec![scores, sink]), Arg::Int(-1)]).unwrap();
            let p =
                g.add_op("aten._softmax.default", vec![Arg::Tensor(joined), Arg::Int(-1), Arg::Bool(false)]).unwrap();
            g.add_op("aten.slice.Tensor", vec![Arg::Tensor(p), Arg::Int(2), Arg::Int(0), Arg::Int(6), Arg::Int(1)])
                .unwrap()
        }
        _ => {
            let wide = g
                .add_op(
                    "aten.to.dtype",
                    vec![
                        Arg::Tensor(scores),
                        Arg::DType(DType::Float64),
                        Arg::Bool(false),
                        Arg::Bool(false),
                        Arg::None,
                    ],
                )
                .unwrap();
            let p = g.add_op("aten._softmax.default", vec![Arg::Tensor(wide), Arg::Int(-1), Arg::Bool(false)]).unwrap();
            g.add_op(
                "aten.to.dtype",
                vec![Arg::Tensor(p), Arg::DType(DType::Float32), Arg::Bool(false), Arg::Bool(false), Arg::None],
            )
            .unwrap()
        }
    };
    let out = g.add_op("aten.bmm.default", vec![Arg::Tensor(probs), Arg::Tensor(v)]).unwrap();
    g.add_output("out", out);
    let mut p = Program::new(spelling);
    p.entries.push(g);
    p
}

#[test]
fn attention_written_by_hand_is_tagged_in_every_spelling() {
    for spelling in ["alibi", "sink", "cast"] {
        let mut p = hand_written_attention(spelling);
        PassManager::standard().run(&mut p, None).expect("passes run and verify");
        let g = &p.entries[0];
        let regions: Vec<_> = g.regions.iter().filter(|r| r.tag == genie_ir::Tag::Attention).collect();
        assert_eq!(regions.len(), 1, "{spelling}: {:?}", tag_counts(g));
        let entries: Vec<&str> = regions[0].entries.iter().map(|v| g.value(*v).name.as_str()).collect();
        for input in ["q", "v", "mask"] {
            assert!(entries.contains(&input), "{spelling}: the region starts at {input}: {entries:?}");
        }
        // Every op from the products to the output is in the region: all but Kᵀ, its operand.
        assert_eq!(regions[0].nodes.len(), g.nodes.len() - 1, "{spelling}: {:?}", regions[0].nodes);
    }
}
