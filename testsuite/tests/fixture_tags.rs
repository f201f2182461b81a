//! Tags, phase and state bindings on every fixture family, in the default `.pt2`, the core-ATen
//! `.pt2` (`run_decompositions()`) and the `.onnx` forms. The fixtures have two layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genie_ir::{InputRole, Phase, Program};
use genie_passes::tagging::tag_counts;
use genie_passes::PassManager;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(rel)
}

fn compile(files: &[&str]) -> Program {
    let paths: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    let mut p = genie_frontends::load(&paths).unwrap_or_else(|e| panic!("{files:?}: {e}"));
    PassManager::standard().run(&mut p, None).unwrap_or_else(|e| panic!("{files:?}: {e}"));
    p
}

/// "This graph ⇒ these tag counts and this phase", for each form of a fixture.
macro_rules! test_tags {
    ($name:ident, [$($file:literal),+ $(,)?] => $phase:expr, { $($tag:literal => $count:expr),* $(,)? }) => {
        #[test]
        fn $name() {
            let want: BTreeMap<String, usize> = [$(($tag.to_string(), $count)),*].into_iter().collect();
            for file in [$($file),+] {
                let p = compile(&[file]);
                let g = &p.entries[0];
                assert_eq!(tag_counts(g), want, "tags of {file}");
                assert_eq!(g.phase, $phase, "phase of {file}");
            }
        }
    };
}

test_tags!(gpt2_prefill, ["gpt2/prefill.pt2", "gpt2/prefill_core.pt2", "gpt2/prefill.onnx"] => Phase::LlmPrefill, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 2, "lm_head" => 1, "residual" => 4,
});
test_tags!(gpt2_decode, ["gpt2/decode.pt2", "gpt2/decode_core.pt2", "gpt2/decode.onnx"] => Phase::LlmDecode, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 2, "lm_head" => 1, "residual" => 4,
    "kv_cache_update" => 4,
});
test_tags!(llama_prefill, ["llama/prefill.pt2", "llama/prefill_core.pt2", "llama/prefill.onnx"] => Phase::LlmPrefill, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 1, "lm_head" => 1, "residual" => 4,
});
test_tags!(llama_decode, ["llama/decode.pt2", "llama/decode_core.pt2", "llama/decode.onnx"] => Phase::LlmDecode, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 1, "lm_head" => 1, "residual" => 4,
    "kv_cache_update" => 4,
});
test_tags!(bert_encoder, ["bert/model.pt2", "bert/model_core.pt2", "bert/model.onnx"] => Phase::Encoder, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 3, "residual" => 4,
});
test_tags!(vit_vision, ["vit/model.pt2", "vit/model_core.pt2", "vit/model.onnx"] => Phase::Vision, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "patch_embed" => 1, "residual" => 4,
});
test_tags!(resnet_vision, ["resnet/model.pt2", "resnet/model_core.pt2", "resnet/model.onnx"] => Phase::Vision, {
    "conv_stage" => 8, "pooling" => 2, "residual" => 2,
});

// transformers' own models, exported as their users export them: the same meaning as the
// hand-written families above.
test_tags!(hf_gpt2_prefill, ["hf-gpt2/prefill.pt2"] => Phase::LlmPrefill, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 2, "lm_head" => 1, "residual" => 4,
});
test_tags!(hf_gpt2_decode, ["hf-gpt2/decode.pt2"] => Phase::LlmDecode, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 2, "lm_head" => 1, "residual" => 4,
    "kv_cache_update" => 4,
});
test_tags!(hf_llama_and_mistral_prefill, ["hf-llama/prefill.pt2", "hf-mistral/prefill.pt2"] => Phase::LlmPrefill, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 1, "lm_head" => 1, "residual" => 4,
});
test_tags!(hf_llama_and_mistral_decode, ["hf-llama/decode.pt2", "hf-mistral/decode.pt2"] => Phase::LlmDecode, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 1, "lm_head" => 1, "residual" => 4,
    "kv_cache_update" => 4,
});
test_tags!(hf_t5_encoder, ["hf-t5-encoder/model.pt2"] => Phase::Encoder, {
    "attention" => 2, "mlp" => 2, "norm" => 5, "embedding" => 2, "residual" => 4,
});

/// Prefill and decode together: every decode past input is bound twice (from decode's own
/// present output and from prefill's), with no hints.
fn assert_bindings(family: &str, suffix: &str, ext: &str) {
    let prefill = format!("{family}/prefill{suffix}.{ext}");
    let decode = format!("{family}/decode{suffix}.{ext}");
    let p = compile(&[&prefill, &decode]);
    let d = p.entry(&format!("decode{suffix}")).expect("decode entry");
    let past: Vec<&str> = d
        .inputs
        .iter()
        .filter(|v| d.value(**v).ann.residency == Some(genie_ir::Residency::StatefulKvCache))
        .map(|v| d.value(*v).name.as_str())
        .collect();
    assert_eq!(past.len(), 4, "{decode}: two layers of K and V");
    for name in &past {
        let sources: Vec<&str> =
            p.state_bindings.iter().filter(|b| b.to.name == *name).map(|b| b.from.entry.as_str()).collect();
        assert_eq!(sources.len(), 2, "{decode}.{name} is bound from decode and from prefill: {:?}", p.state_bindings);
        assert!(sources.iter().any(|e| e.starts_with("prefill")), "{name}: {sources:?}");
    }
    genie_ir::verify_program(&p).expect("bindings verify");
}

#[test]
fn gpt2_state_bindings_in_every_form() {
    assert_bindings("gpt2", "", "pt2");
    assert_bindings("gpt2", "_core", "pt2");
    assert_bindings("gpt2", "", "onnx");
}

#[test]
fn hf_decoders_state_bindings() {
    for family in ["hf-gpt2", "hf-llama", "hf-mistral"] {
        assert_bindings(family, "", "pt2");
    }
}

#[test]
fn llama_state_bindings_in_every_form() {
    assert_bindings("llama", "", "pt2");
    assert_bindings("llama", "_core", "pt2");
    assert_bindings("llama", "", "onnx");
}

/// The roles of a graph's per-call inputs, in input order (state inputs left out).
fn roles(g: &genie_ir::Graph) -> Vec<(String, Option<InputRole>)> {
    g.inputs
        .iter()
        .map(|v| g.value(*v))
        .filter(|v| v.ann.residency != Some(genie_ir::Residency::StatefulKvCache))
        .map(|v| (v.name.clone(), v.ann.role))
        .collect()
}

/// The same program with every entry's inputs renamed `x0`, `x1`, … (and the state bindings
/// that name them), before any pass.
fn renamed_inputs(mut p: Program) -> Program {
    let mut renames: BTreeMap<(String, String), String> = BTreeMap::new();
    for g in &mut p.entries {
        for (i, v) in g.inputs.clone().into_iter().enumerate() {
            let new = format!("x{i}");
            renames.insert((g.name.clone(), g.values[v.index()].name.clone()), new.clone());
            g.values[v.index()].name = new;
        }
    }
    for b in &mut p.state_bindings {
        if let Some(new) = renames.get(&(b.to.entry.clone(), b.to.name.clone())) {
            b.to.name = new.clone();
        }
    }
    p
}

/// Roles come from dataflow: the token ids index the vocabulary's embedding, the mask reaches
/// attention through no product, the positions index a position table or feed a rotary
/// embedding. The same roles come out when every input is renamed `x0`, `x1`, ….
#[test]
fn input_roles_come_from_dataflow_not_names() {
    use InputRole::{AttentionMask as Mask, PositionIds as Positions, TokenIds as Tokens};
    let cases: [(&str, &[InputRole]); 14] = [
        ("gpt2/prefill.pt2", &[Tokens]),
        ("gpt2/decode_core.pt2", &[Tokens]),
        ("gpt2/decode.onnx", &[Tokens]),
        ("llama/decode.pt2", &[Tokens]),
        ("llama/decode.onnx", &[Tokens]),
        ("hf-gpt2/prefill.pt2", &[Tokens, Mask]),
        ("hf-gpt2/decode.pt2", &[Tokens, Mask, Positions]),
        ("hf-llama/prefill.pt2", &[Tokens, Mask]),
        ("hf-llama/decode.pt2", &[Tokens, Mask, Positions]),
        ("hf-mistral/decode.pt2", &[Tokens, Mask, Positions]),
        ("bert/model.pt2", &[Tokens, Mask]),
        ("bert/model.onnx", &[Tokens, Mask]),
        ("hf-t5-encoder/model_core.pt2", &[Tokens, Mask]),
        ("vit/model.pt2", &[]),
    ];
    for (file, want) in cases {
        let loaded = genie_frontends::load(&[fixture(file)]).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (form, mut p) in [("as exported", loaded.clone()), ("renamed", renamed_inputs(loaded))] {
            PassManager::standard().run(&mut p, None).unwrap_or_else(|e| panic!("{file}: {e}"));
            let got: Vec<InputRole> = roles(&p.entries[0]).into_iter().filter_map(|(_, r)| r).collect();
            assert_eq!(got, want, "{file} ({form}): {:?}", roles(&p.entries[0]));
        }
    }
    // Every per-call input of the LLM fixtures has a role: nothing is left for a driver to guess.
    for file in ["hf-gpt2/decode.pt2", "hf-llama/decode.pt2", "gpt2/decode.pt2"] {
        let p = compile(&[file]);
        let unknown: Vec<String> =
            roles(&p.entries[0]).into_iter().filter(|(_, r)| r.is_none()).map(|(n, _)| n).collect();
        assert!(unknown.is_empty(), "{file}: no role for {unknown:?}");
    }
}

/// The text dump of a fixture's program after the passes up to `stop` (`None`: import only),
/// without the weights' file locations (which depend on where the checkout is).
fn dump_after(file: &str, stop: Option<&str>) -> String {
    let mut p = genie_frontends::load(&[fixture(file)]).expect("fixture loads");
    if let Some(name) = stop {
        PassManager::standard().run(&mut p, Some(name)).expect("passes run");
    }
    genie_ir::render::dump_program(&p)
        .lines()
        .filter(|l| !(l.starts_with("  #") && l.contains('@')))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text dump after each pass of the pipeline, on a fixture where that pass changes the
/// graph (a snapshot equal to the one before it would show nothing about the pass).
#[test]
fn snapshots_after_each_pass() {
    let cases = [
        ("remove-noops", "gpt2/prefill.pt2"),
        ("dead-code", "hf-gpt2/decode.pt2"),
        ("cse", "hf-gpt2/decode.pt2"),
        ("fold-constants", "hf-gpt2/decode.pt2"),
        ("tag-patterns", "gpt2/prefill.pt2"),
        ("annotate", "gpt2/prefill.pt2"),
        ("state-bindings", "hf-gpt2/decode.pt2"),
        ("mark-batching", "hf-gpt2/decode.pt2"),
        ("cost", "gpt2/prefill.pt2"),
    ];
    let names = PassManager::standard().names();
    assert_eq!(cases.iter().map(|c| c.0).collect::<Vec<_>>(), names, "one case per pass, in order");
    for (i, (pass, file)) in cases.iter().enumerate() {
        let before = dump_after(file, i.checked_sub(1).map(|p| names[p]));
        let after = dump_after(file, Some(pass));
        assert_ne!(before, after, "{pass} changes nothing on {file}");
        let slug = file.trim_end_matches(".pt2").replace(['/', '-'], "_");
        insta::assert_snapshot!(format!("{slug}_after_{pass}"), after);
    }
}
