//! Connections: accepting them, the Hello, the control loop, and the tensor streams a client or
//! a peer sends.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use genie_codegen::CLIENT;
use genie_ir::{TensorType, WeightHash};
use quinn::{Connection, RecvStream, SendStream};
use tokio::sync::mpsc;

use super::runs::InboxKey;
use super::{lock, log_evictions, Worker};
use crate::exec;
use crate::handshake::{self, AcceptError};
use crate::streams::{self, ReadFrame};
use crate::transport;
use crate::wire::{ClientId, ErrorKind, Frame, Purpose, RemoteError, Reply, Request, Role, WireError};

/// Per-connection facts.
pub(super) struct Conn {
    pub(super) connection: Connection,
    pub(super) client: ClientId,
    pub(super) role: Role,
    pub(super) remote: SocketAddr,
}

impl Worker {
    /// Accept connections until the endpoint closes; each is served on its own task.
    pub(super) async fn serve(self: Arc<Self>) {
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

    async fn handle_connection(self: Arc<Self>, connection: Connection) {
        self.counters.connections.fetch_add(1, Ordering::Relaxed);
        let remote = connection.remote_address();
        let hello = tokio::time::timeout(self.config.hello_timeout, async {
            let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
            let address = self.endpoint.local_addr().map(|a| a.to_string()).unwrap_or_default();
            let token = &self.config.token;
            let verdict = handshake::accept_hello(&mut send, &mut recv, token, &self.device_label, &address).await;
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
        let hello = match verdict {
            Ok(hello) => hello,
            Err(AcceptError::Read(e)) => {
                tracing::debug!("{remote}: no hello: {e}");
                return;
            }
            Err(AcceptError::Refused(e)) => {
                tracing::warn!("refused a connection: {e}");
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                let _ = send.finish();
                // Let the refusal reach the client before closing.
                let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
                connection.close(2u32.into(), b"refused");
                return;
            }
        };
        let (client, role) = (hello.client, hello.role);
        if role == Role::Client {
            lock(&self.ledger).client_connected(client, Instant::now());
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
            lock(&self.ledger).client_disconnected(client, Instant::now());
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

    /// One tensor stream: a weight becomes resident (after its hash is checked), anything else
    /// waits in the inbox for the step that needs it.
    async fn receive_tensor(&self, conn: &Conn, recv: &mut RecvStream) -> Result<(), WireError> {
        let header = streams::read_tensor_header(recv, self.config.max_tensor_bytes).await?;
        let refuse = |why: &str| WireError::Malformed { what: "tensor stream", reason: why.to_string() };
        match (&header.purpose, conn.role) {
            (Purpose::Weight { .. } | Purpose::Input { .. } | Purpose::OpInput { .. }, Role::Client) => {}
            (Purpose::Activation { .. }, Role::Peer) => {}
            (p, role) => return Err(refuse(&format!("{p:?} is not accepted from a {role:?} connection"))),
        }
        if let Purpose::Weight { hash } = &header.purpose {
            let room = lock(&self.ledger).make_room_for_weight(hash, header.byte_len);
            log_evictions(&room.map_err(|e| refuse(&e.message))?);
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
                lock(&self.ledger).insert_weight(hash, on_device, Instant::now());
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
}
