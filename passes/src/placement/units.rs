//! Units and atoms: the granularity placement decides at.
//!
//! A **unit** is a "layer": the nodes sharing a key derived from `module_path` (cut after the
//! first numeric component, so `transformer.h.3.attn` → `transformer.h.3`), else from the name of
//! a dotted weight only that node reads (`h.3.mlp.c_fc.weight` → `h.3`). In the topological
//! order, nodes with neither (views, residual adds, norms with shared weights, matmuls with
//! generated weight names) take the key of the keyed nodes around them; between two different
//! keys the run is split where the fewest bytes are live, so a layer boundary falls on the
//! narrowest point (the residual stream). A graph with no keys at all is cut into chunks of
//! topological positions. Keys are shared by every entry, so prefill's and decode's layer 3 are
//! one unit and get one device.
//!
//! An **atom** is a set of units that must share a device: a KV-cache value's producer and
//! consumers, and both ends of each state binding, are united. Atoms are ordered by their first
//! unit in a global unit order merged from every entry's order.

use std::collections::{BTreeMap, HashMap};

use genie_ir::union_find::UnionFind;
use genie_ir::{Graph, Program, Region, Residency, Tag, ValueDef, ValueId};

/// Nodes that find no key are grouped by topological position in chunks of this size.
const CHUNK: usize = 64;

/// The unit key of a module path: up to and including the first all-digit component.
pub fn layer_key(path: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.iter().position(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())) {
        Some(i) => parts[..=i].join("."),
        None => path.to_string(),
    }
}

/// The module a parameter belongs to: its name without the last component.
fn weight_module(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((m, _)) if !m.is_empty() => m,
        _ => name,
    }
}

/// Units and atoms of a program.
#[derive(Debug, Clone)]
pub struct Units {
    /// Unit keys in global order.
    pub keys: Vec<String>,
    /// `node_unit[entry][node]`: the node's unit.
    pub node_unit: Vec<Vec<usize>>,
    /// The atom of each unit.
    pub unit_atom: Vec<usize>,
    /// Units of each atom, atoms in order.
    pub atoms: Vec<Vec<usize>>,
    /// `node_atom[entry][node]`.
    pub node_atom: Vec<Vec<usize>>,
    /// Topological order of each entry.
    pub orders: Vec<Vec<genie_ir::NodeId>>,
}

impl Units {
    /// A readable name for an atom: its first unit's key (with `+N` for more).
    pub fn atom_name(&self, a: usize) -> String {
        let units = &self.atoms[a];
        let first = units.first().map_or("?", |u| self.keys[*u].as_str());
        if units.len() > 1 {
            format!("{first}+{}", units.len() - 1)
        } else {
            first.to_string()
        }
    }
}

/// Keys from names: the module path, else the name of a weight only this node reads, when the
/// name is a dotted parameter path (not a generated `val_9` or `onnx::MatMul_3`). A weight value
/// several nodes read (an exporter that merged identical initialisers, a tied weight) says
/// nothing about which layer a node is in.
fn name_keys(g: &Graph, users: &[Vec<genie_ir::NodeId>]) -> Vec<Option<String>> {
    g.nodes
        .iter()
        .map(|node| {
            if let Some(p) = node.ann.module_path.as_deref().filter(|p| !p.is_empty()) {
                return Some(layer_key(p));
            }
            node.inputs().into_iter().find_map(|v| {
                let val = g.value(v);
                let named = val.name.contains('.') && !val.name.contains("::");
                (matches!(val.def, ValueDef::Weight(_)) && named && users[v.index()].len() == 1)
                    .then(|| layer_key(weight_module(&val.name)))
            })
        })
        .collect()
}

/// Keys from tagged regions: the k-th block region (attention, else conv stage) and the MLP
/// after it are `block.k`; embeddings and the LM head are units of their own.
fn region_keys(g: &Graph, blocks: &[&Region], pos_of: &dyn Fn(&[genie_ir::NodeId]) -> usize) -> Vec<Option<String>> {
    let mut key: Vec<Option<String>> = vec![None; g.nodes.len()];
    let starts: Vec<usize> = blocks.iter().map(|r| pos_of(&r.nodes)).collect();
    let block = |p: usize| starts.iter().rposition(|s| *s <= p).unwrap_or(0);
    for r in &g.regions {
        let k = match r.tag {
            Tag::Attention | Tag::ConvStage | Tag::Mlp | Tag::MoeRouter | Tag::MoeExpert => {
                format!("block.{}", block(pos_of(&r.nodes)))
            }
            Tag::Embedding | Tag::PatchEmbed => "embedding".to_string(),
            Tag::LmHead => "lm_head".to_string(),
            _ => continue,
        };
        for n in &r.nodes {
            key[n.index()].get_or_insert_with(|| k.clone());
        }
    }
    key
}

/// Give keyless nodes a key from the keyed nodes around them in the topological order: before
/// the first keyed node they join it, after the last one they join it, and between nodes of two
/// different keys the run splits where the fewest bytes are live (`cross[p]`: bytes live across
/// the boundary before position `p`).
fn fill_runs(
    mut key: Vec<Option<String>>,
    g: &Graph,
    users: &[Vec<genie_ir::NodeId>],
    pos: &[usize],
    order: &[genie_ir::NodeId],
    cross: &[i128],
) -> Vec<Option<String>> {
    let keyed: Vec<usize> = (0..order.len()).filter(|&p| key[order[p].index()].is_some()).collect();
    let (Some(&first), Some(&last)) = (keyed.first(), keyed.last()) else { return key };
    let k0 = key[order[first].index()].clone();
    let k1 = key[order[last].index()].clone();
    // Leading nodes (a position `arange`, a mask) go with their earliest keyed consumer.
    for id in order[..first].iter().rev() {
        let consumer = g
            .node(*id)
            .outputs
            .iter()
            .flat_map(|o| users[o.index()].iter())
            .filter(|c| key[c.index()].is_some())
            .min_by_key(|c| pos[c.index()]);
        key[id.index()] = consumer.map_or_else(|| k0.clone(), |c| key[c.index()].clone());
    }
    // Trailing nodes go with their latest keyed producer.
    for id in &order[last + 1..] {
        let producer = g
            .node(*id)
            .inputs()
            .into_iter()
            .filter_map(|v| g.producer(v))
            .filter(|p| key[p.index()].is_some())
            .max_by_key(|p| pos[p.index()]);
        key[id.index()] = producer.map_or_else(|| k1.clone(), |p| key[p.index()].clone());
    }
    for w in keyed.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b == a + 1 {
            continue;
        }
        let ka = key[order[a].index()].clone();
        let kb = key[order[b].index()].clone();
        let split = if ka == kb { b } else { (a + 1..=b).min_by_key(|&p| (cross[p], p)).unwrap_or(b) };
        for (p, id) in order.iter().enumerate().take(b).skip(a + 1) {
            key[id.index()] = if p < split { ka.clone() } else { kb.clone() };
        }
    }
    key
}

/// The key of every node of one graph, in node-id order.
fn graph_keys(g: &Graph, order: &[genie_ir::NodeId]) -> Vec<String> {
    let n = g.nodes.len();
    let mut pos = vec![0usize; n];
    for (p, id) in order.iter().enumerate() {
        pos[id.index()] = p;
    }
    let users = g.users();
    // Bytes live across each boundary of the order, counting values nodes produce.
    let bound = g.bind_symbols(&BTreeMap::new());
    let mut diff = vec![0i128; n + 2];
    for (vi, val) in g.values.iter().enumerate() {
        let ValueDef::Node { node, .. } = val.def else { continue };
        let Some(last) = users[vi].iter().map(|u| pos[u.index()]).max() else { continue };
        let bytes = val.ty.bytes().eval(&bound).unwrap_or(0).max(0) as i128;
        let first = pos[node.index()] + 1;
        if last >= first {
            diff[first] += bytes;
            diff[last + 1] -= bytes;
        }
    }
    let mut cross = vec![0i128; n + 1];
    let mut run = 0i128;
    for (p, c) in cross.iter_mut().enumerate() {
        run += diff[p];
        *c = run;
    }
    let mut key = fill_runs(name_keys(g, &users), g, &users, &pos, order, &cross);
    // When the names do not tell the blocks apart (an exporter renamed or merged the weights),
    // the tagged regions do: two attention regions (one per layer) under one key, or a CNN
    // whose names give a single key.
    let pos_of = |nodes: &[genie_ir::NodeId]| nodes.iter().map(|x| pos[x.index()]).min().unwrap_or(usize::MAX);
    let mut blocks: Vec<&Region> = g.regions.iter().filter(|r| r.tag == Tag::Attention).collect();
    blocks.sort_by_key(|r| pos_of(&r.nodes));
    let anchors: std::collections::BTreeSet<&Option<String>> =
        blocks.iter().filter_map(|r| r.nodes.first()).map(|n| &key[n.index()]).collect();
    let mut fallback = blocks.len() >= 2 && anchors.len() < blocks.len();
    if blocks.is_empty() {
        blocks = g.regions.iter().filter(|r| r.tag == Tag::ConvStage).collect();
        blocks.sort_by_key(|r| pos_of(&r.nodes));
        let distinct: std::collections::BTreeSet<&Option<String>> = key.iter().collect();
        fallback = blocks.len() >= 2 && distinct.len() < 2;
    }
    if fallback {
        key = fill_runs(region_keys(g, &blocks, &pos_of), g, &users, &pos, order, &cross);
    }
    (0..n).map(|i| key[i].take().unwrap_or_else(|| format!("{}#{}", g.name, pos[i] / CHUNK))).collect()
}

/// Merge per-entry unit sequences into one order: each unit not yet placed goes right after the
/// previous unit of its own sequence.
fn merge_orders(seqs: &[Vec<String>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for seq in seqs {
        let mut after: Option<usize> = None;
        for k in seq {
            match out.iter().position(|x| x == k) {
                Some(p) => after = Some(p),
                None => {
                    let at = after.map_or(out.len(), |p| p + 1);
                    // Units of a new entry placed before anything known go first only when the
                    // sequence starts with them; otherwise after the previous one.
                    let at = if after.is_none() && !out.is_empty() { 0 } else { at };
                    out.insert(at, k.clone());
                    after = Some(at);
                }
            }
        }
    }
    out
}

/// The units a value touches in one entry: its producer's and its consumers'.
fn value_units(g: &Graph, users: &[Vec<genie_ir::NodeId>], node_unit: &[usize], v: ValueId) -> Vec<usize> {
    let mut out: Vec<usize> = users[v.index()].iter().map(|n| node_unit[n.index()]).collect();
    if let Some(p) = g.producer(v) {
        out.push(node_unit[p.index()]);
    }
    out
}

/// Compute units and atoms. Fails only on a cyclic graph (the verifier rules that out).
pub fn compute(program: &Program) -> Result<Units, String> {
    let mut orders = Vec::new();
    let mut all_keys = Vec::new();
    let mut seqs = Vec::new();
    for g in &program.entries {
        let order = g.topo_order().map_err(|e| format!("entry `{}`: {e}", g.name))?;
        let keys = graph_keys(g, &order);
        let mut seq: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in &order {
            if seen.insert(keys[id.index()].clone()) {
                seq.push(keys[id.index()].clone());
            }
        }
        seqs.push(seq);
        all_keys.push(keys);
        orders.push(order);
    }
    let keys = merge_orders(&seqs);
    let index: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    let node_unit: Vec<Vec<usize>> = all_keys.iter().map(|ks| ks.iter().map(|k| index[k.as_str()]).collect()).collect();

    // Co-location of state.
    let mut uf = UnionFind::new(keys.len());
    let users: Vec<Vec<Vec<genie_ir::NodeId>>> = program.entries.iter().map(Graph::users).collect();
    for (e, g) in program.entries.iter().enumerate() {
        for (vi, val) in g.values.iter().enumerate() {
            if val.ann.residency == Some(Residency::StatefulKvCache) {
                let us = value_units(g, &users[e], &node_unit[e], ValueId(vi as u32));
                for w in us.windows(2) {
                    uf.union(w[0], w[1]);
                }
            }
        }
    }
    // Every port of each state slot (both ends of every binding).
    for slot in &program.state_slots().slots {
        let mut us = Vec::new();
        let ports = slot.writes.iter().map(|p| (p, true)).chain(slot.reads.iter().map(|p| (p, false)));
        for (port, output) in ports {
            let Some(e) = program.entries.iter().position(|g| g.name == port.entry) else { continue };
            let g = &program.entries[e];
            let v = if output {
                g.outputs.iter().find(|o| o.name == port.name).map(|o| o.value)
            } else {
                g.inputs.iter().copied().find(|v| g.value(*v).name == port.name)
            };
            if let Some(v) = v {
                us.extend(value_units(g, &users[e], &node_unit[e], v));
            }
        }
        for w in us.windows(2) {
            uf.union(w[0], w[1]);
        }
    }
    // Atoms in order of their first unit.
    let mut atom_of_root: BTreeMap<usize, usize> = BTreeMap::new();
    let mut atoms: Vec<Vec<usize>> = Vec::new();
    let mut unit_atom = vec![0; keys.len()];
    for (u, slot) in unit_atom.iter_mut().enumerate() {
        let r = uf.find(u);
        let a = *atom_of_root.entry(r).or_insert_with(|| {
            atoms.push(Vec::new());
            atoms.len() - 1
        });
        atoms[a].push(u);
        *slot = a;
    }
    let node_atom = node_unit.iter().map(|us| us.iter().map(|u| unit_atom[*u]).collect()).collect();
    Ok(Units { keys, node_unit, unit_atom, atoms, node_atom, orders })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_keys() {
        assert_eq!(layer_key("transformer.h.3.attn.c_attn"), "transformer.h.3");
        assert_eq!(layer_key("layers.0"), "layers.0");
        assert_eq!(layer_key("lm_head"), "lm_head");
        assert_eq!(layer_key("layer1.0.conv1"), "layer1.0");
        assert_eq!(weight_module("h.0.attn.c_attn.weight"), "h.0.attn.c_attn");
        assert_eq!(weight_module("bias"), "bias");
    }

    #[test]
    fn merged_order_keeps_each_sequence() {
        let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let m = merge_orders(&[s(&["a", "b", "d"]), s(&["a", "c", "d", "e"])]);
        assert_eq!(m, s(&["a", "c", "b", "d", "e"]));
    }
}
