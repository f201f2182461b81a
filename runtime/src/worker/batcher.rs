//! Continuous batching of decode steps. Calls of an entry that reads state wait here per
//! (program digest, entry, device): programs loaded by different clients batch together when
//! their plans are identical. The first call to arrive at an idle queue starts it at once (a
//! batch of one: no call waits for a batch to fill); calls arriving while a batch executes
//! wait, and when it finishes (and an execution slot is free) everything waiting, up to
//! `max_batch`, forms the next batch, after a grace of at most a tenth of the last batch's
//! execution (2–20 ms) for the rest of that batch's sessions to come back. A batch window
//! (`genie worker --batch-window-ms`, off by default) makes every batch wait up to that long
//! for `max_batch` calls instead. Each batch runs on one blocking thread through
//! [`exec::run_device_plan_batched`]; each call then finishes as a call alone does (its sends
//! flushed, its state put back, its own `RunDone`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use genie_codegen::Step;
use tch::Tensor;

use super::connection::Conn;
use super::ledger::RunTicket;
use super::runs::{span, Executed, InboxKey, WorkerMailbox};
use super::{lock, Worker};
use crate::exec::{self, BatchCall, Bindings, ExecError, Resident, SlotValue};
use crate::wire::{ClientId, ErrorKind, RemoteError};

/// Which calls may execute together: the same plan (by digest), entry and device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct BatchKey {
    pub digest: [u8; 32],
    pub entry: usize,
    pub device: String,
}

/// A call waiting for its batch, admitted by the ledger (its ticket holds its reservation, its
/// session's state and the weights).
pub(super) struct BatchJob {
    pub conn: Arc<Conn>,
    pub run: u64,
    pub ticket: RunTicket<Tensor, SlotValue>,
    pub bindings: Bindings,
    pub deadline: Instant,
    pub enqueued: Instant,
}

struct Waiting {
    job: BatchJob,
    done: tokio::sync::oneshot::Sender<Executed>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// A task is forming and executing this queue's batches.
    running: bool,
}

/// The queues of calls waiting to be batched.
#[derive(Default)]
pub(super) struct Batcher {
    queues: Mutex<HashMap<BatchKey, Queue>>,
    /// A call joined a queue.
    joined: tokio::sync::Notify,
}

impl Worker {
    /// Execute `job` in the next batch of its key; returns when its batch has executed.
    pub(super) async fn batched(self: &Arc<Self>, key: BatchKey, job: BatchJob) -> Executed {
        let (done, result) = tokio::sync::oneshot::channel();
        let lead = {
            let mut queues = lock(&self.batcher.queues);
            let queue = queues.entry(key.clone()).or_default();
            queue.waiting.push_back(Waiting { job, done });
            !std::mem::replace(&mut queue.running, true)
        };
        self.batcher.joined.notify_waiters();
        if lead {
            let me = self.clone();
            tokio::spawn(async move { me.drain(key).await });
        }
        result.await.unwrap_or_else(|_| failed(ExecError::Mailbox("the batch was dropped".into()), 0))
    }

    /// Form and execute `key`'s batches until nothing waits.
    async fn drain(self: Arc<Self>, key: BatchKey) {
        // The size and execution time of the batch that just ran (none yet: the queue was idle).
        let mut last: Option<(usize, std::time::Duration)> = None;
        loop {
            {
                let mut queues = lock(&self.batcher.queues);
                if queues.get(&key).is_none_or(|q| q.waiting.is_empty()) {
                    queues.remove(&key);
                    return;
                }
            }
            // The sessions of the batch that just ran come back with their next steps within
            // moments of each other; the first back would otherwise start a batch without the
            // rest, which then run alone after it. Wait for them briefly: until as many calls
            // wait as the last batch held, or a tenth of its execution time (2 to 20 ms). A
            // queue left empty goes idle at once (the next call runs without waiting). With a
            // batch window, every batch waits up to the window for `max_batch` calls.
            let max_batch = self.config.max_batch.max(1);
            let fill = match last {
                _ if !self.config.batch_window.is_zero() => Some((max_batch, self.config.batch_window)),
                Some((size, took)) => Some((
                    size.min(max_batch),
                    (took / 10).clamp(std::time::Duration::from_millis(2), std::time::Duration::from_millis(20)),
                )),
                None => None,
            };
            if let Some((target, grace)) = fill {
                let until = tokio::time::Instant::now() + grace;
                loop {
                    let joined = self.batcher.joined.notified();
                    let waiting = lock(&self.batcher.queues).get(&key).map_or(0, |q| q.waiting.len());
                    if waiting >= target {
                        break;
                    }
                    if tokio::time::timeout_at(until, joined).await.is_err() {
                        break;
                    }
                }
            }
            // Only this task takes from the queue, so what waits now is still there after the
            // wait for a slot, with whatever joined meanwhile.
            let slot = self.execution_slot().await;
            let batch: Vec<Waiting> = {
                let mut queues = lock(&self.batcher.queues);
                let Some(queue) = queues.get_mut(&key) else { return };
                let take = queue.waiting.len().min(self.config.max_batch.max(1));
                queue.waiting.drain(..take).collect()
            };
            let (slot, _) = match slot {
                Ok(acquired) => acquired,
                Err(e) => {
                    for w in batch {
                        let _ = w.done.send(failed(ExecError::Mailbox(e.message.clone()), 0));
                    }
                    continue;
                }
            };
            // Calls cancelled or out of time while they waited leave now, unexecuted.
            let now = Instant::now();
            let (batch, gone): (Vec<Waiting>, Vec<Waiting>) = batch
                .into_iter()
                .partition(|w| !self.inbox.is_cancelled(w.job.conn.client(), w.job.run) && now < w.job.deadline);
            for w in gone {
                let why =
                    if now >= w.job.deadline { "did not arrive in time (it waited for a batch)" } else { "cancelled" };
                let _ = w.done.send(failed(ExecError::Mailbox(format!("run {} {why}", w.job.run)), 0));
            }
            if batch.is_empty() {
                continue;
            }
            let me = self.clone();
            let (size, started) = (batch.len(), Instant::now());
            let exec = me.clone();
            let executed = exec
                .exec
                .run(move || {
                    let _slot = slot;
                    me.execute_batch(batch);
                })
                .await;
            last = Some((size, started.elapsed()));
            if executed.is_none() {
                tracing::error!("a batch's execution thread failed");
            }
        }
    }

    /// Run one batch on this (blocking) thread and hand each call what it left.
    fn execute_batch(self: &Arc<Self>, batch: Vec<Waiting>) {
        let n = batch.len();
        let started = Instant::now();
        let first = &batch[0].job.ticket;
        let plan = first.plan.clone();
        let entry = &plan.entries[first.entry_index];
        let mut resident = Resident::new(self.config.device);
        for (hash, weight) in &first.weights {
            resident.insert(hash.clone(), weight.shallow_clone());
        }
        let mut mailboxes: Vec<WorkerMailbox> = batch
            .iter()
            .map(|w| {
                let t = &w.job.ticket;
                WorkerMailbox::new(
                    self.clone(),
                    w.job.conn.clone(),
                    w.job.run,
                    t.plan.clone(),
                    t.entry_index,
                    t.peers.clone(),
                    w.job.deadline,
                )
            })
            .collect();
        let results = match entry.plan(&first.device) {
            None => Err(ExecError::Mailbox(format!("no steps on {}", first.device))),
            Some(dplan) => {
                let mut calls: Vec<BatchCall> = batch
                    .iter()
                    .zip(mailboxes.iter_mut())
                    .map(|(w, m)| BatchCall { bindings: &w.job.bindings, state: &w.job.ticket.state, mailbox: m })
                    .collect();
                exec::run_device_plan_batched(entry, dplan, &resident, &mut calls)
            }
        };
        let exec_s = started.elapsed().as_secs_f64();
        self.metrics.batched(n);
        let mut results: Vec<Result<_, ExecError>> = match results {
            Ok(each) => each,
            Err(e) => {
                let message = e.to_string();
                (0..n).map(|_| Err(ExecError::Batch { calls: n, message: message.clone() })).collect()
            }
        };
        for (w, mut mailbox) in batch.into_iter().zip(mailboxes).rev() {
            mailbox.close_region();
            let result = results.pop().unwrap_or_else(|| Err(ExecError::Mailbox("no result".into())));
            // The wait for the batch and its execution slot.
            let mut spans = vec![span("exec", "queue".into(), w.job.enqueued, started, 0)];
            spans.append(&mut mailbox.spans);
            let executed = Executed {
                result,
                pending: std::mem::take(&mut mailbox.pending),
                received: std::mem::take(&mut mailbox.received),
                exec_s,
                spans,
                batch: n as u32,
            };
            let _ = w.done.send(executed);
        }
    }

    /// Wait, on no thread, until every tensor this call's part receives before its first send
    /// has arrived (or the call is cancelled, or its deadline passes).
    pub(super) async fn await_leading_inputs(
        &self,
        client: ClientId,
        run: u64,
        part: &genie_codegen::DevicePlan,
        deadline: Instant,
    ) -> Result<(), RemoteError> {
        let keys: Vec<InboxKey> = part
            .steps
            .iter()
            .take_while(|s| !matches!(s, Step::Send { .. }))
            .filter_map(|s| match s {
                Step::Recv { transfer, .. } => Some(InboxKey::Run { client, run, transfer: *transfer }),
                _ => None,
            })
            .collect();
        loop {
            let arrived = self.inbox.arrived_async.notified();
            if self.inbox.is_cancelled(client, run) {
                return Err(RemoteError::new(ErrorKind::Cancelled, format!("run {run} was cancelled")));
            }
            if self.inbox.holds_all(&keys) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RemoteError::new(
                    ErrorKind::Timeout,
                    format!("the inputs of run {run} did not arrive in time"),
                ));
            }
            let wait = (deadline - now).min(std::time::Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, arrived).await;
        }
    }
}

/// What a call that never executed leaves.
fn failed(e: ExecError, batch: u32) -> Executed {
    Executed {
        result: Err(e),
        pending: Vec::new(),
        received: Default::default(),
        exec_s: 0.0,
        spans: Vec::new(),
        batch,
    }
}
