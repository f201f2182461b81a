//! A worker: serves many clients over QUIC, keeps weights and session state resident, runs its
//! part of each call with the executor, and sends activations at a cut straight to its peers.
//!
//! Everything a client owns (programs, sessions, runs) is keyed by its `ClientId`, so one client
//! cannot name another's. Weights are shared by content hash: an identical weight from another
//! client's model is resident once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use genie_codegen::{ProgramPlan, TensorKind, CLIENT};
use genie_ir::{TensorType, WeightHash};
use quinn::{Connection, RecvStream, SendStream};
use tch::{Device, Tensor};
use tokio::sync::{mpsc, Notify};

use crate::exec::{self, Bindings, ExecError, Mailbox, Resident};
use crate::streams::{self, ReadFrame};
use crate::transport::{self, Identity, TransportOptions, Trust};
use crate::wire::{
    ClientId, ErrorKind, Frame, OpInput, PeerInfo, Purpose, RemoteError, Reply, Request, Role, RunStats, WireError,
    WorkerStats, PROTOCOL_VERSION,
};

/// How a worker is set up.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Where to listen (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// The libtorch device ops run on.
    pub device: Device,
    /// The token clients must present. Required: a worker never runs unauthenticated.
    pub token: String,
    pub transport: TransportOptions,
    /// The largest tensor accepted off the wire.
    pub max_tensor_bytes: u64,
    /// Sessions unused this long are freed.
    pub session_idle_timeout: Duration,
    /// How long a client has to send the Hello after connecting.
    pub hello_timeout: Duration,
    /// How long WeightsUploaded waits for weight streams still in flight.
    pub upload_timeout: Duration,
    /// Weights no loaded program needs stay cached up to this many bytes (least recently used
    /// dropped first), so a client that comes back does not upload them again.
    pub weight_cache_bytes: u64,
    /// The device memory this worker may fill with weights, sessions' state and activations.
    /// A load or a session that would not fit is refused with [`ErrorKind::OutOfMemory`]
    /// instead of running the device (or the process) out of memory. `None`: no limit.
    pub memory_bytes: Option<u64>,
}

impl WorkerConfig {
    /// Defaults for a worker on `listen` with `token`.
    pub fn new(listen: SocketAddr, device: Device, token: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            listen,
            device,
            token: token.into(),
            transport: TransportOptions::default(),
            max_tensor_bytes: 16 << 30,
            session_idle_timeout: Duration::from_secs(600),
            hello_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(300),
            weight_cache_bytes: 4 << 30,
            memory_bytes: None,
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("starting the worker's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the token must not be empty")]
    EmptyToken,
}

/// A running worker (in this process).
pub struct WorkerHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The certificate fingerprint clients pin.
    pub fingerprint: String,
    shutdown: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    endpoint: quinn::Endpoint,
}

impl WorkerHandle {
    /// Stop accepting, close every connection and wait for the worker's thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.endpoint.close(0u32.into(), b"worker shutting down");
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start a worker on its own thread and tokio runtime; returns once it listens.
pub fn spawn(config: WorkerConfig, identity: Identity) -> Result<WorkerHandle, WorkerError> {
    if config.token.is_empty() {
        return Err(WorkerError::EmptyToken);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("genie-worker")
        .enable_all()
        .build()
        .map_err(WorkerError::Runtime)?;
    let endpoint = {
        let _guard = runtime.enter();
        transport::server_endpoint(config.listen, &identity, &config.transport)?
    };
    let addr = endpoint.local_addr().map_err(WorkerError::Runtime)?;
    let fingerprint = identity.fingerprint().to_string();
    let shutdown = Arc::new(Notify::new());
    let worker = Arc::new(Worker::new(config, endpoint.clone(), identity));
    let stop = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name(format!("genie-worker-{addr}"))
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = worker.serve() => {}
                    _ = stop.notified() => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(WorkerError::Runtime)?;
    Ok(WorkerHandle { addr, fingerprint, shutdown, thread: Some(thread), endpoint })
}

/// Serve on the current tokio runtime until the endpoint closes (used by `genie worker`).
pub async fn serve(config: WorkerConfig, identity: Identity) -> Result<(), WorkerError> {
    if config.token.is_empty() {
        return Err(WorkerError::EmptyToken);
    }
    let endpoint = transport::server_endpoint(config.listen, &identity, &config.transport)?;
    let worker = Arc::new(Worker::new(config, endpoint, identity));
    worker.serve().await;
    Ok(())
}

struct LoadedProgram {
    plan: Arc<ProgramPlan>,
    device: String,
    peers: HashMap<String, PeerInfo>,
    /// Weights this device needs, with their types.
    needs: Vec<(WeightHash, TensorType)>,
    /// One session's state on this device at the plan's memory bindings (its KV cache at the
    /// planned maximum sequence length): what opening a session reserves.
    session_bytes: u64,
    /// The largest activation peak of the program's entries on this device.
    activation_bytes: u64,
    ready: bool,
}

struct Session {
    program: u64,
    /// What the session reserved when it opened (its program's `session_bytes`).
    reserved_bytes: u64,
    slots: BTreeMap<u32, Tensor>,
    last_used: Instant,
    busy: bool,
}

/// Where a received tensor waits for the step that needs it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum InboxKey {
    Run { client: ClientId, run: u64, transfer: u32 },
    Op { client: ClientId, call: u64, index: u32 },
}

impl InboxKey {
    fn batch(&self) -> (ClientId, u64, bool) {
        match *self {
            InboxKey::Run { client, run, .. } => (client, run, true),
            InboxKey::Op { client, call, .. } => (client, call, false),
        }
    }
}

struct Delivered {
    tensor: Tensor,
    from: String,
    at: Instant,
}

/// Received tensors by key; executor threads block on it.
#[derive(Default)]
struct Inbox {
    map: Mutex<HashMap<InboxKey, Delivered>>,
    arrived: Condvar,
}

impl Inbox {
    fn deliver(&self, key: InboxKey, tensor: Tensor, from: String) {
        let mut map = lock(&self.map);
        map.insert(key, Delivered { tensor, from, at: Instant::now() });
        self.arrived.notify_all();
    }

    fn take(&self, key: InboxKey, deadline: Instant) -> Option<Delivered> {
        let mut map = lock(&self.map);
        loop {
            if let Some(d) = map.remove(&key) {
                return Some(d);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            map = match self.arrived.wait_timeout(map, deadline - now) {
                Ok((m, _)) => m,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Drop what is left of a run or op call.
    fn clear(&self, client: ClientId, id: u64, is_run: bool) {
        lock(&self.map).retain(|k, _| k.batch() != (client, id, is_run));
    }

    /// Drop deliveries nobody claimed within `age`.
    fn sweep(&self, age: Duration) {
        let now = Instant::now();
        lock(&self.map).retain(|_, d| now.duration_since(d.at) < age);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Worker {
    config: WorkerConfig,
    endpoint: quinn::Endpoint,
    /// To tune each accepted connection by its peer's path (loopback or network).
    identity: Identity,
    /// This worker's own id when it connects to peers.
    peer_id: ClientId,
    device_label: String,
    resident: Mutex<Resident>,
    weight_arrived: Notify,
    programs: Mutex<HashMap<(ClientId, u64), LoadedProgram>>,
    sessions: Mutex<HashMap<(ClientId, u64), Session>>,
    inbox: Inbox,
    /// When each resident weight was last needed (by a load or a run), for the cache.
    weight_used: Mutex<HashMap<WeightHash, Instant>>,
    /// Per client: open connections, and when the last one closed.
    clients: Mutex<HashMap<ClientId, (u32, Instant)>>,
    peers: tokio::sync::Mutex<HashMap<String, PeerLink>>,
    counters: Counters,
    /// Held from an admission check to the insertion it admits, so that two loads or
    /// sessions cannot both take the last free memory.
    admission: Mutex<()>,
}

#[derive(Default)]
struct Counters {
    runs: AtomicU64,
    failed_runs: AtomicU64,
    ops: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    refused_for_memory: AtomicU64,
    peak_tensor_bytes: AtomicU64,
}

/// What a worker's memory holds or has promised (the basis of admission).
#[derive(Debug, Default)]
struct MemoryUse {
    /// The weights loaded programs need, resident or still to arrive.
    pinned: std::collections::HashSet<WeightHash>,
    /// Their bytes, each weight counted once.
    weights: u64,
    /// Per open session, the larger of what it reserved and what its state holds.
    sessions: u64,
    /// The largest activation peak of a loaded program (runs are planned for one at a time).
    activations: u64,
}

impl MemoryUse {
    fn total(&self) -> u64 {
        self.weights.saturating_add(self.sessions).saturating_add(self.activations)
    }
}

/// A connection to another worker, with the control stream kept open.
struct PeerLink {
    connection: Connection,
    _control: (SendStream, RecvStream),
}

/// Per-connection facts.
struct Conn {
    connection: Connection,
    client: ClientId,
    role: Role,
    remote: SocketAddr,
}

impl Worker {
    fn new(config: WorkerConfig, endpoint: quinn::Endpoint, identity: Identity) -> Worker {
        let device_label = device_label(config.device);
        Worker {
            resident: Mutex::new(Resident::new(config.device)),
            config,
            endpoint,
            identity,
            peer_id: rand::random(),
            device_label,
            weight_arrived: Notify::new(),
            programs: Mutex::default(),
            sessions: Mutex::default(),
            inbox: Inbox::default(),
            weight_used: Mutex::default(),
            clients: Mutex::default(),
            peers: tokio::sync::Mutex::default(),
            counters: Counters::default(),
            admission: Mutex::default(),
        }
    }

    async fn serve(self: Arc<Self>) {
        let sweeper = {
            let me = self.clone();
            tokio::spawn(async move { me.sweep_forever().await })
        };
        while let Some(incoming) = self.endpoint.accept().await {
            let me = self.clone();
            let connecting = match transport::accept(incoming, &self.identity, &self.config.transport) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!("refused an incoming connection: {e}");
                    continue;
                }
            };
            tokio::spawn(async move {
                match connecting.await {
                    Ok(connection) => me.handle_connection(connection).await,
                    Err(e) => tracing::debug!("handshake failed: {e}"),
                }
            });
        }
        sweeper.abort();
    }

    async fn sweep_forever(&self) {
        let idle = self.config.session_idle_timeout;
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(period).await;
            let now = Instant::now();
            lock(&self.sessions).retain(|(client, id), s| {
                let keep = s.busy || now.duration_since(s.last_used) < idle;
                if !keep {
                    tracing::info!("session {id} of client {client:016x} idle for {idle:?}: freed");
                }
                keep
            });
            self.inbox.sweep(Duration::from_secs(300).max(idle));
            self.forget_departed_clients(idle);
            self.evict_weights();
        }
    }

    /// Programs of clients gone (no connection) longer than the idle timeout, with no session
    /// left, are unloaded.
    fn forget_departed_clients(&self, idle: Duration) {
        let now = Instant::now();
        let gone: Vec<ClientId> = lock(&self.clients)
            .iter()
            .filter(|(_, (open, since))| *open == 0 && now.duration_since(*since) >= idle)
            .map(|(c, _)| *c)
            .collect();
        if gone.is_empty() {
            return;
        }
        let with_sessions: std::collections::HashSet<ClientId> = lock(&self.sessions).keys().map(|(c, _)| *c).collect();
        let mut clients = lock(&self.clients);
        let mut programs = lock(&self.programs);
        for c in gone.into_iter().filter(|c| !with_sessions.contains(c)) {
            programs.retain(|(owner, _), _| *owner != c);
            clients.remove(&c);
        }
    }

    /// Keep the weights loaded programs need; of the others, keep the most recently used up to
    /// `weight_cache_bytes`, and only as much as the memory budget leaves beside what loaded
    /// programs and sessions have committed.
    fn evict_weights(&self) {
        let using = self.memory_use(None);
        let allowance = match self.config.memory_bytes {
            Some(memory) => memory.saturating_sub(using.total()).min(self.config.weight_cache_bytes),
            None => self.config.weight_cache_bytes,
        };
        self.evict_spare_weights(&using.pinned, allowance);
    }

    /// Drop resident weights outside `pinned`, least recently used first, until the rest take
    /// at most `allowance` bytes.
    fn evict_spare_weights(&self, pinned: &std::collections::HashSet<WeightHash>, allowance: u64) {
        let mut resident = lock(&self.resident);
        let mut used = lock(&self.weight_used);
        let mut spare: Vec<(Instant, WeightHash, u64)> = resident
            .hashes()
            .into_iter()
            .filter(|h| !pinned.contains(h))
            .map(|h| {
                let bytes = resident.get(&h).map_or(0, tensor_bytes);
                (used.get(&h).copied().unwrap_or_else(Instant::now), h, bytes)
            })
            .collect();
        let mut cached: u64 = spare.iter().map(|s| s.2).sum();
        spare.sort_by_key(|s| s.0);
        for (_, h, bytes) in spare {
            if cached <= allowance {
                break;
            }
            resident.remove(&h);
            used.remove(&h);
            cached -= bytes;
            tracing::info!("evicted weight {} ({bytes} B) from the cache", h.short());
        }
    }

    /// What loaded programs and open sessions hold or have promised, leaving out the program
    /// `except` (one being loaded again).
    fn memory_use(&self, except: Option<(ClientId, u64)>) -> MemoryUse {
        let mut using = MemoryUse::default();
        {
            let programs = lock(&self.programs);
            for (_, p) in programs.iter().filter(|(key, _)| Some(**key) != except) {
                for (h, ty) in &p.needs {
                    if using.pinned.insert(h.clone()) {
                        using.weights = using.weights.saturating_add(type_bytes(ty));
                    }
                }
                using.activations = using.activations.max(p.activation_bytes);
            }
        }
        let sessions = lock(&self.sessions);
        for s in sessions.values() {
            let holds: u64 = s.slots.values().map(tensor_bytes).sum();
            using.sessions = using.sessions.saturating_add(holds.max(s.reserved_bytes));
        }
        using
    }

    /// Before a weight's bytes are read: a weight no loaded program needs (a per-op upload)
    /// must fit beside what is committed and the other cached weights, least recently used
    /// of which are dropped to make room. Weights a loaded program needs were admitted with it.
    fn make_room_for_weight(&self, hash: &WeightHash, bytes: u64) -> Result<(), String> {
        let Some(memory) = self.config.memory_bytes else {
            return Ok(());
        };
        let using = self.memory_use(None);
        if using.pinned.contains(hash) {
            return Ok(());
        }
        let free = memory.saturating_sub(using.total());
        if bytes > free {
            self.counters.refused_for_memory.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "no room for weight {} ({}): this worker has {} of memory and {} is committed",
                hash.short(),
                human(bytes),
                human(memory),
                human(using.total())
            ));
        }
        self.evict_spare_weights(&using.pinned, free - bytes);
        Ok(())
    }

    /// Refuse `extra` bytes beside `using` when they exceed the worker's memory. `what` says
    /// what asked for them.
    fn admit(&self, using: &MemoryUse, extra: u64, what: impl FnOnce() -> String) -> Result<(), RemoteError> {
        let Some(memory) = self.config.memory_bytes else {
            return Ok(());
        };
        if using.total().saturating_add(extra) <= memory {
            return Ok(());
        }
        self.counters.refused_for_memory.fetch_add(1, Ordering::Relaxed);
        Err(RemoteError::new(
            ErrorKind::OutOfMemory,
            format!(
                "{}; this worker ({}) has {} of memory, of which {} is committed: {} to loaded programs' \
                 weights, {} to sessions' state, {} to the largest activation peak",
                what(),
                self.device_label,
                human(memory),
                human(using.total()),
                human(using.weights),
                human(using.sessions),
                human(using.activations)
            ),
        ))
    }

    async fn handle_connection(self: Arc<Self>, connection: Connection) {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let remote = connection.remote_address();
        let hello = tokio::time::timeout(self.config.hello_timeout, async {
            let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
            let first = streams::read_frame::<Request>(&mut recv).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((send_first(&mut send, first, &self).await, send, recv))
        })
        .await;
        let (verdict, mut send, recv) = match hello {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::debug!("{remote}: no hello: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("{remote}: no hello within {:?}", self.config.hello_timeout);
                connection.close(1u32.into(), b"no hello");
                return;
            }
        };
        let (client, role) = match verdict {
            Ok(v) => v,
            Err(()) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                let _ = send.finish();
                // Let the refusal reach the client before closing.
                let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                connection.close(2u32.into(), b"refused");
                return;
            }
        };
        if role == Role::Client {
            lock(&self.clients).entry(client).or_insert((0, Instant::now())).0 += 1;
        }
        let conn = Arc::new(Conn { connection: connection.clone(), client, role, remote });
        let uni = {
            let me = self.clone();
            let conn = conn.clone();
            tokio::spawn(async move { me.accept_tensor_streams(conn).await })
        };
        self.control_loop(conn, send, recv).await;
        uni.abort();
        if role == Role::Client {
            if let Some(entry) = lock(&self.clients).get_mut(&client) {
                entry.0 = entry.0.saturating_sub(1);
                entry.1 = Instant::now();
            }
        }
    }

    /// Read requests until the stream ends; each is answered by its own task through one writer.
    async fn control_loop(self: &Arc<Self>, conn: Arc<Conn>, send: SendStream, mut recv: RecvStream) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Frame<Reply>>();
        let writer = tokio::spawn(async move {
            let mut send = send;
            while let Some(frame) = rx.recv().await {
                if streams::write_frame(&mut send, &frame).await.is_err() {
                    break;
                }
            }
            let _ = send.finish();
            // Closing the connection right after would drop replies still in flight (such as the
            // refusal of an oversized frame): wait until the client has them.
            let _ = tokio::time::timeout(Duration::from_secs(1), send.stopped()).await;
        });
        loop {
            match streams::read_frame::<Request>(&mut recv).await {
                Ok(ReadFrame::Frame(frame)) => {
                    if matches!(frame.body, Request::Close) {
                        let _ = tx.send(Frame { id: frame.id, body: Reply::Ok });
                        break;
                    }
                    let me = self.clone();
                    let conn = conn.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let body = me.handle_request(&conn, frame.body).await.unwrap_or_else(Reply::Error);
                        let _ = tx.send(Frame { id: frame.id, body });
                    });
                }
                Ok(ReadFrame::End) => break,
                Err(WireError::Malformed { what, reason }) => {
                    // The frame was read whole, so framing is intact: refuse it and go on.
                    tracing::warn!("{}: malformed {what}: {reason}", conn.remote);
                    let err = RemoteError::new(ErrorKind::Malformed, format!("malformed {what}: {reason}"));
                    let _ = tx.send(Frame { id: 0, body: Reply::Error(err) });
                }
                Err(e @ WireError::FrameTooLarge { .. }) => {
                    tracing::warn!("{}: {e}; closing the connection", conn.remote);
                    let _ = tx.send(Frame {
                        id: 0,
                        body: Reply::Error(RemoteError::new(ErrorKind::FrameTooLarge, e.to_string())),
                    });
                    drop(tx);
                    let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
                    conn.connection.close(3u32.into(), b"frame too large");
                    return;
                }
                Err(e) => {
                    tracing::debug!("{}: control stream: {e}", conn.remote);
                    break;
                }
            }
        }
        drop(tx);
        let _ = tokio::time::timeout(Duration::from_secs(1), writer).await;
    }

    async fn accept_tensor_streams(self: Arc<Self>, conn: Arc<Conn>) {
        while let Ok(mut recv) = conn.connection.accept_uni().await {
            let me = self.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                if let Err(e) = me.receive_tensor(&conn, &mut recv).await {
                    tracing::warn!("{}: tensor stream refused: {e}", conn.remote);
                    let _ = recv.stop(4u32.into());
                }
            });
        }
    }

    async fn receive_tensor(&self, conn: &Conn, recv: &mut RecvStream) -> Result<(), WireError> {
        let header = streams::read_tensor_header(recv, self.config.max_tensor_bytes).await?;
        let refuse = |why: &str| WireError::Malformed { what: "tensor stream", reason: why.to_string() };
        match (&header.purpose, conn.role) {
            (Purpose::Weight { .. } | Purpose::Input { .. } | Purpose::OpInput { .. }, Role::Client) => {}
            (Purpose::Activation { .. }, Role::Peer) => {}
            (p, role) => return Err(refuse(&format!("{p:?} is not accepted from a {role:?} connection"))),
        }
        if let Purpose::Weight { hash } = &header.purpose {
            self.make_room_for_weight(hash, header.byte_len).map_err(|e| refuse(&e))?;
        }
        let tensor = streams::read_tensor_payload(recv, &header).await?;
        match header.purpose {
            Purpose::Weight { hash } => {
                let ty = TensorType::new(header.dtype, &header.shape);
                let bytes = exec::tensor_to_bytes(&tensor).map_err(|e| refuse(&e.to_string()))?;
                let got = WeightHash::of(&ty, &bytes);
                if got != hash {
                    return Err(refuse(&format!(
                        "weight {} arrived with bytes hashing to {}",
                        hash.short(),
                        got.short()
                    )));
                }
                let on_device = self.to_device(tensor).map_err(|e| refuse(&e))?;
                lock(&self.weight_used).insert(hash.clone(), Instant::now());
                lock(&self.resident).insert(hash, on_device);
                self.note_tensor_bytes();
                self.weight_arrived.notify_waiters();
            }
            Purpose::Input { run, transfer } => {
                let key = InboxKey::Run { client: conn.client, run, transfer };
                self.inbox.deliver(key, tensor, CLIENT.to_string());
            }
            Purpose::OpInput { call, index } => {
                self.inbox.deliver(InboxKey::Op { client: conn.client, call, index }, tensor, CLIENT.to_string());
            }
            Purpose::Activation { client, run, transfer } => {
                self.inbox.deliver(InboxKey::Run { client, run, transfer }, tensor, conn.remote.to_string());
            }
            Purpose::Output { .. } | Purpose::OpOutput { .. } => return Err(refuse("outputs flow to clients only")),
        }
        Ok(())
    }

    fn to_device(&self, tensor: Tensor) -> Result<Tensor, String> {
        if self.config.device == Device::Cpu {
            return Ok(tensor);
        }
        tensor.f_to_device(self.config.device).map_err(|e| e.to_string())
    }

    fn note_tensor_bytes(&self) {
        let weights = lock(&self.resident).bytes();
        let state: u64 = lock(&self.sessions).values().flat_map(|s| s.slots.values()).map(tensor_bytes).sum();
        self.counters.peak_tensor_bytes.fetch_max(weights + state, Ordering::Relaxed);
    }

    async fn handle_request(self: &Arc<Self>, conn: &Arc<Conn>, request: Request) -> Result<Reply, RemoteError> {
        if conn.role == Role::Peer && !matches!(request, Request::Stats) {
            return Err(RemoteError::new(ErrorKind::BadRequest, "peer connections only deliver activations"));
        }
        let client = conn.client;
        match request {
            Request::Hello { .. } => Err(RemoteError::new(ErrorKind::BadRequest, "Hello sent twice")),
            Request::LoadProgram { program, device, plan, peers } => {
                self.load_program(client, program, device, *plan, peers)
            }
            Request::WeightsUploaded { program } => self.weights_uploaded(client, program).await,
            Request::OpenSession { program, session } => {
                if !lock(&self.programs).get(&(client, program)).is_some_and(|p| p.ready) {
                    return Err(unknown_program(program));
                }
                let _admitting = lock(&self.admission);
                let sessions = lock(&self.sessions);
                if let Some(s) = sessions.get(&(client, session)) {
                    // Opening again is idempotent (a retried request), but not for another program.
                    return if s.program == program {
                        Ok(Reply::Ok)
                    } else {
                        Err(RemoteError::new(ErrorKind::BadRequest, format!("session {session} already exists")))
                    };
                }
                drop(sessions);
                let reserved_bytes = lock(&self.programs).get(&(client, program)).map_or(0, |p| p.session_bytes);
                let using = self.memory_use(None);
                self.admit(&using, reserved_bytes, || {
                    format!("a new session of program {program} reserves {} for its state", human(reserved_bytes))
                })?;
                let s =
                    Session { program, reserved_bytes, slots: BTreeMap::new(), last_used: Instant::now(), busy: false };
                lock(&self.sessions).entry((client, session)).or_insert(s);
                self.evict_weights();
                Ok(Reply::Ok)
            }
            Request::Run { run, program, session, entry, bindings, timeout_ms } => {
                let timeout = Duration::from_millis(timeout_ms.clamp(1, 24 * 3600 * 1000));
                let result = self.run(conn, run, program, session, &entry, bindings, timeout).await;
                self.inbox.clear(client, run, true);
                self.counters.runs.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    self.counters.failed_runs.fetch_add(1, Ordering::Relaxed);
                }
                result.map(|stats| Reply::RunDone { stats })
            }
            Request::CloseSession { session } => match lock(&self.sessions).remove(&(client, session)) {
                Some(_) => Ok(Reply::Ok),
                None => Err(unknown_session(session)),
            },
            Request::UnloadProgram { program } => {
                lock(&self.sessions).retain(|(c, _), s| !(*c == client && s.program == program));
                match lock(&self.programs).remove(&(client, program)) {
                    Some(_) => Ok(Reply::Ok),
                    None => Err(unknown_program(program)),
                }
            }
            Request::ExecOp { call, op, args, inputs, outputs } => {
                let result = self.exec_op(conn, call, op, args, inputs, outputs).await;
                self.inbox.clear(client, call, false);
                self.counters.ops.fetch_add(1, Ordering::Relaxed);
                result
            }
            Request::Stats => Ok(Reply::Stats(self.stats())),
            Request::Close => Ok(Reply::Ok),
        }
    }

    fn stats(&self) -> WorkerStats {
        let (resident_weights, resident_weight_bytes) = {
            let r = lock(&self.resident);
            (r.len() as u64, r.bytes())
        };
        let committed_bytes = self.memory_use(None).total();
        let programs = lock(&self.programs).len() as u64;
        let sessions = lock(&self.sessions);
        let state_bytes = sessions.values().flat_map(|s| s.slots.values()).map(tensor_bytes).sum();
        WorkerStats {
            device: self.device_label.clone(),
            resident_weights,
            resident_weight_bytes,
            programs,
            sessions: sessions.len() as u64,
            state_bytes,
            runs: self.counters.runs.load(Ordering::Relaxed),
            failed_runs: self.counters.failed_runs.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
            connections: self.counters.connections.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            peak_tensor_bytes: self.counters.peak_tensor_bytes.load(Ordering::Relaxed),
            memory_bytes: self.config.memory_bytes,
            committed_bytes,
            refused_for_memory: self.counters.refused_for_memory.load(Ordering::Relaxed),
        }
    }

    fn load_program(
        &self,
        client: ClientId,
        program: u64,
        device: String,
        plan: ProgramPlan,
        peers: Vec<PeerInfo>,
    ) -> Result<Reply, RemoteError> {
        let info = plan
            .device(&device)
            .ok_or_else(|| RemoteError::new(ErrorKind::BadRequest, format!("the plan has no device `{device}`")))?;
        // The weights this device needs, with their types from the entries' tensor tables.
        let mut types: HashMap<&WeightHash, &TensorType> = HashMap::new();
        for entry in &plan.entries {
            for t in entry.tensors.values() {
                if let TensorKind::Weight { hash } = &t.kind {
                    types.insert(hash, &t.ty);
                }
            }
        }
        let mut needs = Vec::new();
        for w in &info.weights {
            let ty = types.get(&w.hash).ok_or_else(|| {
                RemoteError::new(ErrorKind::BadRequest, format!("resident weight {} is used by no entry", w.name))
            })?;
            if ty.static_shape().is_none() {
                return Err(RemoteError::new(ErrorKind::BadRequest, format!("weight {} has a symbolic shape", w.name)));
            }
            needs.push((w.hash.clone(), (*ty).clone()));
        }
        // Admission: the weights no other loaded program already holds, and this program's
        // activation peak if it is the largest, must fit beside what is committed.
        let _admitting = lock(&self.admission);
        let using = self.memory_use(Some((client, program)));
        let mut new_hashes = std::collections::HashSet::new();
        let new_weight_bytes: u64 = needs
            .iter()
            .filter(|(h, _)| !using.pinned.contains(h) && new_hashes.insert(h.clone()))
            .map(|(_, ty)| type_bytes(ty))
            .sum();
        let extra_activations = info.activation_bytes.saturating_sub(using.activations);
        self.admit(&using, new_weight_bytes.saturating_add(extra_activations), || {
            format!(
                "program {program} needs {} of weights not already resident for other programs and an \
                 activation peak of {} on `{device}`",
                human(new_weight_bytes),
                human(info.activation_bytes)
            )
        })?;
        let (session_bytes, activation_bytes) = (info.kv_bytes, info.activation_bytes);
        let missing: Vec<WeightHash> = {
            let resident = lock(&self.resident);
            needs.iter().filter(|(h, _)| !resident.contains(h)).map(|(h, _)| h.clone()).collect()
        };
        {
            let now = Instant::now();
            let mut used = lock(&self.weight_used);
            for (h, _) in &needs {
                used.insert(h.clone(), now);
            }
        }
        let peers = peers.into_iter().map(|p| (p.device.clone(), p)).collect();
        let loaded =
            LoadedProgram { plan: Arc::new(plan), device, peers, needs, session_bytes, activation_bytes, ready: false };
        lock(&self.programs).insert((client, program), loaded);
        // Cached weights of programs gone make room for this one's uploads.
        self.evict_weights();
        Ok(Reply::MissingWeights { hashes: missing })
    }

    async fn weights_uploaded(&self, client: ClientId, program: u64) -> Result<Reply, RemoteError> {
        let deadline = Instant::now() + self.config.upload_timeout;
        loop {
            let arrived = self.weight_arrived.notified();
            let missing: Vec<String> = {
                let programs = lock(&self.programs);
                let p = programs.get(&(client, program)).ok_or_else(|| unknown_program(program))?;
                let resident = lock(&self.resident);
                p.needs.iter().filter(|(h, _)| !resident.contains(h)).map(|(h, _)| h.short().to_string()).collect()
            };
            if missing.is_empty() {
                if let Some(p) = lock(&self.programs).get_mut(&(client, program)) {
                    p.ready = true;
                }
                return Ok(Reply::Ok);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RemoteError::new(
                    ErrorKind::MissingWeights,
                    format!("{} weight(s) never arrived: {}", missing.len(), missing.join(", ")),
                ));
            }
            // Uploads may still be in flight on their own streams; wait for the next one.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(200)), arrived).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        run: u64,
        program: u64,
        session: u64,
        entry_name: &str,
        bindings: Bindings,
        timeout: Duration,
    ) -> Result<RunStats, RemoteError> {
        let started = Instant::now();
        let client = conn.client;
        let (plan, device, peers) = {
            let programs = lock(&self.programs);
            let p = programs.get(&(client, program)).filter(|p| p.ready).ok_or_else(|| unknown_program(program))?;
            (p.plan.clone(), p.device.clone(), p.peers.clone())
        };
        let entry_index = plan.entries.iter().position(|e| e.name == entry_name).ok_or_else(|| {
            RemoteError::new(ErrorKind::BadRequest, format!("the program has no entry `{entry_name}`"))
        })?;
        let entry = &plan.entries[entry_index];
        if entry.plan(&device).is_none() {
            return Err(RemoteError::new(ErrorKind::BadRequest, format!("`{entry_name}` has no steps on {device}")));
        }
        check_bindings(entry, &bindings)?;
        // Take the session's state for the call; it is put back (updated on success) below.
        let state = {
            let mut sessions = lock(&self.sessions);
            let s = sessions.get_mut(&(client, session)).ok_or_else(|| unknown_session(session))?;
            if s.program != program {
                return Err(RemoteError::new(
                    ErrorKind::BadRequest,
                    format!("session {session} is of another program"),
                ));
            }
            if s.busy {
                return Err(RemoteError::new(ErrorKind::SessionBusy, format!("session {session} is running a call")));
            }
            s.busy = true;
            s.last_used = Instant::now();
            s.slots.iter().map(|(k, v)| (*k, v.shallow_clone())).collect::<BTreeMap<u32, Tensor>>()
        };
        let resident = self.resident_for(&plan, &device);
        let deadline = started + timeout;
        let me = self.clone();
        let conn2 = conn.clone();
        let handle = tokio::runtime::Handle::current();
        let plan2 = plan.clone();
        let device2 = device.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let entry = &plan2.entries[entry_index];
            let Some(dplan) = entry.plan(&device2) else {
                return (
                    Err(ExecError::Mailbox(format!("no steps on {device2}"))),
                    Vec::new(),
                    Default::default(),
                    0.0,
                );
            };
            let mut mailbox = WorkerMailbox {
                worker: me,
                conn: conn2,
                handle,
                run,
                entry: plan2.clone(),
                entry_index,
                peers,
                deadline,
                pending: Vec::new(),
                received: BTreeMap::new(),
            };
            let t = Instant::now();
            let result = exec::run_device_plan(entry, dplan, &bindings, &resident, &state, &mut mailbox);
            let exec_s = t.elapsed().as_secs_f64();
            (result, mailbox.pending, mailbox.received, exec_s)
        })
        .await;
        let finish_session = |written: Option<BTreeMap<u32, Tensor>>| {
            if let Some(s) = lock(&self.sessions).get_mut(&(client, session)) {
                s.busy = false;
                s.last_used = Instant::now();
                if let Some(w) = written {
                    s.slots.extend(w);
                }
            }
        };
        let (result, pending, bytes_received, exec_s) = match outcome {
            Ok(v) => v,
            Err(e) => {
                finish_session(None);
                return Err(RemoteError::new(ErrorKind::Exec, format!("executor task failed: {e}")));
            }
        };
        // Every send must be flushed before the call counts as done.
        let mut bytes_sent: BTreeMap<String, u64> = BTreeMap::new();
        let mut send_error = None;
        for (to, task) in pending {
            match task.await {
                Ok(Ok(n)) => *bytes_sent.entry(to).or_default() += n,
                Ok(Err(e)) => send_error = Some(e),
                Err(e) => send_error = Some(RemoteError::new(ErrorKind::Exec, format!("send task failed: {e}"))),
            }
        }
        match result {
            Ok(written) => {
                if let Some(e) = send_error {
                    finish_session(None);
                    return Err(e);
                }
                finish_session(Some(written));
                self.note_tensor_bytes();
                Ok(RunStats { wall_s: started.elapsed().as_secs_f64(), exec_s, bytes_sent, bytes_received })
            }
            Err(e) => {
                finish_session(None);
                let kind = match &e {
                    ExecError::Mailbox(m) if m.contains("did not arrive") => ErrorKind::Timeout,
                    ExecError::Mailbox(m) if m.contains("peer") => ErrorKind::PeerUnreachable,
                    _ => ErrorKind::Exec,
                };
                Err(RemoteError::new(kind, format!("{entry_name} on {device}: {e}")))
            }
        }
    }

    /// The weights a device plan needs, shared (not copied) from the resident set.
    fn resident_for(&self, plan: &ProgramPlan, device: &str) -> Resident {
        let all = lock(&self.resident);
        let mut mine = Resident::new(self.config.device);
        if let Some(info) = plan.device(device) {
            for w in &info.weights {
                if let Some(t) = all.get(&w.hash) {
                    mine.insert(w.hash.clone(), t.shallow_clone());
                }
            }
        }
        mine
    }

    async fn exec_op(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        call: u64,
        op: String,
        args: Vec<genie_ir::Arg>,
        inputs: Vec<OpInput>,
        outputs: u32,
    ) -> Result<Reply, RemoteError> {
        let client = conn.client;
        let deadline = Instant::now() + Duration::from_secs(60);
        // A weight uploaded just before this call may still be on its stream: wait for it.
        let upload_deadline = Instant::now() + self.config.upload_timeout.min(Duration::from_secs(30));
        loop {
            let arrived = self.weight_arrived.notified();
            let missing = {
                let resident = lock(&self.resident);
                inputs.iter().any(|i| matches!(i, OpInput::Weight(h) if !resident.contains(h)))
            };
            if !missing || Instant::now() >= upload_deadline {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
        }
        let weights: Vec<Option<Tensor>> = {
            let resident = lock(&self.resident);
            inputs
                .iter()
                .map(|i| match i {
                    OpInput::Weight(h) => resident.get(h).map(|t| t.shallow_clone()),
                    OpInput::Sent => None,
                })
                .collect()
        };
        for (i, (input, w)) in inputs.iter().zip(&weights).enumerate() {
            if let (OpInput::Weight(h), None) = (input, w) {
                return Err(RemoteError::new(
                    ErrorKind::MissingWeights,
                    format!("input {i}: weight {} not resident", h.short()),
                ));
            }
        }
        let me = self.clone();
        let device = self.config.device;
        let result = tokio::task::spawn_blocking(move || {
            let mut tensors: HashMap<genie_ir::ValueId, Tensor> = HashMap::new();
            for (i, (input, w)) in inputs.iter().zip(weights).enumerate() {
                let t = match (input, w) {
                    (_, Some(t)) => t,
                    _ => {
                        let key = InboxKey::Op { client, call, index: i as u32 };
                        let d = me.inbox.take(key, deadline).ok_or_else(|| {
                            RemoteError::new(ErrorKind::Timeout, format!("op input {i} did not arrive"))
                        })?;
                        me.to_device(d.tensor).map_err(|e| RemoteError::new(ErrorKind::Exec, e))?
                    }
                };
                tensors.insert(genie_ir::ValueId(i as u32), t);
            }
            let t = Instant::now();
            let lookup = |v: genie_ir::ValueId| tensors.get(&v).map(|t| t.shallow_clone());
            let out = exec::run_op(&op, &args, &lookup, &Bindings::new(), device)
                .map_err(|e| RemoteError::new(ErrorKind::Exec, format!("{op}: {e}")))?;
            Ok::<_, RemoteError>((out, t.elapsed().as_secs_f64()))
        })
        .await
        .map_err(|e| RemoteError::new(ErrorKind::Exec, format!("executor task failed: {e}")))??;
        let (out, exec_s) = result;
        if out.len() != outputs as usize {
            return Err(RemoteError::new(
                ErrorKind::Exec,
                format!("op gave {} outputs, {outputs} expected", out.len()),
            ));
        }
        // Lay the outputs out as bytes first: tensors cannot be held across an await.
        let mut payloads = Vec::with_capacity(out.len());
        for t in out {
            payloads.push(
                streams::tensor_payload(&t).map_err(|e| RemoteError::new(ErrorKind::Exec, format!("output: {e}")))?,
            );
        }
        for (index, (dtype, shape, bytes)) in payloads.into_iter().enumerate() {
            streams::send_payload(
                &conn.connection,
                Purpose::OpOutput { call, index: index as u32 },
                dtype,
                shape,
                bytes,
            )
            .await
            .map_err(|e| RemoteError::new(ErrorKind::Exec, format!("sending output {index}: {e}")))?;
        }
        Ok(Reply::OpDone { exec_s })
    }

    /// The connection to a peer device, opened (and authenticated) on first use.
    async fn peer(&self, info: &PeerInfo) -> Result<Connection, RemoteError> {
        let mut peers = self.peers.lock().await;
        if let Some(link) = peers.get(&info.address) {
            if link.connection.close_reason().is_none() {
                return Ok(link.connection.clone());
            }
        }
        let unreachable = |e: String| {
            RemoteError::new(ErrorKind::PeerUnreachable, format!("peer {} at {}: {e}", info.device, info.address))
        };
        let addr: SocketAddr = tokio::net::lookup_host(&info.address)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("address does not resolve".into()))?;
        let trust = Trust::Fingerprint(info.fingerprint.clone());
        let connection = transport::connect(&self.endpoint, addr, "genie-worker", &trust, &self.config.transport)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| unreachable(e.to_string()))?;
        let hello = Request::Hello {
            version: PROTOCOL_VERSION,
            token: self.config.token.clone(),
            client: self.peer_id,
            role: Role::Peer,
        };
        streams::write_frame(&mut send, &Frame { id: 0, body: hello }).await.map_err(|e| unreachable(e.to_string()))?;
        match streams::read_frame::<Reply>(&mut recv).await {
            Ok(ReadFrame::Frame(Frame { body: Reply::Welcome { .. }, .. })) => {}
            Ok(ReadFrame::Frame(Frame { body: Reply::Error(e), .. })) => return Err(unreachable(e.to_string())),
            Ok(_) => return Err(unreachable("no welcome".into())),
            Err(e) => return Err(unreachable(e.to_string())),
        }
        peers.insert(info.address.clone(), PeerLink { connection: connection.clone(), _control: (send, recv) });
        Ok(connection)
    }
}

/// Answer the first frame of a connection: Welcome if it is a valid Hello, else a refusal.
async fn send_first(send: &mut SendStream, first: ReadFrame<Request>, worker: &Worker) -> Result<(ClientId, Role), ()> {
    let (id, verdict) = match first {
        ReadFrame::Frame(Frame { id, body: Request::Hello { version, token, client, role } }) => {
            let verdict = if version != PROTOCOL_VERSION {
                Err(RemoteError::new(
                    ErrorKind::VersionMismatch,
                    format!("client speaks protocol {version}, worker {PROTOCOL_VERSION}"),
                ))
            } else if !constant_time_eq(token.as_bytes(), worker.config.token.as_bytes()) {
                Err(RemoteError::new(ErrorKind::Unauthorized, "wrong token"))
            } else {
                Ok((client, role))
            };
            (id, verdict)
        }
        ReadFrame::Frame(Frame { id, .. }) => {
            (id, Err(RemoteError::new(ErrorKind::Unauthorized, "the first request must be Hello with the token")))
        }
        ReadFrame::End => (0, Err(RemoteError::new(ErrorKind::Unauthorized, "no Hello"))),
    };
    let reply = match &verdict {
        Ok(_) => Reply::Welcome {
            version: PROTOCOL_VERSION,
            device: worker.device_label.clone(),
            worker: worker.endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        },
        Err(e) => Reply::Error(e.clone()),
    };
    let _ = streams::write_frame(send, &Frame { id, body: reply }).await;
    verdict.map_err(|e| tracing::warn!("refused a connection: {e}"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn check_bindings(entry: &genie_codegen::EntryPlan, bindings: &Bindings) -> Result<(), RemoteError> {
    for s in &entry.symbols {
        let v = *bindings
            .get(&s.name)
            .ok_or_else(|| RemoteError::new(ErrorKind::BadRequest, format!("symbol {} is not bound", s.name)))?;
        if v < s.min || s.max.is_some_and(|m| v > m) {
            let max = s.max.map_or("inf".to_string(), |m| m.to_string());
            return Err(RemoteError::new(
                ErrorKind::BadRequest,
                format!("{} = {v} is outside its range [{}, {max}]", s.name, s.min),
            ));
        }
    }
    Ok(())
}

fn unknown_program(program: u64) -> RemoteError {
    RemoteError::new(ErrorKind::UnknownProgram, format!("no program {program} for this client"))
}

fn unknown_session(session: u64) -> RemoteError {
    RemoteError::new(ErrorKind::UnknownSession, format!("no session {session} for this client"))
}

fn tensor_bytes(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
}

/// Bytes of a weight's (static) type.
fn type_bytes(ty: &TensorType) -> u64 {
    ty.bytes().as_const().map_or(0, |b| b.max(0) as u64)
}

fn human(bytes: u64) -> String {
    genie_ir::render::human_bytes(bytes)
}

/// `cpu` or `cuda:N`.
pub fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
        _ => "cpu".into(),
    }
}

/// Parse `cpu` or `cuda:N` (or `cuda`, meaning `cuda:0`).
pub fn parse_device(text: &str) -> Option<Device> {
    match text.trim() {
        "cpu" => Some(Device::Cpu),
        "cuda" => Some(Device::Cuda(0)),
        t => t.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(Device::Cuda),
    }
}

/// The executor's view of the network for one run on this worker.
struct WorkerMailbox {
    worker: Arc<Worker>,
    conn: Arc<Conn>,
    handle: tokio::runtime::Handle,
    run: u64,
    entry: Arc<ProgramPlan>,
    entry_index: usize,
    peers: HashMap<String, PeerInfo>,
    deadline: Instant,
    pending: Vec<(String, tokio::task::JoinHandle<Result<u64, RemoteError>>)>,
    received: BTreeMap<String, u64>,
}

impl Mailbox for WorkerMailbox {
    fn recv(&mut self, transfer: u32, tensor: genie_ir::ValueId) -> Result<Tensor, ExecError> {
        let key = InboxKey::Run { client: self.conn.client, run: self.run, transfer };
        let entry = &self.entry.entries[self.entry_index];
        let from = entry.transfers.iter().find(|t| t.id == transfer).map(|t| t.from.clone()).unwrap_or_default();
        let d = self.worker.inbox.take(key, self.deadline).ok_or_else(|| {
            ExecError::Mailbox(format!("transfer {transfer} ({tensor}) from {from} did not arrive in time"))
        })?;
        *self.received.entry(if from.is_empty() { d.from } else { from }).or_default() += tensor_bytes(&d.tensor);
        self.worker.to_device(d.tensor).map_err(ExecError::Mailbox)
    }

    fn send(&mut self, transfer: u32, tensor: genie_ir::ValueId, value: &Tensor) -> Result<(), ExecError> {
        let entry = &self.entry.entries[self.entry_index];
        let to = entry
            .transfers
            .iter()
            .find(|t| t.id == transfer)
            .map(|t| t.to.clone())
            .ok_or_else(|| ExecError::Mailbox(format!("the plan has no transfer {transfer} for {tensor}")))?;
        // Copy to the host here, on the executor's thread, so the async side only streams bytes.
        let (dtype, shape, payload) = streams::tensor_payload(value).map_err(|e| ExecError::Mailbox(e.to_string()))?;
        let worker = self.worker.clone();
        let conn = self.conn.clone();
        let run = self.run;
        let peer = self.peers.get(&to).cloned();
        let dest = to.clone();
        let task = self.handle.spawn(async move {
            if dest == CLIENT {
                let purpose = Purpose::Output { run, transfer };
                return streams::send_payload(&conn.connection, purpose, dtype, shape, payload).await.map_err(|e| {
                    RemoteError::new(ErrorKind::Exec, format!("sending output {tensor} to the client: {e}"))
                });
            }
            let info = peer.ok_or_else(|| {
                RemoteError::new(ErrorKind::PeerUnreachable, format!("no address for peer {dest} in the program"))
            })?;
            let connection = worker.peer(&info).await?;
            let purpose = Purpose::Activation { client: conn.client, run, transfer };
            streams::send_payload(&connection, purpose, dtype, shape, payload).await.map_err(|e| {
                RemoteError::new(ErrorKind::PeerUnreachable, format!("sending {tensor} to peer {dest}: {e}"))
            })
        });
        self.pending.push((to, task));
        Ok(())
    }
}

/// Workers started in this process on loopback (the embedded default), one per device name.
pub struct LocalWorkers {
    pub handles: Vec<WorkerHandle>,
    /// Where the client finds each, with its pinned fingerprint.
    pub addresses: Vec<crate::client::WorkerAddress>,
    /// The random token they share.
    pub token: String,
}

/// Start one worker per device name on `127.0.0.1`, each with a self-signed certificate and
/// no memory limit.
pub fn start_local(devices: &[String], device: Device) -> Result<LocalWorkers, WorkerError> {
    let unlimited: Vec<(String, Option<u64>)> = devices.iter().map(|d| (d.clone(), None)).collect();
    start_local_with_memory(&unlimited, device)
}

/// Start one worker per `(device name, memory budget)` on `127.0.0.1`, each with a
/// self-signed certificate; a worker refuses loads and sessions beyond its budget.
pub fn start_local_with_memory(devices: &[(String, Option<u64>)], device: Device) -> Result<LocalWorkers, WorkerError> {
    let token = format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>());
    let mut handles = Vec::new();
    let mut addresses = Vec::new();
    for (name, memory_bytes) in devices {
        let identity = Identity::self_signed(&["localhost".to_string(), "127.0.0.1".to_string()])?;
        let mut config = WorkerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), device, token.clone());
        config.memory_bytes = *memory_bytes;
        let handle = spawn(config, identity)?;
        addresses.push(crate::client::WorkerAddress {
            device: name.clone(),
            addr: handle.addr,
            trust: Trust::Fingerprint(handle.fingerprint.clone()),
        });
        handles.push(handle);
    }
    Ok(LocalWorkers { handles, addresses, token })
}
