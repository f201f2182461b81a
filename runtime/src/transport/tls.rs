//! TLS for the transport: worker identities, the client's trust decision, and the rustls
//! configurations both sides use.
//!
//! Everything runs on rustls with the aws-lc-rs provider, TLS 1.3 only (QUIC requires it), with
//! the cipher suites reordered so that AES-128-GCM comes first (aws-lc-rs lists AES-256 first;
//! AES-128 is measurably cheaper per byte and every CPU we run on has AES-NI). The server ignores
//! the client's order, so both ends settle on AES-128-GCM.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{TransportError, ALPN};

/// The prefix of a written fingerprint.
const FINGERPRINT_PREFIX: &str = "sha256:";

/// The crypto provider of both sides: aws-lc-rs, TLS 1.3 suites only, AES-128-GCM first.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            use aws_lc_rs::cipher_suite::{
                TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256,
            };
            let mut provider = aws_lc_rs::default_provider();
            provider.cipher_suites =
                vec![TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384, TLS13_CHACHA20_POLY1305_SHA256];
            Arc::new(provider)
        })
        .clone()
}

/// A worker's TLS identity: certificate chain + key, and the SHA-256 fingerprint of the leaf
/// certificate (DER), written `sha256:<64 lowercase hex>`.
///
/// The rustls server configuration is built once, when the identity is made, and shared by every
/// endpoint and accepted connection that uses it (cloning an `Identity` is cheap).
#[derive(Clone)]
pub struct Identity {
    chain: Arc<[CertificateDer<'static>]>,
    /// Kept to present the certificate as a client (a worker connecting to its peers).
    key: Arc<PrivateKeyDer<'static>>,
    fingerprint: String,
    server: Arc<QuicServerConfig>,
}

impl Identity {
    /// A fresh self-signed certificate (ECDSA P-256, made with rcgen) for `names`: DNS names or
    /// IP addresses, e.g. `["localhost", "127.0.0.1"]`. Clients pin it by [`Identity::fingerprint`];
    /// the names only matter to a client that verifies against a CA, which a self-signed
    /// certificate never satisfies.
    pub fn self_signed(names: &[String]) -> Result<Identity, TransportError> {
        let generated = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TransportError::SelfSigned { names: names.to_vec(), reason: e.to_string() })?;
        let key = PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into());
        let chain = vec![generated.cert.der().clone()];
        Identity::new(chain, key).map_err(|reason| TransportError::SelfSigned { names: names.to_vec(), reason })
    }

    /// Load a certificate chain (PEM, leaf first, then any intermediates) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1). A missing, unreadable or garbage file, or a key that does
    /// not belong to the certificate, is [`TransportError::Certificate`] naming the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, TransportError> {
        let chain = read_certificates(cert)?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TransportError::Certificate {
            path: key.to_path_buf(),
            reason: pem_reason(e, "PRIVATE KEY"),
        })?;
        Identity::new(chain, private).map_err(|reason| TransportError::Certificate {
            path: key.to_path_buf(),
            reason: format!("unusable with the certificate in {}: {reason}", cert.display()),
        })
    }

    /// The identity kept in `dir` (`cert.pem`, `key.pem`): read when both are there, else a fresh
    /// self-signed one for `names`, written there first (the key readable by its owner only), so
    /// a worker restarted with the same directory keeps its fingerprint and clients that pinned
    /// it reach it again. A directory holding one file of the two, or files that do not make an
    /// identity, is an error naming the file.
    pub fn persisted(dir: &Path, names: &[String]) -> Result<Identity, TransportError> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let failed = |path: &Path, reason: String| TransportError::Certificate { path: path.to_path_buf(), reason };
        match (cert.exists(), key.exists()) {
            (true, true) => return Identity::from_pem_files(&cert, &key),
            (true, false) => return Err(failed(&key, "missing beside cert.pem".into())),
            (false, true) => return Err(failed(&cert, "missing beside key.pem".into())),
            (false, false) => {}
        }
        let generated = rcgen::generate_simple_self_signed(names.to_vec())
            .map_err(|e| TransportError::SelfSigned { names: names.to_vec(), reason: e.to_string() })?;
        std::fs::create_dir_all(dir).map_err(|e| failed(dir, format!("creating the directory: {e}")))?;
        // Each file whole or not at all: written beside, then renamed; the key first, so a
        // certificate on disk always has its key.
        let write = |path: &Path, text: String, private: bool| -> Result<(), TransportError> {
            let partial = path.with_extension("pem.partial");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            if private {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            #[cfg(not(unix))]
            let _ = private;
            let mut file = options.open(&partial).map_err(|e| failed(&partial, e.to_string()))?;
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| failed(&partial, e.to_string()))?;
            file.sync_all().map_err(|e| failed(&partial, e.to_string()))?;
            std::fs::rename(&partial, path).map_err(|e| failed(path, e.to_string()))
        };
        write(&key, generated.signing_key.serialize_pem(), true)?;
        write(&cert, generated.cert.pem(), false)?;
        Identity::from_pem_files(&cert, &key)
    }

    fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Identity, String> {
        let leaf = chain.first().ok_or_else(|| "no certificate".to_string())?;
        let fingerprint = fingerprint_of(leaf.as_ref());
        let client_certs = Arc::new(AnyClientCertificate { algorithms: provider().signature_verification_algorithms });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(client_certs)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        // Our order (AES-128-GCM first), not the client's.
        config.ignore_client_order = true;
        let server = QuicServerConfig::try_from(config).map_err(|e| e.to_string())?;
        Ok(Identity { chain: chain.into(), key: Arc::new(key), fingerprint, server: Arc::new(server) })
    }

    /// The certificate chain and a copy of the key, to present as a client.
    pub(crate) fn client_auth(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (self.chain.to_vec(), self.key.clone_key())
    }

    /// `sha256:<64 lowercase hex>` of the leaf certificate's DER: what a client pins.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The certificate chain, leaf first (DER).
    pub fn certificate_chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    pub(crate) fn server_crypto(&self) -> Arc<QuicServerConfig> {
        self.server.clone()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// How a client (or a worker connecting to a peer worker) decides to trust a server.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Pinned: accept exactly the leaf certificate with this fingerprint
    /// (`sha256:<64 hex>`, as [`Identity::fingerprint`] writes it); the host name is not checked,
    /// but the server must still prove it holds the certificate's key (the handshake signature
    /// is verified).
    Fingerprint(String),
    /// Normal WebPKI verification (chain, validity, host name = `server_name`) against the CA
    /// certificates in this PEM file.
    CaFile(PathBuf),
}

/// The SHA-256 fingerprint of a DER certificate, `sha256:<64 lowercase hex>`.
pub fn fingerprint_of(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(FINGERPRINT_PREFIX.len() + 64);
    out.push_str(FINGERPRINT_PREFIX);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Parse `sha256:<64 hex>` (hex in either case) into the digest.
fn parse_fingerprint(text: &str) -> Result<[u8; 32], TransportError> {
    let invalid = || TransportError::InvalidFingerprint { value: text.to_string() };
    let hex = text.trim().strip_prefix(FINGERPRINT_PREFIX).ok_or_else(invalid)?.as_bytes();
    if hex.len() != 64 {
        return Err(invalid());
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0]).ok_or_else(invalid)? << 4) | nibble(pair[1]).ok_or_else(invalid)?;
    }
    Ok(out)
}

/// Normalised (lowercase) form of a pinned fingerprint, for error messages.
pub(crate) fn normalise_fingerprint(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

/// Compare two digests in time independent of where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Read every CERTIFICATE section of a PEM file; none is an error naming the file.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let fail = |reason: String| TransportError::Certificate { path: path.to_path_buf(), reason };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_reason(e, "CERTIFICATE")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_reason(e, "CERTIFICATE")))?;
    if chain.is_empty() {
        return Err(fail("no CERTIFICATE section in the file (is it PEM?)".into()));
    }
    Ok(chain)
}

fn pem_reason(e: rustls::pki_types::pem::Error, section: &str) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!("no {section} section in the file (is it PEM?)"),
        e => e.to_string(),
    }
}

/// What the pinning verifier saw, so that `connect` can name it in a mismatch.
pub(crate) type Seen = Arc<Mutex<Option<String>>>;

/// The fingerprint of the certificate a connection's other side presented (a client
/// certificate, seen from the server; the server's, seen from a client), if any.
pub fn peer_fingerprint(connection: &quinn::Connection) -> Option<String> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|leaf| fingerprint_of(leaf.as_ref()))
}

/// A server's view of client certificates: optional, any certificate accepted as long as the
/// client proves it holds the key (the handshake signature is verified). Which certificate may
/// do what is the application's decision, made on its fingerprint: a worker accepts activations
/// only from the certificates a program's peer list pins.
#[derive(Debug)]
struct AnyClientCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The rustls client configuration for `trust`. With a pinned fingerprint, the verifier records
/// the fingerprint it was shown in `seen`. With `identity`, its certificate is presented as the
/// client's (a worker proving itself to a peer).
pub(crate) fn client_crypto(
    trust: &Trust,
    seen: &Seen,
    identity: Option<&Identity>,
) -> Result<Arc<QuicClientConfig>, TransportError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls { what: "client configuration".into(), reason: e.to_string() })?;
    let builder = match trust {
        Trust::Fingerprint(text) => {
            let verifier = PinnedVerifier {
                expected: parse_fingerprint(text)?,
                seen: seen.clone(),
                algorithms: provider.signature_verification_algorithms,
            };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier))
        }
        Trust::CaFile(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates(path)? {
                roots.add(cert).map_err(|e| TransportError::Certificate {
                    path: path.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            builder.with_root_certificates(roots)
        }
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let (chain, key) = identity.client_auth();
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TransportError::Tls { what: "client certificate".into(), reason: e.to_string() })?
        }
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(config)
        .map_err(|e| TransportError::Tls { what: "client configuration".into(), reason: e.to_string() })?;
    Ok(Arc::new(quic))
}

/// Accepts exactly one leaf certificate, by SHA-256 of its DER, and verifies the handshake
/// signatures against that certificate's key with the provider's algorithms.
#[derive(Debug)]
struct PinnedVerifier {
    expected: [u8; 32],
    seen: Seen,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if constant_time_eq(&got, &self.expected) {
            return Ok(ServerCertVerified::assertion());
        }
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint_of(end_entity.as_ref()));
        Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_round_trip_and_reject_garbage() {
        let fp = fingerprint_of(b"hello");
        assert_eq!(fp.len(), 7 + 64);
        assert!(fp.starts_with("sha256:"));
        let digest = parse_fingerprint(&fp).unwrap();
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(b"hello")));
        assert_eq!(parse_fingerprint(&fp.to_uppercase().replace("SHA256:", "sha256:")).unwrap(), digest);
        for bad in ["", "sha256:", "md5:00", &fp[7..], &format!("{fp}0"), &fp.replace('a', "g")] {
            assert!(matches!(parse_fingerprint(bad), Err(TransportError::InvalidFingerprint { .. })), "{bad}");
        }
    }

    #[test]
    fn constant_time_compare() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn provider_prefers_aes_128() {
        let p = provider();
        assert_eq!(p.cipher_suites[0].suite(), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert!(p.cipher_suites.iter().all(|s| s.version() == &rustls::version::TLS13));
    }

    #[test]
    fn self_signed_identity_has_its_fingerprint() {
        let id = Identity::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert_eq!(id.fingerprint(), fingerprint_of(id.certificate_chain()[0].as_ref()));
        assert!(!format!("{id:?}").contains("key:"));
    }
}
