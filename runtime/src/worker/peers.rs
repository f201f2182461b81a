//! Worker-to-worker links: a run's activations at a cut go straight to the worker of the next
//! device, over a connection opened (and authenticated, pinned by fingerprint) on first use.

use std::net::SocketAddr;

use quinn::{Connection, RecvStream, SendStream};

use super::Worker;
use crate::handshake::{self, HandshakeError};
use crate::transport::{self, Trust};
use crate::wire::{ErrorKind, PeerInfo, RemoteError, Role};

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
        let connection = transport::connect(&self.endpoint, addr, "genie-worker", &trust, &self.config.transport)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| unreachable(e.to_string()))?;
        // `None`: a peer's Hello has never had a timeout of its own (only the client's has);
        // adding one would change behaviour, so this split leaves it as it was.
        let token = &self.config.token;
        handshake::say_hello(&mut send, &mut recv, token, self.peer_id, Role::Peer, None).await.map_err(|e| {
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
