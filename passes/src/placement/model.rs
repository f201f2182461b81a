//! The cost model and the exact evaluation of an assignment of atoms to devices.
//!
//! - Compute: a node takes `overhead + max(flops / peak_flops, bytes / mem_bandwidth)` on a device
//!   (a roofline), from its `ann.cost` hints or, when absent, the registry's cost with symbols
//!   bound. Nodes that move nothing (views) cost nothing.
//! - Transfer: `latency + bytes / bandwidth` on the link, messages on one link go one at a time.
//! - Each device runs its nodes one at a time in topological order.
//! - Memory of a device: resident weights (distinct hashes) and constants, KV-cache slots at the
//!   memory bindings (`--max-seq`), and the largest activation peak of any entry, found by walking
//!   the device's steps with each buffer freed after its last use (views share their base's
//!   storage). Codegen computes the same peak from the plan it emits.

use std::collections::{BTreeMap, HashMap};

use genie_ir::registry;
use genie_ir::{Graph, NodeId, Program, ValueDef, ValueId, WeightHash};

use super::cluster::{ClusterSpec, LinkParams};
use super::units::Units;
use super::{EntryEstimate, PlacementError, PlacementOptions, Policy};
use genie_ir::RequestShape;

/// Unbounded symbols take this value for the memory check when `--max-seq` is not given.
pub const DEFAULT_MAX_SEQ: i64 = 2048;

/// What a value is, for placement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    /// A per-call input from the client.
    UserInput,
    /// A graph input bound to a state slot: resident on the slot's device.
    StateInput(usize),
    /// A weight (index into [`Ctx::weights`]).
    Weight(usize),
    /// An inline constant.
    Const,
    /// Produced by a node.
    Node(NodeId),
}

#[derive(Clone, Debug)]
pub(crate) struct Val {
    pub kind: Kind,
    /// Bytes at the cost bindings (what a call moves).
    pub bytes: u64,
    /// Bytes at the memory bindings (what must fit).
    pub mem: u64,
    /// For outputs of view ops: the value whose storage this one shares.
    pub alias: Option<ValueId>,
    /// Consumer nodes (distinct, in node order).
    pub users: Vec<NodeId>,
}

/// The side of a prefill → decode pair an entry is on. Entries that read state are the decode
/// side; the others (prefill, which writes state, and entries without state) the prefill side.
/// Each side has its own assignment of atoms to devices; state slots live with the decode side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Prefill = 0,
    Decode = 1,
}

/// An assignment of atoms to devices, one per side. The phases are together when both sides
/// are equal (every layer on one device for every entry).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Assign {
    pub sides: [Vec<usize>; 2],
}

impl Assign {
    pub fn together(atoms: Vec<usize>) -> Assign {
        Assign { sides: [atoms.clone(), atoms] }
    }

    pub fn is_split(&self) -> bool {
        self.sides[0] != self.sides[1]
    }
}

/// Per-entry precomputation.
pub(crate) struct EntryCtx {
    pub name: String,
    pub side: Side,
    pub order: Vec<NodeId>,
    pub pos: Vec<usize>,
    /// `node_time[n * k + d]`.
    pub node_time: Vec<f64>,
    pub inputs: Vec<Vec<ValueId>>,
    /// Outputs of each node.
    pub outputs: Vec<Vec<ValueId>>,
    /// Value names, for messages.
    pub names: Vec<String>,
    pub vals: Vec<Val>,
    /// Distinct user outputs (sent to the client).
    pub user_outputs: Vec<ValueId>,
    /// State outputs and their slots.
    pub state_outputs: Vec<(ValueId, usize)>,
    pub cost_bindings: BTreeMap<String, i64>,
    pub mem_bindings: BTreeMap<String, i64>,
}

/// A state slot: one connected set of state-binding ports.
#[derive(Clone, Debug)]
pub(crate) struct SlotCtx {
    pub name: String,
    pub mem: u64,
    pub atom: Option<usize>,
}

/// Everything evaluation needs, computed once.
pub(crate) struct Ctx<'a> {
    pub cluster: &'a ClusterSpec,
    pub k: usize,
    pub links: Vec<Vec<LinkParams>>,
    pub units: Units,
    pub entries: Vec<EntryCtx>,
    /// Distinct weights: hash, bytes, a readable name.
    pub weights: Vec<(WeightHash, u64, String)>,
    pub slots: Vec<SlotCtx>,
    pub policy: Policy,
    pub request: Option<RequestShape>,
    /// Some prefill-side entry writes a slot a decode-side entry reads: the phases may be
    /// placed apart, with a state handoff between them.
    pub splittable: bool,
}

/// One thing [`Ctx::simulate`] scheduled: a node on a device, or a value crossing a link
/// (device index `k`, one past the cluster's devices, is the client).
#[derive(Clone, Debug, PartialEq)]
pub enum Scheduled {
    Node { node: NodeId, device: usize, start_s: f64, end_s: f64 },
    Transfer { value: ValueId, from: usize, to: usize, start_s: f64, end_s: f64, bytes: u64 },
}

/// Breakdown of a time along the critical chain.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Brk {
    pub compute: f64,
    pub transfer: f64,
    pub latency: f64,
    pub hops: u32,
}

/// Memory of one device under an assignment.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Mem {
    pub weights: u64,
    pub kv: u64,
    pub activations: u64,
    /// Entry whose activation peak is the largest.
    pub peak_entry: Option<usize>,
}

impl Mem {
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.kv).saturating_add(self.activations)
    }
}

/// The exact evaluation of an assignment.
#[derive(Clone, Debug)]
pub(crate) struct Eval {
    pub mem: Vec<Mem>,
    pub overflow: u64,
    pub max_frac: f64,
    pub estimates: Vec<EntryEstimate>,
    /// The prefill side's calls, one each (time to first token, handoff included).
    pub ttft: f64,
    /// The decode side's calls, one each (time per output token).
    pub tpot: f64,
    /// `ttft + new_tokens × tpot` (with no request shape, every call once).
    pub objective: f64,
}

impl Eval {
    /// Lexicographic objective: fit first, then the policy's goal.
    pub fn key(&self, policy: Policy) -> (u64, f64, f64) {
        match policy {
            Policy::MinLatency => (self.overflow, self.objective, 0.0),
            Policy::BalanceMemory => (self.overflow, self.max_frac, self.objective),
            Policy::MinTtft => (self.overflow, self.ttft, self.tpot),
            Policy::MinTpot => (self.overflow, self.tpot, self.ttft),
        }
    }
}

/// `a < b` on objective keys, with a relative tolerance on times so that float noise never
/// decides.
pub(crate) fn better(a: (u64, f64, f64), b: (u64, f64, f64)) -> bool {
    let lt = |x: f64, y: f64| x < y - 1e-12 - 1e-9 * y.abs();
    if a.0 != b.0 {
        return a.0 < b.0;
    }
    if lt(a.1, b.1) {
        return true;
    }
    if lt(b.1, a.1) {
        return false;
    }
    lt(a.2, b.2)
}

fn eval_dim(d: &genie_ir::Dim, b: &BTreeMap<String, i64>) -> u64 {
    d.eval(b).map(|v| v.max(0) as u64).unwrap_or(u64::MAX / 4)
}

/// The memory binding of each symbol of a graph.
pub(crate) fn memory_bindings(g: &Graph, options: &PlacementOptions) -> BTreeMap<String, i64> {
    g.symbols
        .iter()
        .map(|(name, r)| {
            let want = match (options.max_seq, options.bindings.get(name)) {
                (Some(m), _) => m,
                (None, Some(v)) => *v,
                (None, None) => match r.max {
                    Some(m) if m <= genie_ir::DEFAULT_BIND_CAP => m,
                    _ => DEFAULT_MAX_SEQ,
                },
            };
            let v = want.max(r.min).min(r.max.unwrap_or(i64::MAX)).max(1);
            (name.clone(), v)
        })
        .collect()
}

impl<'a> Ctx<'a> {
    pub fn new(
        program: &Program,
        cluster: &'a ClusterSpec,
        options: &PlacementOptions,
    ) -> Result<Ctx<'a>, PlacementError> {
        let units = super::units::compute(program).map_err(PlacementError::Program)?;
        let k = cluster.devices.len();
        let links = cluster.link_table();
        let state_slots = program.state_slots();
        let mut slot_mem = vec![0u64; state_slots.len()];
        let mut slot_atom: Vec<Option<usize>> = vec![None; state_slots.len()];
        let mut weight_index: HashMap<WeightHash, usize> = HashMap::new();
        let mut weights: Vec<(WeightHash, u64, String)> = Vec::new();
        let mut entries = Vec::new();
        for (e, g) in program.entries.iter().enumerate() {
            let cost_bindings = crate::cost::entry_bindings(g, &options.bindings, options.request.as_ref());
            let mem_bindings = memory_bindings(g, options);
            let order = units.orders[e].clone();
            let mut pos = vec![0; g.nodes.len()];
            for (p, n) in order.iter().enumerate() {
                pos[n.index()] = p;
            }
            let users = g.users();
            let input_slot = |v: ValueId| state_slots.of_input(&g.name, &g.value(v).name);
            let mut vals = Vec::with_capacity(g.values.len());
            for (vi, val) in g.values.iter().enumerate() {
                let id = ValueId(vi as u32);
                let kind = match &val.def {
                    ValueDef::Input(_) => match input_slot(id) {
                        Some(s) => Kind::StateInput(s),
                        None => Kind::UserInput,
                    },
                    ValueDef::Weight(h) => {
                        let bytes = program
                            .weights
                            .get(h)
                            .map_or_else(|| eval_dim(&val.ty.bytes(), &mem_bindings), |w| w.byte_len());
                        let i = *weight_index.entry(h.clone()).or_insert_with(|| {
                            weights.push((h.clone(), bytes, val.name.clone()));
                            weights.len() - 1
                        });
                        Kind::Weight(i)
                    }
                    ValueDef::Const(_) => Kind::Const,
                    ValueDef::Node { node, .. } => Kind::Node(*node),
                };
                let alias = match &val.def {
                    ValueDef::Node { node, .. } if registry::aliases_input(&g.node(*node).op) => {
                        g.node(*node).inputs().first().copied()
                    }
                    _ => None,
                };
                let bytes_dim = val.ty.bytes();
                vals.push(Val {
                    kind,
                    bytes: eval_dim(&bytes_dim, &cost_bindings),
                    mem: eval_dim(&bytes_dim, &mem_bindings),
                    alias,
                    users: users[vi].clone(),
                });
            }
            // Outputs: state (bound) or user.
            let mut user_outputs = Vec::new();
            let mut state_outputs = Vec::new();
            for o in &g.outputs {
                match state_slots.of_output(&g.name, &o.name) {
                    Some(s) => {
                        if !state_outputs.iter().any(|(v, _)| *v == o.value) {
                            state_outputs.push((o.value, s));
                        }
                    }
                    None => {
                        if !user_outputs.contains(&o.value) {
                            user_outputs.push(o.value);
                        }
                    }
                }
            }
            // Slot sizes and atoms.
            let mut touch = |s: usize, v: ValueId, vals: &[Val]| {
                slot_mem[s] = slot_mem[s].max(vals[v.index()].mem);
                if slot_atom[s].is_none() {
                    let node = g.producer(v).or_else(|| vals[v.index()].users.first().copied());
                    slot_atom[s] = node.map(|n| units.node_atom[e][n.index()]);
                }
            };
            for &(v, s) in &state_outputs {
                touch(s, v, &vals);
            }
            for &v in &g.inputs {
                if let Kind::StateInput(s) = vals[v.index()].kind {
                    touch(s, v, &vals);
                }
            }
            // Node times.
            let mut node_time = vec![0.0; g.nodes.len() * k];
            for (ni, node) in g.nodes.iter().enumerate() {
                let hints = match &node.ann.cost {
                    Some(c) => (c.flops, c.bytes_read.saturating_add(c.bytes_written)),
                    None => {
                        let outs: Vec<_> = node.outputs.iter().map(|v| g.value(*v).ty.clone()).collect();
                        let types = |v: ValueId| g.values.get(v.index()).map(|x| &x.ty);
                        let c = registry::cost(&node.op, &node.args, &types, &outs)
                            .map_err(|e| PlacementError::Cost(format!("entry `{}` node n{ni}: {e}", g.name)))?;
                        let f = eval_dim(&c.flops, &cost_bindings);
                        let b = eval_dim(&c.bytes_read, &cost_bindings)
                            .saturating_add(eval_dim(&c.bytes_written, &cost_bindings));
                        (f, b)
                    }
                };
                for (d, dev) in cluster.devices.iter().enumerate() {
                    node_time[ni * k + d] = if hints.0 == 0 && hints.1 == 0 {
                        0.0
                    } else {
                        dev.overhead() + (hints.0 as f64 / dev.peak_flops()).max(hints.1 as f64 / dev.bandwidth())
                    };
                }
            }
            let inputs = g
                .nodes
                .iter()
                .map(|n| {
                    let mut v = n.inputs();
                    let mut seen = std::collections::HashSet::new();
                    v.retain(|x| seen.insert(*x));
                    v
                })
                .collect();
            let reads_state = vals.iter().any(|v| matches!(v.kind, Kind::StateInput(_)));
            entries.push(EntryCtx {
                name: g.name.clone(),
                side: if reads_state { Side::Decode } else { Side::Prefill },
                order,
                pos,
                node_time,
                inputs,
                outputs: g.nodes.iter().map(|n| n.outputs.clone()).collect(),
                names: g.values.iter().map(|v| v.name.clone()).collect(),
                vals,
                user_outputs,
                state_outputs,
                cost_bindings,
                mem_bindings,
            });
        }
        let side_of = |entry: &str| entries.iter().find(|e: &&EntryCtx| e.name == entry).map(|e| e.side);
        let splittable = state_slots.slots.iter().any(|def| {
            def.writes.iter().any(|p| side_of(&p.entry) == Some(Side::Prefill))
                && def.reads.iter().any(|p| side_of(&p.entry) == Some(Side::Decode))
        });
        let slots = state_slots
            .slots
            .into_iter()
            .map(|def| SlotCtx { name: def.name, mem: slot_mem[def.id], atom: slot_atom[def.id] })
            .collect();
        Ok(Ctx {
            cluster,
            k,
            links,
            units,
            entries,
            weights,
            slots,
            policy: options.policy,
            request: options.request,
            splittable,
        })
    }

    /// How much one call of an entry counts in the search's objective: the decode side once per
    /// generated token under `min-latency`; under `min-ttft` / `min-tpot` the other side only
    /// breaks ties.
    pub fn entry_weight(&self, e: usize) -> f64 {
        let tokens = self.request.map_or(1.0, |r| r.new_tokens.max(1) as f64);
        match (self.policy, self.entries[e].side) {
            (Policy::MinTtft, Side::Decode) | (Policy::MinTpot, Side::Prefill) => 1e-3,
            (Policy::MinTtft | Policy::MinTpot, _) => 1.0,
            (_, Side::Prefill) => 1.0,
            (_, Side::Decode) => tokens,
        }
    }

    /// Number of atoms.
    pub fn atoms(&self) -> usize {
        self.units.atoms.len()
    }

    /// Device of a slot under an assignment: with the decode side, which reads it.
    pub fn slot_device(&self, s: usize, assign: &Assign) -> usize {
        self.slots[s].atom.map_or(0, |a| assign.sides[Side::Decode as usize][a])
    }

    /// Device of a node.
    pub fn dev(&self, e: usize, n: NodeId, assign: &Assign) -> usize {
        assign.sides[self.entries[e].side as usize][self.units.node_atom[e][n.index()]]
    }

    /// The state outputs of an entry that leave their producer's device for their slot's (the
    /// handoff after prefill), with that slot's device.
    pub fn handoffs(&self, e: usize, assign: &Assign) -> Vec<(ValueId, usize)> {
        self.entries[e]
            .state_outputs
            .iter()
            .filter_map(|&(v, s)| {
                let to = self.slot_device(s, assign);
                (self.home(e, v, assign) != to).then_some((v, to))
            })
            .collect()
    }

    /// Where a value lives at the start of its life: the producer's device, the client for user
    /// inputs, the slot's device for state, the first consumer's device for weights and
    /// constants (device 0 when nothing on any device uses them).
    pub fn home(&self, e: usize, v: ValueId, assign: &Assign) -> usize {
        let ent = &self.entries[e];
        let val = &ent.vals[v.index()];
        match val.kind {
            Kind::UserInput => self.k,
            Kind::StateInput(s) => self.slot_device(s, assign),
            Kind::Node(n) => self.dev(e, n, assign),
            Kind::Weight(_) | Kind::Const => {
                val.users.iter().min_by_key(|n| ent.pos[n.index()]).map_or(0, |n| self.dev(e, *n, assign))
            }
        }
    }

    /// True when a value never travels: weights, constants, state on its slot's device.
    fn resident_on(&self, e: usize, v: ValueId, d: usize, assign: &Assign) -> bool {
        match self.entries[e].vals[v.index()].kind {
            Kind::Weight(_) | Kind::Const => true,
            Kind::StateInput(s) => self.slot_device(s, assign) == d,
            _ => false,
        }
    }

    /// Exact evaluation of an assignment of atoms to devices.
    pub fn evaluate(&self, assign: &Assign) -> Eval {
        let k = self.k;
        let mut mem = vec![Mem::default(); k];
        // Resident weights (distinct per device) and constants.
        let mut has_weight = vec![false; self.weights.len() * k];
        for (e, ent) in self.entries.iter().enumerate() {
            for (vi, val) in ent.vals.iter().enumerate() {
                match val.kind {
                    Kind::Weight(w) => {
                        let mut devs: Vec<usize> = val.users.iter().map(|n| self.dev(e, *n, assign)).collect();
                        if devs.is_empty() && ent.user_outputs.contains(&ValueId(vi as u32)) {
                            devs.push(self.home(e, ValueId(vi as u32), assign));
                        }
                        for d in devs {
                            if !has_weight[w * k + d] {
                                has_weight[w * k + d] = true;
                                mem[d].weights = mem[d].weights.saturating_add(self.weights[w].1);
                            }
                        }
                    }
                    Kind::Const => {
                        let mut devs: Vec<usize> = val.users.iter().map(|n| self.dev(e, *n, assign)).collect();
                        if devs.is_empty() && ent.user_outputs.contains(&ValueId(vi as u32)) {
                            devs.push(self.home(e, ValueId(vi as u32), assign));
                        }
                        devs.sort_unstable();
                        devs.dedup();
                        for d in devs {
                            mem[d].weights = mem[d].weights.saturating_add(val.mem);
                        }
                    }
                    _ => {}
                }
            }
        }
        for (s, slot) in self.slots.iter().enumerate() {
            let d = self.slot_device(s, assign);
            mem[d].kv = mem[d].kv.saturating_add(slot.mem);
        }
        for e in 0..self.entries.len() {
            let peaks = self.activation_peaks(e, assign);
            for (d, p) in peaks.into_iter().enumerate() {
                if p > mem[d].activations || (p > 0 && mem[d].peak_entry.is_none()) {
                    mem[d].activations = mem[d].activations.max(p);
                    mem[d].peak_entry = Some(e);
                }
            }
        }
        let mut overflow = 0u64;
        let mut max_frac: f64 = 0.0;
        for (d, m) in mem.iter().enumerate() {
            let cap = self.cluster.devices[d].memory;
            overflow = overflow.saturating_add(m.total().saturating_sub(cap));
            max_frac = max_frac.max(m.total() as f64 / cap as f64);
        }
        let estimates: Vec<EntryEstimate> = (0..self.entries.len()).map(|e| self.simulate(e, assign, None)).collect();
        let side_sum = |side: Side| -> f64 {
            estimates.iter().zip(&self.entries).filter(|(_, ent)| ent.side == side).map(|(x, _)| x.latency_s).sum()
        };
        let (ttft, tpot) = (side_sum(Side::Prefill), side_sum(Side::Decode));
        let tokens = self.request.map_or(1.0, |r| r.new_tokens.max(0) as f64);
        Eval { mem, overflow, max_frac, estimates, ttft, tpot, objective: ttft + tokens * tpot }
    }

    /// Peak activation bytes per device for one entry: the walk codegen's plan makes.
    pub fn activation_peaks(&self, e: usize, assign: &Assign) -> Vec<u64> {
        let ent = &self.entries[e];
        let k = self.k;
        let nv = ent.vals.len();
        // Last position each value is used at on each device (consumers only).
        const NONE: usize = usize::MAX;
        let mut last = vec![NONE; nv * k];
        for (p, n) in ent.order.iter().enumerate() {
            let d = self.dev(e, *n, assign);
            for v in &ent.inputs[n.index()] {
                last[v.index() * k + d] = p;
            }
        }
        // State outputs stay until the call's end where their slot is; handed-off ones are freed
        // on their producer after the send, and received at the end on the slot's device.
        let handoffs = self.handoffs(e, assign);
        let kept: std::collections::HashSet<usize> = ent
            .state_outputs
            .iter()
            .filter(|(v, _)| !handoffs.iter().any(|(h, _)| h == v))
            .map(|(v, _)| v.index())
            .collect();
        let mut peak = vec![0u64; k];
        let mut live = vec![0u64; k];
        // Storage of each (value, device): a root index into `storages`; refcounts per storage.
        let mut storage_of = vec![NONE; nv * k];
        let mut storages: Vec<(u64, u32)> = Vec::new();
        let mut present = vec![false; nv * k];
        for (p, n) in ent.order.iter().enumerate() {
            let d = self.dev(e, *n, assign);
            // Receives (and state inputs that live elsewhere are received too).
            for v in &ent.inputs[n.index()] {
                let vi = v.index();
                if self.resident_on(e, *v, d, assign) || present[vi * k + d] {
                    continue;
                }
                present[vi * k + d] = true;
                storages.push((ent.vals[vi].mem, 1));
                storage_of[vi * k + d] = storages.len() - 1;
                live[d] = live[d].saturating_add(ent.vals[vi].mem);
            }
            // Exec: allocate outputs.
            let node_outputs = &ent.outputs[n.index()];
            for o in node_outputs.iter() {
                let oi = o.index();
                present[oi * k + d] = true;
                let base = ent.vals[oi].alias.map(|a| storage_of[a.index() * k + d]).filter(|s| *s != NONE);
                match (ent.vals[oi].alias, base) {
                    (Some(_), Some(s)) => {
                        storages[s].1 += 1;
                        storage_of[oi * k + d] = s;
                    }
                    // A view of something without storage here (a weight, local state, a view
                    // of those) owns none either.
                    (Some(_), None) => {}
                    _ => {
                        storages.push((ent.vals[oi].mem, 1));
                        storage_of[oi * k + d] = storages.len() - 1;
                        live[d] = live[d].saturating_add(ent.vals[oi].mem);
                    }
                }
            }
            peak[d] = peak[d].max(live[d]);
            // Frees: inputs last used here, outputs never used here.
            let mut release = |vi: usize, live: &mut Vec<u64>| {
                let s = std::mem::replace(&mut storage_of[vi * k + d], NONE);
                if s != NONE {
                    storages[s].1 -= 1;
                    if storages[s].1 == 0 {
                        live[d] = live[d].saturating_sub(storages[s].0);
                    }
                }
            };
            for v in &ent.inputs[n.index()] {
                if last[v.index() * k + d] == p && !kept.contains(&v.index()) {
                    release(v.index(), &mut live);
                }
            }
            for o in node_outputs.iter() {
                if last[o.index() * k + d] == NONE && !kept.contains(&o.index()) {
                    release(o.index(), &mut live);
                }
            }
        }
        for (v, to) in handoffs {
            live[to] = live[to].saturating_add(ent.vals[v.index()].mem);
            peak[to] = peak[to].max(live[to]);
        }
        peak
    }

    /// Simulated latency of one call of an entry, with its breakdown; with `record`, every
    /// node's run and every transfer as scheduled (device `k` is the client).
    pub fn simulate(&self, e: usize, assign: &Assign, mut record: Option<&mut Vec<Scheduled>>) -> EntryEstimate {
        let ent = &self.entries[e];
        let k = self.k;
        let nodes = k + 1;
        let mut dev_free: Vec<(f64, Brk)> = vec![(0.0, Brk::default()); k];
        let mut link_free = vec![0.0f64; nodes * nodes];
        let mut ready: Vec<(f64, Brk)> = vec![(0.0, Brk::default()); ent.vals.len()];
        let mut arrived: Vec<Option<(f64, Brk)>> = vec![None; ent.vals.len() * nodes];
        let mut bytes_per_call = 0u64;
        let mut transfers = 0usize;
        let mut arrival = |v: ValueId,
                           d: usize,
                           ready: &[(f64, Brk)],
                           link_free: &mut [f64],
                           bytes_per_call: &mut u64,
                           transfers: &mut usize,
                           record: &mut Option<&mut Vec<Scheduled>>|
         -> (f64, Brk) {
            if d < k && self.resident_on(e, v, d, assign) {
                return (0.0, Brk::default());
            }
            let home = self.home(e, v, assign);
            if home == d {
                return ready[v.index()];
            }
            if let Some(x) = arrived[v.index() * nodes + d] {
                return x;
            }
            let (t0, b0) = ready[v.index()];
            let link = self.links[home][d];
            let bytes = ent.vals[v.index()].bytes;
            let depart = t0.max(link_free[home * nodes + d]);
            let wire = bytes as f64 / link.bandwidth;
            link_free[home * nodes + d] = depart + wire;
            let t = depart + wire + link.latency;
            let b = Brk {
                compute: b0.compute,
                transfer: b0.transfer + (depart - t0) + wire,
                latency: b0.latency + link.latency,
                hops: b0.hops + 1,
            };
            *bytes_per_call = bytes_per_call.saturating_add(bytes);
            *transfers += 1;
            if let Some(r) = record {
                r.push(Scheduled::Transfer { value: v, from: home, to: d, start_s: depart, end_s: t, bytes });
            }
            arrived[v.index() * nodes + d] = Some((t, b));
            (t, b)
        };
        let mut used = vec![false; k];
        for n in &ent.order {
            let d = self.dev(e, *n, assign);
            used[d] = true;
            let (mut start, mut brk) = dev_free[d];
            for v in &ent.inputs[n.index()] {
                let (t, b) = arrival(*v, d, &ready, &mut link_free, &mut bytes_per_call, &mut transfers, &mut record);
                if t > start {
                    start = t;
                    brk = b;
                }
            }
            let dt = ent.node_time[n.index() * k + d];
            brk.compute += dt;
            let finish = start + dt;
            if let Some(r) = &mut record {
                r.push(Scheduled::Node { node: *n, device: d, start_s: start, end_s: finish });
            }
            dev_free[d] = (finish, brk);
            for o in &ent.outputs[n.index()] {
                ready[o.index()] = (finish, brk);
            }
        }
        let mut end = (0.0, Brk::default());
        for v in &ent.user_outputs {
            let x = arrival(*v, k, &ready, &mut link_free, &mut bytes_per_call, &mut transfers, &mut record);
            if x.0 > end.0 {
                end = x;
            }
        }
        let mut handoff_bytes = 0u64;
        for (v, to) in self.handoffs(e, assign) {
            let x = arrival(v, to, &ready, &mut link_free, &mut bytes_per_call, &mut transfers, &mut record);
            handoff_bytes = handoff_bytes.saturating_add(ent.vals[v.index()].bytes);
            if x.0 > end.0 {
                end = x;
            }
        }
        for (d, x) in dev_free.iter().enumerate() {
            if used[d] && x.0 > end.0 {
                end = *x;
            }
        }
        EntryEstimate {
            entry: ent.name.clone(),
            latency_s: end.0,
            compute_s: end.1.compute,
            transfer_s: end.1.transfer,
            network_latency_s: end.1.latency,
            network_hops: end.1.hops,
            bytes_per_call,
            transfers,
            handoff_bytes,
        }
    }
}
