//! What a running Genie shows, against `genie worker` processes: Prometheus metrics scraped over
//! HTTP and read with an independent Prometheus text parser after a real generation split across
//! two workers (every metric present, with the values the run implies: requests counted, bytes
//! equal to what the client measured, sessions back to zero after close), and the Chrome trace
//! `--trace` writes (one process per device, transfers adding up to the call's bytes, worker
//! spans aligned to the client's clock).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{cluster_file, fixture, read, worker_process, WorkerProcess};
use prometheus_parse::{Sample, Scrape, Value};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genie-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The raw HTTP response to `request` sent to `addr`.
fn http(addr: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Scrape `/metrics` and parse the body.
fn scrape(addr: &str) -> Scrape {
    let response = http(addr, b"GET /metrics HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid Prometheus text")
}

/// The one sample named `name` whose labels include `labels`.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found: Vec<&Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name}{labels:?}: {found:?}");
    found[0]
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match &sample(scrape, name, labels).value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        other => panic!("{name}{labels:?} is not a number: {other:?}"),
    }
}

/// A histogram's observation count (`NAME_count`), summed over its series matching `labels`.
fn observations(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let count = format!("{name}_count");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == count && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn worker_metrics_after_a_generation_split_across_two_workers() {
    let memory = 512u64 << 20;
    let workers: Vec<WorkerProcess> = (0..2)
        .map(|_| worker_process(&["--token", "s3cret", "--memory", "512MiB", "--metrics", "127.0.0.1:0"]))
        .collect();
    let addrs: Vec<String> = workers.iter().map(|w| w.metrics.clone().expect("a metrics address")).collect();

    // Before anything: every metric is there, at zero where it counts events.
    for addr in &addrs {
        let s = scrape(addr);
        for purpose in ["weight", "input", "activation", "output", "state"] {
            assert_eq!(value(&s, "genie_bytes_received_total", &[("purpose", purpose)]), 0.0);
            assert_eq!(value(&s, "genie_bytes_sent_total", &[("purpose", purpose)]), 0.0);
        }
        for reason in ["unauthorized", "out_of_memory", "limit", "malformed"] {
            assert_eq!(value(&s, "genie_refusals_total", &[("reason", reason)]), 0.0);
        }
        for kind in ["weights", "sessions", "activations", "uploads"] {
            assert_eq!(value(&s, "genie_memory_committed_bytes", &[("kind", kind)]), 0.0);
        }
        assert_eq!(value(&s, "genie_sessions_active", &[]), 0.0);
        assert_eq!(value(&s, "genie_programs_loaded", &[]), 0.0);
        assert_eq!(value(&s, "genie_memory_limit_bytes", &[]), memory as f64);
        assert_eq!(value(&s, "genie_weight_cache_bytes", &[]), 0.0);
        assert_eq!(observations(&s, "genie_queue_seconds", &[]), 0.0);
    }

    // A generation of 16 tokens, the model split across both workers.
    let reference = read(&fixture("gpt2/generate.safetensors"));
    let prompt: Vec<String> =
        Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap().iter().map(|t| t.to_string()).collect();
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let cluster = cluster_file(&tmp("metrics.ron"), &workers, true);
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["generate", p.to_str().unwrap(), d.to_str().unwrap(), "--cluster", cluster.to_str().unwrap()])
        .args(["--token", "s3cret", "--prompt", &prompt.join(","), "--max-new-tokens", "16", "--max-seq", "32"])
        .args(["--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens: Vec<i64> = json["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert_eq!(tokens, want);
    let steps = json["steps"].as_array().unwrap();
    let client_bytes: u64 = steps.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert!(json["time_to_first_token_s"].as_f64().unwrap() > 0.0);
    assert_eq!(json["inter_token_s"].as_array().unwrap().len(), 15);
    // The model is split: in every call activations cross between the workers, so every call
    // runs on both.
    let between = |s: &serde_json::Value| -> u64 {
        let links = s["links"].as_object().unwrap();
        links.iter().filter(|(link, _)| !link.contains("client")).map(|(_, b)| b.as_u64().unwrap()).sum()
    };
    assert!(steps.iter().all(|s| between(s) > 0), "{steps:?}");
    let cut: u64 = steps.iter().map(between).sum();

    let scrapes: Vec<Scrape> = addrs.iter().map(|a| scrape(a)).collect();
    let total = |name: &str, labels: &[(&str, &str)]| scrapes.iter().map(|s| value(s, name, labels)).sum::<f64>();
    // Bytes: what the client counted on the wire is the inputs the workers received, the
    // outputs they sent and the activations that crossed between them (each counted once, by
    // its sender; the receiver counts the same bytes).
    let input = total("genie_bytes_received_total", &[("purpose", "input")]);
    let output = total("genie_bytes_sent_total", &[("purpose", "output")]);
    let activation_sent = total("genie_bytes_sent_total", &[("purpose", "activation")]);
    let activation_received = total("genie_bytes_received_total", &[("purpose", "activation")]);
    assert_eq!(input + output + activation_sent, client_bytes as f64);
    assert_eq!(activation_sent, activation_received);
    assert_eq!(activation_sent, cut as f64);
    assert_eq!(total("genie_bytes_received_total", &[("purpose", "output")]), 0.0);
    assert!(total("genie_bytes_received_total", &[("purpose", "weight")]) > 0.0);

    for (s, addr) in scrapes.iter().zip(&addrs) {
        // Each worker was asked to load once (proving and uploading its weights once), open and
        // close one session, and run all 16 calls; every run was timed and queued once, the
        // prefill once and the decode step 15 times; none failed.
        let requests = |kind: &str| value(s, "genie_requests_total", &[("kind", kind)]);
        for once in ["load", "prove_weights", "weights_uploaded", "open_session", "close_session"] {
            assert_eq!(requests(once), 1.0, "{addr}: {once}");
        }
        assert_eq!(requests("run"), 16.0, "{addr}");
        assert_eq!(observations(s, "genie_run_seconds", &[("entry", "prefill")]), 1.0, "{addr}");
        assert_eq!(observations(s, "genie_run_seconds", &[("entry", "decode")]), 15.0, "{addr}");
        assert_eq!(observations(s, "genie_queue_seconds", &[]), 16.0, "{addr}");
        assert!(s.samples.iter().all(|x| x.metric != "genie_request_errors_total"), "{addr}: no request failed");
        // Every uploaded weight is resident; the session is closed and its memory released.
        let uploaded = value(s, "genie_bytes_received_total", &[("purpose", "weight")]);
        let weights = value(s, "genie_memory_committed_bytes", &[("kind", "weights")])
            + value(s, "genie_weight_cache_bytes", &[]);
        assert_eq!(uploaded, weights, "{addr}: weights uploaded are held, loaded or cached");
        assert_eq!(value(s, "genie_sessions_active", &[]), 0.0, "{addr}");
        assert_eq!(value(s, "genie_memory_committed_bytes", &[("kind", "sessions")]), 0.0, "{addr}");
        assert_eq!(value(s, "genie_memory_committed_bytes", &[("kind", "activations")]), 0.0, "{addr}");
    }

    // A client with the wrong token is counted as refused, unauthorized.
    let refused = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["generate", p.to_str().unwrap(), d.to_str().unwrap(), "--cluster", cluster.to_str().unwrap()])
        .args(["--token", "guess", "--prompt", "1,2", "--max-new-tokens", "1", "--max-seq", "32"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let unauthorized: f64 =
        addrs.iter().map(|a| value(&scrape(a), "genie_refusals_total", &[("reason", "unauthorized")])).sum();
    assert!(unauthorized >= 1.0, "{unauthorized}");
}

/// The metrics listener answers only `GET /metrics`, and a scraper that sends junk or too much
/// gets nothing from it while the worker keeps serving.
#[test]
fn the_metrics_listener_refuses_what_is_not_a_scrape() {
    let mut worker = worker_process(&["--token", "s3cret", "--metrics", "127.0.0.1:0"]);
    let addr = worker.metrics.clone().unwrap();
    assert!(http(&addr, b"GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(http(&addr, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    // A request head over the limit is dropped without an answer.
    let mut huge = b"GET /metrics HTTP/1.1\r\nx: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 << 10));
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.write_all(&huge);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // Scrapers that connect and say nothing do not stop the next scrape.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let s = scrape(&addr);
    assert_eq!(value(&s, "genie_sessions_active", &[]), 0.0);
    drop(idle);
    assert!(worker.alive());
}

/// `genie generate --trace` against two worker processes: valid Chrome trace JSON, every event
/// with `ph`/`ts`/`pid`/`tid`, one process per device and one for the client, transfer spans
/// whose bytes add up to the calls' bytes, and each worker's spans inside the client's span of
/// the same call once moved onto the client's clock (the workers' clocks started when they did,
/// hundreds of milliseconds before the client's).
#[test]
fn trace_of_a_generation_on_two_worker_processes() {
    let workers: Vec<WorkerProcess> = (0..2).map(|_| worker_process(&["--token", "s3cret"])).collect();
    let cluster = cluster_file(&tmp("trace.ron"), &workers, true);
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let trace_path = tmp("generate.trace.json");
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["generate", p.to_str().unwrap(), d.to_str().unwrap(), "--cluster", cluster.to_str().unwrap()])
        .args(["--token", "s3cret", "--prompt", "11,17,116", "--max-new-tokens", "6", "--max-seq", "32", "--json"])
        .args(["--trace", trace_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = json["steps"].as_array().unwrap();
    let call_bytes: u64 = steps.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();

    let trace: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().expect("traceEvents");
    for e in events {
        for key in ["ph", "ts", "pid", "tid", "name"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
    }
    let process_names: HashMap<u64, String> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "process_name")
        .map(|e| (e["pid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap().to_string()))
        .collect();
    let mut names: Vec<&str> = process_names.values().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["client", "w0", "w1"]);
    let spans: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    let pids: std::collections::BTreeSet<u64> = spans.iter().map(|e| e["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids.len(), 3, "spans on the client and on both workers");
    let transferred: u64 = spans
        .iter()
        .filter(|e| e["cat"] == "transfer")
        .map(|e| e["args"]["bytes"].as_u64().expect("a transfer names its bytes"))
        .sum();
    assert_eq!(transferred, call_bytes, "transfer spans add up to the calls' bytes");
    for cat in ["compute", "wait", "transfer"] {
        assert!(spans.iter().any(|e| e["cat"] == cat), "no {cat} span");
    }

    // `genie run --trace` writes the same kind of file for its one call.
    let run_trace = tmp("run.trace.json");
    let model = fixture("bert/model.pt2");
    let inputs = fixture("bert/model.inputs.safetensors");
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["run", model.to_str().unwrap(), "--cluster", cluster.to_str().unwrap(), "--token", "s3cret"])
        .args(["--inputs", inputs.to_str().unwrap(), "--outputs", tmp("run.outputs.safetensors").to_str().unwrap()])
        .args(["--trace", run_trace.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&run_trace).unwrap()).unwrap();
    let run_events = run["traceEvents"].as_array().unwrap();
    assert!(run_events.iter().any(|e| e["cat"] == "transfer" && e["args"]["bytes"].as_u64() > Some(0)));
    assert!(run_events.iter().any(|e| e["name"] == "run model"), "the client's span of the call");

    // Each call's client span holds the worker spans of that call: the k-th "run" span on the
    // client and each worker's k-th "queue" span (one per run on each worker).
    let on = |process: &str, name: &str| -> Vec<(i64, i64)> {
        let pid = process_names.iter().find(|(_, n)| n.as_str() == process).map(|(p, _)| *p).unwrap();
        spans
            .iter()
            .filter(|e| e["pid"].as_u64() == Some(pid) && e["name"].as_str().unwrap().starts_with(name))
            .map(|e| {
                let ts = e["ts"].as_i64().unwrap();
                (ts, ts + e["dur"].as_i64().unwrap())
            })
            .collect()
    };
    let calls = on("client", "run ");
    assert_eq!(calls.len(), 6);
    // Loopback round trips are well under a millisecond: the alignment is at least that good.
    let slack = 2_000;
    for worker in ["w0", "w1"] {
        let queued = on(worker, "queue");
        assert_eq!(queued.len(), 6, "{worker}");
        for (k, ((call_start, call_end), (start, end))) in calls.iter().zip(&queued).enumerate() {
            assert!(
                *start >= call_start - slack && *end <= call_end + slack,
                "{worker}, call {k}: queue span {start}..{end} outside the call {call_start}..{call_end}"
            );
        }
    }
}

/// `genie compile --timeline` writes the estimated schedule as SVG beside the plan: a heading per
/// entry and a bar per region of ops and per transfer.
#[test]
fn compile_draws_the_estimated_timeline() {
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let (plan, svg) = (tmp("timeline.plan"), tmp("timeline.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["compile", p.to_str().unwrap(), d.to_str().unwrap(), "--workers", "2", "--worker-memory", "100KB"])
        .args(["--max-seq", "32", "-o", plan.to_str().unwrap(), "--timeline", svg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("wrote {}", svg.display())));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    assert!(text.contains("prefill — estimated") && text.contains("decode — estimated"), "{text}");
    for lane in ["worker0", "worker1", "worker0→worker1"] {
        assert!(text.contains(&format!(">{lane}</text>")), "no lane {lane}");
    }
    assert!(text.matches("<rect").count() > 4);
}

/// `genie generate --metrics ADDR --quiet` on the embedded default: it says on stderr where it
/// serves the latencies (stdout stays pure JSON), generates the reference tokens and reports the latencies in `--json`.
#[test]
fn generate_serves_its_latencies_and_reports_them() {
    let reference = read(&fixture("gpt2/generate.safetensors"));
    let prompt: Vec<String> =
        Vec::<i64>::try_from(reference["prompt"].flatten(0, -1)).unwrap().iter().map(|t| t.to_string()).collect();
    let want = Vec::<i64>::try_from(&reference["tokens"]).unwrap();
    let (p, d) = (fixture("gpt2/prefill.pt2"), fixture("gpt2/decode.pt2"));
    let out = Command::new(env!("CARGO_BIN_EXE_genie"))
        .args(["generate", p.to_str().unwrap(), d.to_str().unwrap(), "--prompt", &prompt.join(",")])
        .args(["--max-new-tokens", "16", "--max-seq", "32", "--metrics", "127.0.0.1:0", "--quiet", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("genie generate metrics on http://127.0.0.1:") && first.ends_with("/metrics"),
        "{stderr}"
    );
    // stdout is the JSON alone.
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens: Vec<i64> = json["tokens"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert_eq!(tokens, want);
    assert!(json["time_to_first_token_s"].as_f64().unwrap() > 0.0);
    assert_eq!(json["inter_token_s"].as_array().unwrap().len(), 15);
}
