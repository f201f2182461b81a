//! One handler per control request. The decisions are the ledger's; what is left here is
//! waiting (for uploads in flight), checking proofs of possession, logging and the replies.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use genie_codegen::ProgramPlan;
use genie_ir::WeightHash;

use super::connection::Conn;
use super::ledger::{ProofTargets, Sender};
use super::{lock, log_evictions, InFlight, Worker};
use crate::exec;
use crate::handshake::constant_time_eq;
use crate::wire::{self, ClientId, Digest, ErrorKind, PeerInfo, RemoteError, Reply, Request, WorkerStats};

impl Worker {
    /// Handle one request and count it (and its error, if any) in the metrics.
    pub(super) async fn handle_request(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        request: Request,
    ) -> Result<Reply, RemoteError> {
        let kind = request.kind();
        let span = tracing::debug_span!("request", kind, client = ?conn.sender);
        let result = self.dispatch(conn, request).instrument(span).await;
        self.metrics.request(kind, result.as_ref().err().map(|e| e.kind));
        result
    }

    async fn dispatch(self: &Arc<Self>, conn: &Arc<Conn>, request: Request) -> Result<Reply, RemoteError> {
        let client = match &conn.sender {
            Sender::Client(id) => *id,
            Sender::Peer(_) if matches!(request, Request::Stats) => return Ok(Reply::Stats(self.stats())),
            Sender::Peer(_) => {
                return Err(RemoteError::new(ErrorKind::BadRequest, "peer connections only deliver activations"))
            }
        };
        match request {
            Request::LoadProgram { program, device, plan, peers } => {
                self.load_program(client, program, device, *plan, peers)
            }
            Request::ProveWeights { program, proofs } => self.prove_weights(client, program, proofs).await,
            Request::WeightsUploaded { program } => self.weights_uploaded(client, program).await,
            Request::OpenSession { program, session } => {
                let opened = lock(&self.ledger).open_session(client, program, session, Instant::now())?;
                log_evictions(&opened.evicted);
                Ok(Reply::SessionOpened { sessions_before: opened.sessions_before })
            }
            Request::Run { run, program, session, entry, bindings, timeout_ms } => {
                let timeout = Duration::from_millis(timeout_ms.max(1)).min(self.config.max_run_timeout);
                let in_flight = InFlight::start(&self.counters);
                lock(&conn.runs).insert(run);
                let result = self.run(conn, run, program, session, &entry, bindings, timeout).await;
                lock(&conn.runs).remove(&run);
                drop(in_flight);
                if let Ok(stats) = &result {
                    self.metrics.run_took(&entry, stats.wall_s);
                }
                self.inbox.clear(client, run, true);
                self.counters.runs.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    self.counters.failed_runs.fetch_add(1, Ordering::Relaxed);
                }
                result.map(|stats| Reply::RunDone { stats })
            }
            Request::CancelRun { run } => {
                self.inbox.cancel(client, run);
                Ok(Reply::Ok)
            }
            Request::CloseSession { session } => {
                let busy = lock(&self.ledger).close_session(client, session)?;
                if let Some(run) = busy {
                    self.inbox.cancel(client, run);
                }
                Ok(Reply::Ok)
            }
            Request::UnloadProgram { program } => {
                lock(&self.ledger).unload_program(client, program).map(|()| Reply::Ok)
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
        let ledger = lock(&self.ledger).stats();
        WorkerStats {
            device: self.device_label.clone(),
            resident_weights: ledger.resident_weights,
            resident_weight_bytes: ledger.resident_weight_bytes,
            programs: ledger.programs,
            sessions: ledger.sessions,
            state_bytes: ledger.state_bytes,
            runs: self.counters.runs.load(Ordering::Relaxed),
            failed_runs: self.counters.failed_runs.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
            connections: self.counters.connections.load(Ordering::Relaxed),
            refused: self.counters.refused.load(Ordering::Relaxed),
            refused_unauthenticated: self.counters.refused_unauthenticated.load(Ordering::Relaxed),
            refused_streams: self.counters.refused_streams.load(Ordering::Relaxed),
            calls_in_flight: ledger.calls,
            peak_tensor_bytes: self.counters.peak_tensor_bytes.load(Ordering::Relaxed),
            peak_concurrent_runs: self.counters.peak_runs_in_flight.load(Ordering::Relaxed),
            sweeps: self.counters.sweeps.load(Ordering::Relaxed),
            memory_bytes: self.config.memory_bytes,
            committed_bytes: ledger.committed_bytes,
            refused_for_memory: ledger.refused_for_memory,
        }
    }

    /// Check the plan's types, admit and install a program; the reply asks the client to prove
    /// the weights it needs and does not own yet.
    fn load_program(
        &self,
        client: ClientId,
        program: u64,
        device: String,
        plan: ProgramPlan,
        peers: Vec<PeerInfo>,
    ) -> Result<Reply, RemoteError> {
        // Sizes are reckoned from the plan's types: a type that disagrees with what its op makes
        // would let a run allocate more than was admitted.
        genie_codegen::check_types(&plan).map_err(|e| RemoteError::new(ErrorKind::BadRequest, e.to_string()))?;
        let nonce: [u8; 32] = rand::random();
        let loaded = lock(&self.ledger).load_program(client, program, device, plan, peers, nonce, Instant::now())?;
        log_evictions(&loaded.evicted);
        Ok(Reply::ProveWeights { nonce: genie_ir::HexBytes(nonce.to_vec()), hashes: loaded.prove })
    }

    /// Check each proof against the resident weight's bytes under the load's nonce (on a
    /// blocking thread: it reads every byte); a weight proved becomes the client's. The reply
    /// names what is left to upload.
    async fn prove_weights(
        &self,
        client: ClientId,
        program: u64,
        proofs: Vec<(WeightHash, Digest)>,
    ) -> Result<Reply, RemoteError> {
        let claimed: Vec<WeightHash> = proofs.iter().map(|(h, _)| h.clone()).collect();
        let ProofTargets { weights: targets, nonce } = lock(&self.ledger).proof_targets(client, program, &claimed)?;
        let proven = tokio::task::spawn_blocking(move || {
            let mut proven = Vec::new();
            for (hash, tensor) in targets {
                let Some((_, proof)) = proofs.iter().find(|(h, _)| *h == hash) else { continue };
                let Ok(bytes) = exec::tensor_to_bytes(&tensor) else { continue };
                if constant_time_eq(&wire::weight_proof(&nonce, &bytes), &proof.0) {
                    proven.push(hash);
                }
            }
            proven
        })
        .await
        .map_err(|e| RemoteError::new(ErrorKind::Exec, format!("checking proofs: {e}")))?;
        let missing = lock(&self.ledger).grant(client, program, &proven)?;
        Ok(Reply::MissingWeights { hashes: missing })
    }

    /// The program is ready once every weight it needs is resident and the client's; uploads
    /// may still be in flight on their own streams, so wait for them up to the upload timeout.
    async fn weights_uploaded(&self, client: ClientId, program: u64) -> Result<Reply, RemoteError> {
        let deadline = Instant::now() + self.config.upload_timeout;
        loop {
            let arrived = self.weight_arrived.notified();
            let missing = lock(&self.ledger).try_ready(client, program)?;
            if missing.is_empty() {
                return Ok(Reply::Ok);
            }
            let now = Instant::now();
            if now >= deadline {
                let names: Vec<&str> = missing.iter().map(|h| h.short()).collect();
                return Err(RemoteError::new(
                    ErrorKind::MissingWeights,
                    format!("{} weight(s) never arrived: {}", names.len(), names.join(", ")),
                ));
            }
            // Uploads may still be in flight on their own streams; wait for the next one.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(200)), arrived).await;
        }
    }
}
