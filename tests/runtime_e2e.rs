//! The runtime end to end over real QUIC sockets on loopback: every fixture family split across
//! two workers matches its PyTorch reference; greedy generation matches the eager loop token for
//! token; many concurrent runs; sessions are private; weights are uploaded once.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use common::{
    assert_close, assert_outputs, compile_one, compile_split, compile_split_program, fixture, poll, read, start,
};
use genie_ir::Program as SrgProgram;
use genie_runtime::client::{ClientError, ClientOptions};
use genie_runtime::deploy::{self, Deployment, LocalMemory};
use genie_runtime::metrics::{GenerationMetrics, MetricsServer};
use genie_runtime::worker;
use tch::{Device, Tensor};

/// Run a single-entry fixture split across two workers and compare every output.
fn check_family(family: &str) {
    check_family_on(family, true)
}

fn check_family_on(family: &str, split: bool) {
    let files = [fixture(&format!("{family}/model.pt2"))];
    let (plan, srg) = if split { compile_split(&files) } else { compile_one(&files) };
    let inputs = read(&fixture(&format!("{family}/model.inputs.safetensors")));
    let want = read(&fixture(&format!("{family}/model.outputs.safetensors")));
    let entry = plan.entry("model").expect("a model entry").clone();
    let r = start(plan, &srg);
    let out = r.runtime.block_on(async {
        let mut s = r.program.open_session().await.unwrap();
        s.run("model", &inputs).await.unwrap_or_else(|e| panic!("{family}: {e:#}"))
    });
    assert_outputs(family, &out.outputs, &want, &entry, srg.entry("model").expect("the model graph"));
    if !split {
        return;
    }
    // Both workers ran, and activations crossed between them (not through the client).
    assert_eq!(out.stats.workers.len(), 2, "{family}: {:?}", out.stats);
    let worker_to_worker: u64 = out.stats.links.iter().filter(|(k, _)| !k.contains("client")).map(|(_, v)| *v).sum();
    assert!(worker_to_worker > 0, "{family}: no worker-to-worker transfer in {:?}", out.stats.links);
}

#[test]
fn bert_split_across_two_workers_matches_pytorch() {
    check_family("bert");
}

/// transformers' T5 encoder: `torch.min` in the position buckets, a mask filled with float32's
/// minimum, symbolic batch and sequence.
#[test]
fn transformers_t5_encoder_split_across_two_workers_matches_pytorch() {
    check_family("hf-t5-encoder");
}

#[test]
fn vit_split_across_two_workers_matches_pytorch() {
    check_family("vit");
}

#[test]
fn resnet_split_across_two_workers_matches_pytorch() {
    check_family("resnet");
}

/// The importer's edge cases (strided weight views, bf16, mutations) are one layer, and a layer
/// is placement's unit, so they run on one remote worker.
#[test]
fn edge_cases_on_a_remote_worker_match_pytorch() {
    check_family_on("edge", false);
}

/// Prefill then one decode step, split across two workers, with the KV cache on the workers.
fn check_decoder(family: &str) {
    let files = [fixture(&format!("{family}/prefill.pt2")), fixture(&format!("{family}/decode.pt2"))];
    let (plan, srg) = compile_split(&files);
    let prefill_in = read(&fixture(&format!("{family}/prefill.inputs.safetensors")));
    let prefill_want = read(&fixture(&format!("{family}/prefill.outputs.safetensors")));
    let decode_in = read(&fixture(&format!("{family}/decode.inputs.safetensors")));
    let decode_want = read(&fixture(&format!("{family}/decode.outputs.safetensors")));
    let prefill_entry = plan.entry("prefill").unwrap().clone();
    let decode_entry = plan.entry("decode").unwrap().clone();
    let r = start(plan, &srg);
    r.runtime.block_on(async {
        let mut s = r.program.open_session().await.unwrap();
        let out = s.run("prefill", &prefill_in).await.unwrap_or_else(|e| panic!("{family} prefill: {e:#}"));
        // The present K/V stay on the workers; the decode step below reads them.
        let graph = |name: &str| srg.entry(name).expect("the entry's graph");
        assert_outputs(&format!("{family}.prefill"), &out.outputs, &prefill_want, &prefill_entry, graph("prefill"));
        let ids = BTreeMap::from([("input_ids".to_string(), decode_in["input_ids"].shallow_clone())]);
        let out = s.run("decode", &ids).await.unwrap_or_else(|e| panic!("{family} decode: {e:#}"));
        assert_outputs(&format!("{family}.decode"), &out.outputs, &decode_want, &decode_entry, graph("decode"));
        // A decode step moves no weight and no KV cache: only the token in, the logits out and
        // the activations at the cut.
        let user_out: u64 = decode_entry
            .outputs
            .iter()
            .filter(|o| o.slot.is_none())
            .map(|o| out.outputs[&o.name].numel() as u64 * 4)
            .sum();
        let kv: u64 = decode_entry.inputs.iter().filter(|i| i.slot.is_some()).count() as u64;
        assert!(kv > 0);
        let planned = decode_entry.transfers.iter().map(|t| t.bytes).sum::<u64>();
        assert!(out.stats.bytes >= 8 + user_out, "{:?}", out.stats);
        assert!(out.stats.bytes <= planned * 2, "{family}: {} B moved, plan says {planned} B", out.stats.bytes);
    });
}

#[test]
fn gpt2_prefill_and_decode_split_across_two_workers_match_pytorch() {
    check_decoder("gpt2");
}

#[test]
fn llama_prefill_and_decode_split_across_two_workers_match_pytorch() {
    check_decoder("llama");
}

/// 16 greedy tokens over the network equal the eager PyTorch loop's, and so do the logits.
/// A decode step's bytes may grow by at most `growth` per step (an attention mask over the
/// whole sequence grows by 8 B; a KV cache would grow by hundreds).
fn check_generate(family: &str, growth: u64) {
    let files = decoder_files(family);
    let program = genie_frontends::load(&files).expect("fixture loads");
    let (generated, reference) = generate_on_two_workers(family, program);
    for (i, got) in generated.logits.iter().enumerate() {
        assert_close(&format!("{family} step {i} logits"), got, &reference["logits"].get(i as i64));
    }
    // Every decode step moved about the same small number of bytes: the cache never travels.
    let decode_bytes: Vec<u64> = generated.steps[1..].iter().map(|s| s.bytes).collect();
    assert!(
        decode_bytes.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= growth),
        "{family}: decode bytes grow by more than {growth} B per step: {decode_bytes:?}"
    );
}

fn decoder_files(family: &str) -> [PathBuf; 2] {
    [fixture(&format!("{family}/prefill.pt2")), fixture(&format!("{family}/decode.pt2"))]
}

/// Greedy generation of as many tokens as the family's reference has, on two workers; asserts
/// the tokens are the reference's. Returns what it generated and the reference.
fn generate_on_two_workers(
    family: &str,
    program: SrgProgram,
) -> (genie_runtime::generate::Generated, BTreeMap<String, Tensor>) {
    let reference = read(&fixture(&format!("{family}/generate.safetensors")));
    let prompt = Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap();
    let want_tokens = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let (plan, srg) = compile_split_program(program, &decoder_files(family));
    let r = start(plan, &srg);
    let generated = r
        .runtime
        .block_on(genie_runtime::generate::greedy(&r.program, &prompt, want_tokens.len(), None))
        .unwrap_or_else(|e| panic!("{family}: {e:#}"));
    assert_eq!(generated.tokens, want_tokens, "{family}: tokens");
    (generated, reference)
}

/// A generation observes each token's latency into [`GenerationMetrics`] as it comes (what
/// `genie generate --metrics` serves): one time to first token, one inter-token latency per
/// decode step, scraped over HTTP and read with a Prometheus text parser.
#[test]
fn generation_latencies_are_served_as_prometheus_metrics() {
    use std::io::{Read, Write};
    let reference = read(&fixture("gpt2/generate.safetensors"));
    let prompt = Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap();
    let tokens = 8;
    let program = genie_frontends::load(&decoder_files("gpt2")).expect("fixture loads");
    let (plan, srg) = compile_split_program(program, &decoder_files("gpt2"));
    let r = start(plan, &srg);
    let metrics = Arc::new(GenerationMetrics::default());
    let served = metrics.clone();
    let server =
        MetricsServer::start("127.0.0.1:0".parse().unwrap(), Arc::new(move || served.render()), r.runtime.handle())
            .unwrap();
    let generated =
        r.runtime.block_on(genie_runtime::generate::greedy(&r.program, &prompt, tokens, Some(&metrics))).unwrap();
    assert_eq!(generated.inter_token_s.len(), tokens - 1);
    assert!(generated.time_to_first_token_s > 0.0 && generated.inter_token_s.iter().all(|s| *s > 0.0));

    let mut stream = std::net::TcpStream::connect(server.addr()).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let body = response.split_once("\r\n\r\n").unwrap().1;
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let number = |name: &str| match scrape.samples.iter().find(|s| s.metric == name).map(|s| &s.value) {
        Some(prometheus_parse::Value::Untyped(v) | prometheus_parse::Value::Counter(v)) => *v,
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(number("genie_time_to_first_token_seconds_count"), 1.0);
    assert!((number("genie_time_to_first_token_seconds_sum") - generated.time_to_first_token_s).abs() < 1e-9);
    assert_eq!(number("genie_inter_token_latency_seconds_count"), (tokens - 1) as f64);
    let itl_sum: f64 = generated.inter_token_s.iter().sum();
    assert!((number("genie_inter_token_latency_seconds_sum") - itl_sum).abs() < 1e-9);
}

/// A decoder whose every input (token ids, mask, positions, past K/V) is renamed `x0`, `x1`, …
/// generates the same tokens: the state bindings and what generate feeds each input come from
/// how the graphs use them, not from their names.
#[test]
fn renamed_inputs_generate_the_same_tokens() {
    for family in ["hf-llama", "gpt2"] {
        let mut renamed = genie_frontends::load(&decoder_files(family)).expect("fixture loads");
        for g in &mut renamed.entries {
            for (i, v) in g.inputs.clone().into_iter().enumerate() {
                g.values[v.index()].name = format!("x{i}");
            }
        }
        let (plan, _) = compile_split_program(renamed.clone(), &decoder_files(family));
        let names: Vec<&str> = plan.entries.iter().flat_map(|e| &e.inputs).map(|i| i.name.as_str()).collect();
        assert!(names.iter().all(|n| n.starts_with('x')), "{family}: {names:?}");
        assert!(!plan.state_slots.is_empty(), "{family}: the KV state is bound without its names");
        generate_on_two_workers(family, renamed);
    }
}

#[test]
fn gpt2_generate_16_tokens_matches_eager_greedy_loop() {
    check_generate("gpt2", 0);
}

#[test]
fn llama_generate_16_tokens_matches_eager_greedy_loop() {
    check_generate("llama", 0);
}

/// transformers' own GPT-2 and LLaMA, exported with `attention_mask`, `position_ids` and a
/// `DynamicCache` rebuilt from the past: the state bindings are found through the cache's empty
/// start, and generate feeds the mask and positions.
#[test]
fn transformers_gpt2_generate_16_tokens_matches_eager_greedy_loop() {
    check_generate("hf-gpt2", 16);
}

#[test]
fn transformers_llama_generate_16_tokens_matches_eager_greedy_loop() {
    check_generate("hf-llama", 16);
}

/// Mistral's sliding-window cache: `x[:, :, -4095:]` over the symbolic cache length and
/// `Max(0, s - 4095)` in the shape arithmetic, settled by the exported symbol ranges.
#[test]
fn transformers_mistral_generate_16_tokens_matches_eager_greedy_loop() {
    check_generate("hf-mistral", 16);
}

#[test]
fn two_hundred_concurrent_runs_against_one_worker_are_all_correct() {
    let (plan, srg) = compile_one(&[fixture("bert/model.pt2")]);
    let inputs = read(&fixture("bert/model.inputs.safetensors"));
    let want = read(&fixture("bert/model.outputs.safetensors"));
    let entry = plan.entry("model").unwrap().clone();
    let r = start(plan, &srg);
    let results = r.runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let program = r.program.clone();
            let inputs: BTreeMap<String, Tensor> = inputs.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
            tasks.push(tokio::spawn(async move {
                let mut s = program.open_session().await?;
                let out = s.run("model", &inputs).await?;
                s.close().await?;
                Ok::<_, ClientError>(out.outputs)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.expect("task"));
        }
        all
    });
    assert_eq!(results.len(), 200);
    for (i, outputs) in results.into_iter().enumerate() {
        let outputs = outputs.unwrap_or_else(|e| panic!("run {i}: {e:#}"));
        assert_outputs(&format!("run {i}"), &outputs, &want, &entry, srg.entry("model").unwrap());
    }
    let stats = r.runtime.block_on(r.cluster.stats("worker0")).unwrap();
    assert_eq!(stats.runs, 200, "{stats:?}");
    // The calls ran on the worker at the same time, not one after another.
    assert!(stats.peak_concurrent_runs >= 2, "runs never overlapped: {stats:?}");
    assert_eq!(stats.failed_runs, 0, "{stats:?}");
    assert_eq!(stats.sessions, 0, "closed sessions are freed: {stats:?}");
}

#[test]
fn sessions_are_private_to_their_client() {
    let files = [fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2")];
    let (plan, srg) = compile_one(&files);
    let prefill_in = read(&fixture("gpt2/prefill.inputs.safetensors"));
    let r = start(plan.clone(), &srg);
    r.runtime.block_on(async {
        let mut mine = r.program.open_session().await.unwrap();
        mine.run("prefill", &prefill_in).await.unwrap();
        // A second client with the same token loads the same model: nothing is uploaded again.
        let same_workers = r.deployed.connected().as_remote();
        let other = deploy::deploy(Arc::new(plan), &srg.weights, &same_workers, &ClientOptions::default()).await.unwrap();
        let theirs = other.program();
        assert_eq!(theirs.stats.weights_uploaded, 0, "{:?}", theirs.stats);
        assert!(theirs.stats.weights_resident > 0);
        // It cannot see or use the first client's session, even knowing its id.
        let err = theirs.session_with_id(0, mine.id()).run("prefill", &prefill_in).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Remote { error, .. } if error.kind == genie_runtime::wire::ErrorKind::UnknownSession),
            "{err}"
        );
        let stats = r.cluster.stats("worker0").await.unwrap();
        assert_eq!(stats.sessions, 1);
    });
}

#[test]
fn unloaded_programs_free_their_weights_beyond_the_cache() {
    use genie_runtime::deploy::RemoteWorker;
    use genie_runtime::transport::Identity;
    use genie_runtime::worker::WorkerConfig;
    let (plan, srg) = compile_one(&[fixture("edge/model.pt2")]);
    let mut config = WorkerConfig::new(([127, 0, 0, 1], 0).into(), Device::Cpu, "token");
    config.weight_cache_bytes = 0;
    config.session_idle_timeout = std::time::Duration::from_millis(200);
    let identity = Identity::self_signed(&["localhost".to_string()]).unwrap();
    let handle = worker::spawn(config, identity).unwrap();
    let worker = RemoteWorker::pinned(handle.addr, handle.fingerprint.clone());
    let remote = Deployment::Remote { workers: [("worker0".to_string(), worker)].into(), token: "token".into() };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &srg.weights, &remote, &ClientOptions::default()).await.unwrap();
        let (cluster, program) = (deployed.cluster(), deployed.program());
        let before = cluster.stats("worker0").await.unwrap();
        assert!(before.resident_weight_bytes > 0, "{before:?}");
        // Still loaded after three sweeps: the sweeper keeps what a program needs.
        let swept = poll(std::time::Duration::from_secs(10), async || {
            let s = cluster.stats("worker0").await.unwrap();
            (s.sweeps >= before.sweeps + 3).then_some(s)
        })
        .await
        .expect("the worker sweeps");
        assert_eq!(swept.resident_weight_bytes, before.resident_weight_bytes, "{swept:?}");
        program.unload().await.unwrap();
        let after = poll(std::time::Duration::from_secs(10), async || {
            let s = cluster.stats("worker0").await.unwrap();
            (s.resident_weight_bytes == 0).then_some(s)
        })
        .await
        .expect("an unloaded program's weights leave the cache of size 0");
        assert_eq!(after.programs, 0);
    });
}

/// Weight uploads report their progress per worker through `ClientOptions::progress`: from 0 to
/// a finished report whose bytes are what the load uploaded, never past the total.
#[test]
fn weight_uploads_report_their_progress() {
    use genie_runtime::progress::{Progress, ProgressSink};
    let files = [fixture("bert/model.pt2")];
    let (plan, srg) = compile_split(&files);
    let reports: Arc<std::sync::Mutex<Vec<Progress>>> = Arc::default();
    let sink = {
        let reports = reports.clone();
        ProgressSink::new(move |p| reports.lock().unwrap().push(p.clone()))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let local = Deployment::Local { device: Device::Cpu, memory: LocalMemory::FromPlan };
    let options = ClientOptions { progress: sink, ..ClientOptions::default() };
    let deployed = runtime.block_on(deploy::deploy(Arc::new(plan), &srg.weights, &local, &options)).expect("deploys");
    let uploaded = deployed.program().stats.bytes_uploaded;
    let reports = reports.lock().unwrap().clone();
    let tasks: std::collections::BTreeSet<&str> = reports.iter().map(|p| p.task.as_str()).collect();
    assert_eq!(tasks.len(), 2, "one task per worker: {tasks:?}");
    let mut finished_bytes = 0;
    for task in tasks {
        let mine: Vec<&Progress> = reports.iter().filter(|p| p.task == task).collect();
        assert_eq!(mine[0].done, 0, "{task} starts at 0");
        let last = mine.last().unwrap();
        assert!(last.finished && last.total == Some(last.done), "{task}: {last:?}");
        assert!(mine.iter().all(|p| Some(p.done) <= p.total), "{task}");
        assert_eq!(mine.iter().filter(|p| p.finished).count(), 1, "{task}");
        finished_bytes += last.done;
    }
    assert_eq!(finished_bytes, uploaded);
    runtime.block_on(deployed.close());
}
