//! The Hello/Welcome exchange that opens every connection, written once for its three users:
//! a client connecting to a worker ([`say_hello`] from `client.rs`), a worker connecting to a
//! peer worker ([`say_hello`] with [`Role::Peer`]), and a worker accepting either
//! ([`accept_hello`]).
//!
//! The connecting side sends a [`Hello`] (protocol version, token, role, and for a client that
//! reconnects the id and ticket it was given) as the first frame of the control stream. The
//! worker reads nothing else first, at most [`MAX_HELLO_FRAME`] bytes of it, and answers
//! [`Reply::Welcome`] (with the client's identity on this worker) or a [`Reply::Error`] refusal.

use std::time::Duration;

use quinn::{RecvStream, SendStream};

use crate::streams::{self, ReadFrame};
use crate::wire::{
    ErrorKind, Frame, Hello, RemoteError, Reply, Resume, Role, WireError, MAX_HELLO_FRAME, PROTOCOL_VERSION,
};

/// What the worker answered to a valid Hello.
#[derive(Clone, Debug, PartialEq)]
pub struct Welcome {
    pub version: u32,
    /// The worker's device (`cpu`, `cuda:0`).
    pub device: String,
    /// The worker's bound address.
    pub worker: String,
    /// A client's identity on this worker (its id and resume ticket); none for a peer.
    pub client: Option<Resume>,
    /// The worker's trace clock when it answered (see `trace.rs`).
    pub clock_us: u64,
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
    /// The worker refused (wrong token, other protocol version, unknown ticket).
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

/// Send `hello` on a fresh control stream and wait for the answer (at most `timeout`).
pub async fn say_hello(
    send: &mut SendStream,
    recv: &mut RecvStream,
    hello: &Hello,
    timeout: Duration,
) -> Result<Welcome, HandshakeError> {
    streams::write_frame(send, &Frame { id: 0, body: hello.clone() }).await.map_err(HandshakeError::Send)?;
    let answer = tokio::time::timeout(timeout, streams::read_frame::<Reply>(recv))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?;
    match answer {
        Ok(ReadFrame::Frame(Frame { body: Reply::Welcome { version, device, worker, client, clock_us }, .. })) => {
            Ok(Welcome { version, device, worker, client, clock_us })
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
    /// Not a valid Hello, or one the worker does not admit; the refusal was sent.
    #[error("{0}")]
    Refused(RemoteError),
}

/// What the worker knows about its side of a handshake.
pub struct Accepting<'a> {
    /// The cluster's token.
    pub token: &'a str,
    /// The worker's device and address, for the Welcome.
    pub device: &'a str,
    pub worker: &'a str,
}

/// Read the first frame of a connection's control stream (a [`Hello`] of at most
/// [`MAX_HELLO_FRAME`] bytes, nothing else is decoded) and answer it. A Hello of this protocol
/// version with the token is passed to `admit`, which gives the identity to welcome it with (a
/// client's id and ticket) or the refusal; anything else is refused. A failed write of the
/// answer is ignored: the connection is closed anyway after a refusal, and a lost Welcome shows
/// up as the other side's own error.
pub async fn accept_hello(
    send: &mut SendStream,
    recv: &mut RecvStream,
    worker: Accepting<'_>,
    admit: impl FnOnce(&Hello) -> Result<Option<Resume>, RemoteError>,
) -> Result<(Hello, Option<Resume>), AcceptError> {
    let first = match streams::read_frame_within::<Hello>(recv, MAX_HELLO_FRAME).await {
        Ok(first) => first,
        Err(e @ WireError::FrameTooLarge { .. }) => {
            let refusal = RemoteError::new(ErrorKind::FrameTooLarge, format!("the first frame must be a Hello: {e}"));
            let _ = streams::write_frame(send, &Frame { id: 0, body: Reply::Error(refusal.clone()) }).await;
            return Err(AcceptError::Refused(refusal));
        }
        Err(e @ WireError::Malformed { .. }) => {
            let refusal = RemoteError::new(ErrorKind::Unauthorized, format!("the first frame must be a Hello: {e}"));
            let _ = streams::write_frame(send, &Frame { id: 0, body: Reply::Error(refusal.clone()) }).await;
            return Err(AcceptError::Refused(refusal));
        }
        Err(e) => return Err(AcceptError::Read(e)),
    };
    let (id, verdict) = match first {
        ReadFrame::Frame(Frame { id, body }) => {
            let verdict = check_hello(&body, worker.token).and_then(|()| admit(&body)).map(|who| (body, who));
            (id, verdict)
        }
        ReadFrame::End => (0, Err(RemoteError::new(ErrorKind::Unauthorized, "no Hello"))),
    };
    let reply = match &verdict {
        Ok((_, client)) => Reply::Welcome {
            version: PROTOCOL_VERSION,
            device: worker.device.to_string(),
            worker: worker.worker.to_string(),
            client: client.clone(),
            clock_us: crate::trace::now_us(),
        },
        Err(e) => Reply::Error(e.clone()),
    };
    let _ = streams::write_frame(send, &Frame { id, body: reply }).await;
    verdict.map_err(AcceptError::Refused)
}

/// The version and token of a Hello.
fn check_hello(hello: &Hello, token: &str) -> Result<(), RemoteError> {
    if hello.version != PROTOCOL_VERSION {
        return Err(RemoteError::new(
            ErrorKind::VersionMismatch,
            format!("client speaks protocol {}, worker {PROTOCOL_VERSION}", hello.version),
        ));
    }
    if !constant_time_eq(hello.token.as_bytes(), token.as_bytes()) {
        return Err(RemoteError::new(ErrorKind::Unauthorized, "wrong token"));
    }
    if hello.role == Role::Peer && hello.resume.is_some() {
        return Err(RemoteError::new(ErrorKind::BadRequest, "a peer has no client identity to resume"));
    }
    Ok(())
}

/// Compare secrets in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u32, token: &str) -> Hello {
        Hello { version, token: token.into(), role: Role::Client, resume: None }
    }

    #[test]
    fn a_hello_with_the_token_and_version_passes() {
        assert!(check_hello(&hello(PROTOCOL_VERSION, "secret"), "secret").is_ok());
    }

    #[test]
    fn a_wrong_token_version_or_peer_resume_is_refused_with_its_reason() {
        let wrong = check_hello(&hello(PROTOCOL_VERSION, "guess"), "secret").unwrap_err();
        assert_eq!((wrong.kind, wrong.message.as_str()), (ErrorKind::Unauthorized, "wrong token"));
        assert_eq!(check_hello(&hello(PROTOCOL_VERSION, "secre"), "secret").unwrap_err().kind, ErrorKind::Unauthorized);
        let old = check_hello(&hello(PROTOCOL_VERSION + 1, "secret"), "secret").unwrap_err();
        assert_eq!(old.kind, ErrorKind::VersionMismatch);
        let resume = Resume { client: 1, ticket: genie_ir::HexBytes(vec![0; 32]) };
        let peer = Hello { role: Role::Peer, resume: Some(resume), ..hello(PROTOCOL_VERSION, "secret") };
        assert_eq!(check_hello(&peer, "secret").unwrap_err().kind, ErrorKind::BadRequest);
    }

    #[test]
    fn a_request_is_not_a_hello() {
        // A worker decodes the first frame as a Hello only: any request, however well formed,
        // fails to decode or fails the token check.
        let stats = crate::wire::encode_frame(&Frame { id: 3, body: crate::wire::Request::Stats }).unwrap();
        match crate::wire::decode_frame::<Hello>(&stats[4..]) {
            Err(WireError::Malformed { .. }) => {}
            Ok(frame) => assert!(check_hello(&frame.body, "secret").is_err()),
            Err(other) => panic!("{other}"),
        }
    }
}
