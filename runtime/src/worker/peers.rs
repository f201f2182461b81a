//! Worker-to-worker links: a run's activations at a cut go straight to the worker of the next
//! device, over a connection opened on first use: the peer's certificate pinned by the
//! fingerprint the client's program lists, this worker's own presented to the peer.
//!
//! A link is kept per peer address *and* the client's id there. The id is issued by the peer
//! process that admitted the client, so a peer that restarts at the same address (with the
//! same certificate, `--state-dir`) is reached by a new link as soon as a client's program
//! names it anew, never through a connection to the process that died (which would only fail
//! at its idle timeout). Links unused for a while are closed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use quinn::{Connection, RecvStream, SendStream};

use super::Worker;
use crate::handshake::{self, HandshakeError};
use crate::transport::{self, Trust};
use crate::wire::{ErrorKind, Hello, PeerInfo, RemoteError, Role, PROTOCOL_VERSION};

/// A link's key: the peer's address and the client's id on that peer.
pub(super) type PeerKey = (String, crate::wire::ClientId);

/// How long a link may go unused before it is closed (the next use opens a new one).
const UNUSED_LINK: Duration = Duration::from_secs(120);
/// The most links kept open at once: past it, the least recently used is closed (a client's
/// programs choose the peer entries, so their number is not the worker's to trust).
const MAX_LINKS: usize = 256;

/// A connection to another worker, with the control stream kept open.
pub(super) struct PeerLink {
    connection: Connection,
    _control: (SendStream, RecvStream),
    last_used: Instant,
}

impl Worker {
    /// The connection to a peer device, opened (and authenticated) on first use.
    pub(super) async fn peer(&self, info: &PeerInfo) -> Result<Connection, RemoteError> {
        let mut peers = self.peers.lock().await;
        let key = (info.address.clone(), info.client);
        if let Some(link) = peers.get_mut(&key) {
            if link.connection.close_reason().is_none() {
                link.last_used = Instant::now();
                return Ok(link.connection.clone());
            }
        }
        peers.retain(|_, link| {
            let keep = link.connection.close_reason().is_none() && link.last_used.elapsed() < UNUSED_LINK;
            if !keep {
                link.connection.close(0u32.into(), b"unused");
            }
            keep
        });
        if peers.len() >= MAX_LINKS {
            let oldest = peers.iter().min_by_key(|(_, link)| link.last_used).map(|(k, _)| k.clone());
            if let Some(link) = oldest.and_then(|k| peers.remove(&k)) {
                link.connection.close(0u32.into(), b"too many links");
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
        // This worker's own certificate proves to the peer which worker sends its activations.
        let options = &self.config.transport;
        let identity = Some(&self.identity);
        let connection = transport::connect_as(&self.endpoint, addr, "genie-worker", &trust, options, identity)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| unreachable(e.to_string()))?;
        let hello =
            Hello { version: PROTOCOL_VERSION, token: self.config.token.clone(), role: Role::Peer, resume: None };
        handshake::say_hello(&mut send, &mut recv, &hello, self.config.hello_timeout).await.map_err(|e| {
            unreachable(match e {
                HandshakeError::Send(e) | HandshakeError::Read(e) => e.to_string(),
                HandshakeError::Refused(e) => e.to_string(),
                HandshakeError::Closed | HandshakeError::Unexpected { .. } => "no welcome".into(),
                e @ HandshakeError::Timeout(_) => e.to_string(),
            })
        })?;
        let link = PeerLink { connection: connection.clone(), _control: (send, recv), last_used: Instant::now() };
        peers.insert(key, link);
        Ok(connection)
    }
}
