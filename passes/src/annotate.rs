//! Semantic annotation: residency, phase and modality, from the tags and the graph signature.
//!
//! - Residency: weights and constants are `persistent_weight`; the KV state (a decode step's
//!   past inputs and present outputs, a prefill's K/V outputs) is `stateful_kv_cache`; the rest
//!   `ephemeral_activation`.
//! - Phase: `llm_decode` when the graph takes KV state it extends and returns; `llm_prefill` when
//!   it produces KV state without taking any; otherwise `vision` (image stages) or `encoder`.
//! - Modality: `text` from token inputs into an embedding, `vision` from images into a
//!   convolution, propagated forward.
//! - Input roles: what each per-call input carries (token ids, attention mask, positions), from
//!   dataflow alone (see [`input_roles`]), so drivers feed inputs whatever they are named.

use std::collections::{BTreeSet, HashSet};

use genie_ir::registry::{self, Contraction, Layout};
use genie_ir::{Arg, Graph, InputRole, Modality, NodeId, Phase, Program, Residency, Tag, ValueDef, ValueId};

use crate::manager::{for_each_entry, Pass, PassError};
use crate::tagging::rules::canon::is_look_through;

/// The annotation pass.
pub struct Annotate;

/// True when the node scales its first operand by a scalar (a constant or one-element tensor):
/// decompositions scale Q and K before their product.
fn scales_by_scalar(g: &Graph, node: &genie_ir::Node) -> bool {
    match node.op.as_str() {
        "aten.mul.Scalar" | "aten.div.Scalar" => true,
        "aten.mul.Tensor" | "aten.div.Tensor" => match node.args.get(1) {
            Some(Arg::Tensor(o)) => g.value(*o).ty.numel().as_const() == Some(1),
            _ => false,
        },
        _ => false,
    }
}

/// Values reachable from `v` through layout ops (views, transposes, dtype casts) and scalar
/// scaling: the same data, as attention will read it.
fn same_data_forward(g: &Graph, users: &[Vec<NodeId>], v: ValueId) -> Vec<ValueId> {
    let mut out = vec![v];
    let mut i = 0;
    while i < out.len() && out.len() < 64 {
        let cur = out[i];
        i += 1;
        for &n in &users[cur.index()] {
            let node = g.node(n);
            let facts = registry::facts(&node.op);
            let layout = facts.same_data()
                || matches!(facts.layout, Some(Layout::Reorder(_) | Layout::Select))
                || scales_by_scalar(g, node);
            if layout && node.args.first() == Some(&Arg::Tensor(cur)) {
                for &o in &node.outputs {
                    if !out.contains(&o) {
                        out.push(o);
                    }
                }
            }
        }
    }
    out
}

/// The graph input a value is, after layout-only ops, if any.
fn source_input(g: &Graph, v: ValueId) -> Option<ValueId> {
    let mut cur = v;
    for _ in 0..16 {
        match g.producer(cur) {
            None => return matches!(g.value(cur).def, ValueDef::Input(_)).then_some(cur),
            Some(n) => {
                let node = g.node(n);
                if !is_look_through(&node.op) {
                    return None;
                }
                match node.args.first() {
                    Some(Arg::Tensor(x)) => cur = *x,
                    _ => return None,
                }
            }
        }
    }
    None
}

/// True when `v` is the graph input `input` after layout-only ops.
pub fn same_source(g: &Graph, v: ValueId, input: ValueId) -> bool {
    source_input(g, v) == Some(input)
}

/// Nodes covered by regions with this tag.
fn nodes_tagged(g: &Graph, tag: Tag) -> HashSet<NodeId> {
    g.regions.iter().filter(|r| r.tag == tag).flat_map(|r| r.nodes.iter().copied()).collect()
}

/// KV state of a graph: (inputs it takes as past state, outputs it returns as state).
pub fn kv_state(g: &Graph) -> (Vec<ValueId>, Vec<usize>) {
    let users = g.users();
    let attention = nodes_tagged(g, Tag::Attention);
    let inputs: HashSet<ValueId> = g.inputs.iter().copied().collect();
    // Past state: graph inputs that are the cache operand of a kv_cache_update (the first
    // tensor of `cat`, `self` of `index_copy`/`slice_scatter`/`index_put`), seen through layout ops.
    let mut past: BTreeSet<ValueId> = BTreeSet::new();
    for r in g.regions.iter().filter(|r| r.tag == Tag::KvCacheUpdate) {
        let Some(exit) = r.exits.first() else { continue };
        let Some(node) = g.producer(*exit).map(|n| g.node(n)) else { continue };
        let cache = match node.args.first() {
            Some(Arg::Tensors(vs)) => vs.first().copied(),
            Some(Arg::Tensor(v)) => Some(*v),
            _ => None,
        };
        if let Some(src) = cache.and_then(|c| source_input(g, c)) {
            if inputs.contains(&src) && g.value(src).ty.rank() >= 3 {
                past.insert(src);
            }
        }
    }
    // Present state: outputs whose data feeds attention (K and V), or that a cache update made.
    let kv_exits: HashSet<ValueId> =
        g.regions.iter().filter(|r| r.tag == Tag::KvCacheUpdate).flat_map(|r| r.exits.iter().copied()).collect();
    let mut present = Vec::new();
    for (oi, out) in g.outputs.iter().enumerate() {
        let ty = &g.value(out.value).ty;
        if ty.rank() < 3 || !ty.dtype.is_floating() {
            continue;
        }
        let reach = same_data_forward(g, &users, out.value);
        let feeds_attention = reach.iter().any(|v| users[v.index()].iter().any(|n| attention.contains(n)));
        let from_update = kv_exits.contains(&out.value);
        if feeds_attention || from_update {
            present.push(oi);
        }
    }
    // Inputs are ordered as the model declares them.
    let past_ordered: Vec<ValueId> = g.inputs.iter().copied().filter(|v| past.contains(v)).collect();
    (past_ordered, present)
}

fn has_tag(g: &Graph, tags: &[Tag]) -> bool {
    g.regions.iter().any(|r| tags.contains(&r.tag))
}

/// What an input carries, by how it is consumed (through layout ops): token ids index a table,
/// an image (rank 4) and a waveform or spectrogram (rank 2 or 3) feed a convolution.
fn input_modality(g: &Graph, users: &[Vec<NodeId>], i: ValueId) -> Option<Modality> {
    let ty = &g.value(i).ty;
    let consumers: Vec<registry::OpFacts> = same_data_forward(g, users, i)
        .iter()
        .flat_map(|v| users[v.index()].iter().map(|n| registry::facts(&g.node(*n).op)))
        .collect();
    let convolved = consumers.iter().any(|f| f.contraction == Some(Contraction::Convolution));
    if ty.dtype.is_integral() && consumers.iter().any(|f| f.lookup.is_some()) {
        Some(Modality::Text)
    } else if ty.dtype.is_floating() && ty.rank() == 4 && convolved {
        Some(Modality::Vision)
    } else if ty.dtype.is_floating() && matches!(ty.rank(), 2 | 3) && convolved {
        Some(Modality::Audio)
    } else {
        None
    }
}

fn annotate_graph(g: &mut Graph) {
    let (past, present) = kv_state(g);
    let state_outputs: HashSet<ValueId> = present.iter().map(|&i| g.outputs[i].value).collect();

    // Phase. Convolutions make a vision model when they read images or when there is no
    // attention; an audio encoder's convolutional front end (Whisper, wav2vec 2.0) does not.
    let users = g.users();
    let input_kinds: Vec<(ValueId, Option<Modality>)> =
        g.inputs.iter().map(|&i| (i, input_modality(g, &users, i))).collect();
    let reads_images = input_kinds.iter().any(|(_, m)| *m == Some(Modality::Vision));
    let phase = if !past.is_empty() && !present.is_empty() {
        Phase::LlmDecode
    } else if past.is_empty() && !present.is_empty() && has_tag(g, &[Tag::Attention]) {
        Phase::LlmPrefill
    } else if has_tag(g, &[Tag::ConvStage, Tag::PatchEmbed, Tag::Pooling])
        && (reads_images || !has_tag(g, &[Tag::Attention]))
    {
        Phase::Vision
    } else if has_tag(g, &[Tag::Attention, Tag::Mlp, Tag::Embedding]) {
        Phase::Encoder
    } else {
        Phase::Unknown
    };
    g.phase = phase;
    for n in &mut g.nodes {
        n.ann.phase = Some(phase);
    }

    // Residency.
    let past_set: HashSet<ValueId> = past.iter().copied().collect();
    for (vi, v) in g.values.iter_mut().enumerate() {
        let id = ValueId(vi as u32);
        v.ann.residency = Some(match v.def {
            ValueDef::Weight(_) | ValueDef::Const(_) => Residency::PersistentWeight,
            _ if past_set.contains(&id) || state_outputs.contains(&id) => Residency::StatefulKvCache,
            _ => Residency::EphemeralActivation,
        });
    }

    // Modality: seed inputs by how they are consumed, then propagate forward.
    let mut modality: Vec<Option<Modality>> = vec![None; g.values.len()];
    for (i, m) in input_kinds {
        modality[i.index()] = m;
    }
    if let Ok(order) = g.topo_order() {
        for n in order {
            let node = g.node(n);
            let found: BTreeSet<Modality> = node.inputs().iter().filter_map(|v| modality[v.index()]).collect();
            let m = match found.len() {
                0 => None,
                1 => found.into_iter().next(),
                _ => Some(Modality::Unknown),
            };
            for &o in &node.outputs {
                modality[o.index()] = m;
            }
        }
    }
    for (vi, v) in g.values.iter_mut().enumerate() {
        v.ann.modality = modality[vi];
    }

    // Roles of the per-call inputs.
    let roles = input_roles(g, &users, &past_set, &state_outputs);
    for v in &mut g.values {
        v.ann.role = None;
    }
    for (v, role) in roles {
        g.values[v.index()].ann.role = Some(role);
    }
}

/// The most nodes one walk from an input visits: roles show within a few ops of the input.
const ROLE_WALK_LIMIT: usize = 256;

/// Walk forward from `from`: every node that consumes a reached value is visited (with the value
/// it consumes), and its outputs are reached when `through` allows. Returns the visits in
/// breadth-first order.
fn walk_forward(
    g: &Graph,
    users: &[Vec<NodeId>],
    from: ValueId,
    through: &dyn Fn(&genie_ir::Node, ValueId) -> bool,
) -> Vec<(NodeId, ValueId)> {
    let mut visits = Vec::new();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut queue = std::collections::VecDeque::from([from]);
    while let Some(v) = queue.pop_front() {
        for &n in &users[v.index()] {
            if visits.len() >= ROLE_WALK_LIMIT || !seen.insert(n) {
                continue;
            }
            visits.push((n, v));
            let node = g.node(n);
            if through(node, v) {
                queue.extend(node.outputs.iter().copied());
            }
        }
    }
    visits
}

/// True when `v` is the argument a lookup op reads its indices from.
fn is_lookup_index(node: &genie_ir::Node, v: ValueId) -> bool {
    registry::facts(&node.op).lookup.is_some_and(|(_, index)| node.args.get(index) == Some(&Arg::Tensor(v)))
}

/// The positions of new tokens: `position_ids` shaped `[batch, new]`, `cache_position` `[new]`.
fn positions_role(ty: &genie_ir::TensorType) -> InputRole {
    if ty.rank() >= 2 {
        InputRole::PositionIds
    } else {
        InputRole::CachePosition
    }
}

/// What each per-call input carries, decided by how the graph uses it, never by its name:
/// - an integer input that indexes a weight table (an embedding lookup, through layout ops and
///   element-wise arithmetic): the token ids if the table is the vocabulary (as many rows as the logits have
///   columns, else the largest table); in an LLM entry, another such input is the positions;
/// - an input whose values reach a sine or cosine (a rotary embedding): the positions;
/// - an input that reaches attention (a tagged attention region, fused attention or a softmax)
///   through no contraction: the attention mask, or, one row wide, the positions
///   (`cache_position`, which masks are built from), if it meets the scores; in an LLM, an
///   integer input that meets only the products' operands (queries and keys) is the positions.
fn input_roles(
    g: &Graph,
    users: &[Vec<NodeId>],
    state_inputs: &HashSet<ValueId>,
    state_outputs: &HashSet<ValueId>,
) -> Vec<(ValueId, InputRole)> {
    let per_call: Vec<ValueId> = g.inputs.iter().copied().filter(|v| !state_inputs.contains(v)).collect();
    let llm = matches!(g.phase, Phase::LlmPrefill | Phase::LlmDecode);
    let mut roles: Vec<(ValueId, InputRole)> = Vec::new();

    // Lookups: (input, rows of the table it indexes).
    let mut lookups: Vec<(ValueId, i64)> = Vec::new();
    for &v in &per_call {
        if !g.value(v).ty.dtype.is_integral() {
            continue;
        }
        // Through layout ops and element-wise arithmetic: OPT looks its positions up at
        // `position_ids + 2`.
        let visits = walk_forward(g, users, v, &|node, _| {
            let facts = registry::facts(&node.op);
            facts.same_data() || facts.elementwise
        });
        let rows = visits.iter().find_map(|&(n, arriving)| {
            let node = g.node(n);
            let (table, _) = registry::facts(&node.op).lookup?;
            if !is_lookup_index(node, arriving) {
                return None;
            }
            let Some(Arg::Tensor(t)) = node.args.get(table) else { return None };
            matches!(g.value(*t).def, ValueDef::Weight(_)).then(|| g.value(*t).ty.shape.first()?.as_const())?
        });
        if let Some(rows) = rows {
            lookups.push((v, rows));
        }
    }
    // The vocabulary: the last dim of the first user output that is not state (the logits).
    let vocab = g
        .outputs
        .iter()
        .find(|o| !state_outputs.contains(&o.value) && g.value(o.value).ty.dtype.is_floating())
        .and_then(|o| g.value(o.value).ty.shape.last()?.as_const());
    let tokens = lookups
        .iter()
        .find(|(_, rows)| Some(*rows) == vocab)
        .or_else(|| lookups.iter().max_by_key(|(v, rows)| (*rows, std::cmp::Reverse(v.0))))
        .map(|(v, _)| *v);
    let attention = nodes_tagged(g, Tag::Attention);
    let is_softmax = |op: &str| matches!(op, "aten._softmax.default" | "aten.softmax.int");
    // How an input meets attention, through comparisons, casts, gathers and arithmetic only:
    // (the scores, the products' operands). A mask meets the scores element-wise (or is fused
    // attention's mask operand); an input that reaches only the operands shapes the queries
    // and keys: in an LLM, the positions of a rotary embedding read from a precomputed table
    // (GPT-J).
    let meets_attention = |v: ValueId| {
        let to_attention = walk_forward(g, users, v, &|node, arriving| {
            let facts = registry::facts(&node.op);
            facts.contraction.is_none() && !is_lookup_index(node, arriving)
        });
        let (mut scores, mut operands) = (false, false);
        for &(n, arriving) in &to_attention {
            let node = g.node(n);
            match registry::facts(&node.op).contraction {
                Some(Contraction::Attention) => match node.args.get(3) {
                    Some(Arg::Tensor(mask)) if *mask == arriving => scores = true,
                    _ => operands = true,
                },
                Some(_) => operands |= attention.contains(&n),
                None => scores |= attention.contains(&n) || is_softmax(&node.op),
            }
        }
        (scores, operands)
    };
    for &(v, _) in &lookups {
        if Some(v) == tokens {
            roles.push((v, InputRole::TokenIds));
        } else if llm && !meets_attention(v).0 {
            // Not a mask that positions are also computed from (OPT's prefill).
            roles.push((v, positions_role(&g.value(v).ty)));
        }
    }

    for &v in &per_call {
        if roles.iter().any(|(r, _)| *r == v) {
            continue;
        }
        let ty = &g.value(v).ty;
        // Rotary embeddings: positions become angles through any ops, products included.
        let to_angles = walk_forward(g, users, v, &|node, arriving| !is_lookup_index(node, arriving));
        if ty.dtype.is_integral()
            && to_angles.iter().any(|(n, _)| matches!(g.node(*n).op.as_str(), "aten.sin.default" | "aten.cos.default"))
        {
            roles.push((v, positions_role(ty)));
            continue;
        }
        let (meets_scores, meets_operands) = meets_attention(v);
        if llm && ty.dtype.is_integral() && meets_operands && !meets_scores {
            roles.push((v, positions_role(ty)));
            continue;
        }
        if meets_scores {
            roles.push((v, if ty.rank() >= 2 { InputRole::AttentionMask } else { InputRole::CachePosition }));
        }
    }
    roles
}

impl Pass for Annotate {
    fn name(&self) -> &'static str {
        "annotate"
    }

    fn run(&self, program: &mut Program) -> Result<String, PassError> {
        let phases = for_each_entry(program, |g| {
            annotate_graph(g);
            Ok(format!("{}={}", g.name, g.phase))
        })?;
        Ok(format!("phases: {}", phases.join(" ")))
    }
}
