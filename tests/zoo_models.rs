//! Model coverage (`testsuite/fixtures/zoo/`, made by `testsuite/scripts/make_zoo_fixtures.py`;
//! its `manifest.json` says what each family is and which forms exist): transformers decoders
//! with other attention spellings (ALiBi, multi-query, parallel blocks, rotary tables, learned
//! positions) and a mixture of experts, text and audio encoders, torchvision classifiers, a
//! diffusers UNet and a model of the ops lowered at import. Every family, in every form it was
//! exported to:
//! - imports, and gets the phase and tags its kind implies;
//! - runs split across two workers (real QUIC on loopback) and matches eager PyTorch: fp32 rtol
//!   1e-4 / atol 1e-5 for `.pt2`, rtol 1e-3 / atol 1e-4 for ONNX;
//! - decoders: its KV state is bound (two slots per layer), and greedy generation of 16 tokens
//!   on two workers equals the eager loop's tokens, every decode step moving the same few bytes
//!   (the cache stays where it is).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::{assert_close_within, compile_one, compile_split, fixture, read, start};
use genie_driver::pipeline::{bindings_from_shapes, compile_program, CompileOptions};
use genie_ir::{Phase, Tag};
use genie_passes::placement::{ClusterSpec, Policy};
use serde_json::Value;
use tch::Tensor;

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixture("zoo/manifest.json")).expect("zoo/manifest.json");
    serde_json::from_str(&text).expect("the zoo manifest parses")
}

fn family(name: &str) -> Value {
    let m = manifest();
    let f = m[name].clone();
    assert!(f.is_object(), "{name} is not in zoo/manifest.json");
    f
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// The forms a family was exported to; a form left out must say why in the manifest.
fn forms(name: &str, f: &Value) -> Vec<String> {
    let forms = strings(&f["forms"]);
    assert!(forms.contains(&"pt2".to_string()), "{name}: no .pt2 form");
    for (form, reason) in [("core", "no_core"), ("onnx", "no_onnx")] {
        assert!(
            forms.contains(&form.to_string()) || f[reason].as_str().is_some_and(|r| !r.is_empty()),
            "{name}: the {form} form is missing without a reason"
        );
    }
    forms
}

fn file(name: &str, graph: &str, form: &str) -> PathBuf {
    fixture(&format!(
        "zoo/{name}/{graph}{}",
        match form {
            "pt2" => ".pt2",
            "core" => "_core.pt2",
            _ => ".onnx",
        }
    ))
}

fn check_tags(what: &str, program: &genie_ir::Program, want: &[String]) {
    let mut found: BTreeMap<&str, usize> = BTreeMap::new();
    for g in &program.entries {
        for r in &g.regions {
            *found.entry(r.tag.name()).or_default() += 1;
        }
    }
    for tag in want {
        assert!(Tag::from_name(tag).is_some(), "the manifest names an unknown tag {tag}");
        assert!(found.contains_key(tag.as_str()), "{what}: no `{tag}` region (found {found:?})");
    }
}

/// Placed on two workers balancing memory, so both hold a part however small the weights are
/// next to the activations (a small CNN on images).
/// Symbols are bound by the call's input shapes, as `genie run` binds them (an ONNX export's
/// dims have no ranges).
fn compile_balanced(
    files: &[PathBuf],
    call: &BTreeMap<String, Tensor>,
) -> (genie_codegen::ProgramPlan, genie_ir::Program) {
    let mut program = genie_frontends::load(files).expect("fixture loads");
    let cluster = ClusterSpec::local_workers(2, 8 << 30);
    let shapes = call.iter().map(|(k, t)| (k.clone(), t.size())).collect();
    let options = CompileOptions {
        policy: Policy::BalanceMemory,
        bindings: bindings_from_shapes(&program, &shapes),
        ..CompileOptions::default()
    };
    let plan = compile_program(&mut program, &cluster, &options).unwrap_or_else(|e| panic!("{files:?}: {e}"));
    let busy = plan.devices.iter().filter(|d| d.nodes > 0).count();
    assert_eq!(busy, 2, "{files:?}: balancing memory uses both workers");
    (plan, program)
}

/// A single-graph family in one form, split across two workers, against eager PyTorch.
fn check_single(name: &str) {
    let f = family(name);
    let inputs = read(&fixture(&format!("zoo/{name}/model.inputs.safetensors")));
    let want = read(&fixture(&format!("zoo/{name}/model.outputs.safetensors")));
    let (default_inputs, default_outputs) = (strings(&f["inputs"]), strings(&f["outputs"]));
    for form in forms(name, &f) {
        let what = format!("{name} ({form})");
        let (input_names, output_names, rtol, atol) = match form.as_str() {
            "pt2" => (default_inputs.clone(), default_outputs.clone(), 1e-4, 1e-5),
            "core" => (default_inputs.clone(), strings(&f["core_outputs"]), 1e-4, 1e-5),
            _ => (strings(&f["onnx_inputs"]), strings(&f["onnx_outputs"]), 1e-3, 1e-4),
        };
        // The reference's inputs under this form's names (the forms keep the signature's order).
        let call: BTreeMap<String, Tensor> =
            input_names.iter().zip(&default_inputs).map(|(n, d)| (n.clone(), inputs[d].shallow_clone())).collect();
        // A unit model is one layer, which placement does not cut.
        let split = f["kind"] != "unit";
        let files = [file(name, "model", &form)];
        let (plan, srg) = if split { compile_balanced(&files, &call) } else { compile_one(&files) };
        let graph = &srg.entries[0];
        if let Some(phase) = f["phase"].as_str() {
            assert_eq!(graph.phase, Phase::from_name(phase).expect("a phase name"), "{what}: phase");
        }
        check_tags(&what, &srg, &strings(&f["tags"]));
        let entry = graph.name.clone();
        let r = start(plan, &srg);
        let out = r.runtime.block_on(async {
            let mut s = r.program.open_session().await.unwrap();
            s.run(&entry, &call).await.unwrap_or_else(|e| panic!("{what}: {e:#}"))
        });
        assert_eq!(out.stats.workers.len(), if split { 2 } else { 1 }, "{what}: workers that ran a part");
        for (got_name, want_name) in output_names.iter().zip(&default_outputs) {
            let got = out.outputs.get(got_name).unwrap_or_else(|| panic!("{what}: no output {got_name}"));
            assert_close_within(&format!("{what}.{got_name}"), got, &want[want_name], rtol, atol);
        }
    }
}

/// A decoder in each form: tagged, its KV state bound, and 16 greedy tokens on two workers
/// equal to the eager loop's, with the cache resident.
fn check_decoder(name: &str) {
    let f = family(name);
    let reference = read(&fixture(&format!("zoo/{name}/generate.safetensors")));
    let prompt = Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap();
    let want_tokens = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let layers = f["layers"].as_u64().expect("layers") as usize;
    for form in forms(name, &f) {
        let what = format!("{name} ({form})");
        let files = [file(name, "prefill", &form), file(name, "decode", &form)];
        let (plan, srg) = compile_split(&files);
        let phases: Vec<Phase> = srg.entries.iter().map(|g| g.phase).collect();
        assert_eq!(phases, [Phase::LlmPrefill, Phase::LlmDecode], "{what}: phases");
        check_tags(&what, &srg, &strings(&f["tags"]));
        assert_eq!(plan.state_slots.len(), 2 * layers, "{what}: a key and a value slot per layer");
        let r = start(plan, &srg);
        let generated = r
            .runtime
            .block_on(genie_runtime::generate::greedy(&r.program, &prompt, want_tokens.len(), None))
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(generated.tokens, want_tokens, "{what}: tokens");
        for (i, got) in generated.logits.iter().enumerate() {
            assert_close_within(
                &format!("{what} step {i} logits"),
                got,
                &reference["logits"].get(i as i64),
                1e-4,
                1e-5,
            );
        }
        // Each decode step sends one token and a mask one position longer: the cache never moves.
        let bytes: Vec<u64> = generated.steps[1..].iter().map(|s| s.bytes).collect();
        assert!(bytes.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 64), "{what}: decode bytes {bytes:?}");
    }
}

/// Every family in the manifest has a test below.
#[test]
fn every_zoo_family_is_tested() {
    let source = include_str!("zoo_models.rs");
    for name in manifest().as_object().expect("an object").keys() {
        assert!(source.contains(&format!("\"{name}\"")), "zoo family {name} has no test");
    }
}

macro_rules! decoder_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            check_decoder($name);
        }
    )*};
}

macro_rules! single_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[test]
        fn $test() {
            check_single($name);
        }
    )*};
}

decoder_tests! {
    bloom_alibi_generates_16_tokens_on_two_workers => "bloom",
    falcon_multi_query_generates_16_tokens_on_two_workers => "falcon",
    gpt_neox_parallel_residual_generates_16_tokens_on_two_workers => "gpt-neox",
    gptj_rotary_table_generates_16_tokens_on_two_workers => "gptj",
    opt_learned_positions_generates_16_tokens_on_two_workers => "opt",
    mixtral_mixture_of_experts_generates_16_tokens_on_two_workers => "mixtral",
}

single_tests! {
    distilbert_matches_pytorch_on_two_workers => "distilbert",
    wav2vec2_audio_matches_pytorch_on_two_workers => "wav2vec2",
    whisper_encoder_audio_matches_pytorch_on_two_workers => "whisper-encoder",
    mobilenet_v3_matches_pytorch_on_two_workers => "mobilenet-v3",
    efficientnet_matches_pytorch_on_two_workers => "efficientnet",
    shufflenet_v2_matches_pytorch_on_two_workers => "shufflenet-v2",
    convnext_matches_pytorch_on_two_workers => "convnext",
    densenet_matches_pytorch_on_two_workers => "densenet",
    diffusers_unet_matches_pytorch_on_two_workers => "unet",
    import_time_decompositions_match_pytorch_on_two_workers => "decompositions",
}
