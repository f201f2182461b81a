//! Fused element-wise regions ([`genie_codegen::fusion`]) run as one compiled loop (`genie-jit`,
//! cranelift) on CPU, instead of one libtorch call and one temporary per op.
//!
//! For each region of a device plan, [`Fusion::prepare`] builds the loop's program from the
//! region's steps (each op's scalar form from the registry, rounding after ops whose dtype is
//! f16/bf16, a dense layer's bias where the region took it) and gets its compiled kernel (compiled
//! once per distinct program, process-wide). The region then runs at its first node's step: its
//! inputs broadcast to the region's shape by strides (no copies), its outputs written once into
//! new contiguous tensors. A region the JIT cannot take runs op by op through libtorch as written,
//! stated once in the logs (`-v`); a region whose loop cannot run one call (a tensor the loop
//! cannot read) does the same for that call, its layers' biases added back first.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use genie_codegen::{EntryPlan, FusedRegion, Step};
use genie_ir::registry::{self, ScalarExpr};
use genie_ir::{Arg, DType, NodeId, ValueId};
use genie_jit::{Kernel, Operand, Region};
use tch::{Device, Tensor};

use super::{check, concrete_shape, torch_message, Bindings, ExecError};
use crate::tensor::kind_of;

/// The prepared regions of one device plan of one entry.
#[derive(Default)]
pub(crate) struct Fusion<'a> {
    regions: Vec<Prepared<'a>>,
    /// Region index by its first node.
    starts: HashMap<NodeId, usize>,
    /// Region index by every other node it runs.
    members: HashMap<NodeId, usize>,
    /// Dense layers running without their bias (the region adds it): layer → (region, bias arg).
    unbiased: HashMap<NodeId, (usize, usize)>,
    /// Regions that could not run this call: their nodes run as written.
    failed: HashSet<usize>,
}

struct Prepared<'a> {
    region: &'a FusedRegion,
    kernel: Kernel,
    /// The loop's inputs, in its input order.
    inputs: Vec<ValueId>,
}

/// Region calls run as compiled loops in this process, and regions that fell back to libtorch.
static LOOP_RUNS: AtomicU64 = AtomicU64::new(0);
static FALLBACKS: AtomicU64 = AtomicU64::new(0);

/// (fused region calls run as compiled loops, region calls or preparations that fell back to
/// libtorch) in this process so far.
pub fn fused_counts() -> (u64, u64) {
    (LOOP_RUNS.load(Ordering::Relaxed), FALLBACKS.load(Ordering::Relaxed))
}

/// Say once per region and reason why it runs through libtorch.
fn fallback_logged(entry: &str, first: NodeId, reason: &str) {
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    static SAID: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let line = format!("entry `{entry}`: fused region at {first}: {reason}; its ops run through libtorch");
    let fresh = SAID.get_or_init(Default::default).lock().map(|mut s| s.insert(line.clone())).unwrap_or(false);
    if fresh {
        tracing::info!("{line}");
    }
}

impl<'a> Fusion<'a> {
    /// The regions of `plan` that compile; none on devices other than the CPU.
    pub(crate) fn prepare(entry: &'a EntryPlan, fused: &'a [FusedRegion], steps: &'a [Step], device: Device) -> Self {
        let mut fusion = Fusion::default();
        if device != Device::Cpu || fused.is_empty() {
            return fusion;
        }
        let by_node: HashMap<NodeId, (&str, &[Arg], &[ValueId])> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Exec { node, op, args, outputs, .. } => {
                    Some((*node, (op.as_str(), args.as_slice(), outputs.as_slice())))
                }
                _ => None,
            })
            .collect();
        for region in fused {
            let Some(first) = region.nodes.first().copied() else { continue };
            match build(entry, region, &by_node).and_then(|(r, inputs)| {
                genie_jit::compile(&r).map(|kernel| (kernel, inputs)).map_err(|e| e.to_string())
            }) {
                Ok((kernel, inputs)) => {
                    let index = fusion.regions.len();
                    fusion.starts.insert(first, index);
                    for n in &region.nodes[1..] {
                        fusion.members.insert(*n, index);
                    }
                    for b in &region.biases {
                        fusion.unbiased.insert(b.node, (index, b.arg as usize));
                    }
                    fusion.regions.push(Prepared { region, kernel, inputs });
                }
                Err(reason) => fallback_logged(&entry.name, first, &reason),
            }
        }
        fusion
    }

    /// The region that starts at `node`, if it has not failed this call.
    pub(crate) fn starting(&self, node: NodeId) -> Option<usize> {
        self.starts.get(&node).copied().filter(|r| !self.failed.contains(r))
    }

    /// Whether `node` was run by its region already.
    pub(crate) fn ran_inside(&self, node: NodeId) -> bool {
        self.members.get(&node).is_some_and(|r| !self.failed.contains(r))
    }

    /// The argument a dense layer runs without (its bias, which its region adds).
    pub(crate) fn bias_dropped(&self, node: NodeId) -> Option<usize> {
        self.unbiased.get(&node).filter(|(r, _)| !self.failed.contains(r)).map(|&(_, arg)| arg)
    }

    /// Run region `index`: `get` gives the tensors it reads; returns its outputs by value id.
    /// `Ok(None)`: the loop cannot run this call; the region was marked failed and the biases it
    /// took were added back into `live` by `add_bias`, so its nodes run as written.
    pub(crate) fn run(
        &mut self,
        index: usize,
        entry: &EntryPlan,
        bindings: &Bindings,
        get: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
        add_bias: &mut dyn FnMut(ValueId, ValueId) -> Result<(), ExecError>,
    ) -> Result<Option<Vec<(ValueId, Tensor)>>, ExecError> {
        let prepared = &self.regions[index];
        match run_loop(prepared, entry, bindings, get)? {
            Ok(outputs) => {
                LOOP_RUNS.fetch_add(1, Ordering::Relaxed);
                Ok(Some(outputs))
            }
            Err(reason) => {
                fallback_logged(&entry.name, prepared.region.nodes[0], &reason);
                for b in &prepared.region.biases {
                    add_bias(b.value, b.bias)?;
                }
                self.failed.insert(index);
                Ok(None)
            }
        }
    }
}

/// The loop's program of a region, and its inputs in order.
type Built = (Region, Vec<ValueId>);

fn build(
    entry: &EntryPlan,
    region: &FusedRegion,
    by_node: &HashMap<NodeId, (&str, &[Arg], &[ValueId])>,
) -> Result<Built, String> {
    let dtype = |v: ValueId| entry.tensors.get(&v).map(|t| t.ty.dtype).ok_or_else(|| format!("{v} has no type"));
    let mut program = Region::new(Vec::new());
    let mut inputs: Vec<ValueId> = Vec::new();
    let mut computed: HashMap<ValueId, usize> = HashMap::new();
    let input = |program: &mut Region, inputs: &mut Vec<ValueId>, v: ValueId| -> Result<usize, String> {
        let i = match inputs.iter().position(|x| *x == v) {
            Some(i) => i,
            None => {
                inputs.push(v);
                program.inputs.push(dtype(v)?);
                inputs.len() - 1
            }
        };
        Ok(program.input(i))
    };
    for b in &region.biases {
        let layer = input(&mut program, &mut inputs, b.value)?;
        let bias = input(&mut program, &mut inputs, b.bias)?;
        let sum =
            ScalarExpr::Binary(registry::BinaryFn::Add, Box::new(ScalarExpr::Arg(0)), Box::new(ScalarExpr::Arg(1)));
        let sum = rounded(dtype(b.value)?, sum);
        let at = program.push_expr(&sum, &[Some(layer), Some(bias)]).map_err(|e| e.to_string())?;
        computed.insert(b.value, at);
    }
    for node in &region.nodes {
        let (op, args, outputs) = by_node.get(node).ok_or_else(|| format!("{node} is not a step of this device"))?;
        let form = registry::facts(op).scalar.ok_or_else(|| format!("{op} has no scalar form"))?;
        let expr = registry::scalar::lower(form, args)
            .ok_or_else(|| format!("{node} ({op}): arguments not in scalar form"))?;
        let mut bound = Vec::with_capacity(args.len());
        let mut low: HashSet<DType> = HashSet::new();
        for a in args.iter() {
            bound.push(match a {
                Arg::Tensor(v) => {
                    low.insert(dtype(*v)?);
                    Some(match computed.get(v) {
                        Some(&at) => at,
                        None => input(&mut program, &mut inputs, *v)?,
                    })
                }
                _ => None,
            });
        }
        // Numbers take the tensors' dtype first, as PyTorch's promotion does (a bound compared
        // against f16 values is an f16 bound).
        let expr = match low.iter().copied().collect::<Vec<_>>().as_slice() {
            [d @ (DType::Float16 | DType::Bfloat16)] => round_numbers(*d, expr),
            _ => expr,
        };
        let [out] = outputs else { return Err(format!("{node} ({op}) has {} outputs", outputs.len())) };
        let expr = rounded(dtype(*out)?, expr);
        let at = program.push_expr(&expr, &bound).map_err(|e| e.to_string())?;
        computed.insert(*out, at);
    }
    for out in &region.outputs {
        let at = computed.get(out).copied().ok_or_else(|| format!("output {out} is not computed by the region"))?;
        program.output(at, dtype(*out)?);
    }
    program.validate().map_err(|e| e.to_string())?;
    Ok((program, inputs))
}

/// The value as the op's output dtype holds it (f32 is the loop's own precision).
fn rounded(d: DType, e: ScalarExpr) -> ScalarExpr {
    if d == DType::Float32 {
        e
    } else {
        ScalarExpr::Round(d, Box::new(e))
    }
}

fn round_numbers(d: DType, e: ScalarExpr) -> ScalarExpr {
    let r = |x: Box<ScalarExpr>| Box::new(round_numbers(d, *x));
    match e {
        ScalarExpr::Const(c) => ScalarExpr::Round(d, Box::new(ScalarExpr::Const(c))),
        ScalarExpr::Arg(i) => ScalarExpr::Arg(i),
        ScalarExpr::Unary(f, a) => ScalarExpr::Unary(f, r(a)),
        ScalarExpr::Binary(f, a, b) => ScalarExpr::Binary(f, r(a), r(b)),
        ScalarExpr::Select(c, a, b) => ScalarExpr::Select(r(c), r(a), r(b)),
        ScalarExpr::Round(t, a) => ScalarExpr::Round(t, r(a)),
    }
}

/// One call of a region's loop. The outer `Err` is a failure of the call (a tensor missing); the
/// inner one a reason the loop cannot run it (then the ops run as written).
#[allow(clippy::type_complexity)]
fn run_loop(
    prepared: &Prepared,
    entry: &EntryPlan,
    bindings: &Bindings,
    get: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
) -> Result<Result<Vec<(ValueId, Tensor)>, String>, ExecError> {
    let region = prepared.region;
    let shape = concrete_shape(entry, region.outputs[0], bindings)?;
    let torch = |e: tch::TchError| torch_message(&e);
    let mut held = Vec::with_capacity(prepared.inputs.len());
    for (v, want) in prepared.inputs.iter().zip(&prepared.kernel.region().inputs) {
        let t = get(*v)?;
        if t.device() != Device::Cpu || t.f_kind().ok() != kind_of(*want) {
            return Ok(Err(format!("input {v} is {:?} on {:?}", t.f_kind().ok(), t.device())));
        }
        if t.dim() > shape.len() {
            return Ok(Err(format!("input {v} has more dims than the region")));
        }
        match t.f_expand(shape.as_slice(), false) {
            Ok(x) => held.push(x),
            Err(e) => return Ok(Err(format!("input {v} does not broadcast to {shape:?}: {}", torch(e)))),
        }
    }
    let strides: Vec<Vec<isize>> = held.iter().map(|t| t.stride().iter().map(|&s| s as isize).collect()).collect();
    let operands: Vec<Operand> =
        held.iter().zip(&strides).map(|(t, s)| Operand { ptr: t.data_ptr() as *const u8, strides: s }).collect();
    let mut outputs = Vec::with_capacity(region.outputs.len());
    for (v, (_, dtype)) in region.outputs.iter().zip(&prepared.kernel.region().outputs) {
        let kind = kind_of(*dtype).ok_or_else(|| ExecError::Plan(format!("{v}: no libtorch kind for {dtype}")))?;
        let t = Tensor::f_empty(shape.as_slice(), (kind, Device::Cpu))
            .map_err(|e| ExecError::BadTensor { tensor: v.to_string(), reason: torch(e) })?;
        outputs.push((*v, t));
    }
    let pointers: Vec<*mut u8> = outputs.iter().map(|(_, t)| t.data_ptr() as *mut u8).collect();
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    // SAFETY: each input pointer is a live tensor expanded to `shape`, so every offset its strides
    // reach within `shape` lies inside its storage; each output is a new contiguous tensor of
    // `shape` in the output's dtype, distinct from every input. `held` and `outputs` outlive the
    // call.
    let ran = unsafe { prepared.kernel.run_parallel(&dims, &operands, &pointers) };
    if let Err(e) = ran {
        return Ok(Err(e.to_string()));
    }
    for (v, t) in &outputs {
        check(entry, *v, t, bindings)?;
    }
    Ok(Ok(outputs))
}
