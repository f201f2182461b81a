//! Graph rewriting primitives used by passes: redirect uses, drop nodes, compact ids.

use std::collections::{BTreeSet, HashMap};

use crate::annot::{EdgeRef, RegionId};
use crate::graph::{Graph, NodeId, ValueDef, ValueId};

impl Graph {
    /// Make every use of `old` (node arguments, graph outputs, region boundaries, critical
    /// edges) read `new` instead.
    pub fn replace_all_uses(&mut self, old: ValueId, new: ValueId) {
        if old == new {
            return;
        }
        self.map_uses(|v| if v == old { new } else { v });
    }

    /// [`Graph::replace_all_uses`] for many values in one walk over the graph: a pass that
    /// redirects one value per rewritten node would otherwise walk the graph once per node.
    /// Each use is replaced once, so callers resolve chains (`a → b`, `b → c`) themselves.
    pub fn replace_uses(&mut self, map: &HashMap<ValueId, ValueId>) {
        if map.is_empty() {
            return;
        }
        self.map_uses(|v| map.get(&v).copied().unwrap_or(v));
    }

    /// Apply `f` to every use of a value.
    fn map_uses(&mut self, f: impl Fn(ValueId) -> ValueId) {
        for node in &mut self.nodes {
            for a in &mut node.args {
                a.map_values(&f);
            }
        }
        for out in &mut self.outputs {
            out.value = f(out.value);
        }
        for r in &mut self.regions {
            for v in r.entries.iter_mut().chain(r.exits.iter_mut()) {
                *v = f(*v);
            }
        }
        // A set: rebuilt (in its order) only when one of its values changes.
        if self.critical_edges.iter().any(|e| f(e.value) != e.value) {
            self.critical_edges = std::mem::take(&mut self.critical_edges)
                .into_iter()
                .map(|e| EdgeRef { value: f(e.value), consumer: e.consumer })
                .collect();
        }
    }

    /// Remove the given nodes and every value nothing refers to any more (their outputs, unused
    /// weights and constants), then renumber nodes and values densely, keeping relative order.
    /// Graph inputs are always kept. Callers must have redirected uses of removed outputs.
    pub fn remove_nodes(&mut self, dead: &BTreeSet<NodeId>) {
        // Values still referenced after removal.
        let mut live_values = vec![false; self.values.len()];
        for &v in &self.inputs {
            live_values[v.index()] = true;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if dead.contains(&NodeId(i as u32)) {
                continue;
            }
            for v in node.inputs().into_iter().chain(node.outputs.iter().copied()) {
                if let Some(l) = live_values.get_mut(v.index()) {
                    *l = true;
                }
            }
        }
        for out in &self.outputs {
            if let Some(l) = live_values.get_mut(out.value.index()) {
                *l = true;
            }
        }
        for r in &self.regions {
            for v in r.entries.iter().chain(&r.exits) {
                if let Some(l) = live_values.get_mut(v.index()) {
                    *l = true;
                }
            }
        }

        // New ids.
        let mut node_map: Vec<Option<NodeId>> = vec![None; self.nodes.len()];
        let mut next = 0u32;
        for (i, slot) in node_map.iter_mut().enumerate() {
            if !dead.contains(&NodeId(i as u32)) {
                *slot = Some(NodeId(next));
                next += 1;
            }
        }
        let mut value_map: Vec<Option<ValueId>> = vec![None; self.values.len()];
        let mut next = 0u32;
        for (i, slot) in value_map.iter_mut().enumerate() {
            if live_values[i] {
                *slot = Some(ValueId(next));
                next += 1;
            }
        }
        let vmap = |v: ValueId| value_map.get(v.index()).copied().flatten().unwrap_or(v);
        let nmap = |n: NodeId| node_map.get(n.index()).copied().flatten();

        // Rewrite.
        let old_values = std::mem::take(&mut self.values);
        self.values = old_values
            .into_iter()
            .enumerate()
            .filter(|(i, _)| live_values[*i])
            .map(|(_, mut v)| {
                if let ValueDef::Node { node, index } = v.def {
                    v.def = ValueDef::Node { node: nmap(node).unwrap_or(node), index };
                }
                v
            })
            .collect();
        let old_nodes = std::mem::take(&mut self.nodes);
        self.nodes = old_nodes
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !dead.contains(&NodeId(*i as u32)))
            .map(|(_, mut n)| {
                for a in &mut n.args {
                    a.map_values(vmap);
                }
                for o in &mut n.outputs {
                    *o = vmap(*o);
                }
                n
            })
            .collect();
        for v in &mut self.inputs {
            *v = vmap(*v);
        }
        for o in &mut self.outputs {
            o.value = vmap(o.value);
        }
        // Regions lose removed nodes; a region left empty disappears and ids are renumbered.
        let old_regions = std::mem::take(&mut self.regions);
        let mut region_map: Vec<Option<RegionId>> = Vec::with_capacity(old_regions.len());
        for mut r in old_regions {
            r.nodes = r.nodes.iter().filter_map(|n| nmap(*n)).collect();
            if r.nodes.is_empty() {
                region_map.push(None);
                continue;
            }
            r.entries = r.entries.iter().map(|v| vmap(*v)).collect();
            r.exits = r.exits.iter().map(|v| vmap(*v)).collect();
            region_map.push(Some(RegionId(self.regions.len() as u32)));
            self.regions.push(r);
        }
        for n in &mut self.nodes {
            n.ann.regions =
                n.ann.regions.iter().filter_map(|r| region_map.get(r.0 as usize).copied().flatten()).collect();
        }
        self.critical_edges = std::mem::take(&mut self.critical_edges)
            .into_iter()
            .filter_map(|e| Some(EdgeRef { value: vmap(e.value), consumer: nmap(e.consumer)? }))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Arg;
    use crate::types::{DType, TensorType};

    #[test]
    fn removing_a_pass_through_node_keeps_the_graph_valid() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", TensorType::new(DType::Float32, &[2, 3]));
        let (n_alias, a) = g.add_node("aten.alias.default", vec![Arg::Tensor(x)]).unwrap();
        let r = g.add_op("aten.relu.default", vec![Arg::Tensor(a[0])]).unwrap();
        let unused = g.add_const("unused", TensorType::new(DType::Float32, &[1]), vec![0; 4]);
        let _ = unused;
        g.add_output("y", r);
        g.replace_all_uses(a[0], x);
        g.remove_nodes(&[n_alias].into_iter().collect());
        assert_eq!(g.nodes.len(), 1);
        assert_eq!(g.nodes[0].op, "aten.relu.default");
        assert_eq!(g.values.len(), 2, "alias output and the unused constant are gone");
        crate::verify_graph(&g).unwrap();
    }
}
