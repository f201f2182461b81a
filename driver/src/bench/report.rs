//! The benchmark's results: rows, the table people read, and the plot of bytes per decode step.

use std::fmt::Write as _;

use serde::Serialize;

/// One mode on one workload.
#[derive(Serialize, Clone)]
pub struct RunRow {
    pub workload: String,
    pub context: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
    pub mode: String,
    /// `per-op` only: `cached-weights` (weights uploaded once, named by handle) or
    /// `weights-every-call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub runs: usize,
    pub wall_median_s: f64,
    pub wall_p99_s: f64,
    pub bytes_per_call: u64,
    pub round_trips: u64,
    pub peak_worker_bytes: u64,
    /// `genie` and `local`: the plan's fused element-wise regions (run as compiled loops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jit: Option<genie_codegen::JitSummary>,
    /// `torch`: which PyTorch module ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// A workload's `genie` and `local` time against PyTorch eager on the same work.
#[derive(Serialize, Clone)]
pub struct TorchRatio {
    pub workload: String,
    pub context: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<i64>,
    pub torch_median_s: f64,
    pub genie_over_torch: Option<f64>,
    pub local_over_torch: Option<f64>,
}

/// Compile time of one model: genie's pipeline next to onnxruntime's session creation.
#[derive(Serialize)]
pub struct CompileRow {
    pub model: String,
    pub genie_s: f64,
    pub onnxruntime_s: Option<f64>,
    pub ratio: Option<f64>,
}

/// QUIC (the runtime's endpoints) next to TCP on loopback.
#[derive(Serialize)]
pub struct TransportRow {
    pub quic_bulk_gbps: f64,
    pub tcp_bulk_gbps: f64,
    pub quic_rtt_us: f64,
    pub tcp_rtt_us: f64,
}

/// Everything one benchmark run measured (what `--json` writes).
#[derive(Serialize)]
pub struct Report {
    pub suite: String,
    pub workers: usize,
    /// libtorch's intra-op threads in this process, and the `torch` mode's.
    pub threads: i32,
    /// CPU-bound competitor processes running beside every mode.
    pub competitors: usize,
    pub runs: Vec<RunRow>,
    /// `genie ÷ torch` and `local ÷ torch` per workload.
    pub vs_torch: Vec<TorchRatio>,
    pub compile: Vec<CompileRow>,
    pub transport: TransportRow,
}

/// A plot line: name, colour, (context, bytes) points.
type Series<'a> = (String, &'a str, Vec<(f64, f64)>);

fn human(bytes: u64) -> String {
    genie_ir::render::human_bytes(bytes)
}

/// One line per row, for progress output.
pub(crate) fn row_lines(rows: &[RunRow]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "  {:<7} {:<20} median {:>9.3} ms  p99 {:>9.3} ms  {:>10}/call  {:>5} round trips  peak worker {}",
                r.mode,
                r.variant.as_deref().unwrap_or(""),
                r.wall_median_s * 1e3,
                r.wall_p99_s * 1e3,
                human(r.bytes_per_call),
                r.round_trips,
                human(r.peak_worker_bytes)
            )
        })
        .collect()
}

/// `genie ÷ torch` and `local ÷ torch` for every workload the `torch` mode ran.
pub fn torch_ratios(rows: &[RunRow]) -> Vec<TorchRatio> {
    let same = |a: &RunRow, b: &RunRow| a.workload == b.workload && a.context == b.context && a.batch == b.batch;
    rows.iter()
        .filter(|r| r.mode == "torch")
        .map(|torch| {
            let over = |mode: &str| {
                rows.iter()
                    .find(|r| r.mode == mode && same(r, torch))
                    .filter(|_| torch.wall_median_s > 0.0)
                    .map(|r| r.wall_median_s / torch.wall_median_s)
            };
            TorchRatio {
                workload: torch.workload.clone(),
                context: torch.context,
                batch: torch.batch,
                torch_median_s: torch.wall_median_s,
                genie_over_torch: over("genie"),
                local_over_torch: over("local"),
            }
        })
        .collect()
}

/// The table: every mode's figures and their ratio to genie's, then each workload against
/// PyTorch eager.
pub fn table(report: &Report) -> String {
    let mut t = String::new();
    writeln!(
        t,
        "\n{:<9} {:>7} {:<8} {:<19} {:>11} {:>11} {:>12} {:>7} {:>10} {:>9} {:>10} {:>8}",
        "workload",
        "context",
        "mode",
        "variant",
        "median ms",
        "p99 ms",
        "bytes/call",
        "trips",
        "peak",
        "× time",
        "× bytes",
        "× trips"
    )
    .ok();
    for r in &report.runs {
        let genie = report
            .runs
            .iter()
            .find(|g| g.mode == "genie" && g.workload == r.workload && g.context == r.context && g.batch == r.batch);
        let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "-".into() };
        let (rt, rb, rr) = match genie {
            Some(g) => (
                ratio(r.wall_median_s, g.wall_median_s),
                ratio(r.bytes_per_call as f64, g.bytes_per_call as f64),
                ratio(r.round_trips as f64, g.round_trips as f64),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        writeln!(
            t,
            "{:<9} {:>7} {:<8} {:<19} {:>11.3} {:>11.3} {:>12} {:>7} {:>10} {:>9} {:>10} {:>8}",
            match r.batch {
                Some(b) => format!("{} b{b}", r.workload),
                None => r.workload.clone(),
            },
            r.context.map_or("-".to_string(), |c| c.to_string()),
            r.mode,
            r.variant.as_deref().unwrap_or(""),
            r.wall_median_s * 1e3,
            r.wall_p99_s * 1e3,
            r.bytes_per_call,
            r.round_trips,
            human(r.peak_worker_bytes),
            rt,
            rb,
            rr
        )
        .ok();
    }
    if !report.vs_torch.is_empty() {
        writeln!(t, "\nagainst PyTorch eager (the workload's own module, {} threads each):", report.threads).ok();
        writeln!(
            t,
            "{:<12} {:>7} {:>13} {:>13} {:>13}",
            "workload", "context", "torch ms", "genie÷torch", "local÷torch"
        )
        .ok();
        let ratio = |r: Option<f64>| r.map_or("-".to_string(), |x| format!("{x:.2}"));
        for r in &report.vs_torch {
            writeln!(
                t,
                "{:<12} {:>7} {:>13.3} {:>13} {:>13}",
                match r.batch {
                    Some(b) => format!("{} b{b}", r.workload),
                    None => r.workload.clone(),
                },
                r.context.map_or("-".to_string(), |c| c.to_string()),
                r.torch_median_s * 1e3,
                ratio(r.genie_over_torch),
                ratio(r.local_over_torch)
            )
            .ok();
        }
    }
    if let Some(jit) = report.runs.iter().filter(|r| r.mode == "genie").find_map(|r| r.jit) {
        let decode = report.runs.iter().find(|r| r.mode == "genie" && r.workload == "decode").and_then(|r| r.jit);
        let jit = decode.unwrap_or(jit);
        writeln!(
            t,
            "\nfused element-wise regions (cranelift), decode plan: {} regions, {} ops",
            jit.regions, jit.ops_fused
        )
        .ok();
    }
    writeln!(t, "\ncompile time (median of 3):").ok();
    for c in &report.compile {
        let ort = c.onnxruntime_s.map_or("n/a".to_string(), |o| format!("{:.3} s", o));
        let ratio = c.ratio.map_or("n/a".to_string(), |r| format!("{r:.2}×"));
        writeln!(t, "  {:<34} genie {:.3} s   onnxruntime {}   genie/onnxruntime {}", c.model, c.genie_s, ort, ratio)
            .ok();
    }
    let tr = &report.transport;
    writeln!(
        t,
        "\ntransport (loopback): QUIC {:.2} Gbit/s vs TCP {:.2} Gbit/s ({:.0}% of TCP); round trip QUIC {:.0} µs vs TCP {:.0} µs",
        tr.quic_bulk_gbps,
        tr.tcp_bulk_gbps,
        100.0 * tr.quic_bulk_gbps / tr.tcp_bulk_gbps.max(1e-9),
        tr.quic_rtt_us,
        tr.tcp_rtt_us
    )
    .ok();
    t
}

/// SVG: bytes per decode step (log scale) against context, one line per mode.
pub fn plot(rows: &[RunRow]) -> String {
    let series: Vec<Series> = [
        ("genie", "#1b9e77"),
        ("blind", "#d95f02"),
        ("per-op cached-weights", "#7570b3"),
        ("per-op weights-every-call", "#e7298a"),
    ]
    .iter()
    .map(|(name, color)| {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.workload == "decode")
            .filter(|r| match r.variant.as_deref() {
                Some(v) => format!("{} {v}", r.mode) == *name,
                None => r.mode == *name,
            })
            .filter_map(|r| r.context.map(|c| (c as f64, r.bytes_per_call.max(1) as f64)))
            .collect();
        (name.to_string(), *color, pts)
    })
    .collect();
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.2.iter().copied()).collect();
    let (w, h, left, right, top, bottom) = (720.0, 440.0, 80.0, 220.0, 30.0, 50.0);
    let xs: Vec<f64> = all.iter().map(|p| p.0.log2()).collect();
    let ys: Vec<f64> = all.iter().map(|p| p.1.log10()).collect();
    let (x0, x1) = (xs.iter().copied().fold(f64::MAX, f64::min), xs.iter().copied().fold(f64::MIN, f64::max));
    let (y0, y1) =
        (ys.iter().copied().fold(f64::MAX, f64::min).floor(), ys.iter().copied().fold(f64::MIN, f64::max).ceil());
    let sx = |x: f64| left + (x.log2() - x0) / (x1 - x0).max(1e-9) * (w - left - right);
    let sy = |y: f64| h - bottom - (y.log10() - y0) / (y1 - y0).max(1e-9) * (h - top - bottom);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"18\" font-size=\"14\">Bytes on the wire per decode step (log scale) vs context length</text>\n"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - bottom,
        w - right,
        h - bottom
    );
    let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>", h - bottom);
    let mut e = y0 as i32;
    while e <= y1 as i32 {
        let y = sy(10f64.powi(e));
        let _ = writeln!(s, "<line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", w - right, left - 6.0, y + 4.0, human(10f64.powi(e) as u64));
        e += 1;
    }
    let mut contexts: Vec<f64> = all.iter().map(|p| p.0).collect();
    contexts.sort_by(f64::total_cmp);
    contexts.dedup();
    for c in &contexts {
        let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{c}</text>", sx(*c), h - bottom + 18.0);
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">context (tokens in the KV cache)</text>",
        (left + w - right) / 2.0,
        h - 12.0
    );
    for (i, (name, color, pts)) in series.iter().enumerate() {
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (x, y) in pts {
            let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>", sx(*x), sy(*y));
        }
        let ly = top + 20.0 + 20.0 * i as f64;
        let _ = writeln!(s, "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{name}</text>", w - right + 10.0, w - right + 30.0, w - right + 36.0, ly + 4.0);
    }
    s.push_str("</svg>\n");
    s
}
