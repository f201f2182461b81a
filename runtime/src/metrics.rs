//! Prometheus metrics: the small HTTP listener that serves them (`GET /metrics`, beside a
//! worker's QUIC endpoint or a generating client), and the client's generation metrics. The
//! text format is `prometheus-client`'s OpenMetrics encoder; the worker's own metrics live in
//! `worker/metrics.rs`.
//!
//! The listener is reachable by whoever reaches its address, so it answers nothing but the
//! metrics, reads at most [`MAX_REQUEST_HEAD`] bytes of a request within
//! [`REQUEST_TIMEOUT`], and serves at most [`MAX_SCRAPERS`] connections at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The longest request head (request line and headers) a scraper may send.
pub const MAX_REQUEST_HEAD: usize = 8 << 10;
/// How long a scraper has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; more connections wait to be accepted.
pub const MAX_SCRAPERS: usize = 16;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What renders the metrics text on each scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The metrics listener, serving on a tokio runtime until dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Listen on `addr` (`127.0.0.1:0` picks a port) and serve `render`'s text at `/metrics`
    /// on `runtime`.
    pub fn start(addr: SocketAddr, render: Render, runtime: &tokio::runtime::Handle) -> std::io::Result<MetricsServer> {
        let _entered = runtime.enter();
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        Ok(MetricsServer { addr, task: runtime.spawn(serve(listener, render)) })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve `GET /metrics` on `listener`; any other path is a 404, any other method a 405, a
/// request head over the limit or too slow is dropped.
async fn serve(listener: TcpListener, render: Render) {
    let scrapers = Arc::new(Semaphore::new(MAX_SCRAPERS));
    loop {
        let Ok(permit) = scrapers.clone().acquire_owned().await else { return };
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!("metrics accept: {e}");
                continue;
            }
        };
        let render = render.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = answer(stream, &render).await {
                tracing::debug!("metrics scrape from {from}: {e}");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, render: &Render) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request head in time"))??;
    let request_line = head.lines().next().unwrap_or("");
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, render()),
        ("GET", _) => ("404 Not Found", "text/plain", "only /metrics is served here\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET is served here\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request head up to its blank line, at most [`MAX_REQUEST_HEAD`] bytes.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST_HEAD {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "request head too long"));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Encode a registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing into a String cannot fail; the encoder only propagates the writer's errors.
    let _ = encode(&mut text, registry);
    text
}

/// Buckets for latencies from 1 ms to about 65 s.
pub fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 17)
}

/// What a generating client measures: time to the first token (the prefill call) and between
/// tokens (each decode call), as `genie_time_to_first_token_seconds` and
/// `genie_inter_token_latency_seconds`.
pub struct GenerationMetrics {
    registry: Registry,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    /// Recoveries from a lost worker, and the seconds each took from the lost call's start to
    /// the recovered step's token (detection, placing again, replay).
    pub recoveries: Counter,
    pub recovery_seconds: Histogram,
}

impl Default for GenerationMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("genie");
        let time_to_first_token = Histogram::new(latency_buckets());
        let inter_token_latency = Histogram::new(latency_buckets());
        registry.register(
            "time_to_first_token_seconds",
            "Seconds from a generation's start to its first token (the prefill call)",
            time_to_first_token.clone(),
        );
        registry.register(
            "inter_token_latency_seconds",
            "Seconds between consecutive tokens of a generation (each decode call)",
            inter_token_latency.clone(),
        );
        let recoveries = Counter::default();
        let recovery_seconds = Histogram::new(latency_buckets());
        registry.register(
            "recoveries",
            "Times a generation recovered from a lost worker (placed again, its tokens replayed)",
            recoveries.clone(),
        );
        registry.register(
            "recovery_seconds",
            "Seconds from a lost call's start to the recovered step's token",
            recovery_seconds.clone(),
        );
        GenerationMetrics { registry, time_to_first_token, inter_token_latency, recoveries, recovery_seconds }
    }
}

impl GenerationMetrics {
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}
