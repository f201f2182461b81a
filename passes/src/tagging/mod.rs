//! Pattern tagging with egg.
//!
//! Each entry graph becomes an e-graph ([`egraph`]); canonicalising rewrites ([`rules::canon`])
//! let patterns look through layout ops and spell each operation one way; then every rule table
//! ([`rules::tables`]) is searched. A match becomes a [`Region`]: the nodes between the values
//! bound to the pattern's variables (its entries) and the matched value (its exit).
//!
//! Runner limits are explicit (DESIGN.md: egg's default node limit silently stops on real graphs
//! and its default scheduler bans rules that match often); the stop reason is logged.

pub mod egraph;
pub mod rules;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use egg::{Id, Runner, Searcher, SimpleScheduler, Subst, Var};
use genie_ir::{Graph, Node, NodeId, Program, Region, RegionId, Tag, ValueId};

use crate::manager::{for_each_entry, Pass, PassError};
use egraph::{Facts, SrgEGraph};

/// Regions larger than this are not a pattern match but a runaway walk; they are dropped.
const MAX_REGION_NODES: usize = 512;
/// How far back a skip connection is looked for.
const MAX_SKIP_SEARCH: usize = 4096;

/// The tagging pass.
pub struct TagPatterns;

/// What a rule's check sees of a match.
pub struct MatchCtx<'a> {
    pub graph: &'a Graph,
    pub srg: &'a SrgEGraph,
    by_class: &'a HashMap<Id, Vec<ValueId>>,
    subst: &'a Subst,
    root: Id,
    root_value: Option<ValueId>,
    outputs: &'a HashSet<ValueId>,
    embedding_tables: &'a [ValueId],
}

impl MatchCtx<'_> {
    fn var(name: &str) -> Option<Var> {
        name.parse().ok()
    }

    /// The canonical class bound to a pattern variable (the root class if unbound).
    pub fn class(&self, var: &str) -> Id {
        Self::var(var).and_then(|v| self.subst.get(v).copied()).map(|c| self.srg.egraph.find(c)).unwrap_or(self.root)
    }

    /// The canonical class bound to a pattern variable, if the pattern has it.
    pub fn bound_class(&self, var: &str) -> Option<Id> {
        Self::var(var).and_then(|v| self.subst.get(v).copied()).map(|c| self.srg.egraph.find(c))
    }

    /// Facts of the class bound to a variable.
    pub fn facts(&self, var: &str) -> &Facts {
        &self.srg.egraph[self.class(var)].data
    }

    /// Facts of a class.
    pub fn class_facts(&self, class: Id) -> &Facts {
        &self.srg.egraph[class].data
    }

    /// A representative value of the class bound to a variable: the earliest one.
    pub fn var_value(&self, var: &str) -> Option<ValueId> {
        self.by_class.get(&self.class(var)).and_then(|vs| vs.first().copied())
    }

    /// The values of a class.
    pub fn values_of(&self, class: Id) -> &[ValueId] {
        self.by_class.get(&self.srg.egraph.find(class)).map_or(&[], Vec::as_slice)
    }

    /// The matched value.
    pub fn root_value(&self) -> Option<ValueId> {
        self.root_value
    }

    /// The node producing the matched value.
    pub fn root_node(&self) -> Option<&Node> {
        self.root_value.and_then(|v| self.graph.producer(v)).map(|n| self.graph.node(n))
    }

    /// True when the matched class holds a graph output.
    pub fn root_class_has_output(&self) -> bool {
        self.by_class.get(&self.root).is_some_and(|vs| vs.iter().any(|v| self.outputs.contains(v)))
    }

    /// Weight tables read by embedding lookups in this graph.
    pub fn embedding_tables(&self) -> &[ValueId] {
        self.embedding_tables
    }

    /// True when `skip + branch` is a residual connection: both have the sum's shape (a mask
    /// added with broadcasting is not one), and `skip`, or a value a few steps before it (a
    /// downsampling shortcut), feeds `branch` through a dense layer, convolution or attention.
    pub fn is_skip_connection(&self, skip: ValueId, branch: ValueId) -> bool {
        let (ts, tb) = (&self.graph.value(skip).ty, &self.graph.value(branch).ty);
        if ts.shape != tb.shape {
            return false;
        }
        // The shortcut's recent history: skip itself and the computed values just before it.
        let mut shortcut: HashSet<ValueId> = HashSet::from([skip]);
        let mut frontier = vec![skip];
        for _ in 0..4 {
            let mut next = Vec::new();
            for v in frontier {
                if let Some(p) = self.graph.producer(v) {
                    for i in self.graph.node(p).inputs() {
                        if self.graph.producer(i).is_some() && shortcut.insert(i) {
                            next.push(i);
                        }
                    }
                }
            }
            frontier = next;
        }
        let Some(start) = self.graph.producer(branch) else { return false };
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([start]);
        let mut compute = false;
        while let Some(n) = queue.pop_front() {
            if seen.len() >= MAX_SKIP_SEARCH {
                return false;
            }
            if !seen.insert(n) {
                continue;
            }
            let node = self.graph.node(n);
            compute |= is_compute_heavy(&node.op);
            for v in node.inputs() {
                if shortcut.contains(&v) {
                    if compute || self.branch_has_compute(&seen) {
                        return true;
                    }
                    continue;
                }
                if let Some(p) = self.graph.producer(v) {
                    queue.push_back(p);
                }
            }
        }
        false
    }

    fn branch_has_compute(&self, nodes: &HashSet<NodeId>) -> bool {
        nodes.iter().any(|n| is_compute_heavy(&self.graph.node(*n).op))
    }
}

/// Matrix products, convolutions and attention: where a block's FLOPs are.
fn is_compute_heavy(op: &str) -> bool {
    genie_ir::registry::facts(op).contraction.is_some()
}

/// A found region before deduplication.
struct Candidate {
    tag: Tag,
    nodes: BTreeSet<NodeId>,
    entries: Vec<ValueId>,
    exit: ValueId,
}

/// The value a match stands for: produced by a node of the pattern's root op if possible,
/// otherwise by any node that is not a layout op; the latest such.
fn pick_root_value(g: &Graph, values: &[ValueId], root_op: &str) -> Option<ValueId> {
    let produced: Vec<(NodeId, ValueId)> = values.iter().filter_map(|v| g.producer(*v).map(|n| (n, *v))).collect();
    let by = |f: &dyn Fn(&str) -> bool| produced.iter().filter(|(n, _)| f(&g.node(*n).op)).max().map(|(_, v)| *v);
    by(&|op| op == root_op).or_else(|| by(&|op| !rules::canon::is_look_through(op))).or_else(|| by(&|_| true))
}

/// The nodes between the match's variable classes and its root value.
fn region_of(
    g: &Graph,
    srg: &SrgEGraph,
    stops: &HashSet<Id>,
    exit: ValueId,
) -> Option<(BTreeSet<NodeId>, Vec<ValueId>)> {
    let start = g.producer(exit)?;
    let mut nodes = BTreeSet::new();
    let mut entries = Vec::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        if !nodes.insert(n) {
            continue;
        }
        if nodes.len() > MAX_REGION_NODES {
            return None;
        }
        for v in g.node(n).inputs() {
            match g.producer(v) {
                Some(p) if !stops.contains(&srg.class(v)) => queue.push_back(p),
                _ => {
                    if !entries.contains(&v) {
                        entries.push(v);
                    }
                }
            }
        }
    }
    entries.sort();
    Some((nodes, entries))
}

/// Tag one graph; returns per-tag counts and the runner's stop reason.
fn tag_graph(g: &mut Graph) -> Result<(Vec<Region>, String), String> {
    let srg = SrgEGraph::build(g);
    let node_limit = 4 * (g.values.len() + g.nodes.len()) + 10_000;
    let runner = Runner::default()
        .with_egraph(srg.egraph)
        .with_node_limit(node_limit)
        .with_iter_limit(16)
        .with_time_limit(Duration::from_secs(10))
        .with_scheduler(SimpleScheduler)
        .run(&rules::canon::rules());
    let stop = format!("{:?}", runner.stop_reason);
    if !matches!(runner.stop_reason, Some(egg::StopReason::Saturated)) {
        tracing::warn!(graph = %g.name, "canonicalisation stopped before saturating: {stop}");
    }
    let srg = SrgEGraph { egraph: runner.egraph, class_of: srg.class_of };
    let by_class = srg.values_by_class();
    let outputs: HashSet<ValueId> = g.outputs.iter().map(|o| o.value).collect();
    let embedding_tables: Vec<ValueId> = g
        .nodes
        .iter()
        .filter_map(|n| {
            let (table, _) = genie_ir::registry::facts(&n.op).lookup?;
            match n.args.get(table) {
                Some(genie_ir::Arg::Tensor(w)) if matches!(g.value(*w).def, genie_ir::ValueDef::Weight(_)) => Some(*w),
                _ => None,
            }
        })
        .collect();

    let mut candidates = Vec::new();
    for table in rules::tables() {
        let mut matched = 0usize;
        for rule in &table.rules {
            let pattern: egg::Pattern<egg::SymbolLang> =
                rule.pattern.parse().map_err(|e| format!("rule `{}` of table `{}`: {e}", rule.name, table.domain))?;
            let root_op = match pattern.ast.as_ref().last() {
                Some(egg::ENodeOrVar::ENode(n)) => n.op.as_str().split('#').next().unwrap_or("").to_string(),
                _ => String::new(),
            };
            let vars = pattern.vars();
            for m in pattern.search(&srg.egraph) {
                let root = srg.egraph.find(m.eclass);
                let Some(values) = by_class.get(&root) else { continue };
                let root_value = pick_root_value(g, values, &root_op);
                for subst in &m.substs {
                    let ctx = MatchCtx {
                        graph: g,
                        srg: &srg,
                        by_class: &by_class,
                        subst,
                        root,
                        root_value,
                        outputs: &outputs,
                        embedding_tables: &embedding_tables,
                    };
                    if !(rule.check)(&ctx) {
                        continue;
                    }
                    let Some(exit) = root_value else { continue };
                    let stops: HashSet<Id> = match rule.stops {
                        Some(stops) => stops(&ctx).into_iter().map(|c| srg.egraph.find(c)).collect(),
                        None => vars.iter().filter_map(|v| subst.get(*v)).map(|c| srg.egraph.find(*c)).collect(),
                    };
                    if stops.contains(&root) {
                        continue;
                    }
                    if let Some((nodes, entries)) = region_of(g, &srg, &stops, exit) {
                        matched += 1;
                        candidates.push(Candidate { tag: table.tag, nodes, entries, exit });
                    }
                }
            }
        }
        tracing::debug!(graph = %g.name, table = table.domain, matches = matched, "searched rule table");
    }
    Ok((dedupe(candidates), stop))
}

/// A tag that a more specific one subsumes: a patch embedding's convolution is not also a
/// convolution stage.
fn subsumed_by(tag: Tag, other: Tag) -> bool {
    tag == other || (tag == Tag::ConvStage && other == Tag::PatchEmbed)
}

/// Keep, per tag, the largest region for each exit and drop regions contained in a kept one.
fn dedupe(mut candidates: Vec<Candidate>) -> Vec<Region> {
    candidates.sort_by(|a, b| b.nodes.len().cmp(&a.nodes.len()).then(a.exit.cmp(&b.exit)).then(a.tag.cmp(&b.tag)));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        let redundant = kept.iter().any(|k| {
            (k.tag == c.tag && k.exit == c.exit) || (subsumed_by(c.tag, k.tag) && c.nodes.is_subset(&k.nodes))
        });
        if !redundant {
            kept.push(c);
        }
    }
    kept.sort_by_key(|c| (c.nodes.iter().next_back().copied(), c.tag));
    kept.into_iter()
        .map(|c| Region { tag: c.tag, nodes: c.nodes.into_iter().collect(), entries: c.entries, exits: vec![c.exit] })
        .collect()
}

impl Pass for TagPatterns {
    fn name(&self) -> &'static str {
        "tag-patterns"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        for_each_entry(program, |g| {
            let (regions, stop) = tag_graph(g).map_err(|reason| PassError::Failed { pass: "tag-patterns", reason })?;
            tracing::debug!(graph = %g.name, stop_reason = %stop, regions = regions.len(), "tagged");
            for n in &mut g.nodes {
                n.ann.regions.clear();
            }
            for (ri, r) in regions.iter().enumerate() {
                for n in &r.nodes {
                    g.nodes[n.index()].ann.regions.push(RegionId(ri as u32));
                }
            }
            g.regions = regions;
            Ok(())
        })?;
        let mut counts: std::collections::BTreeMap<Tag, usize> = Default::default();
        for r in program.entries.iter().flat_map(|g| &g.regions) {
            *counts.entry(r.tag).or_default() += 1;
        }
        let list: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
        Ok(format!("tags: {}", list.join(" ")))
    }
}

/// Tag counts of a graph (what `--summary` reports and tests assert).
pub fn tag_counts(g: &Graph) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for r in &g.regions {
        *counts.entry(r.tag.name().to_string()).or_insert(0) += 1;
    }
    counts
}
