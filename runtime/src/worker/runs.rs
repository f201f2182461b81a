//! Runs and per-op calls: each executes on a blocking thread (libtorch blocks), at most
//! `max_executions` at once, receiving from the [`Inbox`] and sending through the
//! [`WorkerMailbox`] to the client or straight to peers. A call's deadline is the worker's,
//! whatever its client asked; a call can be cancelled while it waits for a tensor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use genie_codegen::{ProgramPlan, CLIENT};
use genie_ir::{DType, TensorType, ValueId};
use tch::Tensor;

use super::batcher::{BatchJob, BatchKey};
use super::connection::Conn;
use super::ledger::RunTicket;
use super::{lock, tensor_bytes, Worker};
use crate::exec::{self, Bindings, ExecError, Mailbox, Resident, SlotValue, Slots};
use crate::streams;
use crate::trace;
use crate::wire::{ClientId, ErrorKind, OpInput, PeerInfo, Purpose, RemoteError, Reply, RunStats, TraceSpan};

/// Where a received tensor waits for the step that needs it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum InboxKey {
    Run { client: ClientId, run: u64, transfer: u32 },
    Op { client: ClientId, call: u64, index: u32 },
}

impl InboxKey {
    fn call(&self) -> (ClientId, u64, bool) {
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

/// Why a take came back empty.
#[derive(Debug, PartialEq, Eq)]
enum Missed {
    Timeout,
    Cancelled,
}

#[derive(Default)]
struct InboxState {
    delivered: HashMap<InboxKey, Delivered>,
    /// Runs whose client cancelled them (or closed their session).
    cancelled: HashSet<(ClientId, u64)>,
}

/// Received tensors by key; executor threads block on it, async waiters are notified.
#[derive(Default)]
pub(super) struct Inbox {
    state: Mutex<InboxState>,
    arrived: Condvar,
    pub(super) arrived_async: tokio::sync::Notify,
}

impl Inbox {
    /// Hold a received tensor for the step that takes it. Each key is delivered once: a second
    /// tensor for a transfer already waiting is refused (returns false), never swapped in.
    pub(super) fn deliver(&self, key: InboxKey, tensor: Tensor, from: String) -> bool {
        let mut state = lock(&self.state);
        if state.delivered.contains_key(&key) {
            return false;
        }
        state.delivered.insert(key, Delivered { tensor, from, at: Instant::now() });
        self.arrived.notify_all();
        self.arrived_async.notify_waiters();
        true
    }

    /// Cancel run `run` of `client`: a step waiting for one of its tensors gives up now.
    pub(super) fn cancel(&self, client: ClientId, run: u64) {
        lock(&self.state).cancelled.insert((client, run));
        self.arrived.notify_all();
        self.arrived_async.notify_waiters();
    }

    pub(super) fn is_cancelled(&self, client: ClientId, run: u64) -> bool {
        lock(&self.state).cancelled.contains(&(client, run))
    }

    /// True when a tensor waits under every key.
    pub(super) fn holds_all(&self, keys: &[InboxKey]) -> bool {
        let state = lock(&self.state);
        keys.iter().all(|k| state.delivered.contains_key(k))
    }

    fn take(&self, key: InboxKey, deadline: Instant) -> Result<Delivered, Missed> {
        let mut state = lock(&self.state);
        loop {
            if let InboxKey::Run { client, run, .. } = key {
                if state.cancelled.contains(&(client, run)) {
                    return Err(Missed::Cancelled);
                }
            }
            if let Some(d) = state.delivered.remove(&key) {
                return Ok(d);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Missed::Timeout);
            }
            state = match self.arrived.wait_timeout(state, deadline - now) {
                Ok((s, _)) => s,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Drop what is left of a run or op call, and its cancellation.
    pub(super) fn clear(&self, client: ClientId, id: u64, is_run: bool) {
        let mut state = lock(&self.state);
        state.delivered.retain(|k, _| k.call() != (client, id, is_run));
        if is_run {
            state.cancelled.remove(&(client, id));
        }
    }

    /// Drop deliveries nobody claimed within `age`.
    pub(super) fn sweep(&self, age: Duration) {
        let now = Instant::now();
        lock(&self.state).delivered.retain(|_, d| now.duration_since(d.at) < age);
    }
}

impl Worker {
    /// Wait for one of the `max_executions` slots; the wait is counted in
    /// `genie_queue_seconds` and returned as the call's `queue` span.
    pub(super) async fn execution_slot(&self) -> Result<(tokio::sync::OwnedSemaphorePermit, TraceSpan), RemoteError> {
        let queued = Instant::now();
        let Ok(slot) = self.executions.clone().acquire_owned().await else {
            return Err(RemoteError::new(ErrorKind::Exec, "the worker is shutting down"));
        };
        let now = Instant::now();
        self.metrics.queued(now.duration_since(queued).as_secs_f64());
        Ok((slot, span("exec", "queue".into(), queued, now, 0)))
    }

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
        let client = conn.client();
        // Check the call, reserve its activations and take the session's state and the device's
        // weights, shared; the session stays busy until its state is put back below.
        let ticket = lock(&self.ledger).begin_run(client, run, program, session, entry_name, &bindings, started)?;
        self.call_started.notify_waiters();
        let finish = |written: Option<Slots>| {
            lock(&self.ledger).end_run(client, run, session, written, Instant::now());
        };
        let deadline = started + timeout;
        // A part that only receives state (a handoff into this worker's slot while prefill runs
        // elsewhere) computes nothing: it is awaited on no thread and takes no execution slot, so
        // decode steps never queue behind another request's prefill.
        let plan = ticket.plan.clone();
        let device = ticket.device.clone();
        let entry = &plan.entries[ticket.entry_index];
        if let Some(part) = entry.plan(&device).filter(|p| receives_only(p)) {
            let received = self.receive_state(client, run, entry, part, &bindings, deadline).await;
            return match received {
                Ok((written, bytes_received, spans)) => {
                    finish(Some(written));
                    self.note_tensor_bytes();
                    let wall_s = started.elapsed().as_secs_f64();
                    Ok(RunStats { wall_s, exec_s: 0.0, bytes_sent: BTreeMap::new(), bytes_received, spans, batch: 0 })
                }
                Err(e) => {
                    finish(None);
                    Err(e)
                }
            };
        }
        // A decode step (an entry that reads state) joins the batch of steps waiting for the
        // same program and entry here, once every tensor it receives before its first send is
        // in: a client that never sends its inputs holds up no one else's step, and a batch
        // never waits for a peer whose own batch may be waiting for this worker (a stage that
        // sends to a peer and receives back, A → B → A, would otherwise close a cycle).
        let batchable = self.config.max_batch > 1 && entry.inputs.iter().any(|i| i.slot.is_some());
        let executed = if batchable {
            if let Some(part) = entry.plan(&device) {
                if let Err(e) = self.await_leading_inputs(client, run, part, deadline).await {
                    finish(None);
                    return Err(e);
                }
            }
            let key = BatchKey { digest: ticket.digest, entry: ticket.entry_index, device: ticket.device.clone() };
            let job = BatchJob { conn: conn.clone(), run, ticket, bindings, deadline, enqueued: Instant::now() };
            self.batched(key, job).await
        } else {
            match self.execute_alone(conn, run, ticket, bindings, deadline).await {
                Ok(executed) => executed,
                Err(e) => {
                    finish(None);
                    return Err(e);
                }
            }
        };
        let Executed { result, pending, received: bytes_received, exec_s, spans, batch } = executed;
        let mut spans = spans;
        // Every send must be flushed before the call counts as done.
        let mut bytes_sent: BTreeMap<String, u64> = BTreeMap::new();
        let mut send_error = None;
        for PendingSend { to, name, start, task } in pending {
            match task.await {
                Ok(Ok((n, end))) => {
                    self.metrics.sent(if to == CLIENT { "output" } else { "activation" }, n);
                    spans.push(span(&format!("{device}→{to}"), name, start, end, n));
                    *bytes_sent.entry(to).or_default() += n
                }
                Ok(Err(e)) => send_error = Some(e),
                Err(e) => send_error = Some(RemoteError::new(ErrorKind::Exec, format!("send task failed: {e}"))),
            }
        }
        if self.inbox.is_cancelled(client, run) {
            finish(None);
            return Err(RemoteError::new(ErrorKind::Cancelled, format!("run {run} was cancelled")));
        }
        match result {
            Ok(written) => {
                if let Some(e) = send_error {
                    finish(None);
                    return Err(e);
                }
                finish(Some(written));
                self.note_tensor_bytes();
                let wall_s = started.elapsed().as_secs_f64();
                Ok(RunStats { wall_s, exec_s, bytes_sent, bytes_received, spans, batch })
            }
            Err(e) => {
                finish(None);
                let kind = match &e {
                    ExecError::Mailbox(m) if m.contains("did not arrive") => ErrorKind::Timeout,
                    ExecError::Mailbox(m) if m.contains("cancelled") => ErrorKind::Cancelled,
                    ExecError::Mailbox(m) if m.contains("peer") => ErrorKind::PeerUnreachable,
                    _ => ErrorKind::Exec,
                };
                Err(RemoteError::new(kind, format!("{entry_name} on {device}: {e}")))
            }
        }
    }

    /// Execute one call on its own: a slot, then its device plan on a blocking thread.
    async fn execute_alone(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        run: u64,
        ticket: RunTicket<Tensor, SlotValue>,
        bindings: Bindings,
        deadline: Instant,
    ) -> Result<Executed, RemoteError> {
        let (slot, queued) = self.execution_slot().await?;
        let RunTicket { plan, device, peers, entry_index, state, weights, .. } = ticket;
        let mut resident = Resident::new(self.config.device);
        for (hash, weight) in weights {
            resident.insert(hash, weight);
        }
        let mut mailbox =
            WorkerMailbox::new(self.clone(), conn.clone(), run, plan.clone(), entry_index, peers, deadline);
        let outcome = self
            .exec
            .run(move || {
                let _slot = slot;
                let entry = &plan.entries[entry_index];
                let t = Instant::now();
                let result = match entry.plan(&device) {
                    Some(dplan) => exec::run_device_plan(entry, dplan, &bindings, &resident, &state, &mut mailbox),
                    None => Err(ExecError::Mailbox(format!("no steps on {device}"))),
                };
                let exec_s = t.elapsed().as_secs_f64();
                mailbox.close_region();
                let mut spans = vec![queued];
                spans.append(&mut mailbox.spans);
                Executed { result, pending: mailbox.pending, received: mailbox.received, exec_s, spans, batch: 1 }
            })
            .await;
        outcome.ok_or_else(|| RemoteError::new(ErrorKind::Exec, "the execution thread failed"))
    }

    /// One op, for per-op remoting. Its inputs are the tensors sent with it (their types
    /// declared in the request) and resident weights this client owns; its outputs' types
    /// come from the registry before anything runs, so the call's whole size is admitted (or
    /// refused) first. It waits for its inputs on no thread, then executes in turn.
    pub(super) async fn exec_op(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        call: u64,
        op: String,
        args: Vec<genie_ir::Arg>,
        inputs: Vec<OpInput>,
        outputs: u32,
    ) -> Result<Reply, RemoteError> {
        let client = conn.client();
        let bad = |why: String| RemoteError::new(ErrorKind::BadRequest, format!("{op}: {why}"));
        // A weight uploaded just before this call may still be on its stream: wait for it.
        let upload_deadline = Instant::now() + self.config.op_input_timeout;
        let weights: Vec<Option<Tensor>> = loop {
            let arrived = self.weight_arrived.notified();
            let found: Vec<Option<Tensor>> = {
                let ledger = lock(&self.ledger);
                inputs
                    .iter()
                    .map(|i| match i {
                        OpInput::Weight(h) => ledger.weight_of(client, h),
                        OpInput::Sent { .. } => None,
                    })
                    .collect()
            };
            let missing = inputs.iter().zip(&found).position(|(i, w)| matches!(i, OpInput::Weight(_)) && w.is_none());
            match missing {
                None => break found,
                Some(i) if Instant::now() >= upload_deadline => {
                    let OpInput::Weight(h) = &inputs[i] else { unreachable!("a weight input") };
                    return Err(RemoteError::new(
                        ErrorKind::MissingWeights,
                        format!("input {i}: weight {} is not one this client uploaded or proved", h.short()),
                    ));
                }
                Some(_) => {
                    let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
                }
            }
        };
        // Every input's type, then the outputs' from the registry: the call's size, up front.
        let mut types: HashMap<ValueId, TensorType> = HashMap::new();
        let mut sent: Vec<Option<(DType, Vec<i64>)>> = Vec::with_capacity(inputs.len());
        let mut in_bytes = 0u64;
        for (i, (input, weight)) in inputs.iter().zip(&weights).enumerate() {
            let ty = match (input, weight) {
                (OpInput::Sent { dtype, shape }, _) => {
                    let ty = TensorType::new(*dtype, shape);
                    in_bytes = in_bytes.saturating_add(ty.bytes().as_const().unwrap_or(i64::MAX).max(0) as u64);
                    sent.push(Some((*dtype, shape.clone())));
                    ty
                }
                (OpInput::Weight(_), Some(t)) => {
                    sent.push(None);
                    let dtype = crate::tensor::dtype_of(t.kind()).ok_or_else(|| bad(format!("input {i}: no dtype")))?;
                    TensorType::new(dtype, &t.size())
                }
                (OpInput::Weight(_), None) => return Err(bad(format!("input {i}: no weight"))),
            };
            types.insert(ValueId(i as u32), ty);
        }
        let lookup = |v: ValueId| types.get(&v);
        let out_types = genie_ir::registry::infer(&op, &args, &lookup).map_err(|e| bad(e.to_string()))?;
        if out_types.len() != outputs as usize {
            return Err(bad(format!("the op makes {} outputs, {outputs} were asked for", out_types.len())));
        }
        let mut out_bytes = 0u64;
        for (k, t) in out_types.iter().enumerate() {
            let b = t.bytes().as_const().ok_or_else(|| bad(format!("output {k} has no static size ({t})")))?;
            out_bytes = out_bytes.saturating_add(b.max(0) as u64);
        }
        lock(&self.ledger).begin_op(client, call, sent, in_bytes.saturating_add(out_bytes))?;
        self.call_started.notify_waiters();
        let result = self.exec_op_admitted(conn, call, op, args, inputs, weights, out_types).await;
        lock(&self.ledger).end_op(client, call);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn exec_op_admitted(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        call: u64,
        op: String,
        args: Vec<genie_ir::Arg>,
        inputs: Vec<OpInput>,
        weights: Vec<Option<Tensor>>,
        out_types: Vec<TensorType>,
    ) -> Result<Reply, RemoteError> {
        let client = conn.client();
        let deadline = Instant::now() + self.config.op_input_timeout;
        // Wait for the inputs without holding a thread.
        let mut tensors: HashMap<ValueId, Tensor> = HashMap::new();
        for (i, (input, weight)) in inputs.iter().zip(weights).enumerate() {
            let t = match (input, weight) {
                (_, Some(t)) => t,
                (_, None) => {
                    let key = InboxKey::Op { client, call, index: i as u32 };
                    let d = self
                        .take_async(key, deadline)
                        .await
                        .ok_or_else(|| RemoteError::new(ErrorKind::Timeout, format!("op input {i} did not arrive")))?;
                    self.to_device(d.tensor).map_err(|e| RemoteError::new(ErrorKind::Exec, e))?
                }
            };
            tensors.insert(ValueId(i as u32), t);
        }
        let (slot, _) = self.execution_slot().await?;
        let device = self.config.device;
        let result = self
            .exec
            .run(move || {
                let _slot = slot;
                let t = Instant::now();
                let lookup = |v: ValueId| tensors.get(&v).map(|t| t.shallow_clone());
                let out = exec::run_op(&op, &args, &lookup, &Bindings::new(), device)
                    .map_err(|e| RemoteError::new(ErrorKind::Exec, format!("{op}: {e}")))?;
                for (k, (t, want)) in out.iter().zip(&out_types).enumerate() {
                    let got = crate::tensor::dtype_of(t.kind()).map(|d| TensorType::new(d, &t.size()));
                    if got.as_ref() != Some(want) {
                        return Err(RemoteError::new(
                            ErrorKind::Exec,
                            format!("{op}: output {k} is {got:?}, the registry says {want}"),
                        ));
                    }
                }
                Ok::<_, RemoteError>((out, t.elapsed().as_secs_f64()))
            })
            .await
            .ok_or_else(|| RemoteError::new(ErrorKind::Exec, "the execution thread failed"))??;
        let (out, exec_s) = result;
        // Lay the outputs out as bytes first: tensors cannot be held across an await.
        let mut payloads = Vec::with_capacity(out.len());
        for t in out {
            payloads.push(
                streams::tensor_payload(&t).map_err(|e| RemoteError::new(ErrorKind::Exec, format!("output: {e}")))?,
            );
        }
        for (index, (dtype, shape, bytes)) in payloads.into_iter().enumerate() {
            let limit = self.config.stream_deadline(bytes.len() as u64);
            let purpose = Purpose::OpOutput { call, index: index as u32 };
            let send = streams::send_payload(&conn.connection, purpose, dtype, shape, bytes);
            let sent = tokio::time::timeout(limit, send)
                .await
                .map_err(|_| RemoteError::new(ErrorKind::Timeout, format!("sending output {index}: too slow")))?
                .map_err(|e| RemoteError::new(ErrorKind::Exec, format!("sending output {index}: {e}")))?;
            self.metrics.sent("output", sent);
        }
        Ok(Reply::OpDone { exec_s })
    }

    /// Carry out a part that only receives state: each tensor awaited asynchronously, checked
    /// against the plan's type, then saved into its slot.
    async fn receive_state(
        &self,
        client: ClientId,
        run: u64,
        entry: &genie_codegen::EntryPlan,
        part: &genie_codegen::DevicePlan,
        bindings: &Bindings,
        deadline: Instant,
    ) -> Result<ReceivedState, RemoteError> {
        use genie_codegen::Step;
        let mut live: HashMap<ValueId, Tensor> = HashMap::new();
        let mut written = BTreeMap::new();
        let mut received: BTreeMap<String, u64> = BTreeMap::new();
        let mut spans = Vec::new();
        let bad =
            |what: String| RemoteError::new(ErrorKind::Exec, format!("{} on {}: {what}", entry.name, part.device));
        for step in &part.steps {
            match step {
                Step::Recv { tensor, from, transfer } => {
                    let waited = Instant::now();
                    let key = InboxKey::Run { client, run, transfer: *transfer };
                    let delivered = loop {
                        let arrived = self.inbox.arrived_async.notified();
                        match self.inbox.take(key, Instant::now()) {
                            Ok(d) => break d,
                            Err(Missed::Cancelled) => {
                                return Err(RemoteError::new(ErrorKind::Cancelled, format!("run {run} was cancelled")));
                            }
                            Err(Missed::Timeout) if Instant::now() >= deadline => {
                                return Err(RemoteError::new(
                                    ErrorKind::Timeout,
                                    format!("transfer {transfer} ({tensor}) from {from} did not arrive in time"),
                                ));
                            }
                            Err(Missed::Timeout) => {
                                let wait =
                                    deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
                                let _ = tokio::time::timeout(wait, arrived).await;
                            }
                        }
                    };
                    spans.push(span("exec", format!("wait {tensor} from {from}"), waited, Instant::now(), 0));
                    let t = self.to_device(delivered.tensor).map_err(bad)?;
                    exec::check(entry, *tensor, &t, bindings).map_err(|e| bad(e.to_string()))?;
                    *received.entry(from.clone()).or_default() += tensor_bytes(&t);
                    live.insert(*tensor, t);
                }
                Step::SaveState { tensor, slot } => {
                    let t = live.get(tensor).ok_or_else(|| bad(format!("{tensor} is saved before it arrives")))?;
                    written.insert(*slot, SlotValue::new(t.shallow_clone()));
                }
                Step::Free { tensor } => {
                    live.remove(tensor);
                }
                Step::Exec { .. } | Step::Send { .. } => return Err(bad("not a receive-only part".into())),
            }
        }
        Ok((written, received, spans))
    }

    /// Wait (asynchronously) for a delivery, up to `deadline`.
    async fn take_async(&self, key: InboxKey, deadline: Instant) -> Option<Delivered> {
        loop {
            let arrived = self.inbox.arrived_async.notified();
            if let Ok(d) = self.inbox.take(key, Instant::now()) {
                return Some(d);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(100)), arrived).await;
        }
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
    pub(super) pending: Vec<PendingSend>,
    pub(super) received: BTreeMap<String, u64>,
    /// The run's timeline so far: regions of ops between transfers, waits for transfers.
    pub(super) spans: Vec<TraceSpan>,
    /// Where the current region of ops began (the last transfer, or the start).
    region_start: Instant,
}

/// A part of a call that only receives: its steps are receives, saves and frees.
fn receives_only(part: &genie_codegen::DevicePlan) -> bool {
    use genie_codegen::Step;
    part.steps.iter().all(|s| matches!(s, Step::Recv { .. } | Step::SaveState { .. } | Step::Free { .. }))
}

/// What executing one call left, alone or in a batch: its result, the sends still under way,
/// bytes received per sender, seconds executing, its spans, and the batch's size.
pub(super) struct Executed {
    pub result: Result<Slots, ExecError>,
    pub pending: Vec<PendingSend>,
    pub received: BTreeMap<String, u64>,
    pub exec_s: f64,
    pub spans: Vec<TraceSpan>,
    pub batch: u32,
}

/// What a receive-only part leaves: the slots it wrote, bytes received per sender, its spans.
type ReceivedState = (Slots, BTreeMap<String, u64>, Vec<TraceSpan>);

/// A send under way: its task ends with the bytes sent and when they were.
pub(super) struct PendingSend {
    to: String,
    name: String,
    start: Instant,
    task: tokio::task::JoinHandle<Result<(u64, Instant), RemoteError>>,
}

/// A span of this worker's part of a call, on its trace clock.
pub(super) fn span(track: &str, name: String, start: Instant, end: Instant, bytes: u64) -> TraceSpan {
    let start_us = trace::micros_since_epoch(start);
    TraceSpan {
        track: track.to_string(),
        name,
        start_us,
        dur_us: trace::micros_since_epoch(end).saturating_sub(start_us),
        bytes,
    }
}

impl WorkerMailbox {
    pub(super) fn new(
        worker: Arc<Worker>,
        conn: Arc<Conn>,
        run: u64,
        entry: Arc<ProgramPlan>,
        entry_index: usize,
        peers: HashMap<String, PeerInfo>,
        deadline: Instant,
    ) -> WorkerMailbox {
        WorkerMailbox {
            worker,
            conn,
            handle: tokio::runtime::Handle::current(),
            run,
            entry,
            entry_index,
            peers,
            deadline,
            pending: Vec::new(),
            received: BTreeMap::new(),
            spans: Vec::new(),
            region_start: Instant::now(),
        }
    }

    /// End the current region of ops here (a transfer, or the end of the run).
    pub(super) fn close_region(&mut self) {
        let now = Instant::now();
        if now > self.region_start {
            let name = format!("ops of {}", self.entry.entries[self.entry_index].name);
            self.spans.push(span("exec", name, self.region_start, now, 0));
        }
        self.region_start = now;
    }
}

impl Mailbox for WorkerMailbox {
    fn recv(&mut self, transfer: u32, tensor: genie_ir::ValueId) -> Result<Tensor, ExecError> {
        self.close_region();
        let key = InboxKey::Run { client: self.conn.client(), run: self.run, transfer };
        let entry = &self.entry.entries[self.entry_index];
        let from = entry.transfers.iter().find(|t| t.id == transfer).map(|t| t.from.clone()).unwrap_or_default();
        let waited = Instant::now();
        let taken = self.worker.inbox.take(key, self.deadline);
        self.spans.push(span("exec", format!("wait {tensor} from {from}"), waited, Instant::now(), 0));
        self.region_start = Instant::now();
        let d = taken.map_err(|missed| match missed {
            Missed::Timeout => {
                ExecError::Mailbox(format!("transfer {transfer} ({tensor}) from {from} did not arrive in time"))
            }
            Missed::Cancelled => ExecError::Mailbox(format!("run {} was cancelled", self.run)),
        })?;
        *self.received.entry(if from.is_empty() { d.from } else { from }).or_default() += tensor_bytes(&d.tensor);
        self.worker.to_device(d.tensor).map_err(ExecError::Mailbox)
    }

    fn send(&mut self, transfer: u32, tensor: genie_ir::ValueId, value: &Tensor) -> Result<(), ExecError> {
        self.close_region();
        let start = Instant::now();
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
        let limit = worker.config.stream_deadline(payload.len() as u64);
        let task = self.handle.spawn(async move {
            let too_slow = |what: String| RemoteError::new(ErrorKind::Timeout, format!("sending {what}: too slow"));
            if dest == CLIENT {
                let purpose = Purpose::Output { run, transfer };
                let send = streams::send_payload(&conn.connection, purpose, dtype, shape, payload);
                let n = tokio::time::timeout(limit, send)
                    .await
                    .map_err(|_| too_slow(format!("output {tensor} to the client")))?
                    .map_err(|e| {
                        RemoteError::new(ErrorKind::Exec, format!("sending output {tensor} to the client: {e}"))
                    })?;
                return Ok((n, Instant::now()));
            }
            let info = peer.ok_or_else(|| {
                RemoteError::new(ErrorKind::PeerUnreachable, format!("no address for peer {dest} in the program"))
            })?;
            let connection = worker.peer(&info).await?;
            // Tagged with the client's id on the receiving worker, which checks this worker's
            // certificate against the one the client's program pins for this device.
            let purpose = Purpose::Activation { client: info.client, run, transfer };
            let send = streams::send_payload(&connection, purpose, dtype, shape, payload);
            let n = tokio::time::timeout(limit, send)
                .await
                .map_err(|_| too_slow(format!("{tensor} to peer {dest}")))?
                .map_err(|e| {
                    RemoteError::new(ErrorKind::PeerUnreachable, format!("sending {tensor} to peer {dest}: {e}"))
                })?;
            Ok((n, Instant::now()))
        });
        self.pending.push(PendingSend { to, name: format!("send {tensor}"), start, task });
        self.region_start = Instant::now();
        Ok(())
    }
}
