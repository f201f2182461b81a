//! Placement: which device runs each node.
//!
//! [`schedule`] is a pure function of the program (after the standard passes: tags, residency,
//! state bindings, cost hints), the [`ClusterSpec`] and the [`PlacementOptions`]. It decides at
//! the granularity of layers ([`units`]), keeps state co-located, places each weight once per
//! device that needs it, and chooses contiguous pipeline cuts with a dynamic program refined by
//! local moves ([`search`]), judged by the cost model ([`model`]). [`Placement::apply`] writes
//! the result into the program: `ann.device` on every node and the program's placement record
//! (devices, symbol values, estimates), which is all codegen needs.
//!
//! Hard constraints:
//! - memory: resident weights + KV-cache slots at `--max-seq` + peak activations fit each device;
//! - state: a KV-cache value, its producer and consumers, and both ends of every state binding
//!   are on one device;
//! - layers: a unit (prefill's and decode's layer *i* alike) is on one device, so its weights are
//!   resident once.

pub mod cluster;
pub mod model;
mod search;
pub mod timeline;
pub mod units;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use genie_ir::{Estimate, NodeId, PhaseEstimate, PhaseRecord, PlacedDevice, PlacementRecord, Program};
use serde::{Deserialize, Serialize};

pub use cluster::{parse_size, ClusterError, ClusterSpec, DeviceKind, DeviceSpec, LinkParams, LinkSpec, CLIENT};
pub use genie_ir::RequestShape;

/// What placement optimises once everything fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The sum over entries of one call's estimated latency.
    #[default]
    MinLatency,
    /// The largest fraction of any device's memory in use; latency breaks ties.
    BalanceMemory,
    /// Time to first token (the prefill side's calls, state handoff included); time per output
    /// token breaks ties.
    MinTtft,
    /// Time per output token (the decode side's calls); time to first token breaks ties.
    MinTpot,
}

impl Policy {
    /// `min-latency`, `balance-memory`, `min-ttft` or `min-tpot`.
    pub fn name(self) -> &'static str {
        match self {
            Policy::MinLatency => "min-latency",
            Policy::BalanceMemory => "balance-memory",
            Policy::MinTtft => "min-ttft",
            Policy::MinTpot => "min-tpot",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        match s {
            "min-latency" => Ok(Policy::MinLatency),
            "balance-memory" => Ok(Policy::BalanceMemory),
            "min-ttft" => Ok(Policy::MinTtft),
            "min-tpot" => Ok(Policy::MinTpot),
            _ => Err(format!(
                "unknown policy `{s}`; the policies are min-latency, balance-memory, min-ttft and min-tpot"
            )),
        }
    }
}

/// Whether an LLM's prefill and decode may run on different devices (`--disaggregate`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseChoice {
    /// Whichever the policy's goal prefers (together on a tie).
    #[default]
    Auto,
    /// Every layer on one device for every entry.
    Never,
    /// Prefill and decode on disjoint devices where the search finds such a placement that fits.
    Always,
}

impl PhaseChoice {
    pub fn name(self) -> &'static str {
        match self {
            PhaseChoice::Auto => "auto",
            PhaseChoice::Never => "never",
            PhaseChoice::Always => "always",
        }
    }
}

impl FromStr for PhaseChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<PhaseChoice, String> {
        match s {
            "auto" => Ok(PhaseChoice::Auto),
            "never" => Ok(PhaseChoice::Never),
            "always" => Ok(PhaseChoice::Always),
            _ => Err(format!("unknown choice `{s}`; it is auto, never or always")),
        }
    }
}

/// What the user chose.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlacementOptions {
    pub policy: Policy,
    /// The sequence length the memory check plans for (`--max-seq`): every symbol is bound to it,
    /// clamped to the symbol's range. Without it, a symbol takes its range maximum when at most
    /// [`genie_ir::DEFAULT_BIND_CAP`], else 2048.
    pub max_seq: Option<i64>,
    /// Symbol values for time estimates (`--bind s0=512`), as the cost pass uses them.
    pub bindings: BTreeMap<String, i64>,
    /// The request an LLM's estimates assume (`--prompt-len`, `--new-tokens`): prefill's
    /// symbols at the prompt length, decode's at the mean context, decode counted once per
    /// generated token. Without it every entry's call counts once.
    pub request: Option<genie_ir::RequestShape>,
    /// Whether prefill and decode may run apart.
    pub phases: PhaseChoice,
    /// Copies of the program on disjoint devices (`--replicas R`; 0 and 1 mean one copy).
    pub replicas: usize,
}

/// Estimated cost of one call of an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryEstimate {
    pub entry: String,
    /// Seconds from the client's send to the last result (`compute + transfer + latency`).
    pub latency_s: f64,
    /// Along the critical chain: seconds computing (including waiting for a busy device).
    pub compute_s: f64,
    /// Along the critical chain: seconds moving bytes (including waiting for a busy link).
    pub transfer_s: f64,
    /// Along the critical chain: seconds of link latency.
    pub network_latency_s: f64,
    /// Network messages in sequence on the critical chain (client → w0 → w1 → client is 3).
    pub network_hops: u32,
    /// Bytes that cross the network in one call (client ↔ worker and worker ↔ worker).
    pub bytes_per_call: u64,
    /// Number of transfers in one call.
    pub transfers: usize,
    /// Bytes of state handed to another device's slot at the end of the call (prefill's KV
    /// cache going to decode's device); included in `bytes_per_call`.
    pub handoff_bytes: u64,
}

/// Memory use of one device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceUse {
    pub device: String,
    /// Resident weights and constants.
    pub weight_bytes: u64,
    /// KV-cache slots at the memory bindings.
    pub kv_bytes: u64,
    /// The largest activation peak of any entry.
    pub activation_bytes: u64,
    /// The sum of the three.
    pub peak_bytes: u64,
    pub memory_bytes: u64,
    /// Nodes placed here, over all entries.
    pub nodes: usize,
}

/// Where one entry's nodes run.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryPlacement {
    pub entry: String,
    /// Device index (into [`Placement::devices`]) of each node, by node id.
    pub node_device: Vec<usize>,
}

/// A state slot and its device.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotPlacement {
    /// `entry.input` of the slot's first binding target.
    pub name: String,
    pub device: usize,
    pub bytes: u64,
}

/// The result of [`schedule`].
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub policy: Policy,
    /// Device names, in the cluster's order.
    pub devices: Vec<String>,
    pub entries: Vec<EntryPlacement>,
    /// Each unit (layer) key and its device in the prefill side's entries (every entry when
    /// the phases are together).
    pub units: Vec<(String, usize)>,
    /// Each unit key and its device in the decode side's entries (those that read state);
    /// equal to `units` when the phases are together.
    pub decode_units: Vec<(String, usize)>,
    /// The phase decision, for a program whose prefill hands state to decode.
    pub phases: Option<PhaseRecord>,
    pub slots: Vec<SlotPlacement>,
    pub memory: Vec<DeviceUse>,
    pub estimates: Vec<EntryEstimate>,
    /// Per entry: the symbol values used for time and transfer estimates.
    pub cost_bindings: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per entry: the symbol values used for the memory check.
    pub memory_bindings: BTreeMap<String, BTreeMap<String, i64>>,
    /// What [`Placement::apply`] records in the program for codegen.
    pub record: PlacementRecord,
    /// Per entry, the estimated schedule of one call (see [`timeline::svg`]).
    pub timelines: Vec<timeline::EntryTimeline>,
}

impl Placement {
    /// The device name of a node.
    pub fn device_of(&self, entry: &str, node: NodeId) -> Option<&str> {
        let e = self.entries.iter().find(|e| e.entry == entry)?;
        e.node_device.get(node.index()).map(|d| self.devices[*d].as_str())
    }

    /// Write the result into the program: `ann.device` on every node, and the program's
    /// [`PlacementRecord`] (devices, symbol values, estimates) that codegen reads.
    pub fn apply(&self, program: &mut Program) {
        for g in &mut program.entries {
            let Some(e) = self.entries.iter().find(|e| e.entry == g.name) else { continue };
            for (node, d) in g.nodes.iter_mut().zip(&e.node_device) {
                node.ann.device = Some(self.devices[*d].clone());
            }
        }
        program.placement = Some(self.record.clone());
    }

    /// The estimate of one entry.
    pub fn estimate(&self, entry: &str) -> Option<&EntryEstimate> {
        self.estimates.iter().find(|e| e.entry == entry)
    }
}

/// Why no placement was produced.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlacementError {
    /// The cluster spec is unusable.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The program cannot be placed as it is (a cycle, an unknown op).
    #[error("{0}")]
    Program(String),
    /// A node's cost could not be computed.
    #[error("cost model: {0}")]
    Cost(String),
    /// The cluster cannot hold the replicas asked for; the reason names the devices.
    #[error("{replicas} replicas: {reason}")]
    Replicas { replicas: usize, reason: String },
    /// No assignment fits the devices' memory.
    #[error(
        "the program does not fit on the cluster: {reason}; largest consumers: {}",
        largest.iter().map(|(n, b)| format!("{n} ({})", human(*b))).collect::<Vec<_>>().join(", ")
    )]
    DoesNotFit {
        reason: String,
        /// The largest single consumers of memory: weights, KV-cache slots, activation peaks.
        largest: Vec<(String, u64)>,
    },
}

pub use genie_ir::render::human_bytes as human;

/// Place a program on a cluster. Pure: the same inputs give the same placement.
///
/// With `options.replicas` R > 1 the cluster's devices are cut, in the cluster's order, into R
/// groups of `n / R` (devices left over stay unused): the program is placed on the first group,
/// and every other group must hold the same placement device for device (same kind, at least
/// the memory each device's part needs), which the record lists as `replicas`.
pub fn schedule(
    program: &Program,
    cluster: &ClusterSpec,
    options: &PlacementOptions,
) -> Result<Placement, PlacementError> {
    cluster.validate()?;
    let r = options.replicas.max(1);
    if r == 1 {
        return schedule_one(program, cluster, options);
    }
    let n = cluster.devices.len();
    let refuse = |reason: String| PlacementError::Replicas { replicas: r, reason };
    if n < r {
        return Err(refuse(format!("each replica needs its own device, and the cluster has {n}")));
    }
    let per = n / r;
    let groups: Vec<&[DeviceSpec]> = cluster.devices.chunks(per).take(r).collect();
    let first: Vec<&str> = groups[0].iter().map(|d| d.name.as_str()).collect();
    let mut placement = schedule_one(program, &cluster.subset(&first), options)?;
    let mut replicas = Vec::with_capacity(r);
    for (g, group) in groups.iter().enumerate() {
        let mut copy = Vec::with_capacity(per);
        for (own, (d, used)) in groups[0].iter().zip(group.iter().zip(&placement.memory)) {
            if d.kind != own.kind {
                return Err(refuse(format!(
                    "replica {g} would run {}'s part on {}, a {} device where {} is {}",
                    own.name, d.name, d.kind, own.name, own.kind
                )));
            }
            if d.memory < used.peak_bytes {
                return Err(refuse(format!(
                    "replica {g} would run {}'s part on {}, which has {} of the {} it needs",
                    own.name,
                    d.name,
                    human(d.memory),
                    human(used.peak_bytes)
                )));
            }
            copy.push(PlacedDevice { name: d.name.clone(), kind: d.kind.name().to_string(), memory_bytes: d.memory });
        }
        replicas.push(copy);
    }
    placement.record.replicas = replicas;
    Ok(placement)
}

fn schedule_one(
    program: &Program,
    cluster: &ClusterSpec,
    options: &PlacementOptions,
) -> Result<Placement, PlacementError> {
    let ctx = model::Ctx::new(program, cluster, options)?;
    if options.phases == PhaseChoice::Always && !(ctx.splittable && ctx.k >= 2) {
        return Err(PlacementError::Program(if ctx.splittable {
            "--disaggregate always needs at least two devices".to_string()
        } else {
            "--disaggregate always: no entry hands state to another (a prefill → decode pair)".to_string()
        }));
    }
    let found = search::search(&ctx, options.phases);
    let Some((assign, ev)) = found.chosen(options.phases, options.policy) else {
        return Err(PlacementError::Program("no placement was searched".into()));
    };
    if ev.overflow > 0 {
        return Err(does_not_fit(&ctx, ev, options));
    }
    let devices: Vec<String> = cluster.devices.iter().map(|d| d.name.clone()).collect();
    let entries: Vec<EntryPlacement> = program
        .entries
        .iter()
        .enumerate()
        .map(|(e, g)| EntryPlacement {
            entry: g.name.clone(),
            node_device: (0..g.nodes.len()).map(|n| ctx.dev(e, NodeId(n as u32), assign)).collect(),
        })
        .collect();
    let mut nodes = vec![0usize; devices.len()];
    for e in &entries {
        for d in &e.node_device {
            nodes[*d] += 1;
        }
    }
    let memory = ev
        .mem
        .iter()
        .enumerate()
        .map(|(d, m)| DeviceUse {
            device: devices[d].clone(),
            weight_bytes: m.weights,
            kv_bytes: m.kv,
            activation_bytes: m.activations,
            peak_bytes: m.total(),
            memory_bytes: cluster.devices[d].memory,
            nodes: nodes[d],
        })
        .collect();
    let units_of = |side: model::Side| -> Vec<(String, usize)> {
        let atoms = &assign.sides[side as usize];
        ctx.units.keys.iter().enumerate().map(|(u, k)| (k.clone(), atoms[ctx.units.unit_atom[u]])).collect()
    };
    let slots = ctx
        .slots
        .iter()
        .enumerate()
        .map(|(s, slot)| SlotPlacement { name: slot.name.clone(), device: ctx.slot_device(s, assign), bytes: slot.mem })
        .collect();
    let cost_bindings: BTreeMap<String, BTreeMap<String, i64>> =
        ctx.entries.iter().map(|e| (e.name.clone(), e.cost_bindings.clone())).collect();
    let memory_bindings: BTreeMap<String, BTreeMap<String, i64>> =
        ctx.entries.iter().map(|e| (e.name.clone(), e.mem_bindings.clone())).collect();
    let phases = match options.request {
        Some(request) if ctx.splittable => Some(phase_record(&ctx, &found, assign, ev, options, request)),
        _ => None,
    };
    let record = PlacementRecord {
        policy: options.policy.name().to_string(),
        max_seq: options.max_seq,
        devices: cluster
            .devices
            .iter()
            .map(|d| PlacedDevice { name: d.name.clone(), kind: d.kind.name().to_string(), memory_bytes: d.memory })
            .collect(),
        cost_bindings: cost_bindings.clone(),
        memory_bindings: memory_bindings.clone(),
        estimates: ev
            .estimates
            .iter()
            .map(|e| {
                let estimate = Estimate {
                    latency_s: e.latency_s,
                    compute_s: e.compute_s,
                    transfer_s: e.transfer_s,
                    network_latency_s: e.network_latency_s,
                };
                (e.entry.clone(), estimate)
            })
            .collect(),
        phases: phases.clone(),
        replicas: Vec::new(),
    };
    let timelines = timeline::timelines(&ctx, program, assign);
    Ok(Placement {
        timelines,
        policy: options.policy,
        devices,
        entries,
        units: units_of(model::Side::Prefill),
        decode_units: units_of(model::Side::Decode),
        phases,
        slots,
        memory,
        estimates: ev.estimates.clone(),
        cost_bindings,
        memory_bindings,
        record,
    })
}

/// The phase decision, with the best alternative on the other side of it and why.
fn phase_record(
    ctx: &model::Ctx,
    found: &search::Found,
    assign: &model::Assign,
    ev: &model::Eval,
    options: &PlacementOptions,
    request: genie_ir::RequestShape,
) -> PhaseRecord {
    fn fits(x: &Option<(model::Assign, model::Eval)>) -> Option<(bool, &model::Eval)> {
        x.as_ref().filter(|(_, e)| e.overflow == 0).map(|(a, e)| (a.is_split(), e))
    }
    let estimate = |e: &model::Eval| PhaseEstimate { ttft_s: e.ttft, tpot_s: e.tpot };
    let chosen = estimate(ev);
    // A search for the phases apart may end with them together; it then counts as together.
    let together = match (fits(&found.together), fits(&found.apart)) {
        (Some((_, t)), _) => Some(estimate(t)),
        (None, Some((false, a))) => Some(estimate(a)),
        _ => None,
    };
    let apart = fits(&found.apart).filter(|(split, _)| *split).map(|(_, a)| estimate(a));
    let disaggregated = assign.is_split();
    let secs = |p: &PhaseEstimate| p.request_s(&request);
    let t = genie_ir::render::human_seconds;
    let describe = |p: &PhaseEstimate| {
        format!("TTFT {} + {} × TPOT {} = {}", t(p.ttft_s), request.new_tokens, t(p.tpot_s), t(secs(p)))
    };
    let handoff: u64 = ev.estimates.iter().map(|e| e.handoff_bytes).fold(0, u64::saturating_add);
    let sides = |side: model::Side| -> String {
        let mut used: Vec<&str> = ctx
            .entries
            .iter()
            .enumerate()
            .filter(|(_, ent)| ent.side == side)
            .flat_map(|(e, ent)| ent.order.iter().map(move |n| (e, *n)))
            .map(|(e, n)| ctx.cluster.devices[ctx.dev(e, n, assign)].name.as_str())
            .collect();
        used.sort_unstable();
        used.dedup();
        used.join(", ")
    };
    let goal = match options.policy {
        Policy::MinTtft => "time to first token",
        Policy::MinTpot => "time per output token",
        Policy::BalanceMemory => "the largest memory fraction",
        Policy::MinLatency => "request time",
    };
    let reason = match (disaggregated, options.phases, together, apart) {
        (true, PhaseChoice::Always, _, _) => format!(
            "apart, as --disaggregate always asks: prefill on {}, decode on {}, {} of state handed over once: {}",
            sides(model::Side::Prefill),
            sides(model::Side::Decode),
            human(handoff),
            describe(&chosen)
        ),
        (true, _, Some(t), _) => format!(
            "apart, for {goal}: prefill on {}, decode on {}, {} of state handed over once: {}; together: {}",
            sides(model::Side::Prefill),
            sides(model::Side::Decode),
            human(handoff),
            describe(&chosen),
            describe(&t)
        ),
        (true, _, None, _) => format!(
            "apart, because no placement with the phases together fits: prefill on {}, decode on {}: {}",
            sides(model::Side::Prefill),
            sides(model::Side::Decode),
            describe(&chosen)
        ),
        (false, PhaseChoice::Never, _, _) => {
            format!("together, as --disaggregate never asks: {}", describe(&chosen))
        }
        (false, _, _, Some(a)) => format!(
            "together, for {goal}: {}; the best placement apart, handing the state over after prefill: {}",
            describe(&chosen),
            describe(&a)
        ),
        (false, _, _, None) if ctx.k < 2 => format!("together, on the one device: {}", describe(&chosen)),
        (false, _, _, None) => {
            format!("together: no placement with the phases apart fits: {}", describe(&chosen))
        }
    };
    PhaseRecord { request, disaggregated, chosen, co_located: together, disaggregated_alternative: apart, reason }
}

/// The "does not fit" error: what is needed, what there is, and the largest consumers.
fn does_not_fit(ctx: &model::Ctx, ev: &model::Eval, options: &PlacementOptions) -> PlacementError {
    let weights: u64 = ctx.weights.iter().map(|w| w.1).fold(0, u64::saturating_add);
    let kv: u64 = ctx.slots.iter().map(|s| s.mem).fold(0, u64::saturating_add);
    let total = ctx.cluster.total_memory();
    let (big_i, big) = ctx
        .cluster
        .devices
        .iter()
        .enumerate()
        .max_by_key(|(i, d)| (d.memory, std::cmp::Reverse(*i)))
        .map(|(i, d)| (i, d.memory))
        .unwrap_or((0, 0));
    let seq = match options.max_seq {
        Some(n) => format!(" at --max-seq {n}"),
        None => String::new(),
    };
    let over: Vec<String> = ev
        .mem
        .iter()
        .enumerate()
        .filter(|(d, m)| m.total() > ctx.cluster.devices[*d].memory)
        .map(|(d, m)| {
            format!(
                "{} needs {} of {} ({} weights, {} KV cache, {} activations)",
                ctx.cluster.devices[d].name,
                human(m.total()),
                human(ctx.cluster.devices[d].memory),
                human(m.weights),
                human(m.kv),
                human(m.activations)
            )
        })
        .collect();
    let reason = if weights.saturating_add(kv) > total {
        format!(
            "it needs at least {} ({} weights, {} KV cache{seq}) and the {} device(s) have {} in all",
            human(weights.saturating_add(kv)),
            human(weights),
            human(kv),
            ctx.cluster.devices.len(),
            human(total)
        )
    } else {
        format!(
            "no split keeps every device within its memory (largest device {} has {}); the best found: {}",
            ctx.cluster.devices[big_i].name,
            human(big),
            over.join("; ")
        )
    };
    let mut largest: Vec<(String, u64)> = Vec::new();
    for w in &ctx.weights {
        largest.push((format!("weight {}", w.2), w.1));
    }
    for s in &ctx.slots {
        largest.push((format!("KV cache {}{seq}", s.name), s.mem));
    }
    for (d, m) in ev.mem.iter().enumerate() {
        if let Some(e) = m.peak_entry {
            largest.push((
                format!("activations of `{}` on {}", ctx.entries[e].name, ctx.cluster.devices[d].name),
                m.activations,
            ));
        }
    }
    // Largest single tensors a call holds (inputs and activations).
    for ent in &ctx.entries {
        let mut big: Vec<(u64, usize)> = ent
            .vals
            .iter()
            .enumerate()
            .filter(|(_, v)| matches!(v.kind, model::Kind::UserInput | model::Kind::Node(_)) && v.alias.is_none())
            .map(|(i, v)| (v.mem, i))
            .collect();
        big.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (bytes, i) in big.into_iter().take(2) {
            largest.push((format!("tensor `{}` of `{}`", ent.names[i], ent.name), bytes));
        }
    }
    // Largest units, by resident weight bytes.
    let mut unit_bytes: BTreeMap<usize, u64> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (e, ent) in ctx.entries.iter().enumerate() {
        for val in &ent.vals {
            if let model::Kind::Weight(w) = val.kind {
                for n in &val.users {
                    let u = ctx.units.node_unit[e][n.index()];
                    if seen.insert((u, w)) {
                        *unit_bytes.entry(u).or_insert(0) += ctx.weights[w].1;
                    }
                }
            }
        }
    }
    for (u, b) in unit_bytes {
        largest.push((format!("layer `{}` weights", ctx.units.keys[u]), b));
    }
    largest.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    largest.truncate(5);
    PlacementError::DoesNotFit { reason, largest }
}
