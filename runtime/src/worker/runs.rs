//! Runs and per-op calls: each executes on a blocking thread (libtorch blocks), receiving from
//! the [`Inbox`] and sending through the [`WorkerMailbox`] to the client or straight to peers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use genie_codegen::{ProgramPlan, CLIENT};
use tch::Tensor;

use super::connection::Conn;
use super::ledger::RunTicket;
use super::{lock, tensor_bytes, Worker};
use crate::exec::{self, Bindings, ExecError, Mailbox, Resident};
use crate::streams;
use crate::wire::{ClientId, ErrorKind, OpInput, PeerInfo, Purpose, RemoteError, Reply, RunStats};

/// Where a received tensor waits for the step that needs it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum InboxKey {
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
pub(super) struct Inbox {
    map: Mutex<HashMap<InboxKey, Delivered>>,
    arrived: Condvar,
}

impl Inbox {
    pub(super) fn deliver(&self, key: InboxKey, tensor: Tensor, from: String) {
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
    pub(super) fn clear(&self, client: ClientId, id: u64, is_run: bool) {
        lock(&self.map).retain(|k, _| k.batch() != (client, id, is_run));
    }

    /// Drop deliveries nobody claimed within `age`.
    pub(super) fn sweep(&self, age: Duration) {
        let now = Instant::now();
        lock(&self.map).retain(|_, d| now.duration_since(d.at) < age);
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn run(
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
        // Check the call and take the session's state and the device's weights, shared; the
        // session stays busy until its state is put back (updated on success) below.
        let ticket = lock(&self.ledger).begin_run(client, program, session, entry_name, &bindings, started)?;
        let RunTicket { plan, device, peers, entry_index, state, weights } = ticket;
        let mut resident = Resident::new(self.config.device);
        for (hash, weight) in weights {
            resident.insert(hash, weight);
        }
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
            lock(&self.ledger).end_run(client, session, written, Instant::now());
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

    pub(super) async fn exec_op(
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
                let ledger = lock(&self.ledger);
                inputs.iter().any(|i| matches!(i, OpInput::Weight(h) if !ledger.has_weight(h)))
            };
            if !missing || Instant::now() >= upload_deadline {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
        }
        let weights: Vec<Option<Tensor>> = {
            let ledger = lock(&self.ledger);
            inputs
                .iter()
                .map(|i| match i {
                    OpInput::Weight(h) => ledger.weight(h),
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
}

/// The executor's view of the network for one run on this worker.
pub(super) struct WorkerMailbox {
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
