//! Connections: accepting them, the Hello, the control loop, and the tensor streams a client or
//! a peer sends.
//!
//! Before its Hello is accepted a connection may hold one of at most
//! `max_unauthenticated` places, open one control stream and no tensor stream, and send at most
//! a few KiB (the Hello, decoded as nothing else), within `hello_timeout` of arriving. After
//! it, a client is known by the id this worker gave it, a peer by the certificate it presented;
//! every tensor stream is then accepted only for a call in flight that expects it (see
//! `Ledger::expect`), and must keep moving.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genie_ir::{TensorType, WeightHash};
use quinn::{Connection, RecvStream, SendStream, VarInt};
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use super::ledger::{Expectation, Sender, Upload};
use super::metrics::Refusal;
use super::runs::InboxKey;
use super::{lock, log_evictions, Worker};
use crate::exec;
use crate::handshake::{self, AcceptError, Accepting};
use crate::streams::{self, ReadFrame};
use crate::transport;
use crate::wire::{ClientId, ErrorKind, Frame, Hello, Purpose, RemoteError, Reply, Request, Resume, Role, WireError};

/// Per-connection facts.
pub(super) struct Conn {
    pub(super) connection: Connection,
    /// Who is on the other end: a client by its id here, a peer by its certificate.
    pub(super) sender: Sender,
    pub(super) remote: SocketAddr,
    /// Runs requested on this connection and not yet answered: when it closes they are
    /// cancelled (their reply and outputs had nowhere to go), so a client that died mid-call
    /// leaves no busy session or reservation waiting out the run's timeout.
    pub(super) runs: std::sync::Mutex<std::collections::HashSet<u64>>,
}

impl Conn {
    /// The client's id (a peer has none: 0, which no client is given).
    pub(super) fn client(&self) -> ClientId {
        match self.sender {
            Sender::Client(id) => id,
            Sender::Peer(_) => 0,
        }
    }
}

impl Worker {
    /// Accept connections until the endpoint closes; each is served on its own task.
    pub(super) async fn serve(self: Arc<Self>) {
        let sweeper = {
            let me = self.clone();
            tokio::spawn(async move { me.sweep_forever().await })
        };
        while let Some(incoming) = self.endpoint.accept().await {
            let Ok(place) = self.unauthenticated.clone().try_acquire_owned() else {
                self.counters.refused_unauthenticated.fetch_add(1, Ordering::Relaxed);
                self.metrics.refused(Refusal::Limit);
                tracing::debug!(
                    "{}: refused, {} connections are not yet past their Hello",
                    incoming.remote_address(),
                    self.config.max_unauthenticated
                );
                incoming.refuse();
                continue;
            };
            let me = self.clone();
            let connecting =
                match transport::accept(incoming, &self.identity, &super::accepting(&self.config.transport)) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("refused an incoming connection: {e}");
                        continue;
                    }
                };
            tokio::spawn(async move {
                // The TLS handshake and the Hello share one deadline.
                let deadline = tokio::time::Instant::now() + me.config.hello_timeout;
                match tokio::time::timeout_at(deadline, connecting).await {
                    Ok(Ok(connection)) => me.handle_connection(connection, place, deadline).await,
                    Ok(Err(e)) => tracing::debug!("handshake failed: {e}"),
                    Err(_) => tracing::debug!("TLS handshake not done within {:?}", me.config.hello_timeout),
                }
            });
        }
        sweeper.abort();
    }

    async fn handle_connection(
        self: Arc<Self>,
        connection: Connection,
        place: tokio::sync::OwnedSemaphorePermit,
        deadline: tokio::time::Instant,
    ) {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let remote = connection.remote_address();
        let presented = transport::peer_fingerprint(&connection);
        let hello = tokio::time::timeout_at(deadline, async {
            let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
            let address = self.endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let accepting = Accepting { token: &self.config.token, device: &self.device_label, worker: &address };
            let verdict =
                handshake::accept_hello(&mut send, &mut recv, accepting, |hello| self.admit(hello, &presented)).await;
            Ok::<_, String>((verdict, send, recv))
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
        let (hello, client) = match verdict {
            Ok(v) => v,
            Err(AcceptError::Read(e)) => {
                tracing::debug!("{remote}: no hello: {e}");
                return;
            }
            Err(AcceptError::Refused(e)) => {
                tracing::warn!("refused a connection from {remote}: {e}");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                self.metrics.refused(Refusal::of(e.kind).unwrap_or(Refusal::Unauthorized));
                let _ = send.finish();
                // Let the refusal reach the client before closing.
                let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                connection.close(2u32.into(), b"refused");
                return;
            }
        };
        drop(place);
        let sender = match (hello.role, client, presented) {
            (Role::Client, Some(who), _) => Sender::Client(who.client),
            (Role::Peer, None, Some(fingerprint)) => Sender::Peer(fingerprint),
            _ => return,
        };
        connection.set_max_concurrent_uni_streams(VarInt::from_u32(transport::MAX_UNI_STREAMS));
        let conn = Arc::new(Conn { connection: connection.clone(), sender, remote, runs: Default::default() });
        let uni = {
            let me = self.clone();
            let conn = conn.clone();
            tokio::spawn(async move { me.accept_tensor_streams(conn).await })
        };
        self.control_loop(conn.clone(), send, recv).await;
        uni.abort();
        if let Sender::Client(id) = conn.sender {
            for run in std::mem::take(&mut *lock(&conn.runs)) {
                tracing::debug!("client {id:016x} left during run {run}: cancelled");
                self.inbox.cancel(id, run);
            }
            lock(&self.ledger).client_disconnected(id, Instant::now());
        }
    }

    /// Who a valid Hello is: a client is admitted by the ledger (a new id, or the one its ticket
    /// resumes); a peer must have presented its certificate, which is what its activations are
    /// checked against.
    fn admit(&self, hello: &Hello, presented: &Option<String>) -> Result<Option<Resume>, RemoteError> {
        match hello.role {
            Role::Peer if presented.is_some() => Ok(None),
            Role::Peer => Err(RemoteError::new(ErrorKind::Unauthorized, "a peer worker must present its certificate")),
            Role::Client => {
                let mut ledger = lock(&self.ledger);
                // A fresh id is nonzero (0 stands for "a peer") and drawn again on the rare collision.
                let mut last = None;
                for _ in 0..4 {
                    let fresh = Resume {
                        client: rand::random::<u64>().max(1),
                        ticket: genie_ir::HexBytes(rand::random::<[u8; 32]>().to_vec()),
                    };
                    match ledger.admit_client(hello.resume.as_ref(), fresh, Instant::now()) {
                        Ok(who) => return Ok(Some(who)),
                        Err(e) if e.kind == ErrorKind::BadRequest => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Err(last.unwrap_or_else(|| RemoteError::new(ErrorKind::BadRequest, "no client id")))
            }
        }
    }

    /// Read requests until the stream ends; each is answered by its own task through one
    /// writer, at most `max_requests_per_connection` at once.
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
        let slots = Arc::new(Semaphore::new(self.config.max_requests_per_connection.max(1)));
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { break };
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
                        drop(slot);
                    });
                }
                Ok(ReadFrame::End) => break,
                Err(WireError::Malformed { what, reason }) => {
                    // The frame was read whole, so framing is intact: refuse it and go on.
                    tracing::warn!("{}: malformed {what}: {reason}", conn.remote);
                    let err = RemoteError::new(ErrorKind::Malformed, format!("malformed {what}: {reason}"));
                    self.metrics.refused(Refusal::Malformed);
                    let _ = tx.send(Frame { id: 0, body: Reply::Error(err) });
                }
                Err(e @ WireError::FrameTooLarge { .. }) => {
                    tracing::warn!("{}: {e}; closing the connection", conn.remote);
                    self.metrics.refused(Refusal::Malformed);
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
                let span = tracing::debug_span!("tensor_stream", from = %conn.remote);
                if let Err(e) = me.receive_tensor(&conn, &mut recv).instrument(span).await {
                    me.counters.refused_streams.fetch_add(1, Ordering::Relaxed);
                    me.metrics.refused(Refusal::Malformed);
                    tracing::warn!("{}: tensor stream refused: {e}", conn.remote);
                    let _ = recv.stop(4u32.into());
                }
            });
        }
    }

    /// One tensor stream. A weight (from a client) becomes resident after its hash is checked,
    /// and the uploader's. Anything else must be expected by a call in flight (waiting a little
    /// for a call whose request is still on its way), with the type the call gives, before its
    /// payload is read; then it waits in the inbox for the step that needs it. The payload must
    /// keep arriving at the configured rate.
    async fn receive_tensor(&self, conn: &Conn, recv: &mut RecvStream) -> Result<(), WireError> {
        let refuse = |why: &str| WireError::Malformed { what: "tensor stream", reason: why.to_string() };
        let header = tokio::time::timeout(
            self.config.stream_grace,
            streams::read_tensor_header(recv, self.config.max_tensor_bytes),
        )
        .await
        .map_err(|_| refuse("no header in time"))??;
        let mut upload = None;
        match (&header.purpose, &conn.sender) {
            (Purpose::Weight { hash }, Sender::Client(client)) => {
                let (admitted, evicted) =
                    lock(&self.ledger).admit_upload(*client, hash, header.byte_len).map_err(|e| refuse(&e.message))?;
                log_evictions(&evicted);
                upload = Some(UploadGuard { ledger: &self.ledger, upload: Some(admitted) });
            }
            (Purpose::Output { .. } | Purpose::OpOutput { .. }, _) => {
                return Err(refuse("outputs flow to clients only"))
            }
            (purpose, sender) => {
                let wait_until = Instant::now() + self.config.early_tensor_wait;
                loop {
                    let started = self.call_started.notified();
                    match lock(&self.ledger).expect(purpose, sender, header.dtype, &header.shape) {
                        Expectation::Accept => break,
                        Expectation::Refuse(why) => return Err(refuse(&why)),
                        Expectation::NotYet if Instant::now() >= wait_until => {
                            return Err(refuse(&format!("no call in flight expects {purpose:?}")))
                        }
                        Expectation::NotYet => {}
                    }
                    let _ = tokio::time::timeout(Duration::from_millis(100), started).await;
                }
            }
        }
        let read = streams::read_tensor_payload(recv, &header);
        let tensor = tokio::time::timeout(self.config.stream_deadline(header.byte_len), read)
            .await
            .map_err(|_| refuse(&format!("{} bytes did not arrive in time", header.byte_len)))??;
        self.metrics.received(&header.purpose, header.byte_len);
        match (header.purpose, &conn.sender) {
            (Purpose::Weight { hash }, Sender::Client(client)) => {
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
                lock(&self.ledger).insert_weight(hash, on_device, Some(*client), Instant::now());
                drop(upload);
                self.note_tensor_bytes();
                self.weight_arrived.notify_waiters();
            }
            (Purpose::Input { run, transfer }, Sender::Client(client)) => {
                let key = InboxKey::Run { client: *client, run, transfer };
                if !self.inbox.deliver(key, tensor, "client".into()) {
                    return Err(refuse(&format!("input {transfer} of run {run} was already delivered")));
                }
            }
            (Purpose::OpInput { call, index }, Sender::Client(client)) => {
                if !self.inbox.deliver(InboxKey::Op { client: *client, call, index }, tensor, "client".into()) {
                    return Err(refuse(&format!("input {index} of op call {call} was already delivered")));
                }
            }
            (Purpose::Activation { client, run, transfer }, Sender::Peer(_)) => {
                if !self.inbox.deliver(InboxKey::Run { client, run, transfer }, tensor, conn.remote.to_string()) {
                    return Err(refuse(&format!("activation {transfer} of run {run} was already delivered")));
                }
            }
            (purpose, _) => return Err(refuse(&format!("{purpose:?} is not accepted on this connection"))),
        }
        Ok(())
    }
}

/// Hands an admitted upload back to the ledger however its stream ends.
struct UploadGuard<'a> {
    ledger: &'a std::sync::Mutex<super::ledger::Ledger<tch::Tensor, crate::exec::SlotValue>>,
    upload: Option<Upload>,
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        if let Some(u) = self.upload.take() {
            lock(self.ledger).upload_done(u);
        }
    }
}
