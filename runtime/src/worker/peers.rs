//! Worker-to-worker links: a run's activations at a cut go straight to the worker of the next
//! device, over a connection opened on first use: the peer's certificate pinned by the
//! fingerprint the client's program lists, this worker's own presented to the peer.

use std::net::SocketAddr;

use quinn::{Connection, RecvStream, SendStream};

use super::Worker;
use crate::handshake::{self, HandshakeError};
use crate::transport::{self, Trust};
use crate::wire::{ErrorKind, Hello, PeerInfo, RemoteError, Role, PROTOCOL_VERSION};

/// A connection to another worker, with the control stream kept open.
pub(super) struct PeerLink {
    connection: Connection,
    _control: (SendStream, RecvStream),
}

impl Worker {
    /// The connection to a peer device, opened (and authenticated) on first use.
    pub(super) async fn peer(&self, info: &PeerInfo) -> Result<Connection, RemoteError> {
        let mut peers = self.peers.lock().await;
        if let Some(link) = peers.get(&info.address) {
            if link.connection.close_reason().is_none() {
                return Ok(link.connection.clone());
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
        peers.insert(info.address.clone(), PeerLink { connection: connection.clone(), _control: (send, recv) });
        Ok(connection)
    }
}
