//! Timelines of calls: the trace clock, the spans a call's client and workers record, and the
//! Chrome trace-event file `genie run/generate --trace FILE` writes (it opens in Perfetto or
//! `chrome://tracing`).
//!
//! Each process (the client, each worker) measures on its own trace clock: microseconds since
//! it started. A worker sends its clock in the Welcome, read somewhere between the client's
//! sending the Hello and receiving the answer, which bounds `offset = worker clock - client
//! clock` to an interval as wide as that round trip ([`ClockSync`]). Every call narrows it
//! further: the worker's part of a call starts after the client sent the call and ends before
//! the client has its answer. The offset used is the middle of what is left, so a worker's spans
//! never show outside the call they belong to.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use serde::Serialize;

use crate::wire::TraceSpan;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Start this process's trace clock now, if it has not started (a worker does when it starts,
/// so its clock counts from then; otherwise the first reading starts it).
pub fn start_clock() {
    EPOCH.get_or_init(Instant::now);
}

/// Microseconds on this process's trace clock.
pub fn now_us() -> u64 {
    micros_since_epoch(Instant::now())
}

/// `at` on this process's trace clock.
pub fn micros_since_epoch(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// What the client knows of one worker's clock: `offset = worker clock - client clock` lies in
/// `[low, high]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockSync {
    pub low: i64,
    pub high: i64,
}

impl ClockSync {
    /// From a Hello sent at `sent` and answered at `answered` (client clock) by a worker whose
    /// clock read `worker` in between.
    pub fn from_hello(sent: u64, answered: u64, worker: u64) -> ClockSync {
        let (sent, answered, worker) = (sent as i64, answered as i64, worker as i64);
        ClockSync { low: worker - answered, high: worker - sent }
    }

    /// Narrow with a call the client sent at `sent` and had answered by `answered` (client
    /// clock), whose part on the worker ran from `first` to `last` (worker clock). A bound that
    /// would leave nothing is ignored (the measurements disagree; keep what was known).
    pub fn narrow(&mut self, sent: u64, answered: u64, first: u64, last: u64) {
        let low = self.low.max(last as i64 - answered as i64);
        let high = self.high.min(first as i64 - sent as i64);
        if low <= high {
            *self = ClockSync { low, high };
        }
    }

    /// The offset to use: the middle of what is possible.
    pub fn offset(&self) -> i64 {
        self.low + (self.high - self.low) / 2
    }
}

/// A span on the client's clock, with the process it belongs to (`client` or a device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub process: String,
    /// The track within the process: `calls`, `exec`, or a link (`client→w0`).
    pub track: String,
    pub name: String,
    /// Microseconds on the client's trace clock.
    pub start_us: i64,
    pub dur_us: u64,
    /// Tensor bytes moved (transfers), else 0.
    pub bytes: u64,
}

impl Span {
    /// A worker's span moved onto the client's clock; `offset_us` is the worker's clock minus
    /// the client's.
    pub fn from_worker(device: &str, span: &TraceSpan, offset_us: i64) -> Span {
        Span {
            process: device.to_string(),
            track: span.track.clone(),
            name: span.name.clone(),
            start_us: i64::try_from(span.start_us).unwrap_or(i64::MAX).saturating_sub(offset_us),
            dur_us: span.dur_us,
            bytes: span.bytes,
        }
    }

    /// Whether it is a transfer (its bytes crossed a link).
    pub fn is_transfer(&self) -> bool {
        self.track.contains('→')
    }
}

#[derive(Serialize)]
struct Event<'a> {
    name: &'a str,
    cat: &'a str,
    ph: &'a str,
    ts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<u64>,
    pid: usize,
    tid: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    args: BTreeMap<&'a str, serde_json::Value>,
}

/// The Chrome trace-event document of `spans`: one process per device and one for the client
/// (the client first), one thread per track, an `X` event per span (`args.bytes` on
/// transfers), times from the earliest span.
pub fn chrome_trace(spans: &[Span]) -> serde_json::Value {
    let mut processes: Vec<&str> = Vec::new();
    let mut tracks: Vec<(&str, &str)> = Vec::new();
    let origin = spans.iter().map(|s| s.start_us).min().unwrap_or(0);
    let mut events = Vec::new();
    let client_first = spans.iter().any(|s| s.process == genie_codegen::CLIENT);
    if client_first {
        processes.push(genie_codegen::CLIENT);
    }
    for s in spans {
        let pid = match processes.iter().position(|p| *p == s.process) {
            Some(i) => i,
            None => {
                processes.push(&s.process);
                processes.len() - 1
            }
        };
        let tid = match tracks.iter().position(|t| *t == (s.process.as_str(), s.track.as_str())) {
            Some(i) => i,
            None => {
                tracks.push((&s.process, &s.track));
                tracks.len() - 1
            }
        };
        let cat = if s.is_transfer() {
            "transfer"
        } else if s.name.starts_with("wait") || s.name == "queue" {
            "wait"
        } else {
            "compute"
        };
        let mut args = BTreeMap::new();
        if s.bytes > 0 {
            args.insert("bytes", serde_json::json!(s.bytes));
        }
        events.push(Event {
            name: &s.name,
            cat,
            ph: "X",
            ts: Some(s.start_us - origin),
            dur: Some(s.dur_us),
            pid,
            tid,
            args,
        });
    }
    for (pid, name) in processes.iter().enumerate() {
        let args = BTreeMap::from([("name", serde_json::json!(name))]);
        events.push(Event { name: "process_name", cat: "", ph: "M", ts: Some(0), dur: None, pid, tid: 0, args });
    }
    for (tid, (process, track)) in tracks.iter().enumerate() {
        let pid = processes.iter().position(|p| p == process).unwrap_or(0);
        let args = BTreeMap::from([("name", serde_json::json!(track))]);
        events.push(Event { name: "thread_name", cat: "", ph: "M", ts: Some(0), dur: None, pid, tid, args });
    }
    serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" })
}

/// Write [`chrome_trace`] of `spans` to `path`.
pub fn write_chrome_trace(path: &Path, spans: &[Span]) -> std::io::Result<()> {
    let text = serde_json::to_string(&chrome_trace(spans)).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_is_bounded_by_the_hello_and_narrowed_by_calls() {
        // The worker read 5_000 while the client's Hello went out at 100 and came back at 300.
        let mut clock = ClockSync::from_hello(100, 300, 5_000);
        assert_eq!(clock, ClockSync { low: 4_700, high: 4_900 });
        assert_eq!(clock.offset(), 4_800);
        // A call sent at 1_000, answered at 1_500, ran on the worker from 5_960 to 6_300: the
        // offset is at most 4_960 and at least 4_800.
        clock.narrow(1_000, 1_500, 5_960, 6_300);
        assert_eq!(clock, ClockSync { low: 4_800, high: 4_900 });
        // Each span of that call, moved by the offset, lies within the call.
        let offset = clock.offset();
        assert!(5_960 - offset >= 1_000 && 6_300 - offset <= 1_500);
        // Measurements that leave nothing possible are ignored.
        clock.narrow(2_000, 2_001, 1_000, 90_000);
        assert_eq!(clock, ClockSync { low: 4_800, high: 4_900 });
    }
}
