//! The tch executor: runs one device's plan of one call with libtorch.
//!
//! - [`run_device_plan`] walks a [`DevicePlan`]'s steps: `Recv` through a [`Mailbox`], `Exec`
//!   through the kernel table, `Send`, `Free`, `SaveState`. Every received tensor and every
//!   kernel output is checked against the plan's type (dtype, and shape under the call's
//!   [`Bindings`]), so a wrong kernel or a wrong input is an error naming the tensor, not a wrong
//!   answer further on.
//! - [`run_device_plan_with`] is the same walk with the `Exec` steps carried out by an
//!   [`OpRunner`]: [`LocalOps`] (the kernel table, what [`run_device_plan`] uses) or per-op
//!   remoting ([`crate::per_op`]), so there is one plan executor whoever runs the ops.
//! - [`run_op`] runs one op by name through the same kernel call (a worker's `ExecOp`, tests).
//! - [`bind_symbols`] reads every symbol of an entry from its input shapes and checks them.
//! - `kernels/`: ONE table keyed by the ATen overload name, as the op registry is, one file per
//!   domain mirroring the registry's tables (`elementwise`, `tensor`, `nn`, `misc`). Ops whose
//!   names end in `_` (`add_`, `copy_`, `index_put_`) have functional semantics in the SRG: their
//!   kernels compute a new tensor and never write into an argument, since arguments may be
//!   resident weights or state shared by every call.
//!
//! Weights and constants are created on the [`Resident`]'s device, and creation ops (`arange`,
//! `zeros`, ...) on the executing device, so plans run unchanged on `cuda:N`.
//!
//! Tests: `tests.rs` checks every registry op against eager PyTorch on golden cases
//! (`testdata/op_cases.json`, made by `testdata/make_op_cases.py`; inputs are also checked to be
//! unchanged afterwards), typed errors, binding, and a hand-made plan. End to end over the fixtures
//! and the onnx package's models: `testsuite/tests/exec_*.rs` (through [`crate::local`]).

mod args;
mod batch;
mod bind;
mod convert;
mod fused;
mod kernels;
mod state;

use std::collections::{BTreeMap, HashMap};

use genie_codegen::{DeviceInfo, DevicePlan, EntryPlan, Step, TensorKind};
use genie_ir::registry::ArgError;
use genie_ir::{Arg, NodeId, ValueId, WeightHash, WeightStore};
use tch::{Device, Tensor};

pub use batch::{run_device_plan_batched, BatchCall, BatchResults};
pub use bind::{bind_symbols, concrete_shape};
pub use convert::{tensor_from_bytes, tensor_to_bytes};
pub use fused::fused_counts;
pub use kernels::kernel_names;
pub use state::{SlotValue, Slots};

/// Symbol values of one call (`s0 → 12`).
pub type Bindings = BTreeMap<String, i64>;

/// Why a plan, an op or a tensor could not be run. Every variant names where: the node (`n7`)
/// and op, the tensor (`%12` and its name), the symbol or the slot.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The executor has no kernel for this op.
    #[error("{}: no kernel for op `{op}`", at(.node))]
    UnknownOp { node: Option<NodeId>, op: String },
    /// An argument is missing, of the wrong kind, or has a value the op does not accept.
    #[error("{} ({op}): argument #{index}: {reason}", at(.node))]
    BadArgument { node: Option<NodeId>, op: String, index: usize, reason: String },
    /// libtorch rejected the call (its message says why: shapes, dtypes, devices).
    #[error("{} ({op}): libtorch: {message}", at(.node))]
    Torch { node: Option<NodeId>, op: String, message: String },
    /// A kernel gave a different number of outputs than the node has.
    #[error("{} ({op}): the kernel gave {got} output(s), the node has {expected}", at(.node))]
    OutputCount { node: Option<NodeId>, op: String, expected: usize, got: usize },
    /// A tensor (an input, a received tensor or a kernel output) does not have the plan's type.
    #[error("tensor {tensor} `{name}`: expected {expected}, got {got}")]
    ShapeMismatch { tensor: ValueId, name: String, expected: String, got: String },
    /// A step uses a tensor the device does not hold (not received yet, already freed, not in
    /// the plan's table, or a state slot with no value).
    #[error("tensor {tensor} `{name}`: {reason}")]
    MissingTensor { tensor: ValueId, name: String, reason: String },
    /// A weight the plan reads is not resident on this device.
    #[error("tensor {tensor} `{name}`: weight {hash} is not resident on this device")]
    NotResident { tensor: ValueId, name: String, hash: WeightHash },
    /// A symbol has no value: no input dim carries it.
    #[error("symbol `{symbol}` is not bound: {reason}")]
    UnboundSymbol { symbol: String, reason: String },
    /// A symbol's value lies outside its range.
    #[error("symbol `{symbol}` = {value} is outside its range [{min}, {}]", max.map_or("inf".to_string(), |m| m.to_string()))]
    SymbolOutOfRange { symbol: String, value: i64, min: i64, max: Option<i64> },
    /// A tensor's bytes or type cannot be turned into a libtorch tensor (or back).
    #[error("tensor `{tensor}`: {reason}")]
    BadTensor { tensor: String, reason: String },
    /// An entry's input is missing, unknown, or cannot be used.
    #[error("entry `{entry}`: input `{name}`: {reason}")]
    Input { entry: String, name: String, reason: String },
    /// The plan is inconsistent (unknown entry, device, input or slot).
    #[error("plan: {0}")]
    Plan(String),
    /// A weight could not be read from the store, or its bytes do not match its hash.
    #[error("weight {hash}: {reason}")]
    Weight { hash: WeightHash, reason: String },
    /// A device's thread panicked (a bug: kernels report errors, they do not panic).
    #[error("{device}: the device thread panicked")]
    Panic { device: String },
    /// The mailbox could not deliver or receive a tensor (the peer is gone, the network failed).
    #[error("mailbox: {0}")]
    Mailbox(String),
    /// A step of a batch of calls failed for all of them (an op that runs once for the batch).
    #[error("in a batched step of {calls} calls: {message}")]
    Batch { calls: usize, message: String },
    /// The worker an op was sent to (per-op remoting) failed it or could not be reached.
    #[error("{node} ({op}) on {worker}: {message}")]
    Remote { node: NodeId, op: String, worker: String, message: String },
}

/// `n7`, or `op` when no node is known (per-op execution).
fn at(node: &Option<NodeId>) -> String {
    node.map_or_else(|| "op".to_string(), |n| n.to_string())
}

/// How a device plan's Recv and Send steps reach the world (network, channels). Blocking.
pub trait Mailbox {
    /// Receive transfer `transfer` (tensor `tensor`).
    fn recv(&mut self, transfer: u32, tensor: ValueId) -> Result<Tensor, ExecError>;
    /// Send transfer `transfer` (tensor `tensor`).
    fn send(&mut self, transfer: u32, tensor: ValueId, value: &Tensor) -> Result<(), ExecError>;
}

/// Weights resident on one device, by content hash (shared by every entry and client).
pub struct Resident {
    device: Device,
    weights: HashMap<WeightHash, Tensor>,
    bytes: u64,
}

impl Resident {
    /// No weights yet, on `device`.
    pub fn new(device: Device) -> Self {
        Resident { device, weights: HashMap::new(), bytes: 0 }
    }

    /// The weights a plan device keeps resident, read from the store on `device`, each one's
    /// bytes checked against its hash. `shared` holds tensors already loaded for other devices
    /// of the same plan: a weight several devices use is one tensor, loaded once.
    pub fn load_device(
        info: &DeviceInfo,
        weights: &WeightStore,
        device: Device,
        shared: &mut HashMap<WeightHash, Tensor>,
    ) -> Result<Resident, ExecError> {
        let mut resident = Resident::new(device);
        for w in &info.weights {
            if let Some(t) = shared.get(&w.hash) {
                resident.insert(w.hash.clone(), t.shallow_clone());
                continue;
            }
            let werr = |reason: String| ExecError::Weight { hash: w.hash.clone(), reason };
            let entry = weights.get(&w.hash).ok_or_else(|| werr(format!("`{}` is not in the weight store", w.name)))?;
            let bytes = weights.read(&w.hash).map_err(|e| werr(e.to_string()))?;
            if WeightHash::of(&entry.ty, &bytes) != w.hash {
                return Err(werr(format!("the bytes of `{}` do not match its hash", w.name)));
            }
            let shape = entry
                .ty
                .static_shape()
                .ok_or_else(|| werr(format!("`{}` has the symbolic type {}", w.name, entry.ty)))?;
            let t = tensor_from_bytes(&entry.ty, &shape, &bytes, device)?;
            shared.insert(w.hash.clone(), t.shallow_clone());
            resident.insert(w.hash.clone(), t);
        }
        Ok(resident)
    }

    /// The device the weights live on, where plans run.
    pub fn device(&self) -> Device {
        self.device
    }

    pub fn contains(&self, h: &WeightHash) -> bool {
        self.weights.contains_key(h)
    }

    /// Make a weight resident. A tensor on another device is moved here (if that fails it is
    /// kept where it is, and kernels reading it report libtorch's device error). A weight already
    /// resident under this hash is replaced.
    pub fn insert(&mut self, h: WeightHash, t: Tensor) {
        let t = if t.device() == self.device { t } else { t.f_to_device(self.device).unwrap_or(t) };
        let b = tensor_bytes(&t);
        if let Some(old) = self.weights.insert(h, t) {
            self.bytes = self.bytes.saturating_sub(tensor_bytes(&old));
        }
        self.bytes = self.bytes.saturating_add(b);
    }

    pub fn get(&self, h: &WeightHash) -> Option<&Tensor> {
        self.weights.get(h)
    }

    /// Drop a weight; returns its bytes (0 when it was not resident).
    pub fn remove(&mut self, h: &WeightHash) -> u64 {
        let b = self.weights.remove(h).map_or(0, |t| tensor_bytes(&t));
        self.bytes = self.bytes.saturating_sub(b);
        b
    }

    /// The hashes of every resident weight.
    pub fn hashes(&self) -> Vec<WeightHash> {
        self.weights.keys().cloned().collect()
    }

    /// Bytes of all resident weights.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Number of resident weights.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }
}

fn tensor_bytes(t: &Tensor) -> u64 {
    if !t.defined() {
        return 0;
    }
    let elt = t.f_kind().map(|k| k.elt_size_in_bytes()).unwrap_or(0) as u64;
    (t.numel() as u64).saturating_mul(elt)
}

/// Where a kernel runs, for messages.
struct Site<'a> {
    node: Option<NodeId>,
    op: &'a str,
}

impl Site<'_> {
    fn error(&self, e: kernels::KernelError) -> ExecError {
        let (node, op) = (self.node, self.op.to_string());
        match e {
            kernels::KernelError::Arg { index, reason } => ExecError::BadArgument { node, op, index, reason },
            kernels::KernelError::Torch(t) => ExecError::Torch { node, op, message: torch_message(&t) },
        }
    }
}

/// libtorch's message without the C++ backtrace it appends.
pub(crate) fn torch_message(e: &tch::TchError) -> String {
    let s = e.to_string();
    let cut = s.find("\nException raised from").unwrap_or(s.len());
    s[..cut].trim_end().to_string()
}

/// Run one op by name on given tensors (for per-op remoting): `tensors` resolves `Arg::Tensor`
/// ids; symbolic ints are evaluated under `bindings`; tensors the op creates are made on
/// `device`.
pub fn run_op(
    op: &str,
    args: &[Arg],
    tensors: &dyn Fn(ValueId) -> Option<Tensor>,
    bindings: &Bindings,
    device: Device,
) -> Result<Vec<Tensor>, ExecError> {
    let _guard = tch::no_grad_guard();
    let resolve = |v: ValueId| {
        tensors(v).ok_or_else(|| ExecError::MissingTensor {
            tensor: v,
            name: String::new(),
            reason: format!("{op} reads it but it was not given"),
        })
    };
    call_kernel(Site { node: None, op }, args, &resolve, bindings, device)
}

fn call_kernel(
    site: Site,
    args: &[Arg],
    resolve: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
    bindings: &Bindings,
    device: Device,
) -> Result<Vec<Tensor>, ExecError> {
    let unknown = || ExecError::UnknownOp { node: site.node, op: site.op.to_string() };
    let kernel = kernels::lookup(site.op).ok_or_else(unknown)?;
    let def = genie_ir::registry::lookup(site.op).map_err(|_| unknown())?;
    def.schema.check(args).map_err(|e| {
        let (index, reason) = match &e {
            ArgError::Kind { index, .. } => (*index, e.to_string()),
            _ => (args.len(), e.to_string()),
        };
        ExecError::BadArgument { node: site.node, op: site.op.to_string(), index, reason }
    })?;
    let call = args::Args::resolve(site.op, args, resolve, bindings, device)?;
    // tch panics where libtorch reports an error it does not expect (e.g. while freeing a
    // Scalar after a failed conversion); that is a bad call, not a reason to take down the
    // worker or the caller.
    let outputs = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel(&call)))
        .map_err(|panic| ExecError::Torch {
            node: site.node,
            op: site.op.to_string(),
            message: panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("the kernel panicked")
                .to_string(),
        })?
        .map_err(|e| site.error(e))?;
    if outputs.iter().any(|t| !t.defined()) {
        return Err(ExecError::Torch {
            node: site.node,
            op: site.op.to_string(),
            message: "the kernel returned an undefined tensor".into(),
        });
    }
    Ok(outputs)
}

/// The tensors of one call on one device.
struct Env<'a> {
    entry: &'a EntryPlan,
    resident: &'a Resident,
    state: &'a Slots,
    live: HashMap<ValueId, Tensor>,
}

impl Env<'_> {
    fn name(&self, v: ValueId) -> String {
        self.entry.tensors.get(&v).map(|t| t.name.clone()).unwrap_or_default()
    }

    /// A tensor this device holds: computed or received this call, or resident (weight, constant,
    /// state on one of its slots).
    fn get(&self, v: ValueId) -> Result<Tensor, ExecError> {
        if let Some(t) = self.live.get(&v) {
            return Ok(t.shallow_clone());
        }
        let missing = |reason: String| ExecError::MissingTensor { tensor: v, name: self.name(v), reason };
        let info = self.entry.tensors.get(&v).ok_or_else(|| missing("not in the plan's tensor table".into()))?;
        match &info.kind {
            TensorKind::Weight { hash } => self
                .resident
                .get(hash)
                .map(Tensor::shallow_clone)
                .ok_or_else(|| ExecError::NotResident { tensor: v, name: info.name.clone(), hash: hash.clone() }),
            TensorKind::Const { data } => {
                let shape = info.ty.static_shape().ok_or_else(|| ExecError::BadTensor {
                    tensor: info.name.clone(),
                    reason: format!("a constant has the symbolic type {}", info.ty),
                })?;
                tensor_from_bytes(&info.ty, &shape, &data.0, self.resident.device()).map_err(|e| match e {
                    ExecError::BadTensor { reason, .. } => ExecError::BadTensor { tensor: info.name.clone(), reason },
                    other => other,
                })
            }
            TensorKind::State { slot, .. } => self
                .state
                .get(slot)
                .map(|s| s.tensor().shallow_clone())
                .ok_or_else(|| missing(format!("state slot {slot} has no value on this device"))),
            TensorKind::Input { .. } => Err(missing("a user input that was not received".into())),
            TensorKind::Node { node, .. } => Err(missing(format!("output of {node}: not computed or received here"))),
        }
    }
}

/// Check a tensor against the plan's type of `v` under `bindings`.
pub(crate) fn check(entry: &EntryPlan, v: ValueId, t: &Tensor, bindings: &Bindings) -> Result<(), ExecError> {
    let info = entry.tensors.get(&v).ok_or_else(|| ExecError::MissingTensor {
        tensor: v,
        name: String::new(),
        reason: "not in the plan's tensor table".into(),
    })?;
    let shape = concrete_shape(entry, v, bindings)?;
    if !t.defined() {
        return Err(ExecError::ShapeMismatch {
            tensor: v,
            name: info.name.clone(),
            expected: format!("{} {shape:?}", info.ty.dtype),
            got: "an undefined tensor".into(),
        });
    }
    let want = crate::tensor::kind_of(info.ty.dtype);
    let kind = t.f_kind().ok();
    let size = t.size();
    if kind != want || size != shape {
        let got_dtype = kind.and_then(crate::tensor::dtype_of).map_or_else(|| format!("{kind:?}"), |d| d.to_string());
        return Err(ExecError::ShapeMismatch {
            tensor: v,
            name: info.name.clone(),
            expected: format!("{} {shape:?} ({})", info.ty.dtype, info.ty),
            got: format!("{got_dtype} {size:?}"),
        });
    }
    Ok(())
}

/// How a plan's `Exec` steps are carried out: by the kernel table in this process
/// ([`LocalOps`], what workers do), or by sending each op elsewhere (per-op remoting,
/// [`crate::per_op`]). Everything else about running a plan (receiving, sending, freeing,
/// checking every output against the plan's type) is [`run_device_plan_with`]'s, whoever runs
/// the ops.
pub trait OpRunner {
    /// Run one `Exec` step of `entry`; `resolve` gives the tensor of an id its arguments name.
    /// The outputs are checked against the plan by the caller.
    fn exec(
        &mut self,
        entry: &EntryPlan,
        step: ExecStep,
        resolve: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
        bindings: &Bindings,
        device: Device,
    ) -> Result<Vec<Tensor>, ExecError>;

    /// Whether a `cat` that appends to the state slot it reads may write in place behind the
    /// slot's value ([`state`]) instead of being run: only where the ops run in this process.
    fn appends_in_place(&self) -> bool {
        false
    }

    /// Whether the plan's fused element-wise regions may run as compiled loops: only where the
    /// ops run in this process.
    fn fuses(&self) -> bool {
        false
    }
}

/// An `Exec` step, as an [`OpRunner`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct ExecStep<'a> {
    pub node: NodeId,
    pub op: &'a str,
    pub args: &'a [Arg],
    pub outputs: &'a [ValueId],
}

/// Ops run here, through the kernel table.
pub struct LocalOps;

impl OpRunner for LocalOps {
    fn exec(
        &mut self,
        _entry: &EntryPlan,
        step: ExecStep,
        resolve: &dyn Fn(ValueId) -> Result<Tensor, ExecError>,
        bindings: &Bindings,
        device: Device,
    ) -> Result<Vec<Tensor>, ExecError> {
        call_kernel(Site { node: Some(step.node), op: step.op }, step.args, resolve, bindings, device)
    }

    fn appends_in_place(&self) -> bool {
        true
    }

    fn fuses(&self) -> bool {
        true
    }
}

/// Run one device's steps of one call. `state` holds the slot values this device reads (by slot
/// id). Returns the slot values written by SaveState steps. Checks every Exec output and every
/// received tensor against the plan's type (dtype + shape under bindings).
pub fn run_device_plan(
    entry: &EntryPlan,
    plan: &DevicePlan,
    bindings: &Bindings,
    resident: &Resident,
    state: &Slots,
    mailbox: &mut dyn Mailbox,
) -> Result<Slots, ExecError> {
    run_device_plan_with(entry, plan, bindings, resident, state, mailbox, &mut LocalOps)
}

/// [`run_device_plan`] with the ops carried out by `ops`.
pub fn run_device_plan_with(
    entry: &EntryPlan,
    plan: &DevicePlan,
    bindings: &Bindings,
    resident: &Resident,
    state: &Slots,
    mailbox: &mut dyn Mailbox,
    ops: &mut dyn OpRunner,
) -> Result<Slots, ExecError> {
    let _guard = tch::no_grad_guard();
    let device = resident.device();
    let mut env = Env { entry, resident, state, live: HashMap::new() };
    let mut saved = BTreeMap::new();
    let appends = if ops.appends_in_place() { state::appends(entry, plan) } else { HashMap::new() };
    // Slot values an in-place append made, by the tensor they are saved as.
    let mut appended: HashMap<ValueId, SlotValue> = HashMap::new();
    let mut fusion = if ops.fuses() {
        fused::Fusion::prepare(entry, &plan.fused, &plan.steps, device)
    } else {
        fused::Fusion::default()
    };
    for step in &plan.steps {
        match step {
            Step::Recv { tensor, transfer, .. } => {
                let t = mailbox.recv(*transfer, *tensor)?;
                let t = if t.device() == device {
                    t
                } else {
                    t.f_to_device(device).map_err(|e| ExecError::BadTensor {
                        tensor: env.name(*tensor),
                        reason: format!("moving a received tensor to {device:?}: {}", torch_message(&e)),
                    })?
                };
                check(entry, *tensor, &t, bindings)?;
                env.live.insert(*tensor, t);
            }
            Step::Exec { node, op, args, outputs, .. } => {
                if let Some(region) = fusion.starting(*node) {
                    let get = |v: ValueId| env.get(v);
                    let mut restored: Vec<(ValueId, Tensor)> = Vec::new();
                    let mut add_bias = |value: ValueId, bias: ValueId| -> Result<(), ExecError> {
                        let sum = get(value)?.f_add(&get(bias)?).map_err(|e| ExecError::Torch {
                            node: Some(*node),
                            op: "aten.add.Tensor".into(),
                            message: torch_message(&e),
                        })?;
                        restored.push((value, sum));
                        Ok(())
                    };
                    let ran = fusion.run(region, entry, bindings, &get, &mut add_bias)?;
                    env.live.extend(restored);
                    if let Some(outputs) = ran {
                        env.live.extend(outputs);
                        continue;
                    }
                }
                if fusion.ran_inside(*node) {
                    continue;
                }
                let unbiased: Vec<Arg>;
                let args = match fusion.bias_dropped(*node) {
                    Some(i) => {
                        unbiased =
                            args.iter().enumerate().map(|(j, a)| if j == i { Arg::None } else { a.clone() }).collect();
                        &unbiased
                    }
                    None => args,
                };
                if let Some(a) = appends.get(node) {
                    if let Some(past) = state.get(&a.slot) {
                        if let Some(value) = state::append(entry, a, past, &env.get(a.new)?)? {
                            check(entry, a.out, value.tensor(), bindings)?;
                            env.live.insert(a.out, value.tensor().shallow_clone());
                            appended.insert(a.out, value);
                            continue;
                        }
                    }
                }
                let resolve = |v: ValueId| env.get(v);
                let step = ExecStep { node: *node, op, args, outputs };
                let outs = ops.exec(entry, step, &resolve, bindings, device)?;
                if outs.len() != outputs.len() {
                    return Err(ExecError::OutputCount {
                        node: Some(*node),
                        op: op.clone(),
                        expected: outputs.len(),
                        got: outs.len(),
                    });
                }
                for (v, t) in outputs.iter().zip(outs) {
                    check(entry, *v, &t, bindings)?;
                    env.live.insert(*v, t);
                }
            }
            Step::Send { tensor, transfer, .. } => {
                let t = env.get(*tensor)?;
                mailbox.send(*transfer, *tensor, &t)?;
            }
            Step::Free { tensor } => {
                env.live.remove(tensor);
            }
            Step::SaveState { tensor, slot } => {
                let value = match appended.remove(tensor) {
                    Some(value) => value,
                    None => SlotValue::new(env.get(*tensor)?),
                };
                saved.insert(*slot, value);
            }
        }
    }
    Ok(saved)
}

#[cfg(test)]
mod tests;
