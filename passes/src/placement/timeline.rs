//! The estimated schedule of one call of each entry, as placement's cost model sees it: when
//! each device computes (runs of consecutive ops merged into regions) and when each value
//! crosses a link, so a user sees where a placement waits. `genie compile --timeline FILE.svg`
//! draws it with [`svg`].

use genie_ir::Program;

use super::model::{Assign, Ctx, Scheduled};
use super::CLIENT;

/// One span of an estimated schedule.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedSpan {
    /// A device name, or a link `from→to`.
    pub lane: String,
    pub label: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Bytes moved (transfers), else 0.
    pub bytes: u64,
}

/// The estimated schedule of one call of an entry.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryTimeline {
    pub entry: String,
    pub latency_s: f64,
    /// Lanes in drawing order: the devices that compute, then the links used.
    pub lanes: Vec<String>,
    pub spans: Vec<PlannedSpan>,
}

/// Simulate each entry under `assign` and record its schedule.
pub(crate) fn timelines(ctx: &Ctx, program: &Program, assign: &Assign) -> Vec<EntryTimeline> {
    let name = |d: usize| ctx.cluster.devices.get(d).map_or(CLIENT, |x| x.name.as_str()).to_string();
    (0..ctx.entries.len())
        .map(|e| {
            let mut record = Vec::new();
            let estimate = ctx.simulate(e, assign, Some(&mut record));
            let graph = &program.entries[e];
            let mut devices: Vec<String> = Vec::new();
            let mut links: Vec<String> = Vec::new();
            let mut spans: Vec<PlannedSpan> = Vec::new();
            // Per device, the region being grown: (index in spans, ops in it, its first op).
            let mut open: Vec<Option<(usize, usize, String)>> = vec![None; ctx.k + 1];
            for item in record {
                match item {
                    Scheduled::Node { node, device, start_s, end_s } => {
                        let lane = name(device);
                        if !devices.contains(&lane) {
                            devices.push(lane.clone());
                        }
                        let op = graph.nodes.get(node.index()).map_or_else(|| "?".to_string(), |n| n.op.to_string());
                        match &mut open[device] {
                            Some((i, count, first)) if (spans[*i].end_s - start_s).abs() <= 1e-12 => {
                                *count += 1;
                                spans[*i].end_s = end_s;
                                spans[*i].label = format!("{count} ops: {first} … {op}");
                            }
                            slot => {
                                *slot = Some((spans.len(), 1, op.clone()));
                                spans.push(PlannedSpan {
                                    lane,
                                    label: format!("1 op: {op}"),
                                    start_s,
                                    end_s,
                                    bytes: 0,
                                });
                            }
                        }
                    }
                    Scheduled::Transfer { value, from, to, start_s, end_s, bytes } => {
                        let lane = format!("{}→{}", name(from), name(to));
                        if !links.contains(&lane) {
                            links.push(lane.clone());
                        }
                        let label =
                            graph.values.get(value.index()).map_or_else(|| value.to_string(), |v| v.name.clone());
                        spans.push(PlannedSpan { lane, label, start_s, end_s, bytes });
                    }
                }
            }
            devices.extend(links);
            EntryTimeline { entry: estimate.entry, latency_s: estimate.latency_s, lanes: devices, spans }
        })
        .collect()
}

const WIDTH: f64 = 960.0;
const LABELS: f64 = 150.0;
const LANE: f64 = 26.0;
const HEADING: f64 = 46.0;

/// Draw `timelines` as one SVG: per entry a heading, a time axis and a lane per device and link;
/// compute regions blue, transfers orange (bytes in each span's tooltip), idle time blank.
pub fn svg(timelines: &[EntryTimeline]) -> String {
    let height: f64 = timelines.iter().map(|t| HEADING + LANE * t.lanes.len() as f64 + 30.0).sum::<f64>() + 10.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let mut y = 10.0;
    for t in timelines {
        let span_s = t.latency_s.max(t.spans.iter().map(|s| s.end_s).fold(0.0, f64::max)).max(1e-9);
        let scale = (WIDTH - LABELS - 20.0) / span_s;
        out += &format!(
            "<text x=\"10\" y=\"{:.1}\" font-size=\"14\" font-weight=\"bold\">{} — estimated {} per call</text>\n",
            y + 16.0,
            escape(&t.entry),
            seconds(t.latency_s)
        );
        let top = y + HEADING - 10.0;
        for i in 0..=4 {
            let x = LABELS + (WIDTH - LABELS - 20.0) * i as f64 / 4.0;
            let bottom = top + LANE * t.lanes.len() as f64;
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            let at = if i == 0 { "0".to_string() } else { seconds(span_s * i as f64 / 4.0) };
            out += &format!(
                "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>\n\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"#666\">{at}</text>\n",
                top - 4.0
            );
        }
        for (i, lane) in t.lanes.iter().enumerate() {
            let ly = top + LANE * i as f64;
            out += &format!("<text x=\"10\" y=\"{:.1}\">{}</text>\n", ly + LANE * 0.65, escape(lane));
            for s in t.spans.iter().filter(|s| &s.lane == lane) {
                let x = LABELS + s.start_s * scale;
                let w = ((s.end_s - s.start_s) * scale).max(0.5);
                let (fill, tip) = if s.bytes > 0 || lane.contains('→') {
                    (
                        "#f28e2b",
                        format!(
                            "{} ({}) {}",
                            s.label,
                            genie_ir::render::human_bytes(s.bytes),
                            seconds(s.end_s - s.start_s)
                        ),
                    )
                } else {
                    ("#4e79a7", format!("{} {}", s.label, seconds(s.end_s - s.start_s)))
                };
                out += &format!(
                    "<rect x=\"{x:.2}\" y=\"{:.1}\" width=\"{w:.2}\" height=\"{:.1}\" fill=\"{fill}\"><title>{}</title></rect>\n",
                    ly + 3.0,
                    LANE - 6.0,
                    escape(&tip)
                );
            }
        }
        y += HEADING + LANE * t.lanes.len() as f64 + 30.0;
    }
    out += "</svg>\n";
    out
}

fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
