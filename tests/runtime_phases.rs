//! Disaggregated plans on real workers over loopback QUIC: prefill on one worker, decode on
//! another, the KV cache handed from worker to worker once after prefill. Generation is
//! token-exact against the eager references, prefill moves exactly the handoff's bytes between
//! the workers, and a decode step moves no KV byte.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use common::{assert_close, fixture, read};
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::{Phase, RequestShape};
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::ClientOptions;
use genie_runtime::deploy::{self, Deployment, LocalMemory};
use tch::Device;

fn example_cluster() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/prefill_decode_cluster.ron")
}

fn check(family: &str) {
    let files = [fixture(&format!("{family}/prefill.pt2")), fixture(&format!("{family}/decode.pt2"))];
    let reference = read(&fixture(&format!("{family}/generate.safetensors")));
    let prompt = Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap();
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let cluster = ClusterSpec::from_ron(&std::fs::read_to_string(example_cluster()).unwrap()).unwrap();
    let mut program = genie_frontends::load(&files).expect("fixture loads");
    let request = RequestShape { prompt_len: prompt.len() as i64, new_tokens: want.len() as i64 };
    let options = CompileOptions { request: Some(request), ..CompileOptions::default() };
    let plan = compile_program(&mut program, &cluster, &options).unwrap_or_else(|e| panic!("{family}: {e:#}"));
    assert!(plan.phases.as_ref().is_some_and(|p| p.disaggregated), "{family}: {:?}", plan.phases);
    let prefill = plan.entries.iter().find(|e| e.phase == Phase::LlmPrefill).unwrap().clone();
    // The handoff's bytes at this prompt: each handed-over tensor's type with the prompt length.
    let at_prompt: BTreeMap<String, i64> =
        prefill.symbols.iter().map(|s| (s.name.clone(), prompt.len() as i64)).collect();
    let handoff_bytes: u64 = prefill
        .handoffs
        .iter()
        .map(|h| {
            prefill.tensors[&prefill.transfers[h.transfer as usize].tensor].ty.bytes().eval(&at_prompt).unwrap() as u64
        })
        .sum();
    assert_eq!(prefill.handoffs.len(), plan.state_slots.len(), "{family}: every slot handed over");

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let local = Deployment::Local { device: Device::Cpu, memory: LocalMemory::FromPlan };
    let deployed = runtime
        .block_on(deploy::deploy(Arc::new(plan), &program.weights, &local, &ClientOptions::default()))
        .expect("deploys");
    let generated = runtime
        .block_on(genie_runtime::generate::greedy(deployed.program(), &prompt, want.len(), None))
        .unwrap_or_else(|e| panic!("{family}: {e:#}"));
    assert_eq!(generated.tokens, want, "{family}: tokens");
    for (i, got) in generated.logits.iter().enumerate() {
        assert_close(&format!("{family} step {i} logits"), got, &reference["logits"].get(i as i64));
    }
    // Prefill: the KV cache goes compute → bandwidth once, nothing else between the workers.
    let between = |links: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        links.iter().filter(|(k, _)| !k.contains("client")).map(|(k, v)| (k.clone(), *v)).collect()
    };
    let first = &generated.steps[0];
    assert_eq!(between(&first.links), BTreeMap::from([("compute→bandwidth".to_string(), handoff_bytes)]), "{family}");
    assert!(first.workers.contains_key("compute") && first.workers.contains_key("bandwidth"), "{family}");
    // The bandwidth worker only receives during prefill: it waits for no execution slot (a
    // decode step of another request never queues behind this one's prefill).
    let queued = |w: &str| first.workers[w].spans.iter().any(|s| s.name == "queue");
    assert!(queued("compute") && !queued("bandwidth"), "{family}: {:?}", first.workers["bandwidth"].spans);
    // Decode: only the bandwidth worker, nothing between workers, the same few bytes each step
    // (an attention mask over the sequence grows by 8 B).
    for (i, step) in generated.steps[1..].iter().enumerate() {
        assert!(between(&step.links).is_empty(), "{family} decode {i}: {:?}", step.links);
        assert_eq!(step.workers.keys().collect::<Vec<_>>(), ["bandwidth"], "{family} decode {i}");
    }
    let bytes: Vec<u64> = generated.steps[1..].iter().map(|s| s.bytes).collect();
    assert!(bytes.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 16), "{family}: {bytes:?}");
}

#[test]
fn gpt2_generates_token_exact_with_prefill_and_decode_on_different_workers() {
    check("gpt2");
}

#[test]
fn llama_generates_token_exact_with_prefill_and_decode_on_different_workers() {
    check("llama");
}

#[test]
fn transformers_decoders_generate_token_exact_with_prefill_and_decode_on_different_workers() {
    for family in ["hf-gpt2", "hf-llama", "hf-mistral"] {
        check(family);
    }
}

/// The same through `genie generate --cluster`: the tokens, and decode steps that move the
/// token in and the logits out and nothing else.
#[test]
fn genie_generate_runs_a_disaggregated_plan_on_local_workers() {
    let reference = read(&fixture("gpt2/generate.safetensors"));
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let (p, d, ids) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"), fixture("gpt2/generate.safetensors"));
    let cluster = example_cluster();
    let args = [
        "generate",
        p.to_str().unwrap(),
        d.to_str().unwrap(),
        "--prompt-ids",
        ids.to_str().unwrap(),
        "--max-new-tokens",
        "16",
        "--cluster",
        cluster.to_str().unwrap(),
        "--json",
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_genie")).args(args).output().expect("genie runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens: Vec<i64> = json["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert_eq!(tokens, want);
    for s in &json["steps"].as_array().unwrap()[1..] {
        assert_eq!(s["bytes"].as_u64().unwrap(), 8 + 128 * 4, "token in, logits out: {s}");
    }
}

/// `genie run` of a compiled disaggregated plan: prefill's outputs match PyTorch, and its KV
/// cache went from the compute worker to the bandwidth worker, not through the client.
#[test]
fn genie_run_executes_a_compiled_disaggregated_plan() {
    let dir = std::env::temp_dir().join(format!("genie-phases-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let (plan, out) = (dir.join("gpt2.plan"), dir.join("out.safetensors"));
    let cluster = example_cluster();
    let genie = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_genie")).args(args).output().expect("genie runs");
        assert!(out.status.success(), "genie {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    genie(&["compile", &path(&p), &path(&d), "--cluster", &path(&cluster), "-o", &path(&plan), "--quiet"]);
    let inputs = fixture("gpt2/prefill.inputs.safetensors");
    let stats = genie(&[
        "run",
        &path(&plan),
        &path(&p),
        &path(&d),
        "--cluster",
        &path(&cluster),
        "--entry",
        "prefill",
        "--inputs",
        &path(&inputs),
        "--outputs",
        &path(&out),
        "--stats",
    ]);
    assert!(stats.contains("compute→bandwidth"), "{stats}");
    let got = read(&out);
    let want = read(&fixture("gpt2/prefill.outputs.safetensors"));
    assert!(!got.is_empty());
    for (name, t) in &got {
        assert_close(name, t, &want[name]);
    }
    std::fs::remove_dir_all(&dir).ok();
}
