//! Placed program → plans.
//!
//! For each entry, in one topological order shared by every device:
//! - a device receives each tensor it does not hold right before its first use there (weights,
//!   constants and the state on its own slot are resident and never travel);
//! - runs its nodes in that order;
//! - sends each output, right after producing it, once to each other device that uses it and to
//!   the client when it is a user output;
//! - frees each tensor right after its last use there (state outputs are kept and saved into
//!   their slot at the end of the call);
//! - a state slot lives where the entries that read it run; a state output produced elsewhere
//!   (prefill on another device than decode) is sent to the slot's device right after it is
//!   produced, received there at the end of the call and saved: a handoff.
//!
//! The client sends the user inputs first, then receives the outputs. Because every device walks
//! the same order, and sends never wait on receives, the plans cannot deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use genie_ir::{Dim, Graph, NodeId, PlacementRecord, Port, Program, ValueDef, ValueId, WeightHash, CLIENT};

use crate::plan::*;
use crate::CodegenError;

fn eval(entry: &str, name: &str, d: &Dim, b: &BTreeMap<String, i64>) -> Result<u64, CodegenError> {
    d.eval(b).map(|v| v.max(0) as u64).map_err(|e| CodegenError::Size {
        entry: entry.to_string(),
        value: name.to_string(),
        reason: e.to_string(),
    })
}

/// What a value is, for codegen.
#[derive(Clone, Debug, PartialEq)]
enum VKind {
    Input(u32),
    State(u32, usize),
    Weight(WeightHash),
    Const,
    Node(NodeId),
}

/// One entry, prepared.
struct Prep<'g> {
    g: &'g Graph,
    order: Vec<NodeId>,
    pos: Vec<usize>,
    dev: Vec<usize>,
    kinds: Vec<VKind>,
    users: Vec<Vec<NodeId>>,
    cost_b: BTreeMap<String, i64>,
    mem_b: BTreeMap<String, i64>,
    /// State outputs and their slots, in output order.
    state_outputs: Vec<(String, ValueId, usize)>,
    /// User outputs, in output order.
    user_outputs: Vec<(String, ValueId)>,
}

impl Prep<'_> {
    fn slot_device(&self, s: usize, slot_dev: &[usize]) -> usize {
        slot_dev[s]
    }

    fn home(&self, v: ValueId, client: usize, slot_dev: &[usize]) -> usize {
        match &self.kinds[v.index()] {
            VKind::Input(_) => client,
            VKind::State(_, s) => self.slot_device(*s, slot_dev),
            VKind::Node(n) => self.dev[n.index()],
            VKind::Weight(_) | VKind::Const => {
                self.users[v.index()].iter().min_by_key(|n| self.pos[n.index()]).map_or(0, |n| self.dev[n.index()])
            }
        }
    }

    fn resident_on(&self, v: ValueId, d: usize, slot_dev: &[usize]) -> bool {
        match &self.kinds[v.index()] {
            VKind::Weight(_) | VKind::Const => true,
            VKind::State(_, s) => slot_dev[*s] == d,
            _ => false,
        }
    }
}

fn dedup_inputs(node: &genie_ir::Node) -> Vec<ValueId> {
    let mut seen = HashSet::new();
    node.inputs().into_iter().filter(|v| seen.insert(*v)).collect()
}

/// Generate the plans of a placed program: every node has `ann.device`, and
/// `program.placement` records the devices and placement's estimates.
pub fn generate(program: &Program) -> Result<ProgramPlan, CodegenError> {
    let target = program.placement.as_ref().ok_or(CodegenError::NotPlaced)?;
    if target.devices.is_empty() {
        return Err(CodegenError::NoDevices);
    }
    let k = target.devices.len();
    let client = k;
    let names: Vec<String> = target.devices.iter().map(|d| d.name.clone()).chain([CLIENT.to_string()]).collect();
    let index: HashMap<&str, usize> = target.devices.iter().enumerate().map(|(i, d)| (d.name.as_str(), i)).collect();
    let slots = program.state_slots();
    for b in &program.state_bindings {
        for (p, out) in [(&b.from, true), (&b.to, false)] {
            let g = program.entry(&p.entry).ok_or_else(|| CodegenError::Graph {
                entry: p.entry.clone(),
                reason: "a state binding names this entry, which the program lacks".into(),
            })?;
            let found = if out {
                g.outputs.iter().any(|o| o.name == p.name)
            } else {
                g.inputs.iter().any(|v| g.value(*v).name == p.name)
            };
            if !found {
                return Err(CodegenError::Graph {
                    entry: p.entry.clone(),
                    reason: format!(
                        "a state binding names {} `{}`, which it lacks",
                        if out { "output" } else { "input" },
                        p.name
                    ),
                });
            }
        }
    }

    // Prepare every entry; gather where each slot's readers (and, for a slot nothing reads,
    // writers) are.
    let mut preps = Vec::new();
    let mut slot_devs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); slots.len()];
    let mut slot_writers: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); slots.len()];
    for g in &program.entries {
        let order = g.topo_order().map_err(|e| CodegenError::Graph { entry: g.name.clone(), reason: e.to_string() })?;
        let mut pos = vec![0; g.nodes.len()];
        for (p, n) in order.iter().enumerate() {
            pos[n.index()] = p;
        }
        let mut dev = Vec::with_capacity(g.nodes.len());
        for (ni, node) in g.nodes.iter().enumerate() {
            let name = node
                .ann
                .device
                .as_deref()
                .ok_or(CodegenError::Unplaced { entry: g.name.clone(), node: NodeId(ni as u32) })?;
            let d = *index.get(name).ok_or_else(|| CodegenError::UnknownDevice {
                entry: g.name.clone(),
                node: NodeId(ni as u32),
                device: name.to_string(),
            })?;
            dev.push(d);
        }
        let kinds: Vec<VKind> = g
            .values
            .iter()
            .map(|val| match &val.def {
                ValueDef::Input(i) => match slots.of_input(&g.name, &val.name) {
                    Some(s) => VKind::State(*i, s),
                    None => VKind::Input(*i),
                },
                ValueDef::Weight(h) => VKind::Weight(h.clone()),
                ValueDef::Const(_) => VKind::Const,
                ValueDef::Node { node, .. } => VKind::Node(*node),
            })
            .collect();
        let users = g.users();
        let given = target.cost_bindings.get(&g.name).cloned().unwrap_or_default();
        let cost_b = g.bind_symbols(&given);
        let mut mem_b = cost_b.clone();
        if let Some(m) = target.memory_bindings.get(&g.name) {
            mem_b.extend(m.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let mut state_outputs = Vec::new();
        let mut user_outputs = Vec::new();
        for o in &g.outputs {
            match slots.of_output(&g.name, &o.name) {
                Some(s) => state_outputs.push((o.name.clone(), o.value, s)),
                None => user_outputs.push((o.name.clone(), o.value)),
            }
        }
        for (_, v, s) in &state_outputs {
            if let Some(p) = g.producer(*v) {
                slot_writers[*s].insert(dev[p.index()]);
            }
        }
        for (vi, kind) in kinds.iter().enumerate() {
            if let VKind::State(_, s) = kind {
                for n in &users[vi] {
                    slot_devs[*s].insert(dev[n.index()]);
                }
            }
        }
        preps.push(Prep { g, order, pos, dev, kinds, users, cost_b, mem_b, state_outputs, user_outputs });
    }
    let mut slot_dev = Vec::with_capacity(slots.len());
    for (s, devs) in slot_devs.iter_mut().enumerate() {
        if devs.is_empty() {
            *devs = std::mem::take(&mut slot_writers[s]);
        }
        if devs.len() > 1 {
            return Err(CodegenError::StateSplit {
                slot: slots.slots[s].name.clone(),
                devices: devs.iter().map(|d| names[*d].clone()).collect::<Vec<_>>().join(", "),
            });
        }
        slot_dev.push(devs.first().copied().unwrap_or(0));
    }

    // Resident sets.
    let mut weights: Vec<BTreeMap<WeightHash, (u64, String)>> = vec![BTreeMap::new(); k];
    let mut const_bytes = vec![0u64; k];
    let mut entries = Vec::new();
    let mut act_peak = vec![0u64; k];
    let mut node_count = vec![0usize; k];
    let mut slot_bytes = vec![0u64; slots.len()];
    let mut slot_ty: Vec<Option<genie_ir::TensorType>> = vec![None; slots.len()];
    for p in &preps {
        let g = p.g;
        for (vi, kind) in p.kinds.iter().enumerate() {
            let v = ValueId(vi as u32);
            let val = g.value(v);
            let mut devs: BTreeSet<usize> = p.users[vi].iter().map(|n| p.dev[n.index()]).collect();
            if devs.is_empty() && p.user_outputs.iter().any(|(_, o)| *o == v) {
                devs.insert(p.home(v, client, &slot_dev));
            }
            match kind {
                VKind::Weight(h) => {
                    let bytes = match program.weights.get(h) {
                        Some(w) => w.byte_len(),
                        None => eval(&g.name, &val.name, &val.ty.bytes(), &p.mem_b)?,
                    };
                    for d in devs {
                        weights[d].entry(h.clone()).or_insert((bytes, val.name.clone()));
                    }
                }
                VKind::Const => {
                    let bytes = eval(&g.name, &val.name, &val.ty.bytes(), &p.mem_b)?;
                    for d in devs {
                        const_bytes[d] = const_bytes[d].saturating_add(bytes);
                    }
                }
                VKind::State(_, s) => {
                    slot_bytes[*s] = slot_bytes[*s].max(eval(&g.name, &val.name, &val.ty.bytes(), &p.mem_b)?);
                    if slot_ty[*s].is_none()
                        && slots.slots[*s].first == (Port { entry: g.name.clone(), name: val.name.clone() })
                    {
                        slot_ty[*s] = Some(val.ty.clone());
                    }
                }
                _ => {}
            }
        }
        for (_, v, s) in &p.state_outputs {
            let val = g.value(*v);
            slot_bytes[*s] = slot_bytes[*s].max(eval(&g.name, &val.name, &val.ty.bytes(), &p.mem_b)?);
        }
        let plan = entry_plan(p, &names, client, &slot_dev, target)?;
        for dp in &plan.plans {
            if let Some(&d) = index.get(dp.device.as_str()) {
                act_peak[d] = act_peak[d].max(dp.activation_peak_bytes);
            }
        }
        for d in &p.dev {
            node_count[*d] += 1;
        }
        entries.push(plan);
    }
    let state_slots: Vec<StateSlot> = slots
        .slots
        .iter()
        .map(|def| {
            let (s, first) = (def.id, &def.first);
            let ty = slot_ty[s].clone().unwrap_or_else(|| {
                program
                    .entry(&first.entry)
                    .and_then(|g| {
                        g.inputs.iter().find(|v| g.value(**v).name == first.name).map(|v| g.value(*v).ty.clone())
                    })
                    .unwrap_or_else(|| genie_ir::TensorType::new(genie_ir::DType::Float32, &[]))
            });
            StateSlot {
                id: s as u32,
                name: def.name.clone(),
                device: names[slot_dev[s]].clone(),
                ty,
                bytes: slot_bytes[s],
                writes: def.writes.clone(),
                reads: def.reads.clone(),
            }
        })
        .collect();
    let devices = target
        .devices
        .iter()
        .enumerate()
        .map(|(d, t)| {
            let ws: Vec<ResidentWeight> = weights[d]
                .iter()
                .map(|(h, (b, n))| ResidentWeight { hash: h.clone(), bytes: *b, name: n.clone() })
                .collect();
            let weight_bytes = ws.iter().map(|w| w.bytes).fold(const_bytes[d], u64::saturating_add);
            let held: Vec<u32> = (0..slots.len()).filter(|s| slot_dev[*s] == d).map(|s| s as u32).collect();
            let kv_bytes = held.iter().map(|s| slot_bytes[*s as usize]).fold(0, u64::saturating_add);
            DeviceInfo {
                name: t.name.clone(),
                kind: t.kind.clone(),
                memory_bytes: t.memory_bytes,
                weights: ws,
                weight_bytes,
                slots: held,
                kv_bytes,
                activation_bytes: act_peak[d],
                peak_bytes: weight_bytes.saturating_add(kv_bytes).saturating_add(act_peak[d]),
                nodes: node_count[d],
            }
        })
        .collect();
    let mut plan = ProgramPlan {
        version: PLAN_FORMAT_VERSION,
        program: program.name.clone(),
        policy: Some(target.policy.clone()),
        max_seq: target.max_seq,
        devices,
        state_slots,
        entries,
        phases: target.phases.clone(),
        replicas: target.replicas.clone(),
    };
    crate::fusion::mark(&mut plan);
    Ok(plan)
}

/// The plans of one entry.
fn entry_plan(
    p: &Prep,
    names: &[String],
    client: usize,
    slot_dev: &[usize],
    target: &PlacementRecord,
) -> Result<EntryPlan, CodegenError> {
    let g = p.g;
    let k = client;
    let tensor_bytes = |v: ValueId| eval(&g.name, &g.value(v).name, &g.value(v).ty.bytes(), &p.cost_b);
    let user_out: HashSet<ValueId> = p.user_outputs.iter().map(|(_, v)| *v).collect();
    // State outputs produced away from their slot are handed over; an entry that reads a slot
    // must also write it where it is (decode never moves its KV cache).
    let mut handed: BTreeMap<ValueId, usize> = BTreeMap::new();
    for (name, v, s) in &p.state_outputs {
        let (from, to) = (p.home(*v, client, slot_dev), slot_dev[*s]);
        if from == to {
            continue;
        }
        if p.kinds.iter().any(|kind| matches!(kind, VKind::State(_, r) if r == s)) || handed.contains_key(v) {
            return Err(CodegenError::StateSplit {
                slot: format!("{}.{name}", g.name),
                devices: format!("{} (output), {} (slot)", names[from], names[to]),
            });
        }
        handed.insert(*v, *s);
    }
    let kept: HashSet<ValueId> =
        p.state_outputs.iter().map(|(_, v, _)| *v).filter(|v| !handed.contains_key(v)).collect();

    // Destinations of each value, in device order, the client last.
    let dests = |v: ValueId| -> Vec<usize> {
        let home = p.home(v, client, slot_dev);
        let mut ds: BTreeSet<usize> = p.users[v.index()]
            .iter()
            .map(|n| p.dev[n.index()])
            .filter(|d| *d != home && !p.resident_on(v, *d, slot_dev))
            .collect();
        if user_out.contains(&v) && home != client {
            ds.insert(client);
        }
        if let Some(s) = handed.get(&v) {
            ds.insert(slot_dev[*s]);
        }
        ds.into_iter().collect()
    };

    // Transfers: inputs, then non-node outputs, then node outputs in topological order.
    let mut transfers: Vec<Transfer> = Vec::new();
    let mut tid: HashMap<(ValueId, usize), u32> = HashMap::new();
    let mut add = |v: ValueId, transfers: &mut Vec<Transfer>| -> Result<(), CodegenError> {
        let home = p.home(v, client, slot_dev);
        for d in dests(v) {
            let id = transfers.len() as u32;
            tid.insert((v, d), id);
            let consumers = if d == client {
                Vec::new()
            } else {
                let mut c: Vec<NodeId> = p.users[v.index()].iter().copied().filter(|n| p.dev[n.index()] == d).collect();
                c.sort_by_key(|n| p.pos[n.index()]);
                c
            };
            transfers.push(Transfer {
                id,
                tensor: v,
                name: g.value(v).name.clone(),
                from: names[home].clone(),
                to: names[d].clone(),
                bytes: tensor_bytes(v)?,
                residency: g.value(v).ann.residency,
                producer: g.producer(v),
                consumers,
            });
        }
        Ok(())
    };
    for &v in &g.inputs {
        add(v, &mut transfers)?;
    }
    let mut early: Vec<ValueId> = Vec::new();
    for (_, v) in &p.user_outputs {
        if matches!(p.kinds[v.index()], VKind::Weight(_) | VKind::Const) && !early.contains(v) {
            early.push(*v);
            add(*v, &mut transfers)?;
        }
    }
    for n in &p.order {
        for &o in &g.node(*n).outputs {
            add(o, &mut transfers)?;
        }
    }

    // A KV-cache value never travels between devices, except as a handoff.
    for t in &transfers {
        let kv = g.value(t.tensor).ann.residency == Some(genie_ir::Residency::StatefulKvCache);
        if kv && t.from != CLIENT && t.to != CLIENT && !handed.contains_key(&t.tensor) {
            return Err(CodegenError::StateSplit {
                slot: format!("{}.{}", g.name, t.name),
                devices: format!("{} and {}", t.from, t.to),
            });
        }
    }

    // Last use of each value on each device.
    let mut last: HashMap<(ValueId, usize), usize> = HashMap::new();
    for (pos, n) in p.order.iter().enumerate() {
        for v in g.node(*n).inputs() {
            last.insert((v, p.dev[n.index()]), pos);
        }
    }

    let mut plans = Vec::new();
    for d in 0..k {
        let mut steps = Vec::new();
        let mut present: HashSet<ValueId> = HashSet::new();
        // Resident tensors some other node of the cluster needs this call.
        for t in &transfers {
            if t.from == names[d] && !matches!(p.kinds[t.tensor.index()], VKind::Node(_)) {
                steps.push(Step::Send { tensor: t.tensor, to: t.to.clone(), transfer: t.id });
            }
        }
        let mut any = !steps.is_empty();
        for (pos, n) in p.order.iter().enumerate() {
            if p.dev[n.index()] != d {
                continue;
            }
            any = true;
            let node = g.node(*n);
            let ins = dedup_inputs(node);
            for &v in &ins {
                if p.resident_on(v, d, slot_dev) || present.contains(&v) {
                    continue;
                }
                let from = p.home(v, client, slot_dev);
                let transfer = *tid.get(&(v, d)).ok_or_else(|| CodegenError::Graph {
                    entry: g.name.clone(),
                    reason: format!("{v} is used on {} before it is produced", names[d]),
                })?;
                steps.push(Step::Recv { tensor: v, from: names[from].clone(), transfer });
                present.insert(v);
            }
            steps.push(Step::Exec {
                node: *n,
                op: node.op.clone(),
                args: node.args.clone(),
                outputs: node.outputs.clone(),
                batching: node.ann.batching.unwrap_or_default(),
            });
            for &o in &node.outputs {
                present.insert(o);
                for t in &transfers {
                    if t.tensor == o && t.from == names[d] {
                        steps.push(Step::Send { tensor: o, to: t.to.clone(), transfer: t.id });
                    }
                }
            }
            for &v in &ins {
                if !p.resident_on(v, d, slot_dev) && !kept.contains(&v) && last.get(&(v, d)) == Some(&pos) {
                    steps.push(Step::Free { tensor: v });
                }
            }
            for &o in &node.outputs {
                if !kept.contains(&o) && !last.contains_key(&(o, d)) {
                    steps.push(Step::Free { tensor: o });
                }
            }
        }
        // Handoffs arrive at the end of the call; then every slot here is saved.
        for t in &transfers {
            if t.to == names[d] && handed.contains_key(&t.tensor) {
                steps.push(Step::Recv { tensor: t.tensor, from: t.from.clone(), transfer: t.id });
                any = true;
            }
        }
        for (_, v, s) in &p.state_outputs {
            if slot_dev[*s] == d {
                steps.push(Step::SaveState { tensor: *v, slot: *s as u32 });
            }
        }
        if any {
            let activation_peak_bytes = crate::memory::activation_peak(&steps, |v| tensor_mem(p, v));
            plans.push(DevicePlan { device: names[d].clone(), steps, activation_peak_bytes, fused: Vec::new() });
        }
    }
    // The client: send the inputs, receive the outputs.
    let mut steps = Vec::new();
    for t in &transfers {
        if t.from == CLIENT {
            steps.push(Step::Send { tensor: t.tensor, to: t.to.clone(), transfer: t.id });
        }
    }
    for t in &transfers {
        if t.to == CLIENT {
            steps.push(Step::Recv { tensor: t.tensor, from: t.from.clone(), transfer: t.id });
        }
    }
    plans.push(DevicePlan { device: CLIENT.to_string(), steps, activation_peak_bytes: 0, fused: Vec::new() });

    // Tensors any step names.
    let mut named: BTreeSet<ValueId> = BTreeSet::new();
    for plan in &plans {
        for s in &plan.steps {
            named.extend(s.tensors());
        }
    }
    named.extend(g.inputs.iter().copied());
    named.extend(g.outputs.iter().map(|o| o.value));
    let mut tensors = BTreeMap::new();
    for v in named {
        let val = g.value(v);
        let kind = match (&p.kinds[v.index()], &val.def) {
            (VKind::Input(i), _) => TensorKind::Input { index: *i },
            (VKind::State(i, s), _) => TensorKind::State { index: *i, slot: *s as u32 },
            (VKind::Weight(h), _) => TensorKind::Weight { hash: h.clone() },
            (VKind::Const, ValueDef::Const(b)) => TensorKind::Const { data: b.clone() },
            (_, ValueDef::Node { node, index }) => TensorKind::Node { node: *node, output: *index },
            (_, _) => TensorKind::Const { data: genie_ir::HexBytes::default() },
        };
        tensors.insert(
            v,
            TensorInfo {
                name: val.name.clone(),
                ty: val.ty.clone(),
                kind,
                residency: val.ann.residency,
                bytes: eval(&g.name, &val.name, &val.ty.bytes(), &p.mem_b)?,
            },
        );
    }
    let port = |name: &str, v: ValueId, slot: Option<usize>| IoPort {
        name: name.to_string(),
        tensor: v,
        slot: slot.map(|s| s as u32),
        device: names[p.home(v, client, slot_dev)].clone(),
        role: if slot.is_none() { g.value(v).ann.role } else { None },
    };
    let inputs = g
        .inputs
        .iter()
        .map(|v| {
            let slot = match p.kinds[v.index()] {
                VKind::State(_, s) => Some(s),
                _ => None,
            };
            port(&g.value(*v).name, *v, slot)
        })
        .collect();
    let outputs = g
        .outputs
        .iter()
        .map(|o| {
            let slot = p.state_outputs.iter().find(|(n, _, _)| *n == o.name).map(|(_, _, s)| *s);
            port(&o.name, o.value, slot)
        })
        .collect();
    let symbols = g
        .symbols
        .iter()
        .map(|(name, r)| {
            let sym = Dim::symbol(name.clone());
            let sources = g
                .inputs
                .iter()
                .flat_map(|v| {
                    let sym = sym.clone();
                    g.value(*v)
                        .ty
                        .shape
                        .iter()
                        .enumerate()
                        .filter(move |(_, d)| **d == sym)
                        .map(move |(i, _)| DimSource { tensor: *v, dim: i as u32 })
                })
                .collect();
            SymbolInfo {
                name: name.clone(),
                min: r.min,
                max: r.max,
                cost_value: p.cost_b.get(name).copied().unwrap_or(r.min),
                memory_value: p.mem_b.get(name).copied().unwrap_or(r.min),
                sources,
            }
        })
        .collect();
    let handoffs = transfers
        .iter()
        .filter_map(|t| {
            let slot = *handed.get(&t.tensor)?;
            let sender = plans.iter().find(|dp| dp.device == t.from)?;
            let sent =
                sender.steps.iter().position(|st| matches!(st, Step::Send { transfer, .. } if *transfer == t.id))?;
            let overlaps_compute = sender.steps[sent..].iter().any(|st| matches!(st, Step::Exec { .. }));
            Some(Handoff {
                transfer: t.id,
                slot: slot as u32,
                output: p.state_outputs.iter().find(|(_, v, _)| *v == t.tensor).map(|(n, _, _)| n.clone())?,
                from: t.from.clone(),
                to: t.to.clone(),
                bytes: t.bytes,
                overlaps_compute,
            })
        })
        .collect();
    let bytes_per_call = transfers.iter().map(|t| t.bytes).fold(0, u64::saturating_add);
    let hops = longest_chain(p, client, slot_dev, &user_out);
    Ok(EntryPlan {
        name: g.name.clone(),
        phase: g.phase,
        symbols,
        tensors,
        inputs,
        outputs,
        transfers,
        handoffs,
        plans,
        bytes_per_call,
        hops,
        estimate: target.estimates.get(&g.name).cloned(),
    })
}

/// Bytes of a tensor at the memory bindings (0 when it cannot be evaluated; sizes were checked
/// when the tensor table was built).
fn tensor_mem(p: &Prep, v: ValueId) -> u64 {
    p.g.value(v).ty.bytes().eval(&p.mem_b).map(|x| x.max(0) as u64).unwrap_or(0)
}

/// Network messages in sequence on the longest chain from the client's inputs to its outputs.
fn longest_chain(p: &Prep, client: usize, slot_dev: &[usize], user_out: &HashSet<ValueId>) -> u32 {
    let g = p.g;
    let mut hops = vec![0u32; g.values.len()];
    let avail = |v: ValueId, d: usize, hops: &[u32]| -> u32 {
        if p.resident_on(v, d, slot_dev) {
            0
        } else if p.home(v, client, slot_dev) == d {
            hops[v.index()]
        } else {
            hops[v.index()] + 1
        }
    };
    for n in &p.order {
        let d = p.dev[n.index()];
        let node = g.node(*n);
        let h = node.inputs().iter().map(|v| avail(*v, d, &hops)).max().unwrap_or(0);
        for o in &node.outputs {
            hops[o.index()] = h;
        }
    }
    user_out.iter().map(|v| avail(*v, client, &hops)).max().unwrap_or(0)
}
