//! A worker: serves many clients over QUIC, keeps weights and session state resident, runs its
//! part of each call with the executor, and sends activations at a cut straight to its peers.
//!
//! Everything a client owns (programs, sessions, runs) is keyed by its `ClientId`, so one client
//! cannot name another's. Weights are shared by content hash: an identical weight from another
//! client's model is resident once.
//!
//! Two layers. The **ledger** (`ledger.rs`) is sans-IO: programs, sessions, resident weights,
//! clients, memory accounting and admission, cache eviction and the idle sweeps, as plain data
//! and decisions with time passed in. The **shell** (this module and its other children) does
//! the I/O around it with quinn and tokio, and holds the ledger behind one mutex:
//! - `connection.rs`: accepting connections, the Hello, the control loop, tensor streams in;
//! - `requests.rs`: one handler per request (load, weights uploaded, sessions, unload, stats);
//! - `runs.rs`: `Run` and `ExecOp` on blocking threads, the mailbox and the inbox they use;
//! - `peers.rs`: connections to peer workers, opened on first use.

mod batcher;
mod connection;
mod ledger;
mod metrics;
mod peers;
mod requests;
mod runs;
pub mod threads;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};
use tokio::sync::{Notify, Semaphore};

use crate::exec::SlotValue;
use crate::metrics::MetricsServer;
use crate::transport::{self, Identity, TransportOptions, Trust};
pub use ledger::Limits;
use ledger::{Evicted, Ledger, LedgerConfig, Payload};
use metrics::WorkerMetrics;
use peers::PeerLink;
use runs::Inbox;

/// The default of [`WorkerConfig::max_batch`] (`genie worker --max-batch`).
pub const DEFAULT_MAX_BATCH: usize = 32;

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
    /// What one client may hold at once (programs, sessions, calls in flight).
    pub limits: Limits,
    /// Connections still in their TLS handshake or before their Hello; more are refused.
    pub max_unauthenticated: usize,
    /// Requests of one connection handled at once; the next is read when one finishes.
    pub max_requests_per_connection: usize,
    /// Runs and per-op calls executing at once on the execution threads; more wait their turn.
    pub max_executions: usize,
    /// The cores the worker's calls share (libtorch intra-op threads: all of them for a call
    /// alone, an equal share each for calls at once; [`threads::ExecThreads`]). Default: the
    /// cores this process may run on.
    pub threads: usize,
    /// The most calls of one (program, entry) that execute together as one batched step
    /// (continuous batching: calls waiting when a batch finishes form the next); 1: every call
    /// alone.
    pub max_batch: usize,
    /// How long a batch waits to fill before it runs (up to `max_batch` calls), trading each
    /// step's latency for larger batches; zero (the default): a call at an idle queue runs at
    /// once, and after a batch only its own sessions are waited for, briefly.
    pub batch_window: Duration,
    /// The longest a run may take, whatever timeout its client asks for.
    pub max_run_timeout: Duration,
    /// How long a per-op call waits for the inputs sent with it.
    pub op_input_timeout: Duration,
    /// How long a tensor stream may arrive before the call it is for: the request may still
    /// be on its way.
    pub early_tensor_wait: Duration,
    /// Every tensor stream, in or out, must move at least this many bytes per second after
    /// [`WorkerConfig::stream_grace`], or it is cut (a stalled peer holds nothing for long).
    pub min_stream_rate: u64,
    pub stream_grace: Duration,
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`); `None`: not served
    /// (they are recorded either way).
    pub metrics_listen: Option<SocketAddr>,
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
            limits: Limits::default(),
            max_unauthenticated: 64,
            max_requests_per_connection: 256,
            max_executions: 64,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_batch: DEFAULT_MAX_BATCH,
            batch_window: Duration::ZERO,
            max_run_timeout: Duration::from_secs(600),
            op_input_timeout: Duration::from_secs(10),
            early_tensor_wait: Duration::from_secs(10),
            min_stream_rate: 1 << 20,
            stream_grace: Duration::from_secs(10),
            metrics_listen: None,
        }
    }

    /// How long a tensor stream of `bytes` may take (see [`WorkerConfig::min_stream_rate`]).
    fn stream_deadline(&self, bytes: u64) -> Duration {
        self.stream_grace + Duration::from_secs(bytes / self.min_stream_rate.max(1))
    }

    /// The memory a worker on `device` may fill when none is given: the machine's physical
    /// memory for the CPU, no limit for a GPU (libtorch reports its own out-of-memory there).
    pub fn default_memory_bytes(device: Device) -> Option<u64> {
        if device != Device::Cpu {
            return None;
        }
        let text = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    }
}

/// Run this process on the given CPU cores only (`genie worker --cpus`), with as many libtorch
/// threads. Call it first, before any runtime or libtorch thread starts: threads inherit the
/// affinity of the thread that creates them.
pub fn pin_to_cpus(cpus: &[usize]) -> Result<(), WorkerError> {
    if cpus.is_empty() {
        return Err(WorkerError::Pin("no CPU given".into()));
    }
    // SAFETY: `cpu_set_t` is plain data, zeroed is its empty set; CPU_SET writes inside it for
    // indices below CPU_SETSIZE, checked first; sched_setaffinity reads `size_of` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(WorkerError::Pin(format!(
                    "CPU {cpu} is beyond the {} this system can name",
                    libc::CPU_SETSIZE
                )));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            let err = std::io::Error::last_os_error();
            return Err(WorkerError::Pin(format!("CPUs {cpus:?}: {err}")));
        }
    }
    tch::set_num_threads(cpus.len() as i32);
    Ok(())
}

/// Check that libtorch can run on `device` (a `cuda:N` it does not see is refused).
pub fn check_device(device: Device) -> Result<(), WorkerError> {
    if let Device::Cuda(index) = device {
        let count = tch::Cuda::device_count();
        if index as i64 >= count {
            return Err(WorkerError::NoSuchDevice { index, count });
        }
    }
    Ok(())
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
    /// The metrics listener could not bind.
    #[error("serving metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A CUDA device libtorch does not see.
    #[error("cuda:{index} requested but libtorch sees {count} CUDA device(s)")]
    NoSuchDevice { index: usize, count: i64 },
    /// The CPU affinity could not be set.
    #[error("pinning the worker to its CPUs: {0}")]
    Pin(String),
}

/// A running worker (in this process).
pub struct WorkerHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The certificate fingerprint clients pin.
    pub fingerprint: String,
    /// Where Prometheus metrics are served (`http://ADDR/metrics`), when asked for.
    pub metrics_addr: Option<SocketAddr>,
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
    crate::trace::start_clock();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("genie-worker")
        .enable_all()
        .build()
        .map_err(WorkerError::Runtime)?;
    let endpoint = {
        let _guard = runtime.enter();
        transport::server_endpoint(config.listen, &identity, &accepting(&config.transport))?
    };
    let addr = endpoint.local_addr().map_err(WorkerError::Runtime)?;
    let fingerprint = identity.fingerprint().to_string();
    let shutdown = Arc::new(Notify::new());
    let metrics_listen = config.metrics_listen;
    let worker = Arc::new(Worker::new(config, endpoint.clone(), identity));
    let metrics = metrics_listen.map(|addr| serve_metrics(&worker, addr, runtime.handle())).transpose()?;
    let metrics_addr = metrics.as_ref().map(MetricsServer::addr);
    let stop = shutdown.clone();
    let closing = endpoint.clone();
    let thread = std::thread::Builder::new()
        .name(format!("genie-worker-{addr}"))
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    _ = worker.serve() => {}
                    _ = stop.notified() => {}
                }
                // Let the connections' close frames go out before the runtime stops, so clients
                // learn at once that this worker is gone instead of waiting out their timeouts.
                let _ = tokio::time::timeout(Duration::from_secs(1), closing.wait_idle()).await;
            });
            drop(metrics);
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(WorkerError::Runtime)?;
    Ok(WorkerHandle { addr, fingerprint, metrics_addr, shutdown, thread: Some(thread), endpoint })
}

/// Serve on the current tokio runtime until the endpoint closes (used by `genie worker`).
pub async fn serve(config: WorkerConfig, identity: Identity) -> Result<(), WorkerError> {
    if config.token.is_empty() {
        return Err(WorkerError::EmptyToken);
    }
    crate::trace::start_clock();
    let endpoint = transport::server_endpoint(config.listen, &identity, &accepting(&config.transport))?;
    let metrics_listen = config.metrics_listen;
    let worker = Arc::new(Worker::new(config, endpoint, identity));
    let _metrics =
        metrics_listen.map(|addr| serve_metrics(&worker, addr, &tokio::runtime::Handle::current())).transpose()?;
    worker.serve().await;
    Ok(())
}

/// Serve the worker's metrics at `addr` on `runtime`.
fn serve_metrics(
    worker: &Arc<Worker>,
    addr: SocketAddr,
    runtime: &tokio::runtime::Handle,
) -> Result<MetricsServer, WorkerError> {
    // Weak: the listener must not keep a stopped worker alive.
    let worker = Arc::downgrade(worker);
    let render = Arc::new(move || worker.upgrade().map(|w| w.render_metrics()).unwrap_or_default());
    MetricsServer::start(addr, render, runtime).map_err(|e| WorkerError::Metrics { addr, source: e })
}

/// Connections a worker accepts may open one control stream and no tensor stream until their
/// Hello is accepted (the worker then allows [`transport::MAX_UNI_STREAMS`]).
fn accepting(options: &TransportOptions) -> TransportOptions {
    TransportOptions { accepted_bidi_streams: 1, accepted_uni_streams: 0, ..options.clone() }
}

/// The shell's state: the ledger and what only the I/O needs (endpoint, inbox, peer links).
struct Worker {
    config: WorkerConfig,
    endpoint: quinn::Endpoint,
    /// To tune each accepted connection by its peer's path (loopback or network), and to
    /// prove which worker this is to its peers.
    identity: Identity,
    device_label: String,
    /// Connections not yet past their Hello hold one each.
    unauthenticated: Arc<Semaphore>,
    /// A run or per-op call holds one while it executes on an execution thread.
    executions: Arc<Semaphore>,
    /// Where runs and ops execute, sharing the worker's cores.
    exec: threads::ExecThreads,
    /// Signalled whenever a call starts, for tensor streams that arrived before it.
    call_started: Notify,
    /// Programs, sessions, resident weights, clients and memory, and the decisions on them.
    /// One lock, so that an admission check and the insertion it admits happen together.
    ledger: Mutex<Ledger<Tensor, SlotValue>>,
    /// Signalled whenever a weight becomes resident (uploads run on their own streams).
    weight_arrived: Notify,
    inbox: Inbox,
    batcher: batcher::Batcher,
    peers: tokio::sync::Mutex<HashMap<peers::PeerKey, PeerLink>>,
    counters: Counters,
    metrics: WorkerMetrics,
}

#[derive(Default)]
struct Counters {
    runs: AtomicU64,
    failed_runs: AtomicU64,
    ops: AtomicU64,
    connections: AtomicU64,
    refused: AtomicU64,
    peak_tensor_bytes: AtomicU64,
    /// Sweeps done (idle sessions, departed clients, the weight cache).
    sweeps: AtomicU64,
    /// Connections refused before their handshake (too many unauthenticated at once).
    refused_unauthenticated: AtomicU64,
    /// Tensor streams refused.
    refused_streams: AtomicU64,
    /// Runs being executed now, and the most there ever were at once.
    runs_in_flight: AtomicU64,
    peak_runs_in_flight: AtomicU64,
}

/// Counts a run as in flight while it lives.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn start(counters: &'a Counters) -> InFlight<'a> {
        let now = counters.runs_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.peak_runs_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.runs_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Worker {
    fn new(config: WorkerConfig, endpoint: quinn::Endpoint, identity: Identity) -> Worker {
        let device_label = device_label(config.device);
        let config_memory = config.memory_bytes;
        let ledger = Ledger::new(LedgerConfig {
            device_label: device_label.clone(),
            memory_bytes: config.memory_bytes,
            weight_cache_bytes: config.weight_cache_bytes,
            session_idle_timeout: config.session_idle_timeout,
            limits: config.limits,
        });
        Worker {
            unauthenticated: Arc::new(Semaphore::new(config.max_unauthenticated.max(1))),
            executions: Arc::new(Semaphore::new(config.max_executions.max(1))),
            exec: threads::ExecThreads::new(config.threads),
            call_started: Notify::new(),
            config,
            endpoint,
            identity,
            device_label,
            ledger: Mutex::new(ledger),
            weight_arrived: Notify::new(),
            inbox: Inbox::default(),
            batcher: batcher::Batcher::default(),
            peers: tokio::sync::Mutex::default(),
            counters: Counters::default(),
            metrics: WorkerMetrics::new(config_memory),
        }
    }

    /// The metrics text, with gauges read from the ledger now.
    fn render_metrics(&self) -> String {
        let stats = lock(&self.ledger).stats();
        self.metrics.render(&stats)
    }

    /// Free idle sessions, forget departed clients, trim the weight cache and drop deliveries
    /// nobody claimed, periodically.
    async fn sweep_forever(&self) {
        let idle = self.config.session_idle_timeout;
        let period = (idle / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            tokio::time::sleep(period).await;
            let report = lock(&self.ledger).sweep(Instant::now());
            for (client, id) in &report.freed_sessions {
                tracing::info!("session {id} of client {client:016x} idle for {idle:?}: freed");
            }
            self.inbox.sweep(Duration::from_secs(300).max(idle));
            log_evictions(&report.evicted);
            self.counters.sweeps.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn to_device(&self, tensor: Tensor) -> Result<Tensor, String> {
        if self.config.device == Device::Cpu {
            return Ok(tensor);
        }
        tensor.f_to_device(self.config.device).map_err(|e| e.to_string())
    }

    /// Record the largest bytes weights and state have held at once (for `Stats`).
    fn note_tensor_bytes(&self) {
        let held = lock(&self.ledger).held_bytes();
        self.counters.peak_tensor_bytes.fetch_max(held, Ordering::Relaxed);
    }
}

/// The executor's tensors in the ledger: shared by a shallow clone (same storage, no copy).
impl Payload for Tensor {
    fn bytes(&self) -> u64 {
        tensor_bytes(self)
    }

    fn share(&self) -> Tensor {
        self.shallow_clone()
    }
}

/// A state slot's value in the ledger: its bytes are its whole buffer's (the room an in-place
/// append keeps behind it included).
impl Payload for SlotValue {
    fn bytes(&self) -> u64 {
        SlotValue::bytes(self)
    }

    fn share(&self) -> SlotValue {
        SlotValue::share(self)
    }
}

fn log_evictions(evicted: &[Evicted]) {
    for e in evicted {
        tracing::info!("evicted weight {} ({} B) from the cache", e.hash.short(), e.bytes);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn tensor_bytes(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
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
            server_name: "localhost".into(),
        });
        handles.push(handle);
    }
    Ok(LocalWorkers { handles, addresses, token })
}
