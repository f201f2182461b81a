//! QUIC transport (quinn + rustls): tuned endpoints, TLS identities and trust, zero-copy stream
//! I/O, and a loopback benchmark against TCP.
//!
//! # Tuning (DESIGN.md "Transport notes")
//! Both sides use the same [`quinn::EndpointConfig`] (UDP payloads up to 65527 bytes accepted
//! and advertised) and UDP sockets with 16 MiB send and receive buffers. Each *connection* is
//! then tuned by the kind of path it runs on, decided by the peer's address ([`PathKind`]):
//!
//! | | loopback peer | any other peer |
//! |---|---|---|
//! | packet size | 65000 bytes from the first packet, MTU discovery off | 1200 at first, MTU discovery up to 1452 |
//! | segmentation offload (GSO) | off | on (quinn batches ≤ 10 packets, ≤ 14.5 KB) |
//! | initial congestion window | 1 MiB (≥ 2 × packet size) | quinn's default (14720 B ≥ 2 × 1452) |
//!
//! GSO must be off with 64 KB packets: a GSO batch of packets above about 6.5 KB exceeds 64 KiB,
//! the send fails with EMSGSIZE, quinn drops the packets silently and the transfer hangs. On
//! real networks 1452-byte packets fit the path MTU, so GSO stays on. A first packet larger
//! than the congestion window stalls the handshake, hence the 1 MiB window on loopback.
//!
//! A client picks the tuning by the address it connects to ([`connect`]). A server endpoint's
//! default tuning is chosen by its listen address ([`server_endpoint`]): one listening on a
//! loopback address serves loopback peers only; one listening on `0.0.0.0`/`[::]` or a real
//! interface uses network tuning for every connection accepted with `incoming.await`, and
//! [`accept`] picks per connection by the peer's address instead.
//!
//! Both sides: TLS 1.3 with aws-lc-rs, AES-128-GCM preferred, ALPN [`ALPN`]; at most
//! [`MAX_BIDI_STREAMS`] concurrent bidirectional and [`MAX_UNI_STREAMS`] concurrent
//! unidirectional streams opened by the peer (a server may start accepted connections lower, see
//! [`TransportOptions::accepted_uni_streams`]); keep-alive and idle timeout from
//! [`TransportOptions`]. Stream flow-control windows stay at quinn's defaults (bigger ones did
//! not help); the connection's window is bounded ([`TransportOptions::receive_window`]) so one
//! connection cannot make the other side buffer without limit. A server asks for, but does not
//! require, a client certificate: a worker connecting to its peers presents its own
//! ([`connect_as`]), which is how a peer proves which worker it is.
//!
//! Making an endpoint also raises glibc's malloc trim and mmap thresholds once per process
//! ([`tune_allocator`]): quinn allocates a 64 KB buffer per received datagram, and with the
//! default thresholds those buffers keep page-faulting (a third of the receiver's CPU time).
//!
//! Endpoints are made with [`quinn::Endpoint::new`], which spawns the endpoint driver on the
//! current tokio runtime: call [`server_endpoint`] and [`client_endpoint`] within one (a runtime
//! with I/O and time enabled).

pub mod bench;
mod tls;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use quinn::congestion::CubicConfig;
use quinn::{EndpointConfig, IdleTimeout, TokioRuntime, TransportConfig, VarInt};
use socket2::{Domain, Protocol, Socket, Type};

pub use tls::{fingerprint_of, peer_fingerprint, Identity, Trust};

/// The ALPN protocol of Genie's wire protocol, version 1.
pub const ALPN: &[u8] = b"genie/1";

/// Largest UDP payload an endpoint accepts and advertises (`max_udp_payload_size`). quinn's
/// default of 1472 caps the packet size whatever the MTU settings say.
pub const MAX_UDP_PAYLOAD: u16 = 65527;
/// Packet size (UDP payload) on loopback paths.
pub const LOOPBACK_MTU: u16 = 65000;
/// Initial congestion window on loopback paths (≥ 2 × [`LOOPBACK_MTU`]).
pub const LOOPBACK_INITIAL_WINDOW: u64 = 1 << 20;
/// Requested UDP send and receive buffer size. Linux caps it at `net.core.wmem_max` /
/// `net.core.rmem_max` unless the process has CAP_NET_ADMIN; a capped buffer is logged (warn).
pub const SOCKET_BUFFER_BYTES: usize = 16 << 20;
/// Concurrent bidirectional streams a peer may open. The runtime uses one long-lived control
/// stream per connection plus a few request/response streams, so 64 is ample. quinn sets up
/// state for every stream it allows at the handshake: a loopback handshake (both sides on one
/// thread) measured 0.46 ms with quinn's defaults (100/100), 0.51 ms with 64/1024, and 1.1 ms
/// with 10000 bidirectional streams.
pub const MAX_BIDI_STREAMS: u32 = 64;
/// Concurrent unidirectional streams a peer may open. Every tensor travels on its own stream,
/// and a weight upload or a wide cut sends hundreds at once; 1024 lets them all be in flight
/// without waiting for stream credit (credit comes back as streams finish, so this bounds
/// concurrency, not the total), for about 50 µs more per handshake than quinn's default of 100.
pub const MAX_UNI_STREAMS: u32 = 1024;

/// Errors of the transport. Each names what failed and where (address, file, stream).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A certificate or key file is missing, unreadable, not PEM, or unusable.
    #[error("certificate file {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    /// Generating a self-signed certificate failed (e.g. a name that is not a DNS name or IP).
    #[error("self-signed certificate for {names:?}: {reason}")]
    SelfSigned { names: Vec<String>, reason: String },
    /// A pinned fingerprint is not written `sha256:<64 hex digits>`.
    #[error("invalid certificate fingerprint {value:?}: expected sha256:<64 hex digits>")]
    InvalidFingerprint { value: String },
    /// Building a rustls configuration failed.
    #[error("TLS {what}: {reason}")]
    Tls { what: String, reason: String },
    /// A [`TransportOptions`] value quinn cannot use.
    #[error("transport options: {reason}")]
    Options { reason: String },
    /// An endpoint was made outside a tokio runtime.
    #[error("endpoint for {addr}: must be created within a tokio runtime (with I/O and time enabled)")]
    NoRuntime { addr: SocketAddr },
    /// Creating, configuring or binding the UDP socket (or the endpoint on it) failed.
    #[error("bind UDP socket to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// The connection could not be started (bad server name, address family the endpoint
    /// cannot reach, endpoint closing).
    #[error("connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The handshake (or accepting it) failed: refused, closed, or the certificate did not verify.
    #[error("handshake with {addr}: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    /// The server presented a certificate other than the pinned one.
    #[error("server {addr} presented certificate {got}, expected the pinned {expected}")]
    FingerprintMismatch { addr: SocketAddr, expected: String, got: String },
    /// Nothing completed within the time allowed (for `connect`: `connect_timeout`).
    #[error("{addr}: no answer within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    /// Writing to a send stream failed (connection lost, stream stopped by the peer).
    #[error("write to {stream}: {source}")]
    Write {
        stream: quinn::StreamId,
        #[source]
        source: quinn::WriteError,
    },
    /// Reading from a receive stream failed (connection lost, stream reset by the peer).
    #[error("read from {stream}: {source}")]
    Read {
        stream: quinn::StreamId,
        #[source]
        source: quinn::ReadError,
    },
    /// The peer finished a stream before sending the bytes expected.
    #[error("{stream} ended after {got} of {expected} bytes")]
    Truncated { stream: quinn::StreamId, expected: usize, got: usize },
    /// The benchmark could not run (bad arguments, a thread or runtime failed, data arrived wrong).
    #[error("transport benchmark ({what}): {reason}")]
    Bench { what: String, reason: String },
}

/// Tuned transport settings shared by both sides.
#[derive(Clone, Debug)]
pub struct TransportOptions {
    /// Keep-alive interval (a PING when the connection is otherwise quiet); zero disables it.
    /// Must be below `idle_timeout`. Default 2 s.
    pub keep_alive: Duration,
    /// A connection with nothing received for this long is closed; zero means never.
    /// Default 30 s.
    pub idle_timeout: Duration,
    /// How long [`connect`] waits for the handshake. Default 5 s.
    pub connect_timeout: Duration,
    /// Bytes the other side may have in flight, unread, on one connection (all its streams
    /// together): what a connection can make this side buffer. Default 128 MiB.
    pub receive_window: u64,
    /// Streams a client may open on a connection a server accepts, until the server raises the
    /// limits (a worker does once the client has said a valid Hello). Defaults:
    /// [`MAX_BIDI_STREAMS`] and [`MAX_UNI_STREAMS`].
    pub accepted_bidi_streams: u32,
    pub accepted_uni_streams: u32,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            keep_alive: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            receive_window: 128 << 20,
            accepted_bidi_streams: MAX_BIDI_STREAMS,
            accepted_uni_streams: MAX_UNI_STREAMS,
        }
    }
}

/// Which end of a connection a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Connections this side opens.
    Connecting,
    /// Connections a server accepts (stream limits from `accepted_*`).
    Accepting,
}

/// The kind of network path to a peer, which decides the connection's tuning (see the module
/// documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// The peer is on a loopback address (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`):
    /// 64 KB packets, no GSO, 1 MiB initial window.
    Loopback,
    /// Anything else: 1452-byte packets (after MTU discovery), GSO on, default window.
    Network,
}

impl PathKind {
    /// The kind of path to `addr`.
    pub fn of(addr: SocketAddr) -> PathKind {
        let loopback = match addr.ip() {
            IpAddr::V4(ip) => ip.is_loopback(),
            IpAddr::V6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        };
        if loopback {
            PathKind::Loopback
        } else {
            PathKind::Network
        }
    }
}

/// The endpoint configuration of both sides.
fn endpoint_config() -> EndpointConfig {
    let mut config = EndpointConfig::default();
    // Cannot fail: the value is within quinn's bounds (1200..=65527).
    if let Err(e) = config.max_udp_payload_size(MAX_UDP_PAYLOAD) {
        tracing::warn!("max_udp_payload_size({MAX_UDP_PAYLOAD}) refused: {e}");
    }
    config
}

/// The per-connection transport configuration for a path of `kind`.
fn transport_config(
    kind: PathKind,
    side: Side,
    options: &TransportOptions,
) -> Result<Arc<TransportConfig>, TransportError> {
    let idle = if options.idle_timeout.is_zero() {
        None
    } else {
        Some(IdleTimeout::try_from(options.idle_timeout).map_err(|_| TransportError::Options {
            reason: format!("idle_timeout {:?} is too large", options.idle_timeout),
        })?)
    };
    let keep_alive = (!options.keep_alive.is_zero()).then_some(options.keep_alive);
    if let (Some(k), false) = (keep_alive, options.idle_timeout.is_zero()) {
        if k >= options.idle_timeout {
            return Err(TransportError::Options {
                reason: format!(
                    "keep_alive {k:?} must be shorter than idle_timeout {:?} (or the connection idles out)",
                    options.idle_timeout
                ),
            });
        }
    }
    let (bidi, uni) = match side {
        Side::Connecting => (MAX_BIDI_STREAMS, MAX_UNI_STREAMS),
        Side::Accepting => (options.accepted_bidi_streams, options.accepted_uni_streams),
    };
    let window = VarInt::from_u64(options.receive_window).map_err(|_| TransportError::Options {
        reason: format!("receive_window {} is too large", options.receive_window),
    })?;
    let mut config = TransportConfig::default();
    config
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi))
        .max_concurrent_uni_streams(VarInt::from_u32(uni))
        .receive_window(window)
        .keep_alive_interval(keep_alive)
        .max_idle_timeout(idle);
    match kind {
        PathKind::Loopback => {
            let mut cubic = CubicConfig::default();
            cubic.initial_window(LOOPBACK_INITIAL_WINDOW);
            config
                .initial_mtu(LOOPBACK_MTU)
                .mtu_discovery_config(None)
                .enable_segmentation_offload(false)
                .congestion_controller_factory(Arc::new(cubic));
        }
        PathKind::Network => {
            // quinn's defaults: initial MTU 1200, discovery up to 1452, GSO on, Cubic with a
            // 14720-byte initial window. The discovery bound must stay under ~6.5 KB while GSO
            // is on (see the module documentation).
        }
    }
    Ok(Arc::new(config))
}

/// The quinn server configuration for `identity`, tuned for peers on `kind` paths.
fn server_config(
    identity: &Identity,
    kind: PathKind,
    options: &TransportOptions,
) -> Result<quinn::ServerConfig, TransportError> {
    let mut config = quinn::ServerConfig::with_crypto(identity.server_crypto());
    config.transport_config(transport_config(kind, Side::Accepting, options)?);
    Ok(config)
}

/// A UDP socket bound to `addr` with 16 MiB buffers (dual-stack when `addr` is `[::]`).
fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, TransportError> {
    let bind_err = |source| TransportError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind_err)?;
    if let SocketAddr::V6(v6) = addr {
        if v6.ip().is_unspecified() {
            socket.set_only_v6(false).map_err(bind_err)?;
        }
    }
    set_buffer_sizes(&socket, addr);
    socket.set_nonblocking(true).map_err(bind_err)?;
    socket.bind(&addr.into()).map_err(bind_err)?;
    Ok(socket.into())
}

/// Ask for [`SOCKET_BUFFER_BYTES`] in both directions; where the kernel caps it, try the
/// privileged `SO_*BUFFORCE` (Linux, CAP_NET_ADMIN), and warn if the result is still smaller.
fn set_buffer_sizes(socket: &Socket, addr: SocketAddr) {
    let want = SOCKET_BUFFER_BYTES;
    // Linux reports twice the size set (bookkeeping overhead); elsewhere the size itself.
    let enough = |got: io::Result<usize>| got.is_ok_and(|g| g >= want);
    if let Err(e) = socket.set_send_buffer_size(want) {
        tracing::debug!("SO_SNDBUF {want} on {addr}: {e}");
    }
    if !enough(socket.send_buffer_size()) {
        force_buffer_size(socket, false, want);
    }
    if let Err(e) = socket.set_recv_buffer_size(want) {
        tracing::debug!("SO_RCVBUF {want} on {addr}: {e}");
    }
    if !enough(socket.recv_buffer_size()) {
        force_buffer_size(socket, true, want);
    }
    let (send, recv) = (socket.send_buffer_size().unwrap_or(0), socket.recv_buffer_size().unwrap_or(0));
    if send < want || recv < want {
        tracing::warn!(
            "UDP socket for {addr}: buffers are {send} (send) / {recv} (receive) bytes, wanted {want}; \
             raise net.core.wmem_max / net.core.rmem_max to {want} or datagrams will be dropped under load"
        );
    } else {
        tracing::debug!("UDP socket for {addr}: buffers {send} (send) / {recv} (receive) bytes");
    }
}

#[cfg(target_os = "linux")]
fn force_buffer_size(socket: &Socket, receive: bool, bytes: usize) {
    use std::os::fd::AsRawFd;
    let option = if receive { libc::SO_RCVBUFFORCE } else { libc::SO_SNDBUFFORCE };
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: a valid socket descriptor, a live c_int and its exact size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("SO_{}BUFFORCE: {}", if receive { "RCV" } else { "SND" }, io::Error::last_os_error());
    }
}

#[cfg(not(target_os = "linux"))]
fn force_buffer_size(_socket: &Socket, _receive: bool, _bytes: usize) {}

/// glibc's `M_TRIM_THRESHOLD` set by [`tune_allocator`].
pub const MALLOC_TRIM_THRESHOLD: usize = 64 << 20;
/// glibc's `M_MMAP_THRESHOLD` set by [`tune_allocator`] (the ceiling of glibc's own dynamic
/// threshold).
pub const MALLOC_MMAP_THRESHOLD: usize = 32 << 20;

/// Keep glibc's allocator from handing freed memory back to the kernel after every datagram.
///
/// quinn copies each received datagram into a fresh 64 KB buffer and frees it once the stream
/// data is read. With glibc's default trim threshold (128 KiB) the top of a thread's heap is
/// returned to the kernel again and again, and every new buffer page-faults: measured on a
/// 2-core VM, 117 000 minor faults per GiB received, a third of the receiver's CPU time. This
/// sets `M_TRIM_THRESHOLD` to [`MALLOC_TRIM_THRESHOLD`] and `M_MMAP_THRESHOLD` to
/// [`MALLOC_MMAP_THRESHOLD`] (fixing a threshold disables glibc's dynamic adjustment, which
/// would otherwise raise both to these values after the first large free), so allocations under
/// 32 MiB reuse heap memory and up to 64 MiB of free heap is kept per arena.
///
/// Process-wide; called once by [`server_endpoint`] and [`client_endpoint`]. Does nothing
/// when the process does not use glibc malloc, and later calls do nothing.
pub fn tune_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            let set = |param, value: usize| {
                let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
                // SAFETY: mallopt takes two integers and only changes allocator parameters.
                if unsafe { libc::mallopt(param, value) } != 1 {
                    tracing::debug!("mallopt({param}, {value}) refused");
                }
            };
            set(libc::M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
            set(libc::M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
        }
    });
}

/// A quinn endpoint on a tuned socket bound to `addr`, spawned on the current tokio runtime.
fn endpoint_on(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint, TransportError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TransportError::NoRuntime { addr });
    }
    tune_allocator();
    let socket = udp_socket(addr)?;
    quinn::Endpoint::new(endpoint_config(), server, socket, Arc::new(TokioRuntime))
        .map_err(|source| TransportError::Bind { addr, source })
}

/// A server endpoint bound to `listen` (port 0 = any), tuned per DESIGN.md, ALPN `genie/1`.
///
/// Connections accepted with `incoming.await` get the tuning of the listen address's path kind
/// ([`PathKind::of`]`(listen)`): loopback tuning when listening on a loopback address, network
/// tuning otherwise (also for `0.0.0.0`/`[::]`). Use [`accept`] to tune each connection by its
/// peer's address instead. The endpoint can also open client connections (to peer workers) via
/// [`connect`]. Must be called within a tokio runtime.
pub fn server_endpoint(
    listen: SocketAddr,
    identity: &Identity,
    options: &TransportOptions,
) -> Result<quinn::Endpoint, TransportError> {
    let config = server_config(identity, PathKind::of(listen), options)?;
    endpoint_on(listen, Some(config))
}

/// Accept an incoming connection with the tuning of its peer's path ([`PathKind::of`] the
/// remote address), instead of the endpoint's default. For servers listening on `0.0.0.0` or
/// `[::]` that serve both local and remote clients.
pub fn accept(
    incoming: quinn::Incoming,
    identity: &Identity,
    options: &TransportOptions,
) -> Result<quinn::Connecting, TransportError> {
    let addr = incoming.remote_address();
    let config = server_config(identity, PathKind::of(addr), options)?;
    incoming.accept_with(Arc::new(config)).map_err(|e| TransportError::Handshake { addr, reason: e.to_string() })
}

/// A client-only endpoint, tuned the same way. It is bound to `[::]:0` as a dual-stack socket
/// (reaching IPv4 and IPv6 peers alike), or to `0.0.0.0:0` where the system has no IPv6 or no
/// dual-stack sockets. Must be called within a tokio runtime.
pub fn client_endpoint(options: &TransportOptions) -> Result<quinn::Endpoint, TransportError> {
    // Validate the options now rather than at the first connect.
    transport_config(PathKind::Network, Side::Connecting, options)?;
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
    match endpoint_on(v6, None) {
        Ok(endpoint) => Ok(endpoint),
        Err(e @ TransportError::NoRuntime { .. }) => Err(e),
        Err(e) => {
            tracing::debug!("no dual-stack client socket ({e}); using IPv4 only");
            endpoint_on(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), None)
        }
    }
}

/// Connect to `addr` with the given trust, within `options.connect_timeout`, tuned for the path
/// to `addr`. `server_name` is sent as SNI and, with [`Trust::CaFile`], must match the
/// certificate; with [`Trust::Fingerprint`] it is not checked (any valid DNS name or IP will do).
/// A server presenting another certificate than the pinned one is
/// [`TransportError::FingerprintMismatch`] naming both fingerprints.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    trust: &Trust,
    options: &TransportOptions,
) -> Result<quinn::Connection, TransportError> {
    connect_as(endpoint, addr, server_name, trust, options, None).await
}

/// [`connect`], presenting `identity`'s certificate as the client's (a worker connecting to a
/// peer proves which worker it is).
pub async fn connect_as(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    trust: &Trust,
    options: &TransportOptions,
    identity: Option<&Identity>,
) -> Result<quinn::Connection, TransportError> {
    let seen: tls::Seen = Arc::new(Mutex::new(None));
    let mut config = quinn::ClientConfig::new(tls::client_crypto(trust, &seen, identity)?);
    config.transport_config(transport_config(PathKind::of(addr), Side::Connecting, options)?);
    let connecting = endpoint
        .connect_with(config, addr, server_name)
        .map_err(|e| TransportError::Connect { addr, reason: e.to_string() })?;
    let outcome = tokio::time::timeout(options.connect_timeout, connecting).await;
    let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (outcome, trust, seen) {
        (Ok(Ok(connection)), _, _) => Ok(connection),
        (Ok(Err(_)), Trust::Fingerprint(expected), Some(got)) => {
            Err(TransportError::FingerprintMismatch { addr, expected: tls::normalise_fingerprint(expected), got })
        }
        (Ok(Err(e)), _, _) => Err(TransportError::Handshake { addr, reason: e.to_string() }),
        (Err(_), _, _) => Err(TransportError::Timeout { addr, after: options.connect_timeout }),
    }
}

/// Write a buffer to a send stream without copying: quinn keeps (slices of) `data` until the
/// peer acknowledges them. Does not finish the stream.
pub async fn write_bytes(stream: &mut quinn::SendStream, data: Bytes) -> Result<(), TransportError> {
    stream.write_chunk(data).await.map_err(|source| TransportError::Write { stream: stream.id(), source })
}

/// Read exactly `buf.len()` bytes into a caller-provided buffer (e.g. a tensor's memory): quinn
/// copies each received chunk straight into `buf`, with no intermediate allocation. A stream
/// that ends early is [`TransportError::Truncated`]. Not cancel-safe: after a cancel, the
/// number of bytes already consumed is unknown.
pub async fn read_into(stream: &mut quinn::RecvStream, buf: &mut [u8]) -> Result<(), TransportError> {
    stream.read_exact(buf).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(got) => {
            TransportError::Truncated { stream: stream.id(), expected: buf.len(), got }
        }
        quinn::ReadExactError::ReadError(source) => TransportError::Read { stream: stream.id(), source },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_kind_by_address() {
        let kind = |s: &str| PathKind::of(s.parse().unwrap());
        assert_eq!(kind("127.0.0.1:1"), PathKind::Loopback);
        assert_eq!(kind("127.3.2.1:1"), PathKind::Loopback);
        assert_eq!(kind("[::1]:1"), PathKind::Loopback);
        assert_eq!(kind("[::ffff:127.0.0.1]:1"), PathKind::Loopback);
        assert_eq!(kind("0.0.0.0:1"), PathKind::Network);
        assert_eq!(kind("[::]:1"), PathKind::Network);
        assert_eq!(kind("10.1.2.3:1"), PathKind::Network);
        assert_eq!(kind("[::ffff:10.0.0.1]:1"), PathKind::Network);
    }

    #[test]
    fn options_are_checked() {
        let bad = TransportOptions {
            keep_alive: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        assert!(matches!(
            transport_config(PathKind::Network, Side::Connecting, &bad),
            Err(TransportError::Options { .. })
        ));
        let huge = TransportOptions { idle_timeout: Duration::from_secs(u64::MAX / 4), ..Default::default() };
        assert!(matches!(
            transport_config(PathKind::Network, Side::Connecting, &huge),
            Err(TransportError::Options { .. })
        ));
        let never = TransportOptions { keep_alive: Duration::ZERO, idle_timeout: Duration::ZERO, ..Default::default() };
        assert!(transport_config(PathKind::Loopback, Side::Connecting, &never).is_ok());
        assert!(transport_config(PathKind::Loopback, Side::Accepting, &TransportOptions::default()).is_ok());
    }

    #[test]
    fn endpoints_need_a_runtime() {
        let id = Identity::self_signed(&["localhost".into()]).unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        let opts = TransportOptions::default();
        assert!(matches!(server_endpoint(addr, &id, &opts), Err(TransportError::NoRuntime { .. })));
        assert!(matches!(client_endpoint(&opts), Err(TransportError::NoRuntime { .. })));
    }
}
