//! Fused element-wise regions: runs of element-wise ops between the heavy ops (bias + GELU,
//! residual add + scale, mask arithmetic, rotary application, cast chains) that an executor may
//! run as one compiled loop, reading each input once and writing each output once.
//!
//! [`mark`] looks at each device plan's steps in order. A region is a run of consecutive `Exec`
//! steps (only `Free` steps between) whose ops state a scalar form in the registry
//! ([`genie_ir::registry::Scalar`]) and that [`lower`](genie_ir::registry::scalar::lower) for the
//! call's arguments, over f32/f16/bf16/bool (integers only into a cast). The region's shape is its
//! largest node's shape; a smaller node (a mask computed once, broadcast into the scores) may be
//! inside only when nothing outside the region reads it, since a fused loop recomputes it at every
//! broadcast index. Every value the region computes that another step reads is an output and has
//! the region's shape. A dense layer (`linear`) whose only readers are in the region gives its
//! bias to the region: the layer runs without it and the loop adds it ([`FusedBias`]). A region is
//! kept when it fuses two element-wise ops or more, or one op and a bias on a small tensor (see
//! [`SMALL_OUTPUT_BYTES`]).
//!
//! A region runs where its first node's step is: every input is computed by then, since only
//! `Free` steps lie between its nodes. The plan's steps are unchanged, so an executor that does not
//! fuse (per-op remoting, the batched executor, a device without the JIT) runs them as written.

use std::collections::{HashMap, HashSet};

use genie_ir::registry::{self, scalar};
use genie_ir::{Arg, DType, Dim, NodeId, ValueId};
use serde::{Deserialize, Serialize};

use crate::plan::{DevicePlan, EntryPlan, ProgramPlan, Step};

/// A region of element-wise ops an executor may run as one loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedRegion {
    /// The region's nodes in step order; it runs at the first one's step.
    pub nodes: Vec<NodeId>,
    /// What the region computes that other steps read, each of the region's shape.
    pub outputs: Vec<ValueId>,
    /// Dense layers whose bias the region adds.
    pub biases: Vec<FusedBias>,
}

/// A dense layer read only by one region: it may run without its bias, which the region adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusedBias {
    /// The layer's node and its output.
    pub node: NodeId,
    pub value: ValueId,
    /// The bias tensor and its argument index in the layer's call.
    pub bias: ValueId,
    pub arg: u32,
}

impl FusedRegion {
    /// Ops the region does in one loop: its nodes and the biases it adds.
    pub fn ops(&self) -> usize {
        self.nodes.len() + self.biases.len()
    }
}

/// What a region must save to be worth a loop. Two element-wise ops or more: each op after the
/// first no longer writes and re-reads a tensor of its own. One op with a dense layer's bias
/// saves no memory traffic (the layer's GEMM adds its bias in place), only libtorch's per-op
/// dispatch, which pays only on small tensors (decode steps): at most this many bytes per output
/// at the plan's memory bindings. On large ones libtorch's wider vector code wins (measured:
/// bias + GELU on 512×3072 f32, `addmm` + `gelu` 1.8 ms against `mm` + loop 2.7 ms on 2 cores).
const MIN_NODES: usize = 2;
const SMALL_OUTPUT_BYTES: u64 = 64 << 10;

/// Mark the fused regions of every device plan of every entry (replacing any marked before).
pub fn mark(plan: &mut ProgramPlan) {
    for entry in &mut plan.entries {
        let regions: Vec<Vec<FusedRegion>> = entry.plans.iter().map(|p| regions(entry, p)).collect();
        for (p, r) in entry.plans.iter_mut().zip(regions) {
            p.fused = r;
        }
    }
}

/// Remove every fused region: the plan runs op by op.
pub fn clear(plan: &mut ProgramPlan) {
    for entry in &mut plan.entries {
        for p in &mut entry.plans {
            p.fused.clear();
        }
    }
}

/// (regions, ops fused) over every device plan of every entry.
pub fn counts(plan: &ProgramPlan) -> (usize, usize) {
    let all = plan.entries.iter().flat_map(|e| &e.plans).flat_map(|p| &p.fused);
    all.fold((0, 0), |(r, o), f| (r + 1, o + f.ops()))
}

fn fusable_dtype(d: DType) -> bool {
    matches!(d, DType::Float32 | DType::Float16 | DType::Bfloat16 | DType::Bool)
}

/// Integer inputs a cast may read (converted exactly as the JIT loads them).
fn castable_dtype(d: DType) -> bool {
    fusable_dtype(d) || matches!(d, DType::Int64 | DType::Int32 | DType::Uint8 | DType::Int8)
}

/// Whether an `Exec` step may be part of a region.
fn fusable(entry: &EntryPlan, op: &str, args: &[Arg], outputs: &[ValueId]) -> bool {
    let Some(form) = registry::facts(op).scalar else { return false };
    let [out] = outputs else { return false };
    let Some(out) = entry.tensors.get(out) else { return false };
    if !fusable_dtype(out.ty.dtype) || scalar::lower(form, args).is_none() {
        return false;
    }
    let reads_ok = |d: DType| if form == registry::Scalar::Convert { castable_dtype(d) } else { fusable_dtype(d) };
    args.iter().all(|a| match a {
        Arg::Tensor(v) => entry.tensors.get(v).is_some_and(|t| reads_ok(t.ty.dtype)),
        Arg::Tensors(_) => false,
        _ => true,
    })
}

/// `small` broadcasts to `big` (right-aligned, each dim equal or 1).
fn broadcasts_to(small: &[Dim], big: &[Dim]) -> bool {
    small.len() <= big.len() && small.iter().rev().zip(big.iter().rev()).all(|(s, b)| s == b || s.as_const() == Some(1))
}

fn regions(entry: &EntryPlan, plan: &DevicePlan) -> Vec<FusedRegion> {
    // Which steps read each value (a region's value read by a step outside it is an output).
    let mut readers: HashMap<ValueId, Vec<usize>> = HashMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let read: Vec<ValueId> = match step {
            Step::Exec { args, .. } => args.iter().flat_map(arg_tensors).collect(),
            Step::Send { tensor, .. } | Step::SaveState { tensor, .. } => vec![*tensor],
            _ => Vec::new(),
        };
        for v in read {
            readers.entry(v).or_default().push(i);
        }
    }
    let shape = |v: &ValueId| entry.tensors.get(v).map(|t| t.ty.shape.clone());
    let mut found = Vec::new();
    let mut current = Building::default();
    for (i, step) in plan.steps.iter().enumerate() {
        match step {
            Step::Free { .. } => continue,
            Step::Exec { node, op, args, outputs, .. } if fusable(entry, op, args, outputs) => {
                let out = outputs[0];
                let Some(out_shape) = shape(&out) else {
                    current.close(entry, plan, &readers, &mut found);
                    continue;
                };
                if !current.accepts(i, out, &out_shape, &readers, &shape) {
                    current.close(entry, plan, &readers, &mut found);
                }
                current.push(i, *node, out, out_shape);
            }
            _ => current.close(entry, plan, &readers, &mut found),
        }
    }
    current.close(entry, plan, &readers, &mut found);
    found
}

fn arg_tensors(a: &Arg) -> Vec<ValueId> {
    match a {
        Arg::Tensor(v) => vec![*v],
        Arg::Tensors(vs) => vs.clone(),
        _ => Vec::new(),
    }
}

/// A region being grown along a run of steps.
#[derive(Default)]
struct Building {
    steps: Vec<usize>,
    nodes: Vec<NodeId>,
    values: Vec<ValueId>,
    shape: Vec<Dim>,
}

impl Building {
    /// Whether the node at step `i` computing `out` may join: its shape and the region's
    /// broadcast one way or the other, and every value then inside that is read from outside
    /// (any step not yet in the region counts as outside) has the region's shape.
    fn accepts(
        &self,
        i: usize,
        out: ValueId,
        out_shape: &[Dim],
        readers: &HashMap<ValueId, Vec<usize>>,
        shape: &dyn Fn(&ValueId) -> Option<Vec<Dim>>,
    ) -> bool {
        if self.steps.is_empty() {
            return true;
        }
        let region_shape = if broadcasts_to(&self.shape, out_shape) {
            out_shape.to_vec()
        } else if broadcasts_to(out_shape, &self.shape) {
            self.shape.clone()
        } else {
            return false;
        };
        let inside: HashSet<usize> = self.steps.iter().copied().chain([i]).collect();
        self.values.iter().chain([&out]).all(|v| {
            let read_outside = readers.get(v).is_some_and(|r| r.iter().any(|s| !inside.contains(s)));
            !read_outside || shape(v).as_deref() == Some(region_shape.as_slice())
        })
    }

    fn push(&mut self, i: usize, node: NodeId, out: ValueId, out_shape: Vec<Dim>) {
        if self.steps.is_empty() || broadcasts_to(&self.shape, &out_shape) {
            self.shape = out_shape;
        }
        self.steps.push(i);
        self.nodes.push(node);
        self.values.push(out);
    }

    /// End the region: keep it if it does enough, with its outputs and the biases it takes.
    fn close(
        &mut self,
        entry: &EntryPlan,
        plan: &DevicePlan,
        readers: &HashMap<ValueId, Vec<usize>>,
        found: &mut Vec<FusedRegion>,
    ) {
        let built = std::mem::take(self);
        if built.steps.is_empty() {
            return;
        }
        let inside: HashSet<usize> = built.steps.iter().copied().collect();
        let outputs: Vec<ValueId> = built
            .values
            .iter()
            .copied()
            .filter(|v| readers.get(v).is_some_and(|r| r.iter().any(|s| !inside.contains(s))))
            .collect();
        let biases = biases(entry, plan, &built, readers, &inside);
        let region = FusedRegion { nodes: built.nodes, outputs, biases };
        let small = region.outputs.iter().all(|v| entry.tensors.get(v).is_some_and(|t| t.bytes <= SMALL_OUTPUT_BYTES));
        let worth = region.nodes.len() >= MIN_NODES || (small && region.ops() >= MIN_NODES);
        if worth && !region.outputs.is_empty() {
            found.push(region);
        }
    }
}

/// The dense layers whose outputs only this region reads: their biases can move into it.
fn biases(
    entry: &EntryPlan,
    plan: &DevicePlan,
    region: &Building,
    readers: &HashMap<ValueId, Vec<usize>>,
    inside: &HashSet<usize>,
) -> Vec<FusedBias> {
    let produced: HashSet<ValueId> = region.values.iter().copied().collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &i in &region.steps {
        let Step::Exec { args, .. } = &plan.steps[i] else { continue };
        for v in args.iter().flat_map(arg_tensors) {
            if produced.contains(&v) || !seen.insert(v) {
                continue;
            }
            let only_here = readers.get(&v).is_some_and(|r| r.iter().all(|s| inside.contains(s)));
            let Some(layer) = producer(plan, v) else { continue };
            let Step::Exec { node, op, args: layer_args, .. } = &plan.steps[layer] else { continue };
            if !only_here || op != "aten.linear.default" {
                continue;
            }
            let Some(Arg::Tensor(bias)) = layer_args.get(2) else { continue };
            let float = |x: &ValueId| {
                entry
                    .tensors
                    .get(x)
                    .is_some_and(|t| matches!(t.ty.dtype, DType::Float32 | DType::Float16 | DType::Bfloat16))
            };
            let same_dtype = entry.tensors.get(&v).map(|t| t.ty.dtype) == entry.tensors.get(bias).map(|t| t.ty.dtype);
            if float(&v) && same_dtype {
                out.push(FusedBias { node: *node, value: v, bias: *bias, arg: 2 });
            }
        }
    }
    out
}

/// The step that computes `v` on this device.
fn producer(plan: &DevicePlan, v: ValueId) -> Option<usize> {
    plan.steps.iter().position(|s| matches!(s, Step::Exec { outputs, .. } if outputs.contains(&v)))
}
