//! `genie run`, `genie generate` and `genie bench` through the binary, on the embedded default
//! (in-process workers on loopback).

mod common;

use common::{assert_close, cluster_file, fixture, read, worker_process};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tch::{Kind, Tensor};

fn genie(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_genie")).args(args).output().expect("genie runs");
    assert!(out.status.success(), "genie {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn genie_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_genie")).args(args).output().expect("genie runs");
    assert!(!out.status.success(), "genie {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genie-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The outputs file holds exactly the reference's outputs, each with its shape, dtype and values
/// (within rtol 1e-4, atol 1e-5).
fn assert_matches(got: &BTreeMap<String, Tensor>, want: &BTreeMap<String, Tensor>) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "output names");
    for (name, w) in want {
        assert_close(name, &got[name], w);
    }
}

/// `genie run` of one decode step given its past K/V: the past is the call's initial state and
/// the present K/V come back among the outputs, equal to eager PyTorch's. Without the past, the
/// error says which state is missing.
#[test]
fn run_one_decode_step_with_its_past_as_inputs() {
    let decode = fixture("gpt2/decode.pt2");
    let inputs = fixture("gpt2/decode.inputs.safetensors");
    let out = tmp("gpt2.decode.outputs.safetensors");
    genie(&["run", decode.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--outputs", out.to_str().unwrap()]);
    let want = read(&fixture("gpt2/decode.outputs.safetensors"));
    assert!(want.len() == 5, "the reference holds the logits and four present K/V: {:?}", want.keys());
    assert_matches(&read(&out), &want);
    // Only the new token: the state was never written, and the error names it.
    let ids = tmp("ids-only.safetensors");
    Tensor::write_safetensors(&[("input_ids", &Tensor::from_slice(&[3i64]).view([1, 1]))], &ids).unwrap();
    let err =
        genie_fails(&["run", decode.to_str().unwrap(), "--inputs", ids.to_str().unwrap(), "--outputs", "/dev/null"]);
    assert!(err.contains("past_key_0") && err.contains("state"), "{err}");
}

/// An inputs file built to hurt the reader: `genie run` names the file and the problem and
/// exits non-zero, without a panic or an allocation beyond the file.
#[test]
fn run_refuses_a_hostile_inputs_file_with_a_typed_error() {
    let model = fixture("edge/model.pt2");
    let good = std::fs::read(fixture("edge/model.inputs.safetensors")).unwrap();
    let huge_header = {
        let mut b = (1u64 << 60).to_le_bytes().to_vec();
        b.extend_from_slice(b"{}");
        b
    };
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("huge-header", huge_header, "header length"),
        ("truncated", good[..good.len() - 8].to_vec(), "data offsets"),
        ("short", vec![1, 2, 3], "too short"),
    ];
    for (name, bytes, says) in cases {
        let path = tmp(&format!("{name}.safetensors"));
        std::fs::write(&path, bytes).unwrap();
        let out = tmp(&format!("{name}.outputs.safetensors"));
        let args =
            ["run", model.to_str().unwrap(), "--inputs", path.to_str().unwrap(), "--outputs", out.to_str().unwrap()];
        let err = genie_fails(&args);
        assert!(!out.exists(), "{name}: no outputs are written");
        assert!(err.contains(path.to_str().unwrap()) && err.contains(says), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}

#[test]
fn run_a_model_on_two_embedded_workers_and_a_compiled_plan() {
    let model = fixture("bert/model.pt2");
    let inputs = fixture("bert/model.inputs.safetensors");
    let want = read(&fixture("bert/model.outputs.safetensors"));
    let out = tmp("bert.outputs.safetensors");
    let text = genie(&[
        "run",
        model.to_str().unwrap(),
        "--workers",
        "2",
        "--worker-memory",
        "100KB",
        "--inputs",
        inputs.to_str().unwrap(),
        "--outputs",
        out.to_str().unwrap(),
        "--stats",
    ]);
    assert!(text.contains("round trip"), "{text}");
    assert!(text.contains("worker0→worker1") || text.contains("worker1→worker0"), "split: {text}");
    assert_matches(&read(&out), &want);

    // The same through a plan file: the plan, then the model it was compiled from for weights.
    let plan = tmp("bert.plan");
    genie(&["compile", model.to_str().unwrap(), "--workers", "1", "-o", plan.to_str().unwrap()]);
    let out2 = tmp("bert2.outputs.safetensors");
    let args =
        ["run", plan.to_str().unwrap(), model.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--outputs"];
    genie(&[&args[..], &[out2.to_str().unwrap()]].concat());
    assert_matches(&read(&out2), &want);
    // A plan alone has no weights: a clear error, not a crash.
    let err =
        genie_fails(&["run", plan.to_str().unwrap(), "--inputs", inputs.to_str().unwrap(), "--outputs", "/dev/null"]);
    assert!(err.contains("plans hold no weights"), "{err}");
    // Wrong input names are named.
    let bad = tmp("bad.inputs.safetensors");
    Tensor::write_safetensors(&[("nonsense", &Tensor::zeros([1, 2], (Kind::Int64, tch::Device::Cpu)))], &bad).unwrap();
    let err =
        genie_fails(&["run", model.to_str().unwrap(), "--inputs", bad.to_str().unwrap(), "--outputs", "/dev/null"]);
    assert!(err.contains("nonsense") && err.contains("input_ids"), "{err}");
}

#[test]
fn generate_prints_the_reference_tokens_and_per_step_bytes() {
    let reference = read(&fixture("gpt2/generate.safetensors"));
    let prompt: Vec<String> =
        Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap().iter().map(|t| t.to_string()).collect();
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let text = genie(&[
        "generate",
        p.to_str().unwrap(),
        d.to_str().unwrap(),
        "--prompt",
        &prompt.join(","),
        "--max-new-tokens",
        "16",
        "--workers",
        "2",
        "--worker-memory",
        "100KB",
        "--max-seq",
        "32",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&text).expect(&text);
    let tokens: Vec<i64> = json["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert_eq!(tokens, want);
    let steps = json["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 16);
    for s in &steps[1..] {
        // Token in (8 B), logits out (128 × 4 B), one 32-wide f32 row at the cut.
        assert_eq!(s["bytes"].as_u64().unwrap(), 8 + 512 + 128, "{s}");
        assert_eq!(s["round_trips"].as_u64().unwrap(), 1);
        assert!(s["wall_s"].as_f64().unwrap() > 0.0);
    }
}

/// `genie generate --jsonl` prints a line of JSON per step as the step completes: the first line
/// is out while the process still runs (15 decode calls to its workers come after it), every
/// line has exactly the step's keys, and the tokens are the reference's. Stdout holds nothing
/// else; `--stats` goes to stderr.
#[test]
fn generate_jsonl_prints_each_step_as_it_completes() {
    let reference = read(&fixture("gpt2/generate.safetensors"));
    let prompt: Vec<String> =
        Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap().iter().map(|t| t.to_string()).collect();
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["generate", p.to_str().unwrap(), d.to_str().unwrap(), "--prompt", &prompt.join(",")])
        .args(["--max-new-tokens", "16", "--workers", "2", "--worker-memory", "100KB", "--max-seq", "32"])
        .args(["--jsonl", "--stats"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("genie runs");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    let running_after_first_line = child.try_wait().unwrap().is_none();
    let mut all = vec![first];
    all.extend(lines.map(Result::unwrap));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "genie generate --jsonl failed: {stderr}");
    assert!(running_after_first_line, "the first step's line came only once generate had exited");

    assert_eq!(all.len(), want.len(), "one line per token: {all:?}");
    let keys = BTreeSet::from(["batch", "bytes", "step", "token", "wall_s"]);
    let mut tokens = Vec::new();
    for (i, line) in all.iter().enumerate() {
        let json: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {i} `{line}`: {e}"));
        let object = json.as_object().unwrap_or_else(|| panic!("line {i} is no object: {line}"));
        assert_eq!(object.keys().map(String::as_str).collect::<BTreeSet<_>>(), keys, "{line}");
        assert_eq!(json["step"].as_u64(), Some(i as u64), "{line}");
        assert!(json["wall_s"].as_f64().unwrap() > 0.0, "{line}");
        assert!(json["bytes"].as_u64().unwrap() > 0, "{line}");
        assert!(json["batch"].as_u64().unwrap() >= 1, "{line}");
        tokens.push(json["token"].as_i64().unwrap());
    }
    assert_eq!(tokens, want);
    // The human text went to stderr.
    assert!(stderr.contains("prefill:") && stderr.contains("decode 15:"), "{stderr}");
    assert!(stderr.contains("time to first token"), "{stderr}");
}

#[test]
fn bench_quick_suite_measures_every_mode() {
    let json_path = tmp("bench.json");
    let plot = tmp("bench.svg");
    let text = genie(&[
        "bench",
        "--suite",
        "quick",
        "--runs",
        "3",
        "--json",
        json_path.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(text.contains("× bytes"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    let bytes = |workload: &str, mode: &str| -> u64 {
        runs.iter()
            .find(|r| r["workload"] == workload && r["mode"] == mode)
            .unwrap_or_else(|| panic!("no {workload}/{mode}"))["bytes_per_call"]
            .as_u64()
            .unwrap()
    };
    for w in ["decode", "prefill", "cnn", "encoder"] {
        for m in ["local", "genie", "blind", "per-op"] {
            bytes(w, m);
        }
    }
    // The semantic advantage on a decode step: the KV cache stays where it is.
    assert_eq!(bytes("decode", "local"), 0);
    assert!(bytes("decode", "genie") * 10 <= bytes("decode", "blind"), "{runs:?}");
    assert!(bytes("decode", "genie") * 40 <= bytes("decode", "per-op"), "{runs:?}");
    for key in ["quic_bulk_gbps", "tcp_bulk_gbps", "quic_rtt_us", "tcp_rtt_us"] {
        assert!(json["transport"][key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(json["compile"][0]["genie_s"].as_f64().unwrap() > 0.0);
    assert!(std::fs::read_to_string(&plot).unwrap().starts_with("<svg"));
}

/// Batch and sequence are both symbolic and unbounded: the plan is made for the shapes of the
/// inputs given, not for the symbols' defaults (which would not fit the workers' memory).
#[test]
fn run_places_for_the_shapes_of_the_inputs_given() {
    let model = fixture("hf-t5-encoder/model.pt2");
    let inputs = fixture("hf-t5-encoder/model.inputs.safetensors");
    let want = read(&fixture("hf-t5-encoder/model.outputs.safetensors"));
    let out = tmp("t5.outputs.safetensors");
    let args = ["run", model.to_str().unwrap(), "--worker-memory", "1GiB", "--inputs", inputs.to_str().unwrap()];
    genie(&[&args[..], &["--outputs", out.to_str().unwrap()]].concat());
    assert_matches(&read(&out), &want);
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `genie run --cluster` against real `genie worker` processes: certificates pinned by
/// fingerprint with the token from a file, and certificates signed by a CA (`genie worker
/// --cert/--key`) trusted with `--ca`. A wrong token and a worker that cannot be trusted are
/// refused by name.
#[test]
fn run_on_genie_worker_processes_pinned_and_through_a_ca() {
    let model = fixture("bert/model.pt2");
    let inputs = fixture("bert/model.inputs.safetensors");
    let want = read(&fixture("bert/model.outputs.safetensors"));
    let token = tmp("token.txt");
    std::fs::write(&token, "s3cret\n").unwrap();
    let run = |cluster: &Path, token: &Path, extra: &[&str], out: &str| {
        let out = tmp(out);
        let mut args = vec!["run", model.to_str().unwrap(), "--cluster", cluster.to_str().unwrap()];
        args.extend(["--token-file", token.to_str().unwrap(), "--inputs", inputs.to_str().unwrap()]);
        args.extend(["--outputs", out.to_str().unwrap(), "--stats"]);
        args.extend(extra);
        (args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), out)
    };

    // Self-signed certificates, pinned.
    let pinned = [worker_process(&["--token-file", token.to_str().unwrap()]), worker_process(&["--token", "s3cret"])];
    let cluster = cluster_file(&tmp("pinned.ron"), &pinned, true);
    let (args, out) = run(&cluster, &token, &[], "pinned.outputs.safetensors");
    let text = genie(&strs(&args));
    assert!(text.contains("w0→w1") || text.contains("w1→w0"), "the model is split across the workers: {text}");
    assert_matches(&read(&out), &want);
    let wrong = tmp("wrong-token.txt");
    std::fs::write(&wrong, "guess\n").unwrap();
    let (args, _) = run(&cluster, &wrong, &[], "refused.outputs.safetensors");
    let err = genie_fails(&strs(&args));
    assert!(err.contains("Unauthorized") && err.contains("w0"), "{err}");

    // Certificates a CA signed, trusted through the CA with no fingerprints.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "genie test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (ca_pem, chain, key_pem) = (tmp("ca.pem"), tmp("chain.pem"), tmp("key.pem"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key_pem, key.serialize_pem()).unwrap();
    let signed_flags = ["--token-file", token.to_str().unwrap(), "--cert", chain.to_str().unwrap()];
    let signed_flags = [&signed_flags[..], &["--key", key_pem.to_str().unwrap()]].concat();
    let signed = [worker_process(&signed_flags), worker_process(&signed_flags)];
    let cluster = cluster_file(&tmp("ca.ron"), &signed, false);
    let (args, out) = run(&cluster, &token, &["--ca", ca_pem.to_str().unwrap()], "ca.outputs.safetensors");
    genie(&strs(&args));
    assert_matches(&read(&out), &want);
    // Without the CA and without fingerprints, nothing says the workers are who they claim.
    let (args, _) = run(&cluster, &token, &[], "untrusted.outputs.safetensors");
    let err = genie_fails(&strs(&args));
    assert!(err.contains("no `fingerprint`") && err.contains("w0"), "{err}");
}

/// `genie bench --suite pd-quick` runs the pd suite's code on the GPT-2 fixture in seconds:
/// both placements measured, the disaggregated one handing the KV cache from one pinned
/// worker to the other.
#[test]
fn bench_pd_suite_measures_co_located_and_disaggregated_phases() {
    let json_path = tmp("pd.json");
    let text = genie(&["bench", "--suite", "pd-quick", "--json", json_path.to_str().unwrap()]);
    assert!(text.contains("`genie worker --cpus 0`") && text.contains("`genie worker --cpus 1`"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let pd = &json["pd"];
    assert_eq!(pd["requests"], 4);
    let rows = pd["rows"].as_array().unwrap();
    let modes: Vec<&str> = rows.iter().map(|r| r["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["co-located", "disaggregated"]);
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert!(f("ttft_p50_s") > 0.0 && f("ttft_p50_s") <= f("ttft_p99_s"), "{r}");
        assert!(f("itl_p50_s") > 0.0 && f("itl_p50_s") <= f("itl_p99_s"), "{r}");
        assert!(f("tokens_per_s") > 0.0 && f("est_ttft_s") > 0.0 && f("est_tpot_s") > 0.0, "{r}");
        assert!((f("ttft_ratio") - f("alone_ttft_s") / f("est_ttft_s")).abs() < 1e-9, "{r}");
    }
    assert_eq!(rows[0]["handoff_bytes"], 0);
    assert!(rows[1]["handoff_bytes"].as_u64().unwrap() > 0);
    let placement = rows[1]["placement"].as_str().unwrap();
    assert!(placement.contains("prefill on w0") && placement.contains("decode on w1"), "{placement}");
}

/// `genie worker --cpus N` runs every thread of the process on core N.
#[test]
fn a_worker_pinned_to_a_core_runs_every_thread_there() {
    let worker = worker_process(&["--token", "t", "--cpus", "0"]);
    let pid = worker.child.id();
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().map(|t| t.unwrap().path()).collect();
    assert!(tasks.len() > 1, "a worker has threads");
    for task in tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let cpus = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")).unwrap();
        assert_eq!(cpus.split_whitespace().nth(1), Some("0"), "{}: {cpus}", task.display());
    }
}

/// `genie bench --suite serve-quick` runs the serve suite's code on the GPT-2 fixture in
/// seconds: 1 and 4 sessions at once on a worker with the default `--max-batch`, then on one with
/// `--max-batch 1`, every session's tokens those of its prompt alone.
#[test]
fn bench_serve_suite_measures_sessions_at_once_batched_and_not() {
    let json_path = tmp("serve.json");
    let text = genie(&["bench", "--suite", "serve-quick", "--json", json_path.to_str().unwrap()]);
    assert!(text.contains("--max-batch 1") && text.contains("p99 ÷ 1 sess"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let rows = json["serve"].as_array().unwrap_or_else(|| panic!("{json}"));
    let default = genie_runtime::worker::DEFAULT_MAX_BATCH as u64;
    let configs: Vec<(u64, u64)> =
        rows.iter().map(|r| (r["sessions"].as_u64().unwrap(), r["max_batch"].as_u64().unwrap())).collect();
    assert_eq!(configs, [(1, default), (4, default), (1, 1), (4, 1)]);
    let keys = BTreeSet::from([
        "itl_p50_s",
        "itl_p99_s",
        "max_batch",
        "mean_batch",
        "new_tokens",
        "sessions",
        "tokens",
        "tokens_per_s",
        "wall_s",
        "prefill_s",
        "decode_s",
    ]);
    for r in rows {
        assert_eq!(r.as_object().unwrap().keys().map(String::as_str).collect::<BTreeSet<_>>(), keys, "{r}");
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
        assert!(f("tokens_per_s") > 0.0 && f("prefill_s") > 0.0 && f("decode_s") > 0.0, "{r}");
        assert!((f("wall_s") - f("prefill_s") - f("decode_s")).abs() < 1e-6, "{r}");
        assert!(f("mean_batch") >= 1.0, "{r}");
        assert!(f("itl_p50_s") > 0.0 && f("itl_p50_s") <= f("itl_p99_s"), "{r}");
        // No session lost a token (and each was checked against its prompt alone by the suite).
        assert_eq!(r["new_tokens"], 8, "{r}");
        assert_eq!(r["tokens"].as_u64().unwrap(), r["sessions"].as_u64().unwrap() * 8, "{r}");
    }
}

/// `genie bench --suite recovery-quick` runs the recovery suite's code on the GPT-2 fixture in
/// seconds: the second device's worker killed after the fifth token, the generation recovered on
/// the spare with the uninterrupted run's tokens (the suite fails otherwise), and detection and
/// recovery reported against the uninterrupted generation.
#[test]
fn bench_recovery_suite_measures_a_lost_worker_against_an_uninterrupted_run() {
    let json_path = tmp("recovery.json");
    let text = genie(&["bench", "--suite", "recovery-quick", "--json", json_path.to_str().unwrap()]);
    assert!(text.contains("uninterrupted") && text.contains("spare"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let rows = json["recovery"]["rows"].as_array().unwrap_or_else(|| panic!("{json}"));
    let [r] = rows.as_slice() else { panic!("one row: {json}") };
    assert_eq!((r["new_tokens"].as_u64(), r["step"].as_u64(), r["lost"].as_str()), (Some(16), Some(5), Some("w1")));
    assert_eq!(r["replayed_tokens"].as_u64(), Some(5 + 5), "the prompt and five tokens: {r}");
    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} in {r}"));
    assert!(f("detect_s") > 0.0 && f("detect_s") <= f("detection_bound_s") + 0.5, "{r}");
    assert!(f("recover_s") > 0.0 && f("uninterrupted_s") > 0.0, "{r}");
    assert!((f("total_ratio") - (f("detect_s") + f("recover_s")) / f("uninterrupted_s")).abs() < 1e-9, "{r}");
}

/// The mixture-of-experts and ALiBi zoo decoders, generated by the CLI on two `genie worker`
/// processes (policy `balance-memory`): the reference's 16 tokens.
#[test]
fn zoo_decoders_generate_on_genie_worker_processes() {
    let workers = [worker_process(&["--token", "zoo"]), worker_process(&["--token", "zoo"])];
    let cluster = cluster_file(&tmp("zoo.ron"), &workers, true);
    // Room for the larger of the two models on either worker.
    let text = std::fs::read_to_string(&cluster).unwrap().replace("\"100KB\"", "\"16MB\"");
    std::fs::write(&cluster, text).unwrap();
    for family in ["mixtral", "bloom"] {
        let reference = read(&fixture(&format!("zoo/{family}/generate.safetensors")));
        let prompt: Vec<String> =
            Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap().iter().map(|t| t.to_string()).collect();
        let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
        let (p, d) = (fixture(&format!("zoo/{family}/prefill.pt2")), fixture(&format!("zoo/{family}/decode.pt2")));
        let text = genie(&[
            "generate",
            p.to_str().unwrap(),
            d.to_str().unwrap(),
            "--cluster",
            cluster.to_str().unwrap(),
            "--token",
            "zoo",
            "--policy",
            "balance-memory",
            "--prompt",
            &prompt.join(","),
            "--max-new-tokens",
            "16",
            "--json",
        ]);
        let json: serde_json::Value = serde_json::from_str(&text).expect(&text);
        let tokens: Vec<i64> = json["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
        assert_eq!(tokens, want, "{family}");
    }
}

/// `genie worker --threads N`: the worker reports the cores its calls share (every core by
/// default), and a model split over a worker held to one thread and one left at its default
/// generates the reference tokens through the CLI.
#[test]
fn workers_with_their_own_thread_counts_generate_the_reference_tokens() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = [worker_process(&["--token", "thr", "--threads", "1"]), worker_process(&["--token", "thr"])];
    assert_eq!(workers[0].threads, 1);
    assert_eq!(workers[1].threads, cores);
    let cluster = cluster_file(&tmp("threads.ron"), &workers, true);
    let text = std::fs::read_to_string(&cluster).unwrap().replace("\"100KB\"", "\"16MB\"");
    std::fs::write(&cluster, text).unwrap();
    let reference = read(&fixture("zoo/mixtral/generate.safetensors"));
    let prompt: Vec<String> =
        Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap().iter().map(|t| t.to_string()).collect();
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let (p, d) = (fixture("zoo/mixtral/prefill.pt2"), fixture("zoo/mixtral/decode.pt2"));
    let text = genie(&[
        "generate",
        p.to_str().unwrap(),
        d.to_str().unwrap(),
        "--cluster",
        cluster.to_str().unwrap(),
        "--token",
        "thr",
        "--policy",
        "balance-memory",
        "--prompt",
        &prompt.join(","),
        "--max-new-tokens",
        "16",
        "--json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&text).expect(&text);
    let tokens: Vec<i64> = json["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert_eq!(tokens, want);
}
