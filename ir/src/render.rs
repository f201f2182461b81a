//! Renderings for people: the text dump (also used by snapshot tests), Graphviz DOT and the
//! JSON summary. RON lives with [`crate::Program`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::annot::Phase;
use crate::graph::{Arg, Graph, OutputKind, ValueDef, ValueId};
use crate::program::Program;
use crate::registry;
use crate::types::TensorType;

/// `aten.add.Tensor(%1, %2, alpha=1)`: tensor arguments by position, attributes by name.
fn fmt_call(op: &str, args: &[Arg]) -> String {
    let schema = registry::registry().get(op).map(|d| &d.schema);
    let parts: Vec<String> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let is_tensor = matches!(a, Arg::Tensor(_) | Arg::Tensors(_) | Arg::OptTensors(_));
            match schema.and_then(|s| s.args.get(i)) {
                Some(spec) if !is_tensor => format!("{}={a}", spec.name),
                _ => a.to_string(),
            }
        })
        .collect();
    format!("{op}({})", parts.join(", "))
}

fn value_line(g: &Graph, v: ValueId) -> String {
    let val = g.value(v);
    let mut s = format!("{v} {}: {}", val.name, val.ty);
    if let ValueDef::Weight(h) = &val.def {
        write!(s, " #{}", h.short()).ok();
    }
    if let Some(r) = val.ann.residency {
        write!(s, " {r}").ok();
    }
    if let Some(m) = val.ann.modality {
        write!(s, " modality={m}").ok();
    }
    if let Some(r) = val.ann.role {
        write!(s, " role={r}").ok();
    }
    s
}

/// Seconds with three significant digits in a readable unit: `27.6 µs`, `4.36 ms`, `1.23 s`.
pub fn human_seconds(s: f64) -> String {
    let (v, unit) = match s.abs() {
        x if x >= 1.0 || x == 0.0 => (s, "s"),
        x if x >= 1e-3 => (s * 1e3, "ms"),
        x if x >= 1e-6 => (s * 1e6, "µs"),
        _ => (s * 1e9, "ns"),
    };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// Bytes for people: `1.5 GiB`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The text dump of one graph: one line per node, in storage order.
pub fn dump_graph(g: &Graph) -> String {
    let mut s = String::new();
    writeln!(s, "entry {} phase={}", g.name, g.phase).ok();
    for (name, range) in &g.symbols {
        writeln!(s, "  symbol {name} in {range}").ok();
    }
    for &v in &g.inputs {
        writeln!(s, "  input {}", value_line(g, v)).ok();
    }
    for (vi, val) in g.values.iter().enumerate() {
        match &val.def {
            ValueDef::Weight(_) => writeln!(s, "  weight {}", value_line(g, ValueId(vi as u32))).ok(),
            ValueDef::Const(b) => {
                writeln!(s, "  const {} = 0x{}", value_line(g, ValueId(vi as u32)), hex_preview(&b.0)).ok()
            }
            _ => None,
        };
    }
    for (ni, node) in g.nodes.iter().enumerate() {
        let outs: Vec<String> = node.outputs.iter().map(|v| format!("{v}: {}", g.value(*v).ty)).collect();
        let lhs = match outs.len() {
            0 => "()".to_string(),
            1 => outs[0].clone(),
            _ => format!("({})", outs.join(", ")),
        };
        write!(s, "  n{ni}: {lhs} = {}", fmt_call(&node.op, &node.args)).ok();
        let ann = &node.ann;
        if let Some(p) = ann.phase {
            write!(s, " phase={p}").ok();
        }
        if !ann.regions.is_empty() {
            let tags: Vec<String> = ann
                .regions
                .iter()
                .map(|r| g.regions.get(r.0 as usize).map_or(format!("?{r}"), |x| format!("{}#{}", x.tag, r.0)))
                .collect();
            write!(s, " tags=[{}]", tags.join(", ")).ok();
        }
        if let Some(d) = &ann.device {
            write!(s, " device={d}").ok();
        }
        if let Some(b) = ann.batching {
            write!(s, " batch={b}").ok();
        }
        if let Some(c) = &ann.cost {
            write!(
                s,
                " cost={{flops={}, read={}, written={}, intensity={:.3}}}",
                c.flops, c.bytes_read, c.bytes_written, c.intensity
            )
            .ok();
        }
        if let Some(m) = &ann.module_path {
            write!(s, " @{m}").ok();
        }
        if let Some(src) = &ann.source {
            write!(s, " src={src}").ok();
        }
        s.push('\n');
    }
    for out in &g.outputs {
        let kind = match &out.kind {
            OutputKind::User => String::new(),
            OutputKind::BufferMutation { buffer } => format!(" (mutates buffer {buffer})"),
        };
        writeln!(s, "  output {} = {}{kind}", out.name, out.value).ok();
    }
    for (ri, r) in g.regions.iter().enumerate() {
        let list = |xs: Vec<String>| xs.join(", ");
        writeln!(
            s,
            "  region r{ri} {} nodes=[{}] entries=[{}] exits=[{}]",
            r.tag,
            list(r.nodes.iter().map(ToString::to_string).collect()),
            list(r.entries.iter().map(ToString::to_string).collect()),
            list(r.exits.iter().map(ToString::to_string).collect()),
        )
        .ok();
    }
    for e in &g.critical_edges {
        writeln!(s, "  critical {} -> {}", e.value, e.consumer).ok();
    }
    s
}

fn hex_preview(b: &[u8]) -> String {
    let mut s: String = b.iter().take(16).map(|x| format!("{x:02x}")).collect();
    if b.len() > 16 {
        s.push_str("..");
    }
    s
}

/// The text dump of a program: header, weight store, state bindings, then each entry.
pub fn dump_program(p: &Program) -> String {
    let mut s = String::new();
    writeln!(s, "program {} (format {})", p.name, p.version).ok();
    writeln!(s, "weights {} ({})", p.weights.len(), human_bytes(p.weights.total_bytes())).ok();
    for (h, w) in p.weights.iter() {
        let loc = match &w.data {
            crate::weights::WeightData::Inline(_) => "inline".to_string(),
            crate::weights::WeightData::External { path, offset, .. } => format!("{}@{offset}", path.display()),
        };
        writeln!(s, "  #{} {} {} {loc}", h.short(), w.ty, human_bytes(w.byte_len())).ok();
    }
    for b in &p.state_bindings {
        writeln!(s, "state {}.{} -> {}.{}", b.from.entry, b.from.name, b.to.entry, b.to.name).ok();
    }
    for g in &p.entries {
        s.push('\n');
        s.push_str(&dump_graph(g));
    }
    s
}

/// How DOT output colours nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotColoring {
    Phase,
    Tag,
    Device,
    /// Device when placed, else tag when tagged, else phase.
    Auto,
}

const PALETTE: [&str; 10] =
    ["#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#d9d9d9", "#bc80bd"];

fn phase_color(p: Phase) -> &'static str {
    match p {
        Phase::LlmPrefill => "#80b1d3",
        Phase::LlmDecode => "#fb8072",
        Phase::Encoder => "#b3de69",
        Phase::Vision => "#fdb462",
        Phase::Unknown => "#ffffff",
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT for a program: one cluster per entry, nodes coloured, edges labelled with bytes.
pub fn dot_program(p: &Program, coloring: DotColoring) -> String {
    let placed = p.entries.iter().any(|g| g.nodes.iter().any(|n| n.ann.device.is_some()));
    let tagged = p.entries.iter().any(|g| !g.regions.is_empty());
    let coloring = match coloring {
        DotColoring::Auto if placed => DotColoring::Device,
        DotColoring::Auto if tagged => DotColoring::Tag,
        DotColoring::Auto => DotColoring::Phase,
        c => c,
    };
    let mut devices: BTreeMap<String, usize> = BTreeMap::new();
    for g in &p.entries {
        for n in &g.nodes {
            if let Some(d) = &n.ann.device {
                let k = devices.len();
                devices.entry(d.clone()).or_insert(k);
            }
        }
    }
    let mut s = String::new();
    writeln!(s, "digraph \"{}\" {{", dot_escape(&p.name)).ok();
    writeln!(s, "  rankdir=TB;\n  node [shape=box, style=filled, fontname=\"monospace\", fontsize=10];\n  edge [fontname=\"monospace\", fontsize=9];").ok();
    for (gi, g) in p.entries.iter().enumerate() {
        writeln!(s, "  subgraph \"cluster_{gi}\" {{\n    label=\"{} ({})\";", dot_escape(&g.name), g.phase).ok();
        let id_of_value = |v: ValueId| -> String {
            match g.producer(v) {
                Some(n) => format!("g{gi}n{}", n.0),
                None => format!("g{gi}v{}", v.0),
            }
        };
        for (vi, val) in g.values.iter().enumerate() {
            let shape = match val.def {
                ValueDef::Input(_) => "ellipse",
                ValueDef::Weight(_) | ValueDef::Const(_) => "cylinder",
                ValueDef::Node { .. } => continue,
            };
            writeln!(
                s,
                "    g{gi}v{vi} [label=\"{}\\n{}\", shape={shape}, fillcolor=\"#eeeeee\"];",
                dot_escape(&val.name),
                val.ty
            )
            .ok();
        }
        for (ni, node) in g.nodes.iter().enumerate() {
            let color = match coloring {
                DotColoring::Device => node
                    .ann
                    .device
                    .as_ref()
                    .and_then(|d| devices.get(d))
                    .map_or("#ffffff", |i| PALETTE[i % PALETTE.len()]),
                DotColoring::Tag => node
                    .ann
                    .regions
                    .first()
                    .and_then(|r| g.regions.get(r.0 as usize))
                    .map_or("#ffffff", |r| PALETTE[r.tag as usize % PALETTE.len()]),
                _ => phase_color(node.ann.phase.unwrap_or(g.phase)),
            };
            let outs: Vec<String> = node.outputs.iter().map(|v| g.value(*v).ty.to_string()).collect();
            let mut label = format!("n{ni} {}\\n{}", node.op, outs.join(", "));
            if let Some(d) = &node.ann.device {
                write!(label, "\\n@{d}").ok();
            }
            writeln!(
                s,
                "    g{gi}n{ni} [label=\"{}\", fillcolor=\"{color}\"];",
                dot_escape(&label).replace("\\\\n", "\\n")
            )
            .ok();
        }
        for e in g.edges() {
            writeln!(
                s,
                "    {} -> g{gi}n{} [label=\"{} B\"{}];",
                id_of_value(e.value),
                e.consumer.0,
                e.bytes,
                if e.critical { ", penwidth=2" } else { "" }
            )
            .ok();
        }
        for (oi, out) in g.outputs.iter().enumerate() {
            writeln!(s, "    g{gi}o{oi} [label=\"{}\", shape=ellipse, fillcolor=\"#eeeeee\"];", dot_escape(&out.name))
                .ok();
            writeln!(
                s,
                "    {} -> g{gi}o{oi} [label=\"{} B\"];",
                id_of_value(out.value),
                g.value(out.value).ty.bytes()
            )
            .ok();
        }
        writeln!(s, "  }}").ok();
    }
    writeln!(s, "}}").ok();
    s
}

/// One input or output in a summary.
#[derive(Serialize, Debug, PartialEq, Clone)]
pub struct PortSummary {
    pub name: String,
    pub dtype: String,
    /// Ints for static dims, strings for symbolic ones.
    pub shape: Vec<serde_json::Value>,
    /// What a per-call input carries, once the annotate pass found it (`token_ids`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// Weight totals.
#[derive(Serialize, Debug, PartialEq)]
pub struct WeightSummary {
    pub count: usize,
    pub bytes: u64,
}

/// One state binding in a summary: `entry.output` feeds `entry.input` at the next call.
#[derive(Serialize, Debug, PartialEq)]
pub struct BindingSummary {
    pub from: String,
    pub to: String,
}

/// The `--summary --format json` object of one entry graph.
#[derive(Serialize, Debug, PartialEq)]
pub struct EntrySummary {
    pub name: String,
    pub phase: String,
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub inputs: Vec<PortSummary>,
    pub outputs: Vec<PortSummary>,
    pub weights: WeightSummary,
    /// Tag → number of tagged regions.
    pub tags: BTreeMap<String, usize>,
    /// Residency → bytes (symbols bound as in [`SummaryOptions`]; weights counted once).
    pub residency_bytes: BTreeMap<String, u64>,
    /// Total FLOPs of the cost hints (0 before the cost pass).
    pub flops: u64,
    /// The symbol values the byte totals used.
    pub bindings: BTreeMap<String, i64>,
}

/// The `--summary --format json` object of a program. `nodes`, `ops` and `weights` are totals
/// over all entries (weights counted once); `inputs` and `outputs` are the first entry's, in the
/// order the model declares them; `entries` has the same fields per entry.
#[derive(Serialize, Debug, PartialEq)]
pub struct Summary {
    pub name: String,
    /// The first entry's phase (each entry's is in `entries`).
    pub phase: String,
    pub nodes: usize,
    pub ops: BTreeMap<String, usize>,
    pub inputs: Vec<PortSummary>,
    pub outputs: Vec<PortSummary>,
    pub weights: WeightSummary,
    pub tags: BTreeMap<String, usize>,
    pub residency_bytes: BTreeMap<String, u64>,
    pub flops: u64,
    pub state_bindings: Vec<BindingSummary>,
    pub entries: Vec<EntrySummary>,
}

/// How symbolic sizes become numbers in a summary.
#[derive(Debug, Clone, Default)]
pub struct SummaryOptions {
    /// Symbol values given by the user (`--bind s0=512`); others default from their ranges.
    pub bindings: BTreeMap<String, i64>,
}

fn port(name: &str, ty: &TensorType, role: Option<crate::InputRole>) -> PortSummary {
    PortSummary {
        name: name.to_string(),
        role: role.map(|r| r.name().to_string()),
        dtype: ty.dtype.torch_name().to_string(),
        shape: ty
            .shape
            .iter()
            .map(|d| match d.as_const() {
                Some(v) => serde_json::Value::from(v),
                None => serde_json::Value::from(d.to_string()),
            })
            .collect(),
    }
}

/// Bytes per residency; a weight is counted once however many values reference it.
fn residency_bytes(g: &Graph, bindings: &BTreeMap<String, i64>) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen_weights = std::collections::BTreeSet::new();
    for v in &g.values {
        let Some(r) = v.ann.residency else { continue };
        if let ValueDef::Weight(h) = &v.def {
            if !seen_weights.insert(h.clone()) {
                continue;
            }
        }
        let bytes = v.ty.bytes().eval(bindings).map(|b| b.max(0) as u64).unwrap_or(0);
        let slot = out.entry(r.name().to_string()).or_insert(0);
        *slot = slot.saturating_add(bytes);
    }
    out
}

/// Summarise one entry.
pub fn entry_summary(p: &Program, g: &Graph, options: &SummaryOptions) -> EntrySummary {
    let (count, bytes) = p.weight_bytes_of(g);
    let bindings = g.bind_symbols(&options.bindings);
    let mut tags = BTreeMap::new();
    for r in &g.regions {
        *tags.entry(r.tag.name().to_string()).or_insert(0) += 1;
    }
    EntrySummary {
        name: g.name.clone(),
        phase: g.phase.to_string(),
        nodes: g.nodes.len(),
        ops: g.op_counts(),
        inputs: g.inputs.iter().map(|v| port(&g.value(*v).name, &g.value(*v).ty, g.value(*v).ann.role)).collect(),
        outputs: g.outputs.iter().map(|o| port(&o.name, &g.value(o.value).ty, None)).collect(),
        weights: WeightSummary { count, bytes },
        tags,
        residency_bytes: residency_bytes(g, &bindings),
        flops: g.nodes.iter().filter_map(|n| n.ann.cost.as_ref()).map(|c| c.flops).fold(0, u64::saturating_add),
        bindings,
    }
}

/// Summarise a program.
pub fn summary(p: &Program, options: &SummaryOptions) -> Summary {
    let entries: Vec<EntrySummary> = p.entries.iter().map(|g| entry_summary(p, g, options)).collect();
    let mut ops = BTreeMap::new();
    let mut tags = BTreeMap::new();
    let mut residency: BTreeMap<String, u64> = BTreeMap::new();
    for e in &entries {
        for (k, v) in &e.ops {
            *ops.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &e.tags {
            *tags.entry(k.clone()).or_insert(0) += v;
        }
        for (k, v) in &e.residency_bytes {
            // Weights are shared between entries: the store is counted once below.
            if k != "persistent_weight" {
                let slot = residency.entry(k.clone()).or_insert(0);
                *slot = slot.saturating_add(*v);
            }
        }
    }
    if entries.iter().any(|e| e.residency_bytes.contains_key("persistent_weight")) {
        residency.insert("persistent_weight".into(), p.weights.total_bytes());
    }
    let (inputs, outputs) = match entries.first() {
        Some(e) => (e.inputs.clone(), e.outputs.clone()),
        None => (Vec::new(), Vec::new()),
    };
    Summary {
        name: p.name.clone(),
        phase: entries.first().map(|e| e.phase.clone()).unwrap_or_else(|| "unknown".into()),
        nodes: entries.iter().map(|e| e.nodes).sum(),
        ops,
        inputs,
        outputs,
        weights: WeightSummary { count: p.weights.len(), bytes: p.weights.total_bytes() },
        tags,
        residency_bytes: residency,
        flops: entries.iter().map(|e| e.flops).fold(0, u64::saturating_add),
        state_bindings: p
            .state_bindings
            .iter()
            .map(|b| BindingSummary {
                from: format!("{}.{}", b.from.entry, b.from.name),
                to: format!("{}.{}", b.to.entry, b.to.name),
            })
            .collect(),
        entries,
    }
}
