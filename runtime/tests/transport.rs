//! The QUIC transport over real sockets on loopback: trust (pinned and CA), typed failures,
//! a large stream, and the benchmark's plumbing.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use genie_runtime::transport::bench::{measure, TransportFigures};
use genie_runtime::transport::{
    accept, client_endpoint, connect, read_into, server_endpoint, write_bytes, Identity, TransportError,
    TransportOptions, Trust, ALPN, LOOPBACK_MTU,
};
use sha2::{Digest, Sha256};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

fn pinned(identity: &Identity) -> Trust {
    Trust::Fingerprint(identity.fingerprint().to_string())
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let dir = std::env::temp_dir().join(format!("genie-transport-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Serve `endpoint`: every bidirectional stream is echoed back once the peer finishes it.
/// With `per_peer`, connections are accepted through `transport::accept`. The receiver gets the
/// server side's packet size of each connection.
fn spawn_echo(endpoint: quinn::Endpoint, per_peer: Option<Identity>) -> tokio::sync::mpsc::UnboundedReceiver<u16> {
    let (mtu_tx, mtu_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let per_peer = per_peer.clone();
            let mtu_tx = mtu_tx.clone();
            tokio::spawn(async move {
                let connection = match per_peer {
                    Some(id) => match accept(incoming, &id, &TransportOptions::default()) {
                        Ok(connecting) => connecting.await,
                        Err(_) => return,
                    },
                    None => incoming.await,
                };
                let Ok(connection) = connection else { return };
                let _ = mtu_tx.send(connection.stats().path.current_mtu);
                while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(data) = recv.read_to_end(1 << 20).await {
                            let _ = write_bytes(&mut send, Bytes::from(data)).await;
                            let _ = send.finish();
                        }
                    });
                }
            });
        }
    });
    mtu_rx
}

async fn echo_once(connection: &quinn::Connection, message: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    write_bytes(&mut send, Bytes::copy_from_slice(message)).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 20).await.unwrap()
}

fn negotiated_alpn(connection: &quinn::Connection) -> Option<Vec<u8>> {
    let data = connection.handshake_data()?;
    data.downcast::<quinn::crypto::rustls::HandshakeData>().ok()?.protocol
}

#[tokio::test]
async fn pinned_fingerprint_connects_and_echoes() {
    let options = TransportOptions::default();
    let identity = Identity::self_signed(&names()).unwrap();
    assert!(identity.fingerprint().starts_with("sha256:"));
    assert_eq!(identity.fingerprint().len(), "sha256:".len() + 64);
    let server = server_endpoint(loopback(), &identity, &options).unwrap();
    let addr = server.local_addr().unwrap();
    let mut server_mtus = spawn_echo(server, None);

    let client = client_endpoint(&options).unwrap();
    let connection = connect(&client, addr, "localhost", &pinned(&identity), &options).await.unwrap();
    assert_eq!(negotiated_alpn(&connection).as_deref(), Some(ALPN));
    // Loopback tuning on both sides: 64 KB packets from the start.
    assert_eq!(connection.stats().path.current_mtu, LOOPBACK_MTU);
    assert_eq!(server_mtus.recv().await, Some(LOOPBACK_MTU));
    assert_eq!(echo_once(&connection, b"hello genie").await, b"hello genie");
    // The same connection carries further streams.
    assert_eq!(echo_once(&connection, &[42u8; 100_000]).await, vec![42u8; 100_000]);
    // Pinning ignores the host name; upper-case hex pins the same certificate.
    let upper = Trust::Fingerprint(identity.fingerprint().to_uppercase().replacen("SHA256:", "sha256:", 1));
    let other_name = connect(&client, addr, "anything.invalid", &upper, &options).await.unwrap();
    assert_eq!(echo_once(&other_name, b"x").await, b"x");
}

#[tokio::test]
async fn per_peer_accept_on_a_wildcard_listener() {
    let options = TransportOptions::default();
    let identity = Identity::self_signed(&names()).unwrap();
    let server = server_endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), &identity, &options).unwrap();
    let port = server.local_addr().unwrap().port();
    let mut server_mtus = spawn_echo(server, Some(identity.clone()));
    let client = client_endpoint(&options).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let connection = connect(&client, addr, "localhost", &pinned(&identity), &options).await.unwrap();
    // The listener is a wildcard (network tuning by default), but `accept` tuned this
    // connection for its loopback peer.
    assert_eq!(server_mtus.recv().await, Some(LOOPBACK_MTU));
    // Without `accept`, a wildcard listener serves everyone with network tuning.
    let plain = server_endpoint(SocketAddr::from(([0, 0, 0, 0], 0)), &identity, &options).unwrap();
    let plain_addr = SocketAddr::from(([127, 0, 0, 1], plain.local_addr().unwrap().port()));
    let mut plain_mtus = spawn_echo(plain, None);
    let plain_connection = connect(&client, plain_addr, "localhost", &pinned(&identity), &options).await.unwrap();
    assert!(plain_mtus.recv().await.unwrap() <= 1452);
    assert_eq!(echo_once(&plain_connection, b"ok").await, b"ok");
    // Just under the echo server's 1 MiB limit: many 64 KB packets on a per-peer tuned connection.
    let big: Vec<u8> = (0..(1u32 << 20) - 1).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo_once(&connection, &big).await, big);
}

#[tokio::test]
async fn wrong_fingerprint_is_refused_with_both_fingerprints() {
    let options = TransportOptions { connect_timeout: Duration::from_secs(3), ..Default::default() };
    let identity = Identity::self_signed(&names()).unwrap();
    let impostor = Identity::self_signed(&names()).unwrap();
    let server = server_endpoint(loopback(), &identity, &options).unwrap();
    let addr = server.local_addr().unwrap();
    spawn_echo(server, None);

    let client = client_endpoint(&options).unwrap();
    let start = Instant::now();
    let err = connect(&client, addr, "localhost", &pinned(&impostor), &options).await.unwrap_err();
    assert!(start.elapsed() < options.connect_timeout, "took {:?}", start.elapsed());
    match &err {
        TransportError::FingerprintMismatch { addr: a, expected, got } => {
            assert_eq!(*a, addr);
            assert_eq!(expected, impostor.fingerprint());
            assert_eq!(got, identity.fingerprint());
        }
        other => panic!("expected FingerprintMismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(identity.fingerprint()) && text.contains(impostor.fingerprint()), "{text}");

    // A malformed pin is refused before any packet is sent.
    let bad = connect(&client, addr, "localhost", &Trust::Fingerprint("sha256:zz".into()), &options).await;
    assert!(matches!(bad, Err(TransportError::InvalidFingerprint { .. })), "{bad:?}");
}

/// A CA, and a leaf for `localhost` signed by it: (ca.pem, chain.pem, key.pem).
fn issue_certificates(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "genie test CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();

    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(names()).unwrap();
    leaf_params.distinguished_name.push(rcgen::DnType::CommonName, "genie worker");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

    let ca_pem = dir.write("ca.pem", &ca.pem());
    let chain = dir.write("chain.pem", &format!("{}{}", leaf.pem(), ca.pem()));
    let key = dir.write("key.pem", &leaf_key.serialize_pem());
    (ca_pem, chain, key)
}

#[tokio::test]
async fn ca_file_trust_with_pem_files() {
    let dir = TempDir::new("ca");
    let (ca, chain, key) = issue_certificates(&dir);
    let options = TransportOptions::default();
    let identity = Identity::from_pem_files(&chain, &key).unwrap();
    assert_eq!(identity.certificate_chain().len(), 2);
    let server = server_endpoint(loopback(), &identity, &options).unwrap();
    let addr = server.local_addr().unwrap();
    spawn_echo(server, None);
    let client = client_endpoint(&options).unwrap();

    let trust = Trust::CaFile(ca.clone());
    let connection = connect(&client, addr, "localhost", &trust, &options).await.unwrap();
    assert_eq!(echo_once(&connection, b"over webpki").await, b"over webpki");
    // The IP SAN verifies too.
    connect(&client, addr, "127.0.0.1", &trust, &options).await.unwrap();
    // The same certificate can also be pinned.
    connect(&client, addr, "localhost", &pinned(&identity), &options).await.unwrap();

    // A name the certificate does not carry is refused.
    let err = connect(&client, addr, "elsewhere.example", &trust, &options).await.unwrap_err();
    assert!(matches!(err, TransportError::Handshake { addr: a, .. } if a == addr), "{err:?}");

    // A self-signed server is not trusted by the CA.
    let stranger = Identity::self_signed(&names()).unwrap();
    let other = server_endpoint(loopback(), &stranger, &options).unwrap();
    let other_addr = other.local_addr().unwrap();
    spawn_echo(other, None);
    let err = connect(&client, other_addr, "localhost", &trust, &options).await.unwrap_err();
    assert!(matches!(err, TransportError::Handshake { .. }), "{err:?}");

    // A CA file that is missing is a certificate error naming it.
    let missing = dir.0.join("no-such-ca.pem");
    let err = connect(&client, addr, "localhost", &Trust::CaFile(missing.clone()), &options).await.unwrap_err();
    assert!(matches!(&err, TransportError::Certificate { path, .. } if path == &missing), "{err:?}");
}

fn certificate_error_path(result: Result<Identity, TransportError>) -> PathBuf {
    match result {
        Err(TransportError::Certificate { path, reason }) => {
            assert!(!reason.is_empty());
            path
        }
        other => panic!("expected a Certificate error, got {other:?}"),
    }
}

#[test]
fn bad_pem_files_name_the_file() {
    let dir = TempDir::new("bad-pem");
    let (_, chain, key) = issue_certificates(&dir);
    let missing = dir.0.join("missing.pem");
    let garbage = dir.write("garbage.pem", "this is not a certificate\n\u{1}\u{2}\u{3}");
    let truncated = dir.write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let check = |cert: &Path, key: &Path, blamed: &Path| {
        assert_eq!(certificate_error_path(Identity::from_pem_files(cert, key)), blamed);
    };
    check(&missing, &key, &missing);
    check(&garbage, &key, &garbage);
    check(&truncated, &key, &truncated);
    check(&chain, &missing, &missing);
    check(&chain, &garbage, &garbage);
    // The key file holds a certificate, not a key.
    check(&chain, &chain, &chain);
    // A well-formed key that belongs to another certificate.
    let other_key = dir.write("other-key.pem", &rcgen::KeyPair::generate().unwrap().serialize_pem());
    check(&chain, &other_key, &other_key);
    // The message names the file too.
    let err = Identity::from_pem_files(&garbage, &key).unwrap_err().to_string();
    assert!(err.contains("garbage.pem"), "{err}");
}

#[test]
fn self_signed_rejects_bad_names() {
    // Not an IP address, and not ASCII, so not a DNS name either.
    let err = Identity::self_signed(&["bad\u{ff}name".to_string()]).unwrap_err();
    assert!(matches!(&err, TransportError::SelfSigned { names, .. } if names[0] == "bad\u{ff}name"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_stream_arrives_intact() {
    const LEN: usize = 96 << 20;
    let options = TransportOptions::default();
    let identity = Identity::self_signed(&names()).unwrap();
    let server = server_endpoint(loopback(), &identity, &options).unwrap();
    let addr = server.local_addr().unwrap();
    let receiver = tokio::spawn(async move {
        let connection = server.accept().await.unwrap().await.unwrap();
        let mut recv = connection.accept_uni().await.unwrap();
        let mut buf = vec![0u8; LEN];
        read_into(&mut recv, &mut buf).await.unwrap();
        // Nothing after the announced length.
        let mut extra = [0u8; 1];
        assert_eq!(recv.read(&mut extra).await.unwrap(), None);
        // A second, short stream: reading more than was sent is Truncated.
        let mut short = connection.accept_uni().await.unwrap();
        let mut want = [0u8; 20];
        let err = read_into(&mut short, &mut want).await.unwrap_err();
        assert!(matches!(err, TransportError::Truncated { expected: 20, got: 10, .. }), "{err:?}");
        connection.closed().await;
        <[u8; 32]>::from(Sha256::digest(&buf))
    });

    let mut data = vec![0u8; LEN];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let sent = <[u8; 32]>::from(Sha256::digest(&data));
    let client = client_endpoint(&options).unwrap();
    let connection = connect(&client, addr, "localhost", &pinned(&identity), &options).await.unwrap();
    let payload = Bytes::from(data);
    let mut send = connection.open_uni().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        // Two chunks sharing one allocation, to exercise slicing without copies.
        write_bytes(&mut send, payload.slice(..LEN / 3)).await.unwrap();
        write_bytes(&mut send, payload.slice(LEN / 3..)).await.unwrap();
        send.finish().unwrap();
        send.stopped().await.unwrap();
    })
    .await
    .expect("a large transfer must not stall");
    let mut short = connection.open_uni().await.unwrap();
    write_bytes(&mut short, Bytes::from_static(b"0123456789")).await.unwrap();
    short.finish().unwrap();
    short.stopped().await.unwrap();
    connection.close(0u32.into(), b"done");
    let received = tokio::time::timeout(Duration::from_secs(30), receiver).await.unwrap().unwrap();
    assert_eq!(received, sent);
}

#[tokio::test]
async fn connecting_to_a_silent_port_times_out() {
    // A port that was free a moment ago: nobody listens there.
    let closed = UdpSocket::bind(loopback()).unwrap().local_addr().unwrap();
    // A port with a socket that never answers.
    let silent_socket = UdpSocket::bind(loopback()).unwrap();
    let silent = silent_socket.local_addr().unwrap();
    let options = TransportOptions { connect_timeout: Duration::from_millis(400), ..Default::default() };
    let identity = Identity::self_signed(&names()).unwrap();
    let client = client_endpoint(&options).unwrap();
    for addr in [closed, silent] {
        let start = Instant::now();
        let err = connect(&client, addr, "localhost", &pinned(&identity), &options).await.unwrap_err();
        let took = start.elapsed();
        assert!(took < options.connect_timeout + Duration::from_secs(5), "{addr}: took {took:?}");
        match err {
            TransportError::Timeout { addr: a, after } => {
                assert_eq!(a, addr);
                assert_eq!(after, options.connect_timeout);
            }
            other => panic!("{addr}: expected Timeout, got {other:?}"),
        }
    }
}

/// A non-loopback address of this machine, if it has one (no packet is sent to find it).
fn local_network_ip() -> Option<IpAddr> {
    let probe = UdpSocket::bind("0.0.0.0:0").ok()?;
    probe.connect("192.0.2.1:9").or_else(|_| probe.connect("10.255.255.254:9")).ok()?;
    let ip = probe.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// A non-loopback address for this thread to listen on and connect to without leaving the
/// host: a dummy interface in a private network namespace of this thread (as root, with
/// iproute2), else this machine's own address. Panics naming both failures when neither works:
/// the test must not pass without exercising the network path.
fn network_address() -> IpAddr {
    match private_network_namespace() {
        Ok(ip) => ip,
        Err(e) => local_network_ip().unwrap_or_else(|| {
            panic!("no non-loopback address: this machine has none, and a private network namespace failed: {e}")
        }),
    }
}

/// Move this thread into a new network namespace whose `lo` also carries `10.77.0.1`, a
/// non-loopback address. Threads and processes this thread starts afterwards share it; the rest
/// of the test process and the host are untouched. On failure the thread goes back to its
/// namespace.
fn private_network_namespace() -> Result<IpAddr, String> {
    use std::os::fd::AsRawFd;
    let original =
        std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| format!("the current namespace: {e}"))?;
    // SAFETY: `unshare` takes no pointers; CLONE_NEWNET changes only the calling thread's
    // network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(format!("unshare(CLONE_NEWNET): {}", std::io::Error::last_os_error()));
    }
    let configure = || -> Result<(), String> {
        for args in [["link", "set", "lo", "up"].as_slice(), &["addr", "add", "10.77.0.1/32", "dev", "lo"]] {
            let out = std::process::Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
            if !out.status.success() {
                return Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        Ok(())
    };
    if let Err(e) = configure() {
        // SAFETY: the fd is a namespace file opened above and open for the call.
        unsafe { libc::setns(original.as_raw_fd(), libc::CLONE_NEWNET) };
        return Err(e);
    }
    Ok(IpAddr::from([10, 77, 0, 1]))
}

/// Network tuning (1452-byte packets, GSO on) applies to non-loopback addresses.
#[test]
fn network_tuning_carries_a_large_stream() {
    // The namespace must be entered before the runtime's threads exist, so they share it.
    let ip = network_address();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(carry_a_large_stream(ip));
}

async fn carry_a_large_stream(ip: IpAddr) {
    const LEN: usize = 16 << 20;
    let options = TransportOptions::default();
    let identity = Identity::self_signed(&names()).unwrap();
    let server = server_endpoint(SocketAddr::new(ip, 0), &identity, &options)
        .unwrap_or_else(|e| panic!("cannot listen on {ip}: {e}"));
    let addr = server.local_addr().unwrap();
    let receiver = tokio::spawn(async move {
        let connection = server.accept().await.unwrap().await.unwrap();
        let mut recv = connection.accept_uni().await.unwrap();
        let mut buf = vec![0u8; LEN];
        read_into(&mut recv, &mut buf).await.unwrap();
        connection.closed().await;
        <[u8; 32]>::from(Sha256::digest(&buf))
    });
    let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
    let sent = <[u8; 32]>::from(Sha256::digest(&data));
    let client = client_endpoint(&options).unwrap();
    let connection = connect(&client, addr, "localhost", &pinned(&identity), &options).await.unwrap();
    let mut send = connection.open_uni().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), async {
        write_bytes(&mut send, Bytes::from(data)).await.unwrap();
        send.finish().unwrap();
        send.stopped().await.unwrap();
    })
    .await
    .expect("a large transfer must not stall");
    assert!(connection.stats().path.current_mtu <= 1452, "{:?}", connection.stats().path);
    connection.close(0u32.into(), b"done");
    assert_eq!(tokio::time::timeout(Duration::from_secs(30), receiver).await.unwrap().unwrap(), sent);
}

#[test]
fn measure_small_sizes_gives_positive_figures() {
    let figures = measure(1 << 20, 2, 50).unwrap();
    let TransportFigures { quic_bulk_gbps, tcp_bulk_gbps, quic_rtt_us, tcp_rtt_us } = figures;
    for (name, v) in [
        ("quic_bulk_gbps", quic_bulk_gbps),
        ("tcp_bulk_gbps", tcp_bulk_gbps),
        ("quic_rtt_us", quic_rtt_us),
        ("tcp_rtt_us", tcp_rtt_us),
    ] {
        assert!(v.is_finite() && v > 0.0, "{name} = {v}");
    }
    assert!(matches!(measure(0, 1, 1), Err(TransportError::Bench { .. })));
    assert!(matches!(measure(1, 0, 1), Err(TransportError::Bench { .. })));
    assert!(matches!(measure(1, 1, 0), Err(TransportError::Bench { .. })));
}

/// The DESIGN.md measurement: `cargo test --release -p genie-runtime --test transport -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: 1 GiB × 5 per protocol"]
fn measure_one_gib() {
    let f = measure(1 << 30, 5, 2000).unwrap();
    println!(
        "quic_bulk_gbps={:.2} ({:.2} GB/s) tcp_bulk_gbps={:.2} ({:.2} GB/s) ratio={:.2} quic_rtt_us={:.1} tcp_rtt_us={:.1}",
        f.quic_bulk_gbps,
        f.quic_bulk_gbps / 8.0,
        f.tcp_bulk_gbps,
        f.tcp_bulk_gbps / 8.0,
        f.quic_bulk_gbps / f.tcp_bulk_gbps,
        f.quic_rtt_us,
        f.tcp_rtt_us
    );
}
