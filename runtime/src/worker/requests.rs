//! One handler per control request. The decisions are the ledger's; what is left here is
//! waiting (for uploads in flight), logging and the replies.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genie_codegen::ProgramPlan;

use super::connection::Conn;
use super::{lock, log_evictions, InFlight, Worker};
use crate::wire::{ClientId, ErrorKind, PeerInfo, RemoteError, Reply, Request, Role, WorkerStats};

impl Worker {
    pub(super) async fn handle_request(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        request: Request,
    ) -> Result<Reply, RemoteError> {
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
                let evicted = lock(&self.ledger).open_session(client, program, session, Instant::now())?;
                log_evictions(&evicted);
                Ok(Reply::Ok)
            }
            Request::Run { run, program, session, entry, bindings, timeout_ms } => {
                let timeout = Duration::from_millis(timeout_ms.clamp(1, 24 * 3600 * 1000));
                let in_flight = InFlight::start(&self.counters);
                let result = self.run(conn, run, program, session, &entry, bindings, timeout).await;
                drop(in_flight);
                self.inbox.clear(client, run, true);
                self.counters.runs.fetch_add(1, Ordering::Relaxed);
                if result.is_err() {
                    self.counters.failed_runs.fetch_add(1, Ordering::Relaxed);
                }
                result.map(|stats| Reply::RunDone { stats })
            }
            Request::CloseSession { session } => lock(&self.ledger).close_session(client, session).map(|()| Reply::Ok),
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
            peak_tensor_bytes: self.counters.peak_tensor_bytes.load(Ordering::Relaxed),
            peak_concurrent_runs: self.counters.peak_runs_in_flight.load(Ordering::Relaxed),
            sweeps: self.counters.sweeps.load(Ordering::Relaxed),
            memory_bytes: self.config.memory_bytes,
            committed_bytes: ledger.committed_bytes,
            refused_for_memory: ledger.refused_for_memory,
        }
    }

    /// Admit and install a program; the reply names the weights the client must upload.
    fn load_program(
        &self,
        client: ClientId,
        program: u64,
        device: String,
        plan: ProgramPlan,
        peers: Vec<PeerInfo>,
    ) -> Result<Reply, RemoteError> {
        let loaded = lock(&self.ledger).load_program(client, program, device, plan, peers, Instant::now())?;
        log_evictions(&loaded.evicted);
        Ok(Reply::MissingWeights { hashes: loaded.missing })
    }

    /// The program is ready once every weight it needs is resident; uploads may still be in
    /// flight on their own streams, so wait for them up to the upload timeout.
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
