//! Renderings of a plan for people: the `--summary` structure, the text dump, and the placed
//! program rebuilt from the plan (for DOT coloured by device).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use genie_ir::{Graph, GraphOutput, Node, NodeAnn, OutputKind, Program, SymRange, Value, ValueAnn, ValueDef};
use serde::Serialize;

use crate::plan::*;

/// One device in a plan summary.
#[derive(Serialize, Debug, PartialEq, Clone)]
pub struct DeviceSummary {
    pub name: String,
    pub kind: String,
    /// Nodes executed here, over all entries.
    pub nodes: usize,
    pub weight_bytes: u64,
    pub kv_bytes: u64,
    pub activation_bytes: u64,
    pub peak_bytes: u64,
    pub memory_bytes: u64,
}

/// One transfer in a plan summary.
#[derive(Serialize, Debug, PartialEq, Clone)]
pub struct TransferSummary {
    pub from: String,
    pub to: String,
    pub bytes: u64,
    /// The tensor's name.
    pub value: String,
    /// `ephemeral_activation`, `stateful_kv_cache`, `persistent_weight` (empty when unknown).
    pub residency: String,
}

/// One entry in a plan summary.
#[derive(Serialize, Debug, PartialEq, Clone)]
pub struct EntrySummaryOfPlan {
    /// The placement's estimate of one call, when the plan has one.
    pub est_latency_s: Option<f64>,
    pub compute_s: Option<f64>,
    pub transfer_s: Option<f64>,
    pub network_latency_s: Option<f64>,
    /// Everything that crosses the network in one call.
    pub bytes_per_call: u64,
    /// Request/response pairs the longest chain of messages amounts to: `ceil(hops / 2)`.
    pub round_trips: u32,
    /// Network messages in sequence on the longest chain.
    pub hops: u32,
    /// Devices that run any of this entry's ops, in the cluster's order (a device that only
    /// receives a state handoff is not one).
    pub devices: Vec<String>,
    pub transfers: Vec<TransferSummary>,
}

/// State one entry hands to another entry's device: prefill's KV cache going to where decode
/// runs, once per request.
#[derive(Serialize, Debug, PartialEq, Clone)]
pub struct HandoffSummary {
    pub from_entry: String,
    /// The entry that reads the state (the first that does, when several do).
    pub to_entry: String,
    pub from_device: String,
    pub to_device: String,
    /// Bytes at the request's prompt length (the entry's cost bindings).
    pub bytes: u64,
    /// Sent layer by layer as each is produced, overlapping the rest of the sender's compute.
    pub layerwise: bool,
    /// Tensors handed over.
    pub tensors: usize,
}

/// The `genie inspect PLAN --summary` object.
#[derive(Serialize, Debug, PartialEq, Clone)]
pub struct PlanSummary {
    pub program: String,
    pub policy: Option<String>,
    pub max_seq: Option<i64>,
    pub devices: Vec<DeviceSummary>,
    /// Slot name → device.
    pub state_slots: BTreeMap<String, String>,
    pub entries: BTreeMap<String, EntrySummaryOfPlan>,
    /// Grouped by (from entry, to entry, from device, to device).
    pub state_handoffs: Vec<HandoffSummary>,
    /// For a program whose prefill hands state to decode: the request, together or apart, the
    /// estimates of the choice and of the best alternative on each side, why.
    pub estimates: Option<PhaseRecord>,
    /// With `--replicas`: each copy's devices, in the order of `devices` (empty: one copy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<Vec<String>>,
    /// The fused element-wise regions of every device plan ([`crate::fusion`]).
    pub jit: JitSummary,
}

/// How much of a plan runs as compiled loops.
#[derive(Serialize, Debug, PartialEq, Eq, Clone, Copy, Default)]
pub struct JitSummary {
    /// Fused regions, over every entry and device.
    pub regions: usize,
    /// Ops inside them (nodes, and dense layers' bias adds taken in).
    pub ops_fused: usize,
}

impl JitSummary {
    pub fn of(plan: &ProgramPlan) -> JitSummary {
        let (regions, ops_fused) = crate::fusion::counts(plan);
        JitSummary { regions, ops_fused }
    }
}

/// The devices that run any of an entry's ops, in the cluster's order (a device that only
/// receives a state handoff is not one).
pub fn devices_running(entry: &EntryPlan) -> Vec<String> {
    entry
        .plans
        .iter()
        .filter(|p| p.steps.iter().any(|s| matches!(s, Step::Exec { .. })))
        .map(|p| p.device.clone())
        .collect()
}

/// The handoffs of a plan, grouped by entries and devices.
pub fn handoffs(plan: &ProgramPlan) -> Vec<HandoffSummary> {
    let mut out: Vec<HandoffSummary> = Vec::new();
    for e in &plan.entries {
        for h in &e.handoffs {
            let reader = plan
                .state_slots
                .iter()
                .find(|s| s.id == h.slot)
                .and_then(|s| s.reads.iter().map(|p| p.entry.clone()).find(|r| *r != e.name))
                .unwrap_or_default();
            let same = |x: &HandoffSummary| {
                x.from_entry == e.name && x.to_entry == reader && x.from_device == h.from && x.to_device == h.to
            };
            match out.iter_mut().find(|x| same(x)) {
                Some(x) => {
                    x.bytes = x.bytes.saturating_add(h.bytes);
                    x.layerwise |= h.overlaps_compute;
                    x.tensors += 1;
                }
                None => out.push(HandoffSummary {
                    from_entry: e.name.clone(),
                    to_entry: reader,
                    from_device: h.from.clone(),
                    to_device: h.to.clone(),
                    bytes: h.bytes,
                    layerwise: h.overlaps_compute,
                    tensors: 1,
                }),
            }
        }
    }
    out
}

/// The summary of a plan.
pub fn summary(plan: &ProgramPlan) -> PlanSummary {
    PlanSummary {
        program: plan.program.clone(),
        policy: plan.policy.clone(),
        max_seq: plan.max_seq,
        devices: plan
            .devices
            .iter()
            .map(|d| DeviceSummary {
                name: d.name.clone(),
                kind: d.kind.clone(),
                nodes: d.nodes,
                weight_bytes: d.weight_bytes,
                kv_bytes: d.kv_bytes,
                activation_bytes: d.activation_bytes,
                peak_bytes: d.peak_bytes,
                memory_bytes: d.memory_bytes,
            })
            .collect(),
        state_slots: plan.state_slots.iter().map(|s| (s.name.clone(), s.device.clone())).collect(),
        entries: plan
            .entries
            .iter()
            .map(|e| {
                let est = e.estimate.as_ref();
                (
                    e.name.clone(),
                    EntrySummaryOfPlan {
                        est_latency_s: est.map(|x| x.latency_s),
                        compute_s: est.map(|x| x.compute_s),
                        transfer_s: est.map(|x| x.transfer_s),
                        network_latency_s: est.map(|x| x.network_latency_s),
                        bytes_per_call: e.bytes_per_call,
                        round_trips: e.hops.div_ceil(2),
                        hops: e.hops,
                        devices: devices_running(e),
                        transfers: e
                            .transfers
                            .iter()
                            .map(|t| TransferSummary {
                                from: t.from.clone(),
                                to: t.to.clone(),
                                bytes: t.bytes,
                                value: t.name.clone(),
                                residency: t.residency.map(|r| r.name().to_string()).unwrap_or_default(),
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
        state_handoffs: handoffs(plan),
        estimates: plan.phases.clone(),
        replicas: plan.replicas.iter().map(|r| r.iter().map(|d| d.name.clone()).collect()).collect(),
        jit: JitSummary::of(plan),
    }
}

pub use genie_ir::render::human_bytes as human;

/// The text dump of a plan: devices and their resident sets, slots, then per entry the transfers
/// and each device's steps.
pub fn dump(plan: &ProgramPlan) -> String {
    let mut s = String::new();
    writeln!(s, "plan {} (format {})", plan.program, plan.version).ok();
    if let Some(p) = &plan.policy {
        write!(s, "policy {p}").ok();
        if let Some(m) = plan.max_seq {
            write!(s, ", max-seq {m}").ok();
        }
        s.push('\n');
    }
    for d in &plan.devices {
        writeln!(
            s,
            "device {} ({}) memory {}: peak {} = weights {} ({}) + kv {} + activations {}; {} nodes",
            d.name,
            d.kind,
            human(d.memory_bytes),
            human(d.peak_bytes),
            human(d.weight_bytes),
            d.weights.len(),
            human(d.kv_bytes),
            human(d.activation_bytes),
            d.nodes
        )
        .ok();
    }
    for slot in &plan.state_slots {
        let w: Vec<String> = slot.writes.iter().map(|p| format!("{}.{}", p.entry, p.name)).collect();
        writeln!(s, "slot {} {} on {} ({}) <- {}", slot.id, slot.name, slot.device, human(slot.bytes), w.join(", "))
            .ok();
    }
    for e in &plan.entries {
        s.push('\n');
        write!(
            s,
            "entry {} ({}): {} per call in {} transfers, {} hops",
            e.name,
            e.phase,
            human(e.bytes_per_call),
            e.transfers.len(),
            e.hops
        )
        .ok();
        if let Some(est) = &e.estimate {
            write!(s, ", est {:.3} ms", est.latency_s * 1e3).ok();
        }
        s.push('\n');
        for sym in &e.symbols {
            let src: Vec<String> = sym.sources.iter().map(|x| format!("{}.shape[{}]", x.tensor, x.dim)).collect();
            writeln!(
                s,
                "  symbol {} = {} (memory {}) from {}",
                sym.name,
                sym.cost_value,
                sym.memory_value,
                src.join(", ")
            )
            .ok();
        }
        for t in &e.transfers {
            writeln!(
                s,
                "  transfer t{} {} {} {} -> {} {}{}",
                t.id,
                t.tensor,
                t.name,
                t.from,
                t.to,
                human(t.bytes),
                t.residency.map(|r| format!(" {r}")).unwrap_or_default()
            )
            .ok();
        }
        for p in &e.plans {
            writeln!(s, "  on {} (activation peak {}):", p.device, human(p.activation_peak_bytes)).ok();
            for step in &p.steps {
                let line = match step {
                    Step::Recv { tensor, from, transfer } => format!("recv {tensor} <- {from} (t{transfer})"),
                    Step::Send { tensor, to, transfer } => format!("send {tensor} -> {to} (t{transfer})"),
                    Step::Free { tensor } => format!("free {tensor}"),
                    Step::SaveState { tensor, slot } => format!("save {tensor} -> slot {slot}"),
                    Step::Exec { node, op, args, outputs, .. } => {
                        let outs: Vec<String> = outputs.iter().map(ToString::to_string).collect();
                        let args: Vec<String> = args.iter().map(ToString::to_string).collect();
                        format!("exec {node}: ({}) = {op}({})", outs.join(", "), args.join(", "))
                    }
                };
                writeln!(s, "    {line}").ok();
            }
            for f in &p.fused {
                let nodes: Vec<String> = f.nodes.iter().map(ToString::to_string).collect();
                let outs: Vec<String> = f.outputs.iter().map(ToString::to_string).collect();
                let biases: Vec<String> = f.biases.iter().map(|b| format!(" + bias of {}", b.node)).collect();
                writeln!(s, "    fused [{}]{} -> ({})", nodes.join(" "), biases.join(""), outs.join(", ")).ok();
            }
        }
    }
    s
}

/// DOT of a plan: the placed program coloured by device (see [`to_program`]), and each state
/// handoff as a bold edge from the state output of the entry that writes it to the state input
/// of the entry that reads it, labelled with its bytes and devices.
pub fn dot(plan: &ProgramPlan) -> String {
    let mut s = genie_ir::render::dot_program(&to_program(plan), genie_ir::render::DotColoring::Device);
    let mut edges = String::new();
    for (from_i, e) in plan.entries.iter().enumerate() {
        for h in &e.handoffs {
            let Some(out) = e.outputs.iter().position(|o| o.name == h.output) else { continue };
            let Some(slot) = plan.state_slots.iter().find(|s| s.id == h.slot) else { continue };
            for port in &slot.reads {
                let Some(to_i) = plan.entries.iter().position(|x| x.name == port.entry) else { continue };
                let Some(input) = plan.entries[to_i].inputs.iter().find(|i| i.name == port.name) else { continue };
                writeln!(
                    edges,
                    "  g{from_i}o{out} -> g{to_i}v{} [label=\"handoff {} {}→{}{}\", color=\"#d62728\", penwidth=3, style=bold, constraint=false];",
                    input.tensor.0,
                    human(h.bytes),
                    h.from,
                    h.to,
                    if h.overlaps_compute { ", layer by layer" } else { "" }
                )
                .ok();
            }
        }
    }
    if let Some(end) = s.trim_end().strip_suffix('}').map(str::len) {
        s.truncate(end);
        s.push_str(&edges);
        s.push_str("}\n");
    }
    s
}

/// The placed program a plan came from, rebuilt without weight data: every node with its op,
/// arguments and `ann.device`; values with types and residency. For DOT and text rendering.
pub fn to_program(plan: &ProgramPlan) -> Program {
    let mut program = Program::new(plan.program.clone());
    for e in &plan.entries {
        let mut g = Graph::new(e.name.clone());
        g.phase = e.phase;
        for sym in &e.symbols {
            g.symbols.insert(sym.name.clone(), SymRange { min: sym.min, max: sym.max });
        }
        let nv = e.tensors.keys().map(|v| v.index() + 1).max().unwrap_or(0);
        g.values = (0..nv)
            .map(|_| Value {
                name: "_".into(),
                ty: genie_ir::TensorType::new(genie_ir::DType::Float32, &[]),
                def: ValueDef::Const(genie_ir::HexBytes::default()),
                ann: ValueAnn::default(),
            })
            .collect();
        for (v, t) in &e.tensors {
            g.values[v.index()] = Value {
                name: t.name.clone(),
                ty: t.ty.clone(),
                def: match &t.kind {
                    TensorKind::Input { index } | TensorKind::State { index, .. } => ValueDef::Input(*index),
                    TensorKind::Weight { hash } => ValueDef::Weight(hash.clone()),
                    TensorKind::Const { data } => ValueDef::Const(data.clone()),
                    TensorKind::Node { node, output } => ValueDef::Node { node: *node, index: *output },
                },
                ann: ValueAnn { residency: t.residency, ..ValueAnn::default() },
            };
        }
        let mut nodes: BTreeMap<u32, Node> = BTreeMap::new();
        for p in &e.plans {
            for step in &p.steps {
                if let Step::Exec { node, op, args, outputs, .. } = step {
                    let ann = NodeAnn { device: Some(p.device.clone()), phase: Some(e.phase), ..NodeAnn::default() };
                    nodes.insert(node.0, Node { op: op.clone(), args: args.clone(), outputs: outputs.clone(), ann });
                }
            }
        }
        g.nodes = nodes.into_values().collect();
        g.inputs = e.inputs.iter().map(|p| p.tensor).collect();
        g.outputs = e
            .outputs
            .iter()
            .map(|p| GraphOutput { name: p.name.clone(), value: p.tensor, kind: OutputKind::User })
            .collect();
        program.entries.push(g);
    }
    program
}
