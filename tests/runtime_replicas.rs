//! Replicas and load-balanced sessions (`--replicas R`) on real workers over loopback QUIC:
//! sessions of two clients opened at once land balanced within one across two replicas; a
//! replica that refuses a session for memory passes it to the next; sessions opened by separate
//! `genie generate` processes land balanced on two `genie worker` processes; and separate
//! `genie generate` processes decoding on one `genie worker` process share its batches.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use common::{fixture, read, worker_process, WorkerProcess};
use genie_codegen::ProgramPlan;
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::Program as SrgProgram;
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientOptions, Session, LOAD_WAIT};
use genie_runtime::deploy::{self, Deployment, LocalMemory, RemoteWorker};
use genie_runtime::generate::greedy;
use genie_runtime::transport::Trust;
use genie_runtime::worker;
use tch::Device;

const TOKEN: &str = "s3cret";

/// The GPT-2 fixture compiled for two roomy workers as two replicas, one worker each.
fn compile_two_replicas() -> (ProgramPlan, SrgProgram) {
    let files = [fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2")];
    let mut program = genie_frontends::load(&files).expect("fixture loads");
    let options = CompileOptions { max_seq: Some(32), replicas: 2, ..CompileOptions::default() };
    let plan = compile_program(&mut program, &ClusterSpec::local_workers(2, 1 << 30), &options).expect("compiles");
    let names: Vec<Vec<&str>> = plan.replicas.iter().map(|r| r.iter().map(|d| d.name.as_str()).collect()).collect();
    assert_eq!(names, [["worker0"], ["worker1"]]);
    (plan, program)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

fn reference() -> (Vec<i64>, Vec<i64>) {
    let r = read(&fixture("gpt2/generate.safetensors"));
    (Vec::<i64>::try_from(r["prompt"].flatten(0, -1)).unwrap(), Vec::<i64>::try_from(&r["tokens"]).unwrap())
}

/// Embedded workers as a remote deployment (their certificates pinned), so a test can give each
/// its own memory or stop one.
fn remote_of(workers: &worker::LocalWorkers) -> Deployment {
    let remote: BTreeMap<String, RemoteWorker> = workers
        .addresses
        .iter()
        .map(|a| match &a.trust {
            Trust::Fingerprint(fp) => (a.device.clone(), RemoteWorker::pinned(a.addr, fp.clone())),
            other => panic!("an embedded worker is pinned, not {other:?}"),
        })
        .collect();
    Deployment::Remote { workers: remote, token: workers.token.clone() }
}

/// How many of `sessions` run on each of `replicas` replicas.
fn per_replica(sessions: &[Session], replicas: usize) -> Vec<usize> {
    (0..replicas).map(|r| sessions.iter().filter(|s| s.replica() == r).count()).collect()
}

/// Sessions held by each worker, as the workers report them.
async fn worker_sessions(connected: &deploy::Connected) -> Vec<u64> {
    let mut out = Vec::new();
    for device in ["worker0", "worker1"] {
        out.push(connected.cluster().stats(device).await.expect("stats").sessions);
    }
    out
}

#[test]
fn sessions_of_two_clients_opened_at_once_balance_across_replicas() {
    let (plan, srg) = compile_two_replicas();
    let rt = runtime();
    let local = Deployment::Local { device: Device::Cpu, memory: LocalMemory::Unlimited };
    let plan = Arc::new(plan);
    let a = rt.block_on(deploy::deploy(plan.clone(), &srg.weights, &local, &ClientOptions::default())).unwrap();
    assert_eq!(a.program().replicas(), 2);
    // A second client of the same workers: its sessions and the first's see each other's load.
    let b = rt
        .block_on(deploy::deploy(plan.clone(), &srg.weights, &a.connected().as_remote(), &ClientOptions::default()))
        .unwrap();
    let opens: Vec<_> = (0..6)
        .map(|i| {
            let program = if i % 2 == 0 { a.program().clone() } else { b.program().clone() };
            rt.spawn(async move { program.open_session().await })
        })
        .collect();
    let sessions: Vec<Session> = opens.into_iter().map(|t| rt.block_on(t).unwrap().expect("opens")).collect();
    assert_eq!(per_replica(&sessions, 2), [3, 3], "six sessions opened at once by two clients");
    assert_eq!(rt.block_on(worker_sessions(a.connected())), [3, 3], "as the workers count them");
    for s in sessions {
        rt.block_on(s.close()).unwrap();
    }
    assert_eq!(rt.block_on(worker_sessions(a.connected())), [0, 0]);

    // Generations through either client, at once: token-exact, on both replicas.
    let (prompt, want) = reference();
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let program = if i % 2 == 0 { a.program().clone() } else { b.program().clone() };
            let (prompt, n) = (prompt.clone(), want.len());
            rt.spawn(async move { greedy(&program, &prompt, n, None).await })
        })
        .collect();
    let mut on = [0usize; 2];
    for (i, t) in runs.into_iter().enumerate() {
        let g = rt.block_on(t).unwrap().unwrap_or_else(|e| panic!("generation {i}: {e:?}"));
        assert_eq!(g.tokens, want, "generation {i} on replica {}", g.replica);
        on[g.replica] += 1;
    }
    assert!(on.iter().all(|n| *n > 0), "four generations at once, on both replicas: {on:?}");
    assert_eq!(rt.block_on(worker_sessions(a.connected())), [0, 0], "each closed its session");
    rt.block_on(b.close());
    rt.block_on(a.close());
}

#[test]
fn a_replica_that_refuses_for_memory_passes_the_session_to_the_next() {
    let (plan, srg) = compile_two_replicas();
    let device = &plan.devices[0];
    // Room for the program (its weights and one run) but not for a session's state beside.
    let tight = device.weight_bytes + device.activation_bytes + device.kv_bytes / 2;
    let budgets = [("worker0".to_string(), Some(tight)), ("worker1".to_string(), None)];
    let workers = worker::start_local_with_memory(&budgets, Device::Cpu).unwrap();
    let deployment = remote_of(&workers);
    let rt = runtime();
    let deployed =
        rt.block_on(deploy::deploy(Arc::new(plan), &srg.weights, &deployment, &ClientOptions::default())).unwrap();
    let program = deployed.program();
    // Both idle: worker1 has more memory free, so the first session goes there; the second
    // goes to the replica with fewer sessions, worker0, which refuses it for memory, and
    // passes it to worker1.
    let first = rt.block_on(program.open_session()).unwrap();
    let second = rt.block_on(program.open_session()).unwrap();
    assert_eq!((first.replica(), second.replica()), (1, 1));
    let stats0 = rt.block_on(deployed.cluster().stats("worker0")).unwrap();
    assert!(stats0.refused_for_memory >= 1, "worker0 refused a session: {stats0:?}");
    assert_eq!(stats0.sessions, 0, "and holds nothing for it");
    assert_eq!(rt.block_on(deployed.cluster().stats("worker1")).unwrap().sessions, 2);
    // The session that was passed on works.
    let (prompt, want) = reference();
    let g = rt.block_on(greedy(program, &prompt, want.len(), None)).unwrap();
    assert_eq!((g.tokens, g.replica), (want, 1));
    drop(workers);
}

/// A replica whose worker has gone: new sessions open on the other (its load is unknown, so
/// it is tried last, and opening there fails over), and generations there are exact.
#[test]
fn sessions_open_on_the_replica_whose_worker_is_alive() {
    let (plan, srg) = compile_two_replicas();
    let mut workers = worker::start_local(&["worker0".to_string(), "worker1".to_string()], Device::Cpu).unwrap();
    let deployment = remote_of(&workers);
    let rt = runtime();
    let options = ClientOptions { retries: 0, ..ClientOptions::default() };
    let deployed = rt.block_on(deploy::deploy(Arc::new(plan), &srg.weights, &deployment, &options)).unwrap();
    workers.handles.remove(0).shutdown();
    let (prompt, want) = reference();
    for i in 0..2 {
        let g = rt.block_on(greedy(deployed.program(), &prompt, want.len(), None)).unwrap();
        assert_eq!((g.tokens, g.replica), (want.clone(), 1), "generation {i}");
        // The silent replica is remembered: reading the loads does not wait for it again.
        let asked = Instant::now();
        let loads = rt.block_on(deployed.program().replica_loads());
        assert!(loads[0].is_none() && loads[1].is_some(), "{loads:?}");
        assert!(
            asked.elapsed() < LOAD_WAIT / 2,
            "the loads took {:?}: the gone worker was asked again",
            asked.elapsed()
        );
    }
}

/// A `genie generate` process printing `--jsonl`.
struct GenerateProcess {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    /// The lines read so far.
    read: Vec<String>,
}

impl GenerateProcess {
    /// Start it on the cluster file's workers with `extra` flags.
    fn spawn(cluster: &Path, extra: &[&str]) -> GenerateProcess {
        let (prompt, want) = reference();
        let prompt: Vec<String> = prompt.iter().map(|t| t.to_string()).collect();
        let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_genie"))
            .args(["generate", p.to_str().unwrap(), d.to_str().unwrap(), "--prompt", &prompt.join(",")])
            .args(["--max-new-tokens", &want.len().to_string(), "--max-seq", "32"])
            .args(["--cluster", cluster.to_str().unwrap(), "--token", TOKEN, "--jsonl", "--stats"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("genie generate starts");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        GenerateProcess { child, lines, read: Vec::new() }
    }

    /// Start it and wait for its first step's line: its session is open and prefilled.
    fn start(cluster: &Path, extra: &[&str]) -> GenerateProcess {
        let mut process = GenerateProcess::spawn(cluster, extra);
        match process.lines.next() {
            Some(Ok(line)) => process.read.push(line),
            _ => {
                let out = process.child.wait_with_output().unwrap();
                panic!("genie generate printed no step: {}", String::from_utf8_lossy(&out.stderr));
            }
        }
        process
    }

    /// Stop it (SIGSTOP) at once: its session stays open, its generation unfinished.
    fn hold(&self) {
        self.signal("-STOP");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap();
        assert!(status.success(), "kill {signal}");
    }

    /// Wait for it to finish: its steps' JSON and its stderr.
    fn finish(mut self) -> (Vec<serde_json::Value>, String) {
        let mut lines = std::mem::take(&mut self.read);
        lines.extend(self.lines.by_ref().map(Result::unwrap));
        let out = self.child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "genie generate failed: {stderr}");
        (lines.iter().map(|l| serde_json::from_str(l).expect(l)).collect(), stderr)
    }
}

fn tokens(steps: &[serde_json::Value]) -> Vec<i64> {
    steps.iter().map(|s| s["token"].as_i64().unwrap()).collect()
}

/// A cluster file naming `workers` as devices `w0`, `w1`, … of 1 MB each, fingerprints pinned.
fn cluster_of(path: PathBuf, workers: &[WorkerProcess]) -> PathBuf {
    let devices: Vec<String> =
        (0..workers.len()).map(|i| format!("(name: \"w{i}\", kind: cpu, memory: \"1MB\")")).collect();
    let entries: Vec<String> = workers
        .iter()
        .enumerate()
        .map(|(i, w)| format!("\"w{i}\": (address: \"{}\", fingerprint: \"{}\")", w.address, w.fingerprint))
        .collect();
    let text = format!("(devices: [{}], deployment: (workers: {{{}}}))", devices.join(", "), entries.join(", "));
    std::fs::write(&path, text).unwrap();
    path
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genie-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Four `genie generate` processes on two `genie worker` processes with `--replicas 2`, each
/// held (stopped) once its session is open, so all four are open together: after each, the
/// workers' session counts are within one of each other, and all finish token-exact.
#[test]
fn sessions_opened_by_separate_generate_processes_land_balanced_across_replicas() {
    let workers = [worker_process(&["--token", TOKEN]), worker_process(&["--token", TOKEN])];
    let cluster = cluster_of(tmp("two.ron"), &workers);

    // The plan `genie compile --replicas 2` writes: one copy per worker.
    let plan = tmp("two.plan");
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["compile", p.to_str().unwrap(), d.to_str().unwrap(), "--cluster", cluster.to_str().unwrap()])
        .args(["--replicas", "2", "--max-seq", "32", "-o", plan.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("2 replicas, each session on one: w0 | w1"), "{text}");

    let remote = remote_deployment(&cluster);
    let rt = runtime();
    let watcher = rt
        .block_on(deploy::connect(
            &remote,
            &[("w0".into(), 1 << 20), ("w1".into(), 1 << 20)],
            &ClientOptions::default(),
        ))
        .expect("the test connects to the workers");
    let sessions = |rt: &tokio::runtime::Runtime| -> Vec<u64> {
        ["w0", "w1"].iter().map(|w| rt.block_on(watcher.cluster().stats(w)).unwrap().sessions).collect()
    };

    let mut held = Vec::new();
    for i in 0..4 {
        let process = GenerateProcess::start(&cluster, &["--replicas", "2"]);
        process.hold();
        held.push(process);
        let counts = sessions(&rt);
        assert_eq!(counts.iter().sum::<u64>(), i + 1, "every held process keeps its session: {counts:?}");
        assert!(counts[0].abs_diff(counts[1]) <= 1, "after {} processes: {counts:?} sessions per worker", i + 1);
    }
    let (_, want) = reference();
    let mut on = [0; 2];
    for process in held {
        process.signal("-CONT");
        let (steps, stderr) = process.finish();
        assert_eq!(tokens(&steps), want);
        let replica = if stderr.contains("session on replica 0 of 2") {
            0
        } else {
            assert!(stderr.contains("session on replica 1 of 2"), "{stderr}");
            1
        };
        on[replica] += 1;
    }
    assert_eq!(on, [2, 2]);
    rt.block_on(watcher.close());
}

/// Two `genie generate` processes started together on one `genie worker` process: their decode
/// steps run in shared batches (a step's `batch` is 2), and both get the reference tokens. The
/// fixture's steps execute in well under a millisecond, so two clients' steps seldom arrive
/// while another runs; the worker's batch window (up to two steps, 200 ms) waits for them, so
/// whichever process decodes first waits for the other's steps to join.
#[test]
fn separate_generate_processes_share_batches_on_one_worker_process() {
    let workers = [worker_process(&["--token", TOKEN, "--max-batch", "2", "--batch-window-ms", "200"])];
    let cluster = cluster_of(tmp("one.ron"), &workers);
    let first = GenerateProcess::spawn(&cluster, &[]);
    let second = GenerateProcess::spawn(&cluster, &[]);
    let (a, _) = first.finish();
    let (b, _) = second.finish();
    let (_, want) = reference();
    assert_eq!(tokens(&a), want);
    assert_eq!(tokens(&b), want);
    let shared = a.iter().chain(&b).filter(|s| s["batch"].as_u64() == Some(2)).count();
    assert!(shared >= 4, "too few steps ran in a batch with the other process: {shared}; {a:?} {b:?}");
    eprintln!("{shared} steps ran in batches of two");
}

/// The remote deployment a cluster file describes, with the test's token.
fn remote_deployment(cluster: &Path) -> Deployment {
    let text = std::fs::read_to_string(cluster).unwrap();
    let spec = deploy::DeploymentSpec::from_cluster_ron(&text).unwrap().expect("a deployment section");
    spec.resolve(TOKEN.into(), None).unwrap()
}
