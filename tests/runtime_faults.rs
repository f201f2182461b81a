//! Faults over real sockets: a wrong token, oversized and corrupt frames, a worker killed in the
//! middle of a run. Each gets a typed error naming the problem, and healthy workers keep serving.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fixture, poll, worker_process};
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientError, ClientOptions, WorkerAddress};
use genie_runtime::deploy::{self, Connected, DeployError, Deployment, LocalMemory, RemoteWorker};
use genie_runtime::handshake;
use genie_runtime::streams::{self, ReadFrame};
use genie_runtime::transport::{self, TransportOptions};
use genie_runtime::wire::{self, ErrorKind, Frame, Hello, Reply, Request, Role, PROTOCOL_VERSION};
use tch::{Device, Tensor};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// One embedded worker `worker0` with `memory` (or none), connected.
fn one_worker_with(rt: &tokio::runtime::Runtime, memory: Option<u64>) -> Connected {
    let limit = if memory.is_some() { LocalMemory::FromPlan } else { LocalMemory::Unlimited };
    let local = Deployment::Local { device: Device::Cpu, memory: limit };
    let devices = [("worker0".to_string(), memory.unwrap_or(0))];
    rt.block_on(deploy::connect(&local, &devices, &ClientOptions::default())).expect("worker starts")
}

fn one_worker(rt: &tokio::runtime::Runtime) -> Connected {
    one_worker_with(rt, None)
}

/// The client error inside a deployment error.
fn client_error(err: DeployError) -> ClientError {
    match err {
        DeployError::Client(e) => e,
        other => panic!("expected a client error, got {other}"),
    }
}

/// A small single-device program to prove a worker still serves a fresh client.
fn check_still_serves(rt: &tokio::runtime::Runtime, workers: &Connected) {
    let mut program = genie_frontends::load(&[fixture("edge/model.pt2")]).unwrap();
    let plan =
        compile_program(&mut program, &ClusterSpec::local_workers(1, 1 << 30), &CompileOptions::default()).unwrap();
    let inputs: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("edge/model.inputs.safetensors")).unwrap().into_iter().collect();
    rt.block_on(async {
        let deployed =
            deploy::deploy(Arc::new(plan), &program.weights, &workers.as_remote(), &ClientOptions::default())
                .await
                .expect("a fresh client connects and loads");
        let mut s = deployed.program().open_session().await.unwrap();
        let out = s.run("model", &inputs).await.expect("runs");
        assert!(!out.outputs.is_empty());
    });
}

#[test]
fn a_wrong_token_is_refused_before_anything_is_accepted() {
    let rt = runtime();
    let workers = one_worker(&rt);
    let Deployment::Remote { workers: remote, .. } = workers.as_remote() else { panic!("remote") };
    let wrong = Deployment::Remote { workers: remote, token: "not-the-token".into() };
    let devices = [("worker0".to_string(), 0)];
    let err =
        client_error(rt.block_on(deploy::connect(&wrong, &devices, &ClientOptions::default())).err().expect("refused"));
    assert!(
        matches!(&err, ClientError::Refused { error, .. } if error.kind == ErrorKind::Unauthorized),
        "expected Unauthorized, got {err}"
    );
    // A request other than Hello first is refused the same way.
    let addr = workers.addresses()[0].clone();
    rt.block_on(async {
        let (mut send, mut recv) = raw_control(&addr).await;
        streams::write_frame(&mut send, &Frame { id: 9, body: Request::Stats }).await.unwrap();
        match streams::read_frame::<Reply>(&mut recv).await.unwrap() {
            ReadFrame::Frame(Frame { body: Reply::Error(e), .. }) => assert_eq!(e.kind, ErrorKind::Unauthorized),
            _ => panic!("expected a refusal"),
        }
    });
    check_still_serves(&rt, &workers);
}

async fn raw_control(addr: &WorkerAddress) -> (quinn::SendStream, quinn::RecvStream) {
    let options = TransportOptions::default();
    let endpoint = transport::client_endpoint(&options).unwrap();
    let conn = transport::connect(&endpoint, addr.addr, "genie-worker", &addr.trust, &options).await.unwrap();
    // Keep the endpoint alive with the streams.
    std::mem::forget(endpoint);
    conn.open_bi().await.unwrap()
}

async fn hello(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, token: &str) {
    let hello = Hello { version: PROTOCOL_VERSION, token: token.into(), role: Role::Client, resume: None };
    let welcome = handshake::say_hello(send, recv, &hello, Duration::from_secs(10)).await.expect("welcomed");
    assert!(welcome.client.is_some(), "a client is given its identity");
}

#[test]
fn corrupt_and_oversized_frames_are_refused_and_the_worker_keeps_serving() {
    let rt = runtime();
    let workers = one_worker(&rt);
    let addr = workers.addresses()[0].clone();
    rt.block_on(async {
        let (mut send, mut recv) = raw_control(&addr).await;
        hello(&mut send, &mut recv, workers.token()).await;
        // A frame of the right length whose body is garbage: refused, the stream goes on.
        let mut garbage = 16u32.to_le_bytes().to_vec();
        garbage.extend_from_slice(&[0xee; 16]);
        send.write_all(&garbage).await.unwrap();
        match streams::read_frame::<Reply>(&mut recv).await.unwrap() {
            ReadFrame::Frame(Frame { body: Reply::Error(e), .. }) => assert_eq!(e.kind, ErrorKind::Malformed, "{e}"),
            _ => panic!("expected Malformed"),
        }
        streams::write_frame(&mut send, &Frame { id: 2, body: Request::Stats }).await.unwrap();
        match streams::read_frame::<Reply>(&mut recv).await.unwrap() {
            ReadFrame::Frame(Frame { id: 2, body: Reply::Stats(_) }) => {}
            _ => panic!("the stream should still serve after a malformed frame"),
        }
        // A corrupt tensor stream (bad magic) is stopped; an oversized tensor header too.
        let conn_streams = async {
            let options = TransportOptions::default();
            let endpoint = transport::client_endpoint(&options).unwrap();
            let conn = transport::connect(&endpoint, addr.addr, "genie-worker", &addr.trust, &options).await.unwrap();
            let (mut s, mut r) = conn.open_bi().await.unwrap();
            hello(&mut s, &mut r, workers.token()).await;
            let mut uni = conn.open_uni().await.unwrap();
            // Left open, so the worker's refusal (STOP_SENDING) is what ends it.
            uni.write_all(b"XXXXjunkjunkjunk").await.unwrap();
            let stopped = tokio::time::timeout(Duration::from_secs(5), uni.stopped()).await;
            assert!(matches!(stopped, Ok(Ok(Some(_)))), "bad magic should stop the stream: {stopped:?}");
            let mut uni = conn.open_uni().await.unwrap();
            let mut head = wire::TENSOR_MAGIC.to_vec();
            head.extend_from_slice(&u32::MAX.to_le_bytes());
            uni.write_all(&head).await.unwrap();
            let stopped = tokio::time::timeout(Duration::from_secs(5), uni.stopped()).await;
            assert!(matches!(stopped, Ok(Ok(Some(_)))), "an oversized header should stop the stream: {stopped:?}");
            (endpoint, conn)
        };
        let _keep = conn_streams.await;
        // A frame longer than the limit: refused, and that connection is closed (framing is lost).
        send.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        match streams::read_frame::<Reply>(&mut recv).await.unwrap() {
            ReadFrame::Frame(Frame { body: Reply::Error(e), .. }) => {
                assert_eq!(e.kind, ErrorKind::FrameTooLarge, "{e}")
            }
            _ => panic!("expected FrameTooLarge"),
        }
    });
    check_still_serves(&rt, &workers);
}

/// `worker0` embedded in this process (healthy), `worker1` a `genie worker` process (the one a
/// test kills), a deployment on both, and client options that notice a dead worker in seconds.
struct Victim {
    healthy: Connected,
    victim: common::WorkerProcess,
    deployment: Deployment,
    options: ClientOptions,
}

fn victim(rt: &tokio::runtime::Runtime) -> Victim {
    let healthy = one_worker(rt);
    let victim = worker_process(&["--token", healthy.token()]);
    let Deployment::Remote { workers: mut both, token } = healthy.as_remote() else { panic!("remote") };
    both.insert("worker1".into(), RemoteWorker::pinned(victim.address.parse().unwrap(), victim.fingerprint.clone()));
    let deployment = Deployment::Remote { workers: both, token };
    let mut options = ClientOptions { run_timeout: Duration::from_secs(5), ..ClientOptions::default() };
    options.transport.idle_timeout = Duration::from_secs(3);
    Victim { healthy, victim, deployment, options }
}

/// The GPT-2 fixture compiled for two 80 kB workers, which splits it over both.
fn gpt2_split_over_two_workers() -> (genie_codegen::ProgramPlan, genie_ir::Program) {
    let files = [fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2")];
    let mut program = genie_frontends::load(&files).unwrap();
    let cluster = ClusterSpec::local_workers(2, 80_000);
    let plan = compile_program(&mut program, &cluster, &CompileOptions { max_seq: Some(16), ..Default::default() })
        .expect("compiles for two workers");
    assert!(plan.devices.iter().all(|d| d.nodes > 0), "split over both workers");
    (plan, program)
}

#[test]
fn a_worker_killed_mid_run_gives_a_clear_error_and_the_other_stays_healthy() {
    let (plan, program) = gpt2_split_over_two_workers();
    let rt = runtime();
    let Victim { healthy, mut victim, deployment, options } = victim(&rt);
    let prefill_in: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("gpt2/prefill.inputs.safetensors")).unwrap().into_iter().collect();
    rt.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &program.weights, &deployment, &options).await.unwrap();
        let cluster = deployed.cluster();
        let mut s = deployed.program().open_session().await.unwrap();
        s.run("prefill", &prefill_in).await.expect("runs while both are up");
        // Keep calls going, and kill the second worker while they run.
        let runner = tokio::spawn(async move {
            loop {
                let started = Instant::now();
                if let Err(e) = s.run("prefill", &prefill_in).await {
                    return (e, started.elapsed(), s);
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        victim.child.kill().unwrap();
        let (err, took, mut s) =
            tokio::time::timeout(Duration::from_secs(30), runner).await.expect("the run ends").unwrap();
        assert!(took <= options.run_timeout + Duration::from_secs(2), "the error took {took:?}");
        let clear = matches!(
            &err,
            ClientError::ConnectionLost { .. } | ClientError::Timeout { .. } | ClientError::Connect { .. }
        ) || matches!(&err, ClientError::Remote { error, .. }
            if matches!(error.kind, ErrorKind::Timeout | ErrorKind::PeerUnreachable));
        assert!(clear, "unclear error: {err}");
        assert!(err.to_string().contains("worker1"), "the error should name the killed worker, worker1: {err}");
        // The failed call may have left the workers' caches out of step: the session forgets its
        // state, and a decode step says so instead of reading it.
        let ids = BTreeMap::from([("input_ids".to_string(), Tensor::from_slice(&[1i64]).reshape([1, 1]))]);
        let again = s.run("decode", &ids).await.unwrap_err();
        assert!(matches!(again, ClientError::StateNotReady { .. }), "{again}");
        // The other worker is healthy: it answers and runs new work.
        let stats = cluster.stats("worker0").await.expect("the healthy worker answers");
        assert!(stats.runs > 0);
    });
    check_still_serves(&rt, &healthy);
}

/// One part of a call split over two workers fails (a token id beyond the vocabulary, on the
/// worker with the embedding): the call fails at once with that worker's error, and the other
/// part, which waits for an activation that will never come, is cancelled rather than left to
/// wait out the run's two-minute timeout. Both workers then run the next call.
#[test]
fn a_failed_part_of_a_call_cancels_the_others_at_once() {
    let (plan, program) = gpt2_split_over_two_workers();
    let rt = runtime();
    let local = Deployment::Local { device: Device::Cpu, memory: LocalMemory::Unlimited };
    let options = ClientOptions { run_timeout: Duration::from_secs(120), ..ClientOptions::default() };
    let good: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("gpt2/prefill.inputs.safetensors")).unwrap().into_iter().collect();
    let mut bad: BTreeMap<String, Tensor> = good.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
    let ids = bad.get_mut("input_ids").expect("the prefill takes input_ids");
    *ids = ids.full_like(1_000_000);
    rt.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &program.weights, &local, &options).await.unwrap();
        let mut s = deployed.program().open_session().await.unwrap();
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(100), s.run("prefill", &bad))
            .await
            .expect("the call ends before its timeout")
            .unwrap_err();
        let took = started.elapsed();
        let ClientError::Remote { device, error } = &err else { panic!("a worker's error, got {err}") };
        assert!(!matches!(error.kind, ErrorKind::Timeout | ErrorKind::Cancelled), "the root cause, not {err}");
        assert_eq!(device, "worker0", "the worker with the embedding: {err}");
        assert!(took < Duration::from_secs(30), "the failed call took {took:?}: the other part was not cancelled");
        let out = s.run("prefill", &good).await.expect("both workers run the next call");
        assert!(!out.outputs.is_empty());
    });
}

/// Prefill and decode apart, and the prefill worker dies before its handoff: the call fails
/// within its deadline naming that worker, and the decode worker, whose part only waited for
/// the handoff (on no thread, in no execution slot), ends that part and stays healthy.
#[test]
fn a_prefill_worker_killed_before_its_handoff_leaves_the_decode_worker_healthy() {
    let files = [fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2")];
    let mut program = genie_frontends::load(&files).unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prefill_decode_cluster.ron"),
    )
    .unwrap();
    // worker0 (in this process, healthy) is the bandwidth device, worker1 (a process) computes.
    let spec = example.replace("\"bandwidth\"", "\"worker0\"").replace("\"compute\"", "\"worker1\"");
    let cluster = ClusterSpec::from_ron(&spec).unwrap();
    let options = CompileOptions { request: Some(genie_ir::RequestShape::default()), ..CompileOptions::default() };
    let plan = compile_program(&mut program, &cluster, &options).unwrap();
    assert!(plan.phases.as_ref().is_some_and(|p| p.disaggregated), "{:?}", plan.phases);
    assert!(plan.entry("prefill").unwrap().handoffs.iter().all(|h| h.from == "worker1" && h.to == "worker0"));
    let rt = runtime();
    let Victim { healthy, mut victim, deployment, options } = victim(&rt);
    let prefill_in: BTreeMap<String, Tensor> =
        Tensor::read_safetensors(fixture("gpt2/prefill.inputs.safetensors")).unwrap().into_iter().collect();
    rt.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &program.weights, &deployment, &options).await.unwrap();
        let mut s = deployed.program().open_session().await.unwrap();
        s.run("prefill", &prefill_in).await.expect("runs while both are up");
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        let started = Instant::now();
        let err = s.run("prefill", &prefill_in).await.unwrap_err();
        assert!(started.elapsed() <= options.run_timeout + Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(err.to_string().contains("worker1"), "the error names the dead prefill worker: {err}");
        // The decode worker's waiting part ended: nothing in flight, and it answers.
        let cluster = deployed.cluster();
        let idle = poll(Duration::from_secs(10), async || {
            cluster.stats("worker0").await.ok().filter(|st| st.calls_in_flight == 0)
        });
        assert!(idle.await.is_some(), "the decode worker still holds the call");
    });
    check_still_serves(&rt, &healthy);
}

/// The gpt2 pair compiled for one worker, and what admission will count for it: its distinct
/// weights' bytes, its activation peak, and one session's KV cache at `--max-seq 16`.
fn gpt2_on_one_worker() -> (genie_codegen::ProgramPlan, genie_ir::WeightStore, u64, u64, u64) {
    let files = [fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2")];
    let mut program = genie_frontends::load(&files).unwrap();
    let options = CompileOptions { max_seq: Some(16), ..Default::default() };
    let plan = compile_program(&mut program, &ClusterSpec::local_workers(1, 1 << 30), &options).unwrap();
    let info = plan.device("worker0").unwrap();
    let mut seen = std::collections::HashSet::new();
    let weights: u64 = info.weights.iter().filter(|w| seen.insert(w.hash.clone())).map(|w| w.bytes).sum();
    assert!(weights > 0 && info.kv_bytes > 0 && info.activation_bytes > 0);
    let (kv, activations) = (info.kv_bytes, info.activation_bytes);
    (plan, program.weights, weights, activations, kv)
}

fn out_of_memory(err: &ClientError) -> bool {
    matches!(err, ClientError::Remote { error, .. } if error.kind == ErrorKind::OutOfMemory)
}

#[test]
fn a_worker_refuses_loads_and_sessions_beyond_its_memory_and_keeps_serving() {
    let (plan, weights, weight_bytes, activations, kv) = gpt2_on_one_worker();
    let plan = Arc::new(plan);
    let rt = runtime();

    // One byte short of the weights and the activation peak: the load is refused, by name.
    let tight = weight_bytes + activations - 1;
    let workers = one_worker_with(&rt, Some(tight));
    rt.block_on(async {
        let cluster = workers.cluster();
        let err = client_error(workers.load(plan.clone(), &weights).await.err().expect("the load does not fit"));
        assert!(out_of_memory(&err), "expected OutOfMemory, got {err}");
        assert!(err.to_string().contains("weights"), "the message says what did not fit: {err}");
        let stats = cluster.stats("worker0").await.unwrap();
        assert_eq!((stats.refused_for_memory, stats.resident_weights), (1, 0), "nothing was uploaded");
        assert_eq!(stats.memory_bytes, Some(tight));
    });
    check_still_serves(&rt, &workers);

    // Room for the program, one session and one run: a second session (which must leave room
    // for a run too) is refused until the first one closes.
    let one_session = weight_bytes + activations + kv;
    let workers = one_worker_with(&rt, Some(one_session));
    rt.block_on(async {
        let cluster = workers.cluster();
        let program = workers.load(plan.clone(), &weights).await.expect("the program fits");
        let mut first = program.open_session().await.expect("one session fits");
        let prompt = BTreeMap::from([("input_ids".to_string(), Tensor::from_slice(&[1i64, 2, 3]).reshape([1, 3]))]);
        first.run("prefill", &prompt).await.expect("prefill runs");
        let err = program.open_session().await.err().expect("a second session does not fit");
        assert!(out_of_memory(&err), "expected OutOfMemory, got {err}");
        assert!(err.to_string().contains("session"), "{err}");
        first.close().await.unwrap();
        let mut second = program.open_session().await.expect("its memory is free again");
        second.run("prefill", &prompt).await.expect("runs");
        let stats = cluster.stats("worker0").await.unwrap();
        assert_eq!(stats.committed_bytes, weight_bytes + kv, "the run's activations are released");
        assert!(stats.peak_tensor_bytes <= one_session, "{} > {one_session}", stats.peak_tensor_bytes);
    });
}

#[test]
fn cached_weights_of_an_unloaded_program_make_room_for_the_next() {
    let (plan, weights, weight_bytes, activations, kv) = gpt2_on_one_worker();
    let mut llama = genie_frontends::load(&[fixture("llama/prefill.pt2"), fixture("llama/decode.pt2")]).unwrap();
    let options = CompileOptions { max_seq: Some(16), ..Default::default() };
    let llama_plan = compile_program(&mut llama, &ClusterSpec::local_workers(1, 1 << 30), &options).unwrap();
    let info = llama_plan.device("worker0").unwrap().clone();
    // Room for either program alone, not for both.
    let memory = (weight_bytes + activations + kv).max(info.weight_bytes + info.activation_bytes + info.kv_bytes);
    assert!(memory < weight_bytes + info.weight_bytes, "the budget must not hold both programs' weights");
    let rt = runtime();
    let workers = one_worker_with(&rt, Some(memory));
    rt.block_on(async {
        let cluster = workers.cluster();
        let gpt2 = workers.load(Arc::new(plan), &weights).await.unwrap();
        gpt2.unload().await.unwrap();
        let cached = cluster.stats("worker0").await.unwrap();
        assert_eq!(cached.resident_weight_bytes, weight_bytes, "unloaded weights stay cached");
        let llama = workers.load(Arc::new(llama_plan), &llama.weights).await.expect("the cache makes room");
        let mut s = llama.open_session().await.unwrap();
        let prompt = BTreeMap::from([("input_ids".to_string(), Tensor::from_slice(&[5i64, 6]).reshape([1, 2]))]);
        s.run("prefill", &prompt).await.expect("runs");
        let stats = cluster.stats("worker0").await.unwrap();
        assert!(stats.resident_weight_bytes + stats.state_bytes <= memory, "{stats:?}");
        assert!(stats.resident_weight_bytes < weight_bytes + info.weight_bytes, "the gpt2 weights were evicted");
    });
}
