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
