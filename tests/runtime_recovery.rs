//! Surviving a lost worker, against real `genie worker` processes on loopback: a decoder placed
//! on two of three workers (the third a spare), each used worker SIGKILLed in turn after the
//! fifth token; the generation is placed again on the workers that answer, the prompt and the
//! tokens so far are replayed, and every token equals the eager reference. Also: a worker
//! restarted with its `--state-dir` keeps its fingerprint and a recovery uses it again; with no
//! survivor able to hold the model the error is typed and comes within the detection bound; a
//! client killed mid-generation leaves nothing held on the workers; `genie generate --jsonl`
//! marks the recovered step.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_close, fixture, read, worker_process, WorkerProcess};
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_driver::recovery::Replanner;
use genie_ir::RequestShape;
use genie_passes::placement::{ClusterSpec, PhaseChoice};
use genie_runtime::client::{ClientOptions, Cluster, WorkerAddress};
use genie_runtime::deploy::{self, DeploymentSpec};
use genie_runtime::generate::{self, GenerateError, Generated};
use genie_runtime::recovery::{Recovery, RecoveryError};
use genie_runtime::transport::Trust;

const TOKEN: &str = "recovery-test-token";
/// The detection bound the tests run with (the default is 4 s): long enough that a worker
/// starved of CPU by the rest of the suite still answers its keep-alives in time.
const DETECTION: Duration = Duration::from_secs(2);

/// A fresh directory of this test process, named by `tag`.
fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("genie-recovery-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn workers(n: usize, extra: &[&str]) -> Vec<WorkerProcess> {
    (0..n).map(|_| worker_process(&[&["--token", TOKEN], extra].concat())).collect()
}

/// A cluster of devices `w0`, `w1`, … of `memory` each, the last `spares` of them held in
/// reserve, with every worker's address and fingerprint. At 100 KB (150 KB with 64 positions) a
/// decoder fixture does not fit one device and is split over two; at 150 KB its phases can run
/// apart, each on a device of its own.
fn cluster_text(workers: &[WorkerProcess], memory: &str, spares: usize) -> String {
    let devices: Vec<String> = (0..workers.len())
        .map(|i| {
            let spare = if i + spares >= workers.len() { ", spare: true" } else { "" };
            format!("(name: \"w{i}\", kind: cpu, memory: \"{memory}\"{spare})")
        })
        .collect();
    let entries: Vec<String> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"w{i}\": (address: \"{}\", fingerprint: \"{}\")", w.address, w.fingerprint))
        .collect();
    format!("(devices: [{}], deployment: (workers: {{{}}}))", devices.join(", "), entries.join(", "))
}

struct Reference {
    prompt: Vec<i64>,
    tokens: Vec<i64>,
    logits: tch::Tensor,
}

fn reference(family: &str) -> Reference {
    let r = read(&fixture(&format!("{family}/generate.safetensors")));
    Reference {
        prompt: Vec::<i64>::try_from(r["prompt"].flatten(0, -1)).unwrap(),
        tokens: Vec::<i64>::try_from(&r["tokens"]).unwrap(),
        logits: r["logits"].shallow_clone(),
    }
}

/// Compile `family` for the cluster (spares left out), deploy it on the workers, and generate
/// with recovery, `on_step` seeing each step as it completes.
fn generate_recovering(
    family: &str,
    text: &str,
    phases: PhaseChoice,
    max_recoveries: usize,
    on_step: impl FnMut(&generate::StepDone<'_>) + Send,
) -> (Result<Generated, GenerateError>, Vec<String>) {
    let reference = reference(family);
    let files = [fixture(&format!("{family}/prefill.pt2")), fixture(&format!("{family}/decode.pt2"))];
    let source = genie_frontends::load(&files).expect("fixture loads");
    let spec = ClusterSpec::from_ron(text).unwrap();
    let request = RequestShape { prompt_len: reference.prompt.len() as i64, new_tokens: reference.tokens.len() as i64 };
    let options = CompileOptions { request: Some(request), phases, max_seq: Some(32), ..CompileOptions::default() };
    let mut program = source.clone();
    let plan = compile_program(&mut program, &spec, &options).unwrap_or_else(|e| panic!("{family}: {e:#}"));
    let used: Vec<String> = plan.devices.iter().map(|d| d.name.clone()).collect();
    let deployment = DeploymentSpec::from_cluster_ron(text).unwrap().unwrap().resolve(TOKEN.into(), None).unwrap();
    let client = ClientOptions::default().with_detection(DETECTION);
    let rt = runtime();
    let metrics = genie_runtime::metrics::GenerationMetrics::default();
    let result = rt.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &program.weights, &deployment, &client).await.unwrap();
        let replanner = Replanner::new(source, spec, options, deployment, client);
        let recovery = Recovery { replace: &replanner, max_recoveries };
        let result = generate::greedy_recovering(
            deployed.program(),
            &reference.prompt,
            reference.tokens.len(),
            Some(&metrics),
            recovery,
            on_step,
        )
        .await;
        replanner.close().await;
        deployed.close().await;
        result
    });
    // Each recovery is counted where `genie generate --metrics` serves it.
    if let Ok(generated) = &result {
        let counted = format!("genie_recoveries_total {}", generated.recoveries.len());
        assert!(metrics.render().contains(&counted), "{counted} in {}", metrics.render());
    }
    (result, used)
}

/// SIGKILL (and reap) a worker process.
fn kill(worker: &mut WorkerProcess) {
    worker.child.kill().unwrap();
    worker.child.wait().unwrap();
}

/// Each used worker killed in turn after the fifth token: the tokens and logits equal the eager
/// reference, and a recovery happened exactly when the dead worker ran the decode steps.
fn survives_each_used_worker_killed(family: &str, phases: PhaseChoice) {
    let want = reference(family);
    for victim in 0..2 {
        let mut workers = workers(3, &[]);
        let memory = if phases == PhaseChoice::Always { "150KB" } else { "100KB" };
        let text = cluster_text(&workers, memory, 1);
        let mut killed_at = None;
        let (result, used) = generate_recovering(family, &text, phases, 3, |s| {
            if s.step == 4 {
                kill(&mut workers[victim]);
                killed_at = Some(Instant::now());
            }
        });
        assert_eq!(used, ["w0", "w1"], "{family}: placed on the two workers that are not spares");
        let generated = result.unwrap_or_else(|e| panic!("{family} {phases:?}, w{victim} killed: {e:#}"));
        assert_eq!(generated.tokens, want.tokens, "{family} {phases:?}, w{victim} killed: tokens");
        for (i, got) in generated.logits.iter().enumerate() {
            assert_close(&format!("{family} w{victim} killed, step {i} logits"), got, &want.logits.get(i as i64));
        }
        let decode_ran_there = generated.steps[4].workers.contains_key(&format!("w{victim}"));
        if decode_ran_there {
            let [r] = generated.recoveries.as_slice() else {
                panic!("{family} {phases:?}, w{victim} killed: {:?}", generated.recoveries)
            };
            assert_eq!((r.step, r.lost.clone()), (5, vec![format!("w{victim}")]), "{family} {phases:?}");
            // The survivor kept the program and the session's state; the lost part moved to the
            // spare, whose state the replay rebuilt: from the prompt and the first four tokens
            // when the survivor's part of step 5 could not finish (step 5 then ran as usual),
            // or all five when it did (the replay's token is step 5's).
            let survivor = format!("w{}", 1 - victim);
            assert_eq!(r.kept, vec![survivor.clone()], "{family} {phases:?}: {r:?}");
            let replayed = r.replayed_tokens - want.prompt.len();
            assert!(replayed == 4 || replayed == 5, "{family} {phases:?}: {r:?}");
            assert!(r.detect_s <= DETECTION.as_secs_f64() + 0.5, "{family}: detected after {} s", r.detect_s);
            assert!(killed_at.is_some());
        } else {
            // Disaggregated, the prefill worker died after its handoff: decoding never needed it.
            assert!(generated.recoveries.is_empty(), "{family} {phases:?}: {:?}", generated.recoveries);
        }
    }
}

#[test]
fn gpt2_survives_each_used_worker_killed_with_phases_together() {
    survives_each_used_worker_killed("gpt2", PhaseChoice::Never);
}

#[test]
fn llama_survives_each_used_worker_killed_with_phases_together() {
    survives_each_used_worker_killed("llama", PhaseChoice::Never);
}

#[test]
fn gpt2_survives_each_used_worker_killed_with_phases_apart() {
    survives_each_used_worker_killed("gpt2", PhaseChoice::Always);
}

#[test]
fn llama_survives_each_used_worker_killed_with_phases_apart() {
    survives_each_used_worker_killed("llama", PhaseChoice::Always);
}

/// When no worker that answers can take the lost part as it is (the spare here has less memory
/// than the lost device), the model is placed anew on the workers that answer, spare included,
/// and the whole session is replayed there: still every token of the eager reference.
#[test]
fn a_lost_part_no_free_worker_can_take_is_placed_anew_on_the_survivors() {
    let mut workers = workers(3, &[]);
    let text = cluster_text(&workers, "100KB", 1)
        .replace("(name: \"w2\", kind: cpu, memory: \"100KB\"", "(name: \"w2\", kind: cpu, memory: \"98KB\"");
    assert!(text.contains("98KB"), "{text}");
    let want = reference("gpt2");
    let (result, used) = generate_recovering("gpt2", &text, PhaseChoice::Never, 3, |s| {
        if s.step == 4 {
            kill(&mut workers[1]);
        }
    });
    assert_eq!(used, ["w0", "w1"]);
    let generated = result.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(generated.tokens, want.tokens);
    for (i, got) in generated.logits.iter().enumerate() {
        assert_close(&format!("step {i} logits"), got, &want.logits.get(i as i64));
    }
    let [r] = generated.recoveries.as_slice() else { panic!("{:?}", generated.recoveries) };
    assert_eq!((r.step, r.lost.clone(), r.kept.is_empty()), (5, vec!["w1".to_string()], true), "{r:?}");
    assert_eq!(r.replayed_tokens, want.prompt.len() + 5, "the whole lineage replayed: {r:?}");
    // Placed anew on w0 and the spare: later steps run on both.
    assert!(generated.steps[6..].iter().all(|s| s.workers.contains_key("w0") && s.workers.contains_key("w2")));
}

/// A survivor with no room for the replay's scratch session (one session per client here) keeps
/// no state: the replay rewrites the whole lineage's state on every worker, still token-exact.
#[test]
fn with_no_room_for_a_scratch_session_the_replay_rewrites_everything() {
    let mut workers = workers(3, &["--max-sessions", "1"]);
    let text = cluster_text(&workers, "100KB", 1);
    let want = reference("gpt2");
    let (result, _) = generate_recovering("gpt2", &text, PhaseChoice::Never, 3, |s| {
        if s.step == 4 {
            kill(&mut workers[1]);
        }
    });
    let generated = result.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(generated.tokens, want.tokens);
    let [r] = generated.recoveries.as_slice() else { panic!("{:?}", generated.recoveries) };
    assert!(r.kept.is_empty(), "no state kept: {r:?}");
    assert_eq!(r.replayed_tokens, want.prompt.len() + 5, "the whole lineage replayed: {r:?}");
    // The program itself was kept (its plan's device w1 now runs on the spare), not placed
    // anew (which would name the spare w2 in the plan).
    assert!(generated.steps[6..].iter().all(|s| s.workers.contains_key("w1") && !s.workers.contains_key("w2")));
}

/// A worker killed and restarted at the same address with the same `--state-dir` keeps its
/// fingerprint (the cluster file pinned it), and with no spare the recovery places the model on
/// both workers again, the restarted one included.
#[test]
fn a_restarted_worker_keeps_its_identity_and_a_recovery_uses_it() {
    let dirs: Vec<std::path::PathBuf> = (0..2).map(|i| scratch(&format!("state{i}"))).collect();
    let mut workers: Vec<WorkerProcess> =
        dirs.iter().map(|d| worker_process(&["--token", TOKEN, "--state-dir", d.to_str().unwrap()])).collect();
    let text = cluster_text(&workers, "100KB", 0);
    let want = reference("gpt2");
    let (old_address, old_fingerprint) = (workers[1].address.clone(), workers[1].fingerprint.clone());
    let state_dir = dirs[1].to_str().unwrap().to_string();
    let mut restarted = None;
    let (result, used) = generate_recovering("gpt2", &text, PhaseChoice::Never, 3, |s| {
        if s.step == 4 {
            kill(&mut workers[1]);
            restarted = Some(worker_process(&["--token", TOKEN, "--state-dir", &state_dir, "--listen", &old_address]));
        }
    });
    assert_eq!(used, ["w0", "w1"]);
    let restarted = restarted.expect("restarted after the fifth token");
    assert_eq!((&restarted.address, &restarted.fingerprint), (&old_address, &old_fingerprint), "same identity");
    let generated = result.unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(generated.tokens, want.tokens);
    let [r] = generated.recoveries.as_slice() else { panic!("{:?}", generated.recoveries) };
    assert_eq!((r.step, r.lost.clone()), (5, vec!["w1".to_string()]));
    assert_eq!(r.kept, ["w0"], "w0 kept its state; the restarted w1 took its part back, rebuilt");
    assert!(generated.steps[6..].iter().all(|s| s.workers.contains_key("w1")), "the restarted worker runs again");
}

/// With no spare and the survivor too small for the whole model, the generation fails with a
/// typed error naming the placement's reason, within the detection bound of the kill (plus the
/// moment compiling takes).
#[test]
fn with_no_survivor_able_to_hold_the_model_the_error_is_typed_and_prompt() {
    let mut workers = workers(2, &[]);
    let text = cluster_text(&workers, "100KB", 0);
    let mut killed_at = None;
    let (result, _) = generate_recovering("gpt2", &text, PhaseChoice::Never, 3, |s| {
        if s.step == 4 {
            kill(&mut workers[1]);
            killed_at = Some(Instant::now());
        }
    });
    let after = killed_at.expect("killed").elapsed();
    let Err(GenerateError::Recovery { step: 5, source: RecoveryError::DoesNotFit { alive, lost, source }, .. }) =
        &result
    else {
        panic!("expected a recovery that does not fit, got {:?}", result.as_ref().map(|g| &g.tokens))
    };
    assert_eq!((alive.as_slice(), lost.as_slice()), (["w0".to_string()].as_slice(), ["w1".to_string()].as_slice()));
    assert!(source.to_string().contains("placing"), "{source}");
    assert!(after < DETECTION + Duration::from_millis(1500), "the error came {after:?} after the kill");
}

/// `--max-recoveries` bounds the recoveries of one generation: with one allowed, losing the
/// spare that took over is a typed error naming the recoveries made, not another recovery.
#[test]
fn a_loss_beyond_max_recoveries_is_a_typed_error() {
    let mut workers = workers(3, &[]);
    let text = cluster_text(&workers, "100KB", 1);
    let mut recovered_at = None;
    let (result, _) = generate_recovering("gpt2", &text, PhaseChoice::Never, 1, |s| {
        if s.step == 4 {
            kill(&mut workers[1]);
        }
        if s.recovered.is_some() {
            recovered_at = Some(s.step);
        }
        if s.step == 8 {
            kill(&mut workers[2]);
        }
    });
    assert_eq!(recovered_at, Some(5), "the first loss recovered on the spare");
    match result {
        Err(GenerateError::TooManyRecoveries { step: 9, recoveries: 1, source }) => {
            assert!(source.is_worker_loss(), "{source}")
        }
        other => panic!("expected TooManyRecoveries at step 9, got {:?}", other.map(|g| g.tokens)),
    }
}

/// Stats of every worker, asked on a connection of their own.
fn worker_stats(rt: &tokio::runtime::Runtime, workers: &[WorkerProcess]) -> Vec<genie_runtime::wire::WorkerStats> {
    rt.block_on(async {
        let mut all = Vec::new();
        for (i, w) in workers.iter().enumerate() {
            let name = format!("w{i}");
            let address = WorkerAddress {
                device: name.clone(),
                addr: w.address.parse().unwrap(),
                trust: Trust::Fingerprint(w.fingerprint.clone()),
                server_name: "127.0.0.1".into(),
            };
            let cluster = Cluster::connect(vec![address], ClientOptions::new(TOKEN)).await.unwrap();
            all.push(cluster.stats(&name).await.unwrap());
            cluster.close().await;
        }
        all
    })
}

/// `genie generate` with its cluster file and the test's detection bound.
fn genie_generate(cluster: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_genie"));
    cmd.args(["generate"])
        .arg(fixture("gpt2/prefill.pt2"))
        .arg(fixture("gpt2/decode.pt2"))
        .arg("--cluster")
        .arg(cluster)
        .args(["--token", TOKEN, "--detect-secs", "2", "--max-seq", "64", "--prompt-ids"])
        .arg(fixture("gpt2/generate.safetensors"))
        .args(extra);
    cmd
}

/// A `genie generate` process SIGKILLed mid-generation leaves no session, program, weight or
/// committed byte on the workers once their idle timeouts have passed.
#[test]
fn a_client_killed_mid_session_leaves_nothing_held_on_the_workers() {
    let workers = workers(2, &["--session-idle-secs", "1", "--weight-cache", "0"]);
    let cluster = scratch("killed-client").join("cluster.ron");
    std::fs::write(&cluster, cluster_text(&workers, "150KB", 0)).unwrap();
    let mut child = genie_generate(&cluster, &["--jsonl", "--max-new-tokens", "55"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first step").unwrap();
    assert!(first.contains("\"step\":0"), "{first}");
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let printed = 1 + lines.map_while(Result::ok).count();
    assert!(!status.success() && printed < 55, "killed mid-generation ({printed} steps printed, {status})");
    let rt = runtime();
    let held = |s: &genie_runtime::wire::WorkerStats| {
        s.sessions + s.programs + s.state_bytes + s.committed_bytes + s.resident_weights
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = worker_stats(&rt, &workers);
        if stats.iter().all(|s| held(s) == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "still held after 20 s: {stats:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `genie generate --jsonl` marks the step at which it recovered (`recovered`: the worker lost,
/// the tokens replayed, the seconds it took), and its tokens are those of an uninterrupted run.
#[test]
fn genie_generate_jsonl_marks_the_recovered_step() {
    let mut workers = workers(3, &[]);
    let cluster = scratch("jsonl").join("cluster.ron");
    std::fs::write(&cluster, cluster_text(&workers, "150KB", 1)).unwrap();
    let steps = |stdout: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let tokens =
        |steps: &[serde_json::Value]| -> Vec<i64> { steps.iter().map(|s| s["token"].as_i64().unwrap()).collect() };
    let args = ["--jsonl", "--max-new-tokens", "55", "--disaggregate", "never"];
    let whole = genie_generate(&cluster, &args).output().unwrap();
    assert!(whole.status.success(), "{}", String::from_utf8_lossy(&whole.stderr));
    let uninterrupted = tokens(&steps(&whole.stdout));

    let mut child = genie_generate(&cluster, &[args.as_slice(), &["--stats"]].concat())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // Hold the client still while its decode worker dies, so the kill lands mid-generation.
    let pid = child.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    kill(&mut workers[1]);
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let all = steps(&[first.as_bytes(), &rest].concat());
    assert_eq!(tokens(&all), uninterrupted, "token for token as the uninterrupted run");
    let marked: Vec<&serde_json::Value> = all.iter().filter(|s| s.get("recovered").is_some()).collect();
    let [step] = marked.as_slice() else { panic!("one recovered step: {all:?}") };
    let r = &step["recovered"];
    assert_eq!(r["lost"], "w1", "{step}");
    let at = step["step"].as_u64().unwrap();
    assert_eq!(r["kept"], serde_json::json!(["w0"]), "{step}");
    let replayed = r["replayed_tokens"].as_u64().unwrap();
    assert!(replayed == 5 + at || replayed + 1 == 5 + at, "the prompt and the tokens before: {step}");
    assert!(r["seconds"].as_f64().unwrap() > 0.0 && r["detect_s"].as_f64().unwrap() <= 2.5, "{step}");
    assert!(stderr.contains(&format!("recovered at step {at}: lost w1")), "{stderr}");
}
