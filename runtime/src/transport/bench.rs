//! Loopback benchmark of the transport against plain TCP (used by `genie bench`).
//!
//! Each protocol runs with one thread and one current-thread tokio runtime per side (DESIGN.md:
//! one runtime thread per endpoint side), over one long-lived connection:
//!
//! - **bulk**: `bulk_bytes` on one stream, timed at the sender from opening the stream until the
//!   receiver's one-byte acknowledgement (sent once every byte is in its buffer) arrives; the
//!   median of `runs`. QUIC goes through the runtime's own path: [`server_endpoint`],
//!   [`client_endpoint`], [`connect`] with a pinned self-signed identity, a fresh unidirectional
//!   stream per run (as tensors travel), [`write_bytes`] from one shared buffer and [`read_into`]
//!   a preallocated one. TCP: tokio `TcpStream`s with default buffers, `write_all`/`read_exact`.
//!   The received bytes are compared with the sent ones after the timed runs.
//! - **round trip**: a 64-byte request answered by a 64-byte response, repeated on **one
//!   long-lived bidirectional stream** (for QUIC; as the runtime's control messages travel) or
//!   the TCP connection (`TCP_NODELAY`); the median of `rtt_samples` after a short warm-up.
//!   The two sides are on different threads, so every round trip includes two cross-thread
//!   wake-ups.
//!
//! Every step has a deadline, so a stalled transfer ends in [`TransportError::Timeout`] instead
//! of hanging.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    client_endpoint, connect, read_into, server_endpoint, write_bytes, Identity, TransportError, TransportOptions,
    Trust,
};

/// What [`measure`] found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransportFigures {
    /// QUIC bulk throughput, in gigabits per second (10⁹ bit/s; divide by 8 for GB/s).
    pub quic_bulk_gbps: f64,
    /// TCP bulk throughput, in gigabits per second (10⁹ bit/s; divide by 8 for GB/s).
    pub tcp_bulk_gbps: f64,
    /// QUIC 64-byte request/response round trip, microseconds.
    pub quic_rtt_us: f64,
    /// TCP 64-byte request/response round trip, microseconds.
    pub tcp_rtt_us: f64,
}

/// Size of a round-trip message.
const RTT_MESSAGE: usize = 64;
/// Slowest throughput a transfer may have before it counts as stalled (bytes per second).
const STALLED_BELOW: u64 = 20_000_000;
/// Deadline for steps that move no bulk data (handshake, accept, a round trip).
const STEP: Duration = Duration::from_secs(20);

/// Bulk throughput and small-message round trip of QUIC (tuned, TLS) and TCP over loopback.
///
/// `bulk_bytes`: the size of each bulk transfer (the process holds about three times this much
/// memory while it runs); `runs`: bulk transfers per protocol (median taken); `rtt_samples`:
/// round trips per protocol (median taken). All must be positive. Blocking: it runs its own
/// threads and runtimes, so call it from a plain thread (in async code, `spawn_blocking`).
pub fn measure(bulk_bytes: u64, runs: usize, rtt_samples: usize) -> Result<TransportFigures, TransportError> {
    let bad = |reason: String| TransportError::Bench { what: "arguments".into(), reason };
    if bulk_bytes == 0 || runs == 0 || rtt_samples == 0 {
        return Err(bad(format!(
            "bulk_bytes ({bulk_bytes}), runs ({runs}) and rtt_samples ({rtt_samples}) must be positive"
        )));
    }
    let len = usize::try_from(bulk_bytes).map_err(|_| bad(format!("bulk_bytes {bulk_bytes} exceeds memory")))?;
    let payload = Bytes::from(pattern(len));
    let plan = Plan { payload, runs, rtt_samples, warmup: (rtt_samples / 10).clamp(1, 200) };

    let quic = run_sides("QUIC", &plan, quic::server, quic::client)?;
    let tcp = run_sides("TCP", &plan, tcp::server, tcp::client)?;
    tracing::debug!(
        "bulk runs of {len} bytes: QUIC {:?}, TCP {:?}",
        quic.bulk.iter().map(|d| gbps(len, *d)).collect::<Vec<_>>(),
        tcp.bulk.iter().map(|d| gbps(len, *d)).collect::<Vec<_>>()
    );
    Ok(TransportFigures {
        quic_bulk_gbps: gbps(len, median(quic.bulk)),
        tcp_bulk_gbps: gbps(len, median(tcp.bulk)),
        quic_rtt_us: micros(median(quic.rtt)),
        tcp_rtt_us: micros(median(tcp.rtt)),
    })
}

/// What both sides of one protocol do.
#[derive(Clone)]
struct Plan {
    payload: Bytes,
    runs: usize,
    rtt_samples: usize,
    warmup: usize,
}

impl Plan {
    fn bulk_deadline(&self) -> Duration {
        STEP + Duration::from_secs(self.payload.len() as u64 / STALLED_BELOW)
    }

    fn round_trips(&self) -> usize {
        self.warmup + self.rtt_samples
    }
}

/// Where the server listens, and what the client needs to trust it (QUIC: the pinned
/// fingerprint), or why it could not start.
type Ready = mpsc::SyncSender<Result<(SocketAddr, String), TransportError>>;

/// Timings taken by the client side.
#[derive(Default)]
struct Samples {
    bulk: Vec<Duration>,
    rtt: Vec<Duration>,
}

/// A deterministic, non-constant fill.
fn pattern(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    v
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn gbps(bytes: usize, took: Duration) -> f64 {
    bytes as f64 * 8.0 / took.as_secs_f64().max(1e-9) / 1e9
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn bench_err(what: &str, reason: impl ToString) -> TransportError {
    TransportError::Bench { what: what.to_string(), reason: reason.to_string() }
}

/// `fut` within `limit`, or `Timeout` naming `addr`.
async fn within<T>(
    addr: SocketAddr,
    limit: Duration,
    fut: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    tokio::time::timeout(limit, fut).await.unwrap_or(Err(TransportError::Timeout { addr, after: limit }))
}

/// Run `server` and `client` on their own threads, each on a current-thread runtime; the server
/// reports its address (or its failure) before the client starts.
fn run_sides<S, SF, C, CF>(name: &str, plan: &Plan, server: S, client: C) -> Result<Samples, TransportError>
where
    S: FnOnce(Plan, Ready) -> SF + Send + 'static,
    SF: Future<Output = Result<(), TransportError>>,
    C: FnOnce(Plan, SocketAddr, String) -> CF + Send + 'static,
    CF: Future<Output = Result<Samples, TransportError>>,
{
    let runtime = |side: &str| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| bench_err(&format!("{name} {side} runtime"), e))
    };
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let server_rt = runtime("server")?;
    let server_plan = plan.clone();
    let server_thread = std::thread::Builder::new()
        .name(format!("bench-{name}-server"))
        .spawn(move || server_rt.block_on(server(server_plan, ready_tx)))
        .map_err(|e| bench_err(&format!("{name} server thread"), e))?;
    let (addr, credential) = match ready_rx.recv_timeout(STEP) {
        Ok(Ok(ready)) => ready,
        Ok(Err(e)) => {
            let _ = server_thread.join();
            return Err(e);
        }
        Err(_) => return Err(join_err(name, "server", server_thread.join()).unwrap_or(bench_err(name, "no server"))),
    };
    let client_rt = runtime("client")?;
    let client_plan = plan.clone();
    let client_thread = std::thread::Builder::new()
        .name(format!("bench-{name}-client"))
        .spawn(move || client_rt.block_on(client(client_plan, addr, credential)))
        .map_err(|e| bench_err(&format!("{name} client thread"), e))?;
    let client_result = client_thread.join();
    let server_result = server_thread.join();
    let samples = match client_result {
        Ok(r) => r?,
        Err(_) => return Err(bench_err(&format!("{name} client"), "thread panicked")),
    };
    if let Some(e) = join_err(name, "server", server_result) {
        return Err(e);
    }
    Ok(samples)
}

fn join_err(name: &str, side: &str, joined: std::thread::Result<Result<(), TransportError>>) -> Option<TransportError> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some(bench_err(&format!("{name} {side}"), "thread panicked")),
    }
}

mod quic {
    use super::*;

    const SERVER_NAME: &str = "localhost";

    pub(super) async fn server(plan: Plan, ready: Ready) -> Result<(), TransportError> {
        let options = TransportOptions::default();
        let setup = || -> Result<(quinn::Endpoint, Identity, SocketAddr), TransportError> {
            let identity = Identity::self_signed(&[SERVER_NAME.to_string()])?;
            let listen = SocketAddr::from(([127, 0, 0, 1], 0));
            let endpoint = server_endpoint(listen, &identity, &options)?;
            let addr = endpoint.local_addr().map_err(|source| TransportError::Bind { addr: listen, source })?;
            Ok((endpoint, identity, addr))
        };
        let (endpoint, identity, addr) = match setup() {
            Ok(ok) => ok,
            Err(e) => {
                let _ = ready.send(Err(bench_err("QUIC server", &e)));
                return Err(e);
            }
        };
        // Written once before the client may start, so that no run pays for page faults.
        let dest = vec![1u8; plan.payload.len()];
        let _ = ready.send(Ok((addr, identity.fingerprint().to_string())));
        let result = serve(&endpoint, addr, &plan, dest).await;
        endpoint.close(0u32.into(), b"done");
        result
    }

    async fn serve(
        endpoint: &quinn::Endpoint,
        addr: SocketAddr,
        plan: &Plan,
        mut dest: Vec<u8>,
    ) -> Result<(), TransportError> {
        let connection = within(addr, STEP, async {
            let incoming = endpoint.accept().await.ok_or_else(|| bench_err("QUIC server", "endpoint closed"))?;
            let remote = incoming.remote_address();
            incoming.await.map_err(|e| TransportError::Handshake { addr: remote, reason: e.to_string() })
        })
        .await?;
        let peer = connection.remote_address();
        let lost = |e: quinn::ConnectionError| TransportError::Handshake { addr: peer, reason: e.to_string() };
        let (mut ctl_send, mut ctl_recv) =
            within(peer, STEP, async { connection.accept_bi().await.map_err(lost) }).await?;
        let mut hello = [0u8; 1];
        within(peer, STEP, read_into(&mut ctl_recv, &mut hello)).await?;

        for _ in 0..plan.runs {
            within(peer, plan.bulk_deadline(), async {
                let mut stream = connection.accept_uni().await.map_err(lost)?;
                read_into(&mut stream, &mut dest).await?;
                write_bytes(&mut ctl_send, Bytes::from_static(&[1])).await
            })
            .await?;
        }
        if dest[..] != plan.payload[..] {
            return Err(bench_err("QUIC bulk", "received bytes differ from those sent"));
        }
        drop(dest);

        let mut message = [0u8; RTT_MESSAGE];
        for _ in 0..plan.round_trips() {
            within(peer, STEP, async {
                read_into(&mut ctl_recv, &mut message).await?;
                ctl_send
                    .write_all(&message)
                    .await
                    .map_err(|source| TransportError::Write { stream: ctl_send.id(), source })
            })
            .await?;
        }
        // The client closes once it has its last answer.
        let _ = tokio::time::timeout(STEP, connection.closed()).await;
        Ok(())
    }

    pub(super) async fn client(plan: Plan, addr: SocketAddr, fingerprint: String) -> Result<Samples, TransportError> {
        let options = TransportOptions::default();
        let endpoint = client_endpoint(&options)?;
        let connection = connect(&endpoint, addr, SERVER_NAME, &Trust::Fingerprint(fingerprint), &options).await?;
        let result = drive(&connection, addr, &plan).await;
        let stats = connection.stats();
        tracing::debug!(
            "QUIC client path: mtu {}, cwnd {}, rtt {:?}, lost {} of {} packets, {} congestion events; \
             {} UDP datagrams sent in {} transmits",
            stats.path.current_mtu,
            stats.path.cwnd,
            stats.path.rtt,
            stats.path.lost_packets,
            stats.path.sent_packets,
            stats.path.congestion_events,
            stats.udp_tx.datagrams,
            stats.udp_tx.ios
        );
        connection.close(0u32.into(), b"done");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
        result
    }

    async fn drive(connection: &quinn::Connection, addr: SocketAddr, plan: &Plan) -> Result<Samples, TransportError> {
        let lost = |e: quinn::ConnectionError| TransportError::Handshake { addr, reason: e.to_string() };
        let (mut ctl_send, mut ctl_recv) =
            within(addr, STEP, async { connection.open_bi().await.map_err(lost) }).await?;
        write_bytes(&mut ctl_send, Bytes::from_static(&[0])).await?;
        let mut samples = Samples::default();
        let mut ack = [0u8; 1];
        for _ in 0..plan.runs {
            let start = Instant::now();
            within(addr, plan.bulk_deadline(), async {
                let mut stream = connection.open_uni().await.map_err(lost)?;
                write_bytes(&mut stream, plan.payload.clone()).await?;
                stream.finish().map_err(|e| bench_err("QUIC bulk", e))?;
                read_into(&mut ctl_recv, &mut ack).await
            })
            .await?;
            samples.bulk.push(start.elapsed());
        }

        let request = [7u8; RTT_MESSAGE];
        let mut response = [0u8; RTT_MESSAGE];
        for i in 0..plan.round_trips() {
            let start = Instant::now();
            within(addr, STEP, async {
                ctl_send
                    .write_all(&request)
                    .await
                    .map_err(|source| TransportError::Write { stream: ctl_send.id(), source })?;
                read_into(&mut ctl_recv, &mut response).await
            })
            .await?;
            if i >= plan.warmup {
                samples.rtt.push(start.elapsed());
            }
        }
        Ok(samples)
    }
}

mod tcp {
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    fn io_err(what: &str, addr: SocketAddr) -> impl Fn(std::io::Error) -> TransportError + '_ {
        move |e| bench_err(&format!("TCP {what} {addr}"), e)
    }

    pub(super) async fn server(plan: Plan, ready: Ready) -> Result<(), TransportError> {
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let bound = async {
            let listener =
                TcpListener::bind(listen).await.map_err(|source| TransportError::Bind { addr: listen, source })?;
            let addr = listener.local_addr().map_err(|source| TransportError::Bind { addr: listen, source })?;
            Ok::<_, TransportError>((listener, addr))
        }
        .await;
        let (listener, addr) = match bound {
            Ok(ok) => ok,
            Err(e) => {
                let _ = ready.send(Err(bench_err("TCP server", &e)));
                return Err(e);
            }
        };
        // Written once before the client may start, so that no run pays for page faults.
        let mut dest = vec![1u8; plan.payload.len()];
        let _ = ready.send(Ok((addr, String::new())));
        let (mut stream, peer) =
            within(addr, STEP, async { listener.accept().await.map_err(io_err("accept on", addr)) }).await?;
        stream.set_nodelay(true).map_err(io_err("nodelay", peer))?;
        for _ in 0..plan.runs {
            within(peer, plan.bulk_deadline(), async {
                stream.read_exact(&mut dest).await.map_err(io_err("read from", peer))?;
                stream.write_all(&[1]).await.map_err(io_err("write to", peer))
            })
            .await?;
        }
        if dest[..] != plan.payload[..] {
            return Err(bench_err("TCP bulk", "received bytes differ from those sent"));
        }
        drop(dest);

        let mut message = [0u8; RTT_MESSAGE];
        for _ in 0..plan.round_trips() {
            within(peer, STEP, async {
                stream.read_exact(&mut message).await.map_err(io_err("read from", peer))?;
                stream.write_all(&message).await.map_err(io_err("write to", peer))
            })
            .await?;
        }
        Ok(())
    }

    pub(super) async fn client(plan: Plan, addr: SocketAddr, _: String) -> Result<Samples, TransportError> {
        let mut stream = within(addr, STEP, async {
            TcpStream::connect(addr).await.map_err(|e| TransportError::Connect { addr, reason: e.to_string() })
        })
        .await?;
        stream.set_nodelay(true).map_err(io_err("nodelay", addr))?;
        let mut samples = Samples::default();
        let mut ack = [0u8; 1];
        for _ in 0..plan.runs {
            let start = Instant::now();
            within(addr, plan.bulk_deadline(), async {
                stream.write_all(&plan.payload).await.map_err(io_err("write to", addr))?;
                stream.read_exact(&mut ack).await.map_err(io_err("read from", addr)).map(drop)
            })
            .await?;
            samples.bulk.push(start.elapsed());
        }

        let request = [7u8; RTT_MESSAGE];
        let mut response = [0u8; RTT_MESSAGE];
        for i in 0..plan.round_trips() {
            let start = Instant::now();
            within(addr, STEP, async {
                stream.write_all(&request).await.map_err(io_err("write to", addr))?;
                stream.read_exact(&mut response).await.map_err(io_err("read from", addr)).map(drop)
            })
            .await?;
            if i >= plan.warmup {
                samples.rtt.push(start.elapsed());
            }
        }
        Ok(samples)
    }
}
