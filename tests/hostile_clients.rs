//! A worker tried as an attacker would, over real QUIC on loopback against `genie worker`
//! processes: a raw client that skips the Hello, sends an oversized first frame, deep dims
//! before and after authenticating, stalls its streams and runs, opens a thousand connections,
//! floods per-op calls; a second client after the first one's weights, sessions and runs; a
//! token holder posing as a peer worker. After each the process is still up, and a legitimate
//! client loads, runs and matches its reference.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{assert_outputs, fixture, poll, read, worker_process, WorkerProcess};
use genie_codegen::ProgramPlan;
use genie_driver::pipeline::{compile_program, CompileOptions};
use genie_ir::{Arg, DType, HexBytes, Program as SrgProgram, ValueId, WeightHash};
use genie_passes::placement::ClusterSpec;
use genie_runtime::client::ClientOptions;
use genie_runtime::deploy::{self, Deployed, Deployment, RemoteWorker};
use genie_runtime::handshake::{self, HandshakeError};
use genie_runtime::streams::{self, ReadFrame};
use genie_runtime::transport::{self, Identity, TransportOptions, Trust};
use genie_runtime::wire::{
    self, ErrorKind, Frame, Hello, OpInput, PeerInfo, Purpose, RemoteError, Reply, Request, Resume, Role, TensorHeader,
    WorkerStats, PROTOCOL_VERSION,
};
use tch::Tensor;

const TOKEN: &str = "hostile-clients-token";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A `genie worker` with the test token, a 1 GiB memory budget and `extra` flags.
fn worker(extra: &[&str]) -> WorkerProcess {
    let mut args = vec!["--token", TOKEN, "--memory", "1GiB"];
    args.extend_from_slice(extra);
    worker_process(&args)
}

fn addr(w: &WorkerProcess) -> SocketAddr {
    w.address.parse().unwrap()
}

/// The edge fixture compiled for one worker: its plan, program (weights) and reference.
struct Edge {
    plan: Arc<ProgramPlan>,
    program: SrgProgram,
    inputs: BTreeMap<String, Tensor>,
    want: BTreeMap<String, Tensor>,
}

fn edge() -> Edge {
    let mut program = genie_frontends::load(&[fixture("edge/model.pt2")]).unwrap();
    let plan =
        compile_program(&mut program, &ClusterSpec::local_workers(1, 1 << 30), &CompileOptions::default()).unwrap();
    Edge {
        plan: Arc::new(plan),
        program,
        inputs: read(&fixture("edge/model.inputs.safetensors")),
        want: read(&fixture("edge/model.outputs.safetensors")),
    }
}

fn deployment(workers: &[(&str, &WorkerProcess)]) -> Deployment {
    let workers =
        workers.iter().map(|(d, w)| (d.to_string(), RemoteWorker::pinned(addr(w), w.fingerprint.clone()))).collect();
    Deployment::Remote { workers, token: TOKEN.into() }
}

impl Edge {
    /// `got` is what the reference says (see `assert_outputs`).
    fn check(&self, what: &str, got: &BTreeMap<String, Tensor>) {
        let entry = self.plan.entry("model").unwrap();
        assert_outputs(what, got, &self.want, entry, self.program.entry("model").unwrap());
    }
}

/// The worker process is up, and a legitimate client loads the edge model, runs it and gets
/// its reference outputs. Returns the worker's counters after.
fn still_serves(rt: &tokio::runtime::Runtime, w: &mut WorkerProcess) -> WorkerStats {
    assert!(w.alive(), "the worker process died");
    let edge = edge();
    let options = ClientOptions { retries: 6, backoff: Duration::from_millis(500), ..ClientOptions::default() };
    rt.block_on(async {
        let deployed =
            deploy::deploy(edge.plan.clone(), &edge.program.weights, &deployment(&[("worker0", w)]), &options)
                .await
                .expect("a legitimate client connects and loads");
        let mut s = deployed.program().open_session().await.expect("opens a session");
        let out = s.run("model", &edge.inputs).await.expect("runs");
        edge.check("the legitimate client", &out.outputs);
        let stats = deployed.cluster().stats("worker0").await.unwrap();
        deployed.close().await;
        stats
    })
}

/// A client speaking the protocol by hand.
struct Raw {
    /// Keeps the connection's endpoint alive.
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    next_id: u64,
    /// What the worker's Welcome gave.
    me: Option<Resume>,
}

impl Raw {
    /// TLS only (presenting `identity` when given) and the control stream; no Hello yet.
    async fn connect(w: &WorkerProcess, identity: Option<&Identity>) -> Raw {
        Self::try_connect(addr(w), &w.fingerprint, identity).await.expect("TLS handshake")
    }

    async fn try_connect(
        at: SocketAddr,
        fingerprint: &str,
        identity: Option<&Identity>,
    ) -> Result<Raw, transport::TransportError> {
        let options = TransportOptions::default();
        let endpoint = transport::client_endpoint(&options)?;
        let trust = Trust::Fingerprint(fingerprint.to_string());
        let conn = transport::connect_as(&endpoint, at, "localhost", &trust, &options, identity).await?;
        let (send, recv) = conn.open_bi().await.expect("a control stream");
        Ok(Raw { _endpoint: endpoint, conn, send, recv, next_id: 1, me: None })
    }

    async fn hello(&mut self, role: Role, resume: Option<Resume>) -> Result<(), HandshakeError> {
        let hello = Hello { version: PROTOCOL_VERSION, token: TOKEN.into(), role, resume };
        let welcome = handshake::say_hello(&mut self.send, &mut self.recv, &hello, Duration::from_secs(10)).await?;
        self.me = welcome.client;
        Ok(())
    }

    /// Connected and welcomed as a client.
    async fn client(w: &WorkerProcess) -> Raw {
        let mut raw = Raw::connect(w, None).await;
        raw.hello(Role::Client, None).await.expect("welcomed");
        assert!(raw.me.is_some(), "a client is given an identity");
        raw
    }

    async fn write_bytes(&mut self, bytes: &[u8]) {
        self.send.write_all(bytes).await.expect("written");
    }

    /// Write what the worker may refuse before it has all of it (the write then fails).
    async fn write_refusable(&mut self, bytes: &[u8]) {
        let _ = self.send.write_all(bytes).await;
    }

    /// Send a request; returns its frame id.
    async fn send(&mut self, body: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        streams::write_frame(&mut self.send, &Frame { id, body }).await.expect("sent");
        id
    }

    /// The next reply frame, within 30 s.
    async fn reply(&mut self) -> Frame<Reply> {
        match tokio::time::timeout(Duration::from_secs(30), streams::read_frame::<Reply>(&mut self.recv)).await {
            Ok(Ok(ReadFrame::Frame(f))) => f,
            Ok(Ok(ReadFrame::End)) => panic!("the control stream ended"),
            Ok(Err(e)) => panic!("reading a reply: {e}"),
            Err(_) => panic!("no reply within 30 s"),
        }
    }

    /// Send a request and wait for its reply (other replies are not expected meanwhile).
    async fn request(&mut self, body: Request) -> Reply {
        let id = self.send(body).await;
        let frame = self.reply().await;
        assert_eq!(frame.id, id, "a reply to another request: {:?}", frame.body);
        frame.body
    }

    /// Load `plan` as `program` playing `worker0`, proving nothing; upload every weight asked
    /// for when `upload`. Returns the weights the worker asked to be proved.
    async fn load(
        &mut self,
        program: u64,
        plan: &ProgramPlan,
        weights: &genie_ir::WeightStore,
        upload: bool,
    ) -> Vec<WeightHash> {
        self.load_as(program, plan, "worker0", Vec::new(), weights, upload).await
    }

    /// [`Raw::load`] playing `device`, with `peers`.
    async fn load_as(
        &mut self,
        program: u64,
        plan: &ProgramPlan,
        device: &str,
        peers: Vec<PeerInfo>,
        weights: &genie_ir::WeightStore,
        upload: bool,
    ) -> Vec<WeightHash> {
        let body = Request::LoadProgram { program, device: device.into(), plan: Box::new(plan.clone()), peers };
        let Reply::ProveWeights { hashes: asked, .. } = self.request(body).await else { panic!("no ProveWeights") };
        let missing = match self.request(Request::ProveWeights { program, proofs: vec![] }).await {
            Reply::MissingWeights { hashes } => hashes,
            other => panic!("expected MissingWeights, got {other:?}"),
        };
        assert_eq!(missing, asked, "nothing proved, everything missing");
        if upload {
            for h in &missing {
                let entry = weights.get(h).unwrap();
                let bytes = weights.read(h).unwrap();
                let shape = entry.ty.static_shape().unwrap();
                streams::send_payload(
                    &self.conn,
                    Purpose::Weight { hash: h.clone() },
                    entry.ty.dtype,
                    shape,
                    bytes.into(),
                )
                .await
                .expect("uploaded");
            }
            assert_eq!(self.request(Request::WeightsUploaded { program }).await, Reply::Ok);
        }
        asked
    }

    async fn stats(&mut self) -> WorkerStats {
        match self.request(Request::Stats).await {
            Reply::Stats(s) => s,
            other => panic!("expected Stats, got {other:?}"),
        }
    }
}

fn error_of(reply: &Reply) -> &RemoteError {
    match reply {
        Reply::Error(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// `frame` (an encoded control frame) with every `name` string (a symbol's name, and each dim
/// that is just that symbol) replaced by `text`, and its length prefix fixed.
fn splice_string(frame: &[u8], name: &str, text: &str) -> Vec<u8> {
    let needle = genie_codegen::binary::to_bytes(&name).unwrap();
    let replacement = genie_codegen::binary::to_bytes(&text).unwrap();
    let mut out = Vec::with_capacity(frame.len());
    let mut rest = &frame[4..];
    let mut found = 0;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(&replacement);
        rest = &rest[at + needle.len()..];
        found += 1;
    }
    out.extend_from_slice(rest);
    assert!(found >= 2, "the frame holds the symbol and a dim of it");
    let mut framed = (out.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&out);
    framed
}

/// A LoadProgram frame of the gpt2 prefill plan whose first symbolic dim is `dim`.
fn load_frame_with_dim(dim: &str) -> Vec<u8> {
    let mut program = genie_frontends::load(&[fixture("gpt2/prefill.pt2")]).unwrap();
    let options = CompileOptions { max_seq: Some(16), ..Default::default() };
    let plan = compile_program(&mut program, &ClusterSpec::local_workers(1, 1 << 30), &options).unwrap();
    let symbol = plan.entries[0].symbols[0].name.clone();
    let body = Request::LoadProgram { program: 1, device: "worker0".into(), plan: Box::new(plan), peers: vec![] };
    let frame = wire::encode_frame(&Frame { id: 1, body }).unwrap();
    splice_string(&frame, &symbol, dim)
}

/// Before its Hello a connection may open no tensor stream, and its first frame is read as a
/// Hello only, at most 4 KiB of it. (Before: any request was decoded first, up to 64 MiB
/// allocated before the body arrived, and tensor streams were accepted.)
#[test]
fn before_its_hello_a_connection_gets_no_tensor_stream_and_a_small_frame_decoded_as_a_hello_only() {
    let rt = runtime();
    let mut w = worker(&["--hello-secs", "30"]);
    rt.block_on(async {
        // No tensor stream: the worker grants none until the Hello is accepted.
        let mut raw = Raw::connect(&w, None).await;
        let opened = tokio::time::timeout(Duration::from_millis(500), raw.conn.open_uni()).await;
        assert!(opened.is_err(), "a tensor stream opened before the Hello");
        // A request first is not decoded as one: refused as a malformed Hello.
        raw.send(Request::Stats).await;
        let reply = raw.reply().await;
        let e = error_of(&reply.body);
        assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
        assert!(e.message.contains("the first frame must be a Hello"), "{e}");

        // A length prefix near the old 64 MiB limit and no body: refused at once, not waited
        // for (the Hello deadline here is 30 s; the reply must come well before).
        let mut raw = Raw::connect(&w, None).await;
        raw.write_bytes(&((64u32 << 20) - 1).to_le_bytes()).await;
        let e = error_of(&raw.reply().await.body).clone();
        assert_eq!(e.kind, ErrorKind::FrameTooLarge, "{e}");
        assert!(e.message.contains("4096"), "the Hello cap is named: {e}");

        // A LoadProgram with 100,000 nested parentheses in a dim, before authenticating: its
        // size alone refuses it, nothing of it is parsed.
        let deep = format!("{}s0{}", "(".repeat(100_000), ")".repeat(100_000));
        let mut raw = Raw::connect(&w, None).await;
        raw.write_refusable(&load_frame_with_dim(&deep)).await;
        assert_eq!(error_of(&raw.reply().await.body).kind, ErrorKind::FrameTooLarge);
    });
    let stats = still_serves(&rt, &mut w);
    assert!(stats.refused >= 3, "{stats:?}");
}

/// After authenticating, dims built to overflow the parser's stack or take quadratic time are
/// refused with a typed error naming the limit; the connection goes on. (Before: about 6 KB of
/// nested parentheses or 10,000 leading `-` aborted the worker process.)
#[test]
fn deep_and_long_dims_after_the_hello_are_refused_with_a_typed_error() {
    let rt = runtime();
    let mut w = worker(&[]);
    rt.block_on(async {
        let mut raw = Raw::client(&w).await;
        let chain = std::iter::once("s0").chain(std::iter::repeat_n("s1", 3_000)).collect::<Vec<_>>().join("//");
        for dim in [
            format!("{}s0{}", "(".repeat(100_000), ")".repeat(100_000)),
            format!("{}s0", "-".repeat(10_000)),
            format!("{}s0{}", "(".repeat(3_000), ")".repeat(3_000)),
            chain,
        ] {
            raw.write_bytes(&load_frame_with_dim(&dim)).await;
            let e = error_of(&raw.reply().await.body).clone();
            assert_eq!(e.kind, ErrorKind::Malformed, "{e}");
            assert!(e.message.contains("limit"), "the message names the limit: {e}");
        }
        // The connection still serves.
        assert_eq!(raw.stats().await.programs, 0);
    });
    still_serves(&rt, &mut w);
}

/// VmRSS of a process, in bytes.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// A thousand connections that never say Hello: at most `--max-unauthenticated` are held at
/// once, each for at most the Hello deadline; the rest are refused before their handshake.
/// (Before: every one was accepted and held.)
#[test]
fn a_thousand_unauthenticated_connections_are_capped_and_the_worker_serves_after() {
    let rt = runtime();
    let mut w = worker(&["--max-unauthenticated", "16", "--hello-secs", "2"]);
    let before = resident_bytes(w.child.id());
    let (at, fingerprint) = (addr(&w), w.fingerprint.clone());
    let outcomes: Vec<bool> = rt.block_on(async {
        let options = TransportOptions::default();
        let endpoint = transport::client_endpoint(&options).unwrap();
        let trust = Trust::Fingerprint(fingerprint);
        let attempts = (0..1000).map(|_| {
            let (endpoint, trust, options) = (endpoint.clone(), trust.clone(), options.clone());
            tokio::spawn(async move {
                match transport::connect(&endpoint, at, "localhost", &trust, &options).await {
                    // Held open without a Hello until the worker closes it.
                    Ok(conn) => {
                        let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
                        true
                    }
                    Err(_) => false,
                }
            })
        });
        let attempts: Vec<_> = attempts.collect();
        let mut outcomes = Vec::new();
        for a in attempts {
            outcomes.push(a.await.unwrap());
        }
        outcomes
    });
    let accepted = outcomes.iter().filter(|ok| **ok).count();
    assert!(accepted < 500, "{accepted} of 1000 connections without a Hello were accepted");
    let grown = resident_bytes(w.child.id()).saturating_sub(before);
    assert!(grown < 256 << 20, "the worker grew by {grown} bytes");
    let stats = still_serves(&rt, &mut w);
    assert!(stats.refused_unauthenticated >= (1000 - accepted) as u64, "{stats:?}");
}

/// A tensor stream that stops moving is cut after the grace, and what its upload reserved is
/// released; a stream for a call that never comes is refused after the wait. (Before: neither
/// ever timed out, and an upload reserved nothing.)
#[test]
fn a_stalled_tensor_stream_is_cut_and_what_it_reserved_released() {
    let rt = runtime();
    let mut w = worker(&["--stream-grace-secs", "1", "--min-stream-rate", "64MiB", "--input-wait-secs", "1"]);
    rt.block_on(async {
        let mut raw = Raw::client(&w).await;
        // A 256 MiB weight upload that sends 1 MiB and stalls.
        let big = TensorHeader {
            purpose: Purpose::Weight { hash: WeightHash("f".repeat(64)) },
            dtype: DType::Float32,
            shape: vec![64 << 20],
            byte_len: 256 << 20,
        };
        let mut uni = raw.conn.open_uni().await.unwrap();
        uni.write_all(&wire::encode_tensor_header(&big).unwrap()).await.unwrap();
        uni.write_all(&vec![0u8; 1 << 20]).await.unwrap();
        let reserved = poll(Duration::from_secs(10), async || {
            let s = raw.stats().await;
            (s.committed_bytes >= 256 << 20).then_some(s.committed_bytes)
        })
        .await;
        assert!(reserved.is_some(), "the upload reserves its bytes while it is read");
        let stopped = tokio::time::timeout(Duration::from_secs(30), uni.stopped()).await;
        assert!(matches!(stopped, Ok(Ok(Some(_)))), "the stalled stream is stopped: {stopped:?}");
        let released = poll(Duration::from_secs(10), async || {
            let s = raw.stats().await;
            (s.committed_bytes == 0 && s.refused_streams == 1).then_some(())
        })
        .await;
        assert!(released.is_some(), "{:?}", raw.stats().await);

        // An input for a run that never starts: refused once the wait is over.
        let orphan = TensorHeader {
            purpose: Purpose::Input { run: 999, transfer: 0 },
            dtype: DType::Float32,
            shape: vec![4],
            byte_len: 16,
        };
        let mut uni = raw.conn.open_uni().await.unwrap();
        uni.write_all(&wire::encode_tensor_header(&orphan).unwrap()).await.unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(30), uni.stopped()).await;
        assert!(matches!(stopped, Ok(Ok(Some(_)))), "the orphan input is refused: {stopped:?}");
        assert_eq!(raw.stats().await.refused_streams, 2);
    });
    still_serves(&rt, &mut w);
}

impl Raw {
    /// A client with the edge model loaded as program 1 and session 5 open.
    async fn with_session(w: &WorkerProcess, edge: &Edge) -> Raw {
        let mut raw = Raw::client(w).await;
        raw.load(1, &edge.plan, &edge.program.weights, true).await;
        let opened = raw.request(Request::OpenSession { program: 1, session: 5 }).await;
        assert_eq!(opened, Reply::SessionOpened { sessions_before: 0 });
        raw
    }
}

/// Run `run` of the edge model in session 5 of program 1, asking for `timeout_ms` (its inputs
/// are never sent).
fn waiting_run(run: u64, timeout_ms: u64) -> Request {
    Request::Run { run, program: 1, session: 5, entry: "model".into(), bindings: BTreeMap::new(), timeout_ms }
}

/// A run whose inputs never come ends at the worker's ceiling whatever timeout its client
/// asked for, and frees its session; a client can cancel its own run. (Before: a run could ask
/// for 24 h and its session stayed busy as long.)
#[test]
fn a_run_is_held_to_the_workers_ceiling_and_can_be_cancelled() {
    let rt = runtime();
    let mut w = worker(&["--max-run-secs", "2"]);
    let edge = edge();
    rt.block_on(async {
        let mut raw = Raw::with_session(&w, &edge).await;
        let run = |run| waiting_run(run, 24 * 3600 * 1000);
        let reply = raw.request(run(100)).await;
        let e = error_of(&reply);
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        // The session is free again (no SessionBusy); this run is cancelled by its client.
        let id = raw.send(run(101)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let cancel = raw.send(Request::CancelRun { run: 101 }).await;
        let mut replies = BTreeMap::new();
        for _ in 0..2 {
            let f = raw.reply().await;
            replies.insert(f.id, f.body);
        }
        assert_eq!(replies[&cancel], Reply::Ok);
        assert_eq!(error_of(&replies[&id]).kind, ErrorKind::Cancelled, "{:?}", replies[&id]);
        let stats = raw.stats().await;
        assert_eq!((stats.calls_in_flight, stats.sessions), (0, 1), "{stats:?}");
    });
    still_serves(&rt, &mut w);
}

/// A client that leaves (its connection closed, or gone silent) while its run waits for inputs
/// has the run cancelled at once, not at the run's timeout: the session it held is free to be
/// swept and nothing stays reserved. (Before: a killed client left a busy session and its
/// reservation until the run's own timeout, 120 s by default.)
#[test]
fn a_run_whose_client_left_is_cancelled_at_once() {
    let rt = runtime();
    let mut w = worker(&["--session-idle-secs", "1"]);
    let edge = edge();
    rt.block_on(async {
        let mut raw = Raw::with_session(&w, &edge).await;
        raw.send(waiting_run(7, 600_000)).await;
        let mut observer = Raw::client(&w).await;
        let busy = poll(Duration::from_secs(5), async || {
            let s = observer.stats().await;
            (s.calls_in_flight == 1).then_some(s)
        })
        .await;
        assert!(busy.is_some(), "the run started");
        raw.conn.close(0u32.into(), b"gone");
        let started = std::time::Instant::now();
        let freed = poll(Duration::from_secs(10), async || {
            let s = observer.stats().await;
            (s.calls_in_flight == 0 && s.sessions == 0).then_some(s)
        })
        .await;
        assert!(freed.is_some(), "still held: {:?}", observer.stats().await);
        assert!(started.elapsed() < Duration::from_secs(5), "freed after {:?}", started.elapsed());
    });
    still_serves(&rt, &mut w);
}

/// A flood of per-op calls that never send their inputs is held to the client's limit on calls
/// in flight; an op whose output would not fit is refused before anything is allocated. Other
/// clients are served meanwhile. (Before: each call took a blocking thread for 60 s, 512 of
/// them exhausted the pool, and `zeros` of any size was allocated.)
#[test]
fn a_flood_of_exec_ops_is_held_to_the_clients_limit() {
    let rt = runtime();
    let mut w = worker(&["--max-calls", "8", "--input-wait-secs", "60"]);
    let mut raw = rt.block_on(Raw::client(&w));
    rt.block_on(async {
        let add = |call| Request::ExecOp {
            call,
            op: "aten.add.Tensor".into(),
            args: vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1)), Arg::Int(1)],
            inputs: vec![OpInput::Sent { dtype: DType::Float32, shape: vec![4] }; 2],
            outputs: 1,
        };
        for call in 0..100 {
            raw.send(add(call)).await;
        }
        let mut limited = 0;
        for _ in 0..92 {
            let reply = raw.reply().await;
            let e = error_of(&reply.body);
            assert_eq!(e.kind, ErrorKind::LimitReached, "{e}");
            limited += 1;
        }
        assert_eq!(limited, 92);
        let stats = raw.stats().await;
        assert_eq!(stats.calls_in_flight, 8, "{stats:?}");
    });
    // Another client is served while the flood waits.
    still_serves(&rt, &mut w);
    rt.block_on(async {
        let mut other = Raw::client(&w).await;
        let zeros = Request::ExecOp {
            call: 1,
            op: "aten.zeros.default".into(),
            args: vec![Arg::Ints(vec![1 << 20, 1 << 20]), Arg::None, Arg::None, Arg::None, Arg::None],
            inputs: vec![],
            outputs: 1,
        };
        let reply = other.request(zeros).await;
        let e = error_of(&reply);
        assert_eq!(e.kind, ErrorKind::OutOfMemory, "{e}");
        assert!(e.message.contains("an op call needs 4.0 TiB"), "the size is named: {e}");
    });
    assert!(resident_bytes(w.child.id()) < 1 << 30, "nothing of the refused op was allocated");
    drop(raw);
}

/// A second client holding the token cannot use, read or overwrite the first one's weights,
/// nor name its sessions or runs, nor take over its identity; a client that holds the same
/// weights proves it and uploads nothing. (Before: a plan naming resident hashes became ready
/// without uploading, ExecOp read any resident weight, and client ids were self-asserted.)
#[test]
fn a_second_client_cannot_use_read_or_overwrite_the_firsts_weights_sessions_or_runs() {
    let rt = runtime();
    let mut w = worker(&["--input-wait-secs", "1"]);
    let edge = edge();
    let needed: Vec<WeightHash> = {
        let mut v: Vec<WeightHash> = edge.plan.devices[0].weights.iter().map(|r| r.hash.clone()).collect();
        v.dedup();
        v
    };
    let options = ClientOptions::default();
    let alice: Deployed = rt
        .block_on(deploy::deploy(edge.plan.clone(), &edge.program.weights, &deployment(&[("worker0", &w)]), &options))
        .expect("Alice loads");
    assert_eq!(alice.program().stats.weights_uploaded as usize, needed.len(), "Alice uploads every weight");
    let alice_id = alice.cluster().client_id("worker0").unwrap().expect("Alice has an id");
    rt.block_on(async {
        let mut session = alice.program().open_session().await.unwrap();
        let out = session.run("model", &edge.inputs).await.unwrap();
        edge.check("Alice before", &out.outputs);

        let mut mallory = Raw::client(&w).await;
        // Asked for every weight, as a worker without them would ask; proofs without the bytes
        // grant nothing, and the program never becomes ready.
        let asked = mallory.load(1, &edge.plan, &weights_without_bytes(&edge.program.weights), false).await;
        assert_eq!(asked, needed);
        let forged: Vec<(WeightHash, HexBytes)> = needed.iter().map(|h| (h.clone(), HexBytes(vec![0; 32]))).collect();
        match mallory.request(Request::ProveWeights { program: 1, proofs: forged }).await {
            Reply::MissingWeights { hashes } => assert_eq!(hashes, needed),
            other => panic!("expected MissingWeights, got {other:?}"),
        }
        let reply = mallory.request(Request::OpenSession { program: 1, session: 1 }).await;
        assert_eq!(error_of(&reply).kind, ErrorKind::UnknownProgram);
        // Reading one of Alice's weights through a per-op call.
        let clone = Request::ExecOp {
            call: 7,
            op: "aten.clone.default".into(),
            args: vec![Arg::Tensor(ValueId(0))],
            inputs: vec![OpInput::Weight(needed[0].clone())],
            outputs: 1,
        };
        let reply = mallory.request(clone).await;
        let e = error_of(&reply);
        assert_eq!(e.kind, ErrorKind::MissingWeights, "{e}");
        // Naming Alice's sessions, programs and runs (ids are small counters): nothing is hers.
        for id in 1..=32 {
            let reply = mallory.request(Request::CloseSession { session: id }).await;
            assert_eq!(error_of(&reply).kind, ErrorKind::UnknownSession);
            let run = Request::Run {
                run: 1000 + id,
                program: id,
                session: id,
                entry: "model".into(),
                bindings: BTreeMap::new(),
                timeout_ms: 1000,
            };
            let reply = mallory.request(run).await;
            assert_eq!(error_of(&reply).kind, ErrorKind::UnknownProgram);
            assert_eq!(mallory.request(Request::CancelRun { run: id }).await, Reply::Ok, "cancels nothing");
            let reply = mallory.request(Request::UnloadProgram { program: id + 1 }).await;
            assert_eq!(error_of(&reply).kind, ErrorKind::UnknownProgram);
        }
        // Overwriting one of Alice's weights with other bytes under its hash.
        let entry = edge.program.weights.get(&needed[0]).unwrap();
        let shape = entry.ty.static_shape().unwrap();
        let other: Vec<u8> = edge.program.weights.read(&needed[0]).unwrap().iter().map(|b| !b).collect();
        let purpose = Purpose::Weight { hash: needed[0].clone() };
        let _ = streams::send_payload(&mallory.conn, purpose, entry.ty.dtype, shape, other.into()).await;
        let refused =
            poll(Duration::from_secs(10), async || (mallory.stats().await.refused_streams == 1).then_some(())).await;
        assert!(refused.is_some(), "the forged weight is refused");
        // Taking over Alice's id with a made-up ticket.
        let mut thief = Raw::connect(&w, None).await;
        let resume = Resume { client: alice_id, ticket: HexBytes(vec![0; 32]) };
        let err = thief.hello(Role::Client, Some(resume)).await.unwrap_err();
        assert!(matches!(&err, HandshakeError::Refused(e) if e.kind == ErrorKind::UnknownClient), "{err}");

        // Alice's session, state and weights are untouched.
        let out = session.run("model", &edge.inputs).await.unwrap();
        edge.check("Alice after", &out.outputs);
        let stats = mallory.stats().await;
        assert_eq!((stats.sessions, stats.resident_weights), (1, needed.len() as u64), "{stats:?}");
    });
    // A third client with the same weights proves it holds them and uploads nothing.
    let carol: Deployed = rt
        .block_on(deploy::deploy(edge.plan.clone(), &edge.program.weights, &deployment(&[("worker0", &w)]), &options))
        .expect("Carol loads");
    assert_eq!(carol.program().stats.weights_uploaded, 0, "proved, not uploaded");
    rt.block_on(async {
        let mut s = carol.program().open_session().await.unwrap();
        let out = s.run("model", &edge.inputs).await.unwrap();
        edge.check("Carol", &out.outputs);
        carol.close().await;
        alice.close().await;
    });
    still_serves(&rt, &mut w);
}

/// The same weight entries with no way to read their bytes (what someone holding only a plan
/// file has). Only the hashes matter to `Raw::load` without uploading.
fn weights_without_bytes(weights: &genie_ir::WeightStore) -> genie_ir::WeightStore {
    weights.subset(&[])
}

/// A token holder posing as a peer worker: without a certificate it is refused; with one of
/// its own it is a peer, but an activation is accepted only over the certificate the run's
/// plan pins for the sending device. Here the attacker is also the client (so it knows the
/// run's id, which a victim's random run ids would hide): its run on worker1 waits for
/// worker0's activation, the impersonated one is refused, and the run times out instead of
/// running on injected values. Legitimate runs across both workers match their reference.
/// (Before: any token holder could say it was a peer, and its tensors were delivered into the
/// run they named.)
#[test]
fn a_peer_impersonator_cannot_join_or_inject_activations() {
    let rt = runtime();
    let mut w0 = worker(&[]);
    let mut w1 = worker(&["--max-run-secs", "3"]);
    let mut program = genie_frontends::load(&[fixture("gpt2/prefill.pt2")]).unwrap();
    let options = CompileOptions { max_seq: Some(16), ..Default::default() };
    let plan = compile_program(&mut program, &ClusterSpec::local_workers(2, 80_000), &options).unwrap();
    let plan = Arc::new(plan);
    let entry = plan.entry("prefill").unwrap().clone();
    let into_w1 = |from: &str| -> Vec<genie_codegen::Transfer> {
        entry.transfers.iter().filter(|t| t.from == from && t.to == "worker1").cloned().collect()
    };
    assert!(!into_w1("worker0").is_empty(), "the plan sends activations from worker0 to worker1");
    let inputs = read(&fixture("gpt2/prefill.inputs.safetensors"));
    let want = read(&fixture("gpt2/prefill.outputs.safetensors"));
    let bindings: BTreeMap<String, i64> =
        entry.symbols.iter().map(|s| (s.name.clone(), inputs["input_ids"].size()[1])).collect();
    let zeros_for = |t: &genie_codegen::Transfer| {
        let ty = &entry.tensors[&t.tensor].ty;
        let shape: Vec<i64> = ty.shape.iter().map(|d| d.eval(&bindings).unwrap()).collect();
        Tensor::zeros(shape.as_slice(), (genie_runtime::tensor::kind_of(ty.dtype).unwrap(), tch::Device::Cpu))
    };

    rt.block_on(async {
        // No certificate: not a peer.
        let mut bare = Raw::connect(&w1, None).await;
        let err = bare.hello(Role::Peer, None).await.unwrap_err();
        assert!(matches!(&err, HandshakeError::Refused(e) if e.kind == ErrorKind::Unauthorized), "{err}");

        // The attacker's own run of worker1's part, its peer worker0 pinned as the real one.
        let mut client = Raw::client(&w1).await;
        let me = client.me.clone().unwrap().client;
        let peers = vec![PeerInfo {
            device: "worker0".into(),
            address: w0.address.clone(),
            fingerprint: w0.fingerprint.clone(),
            client: 1,
        }];
        client.load_as(1, &plan, "worker1", peers, &program.weights, true).await;
        let opened = client.request(Request::OpenSession { program: 1, session: 1 }).await;
        assert_eq!(opened, Reply::SessionOpened { sessions_before: 0 });
        let run = Request::Run {
            run: 77,
            program: 1,
            session: 1,
            entry: "prefill".into(),
            bindings: bindings.clone(),
            timeout_ms: 24 * 3600 * 1000,
        };
        let run_frame = client.send(run).await;
        for t in into_w1(genie_codegen::CLIENT) {
            let purpose = Purpose::Input { run: 77, transfer: t.id };
            streams::send_tensor(&client.conn, purpose, &inputs[&t.name]).await.expect("input sent");
        }
        // The impersonator, with a certificate of its own, sends what worker0 would.
        let imposter = Identity::self_signed(&["localhost".to_string()]).unwrap();
        let mut peer = Raw::connect(&w1, Some(&imposter)).await;
        peer.hello(Role::Peer, None).await.expect("a token holder with a certificate is a peer");
        let injected = into_w1("worker0");
        for t in &injected {
            let purpose = Purpose::Activation { client: me, run: 77, transfer: t.id };
            let _ = streams::send_tensor(&peer.conn, purpose, &zeros_for(t)).await;
        }
        let reply = client.reply().await;
        assert_eq!(reply.id, run_frame);
        let e = error_of(&reply.body);
        assert_eq!(e.kind, ErrorKind::Timeout, "the run waited for worker0's activation: {e}");
        let stats = client.stats().await;
        assert_eq!(stats.refused_streams, injected.len() as u64, "{stats:?}");

        // A legitimate client across both workers gets its reference.
        let deployment = deployment(&[("worker0", &w0), ("worker1", &w1)]);
        let deployed = deploy::deploy(plan.clone(), &program.weights, &deployment, &ClientOptions::default())
            .await
            .expect("deploys on both workers");
        let mut session = deployed.program().open_session().await.unwrap();
        let out = session.run("prefill", &inputs).await.expect("runs");
        assert_outputs("the legitimate client", &out.outputs, &want, &entry, program.entry("prefill").unwrap());
        deployed.close().await;
    });
    assert!(w0.alive() && w1.alive());
    still_serves(&rt, &mut w1);
}
