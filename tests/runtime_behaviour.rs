//! The client's and the worker's promised behaviours, over real QUIC on loopback: retries with
//! exponential backoff and jitter (and `Run` never retried), reconnecting to a restarted worker,
//! idempotent `OpenSession`, and the worker's idle-session and departed-client sweeps. Waits are
//! polls against a deadline, never a sleep followed by an assertion.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{fixture, poll};
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::{Arg, DType, Graph, HexBytes, Program as SrgProgram, TensorType};
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientError, ClientOptions};
use genie_runtime::deploy::{self, Deployment, RemoteWorker};
use genie_runtime::handshake::{accept_hello, Accepting};
use genie_runtime::streams::{self, ReadFrame};
use genie_runtime::transport::{self, Identity, TransportOptions};
use genie_runtime::wire::{ErrorKind, Frame, Reply, Request, Resume};
use genie_runtime::worker::{self, WorkerConfig};
use tch::{Device, Tensor};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn remote(addr: SocketAddr, identity: &Identity, token: &str) -> Deployment {
    let worker = RemoteWorker::pinned(addr, identity.fingerprint());
    Deployment::Remote { workers: [("worker0".to_string(), worker)].into(), token: token.into() }
}

/// Wait (polling) until `check` holds or `within` has passed; returns whether it held.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    poll(within, async || check().await.then_some(())).await.is_some()
}

/// The edge fixture compiled for one worker, with its inputs.
fn edge_program() -> (genie_codegen::ProgramPlan, SrgProgram, BTreeMap<String, Tensor>) {
    let mut program = genie_frontends::load(&[fixture("edge/model.pt2")]).unwrap();
    let plan =
        compile_program(&mut program, &ClusterSpec::local_workers(1, 1 << 30), &CompileOptions::default()).unwrap();
    let inputs = Tensor::read_safetensors(fixture("edge/model.inputs.safetensors")).unwrap().into_iter().collect();
    (plan, program, inputs)
}

/// What the fake worker saw: when each request of a kind arrived.
#[derive(Default)]
struct Seen {
    stats: Vec<Instant>,
    runs: usize,
}

/// A worker that speaks the protocol up to a point: it says Welcome, loads any program, opens
/// any session, and closes the connection on `Stats` and on `Run` without answering, as a worker
/// that dies while serving would.
async fn serve_then_drop(endpoint: quinn::Endpoint, seen: Arc<Mutex<Seen>>) {
    while let Some(incoming) = endpoint.accept().await {
        let seen = seen.clone();
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else { return };
            let Ok((mut send, mut recv)) = connection.accept_bi().await else { return };
            let fake = Accepting { token: "token", device: "cpu", worker: "fake" };
            let identity = Resume { client: 1, ticket: HexBytes(vec![1; 16]) };
            if accept_hello(&mut send, &mut recv, fake, |_| Ok(Some(identity))).await.is_err() {
                return;
            }
            while let Ok(ReadFrame::Frame(frame)) = streams::read_frame::<Request>(&mut recv).await {
                let reply = match frame.body {
                    Request::LoadProgram { .. } => {
                        Reply::ProveWeights { nonce: HexBytes(vec![0; 32]), hashes: Vec::new() }
                    }
                    Request::ProveWeights { .. } => Reply::MissingWeights { hashes: Vec::new() },
                    Request::WeightsUploaded { .. } => Reply::Ok,
                    Request::OpenSession { .. } => Reply::SessionOpened { sessions_before: 0 },
                    Request::Stats => {
                        seen.lock().unwrap().stats.push(Instant::now());
                        break;
                    }
                    Request::Run { .. } => {
                        seen.lock().unwrap().runs += 1;
                        break;
                    }
                    _ => Reply::Ok,
                };
                if streams::write_frame(&mut send, &Frame { id: frame.id, body: reply }).await.is_err() {
                    return;
                }
            }
            connection.close(9u32.into(), b"gone");
        });
    }
}

/// An idempotent request (`Stats`) that loses its connection is retried `retries` times, each
/// after `backoff · 2^k` plus up to 25 % jitter; a `Run`, which may have written state, is sent
/// once and its failure reported.
#[test]
fn idempotent_requests_are_retried_with_exponential_backoff_and_jitter_and_run_never() {
    let rt = runtime();
    let identity = Identity::self_signed(&["localhost".to_string()]).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let endpoint = {
        let _guard = rt.enter();
        transport::server_endpoint(([127, 0, 0, 1], 0).into(), &identity, &TransportOptions::default()).unwrap()
    };
    let addr = endpoint.local_addr().unwrap();
    rt.spawn(serve_then_drop(endpoint, seen.clone()));
    let base = Duration::from_millis(200);
    let options = ClientOptions { retries: 4, backoff: base, ..ClientOptions::default() };
    let (plan, srg, inputs) = edge_program();
    let mut excess_ms: Vec<f64> = Vec::new();
    for round in 0..2 {
        seen.lock().unwrap().stats.clear();
        let err = rt.block_on(async {
            let connected = deploy::connect(&remote(addr, &identity, "token"), &[("worker0".into(), 0)], &options)
                .await
                .expect("the fake worker says Welcome");
            connected.cluster().stats("worker0").await.expect_err("the connection is lost every time")
        });
        assert!(matches!(err, ClientError::ConnectionLost { .. }), "round {round}: {err}");
        let times = seen.lock().unwrap().stats.clone();
        assert_eq!(times.len(), 5, "round {round}: one try and 4 retries");
        for (k, pair) in times.windows(2).enumerate() {
            let gap = pair[1] - pair[0];
            let wait = base * (1 << k);
            assert!(gap >= wait, "round {round}: retry {k} came after {gap:?}, before its backoff {wait:?}");
            // The jitter is at most a quarter of the wait; reconnecting adds a little more.
            assert!(gap <= wait.mul_f64(1.25) + Duration::from_millis(500), "round {round}: retry {k} after {gap:?}");
            excess_ms.push((gap - wait).as_secs_f64() * 1e3);
        }
    }
    // With jitter the eight waits beyond their backoff spread over tens of milliseconds; without
    // it they would all be the same reconnect time.
    let spread =
        excess_ms.iter().cloned().fold(f64::MIN, f64::max) - excess_ms.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 10.0, "no jitter in the retries: {excess_ms:?} ms beyond the backoff");

    // A Run that loses its connection is not sent again.
    let err = rt.block_on(async {
        let deployed = deploy::deploy(Arc::new(plan), &srg.weights, &remote(addr, &identity, "token"), &options)
            .await
            .expect("the fake worker loads anything");
        let mut session = deployed.program().open_session().await.unwrap();
        session.run("model", &inputs).await.expect_err("the fake worker drops every run")
    });
    assert!(matches!(err, ClientError::ConnectionLost { .. }), "{err}");
    assert_eq!(seen.lock().unwrap().runs, 1, "a Run is never retried");
}

/// A worker that restarts at the same address with the same certificate is reached again by a
/// client that held a connection to the old one: the dead connection is noticed and replaced.
#[test]
fn a_client_reconnects_to_a_worker_restarted_at_the_same_address() {
    let rt = runtime();
    let (plan, srg, inputs) = edge_program();
    let identity = Identity::self_signed(&["localhost".to_string()]).unwrap();
    let config = WorkerConfig::new(([127, 0, 0, 1], 0).into(), Device::Cpu, "token");
    let first = worker::spawn(config.clone(), identity.clone()).unwrap();
    let addr = first.addr;
    let plan = Arc::new(plan);
    let deployed = rt.block_on(deploy::deploy(
        plan.clone(),
        &srg.weights,
        &remote(addr, &identity, "token"),
        &ClientOptions::default(),
    ));
    let deployed = deployed.expect("deploys on the first worker");
    let out = rt.block_on(async { deployed.program().open_session().await?.run("model", &inputs).await });
    let want = out.expect("runs on the first worker").outputs;
    first.shutdown();
    let second = worker::spawn(WorkerConfig { listen: addr, ..config }, identity.clone()).expect("same address again");
    assert_eq!(second.addr, addr);
    rt.block_on(async {
        let stats = deployed.cluster().stats("worker0").await.expect("the client reconnects");
        assert_eq!((stats.programs, stats.runs), (0, 0), "a fresh worker: {stats:?}");
        let program = deployed.connected().load(plan.clone(), &srg.weights).await.expect("loads again");
        let out = program.open_session().await.unwrap().run("model", &inputs).await.expect("runs again");
        assert_eq!(out.outputs.len(), want.len());
        for (name, w) in &want {
            assert!(out.outputs[name].equal(w), "{name} differs after the restart");
        }
    });
}

/// Opening a session is idempotent for its program (a retried request succeeds), and an id that
/// names another program's session is refused.
#[test]
fn a_retried_open_session_is_accepted_for_its_program_only() {
    let rt = runtime();
    let (plan, srg, inputs) = edge_program();
    let local = Deployment::Local { device: Device::Cpu, memory: deploy::LocalMemory::Unlimited };
    rt.block_on(async {
        let deployed =
            deploy::deploy(Arc::new(plan.clone()), &srg.weights, &local, &ClientOptions::default()).await.unwrap();
        let first = deployed.program().open_session_with_id(7).await.expect("opens");
        let mut again = deployed.program().open_session_with_id(7).await.expect("the same open again is accepted");
        again.run("model", &inputs).await.expect("the session works");
        let stats = deployed.cluster().stats("worker0").await.unwrap();
        assert_eq!(stats.sessions, 1, "one session, opened twice");
        let other = deployed.connected().load(Arc::new(plan), &srg.weights).await.unwrap();
        let err = other.open_session_with_id(7).await.err().expect("the id is another program's session");
        assert!(matches!(&err, ClientError::Remote { error, .. } if error.kind == ErrorKind::BadRequest), "{err}");
        first.close().await.unwrap();
    });
}

/// A program slow enough that a run spans several idle sweeps: a chain of 512×512 products.
fn slow_program(products: usize) -> SrgProgram {
    let mut p = SrgProgram::new("slow");
    let mut g = Graph::new("model");
    let ty = TensorType::new(DType::Float32, &[512, 512]);
    let x = g.add_input("x", ty.clone());
    let bytes: Vec<u8> = (0..512 * 512).flat_map(|_| 0.002f32.to_le_bytes()).collect();
    let h = p.weights.insert_inline(ty.clone(), bytes);
    let w = g.add_weight("w", ty, h);
    let mut y = x;
    for _ in 0..products {
        y = g.add_op("aten.mm.default", vec![Arg::Tensor(y), Arg::Tensor(w)]).unwrap();
    }
    g.add_output("y", y);
    p.entries.push(g);
    p
}

/// Sessions unused for the idle timeout are freed, but not one whose call is still running;
/// the programs of a client gone longer than the idle timeout, with no session left, are
/// unloaded.
#[test]
fn idle_sessions_are_freed_busy_ones_kept_and_departed_clients_unloaded() {
    let rt = runtime();
    let mut srg = slow_program(1200);
    let plan = compile_program(&mut srg, &ClusterSpec::local_workers(1, 1 << 30), &CompileOptions::default()).unwrap();
    let identity = Identity::self_signed(&["localhost".to_string()]).unwrap();
    let mut config = WorkerConfig::new(([127, 0, 0, 1], 0).into(), Device::Cpu, "token");
    // Long enough that a loaded machine opens the busy session and starts its call within it
    // (else the sweep frees it first and the call fails at once).
    config.session_idle_timeout = Duration::from_millis(700);
    let handle = worker::spawn(config, identity.clone()).unwrap();
    let deployment = remote(handle.addr, &identity, "token");
    let x = Tensor::ones([512, 512], (tch::Kind::Float, Device::Cpu));
    rt.block_on(async {
        let observer = deploy::connect(&deployment, &[("worker0".into(), 0)], &ClientOptions::default()).await.unwrap();
        let sessions = || async { observer.cluster().stats("worker0").await.unwrap().sessions };
        let deployed =
            deploy::deploy(Arc::new(plan), &srg.weights, &deployment, &ClientOptions::default()).await.unwrap();
        let _idle = deployed.program().open_session().await.unwrap();
        let mut busy = deployed.program().open_session().await.unwrap();
        assert_eq!(sessions().await, 2);
        let started = Instant::now();
        let inputs = BTreeMap::from([("x".to_string(), x)]);
        let run = tokio::spawn(async move {
            let out = busy.run("model", &inputs).await;
            (out, busy)
        });
        // The idle session goes while the other one's call runs; the busy one stays.
        assert!(eventually(Duration::from_secs(10), async || sessions().await < 2).await, "the idle session stays");
        assert!(
            !run.is_finished(),
            "the call ended within {:?}, before the sweep could test it: make the program slower",
            started.elapsed()
        );
        assert_eq!(sessions().await, 1, "the session whose call is running was freed");
        let (out, busy) = run.await.unwrap();
        out.expect("the busy session's call completes");
        assert!(started.elapsed() > Duration::from_millis(700), "the call ran past the idle timeout");
        assert_eq!(sessions().await, 1, "the session whose call ran past the idle timeout is kept");
        drop(busy);
        // The client leaves; once its sessions idle out, its program is unloaded.
        deployed.close().await;
        drop(deployed);
        assert!(
            eventually(Duration::from_secs(10), async || {
                let stats = observer.cluster().stats("worker0").await.unwrap();
                stats.programs == 0 && stats.sessions == 0
            })
            .await,
            "the departed client's program stays loaded"
        );
    });
}
