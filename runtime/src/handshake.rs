//! The Hello/Welcome exchange that opens every connection, written once for its three users:
//! a client connecting to a worker ([`say_hello`] from `client.rs`), a worker connecting to a
//! peer worker ([`say_hello`] with [`Role::Peer`]), and a worker accepting either
//! ([`accept_hello`]).
//!
//! The connecting side sends [`Request::Hello`] (protocol version, token, client id, role) as the
//! first frame of the control stream; the worker answers [`Reply::Welcome`] or a
//! [`Reply::Error`] refusal. Nothing else is accepted on a connection before a valid Hello.

use std::time::Duration;

use quinn::{RecvStream, SendStream};

use crate::streams::{self, ReadFrame};
use crate::wire::{ClientId, ErrorKind, Frame, RemoteError, Reply, Request, Role, WireError, PROTOCOL_VERSION};

/// What the worker answered to a valid Hello.
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    pub version: u32,
    /// The worker's device (`cpu`, `cuda:0`).
    pub device: String,
    /// The worker's bound address.
    pub worker: String,
}

/// Who said a valid Hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    pub client: ClientId,
    pub role: Role,
}

/// Why saying Hello failed. Callers map these onto their own errors (`ClientError`, a peer's
/// `PeerUnreachable`).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Writing the Hello failed.
    #[error("sending Hello: {0}")]
    Send(#[source] WireError),
    /// No answer within the timeout.
    #[error("no answer to Hello within {0:?}")]
    Timeout(Duration),
    /// The worker refused (wrong token, other protocol version).
    #[error("refused: {0}")]
    Refused(RemoteError),
    /// The stream ended before any answer.
    #[error("closed during the handshake")]
    Closed,
    /// An answer that is neither Welcome nor an error (`reply` is its debug form).
    #[error("{reply} to Hello")]
    Unexpected { reply: String },
    /// Reading the answer failed.
    #[error("reading the answer to Hello: {0}")]
    Read(#[source] WireError),
}

/// Send the Hello on a fresh control stream and wait for the answer (at most `timeout`, if
/// given; the wait for the answer only, as the write is bounded by the transport).
pub async fn say_hello(
    send: &mut SendStream,
    recv: &mut RecvStream,
    token: &str,
    client: ClientId,
    role: Role,
    timeout: Option<Duration>,
) -> Result<Welcome, HandshakeError> {
    let hello = Request::Hello { version: PROTOCOL_VERSION, token: token.to_string(), client, role };
    streams::write_frame(send, &Frame { id: 0, body: hello }).await.map_err(HandshakeError::Send)?;
    let answer = match timeout {
        Some(after) => tokio::time::timeout(after, streams::read_frame::<Reply>(recv))
            .await
            .map_err(|_| HandshakeError::Timeout(after))?,
        None => streams::read_frame::<Reply>(recv).await,
    };
    match answer {
        Ok(ReadFrame::Frame(Frame { body: Reply::Welcome { version, device, worker }, .. })) => {
            Ok(Welcome { version, device, worker })
        }
        Ok(ReadFrame::Frame(Frame { body: Reply::Error(error), .. })) => Err(HandshakeError::Refused(error)),
        Ok(ReadFrame::End) => Err(HandshakeError::Closed),
        Ok(ReadFrame::Frame(other)) => Err(HandshakeError::Unexpected { reply: format!("{other:?}") }),
        Err(e) => Err(HandshakeError::Read(e)),
    }
}

/// Why a worker did not accept a connection's Hello.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The first frame could not be read (nothing was answered).
    #[error("{0}")]
    Read(#[source] WireError),
    /// Not a valid Hello; the refusal was sent.
    #[error("{0}")]
    Refused(RemoteError),
}

/// Read the first frame of a connection's control stream and answer it: Welcome (naming
/// `device` and the `worker` address) if it is a Hello of this protocol version with `token`,
/// else a refusal. A failed write of the answer is ignored: the connection is closed anyway
/// after a refusal, and a lost Welcome shows up as the client's own error.
pub async fn accept_hello(
    send: &mut SendStream,
    recv: &mut RecvStream,
    token: &str,
    device: &str,
    worker: &str,
) -> Result<Hello, AcceptError> {
    let first = streams::read_frame::<Request>(recv).await.map_err(AcceptError::Read)?;
    let (id, verdict) = check_hello(first, token);
    let reply = match &verdict {
        Ok(_) => Reply::Welcome { version: PROTOCOL_VERSION, device: device.to_string(), worker: worker.to_string() },
        Err(e) => Reply::Error(e.clone()),
    };
    let _ = streams::write_frame(send, &Frame { id, body: reply }).await;
    verdict.map_err(AcceptError::Refused)
}

/// The verdict on a connection's first frame, with the id to answer it under.
fn check_hello(first: ReadFrame<Request>, token: &str) -> (u64, Result<Hello, RemoteError>) {
    match first {
        ReadFrame::Frame(Frame { id, body: Request::Hello { version, token: theirs, client, role } }) => {
            let verdict = if version != PROTOCOL_VERSION {
                Err(RemoteError::new(
                    ErrorKind::VersionMismatch,
                    format!("client speaks protocol {version}, worker {PROTOCOL_VERSION}"),
                ))
            } else if !constant_time_eq(theirs.as_bytes(), token.as_bytes()) {
                Err(RemoteError::new(ErrorKind::Unauthorized, "wrong token"))
            } else {
                Ok(Hello { client, role })
            };
            (id, verdict)
        }
        ReadFrame::Frame(Frame { id, .. }) => {
            (id, Err(RemoteError::new(ErrorKind::Unauthorized, "the first request must be Hello with the token")))
        }
        ReadFrame::End => (0, Err(RemoteError::new(ErrorKind::Unauthorized, "no Hello"))),
    }
}

/// Compare tokens in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u32, token: &str) -> ReadFrame<Request> {
        ReadFrame::Frame(Frame {
            id: 7,
            body: Request::Hello { version, token: token.into(), client: 42, role: Role::Peer },
        })
    }

    #[test]
    fn a_hello_with_the_token_and_version_is_accepted_under_its_id() {
        let (id, verdict) = check_hello(hello(PROTOCOL_VERSION, "secret"), "secret");
        assert_eq!((id, verdict.unwrap()), (7, Hello { client: 42, role: Role::Peer }));
    }

    #[test]
    fn anything_else_first_is_refused_with_its_reason() {
        let refusal = |first, token| check_hello(first, token).1.unwrap_err();
        let wrong = refusal(hello(PROTOCOL_VERSION, "guess"), "secret");
        assert_eq!((wrong.kind, wrong.message.as_str()), (ErrorKind::Unauthorized, "wrong token"));
        assert_eq!(refusal(hello(PROTOCOL_VERSION, "secre"), "secret").kind, ErrorKind::Unauthorized);
        let old = refusal(hello(PROTOCOL_VERSION + 1, "secret"), "secret");
        assert_eq!(old.kind, ErrorKind::VersionMismatch);
        let stats = ReadFrame::Frame(Frame { id: 3, body: Request::Stats });
        let (id, verdict) = check_hello(stats, "secret");
        assert_eq!((id, verdict.unwrap_err().kind), (3, ErrorKind::Unauthorized));
        assert_eq!(refusal(ReadFrame::End, "secret").message, "no Hello");
    }
}
