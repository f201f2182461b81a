//! The client: connects to workers, loads a program (uploading only the weights a worker lacks),
//! opens sessions and runs entries. Connections are long-lived and reused; idempotent requests
//! are retried with exponential backoff over a fresh connection; every wait has a timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use genie_codegen::{EntryPlan, ProgramPlan, Step, CLIENT};
use genie_ir::{WeightHash, WeightStore};
use quinn::{Connection, SendStream};
use tch::Tensor;
use tokio::sync::oneshot;

use crate::exec::{self, Bindings, ExecError};
use crate::handshake::{self, HandshakeError};
use crate::progress::{Progress, ProgressSink};
use crate::streams::{self, ReadFrame};
use crate::tensor::dtype_of;
use crate::trace;
use crate::transport::{self, TransportError, TransportOptions, Trust};
use crate::wire::{
    ClientId, ErrorKind, Frame, Hello, OpInput, PeerInfo, Purpose, RemoteError, Reply, Request, Resume, Role, RunStats,
    WireError, WorkerStats, PROTOCOL_VERSION,
};

/// Where a plan's device runs.
#[derive(Clone, Debug)]
pub struct WorkerAddress {
    /// The device name in the plan (`w0`).
    pub device: String,
    pub addr: SocketAddr,
    pub trust: Trust,
    /// The name sent as SNI, which a CA-signed certificate must carry: the host as the address
    /// was written (`gpu0.example.com`, `10.0.0.2`). Not checked for a pinned fingerprint.
    pub server_name: String,
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub token: String,
    pub transport: TransportOptions,
    /// How long a control request may take (weights upload and runs have their own).
    pub request_timeout: Duration,
    /// How long one call of an entry may take, end to end.
    pub run_timeout: Duration,
    /// Retries of an idempotent request after a lost connection or timeout.
    pub retries: u32,
    /// The first backoff; each retry doubles it.
    pub backoff: Duration,
    /// Weight uploads in flight at once per worker.
    pub upload_concurrency: usize,
    /// Where weight uploads report their progress (bytes sent of the bytes to send, per
    /// worker).
    pub progress: ProgressSink,
    /// How long a worker that stopped answering takes to be declared dead (see
    /// [`ClientOptions::with_detection`]).
    pub detection: Duration,
}

/// The default bound on how long a worker that stopped answering (killed, hung, cut off) takes
/// to be declared dead.
pub const DEFAULT_DETECTION: Duration = Duration::from_secs(4);

impl Default for ClientOptions {
    /// The defaults with no token (a deployment fills in its own).
    fn default() -> ClientOptions {
        ClientOptions::new("")
    }
}

impl ClientOptions {
    pub fn new(token: impl Into<String>) -> ClientOptions {
        ClientOptions {
            token: token.into(),
            transport: TransportOptions::default(),
            request_timeout: Duration::from_secs(30),
            run_timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_millis(100),
            upload_concurrency: 4,
            progress: ProgressSink::default(),
            detection: DEFAULT_DETECTION,
        }
        .with_detection(DEFAULT_DETECTION)
    }

    /// Declare a worker that stops answering dead within `bound`: a connection on which nothing
    /// arrives for 0.6 of it is closed (keep-alives go every fifth of that, so a live worker
    /// always answers in time), and a fresh connection attempt then gets the rest
    /// ([`ClientOptions::probe_timeout`]).
    pub fn with_detection(mut self, bound: Duration) -> ClientOptions {
        let bound = bound.max(Duration::from_millis(100));
        self.detection = bound;
        self.transport.idle_timeout = bound.mul_f64(0.6);
        self.transport.keep_alive = self.transport.idle_timeout / 5;
        self
    }

    /// How long a fresh connection to a worker has to answer before it counts as dead.
    pub fn probe_timeout(&self) -> Duration {
        self.detection.mul_f64(0.4)
    }
}

/// What went wrong, naming the worker or the input.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {device} at {addr}")]
    Connect {
        device: String,
        addr: SocketAddr,
        #[source]
        source: Box<TransportError>,
    },
    /// The worker refused the handshake (wrong token, other protocol version).
    #[error("{device} refused the connection: {error}")]
    Refused { device: String, error: RemoteError },
    /// The worker answered with an error.
    #[error("{device}: {error}")]
    Remote { device: String, error: RemoteError },
    /// The connection closed or broke while waiting.
    #[error("lost the connection to {device}: {reason}")]
    ConnectionLost { device: String, reason: String },
    /// No answer in time.
    #[error("{device} did not answer {what} within {after:?}")]
    Timeout { device: String, what: String, after: Duration },
    /// The plan names a device no worker was given for.
    #[error("the plan needs device `{device}` but no worker was given for it (have: {have})")]
    UnknownDevice { device: String, have: String },
    #[error("the program has no entry `{entry}` (entries: {have})")]
    UnknownEntry { entry: String, have: String },
    #[error("the program has several entries ({have}); name the one to run")]
    EntryNeeded { have: String },
    #[error("input `{name}` of {entry} is missing (inputs: {expected})")]
    MissingInput { entry: String, name: String, expected: String },
    #[error("{entry} has no input `{name}` (inputs: {expected})")]
    UnknownInput { entry: String, name: String, expected: String },
    #[error("input `{name}` of {entry} is {got}, the model takes {expected}")]
    InputType { entry: String, name: String, expected: String, got: String },
    /// The state an entry reads was never written (e.g. decode before prefill).
    #[error("{entry} reads state `{slot}`, which no earlier call of this session wrote")]
    StateNotReady { entry: String, slot: String },
    #[error("binding the shapes of {entry}'s inputs")]
    Bind {
        entry: String,
        #[source]
        source: ExecError,
    },
    #[error("reading weight {hash} for upload")]
    Weight {
        hash: String,
        #[source]
        source: genie_ir::weights::WeightError,
    },
    /// The peer broke the protocol (an unexpected reply).
    #[error("{device} broke the protocol: {reason}")]
    Protocol { device: String, reason: String },
    #[error("the client's runtime: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// The worker the error is about, if it names one.
    pub fn device(&self) -> Option<&str> {
        match self {
            ClientError::Connect { device, .. }
            | ClientError::Refused { device, .. }
            | ClientError::Remote { device, .. }
            | ClientError::ConnectionLost { device, .. }
            | ClientError::Timeout { device, .. }
            | ClientError::UnknownDevice { device, .. }
            | ClientError::Protocol { device, .. } => Some(device),
            _ => None,
        }
    }

    /// Whether a call failed because a worker was lost rather than because of the call: the
    /// connection broke or went silent, a worker could not reach its peer or waited in vain for
    /// its tensors, or a worker no longer knows the program or session (it restarted, or swept
    /// them). What such a call left in its session's state is unknown.
    pub fn is_worker_loss(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::ConnectionLost { .. } | ClientError::Timeout { .. } => true,
            ClientError::Remote { error, .. } => matches!(
                error.kind,
                ErrorKind::PeerUnreachable | ErrorKind::Timeout | ErrorKind::UnknownProgram | ErrorKind::UnknownSession
            ),
            _ => false,
        }
    }
}

/// A set of connected workers, one per plan device.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    options: ClientOptions,
    endpoint: quinn::Endpoint,
    workers: BTreeMap<String, Arc<WorkerLink>>,
    /// Request ids, unique per connection: shared by every view of the same links.
    ids: Arc<AtomicU64>,
}

struct WorkerLink {
    device: String,
    addr: SocketAddr,
    trust: Trust,
    server_name: String,
    /// This client's identity on the worker (its id and resume ticket), once welcomed: a new
    /// connection resumes it, so the client keeps reaching its programs and sessions.
    identity: Mutex<Option<Resume>>,
    live: tokio::sync::Mutex<Option<Arc<Live>>>,
}

/// One open connection: the control stream's writer, replies waited for, outputs expected.
struct Live {
    connection: Connection,
    writer: tokio::sync::Mutex<SendStream>,
    replies: Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>,
    tensors: Arc<Mutex<HashMap<Purpose, oneshot::Sender<Tensor>>>>,
    fingerprint: String,
    /// The worker's trace clock against this process's (see `trace.rs`): from the Hello, narrowed
    /// by each call.
    clock: Mutex<trace::ClockSync>,
}

impl WorkerLink {
    /// A link to the worker at `address`, not yet connected, with no identity there yet.
    fn new(address: WorkerAddress) -> WorkerLink {
        WorkerLink {
            device: address.device,
            addr: address.addr,
            trust: address.trust,
            server_name: address.server_name,
            identity: Mutex::new(None),
            live: Default::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Connect to every worker (each must accept the token).
    pub async fn connect(workers: Vec<WorkerAddress>, options: ClientOptions) -> Result<Cluster, ClientError> {
        let endpoint = transport::client_endpoint(&options.transport).map_err(|source| ClientError::Connect {
            device: "client".into(),
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source: Box::new(source),
        })?;
        let links = workers.into_iter().map(|w| (w.device.clone(), Arc::new(WorkerLink::new(w)))).collect();
        let cluster =
            Cluster { inner: Arc::new(Inner { options, endpoint, workers: links, ids: Arc::new(AtomicU64::new(1)) }) };
        let connects: Vec<_> = cluster.inner.workers.values().map(|w| cluster.live(w)).collect();
        for r in join_all(connects).await {
            r?;
        }
        Ok(cluster)
    }

    /// The same connections under other names: each `(name, device)` of `names` makes `name`
    /// reach this cluster's `device` (a replica's plan devices onto the workers that run them).
    /// Connections, client identities and request ids are shared with this cluster.
    pub fn renamed(&self, names: &[(String, String)]) -> Result<Cluster, ClientError> {
        let mut workers = BTreeMap::new();
        for (name, device) in names {
            workers.insert(name.clone(), self.link(device)?.clone());
        }
        Ok(self.over(workers))
    }

    /// A cluster of `workers` sharing this one's options, endpoint and request ids.
    fn over(&self, workers: BTreeMap<String, Arc<WorkerLink>>) -> Cluster {
        let inner = Inner {
            options: self.inner.options.clone(),
            endpoint: self.inner.endpoint.clone(),
            workers,
            ids: self.inner.ids.clone(),
        };
        Cluster { inner: Arc::new(inner) }
    }

    /// The same connections, but `name` reaches the worker at `address` (connected now, as a
    /// new client there): a lost device's part moved to another worker.
    async fn with_worker(&self, name: &str, address: WorkerAddress) -> Result<Cluster, ClientError> {
        let mut workers = self.inner.workers.clone();
        workers.insert(name.to_string(), Arc::new(WorkerLink::new(address)));
        let cluster = self.over(workers);
        cluster.live(cluster.link(name)?).await?;
        Ok(cluster)
    }

    /// The devices this cluster has workers for.
    pub fn devices(&self) -> Vec<String> {
        self.inner.workers.keys().cloned().collect()
    }

    /// The id `device`'s worker gave this client (for logs; it grants nothing without the
    /// ticket that came with it). `None` before the first connection.
    pub fn client_id(&self, device: &str) -> Result<Option<ClientId>, ClientError> {
        Ok(lock(&self.link(device)?.identity).as_ref().map(|r| r.client))
    }

    fn next_id(&self) -> u64 {
        self.inner.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn link(&self, device: &str) -> Result<&Arc<WorkerLink>, ClientError> {
        self.inner.workers.get(device).ok_or_else(|| ClientError::UnknownDevice {
            device: device.to_string(),
            have: self.inner.workers.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The open connection to a worker, connecting (and saying Hello) if there is none.
    async fn live(&self, link: &WorkerLink) -> Result<Arc<Live>, ClientError> {
        let slot = link.live.lock().await;
        if let Some(live) = slot.as_ref() {
            if live.connection.close_reason().is_none() {
                return Ok(live.clone());
            }
        }
        self.live_locked(link, slot).await
    }

    /// Connect to a worker and say Hello, holding its connection slot.
    async fn live_locked(
        &self,
        link: &WorkerLink,
        mut slot: tokio::sync::MutexGuard<'_, Option<Arc<Live>>>,
    ) -> Result<Arc<Live>, ClientError> {
        let options = &self.inner.options;
        let connection =
            transport::connect(&self.inner.endpoint, link.addr, &link.server_name, &link.trust, &options.transport)
                .await
                .map_err(|source| ClientError::Connect {
                    device: link.device.clone(),
                    addr: link.addr,
                    source: Box::new(source),
                })?;
        let lost = |e: String| ClientError::ConnectionLost { device: link.device.clone(), reason: e };
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| lost(e.to_string()))?;
        let resume = lock(&link.identity).clone();
        let hello = Hello { version: PROTOCOL_VERSION, token: options.token.clone(), role: Role::Client, resume };
        let said = trace::now_us();
        let welcome = match handshake::say_hello(&mut send, &mut recv, &hello, options.request_timeout).await {
            Err(HandshakeError::Refused(e)) if e.kind == ErrorKind::UnknownClient => {
                // The worker no longer knows this client (it restarted, or forgot a client gone
                // too long): start over as a new one on a fresh connection.
                *lock(&link.identity) = None;
                connection.close(0u32.into(), b"resuming as a new client");
                return Box::pin(self.live_locked(link, slot)).await;
            }
            other => other.map_err(|e| hello_error(&link.device, e))?,
        };
        let clock = Mutex::new(trace::ClockSync::from_hello(said, trace::now_us(), welcome.clock_us));
        let Some(identity) = welcome.client else {
            return Err(ClientError::Protocol {
                device: link.device.clone(),
                reason: "a Welcome without an id".into(),
            });
        };
        *lock(&link.identity) = Some(identity);
        let replies: Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>> = Arc::default();
        let tensors: Arc<Mutex<HashMap<Purpose, oneshot::Sender<Tensor>>>> = Arc::default();
        // Replies: dispatched by id until the stream ends; waiters then see their sender dropped.
        {
            let replies = replies.clone();
            let device = link.device.clone();
            tokio::spawn(async move {
                while let Ok(ReadFrame::Frame(frame)) = streams::read_frame::<Reply>(&mut recv).await {
                    let waiter = lock(&replies).remove(&frame.id);
                    match waiter {
                        Some(w) => {
                            let _ = w.send(frame.body);
                        }
                        None => tracing::warn!("{device}: unsolicited reply {:?}", frame.body),
                    }
                }
                lock(&replies).clear();
            });
        }
        // Tensors the worker sends back: outputs of runs and per-op calls.
        {
            let tensors = tensors.clone();
            let connection = connection.clone();
            let device = link.device.clone();
            tokio::spawn(async move {
                while let Ok(mut recv) = connection.accept_uni().await {
                    let tensors = tensors.clone();
                    let device = device.clone();
                    tokio::spawn(async move {
                        let result = async {
                            let header = streams::read_tensor_header(&mut recv, u64::MAX >> 1).await?;
                            let waiter = lock(&tensors).remove(&header.purpose);
                            let Some(waiter) = waiter else {
                                return Err(WireError::Malformed {
                                    what: "tensor stream",
                                    reason: format!("nobody expects {:?}", header.purpose),
                                });
                            };
                            let t = streams::read_tensor_payload(&mut recv, &header).await?;
                            let _ = waiter.send(t);
                            Ok(())
                        }
                        .await;
                        if let Err(e) = result {
                            tracing::warn!("{device}: tensor stream: {e}");
                            let _ = recv.stop(4u32.into());
                        }
                    });
                }
            });
        }
        let fingerprint = transport::peer_fingerprint(&connection).unwrap_or_default();
        let live =
            Arc::new(Live { connection, writer: tokio::sync::Mutex::new(send), replies, tensors, fingerprint, clock });
        *slot = Some(live.clone());
        Ok(live)
    }

    /// Send one request and wait for its reply; idempotent requests are retried on a lost
    /// connection or a timeout, with exponential backoff.
    async fn request(
        &self,
        device: &str,
        body: Request,
        timeout: Duration,
        idempotent: bool,
    ) -> Result<Reply, ClientError> {
        let link = self.link(device)?.clone();
        let options = &self.inner.options;
        let mut attempt = 0;
        loop {
            let result = async {
                let live = self.live(&link).await?;
                live.call(&link.device, self.next_id(), body.clone(), timeout).await
            }
            .await;
            let retryable = matches!(
                result,
                Err(ClientError::ConnectionLost { .. } | ClientError::Timeout { .. } | ClientError::Connect { .. })
            );
            if !(retryable && idempotent && attempt < options.retries) {
                return result;
            }
            let backoff = options.backoff.saturating_mul(1 << attempt.min(16));
            let jitter = backoff.mul_f64(rand::random::<f64>() * 0.25);
            tracing::info!(
                "{device}: {}; retrying in {:?}",
                result.err().map(|e| e.to_string()).unwrap_or_default(),
                backoff + jitter
            );
            tokio::time::sleep(backoff + jitter).await;
            // Start over on a fresh connection.
            *link.live.lock().await = None;
            attempt += 1;
        }
    }

    /// One request, not retried, whose answer is waited for at most `within` (a worker that is
    /// gone is a `Timeout`).
    async fn request_within(&self, device: &str, body: Request, within: Duration) -> Result<Reply, ClientError> {
        let what = body.kind();
        tokio::time::timeout(within, self.request(device, body, within, false))
            .await
            .map_err(|_| ClientError::Timeout { device: device.to_string(), what: what.into(), after: within })?
    }

    /// Install a plan on its workers. Each worker reports the weights it lacks; only those are
    /// uploaded (a weight resident from an earlier load, or from another client's identical
    /// model, is not sent again once this client proves it holds the bytes).
    pub async fn load(&self, plan: Arc<ProgramPlan>, weights: &WeightStore) -> Result<Program, ClientError> {
        self.load_as(rand::random::<u64>(), plan, weights).await
    }

    /// [`Cluster::load`] under a chosen program id. Loading again under the id of a program
    /// already loaded replaces its plan and peers on each worker and keeps its sessions (a
    /// worker that already owns the weights uploads nothing).
    async fn load_as(
        &self,
        program: u64,
        plan: Arc<ProgramPlan>,
        weights: &WeightStore,
    ) -> Result<Program, ClientError> {
        let mut peers = Vec::new();
        for d in &plan.devices {
            let link = self.link(&d.name)?.clone();
            let live = self.live(&link).await?;
            let client = lock(&link.identity).as_ref().map(|r| r.client).ok_or_else(|| ClientError::Protocol {
                device: d.name.clone(),
                reason: "connected without an identity".into(),
            })?;
            peers.push(PeerInfo {
                device: d.name.clone(),
                address: link.addr.to_string(),
                fingerprint: live.fingerprint.clone(),
                client,
            });
        }
        let mut stats = LoadStats::default();
        let loads: Vec<_> =
            plan.devices.iter().map(|d| self.load_on(program, &d.name, plan.clone(), peers.clone(), weights)).collect();
        for r in join_all(loads).await {
            let s = r?;
            stats.weights_uploaded += s.weights_uploaded;
            stats.bytes_uploaded += s.bytes_uploaded;
            stats.weights_resident += s.weights_resident;
        }
        Ok(Program { replicas: Arc::new(vec![Replica::new(self.clone(), program)]), plan, stats })
    }

    async fn load_on(
        &self,
        program: u64,
        device: &str,
        plan: Arc<ProgramPlan>,
        peers: Vec<PeerInfo>,
        weights: &WeightStore,
    ) -> Result<LoadStats, ClientError> {
        let timeout = self.inner.options.request_timeout;
        let needed = plan.device(device).map_or(0, |d| d.weights.len()) as u64;
        let body = Request::LoadProgram { program, device: device.to_string(), plan: Box::new((*plan).clone()), peers };
        let (nonce, asked) = match self.request(device, body, timeout, true).await? {
            Reply::ProveWeights { nonce, hashes } => (nonce, hashes),
            other => return Err(unexpected(device, &other)),
        };
        let proofs = prove_weights(device, &nonce, &asked, weights).await?;
        let missing = match self.request(device, Request::ProveWeights { program, proofs }, timeout, true).await? {
            Reply::MissingWeights { hashes } => hashes,
            other => return Err(unexpected(device, &other)),
        };
        let live = self.live(self.link(device)?).await?;
        let mut stats = LoadStats { weights_resident: needed - missing.len() as u64, ..LoadStats::default() };
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.inner.options.upload_concurrency.max(1)));
        let mut uploads = Vec::new();
        let task = format!("uploading weights to {device}");
        let total: u64 = missing.iter().filter_map(|h| weights.get(h)).map(|e| e.byte_len()).sum();
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let progress = self.inner.options.progress.clone();
        let report = move |done: u64, finished: bool| {
            progress.report(Progress { task: task.clone(), done, total: Some(total), finished })
        };
        if total > 0 {
            report(0, false);
        }
        for hash in missing {
            let entry = weights.get(&hash).ok_or_else(|| ClientError::Protocol {
                device: device.to_string(),
                reason: format!("asked for weight {} that the program does not have", hash.short()),
            })?;
            let shape = entry.ty.static_shape().unwrap_or_default();
            let dtype = entry.ty.dtype;
            let permit = semaphore
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| ClientError::Protocol { device: device.to_string(), reason: e.to_string() })?;
            let bytes = weights.read(&hash).map_err(|source| ClientError::Weight { hash: hash.to_string(), source })?;
            stats.bytes_uploaded += bytes.len() as u64;
            stats.weights_uploaded += 1;
            let connection = live.connection.clone();
            let device = device.to_string();
            let (sent, report) = (sent.clone(), report.clone());
            uploads.push(tokio::spawn(async move {
                let _permit = permit;
                let n = streams::send_payload(&connection, Purpose::Weight { hash }, dtype, shape, Bytes::from(bytes))
                    .await
                    .map_err(|e| ClientError::ConnectionLost { device, reason: format!("uploading a weight: {e}") })?;
                report(sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n, false);
                Ok::<_, ClientError>(n)
            }));
        }
        for u in uploads {
            u.await.map_err(|e| ClientError::Protocol { device: device.to_string(), reason: e.to_string() })??;
        }
        if total > 0 {
            report(sent.load(std::sync::atomic::Ordering::Relaxed), true);
        }
        let upload_timeout = timeout.max(Duration::from_secs(300));
        match self.request(device, Request::WeightsUploaded { program }, upload_timeout, true).await? {
            Reply::Ok => Ok(stats),
            other => Err(unexpected(device, &other)),
        }
    }

    /// A worker's counters.
    pub async fn stats(&self, device: &str) -> Result<WorkerStats, ClientError> {
        match self.request(device, Request::Stats, self.inner.options.request_timeout, true).await? {
            Reply::Stats(s) => Ok(s),
            other => Err(unexpected(device, &other)),
        }
    }

    /// Upload one weight to a worker (per-op remoting keeps weights there by handle).
    pub async fn upload_weight(&self, device: &str, hash: &WeightHash, tensor: &Tensor) -> Result<u64, ClientError> {
        let live = self.live(self.link(device)?).await?;
        streams::send_tensor(&live.connection, Purpose::Weight { hash: hash.clone() }, tensor)
            .await
            .map_err(|e| ClientError::ConnectionLost { device: device.to_string(), reason: e.to_string() })
    }

    /// Run one op on a worker: tensors go with the call (or name resident weights), outputs come
    /// back. Returns the outputs and the bytes sent and received.
    pub async fn exec_op(
        &self,
        device: &str,
        op: &str,
        args: Vec<genie_ir::Arg>,
        inputs: Vec<OpArgument<'_>>,
        outputs: u32,
    ) -> Result<(Vec<Tensor>, u64, u64), ClientError> {
        let live = self.live(self.link(device)?).await?;
        let call = self.next_id();
        let mut receivers = Vec::new();
        for index in 0..outputs {
            let (tx, rx) = oneshot::channel();
            lock(&live.tensors).insert(Purpose::OpOutput { call, index }, tx);
            receivers.push(rx);
        }
        let lost = |e: WireError| ClientError::ConnectionLost { device: device.to_string(), reason: e.to_string() };
        // The tensors' types go with the request (the worker sizes the call before any byte
        // arrives); their bytes follow on their own streams.
        let mut wire_inputs = Vec::new();
        let mut payloads = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            match input {
                OpArgument::Tensor(t) => {
                    let (dtype, shape, bytes) = streams::tensor_payload(t).map_err(lost)?;
                    wire_inputs.push(OpInput::Sent { dtype, shape: shape.clone() });
                    payloads.push((index as u32, dtype, shape, bytes));
                }
                OpArgument::Weight(h) => wire_inputs.push(OpInput::Weight((*h).clone())),
            }
        }
        let body = Request::ExecOp { call, op: op.to_string(), args, inputs: wire_inputs, outputs };
        let timeout = self.inner.options.run_timeout;
        let sends = async {
            let mut sent = 0;
            for (index, dtype, shape, bytes) in payloads {
                let purpose = Purpose::OpInput { call, index };
                sent += streams::send_payload(&live.connection, purpose, dtype, shape, bytes).await.map_err(lost)?;
            }
            Ok::<u64, ClientError>(sent)
        };
        let (reply, sent) = tokio::join!(live.call(device, self.next_id(), body, timeout), sends);
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                for index in 0..outputs {
                    lock(&live.tensors).remove(&Purpose::OpOutput { call, index });
                }
                return Err(e);
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                for index in 0..outputs {
                    lock(&live.tensors).remove(&Purpose::OpOutput { call, index });
                }
                return Err(e);
            }
        };
        match reply {
            Reply::OpDone { .. } => {}
            other => return Err(unexpected(device, &other)),
        }
        let mut out = Vec::new();
        let mut received = 0;
        for rx in receivers {
            let t = tokio::time::timeout(timeout, rx)
                .await
                .map_err(|_| ClientError::Timeout {
                    device: device.to_string(),
                    what: format!("{op} outputs"),
                    after: timeout,
                })?
                .map_err(|_| ClientError::ConnectionLost { device: device.to_string(), reason: "closed".into() })?;
            received += t.numel() as u64 * t.kind().elt_size_in_bytes() as u64;
            out.push(t);
        }
        Ok((out, sent, received))
    }

    /// Tell every worker this client is done.
    pub async fn close(&self) {
        for link in self.inner.workers.values() {
            let live = link.live.lock().await.take();
            if let Some(live) = live {
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    live.call(&link.device, self.next_id(), Request::Close, Duration::from_secs(2)),
                )
                .await;
                live.connection.close(0u32.into(), b"client done");
            }
        }
    }
}

/// Proofs that this client holds the weights a worker asked about: each weight's bytes hashed
/// under the worker's nonce (on a blocking thread: it reads every byte).
async fn prove_weights(
    device: &str,
    nonce: &genie_ir::HexBytes,
    asked: &[WeightHash],
    weights: &WeightStore,
) -> Result<Vec<(WeightHash, genie_ir::HexBytes)>, ClientError> {
    let nonce: [u8; 32] = nonce.0.as_slice().try_into().map_err(|_| ClientError::Protocol {
        device: device.to_string(),
        reason: format!("a nonce of {} bytes, not 32", nonce.0.len()),
    })?;
    let store = weights.subset(asked);
    let asked = asked.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut proofs = Vec::with_capacity(asked.len());
        for hash in asked {
            // A weight this program does not have cannot be proved; it will be asked for again.
            let Ok(bytes) = store.read(&hash) else { continue };
            proofs.push((hash, genie_ir::HexBytes(crate::wire::weight_proof(&nonce, &bytes).to_vec())));
        }
        proofs
    })
    .await
    .map_err(|e| ClientError::Protocol { device: device.to_string(), reason: format!("proving weights: {e}") })
}

/// An output a call waits for: its tensor, the sender, the stream's purpose and connection.
type ExpectedOutput = (genie_ir::ValueId, String, Purpose, Arc<Live>, oneshot::Receiver<Tensor>);

/// A tensor argument of a per-op call.
pub enum OpArgument<'a> {
    Tensor(&'a Tensor),
    Weight(&'a WeightHash),
}

impl Live {
    async fn call(&self, device: &str, id: u64, body: Request, timeout: Duration) -> Result<Reply, ClientError> {
        let (tx, rx) = oneshot::channel();
        lock(&self.replies).insert(id, tx);
        let what = body.kind();
        let written = {
            let mut writer = self.writer.lock().await;
            streams::write_frame(&mut writer, &Frame { id, body }).await
        };
        if let Err(e) = written {
            lock(&self.replies).remove(&id);
            return Err(match e {
                WireError::Stream(reason) => ClientError::ConnectionLost { device: device.to_string(), reason },
                other => ClientError::Protocol { device: device.to_string(), reason: other.to_string() },
            });
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => {
                let reason =
                    self.connection.close_reason().map_or("control stream closed".to_string(), |r| r.to_string());
                return Err(ClientError::ConnectionLost { device: device.to_string(), reason });
            }
            Err(_) => {
                lock(&self.replies).remove(&id);
                return Err(ClientError::Timeout {
                    device: device.to_string(),
                    what: what.to_string(),
                    after: timeout,
                });
            }
        };
        match reply {
            Reply::Error(error) => Err(ClientError::Remote { device: device.to_string(), error }),
            r => Ok(r),
        }
    }
}

/// A failed Hello as the client reports it: the handshake's own failures keep the error kinds
/// callers match on (a refusal, a timeout, a lost connection, a broken protocol).
fn hello_error(device: &str, e: HandshakeError) -> ClientError {
    let device = device.to_string();
    match e {
        HandshakeError::Send(e) => ClientError::ConnectionLost { device, reason: e.to_string() },
        HandshakeError::Timeout(after) => ClientError::Timeout { device, what: "Hello".into(), after },
        HandshakeError::Refused(error) => ClientError::Refused { device, error },
        e @ HandshakeError::Closed => ClientError::ConnectionLost { device, reason: e.to_string() },
        e @ HandshakeError::Unexpected { .. } => ClientError::Protocol { device, reason: e.to_string() },
        HandshakeError::Read(WireError::Stream(reason)) => ClientError::ConnectionLost { device, reason },
        HandshakeError::Read(e) => ClientError::Protocol { device, reason: e.to_string() },
    }
}

fn unexpected(device: &str, reply: &Reply) -> ClientError {
    ClientError::Protocol { device: device.to_string(), reason: format!("unexpected reply {reply:?}") }
}

/// Await futures concurrently (on this task), keeping their order.
pub(crate) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                    *result = Some(v);
                    *slot = None;
                }
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results.into_iter().flatten().collect()
}

/// What loading a program cost.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadStats {
    pub weights_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Weights the workers already had.
    pub weights_resident: u64,
}

/// A program loaded on its workers: one copy, or several on disjoint workers
/// (`--replicas`), among which each new session chooses.
#[derive(Clone)]
pub struct Program {
    replicas: Arc<Vec<Replica>>,
    plan: Arc<ProgramPlan>,
    /// What loading it uploaded (over every replica).
    pub stats: LoadStats,
}

/// One copy of a program: the workers it is loaded on, and its id there.
#[derive(Clone)]
struct Replica {
    cluster: Cluster,
    id: u64,
    /// Until when its load counts as unknown without asking: a worker of it did not answer
    /// (shared by every handle to the program).
    silent_until: Arc<Mutex<Option<Instant>>>,
}

impl Replica {
    fn new(cluster: Cluster, id: u64) -> Replica {
        Replica { cluster, id, silent_until: Arc::new(Mutex::new(None)) }
    }

    fn silent(&self) -> bool {
        lock(&self.silent_until).is_some_and(|until| Instant::now() < until)
    }

    /// Whether it answered: silence is remembered for [`SILENT_FOR`], an answer forgets it.
    fn answered(&self, answered: bool) {
        *lock(&self.silent_until) = (!answered).then(|| Instant::now() + SILENT_FOR);
    }
}

/// What a replica's workers report of their load when a session is about to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaLoad {
    /// Sessions of every client on the busiest worker of the replica.
    pub sessions: u64,
    /// Runs and per-op calls in flight (executing or queued) on all its workers.
    pub queued_calls: u64,
    /// The least memory any of its workers has left to admit (`u64::MAX`: no limit).
    pub free_memory: u64,
}

impl ReplicaLoad {
    /// Lighter first: fewer sessions, then fewer queued calls, then more free memory.
    fn key(&self) -> (u64, u64, std::cmp::Reverse<u64>) {
        (self.sessions, self.queued_calls, std::cmp::Reverse(self.free_memory))
    }
}

/// Whether a session refused on one replica may open on another: the replica is full or
/// unreachable, not the request wrong.
fn try_another_replica(e: &ClientError) -> bool {
    match e {
        ClientError::Remote { error, .. } | ClientError::Refused { error, .. } => {
            matches!(error.kind, ErrorKind::OutOfMemory | ErrorKind::LimitReached)
        }
        ClientError::Connect { .. } | ClientError::ConnectionLost { .. } | ClientError::Timeout { .. } => true,
        _ => false,
    }
}

impl Program {
    pub fn plan(&self) -> &ProgramPlan {
        &self.plan
    }

    /// The copies of this program loaded on their own workers, as one program whose sessions
    /// open on the least loaded copy. Every copy must run the same plan.
    pub fn replicated(copies: Vec<Program>) -> Result<Program, ClientError> {
        let Some(first) = copies.first() else {
            return Err(ClientError::Protocol {
                device: CLIENT.into(),
                reason: "no replica to open sessions on".into(),
            });
        };
        let plan = first.plan.clone();
        let mut stats = LoadStats::default();
        let mut replicas = Vec::new();
        for copy in &copies {
            if copy.plan != plan {
                return Err(ClientError::Protocol {
                    device: CLIENT.into(),
                    reason: "replicas of one program must run the same plan".into(),
                });
            }
            stats.weights_uploaded += copy.stats.weights_uploaded;
            stats.bytes_uploaded += copy.stats.bytes_uploaded;
            stats.weights_resident += copy.stats.weights_resident;
            replicas.extend(copy.replicas.iter().cloned());
        }
        Ok(Program { replicas: Arc::new(replicas), plan, stats })
    }

    /// How many copies of the program sessions choose among.
    pub fn replicas(&self) -> usize {
        self.replicas.len()
    }

    /// The load each replica's workers report now (`None` where a worker did not answer).
    pub async fn replica_loads(&self) -> Vec<Option<ReplicaLoad>> {
        self.loads_except(None).await
    }

    /// [`Program::replica_loads`], with replica `skip` (if any) not asked and `None`.
    async fn loads_except(&self, skip: Option<usize>) -> Vec<Option<ReplicaLoad>> {
        let asks: Vec<_> = self
            .replicas
            .iter()
            .enumerate()
            .map(|(r, replica)| async move {
                if Some(r) == skip {
                    None
                } else {
                    self.replica_load(replica).await
                }
            })
            .collect();
        join_all(asks).await
    }

    async fn replica_load(&self, replica: &Replica) -> Option<ReplicaLoad> {
        // A worker that is gone would hold every new session up for its retries: its replica's
        // load is unknown after a short wait instead, the replica is tried last, and it is not
        // asked again for a while (every new session would wait again).
        if replica.silent() {
            return None;
        }
        let asks: Vec<_> =
            self.plan.devices.iter().map(|d| tokio::time::timeout(LOAD_WAIT, replica.cluster.stats(&d.name))).collect();
        let mut load = ReplicaLoad { sessions: 0, queued_calls: 0, free_memory: u64::MAX };
        let answers = join_all(asks).await;
        replica.answered(answers.iter().all(|a| matches!(a, Ok(Ok(_)))));
        for stats in answers {
            let stats = stats.ok()?.ok()?;
            load.sessions = load.sessions.max(stats.sessions);
            load.queued_calls += stats.calls_in_flight;
            if let Some(budget) = stats.memory_bytes {
                load.free_memory = load.free_memory.min(budget.saturating_sub(stats.committed_bytes));
            }
        }
        Some(load)
    }

    /// Open a session: its state (KV cache) lives on the workers between calls.
    /// One call in a session of its own (opened, run, closed): of `entry`, or of the program's
    /// only entry.
    pub async fn run_once(
        &self,
        entry: Option<&str>,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<RunOutput, ClientError> {
        let entries = &self.plan().entries;
        let entry = match (entry, entries.as_slice()) {
            (Some(e), _) => e.to_string(),
            (None, [only]) => only.name.clone(),
            (None, _) => {
                let have = entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ");
                return Err(ClientError::EntryNeeded { have });
            }
        };
        let mut session = self.open_session().await?;
        let out = session.run(&entry, inputs).await;
        let _ = session.close().await;
        out
    }

    pub async fn open_session(&self) -> Result<Session, ClientError> {
        self.open_session_with_id(rand::random::<u64>()).await
    }

    /// Open a session under a chosen id. Opening it again (a retried request) is accepted while
    /// the id names a session of this program; another program's session of that id is refused
    /// (`BadRequest`).
    ///
    /// With several replicas the session opens on the one whose workers report the least load
    /// (sessions of every client, then calls queued, then free memory); a replica that refuses
    /// (out of memory, at a limit, unreachable) passes it to the next. Clients that choose the
    /// same replica at the same moment all saw the loads from before any of them opened, so
    /// the loads are read again after opening: while the replica holds more than one session
    /// beyond the lightest other, the sessions that opened there last (by their rank, which the
    /// worker reports) move, as many as half the difference; each opens on the lighter replica
    /// before closing where it was, so a session on its way counts on both and no other moves
    /// for it. The earlier sessions look again after a moment (backing off), in case too few moved, and a
    /// session that moved looks again too, in case too many did (at most `BALANCE_ROUNDS`).
    pub async fn open_session_with_id(&self, session: u64) -> Result<Session, ClientError> {
        if self.replicas.len() == 1 {
            return Ok(self.open_on(0, session).await?.0);
        }
        let mut refused = vec![false; self.replicas.len()];
        let (mut opened, mut rank) = self.open_on_lightest(session, &mut refused).await?;
        let mut wait = BALANCE_WAIT;
        for _ in 0..BALANCE_ROUNDS {
            // Read here before there, and the rank last: a session moving from here to there
            // opens there before it closes here, so it is then counted twice or here only,
            // never missed, and this session errs towards staying.
            let r = opened.index;
            let here = self.replica_load(&self.replicas[r]).await.map_or(rank + 1, |l| l.sessions);
            let loads = self.loads_except(Some(r)).await;
            let lighter = lightest(&loads, &refused)
                .and_then(|o| Some((o, loads[o]?.sessions)))
                .filter(|(_, there)| there.saturating_add(1) < here);
            let Some((o, there)) = lighter else { return Ok(opened) };
            rank = self.rank_on(r, session).await.unwrap_or(rank);
            if rank < here - (here - there) / 2 {
                // Later sessions are to move; look again once they may have.
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(BALANCE_WAIT_MAX);
                continue;
            }
            match self.open_on(o, session).await {
                Ok((moved, moved_rank)) => {
                    tracing::debug!("session {session}: replica {r} held {here} (rank {rank}); moved to {o}");
                    if let Err(e) = std::mem::replace(&mut opened, moved).close().await {
                        tracing::warn!("closing session {session} on replica {r} after moving it: {e}");
                    }
                    rank = moved_rank;
                }
                Err(e) => {
                    tracing::info!("session {session}: replica {o} refused it ({e}); staying on {r}");
                    refused[o] = true;
                }
            }
        }
        Ok(opened)
    }

    /// Open on the lightest replica that accepts the session, marking those that refuse.
    async fn open_on_lightest(&self, session: u64, refused: &mut [bool]) -> Result<(Session, u64), ClientError> {
        let loads = self.replica_loads().await;
        let mut last = None;
        while let Some(r) = lightest(&loads, refused) {
            match self.open_on(r, session).await {
                Ok(opened) => return Ok(opened),
                Err(e) if try_another_replica(&e) => {
                    tracing::info!("session {session}: replica {r} refused it ({e}); trying the next");
                    refused[r] = true;
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol {
            device: CLIENT.into(),
            reason: "no replica left to open the session on".into(),
        }))
    }

    /// The session's rank on replica `r` now (the most sessions opened before it still open
    /// on any of its workers): opening it again asks for it.
    async fn rank_on(&self, r: usize, session: u64) -> Result<u64, ClientError> {
        self.open_requests(r, session).await
    }

    /// Open the session on every worker of replica `r`; also returns its rank there. A refusal
    /// closes what did open, so nothing stays reserved.
    async fn open_on(&self, r: usize, session: u64) -> Result<(Session, u64), ClientError> {
        let opened = Session {
            replica: self.replicas[r].clone(),
            index: r,
            plan: self.plan.clone(),
            id: session,
            slot_shapes: BTreeMap::new(),
            completed: BTreeSet::new(),
        };
        match self.open_requests(r, session).await {
            Ok(rank) => {
                self.replicas[r].answered(true);
                Ok((opened, rank))
            }
            Err(e) => {
                let _ = opened.close().await;
                Err(e)
            }
        }
    }

    /// Send OpenSession to every worker of replica `r` (idempotent: a session already open
    /// there stays as it is); the most sessions any of them says opened before it.
    async fn open_requests(&self, r: usize, session: u64) -> Result<u64, ClientError> {
        let replica = &self.replicas[r];
        let timeout = replica.cluster.inner.options.request_timeout;
        let opens: Vec<_> = self
            .plan
            .devices
            .iter()
            .map(|d| {
                replica.cluster.request(&d.name, Request::OpenSession { program: replica.id, session }, timeout, true)
            })
            .collect();
        let mut rank = 0;
        let mut failed = None;
        for (reply, d) in join_all(opens).await.into_iter().zip(&self.plan.devices) {
            match reply {
                Ok(Reply::SessionOpened { sessions_before }) => rank = rank.max(sessions_before),
                Ok(other) => failed = failed.or(Some(unexpected(&d.name, &other))),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        failed.map_or(Ok(rank), Err)
    }

    /// A handle on a session of this program by id, without opening it: for a session opened
    /// earlier through another handle, on replica `replica` (0 when there is one). The worker
    /// decides whether the id is this client's; the state's shapes are unknown until a call of
    /// this handle writes them.
    pub fn session_with_id(&self, replica: usize, id: u64) -> Session {
        let index = replica.min(self.replicas.len() - 1);
        let replica = self.replicas[index].clone();
        Session {
            replica,
            index,
            plan: self.plan.clone(),
            id,
            slot_shapes: BTreeMap::new(),
            completed: BTreeSet::new(),
        }
    }

    /// Remove the program from its workers (every replica).
    pub async fn unload(&self) -> Result<(), ClientError> {
        for replica in self.replicas.iter() {
            let timeout = replica.cluster.inner.options.request_timeout;
            for d in &self.plan.devices {
                replica.cluster.request(&d.name, Request::UnloadProgram { program: replica.id }, timeout, true).await?;
            }
        }
        Ok(())
    }
}

impl Program {
    /// The same program with the parts of some devices moved to other workers (`moves`: plan
    /// device → the worker that takes it), for a program of one copy whose workers there were
    /// lost: the new workers load their part (uploading the weights they lack), and every
    /// other worker loads the program again under the same id, which points it at its new
    /// peers and keeps its sessions and their state. A session opened again by id
    /// ([`Program::open_session_with_id`]) then has its old state where it was kept and empty
    /// slots on the new workers.
    pub async fn moved(
        &self,
        moves: &BTreeMap<String, WorkerAddress>,
        weights: &WeightStore,
    ) -> Result<Program, ClientError> {
        let [replica] = self.replicas.as_slice() else {
            return Err(ClientError::Protocol {
                device: CLIENT.into(),
                reason: "only a program of one copy can have its parts moved".into(),
            });
        };
        let mut cluster = replica.cluster.clone();
        for (device, address) in moves {
            cluster = cluster.with_worker(device, address.clone()).await?;
        }
        cluster.load_as(replica.id, self.plan.clone(), weights).await
    }

    /// Open session `session` on `devices` only (a scratch session a replay writes into on the
    /// workers whose own state is kept).
    pub async fn open_session_on(&self, devices: &[String], session: u64) -> Result<(), ClientError> {
        let replica = &self.replicas[0];
        let timeout = replica.cluster.inner.options.request_timeout;
        for d in devices {
            let body = Request::OpenSession { program: replica.id, session };
            match replica.cluster.request(d, body, timeout, true).await? {
                Reply::SessionOpened { .. } => {}
                other => return Err(unexpected(d, &other)),
            }
        }
        Ok(())
    }

    /// Close session `session` on `devices` (best effort: a worker that does not answer within
    /// `within` is left to its idle sweep).
    pub async fn close_session_on(&self, devices: &[String], session: u64, within: Duration) {
        let replica = &self.replicas[0];
        for d in devices {
            if let Err(e) = replica.cluster.request_within(d, Request::CloseSession { session }, within).await {
                tracing::debug!("{d}: closing scratch session {session}: {e}");
            }
        }
    }

    /// Best effort, for a program given up after a lost worker: close `session` and unload the
    /// program on every worker of every replica, waiting at most `within` for each request and
    /// never retrying (a worker that is gone just does not answer). Nothing is held for it
    /// afterwards on the workers that answered; the connections are closed in the background.
    ///
    /// Workers named in `dead` (by their deployment name) are not asked at all.
    pub async fn abandon(&self, session: Option<u64>, within: Duration, dead: &BTreeSet<String>) {
        let mut releases = Vec::new();
        for replica in self.replicas.iter() {
            let cluster = &replica.cluster;
            for device in cluster.devices() {
                if cluster.link(&device).is_ok_and(|link| dead.contains(&link.device)) {
                    continue;
                }
                let mut asks: Vec<Request> =
                    session.map(|session| Request::CloseSession { session }).into_iter().collect();
                asks.push(Request::UnloadProgram { program: replica.id });
                // In order per worker (the session before its program), workers at once.
                releases.push(async move {
                    for body in asks {
                        if let Err(e) = cluster.request_within(&device, body, within).await {
                            tracing::debug!("{device}: releasing an abandoned program: {e}");
                            if e.is_worker_loss() {
                                break;
                            }
                        }
                    }
                });
            }
        }
        join_all(releases).await;
        for replica in self.replicas.iter() {
            let cluster = replica.cluster.clone();
            tokio::spawn(async move { cluster.close().await });
        }
    }
}

/// Best effort: cancel run `run` on each of `devices` still connected (a part that already
/// finished, or a worker that is gone, is no matter).
async fn cancel_parts(cluster: &Cluster, devices: impl Iterator<Item = &str>, run: u64) {
    for device in devices {
        let Ok(link) = cluster.link(device) else { continue };
        let live = link.live.lock().await.clone();
        if let Some(live) = live.filter(|l| l.connection.close_reason().is_none()) {
            let wait = Duration::from_secs(2);
            let _ = live.call(device, cluster.next_id(), Request::CancelRun { run }, wait).await;
        }
    }
}

/// How many times a new session reads the replicas' loads again after opening, to move off a
/// replica that others chose at the same moment, and how long it waits between reads while
/// later sessions move: 5 ms, doubling up to 100 ms (about a third of a second in all, so a
/// loaded machine's movers have time to move).
const BALANCE_ROUNDS: usize = 8;
const BALANCE_WAIT: Duration = Duration::from_millis(5);
const BALANCE_WAIT_MAX: Duration = Duration::from_millis(100);
/// How long a replica's workers have to report their load before it counts as unknown.
pub const LOAD_WAIT: Duration = Duration::from_secs(2);
/// How long a replica whose worker did not report its load counts as unknown without asking
/// (a session opening on it, when the others refuse, ends that at once).
const SILENT_FOR: Duration = Duration::from_secs(30);

/// The replica with the least load that has not refused; those whose load is unknown come last.
fn lightest(loads: &[Option<ReplicaLoad>], refused: &[bool]) -> Option<usize> {
    (0..loads.len()).filter(|r| !refused[*r]).min_by_key(|r| (loads[*r].is_none(), loads[*r].map(|l| l.key())))
}

/// What one call measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallStats {
    pub wall_s: f64,
    /// Bytes of tensors per link, `from→to` (client inputs, cut activations, outputs).
    pub links: BTreeMap<String, u64>,
    /// All tensor bytes on the wire in this call.
    pub bytes: u64,
    /// Request/response exchanges the client waited for in sequence.
    pub round_trips: u32,
    /// Each worker's own measurements.
    pub workers: BTreeMap<String, RunStats>,
    /// The call's timeline on this process's trace clock: the call and its input sends on the
    /// client, each worker's spans moved onto the client's clock (see `trace.rs`).
    pub spans: Vec<trace::Span>,
}

impl CallStats {
    /// The size of the batch the call's last stage ran in: the largest
    /// [`RunStats::batch`] among the workers that sent outputs to the client (0 if none did).
    pub fn last_stage_batch(&self) -> u32 {
        self.workers.values().filter(|w| w.bytes_sent.contains_key(CLIENT)).map(|w| w.batch).max().unwrap_or(0)
    }
}

/// The result of one call.
#[derive(Debug)]
pub struct RunOutput {
    /// User outputs by name (state outputs stay on their worker).
    pub outputs: BTreeMap<String, Tensor>,
    pub stats: CallStats,
}

/// A session: calls of a program's entries sharing state slots that stay on the workers.
pub struct Session {
    /// The copy of the program it opened on.
    replica: Replica,
    index: usize,
    plan: Arc<ProgramPlan>,
    id: u64,
    /// The shape of each state slot's current value, so later calls can bind their symbols.
    slot_shapes: BTreeMap<u32, Vec<i64>>,
    /// The workers whose part of the last call finished (and saved its state there), also when
    /// the call as a whole failed.
    completed: BTreeSet<String>,
}

impl Session {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Which replica of the program the session runs on (0 when there is one).
    pub fn replica(&self) -> usize {
        self.index
    }

    /// The workers (plan devices) whose part of the last call finished, its state saved there,
    /// even when the call failed elsewhere.
    pub fn last_call_completed(&self) -> &BTreeSet<String> {
        &self.completed
    }

    /// [`Session::run`] with some workers' parts in another session: each device in `elsewhere`
    /// runs in the session id given (opened there with [`Program::open_session_on`]), so its
    /// state outputs go there and this session's state on it stays as it is. The call's
    /// activations still flow between all of them. A replay uses it to rebuild the state of
    /// the workers that lost it while the others keep theirs.
    pub fn run_elsewhere_on<'s>(
        &'s mut self,
        entry_name: &str,
        inputs: &BTreeMap<String, Tensor>,
        elsewhere: &'s BTreeMap<String, u64>,
    ) -> impl std::future::Future<Output = Result<RunOutput, ClientError>> + Send + 's {
        // Prepared before the future, which then holds no tensor reference (tensors are not
        // Sync).
        let prepared = self.prepare(entry_name, inputs);
        async move {
            let (entry_name, bindings, payloads) = prepared?;
            let run = rand::random::<u64>();
            let result = self.run_prepared(run, &entry_name, bindings, payloads, elsewhere).await;
            if result.is_err() {
                self.slot_shapes.clear();
                self.cancel(run, &entry_name).await;
            }
            result
        }
    }

    /// Forget the state (the next call must write it again, e.g. a new prefill).
    pub fn has_state(&self, slot: u32) -> bool {
        self.slot_shapes.contains_key(&slot)
    }

    /// Run one call of `entry` with the user inputs by name; returns user outputs by name.
    ///
    /// Inputs are checked, their symbols bound and their bytes laid out before the returned
    /// future starts, so the future holds no tensor reference and can run on any thread.
    pub fn run<'s>(
        &'s mut self,
        entry_name: &str,
        inputs: &BTreeMap<String, Tensor>,
    ) -> impl std::future::Future<Output = Result<RunOutput, ClientError>> + Send + 's {
        let prepared = self.prepare(entry_name, inputs);
        async move {
            let (entry_name, bindings, payloads) = prepared?;
            let run = rand::random::<u64>();
            let result = self.run_prepared(run, &entry_name, bindings, payloads, &BTreeMap::new()).await;
            if result.is_err() {
                // A failed call may have updated the state on some workers and not on others:
                // forget it, so the next call that reads state fails clearly (StateNotReady)
                // instead of reading caches of different lengths. Parts still running on a
                // worker (waiting for a tensor that will not come) are cancelled, so their
                // sessions are free for the next call.
                self.slot_shapes.clear();
                self.cancel(run, &entry_name).await;
            }
            result
        }
    }

    /// Best effort: cancel run `run` on every worker of `entry` still connected.
    async fn cancel(&self, run: u64, entry: &str) {
        let Some(e) = self.plan.entry(entry) else { return };
        let devices = e.plans.iter().map(|p| p.device.as_str()).filter(|d| *d != CLIENT);
        cancel_parts(&self.replica.cluster, devices, run).await;
    }

    /// Check inputs and bind symbols; the inputs as wire payloads by tensor id.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        entry_name: &str,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<(String, Bindings, HashMap<genie_ir::ValueId, (genie_ir::DType, Vec<i64>, Bytes)>), ClientError> {
        let plan = &self.plan;
        let entry = plan.entry(entry_name).ok_or_else(|| ClientError::UnknownEntry {
            entry: entry_name.to_string(),
            have: plan.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        let by_tensor = self.check_inputs(entry, inputs)?;
        let bindings = self.bind(entry, &by_tensor)?;
        let mut payloads = HashMap::new();
        for (id, t) in by_tensor {
            let payload = streams::tensor_payload(t).map_err(|e| ClientError::InputType {
                entry: entry_name.to_string(),
                name: id.to_string(),
                expected: "a tensor with a wire dtype".into(),
                got: e.to_string(),
            })?;
            payloads.insert(id, payload);
        }
        Ok((entry_name.to_string(), bindings, payloads))
    }

    async fn run_prepared(
        &mut self,
        run: u64,
        entry_name: &str,
        bindings: Bindings,
        by_tensor: HashMap<genie_ir::ValueId, (genie_ir::DType, Vec<i64>, Bytes)>,
        elsewhere: &BTreeMap<String, u64>,
    ) -> Result<RunOutput, ClientError> {
        let started = Instant::now();
        self.completed.clear();
        let call_start_us = trace::micros_since_epoch(started);
        let cluster = self.replica.cluster.clone();
        let plan = self.plan.clone();
        let entry = plan.entry(entry_name).ok_or_else(|| ClientError::UnknownEntry {
            entry: entry_name.to_string(),
            have: plan.entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        let options = &cluster.inner.options;
        let client_plan = entry.plan(CLIENT);
        let client_steps: &[Step] = client_plan.map_or(&[], |p| &p.steps);
        let workers: Vec<&str> = entry.plans.iter().filter(|p| p.device != CLIENT).map(|p| p.device.as_str()).collect();

        // Expect the outputs before anything can send them.
        let mut expected = Vec::new();
        for step in client_steps {
            if let Step::Recv { tensor, from, transfer } = step {
                let live = cluster.live(cluster.link(from)?).await?;
                let (tx, rx) = oneshot::channel();
                let purpose = Purpose::Output { run, transfer: *transfer };
                lock(&live.tensors).insert(purpose.clone(), tx);
                expected.push((*tensor, from.clone(), purpose, live, rx));
            }
        }
        let timeout = options.run_timeout;
        let body = |d: &str| Request::Run {
            run,
            program: self.replica.id,
            session: elsewhere.get(d).copied().unwrap_or(self.id),
            entry: entry_name.to_string(),
            bindings: bindings.clone(),
            timeout_ms: timeout.as_millis() as u64,
        };
        // A call is not idempotent once it has state to write, so it is never retried. The
        // first part that fails has the others cancelled at once: a part waiting for a tensor
        // the failed one will never send would otherwise wait out the run's timeout.
        let cancelled = AtomicBool::new(false);
        let runs: Vec<_> = workers
            .iter()
            .map(|d| {
                let (cluster, cancelled, workers, body) = (&cluster, &cancelled, &workers, &body);
                async move {
                    let reply = cluster.request(d, body(d), timeout, false).await;
                    if !matches!(reply, Ok(Reply::RunDone { .. })) && !cancelled.swap(true, Ordering::Relaxed) {
                        cancel_parts(cluster, workers.iter().copied().filter(|w| w != d), run).await;
                    }
                    reply
                }
            })
            .collect();
        let sends = async {
            let mut links: BTreeMap<String, u64> = BTreeMap::new();
            let mut spans = Vec::new();
            for step in client_steps {
                if let Step::Send { tensor, to, transfer } = step {
                    let live = cluster.live(cluster.link(to)?).await?;
                    let value = by_tensor.get(tensor).ok_or_else(|| ClientError::Protocol {
                        device: to.clone(),
                        reason: format!("the client plan sends {tensor}, which is not a user input"),
                    })?;
                    let (dtype, shape, bytes) = value.clone();
                    let purpose = Purpose::Input { run, transfer: *transfer };
                    let start = trace::now_us();
                    let n = streams::send_payload(&live.connection, purpose, dtype, shape, bytes)
                        .await
                        .map_err(|e| ClientError::ConnectionLost { device: to.clone(), reason: e.to_string() })?;
                    let link = format!("{CLIENT}→{to}");
                    spans.push(trace::Span {
                        process: CLIENT.to_string(),
                        track: link.clone(),
                        name: format!("input {tensor}"),
                        start_us: start as i64,
                        dur_us: trace::now_us().saturating_sub(start),
                        bytes: n,
                    });
                    *links.entry(link).or_default() += n;
                }
            }
            Ok::<_, ClientError>((links, spans))
        };
        let (replies, sent) = tokio::join!(join_all(runs), sends);
        let cleanup = |expected: &[ExpectedOutput]| {
            for (_, _, purpose, live, _) in expected {
                lock(&live.tensors).remove(purpose);
            }
        };
        let mut stats = CallStats { round_trips: 1, ..CallStats::default() };
        let mut first_error = None;
        let mut errors = Vec::new();
        for (reply, device) in replies.into_iter().zip(&workers) {
            match reply {
                Ok(Reply::RunDone { stats: s }) => {
                    self.completed.insert(device.to_string());
                    for (to, n) in &s.bytes_sent {
                        *stats.links.entry(format!("{device}→{to}")).or_default() += n;
                    }
                    // The worker's part lies within this call: narrow its clock with it first.
                    let first = s.spans.iter().map(|x| x.start_us).min();
                    let last = s.spans.iter().map(|x| x.start_us.saturating_add(x.dur_us)).max();
                    let offset = match cluster.live(cluster.link(device)?).await {
                        Ok(live) => {
                            let mut clock = lock(&live.clock);
                            if let (Some(first), Some(last)) = (first, last) {
                                clock.narrow(call_start_us, trace::now_us(), first, last);
                            }
                            clock.offset()
                        }
                        Err(_) => 0,
                    };
                    stats.spans.extend(s.spans.iter().map(|span| trace::Span::from_worker(device, span, offset)));
                    stats.workers.insert(device.to_string(), s);
                }
                Ok(other) => first_error = first_error.or(Some(unexpected(device, &other))),
                Err(e) => errors.push(e),
            }
        }
        // Prefer the root cause over the timeouts and cancellations it caused on other workers.
        let is_consequence = |e: &ClientError| matches!(e, ClientError::Remote { error, .. } if matches!(error.kind, ErrorKind::Timeout | ErrorKind::Cancelled));
        if let Some(i) =
            errors.iter().position(|e| !is_consequence(e)).or(if errors.is_empty() { None } else { Some(0) })
        {
            first_error = first_error.or(Some(errors.swap_remove(i)));
        }
        let (sent, input_spans) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                cleanup(&expected);
                return Err(first_error.unwrap_or(e));
            }
        };
        if let Some(e) = first_error {
            cleanup(&expected);
            return Err(e);
        }
        stats.links.extend(sent);
        stats.spans.extend(input_spans);
        let mut outputs = BTreeMap::new();
        let names: HashMap<genie_ir::ValueId, &str> =
            entry.outputs.iter().map(|o| (o.tensor, o.name.as_str())).collect();
        let remaining = timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(100));
        for (tensor, from, _, _, rx) in expected {
            let t = match tokio::time::timeout(remaining, rx).await {
                Ok(Ok(t)) => t,
                Ok(Err(_)) => {
                    return Err(ClientError::ConnectionLost { device: from, reason: "output stream lost".into() })
                }
                Err(_) => {
                    return Err(ClientError::Timeout {
                        device: from,
                        what: format!("output {tensor}"),
                        after: remaining,
                    })
                }
            };
            if let Some(name) = names.get(&tensor) {
                outputs.insert(name.to_string(), t);
            }
        }
        // The slots now hold this call's state outputs: remember their shapes.
        for o in &entry.outputs {
            if let Some(slot) = o.slot {
                let shape = exec::concrete_shape(entry, o.tensor, &bindings)
                    .map_err(|source| ClientError::Bind { entry: entry_name.to_string(), source })?;
                self.slot_shapes.insert(slot, shape);
            }
        }
        stats.bytes = stats.links.values().sum();
        stats.wall_s = started.elapsed().as_secs_f64();
        stats.spans.push(trace::Span {
            process: CLIENT.to_string(),
            track: "calls".into(),
            name: format!("run {entry_name}"),
            start_us: call_start_us as i64,
            dur_us: trace::micros_since_epoch(Instant::now()).saturating_sub(call_start_us),
            bytes: 0,
        });
        Ok(RunOutput { outputs, stats })
    }

    /// Inputs by tensor id, after checking names, dtypes and that the state they need exists.
    fn check_inputs<'t>(
        &self,
        entry: &EntryPlan,
        inputs: &'t BTreeMap<String, Tensor>,
    ) -> Result<HashMap<genie_ir::ValueId, &'t Tensor>, ClientError> {
        let user: Vec<&str> = entry.inputs.iter().filter(|i| i.slot.is_none()).map(|i| i.name.as_str()).collect();
        let expected = user.join(", ");
        for name in inputs.keys() {
            if !user.contains(&name.as_str()) {
                return Err(ClientError::UnknownInput {
                    entry: entry.name.clone(),
                    name: name.clone(),
                    expected: expected.clone(),
                });
            }
        }
        let mut by_tensor = HashMap::new();
        for port in &entry.inputs {
            if let Some(slot) = port.slot {
                if !self.slot_shapes.contains_key(&slot) {
                    return Err(ClientError::StateNotReady { entry: entry.name.clone(), slot: port.name.clone() });
                }
                continue;
            }
            let t = inputs.get(&port.name).ok_or_else(|| ClientError::MissingInput {
                entry: entry.name.clone(),
                name: port.name.clone(),
                expected: expected.clone(),
            })?;
            if let Some(info) = entry.tensors.get(&port.tensor) {
                let got = dtype_of(t.kind());
                if got != Some(info.ty.dtype) {
                    return Err(ClientError::InputType {
                        entry: entry.name.clone(),
                        name: port.name.clone(),
                        expected: info.ty.to_string(),
                        got: format!("{:?} {:?}", t.kind(), t.size()),
                    });
                }
            }
            by_tensor.insert(port.tensor, t);
        }
        Ok(by_tensor)
    }

    /// Bind the entry's symbols from the actual input shapes and the state slots' shapes.
    fn bind(
        &self,
        entry: &EntryPlan,
        by_tensor: &HashMap<genie_ir::ValueId, &Tensor>,
    ) -> Result<Bindings, ClientError> {
        let slot_of: HashMap<genie_ir::ValueId, u32> =
            entry.inputs.iter().filter_map(|i| i.slot.map(|s| (i.tensor, s))).collect();
        let shape_of = |v: genie_ir::ValueId| -> Option<Vec<i64>> {
            if let Some(t) = by_tensor.get(&v) {
                return Some(t.size());
            }
            slot_of.get(&v).and_then(|s| self.slot_shapes.get(s)).cloned()
        };
        exec::bind_symbols(entry, &shape_of).map_err(|source| ClientError::Bind { entry: entry.name.clone(), source })
    }

    /// Free the session's state on every worker.
    pub async fn close(self) -> Result<(), ClientError> {
        let cluster = &self.replica.cluster;
        let timeout = cluster.inner.options.request_timeout;
        for d in &self.plan.devices {
            match cluster.request(&d.name, Request::CloseSession { session: self.id }, timeout, true).await {
                Ok(_) => {}
                // A retried close may find the session already gone.
                Err(ClientError::Remote { error, .. }) if error.kind == ErrorKind::UnknownSession => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
