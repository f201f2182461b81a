//! The worker's Prometheus metrics (`genie worker --metrics ADDR`). Counters and histograms are
//! updated where requests, runs and tensor streams happen; gauges are read from the ledger at
//! each scrape, so they are never stale. Recording is a few atomic adds per request, so it is
//! always on; only serving needs the flag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::ledger::LedgerStats;
use crate::metrics::latency_buckets;
use crate::wire::{ErrorKind, Purpose};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ErrorLabel {
    kind: &'static str,
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EntryLabel {
    entry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PurposeLabel {
    purpose: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MemoryLabel {
    kind: &'static str,
}

/// Why a worker refused something, as `genie_refusals_total{reason}` counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A wrong token, version or resume ticket, a request before the Hello, a peer without
    /// its certificate.
    Unauthorized,
    OutOfMemory,
    /// A per-client limit, or the cap on connections before their Hello.
    Limit,
    /// A frame or tensor stream that does not decode, is too large, or is not expected.
    Malformed,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::OutOfMemory => "out_of_memory",
            Refusal::Limit => "limit",
            Refusal::Malformed => "malformed",
        }
    }

    /// The refusal an error reply is, if it is one.
    pub(super) fn of(kind: ErrorKind) -> Option<Refusal> {
        match kind {
            ErrorKind::Unauthorized | ErrorKind::VersionMismatch | ErrorKind::UnknownClient => {
                Some(Refusal::Unauthorized)
            }
            ErrorKind::OutOfMemory => Some(Refusal::OutOfMemory),
            ErrorKind::LimitReached => Some(Refusal::Limit),
            ErrorKind::FrameTooLarge | ErrorKind::Malformed => Some(Refusal::Malformed),
            _ => None,
        }
    }
}

/// The `purpose` label of a tensor stream's bytes.
pub(super) fn purpose_label(purpose: &Purpose) -> &'static str {
    match purpose {
        Purpose::Weight { .. } => "weight",
        Purpose::Input { .. } | Purpose::OpInput { .. } => "input",
        Purpose::Output { .. } | Purpose::OpOutput { .. } => "output",
        Purpose::Activation { .. } => "activation",
    }
}

/// The `error` label of an error reply.
fn error_label(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::VersionMismatch => "version_mismatch",
        ErrorKind::FrameTooLarge => "frame_too_large",
        ErrorKind::Malformed => "malformed",
        ErrorKind::BadRequest => "bad_request",
        ErrorKind::UnknownProgram => "unknown_program",
        ErrorKind::UnknownSession => "unknown_session",
        ErrorKind::SessionBusy => "session_busy",
        ErrorKind::MissingWeights => "missing_weights",
        ErrorKind::WeightHashMismatch => "weight_hash_mismatch",
        ErrorKind::Exec => "exec",
        ErrorKind::Timeout => "timeout",
        ErrorKind::PeerUnreachable => "peer_unreachable",
        ErrorKind::OutOfMemory => "out_of_memory",
        ErrorKind::LimitReached => "limit_reached",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::UnknownClient => "unknown_client",
    }
}

const PURPOSES: [&str; 5] = ["weight", "input", "activation", "output", "state"];
const REFUSALS: [Refusal; 4] = [Refusal::Unauthorized, Refusal::OutOfMemory, Refusal::Limit, Refusal::Malformed];
const MEMORY_KINDS: [&str; 4] = ["weights", "sessions", "activations", "uploads"];

pub(super) struct WorkerMetrics {
    registry: Registry,
    requests: Family<KindLabel, Counter>,
    request_errors: Family<ErrorLabel, Counter>,
    run_seconds: Family<EntryLabel, Histogram>,
    queue_seconds: Histogram,
    batch_size: Histogram,
    bytes_received: Family<PurposeLabel, Counter>,
    bytes_sent: Family<PurposeLabel, Counter>,
    refusals: Family<ReasonLabel, Counter>,
    sessions_active: Gauge,
    programs_loaded: Gauge,
    memory_committed: Family<MemoryLabel, Gauge>,
    weight_cache: Gauge,
}

impl WorkerMetrics {
    pub(super) fn new(memory_limit: Option<u64>) -> WorkerMetrics {
        let mut registry = Registry::with_prefix("genie");
        let requests = Family::<KindLabel, Counter>::default();
        let request_errors = Family::<ErrorLabel, Counter>::default();
        let run_seconds = Family::<EntryLabel, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        let queue_seconds = Histogram::new(latency_buckets());
        let batch_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]);
        let bytes_received = Family::<PurposeLabel, Counter>::default();
        let bytes_sent = Family::<PurposeLabel, Counter>::default();
        let refusals = Family::<ReasonLabel, Counter>::default();
        let sessions_active = Gauge::default();
        let programs_loaded = Gauge::default();
        let memory_committed = Family::<MemoryLabel, Gauge>::default();
        let weight_cache = Gauge::default();
        registry.register("requests", "Control requests handled, by kind", requests.clone());
        registry.register(
            "request_errors",
            "Requests answered with an error, by kind and error",
            request_errors.clone(),
        );
        registry.register("run_seconds", "Seconds a run took on this worker, by entry", run_seconds.clone());
        registry.register(
            "queue_seconds",
            "Seconds a run or per-op call waited for an execution slot before it ran",
            queue_seconds.clone(),
        );
        registry.register(
            "batch_size",
            "Calls executed together in each batched step of decode calls (1: alone)",
            batch_size.clone(),
        );
        registry.register("bytes_received", "Tensor bytes received, by purpose", bytes_received.clone());
        registry.register("bytes_sent", "Tensor bytes sent, by purpose", bytes_sent.clone());
        registry.register("refusals", "Connections, requests and streams refused, by reason", refusals.clone());
        registry.register("sessions_active", "Sessions open now", sessions_active.clone());
        registry.register("programs_loaded", "Programs loaded now", programs_loaded.clone());
        registry.register(
            "memory_committed_bytes",
            "Memory committed now, by kind (weights of loaded programs, sessions, activations of calls in flight, uploads being read)",
            memory_committed.clone(),
        );
        registry.register(
            "weight_cache_bytes",
            "Bytes of resident weights no loaded program needs (kept for clients that come back)",
            weight_cache.clone(),
        );
        // Every label a family can take appears from the start, at zero, so a dashboard sees
        // the series before the first event.
        for purpose in PURPOSES {
            let _ = bytes_received.get_or_create(&PurposeLabel { purpose });
            let _ = bytes_sent.get_or_create(&PurposeLabel { purpose });
        }
        for refusal in REFUSALS {
            let _ = refusals.get_or_create(&ReasonLabel { reason: refusal.label() });
        }
        for kind in MEMORY_KINDS {
            let _ = memory_committed.get_or_create(&MemoryLabel { kind });
        }
        // Absent when the worker has no limit.
        if let Some(limit) = memory_limit {
            let gauge = Gauge::<i64>::default();
            gauge.set(i64::try_from(limit).unwrap_or(i64::MAX));
            registry.register("memory_limit_bytes", "The memory budget admission checks against", gauge);
        }
        WorkerMetrics {
            registry,
            requests,
            request_errors,
            run_seconds,
            queue_seconds,
            batch_size,
            bytes_received,
            bytes_sent,
            refusals,
            sessions_active,
            programs_loaded,
            memory_committed,
            weight_cache,
        }
    }

    pub(super) fn request(&self, kind: &'static str, error: Option<ErrorKind>) {
        self.requests.get_or_create(&KindLabel { kind }).inc();
        if let Some(e) = error {
            self.request_errors.get_or_create(&ErrorLabel { kind, error: error_label(e) }).inc();
            if let Some(refusal) = Refusal::of(e) {
                self.refused(refusal);
            }
        }
    }

    pub(super) fn refused(&self, refusal: Refusal) {
        self.refusals.get_or_create(&ReasonLabel { reason: refusal.label() }).inc();
    }

    pub(super) fn run_took(&self, entry: &str, seconds: f64) {
        self.run_seconds.get_or_create(&EntryLabel { entry: entry.to_string() }).observe(seconds);
    }

    pub(super) fn queued(&self, seconds: f64) {
        self.queue_seconds.observe(seconds);
    }

    pub(super) fn batched(&self, calls: usize) {
        self.batch_size.observe(calls as f64);
    }

    pub(super) fn received(&self, purpose: &Purpose, bytes: u64) {
        self.bytes_received.get_or_create(&PurposeLabel { purpose: purpose_label(purpose) }).inc_by(bytes);
    }

    pub(super) fn sent(&self, purpose: &'static str, bytes: u64) {
        self.bytes_sent.get_or_create(&PurposeLabel { purpose }).inc_by(bytes);
    }

    /// The metrics text, gauges read from `ledger` now.
    pub(super) fn render(&self, ledger: &LedgerStats) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.sessions_active.set(gauge(ledger.sessions));
        self.programs_loaded.set(gauge(ledger.programs));
        for (kind, bytes) in [
            ("weights", ledger.committed_weight_bytes),
            ("sessions", ledger.committed_session_bytes),
            ("activations", ledger.committed_call_bytes),
            ("uploads", ledger.committed_upload_bytes),
        ] {
            self.memory_committed.get_or_create(&MemoryLabel { kind }).set(gauge(bytes));
        }
        self.weight_cache.set(gauge(ledger.cached_weight_bytes));
        crate::metrics::render(&self.registry)
    }
}
