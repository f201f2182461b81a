//! Batched execution: one device's plan of one entry run for several calls (steps of different
//! sessions, of any client) at once, as the plan's `mark-batching` marks say (selective
//! batching). A `Rows` op runs once on the calls' rows stacked along dim 0 (a dense layer reads
//! its weights once for the whole batch); a `PerCall` op once per call with that call's tensors
//! and symbol values (attention over its own KV cache, at its own length); a `Shared` op once.
//! Values are kept in whichever form their producer made and converted where a reader needs the
//! other (a call's rows are a view of the stacked tensor; per-call tensors are stacked once).
//!
//! A failure that belongs to one call (its tensor did not arrive, it was cancelled, a per-call
//! op refused its inputs) fails that call only: the others go on, the failed call's lane is
//! filled with zeros of the plan's types and its results are dropped. A `Rows` op that fails on
//! the stacked rows (one call's token id beyond the vocabulary) runs again per call, so only
//! the calls it fails for fail; a `Shared` op's failure fails the batch.

use std::collections::{BTreeMap, HashMap};

use genie_codegen::{DevicePlan, EntryPlan, Step};
use genie_ir::{Arg, Batching, NodeId, ValueId};
use tch::{Device, Tensor};

use super::state::{self, Append, SlotValue, Slots};
use super::{call_kernel, check, concrete_shape, torch_message, Bindings, Env, ExecError, Mailbox, Resident, Site};

/// One call of a batch: its symbol values, its session's state on this device, its mailbox.
pub struct BatchCall<'a> {
    pub bindings: &'a Bindings,
    pub state: &'a Slots,
    pub mailbox: &'a mut dyn Mailbox,
}

/// A value of the batch, in the form its producer made.
enum Held {
    /// One tensor every call reads.
    Shared(Tensor),
    /// The calls' rows stacked along dim 0, call `i` at row `i`.
    Rows(Tensor),
    /// One tensor per call.
    PerCall(Vec<Tensor>),
}

/// What each call of a batch leaves: the slot values it wrote, or why it failed.
pub type BatchResults = Vec<Result<Slots, ExecError>>;

/// Run `plan` for every call in `calls` as one batched step. The outer error fails the whole
/// batch; otherwise each call has its own result. A batch of one is [`super::run_device_plan`].
pub fn run_device_plan_batched(
    entry: &EntryPlan,
    plan: &DevicePlan,
    resident: &Resident,
    calls: &mut [BatchCall],
) -> Result<BatchResults, ExecError> {
    if let [call] = calls {
        return Ok(vec![super::run_device_plan(entry, plan, call.bindings, resident, call.state, call.mailbox)]);
    }
    let _guard = tch::no_grad_guard();
    let mut batch = Batch {
        entry,
        resident,
        device: resident.device(),
        live: HashMap::new(),
        failed: (0..calls.len()).map(|_| None).collect(),
        appended: (0..calls.len()).map(|_| HashMap::new()).collect(),
    };
    let appends = state::appends(entry, plan);
    let mut saved: Vec<Slots> = (0..calls.len()).map(|_| BTreeMap::new()).collect();
    for step in &plan.steps {
        match step {
            Step::Recv { tensor, transfer, .. } => {
                let mut each = Vec::with_capacity(calls.len());
                for (i, call) in calls.iter_mut().enumerate() {
                    // A call that failed sent nothing on, so what would come back for it never
                    // comes: its lane takes zeros instead of waiting.
                    if batch.failed[i].is_some() {
                        each.push(batch.or_zeros(i, *tensor, call.bindings, Err(ExecError::Plan(String::new())))?);
                        continue;
                    }
                    let t =
                        call.mailbox.recv(*transfer, *tensor).and_then(|t| batch.on_device(*tensor, t)).and_then(|t| {
                            check(entry, *tensor, &t, call.bindings)?;
                            Ok(t)
                        });
                    each.push(batch.or_zeros(i, *tensor, call.bindings, t)?);
                }
                batch.live.insert(*tensor, Held::PerCall(each));
            }
            Step::Exec { node, op, args, outputs, batching } => {
                let site = || Site { node: Some(*node), op };
                let wrong_count = |got: usize| ExecError::OutputCount {
                    node: Some(*node),
                    op: op.clone(),
                    expected: outputs.len(),
                    got,
                };
                match batching {
                    Batching::Shared => {
                        let bindings = calls[0].bindings;
                        let outs = {
                            let resolve = |v: ValueId| batch.one(v, 0, calls[0].state);
                            call_kernel(site(), args, &resolve, bindings, batch.device)?
                        };
                        if outs.len() != outputs.len() {
                            return Err(wrong_count(outs.len()));
                        }
                        for (v, t) in outputs.iter().zip(outs) {
                            check(entry, *v, &t, bindings)?;
                            batch.live.insert(*v, Held::Shared(t));
                        }
                    }
                    Batching::Rows { resize } => {
                        let rows = calls.len() as i64;
                        for v in args.iter().flat_map(Arg::values) {
                            batch.stack(v, calls)?;
                        }
                        let stacked = {
                            let args = resized(args, *resize, rows);
                            let resolve = |v: ValueId| batch.stacked(v);
                            call_kernel(site(), &args, &resolve, calls[0].bindings, batch.device).and_then(|outs| {
                                if outs.len() != outputs.len() {
                                    return Err(wrong_count(outs.len()));
                                }
                                for (v, t) in outputs.iter().zip(&outs) {
                                    check_rows(entry, *v, t, calls[0].bindings, rows)?;
                                }
                                Ok(outs)
                            })
                        };
                        match stacked {
                            Ok(outs) => {
                                for (v, t) in outputs.iter().zip(outs) {
                                    batch.live.insert(*v, Held::Rows(t));
                                }
                            }
                            // One call's rows can fail the op for all (a token id beyond the
                            // vocabulary): run it per call, so only that call fails.
                            Err(_) => batch.per_call(calls, *node, op, args, outputs)?,
                        }
                    }
                    Batching::PerCall => match appends.get(node) {
                        Some(a) => batch.append(calls, *node, a, op, args)?,
                        None => batch.per_call(calls, *node, op, args, outputs)?,
                    },
                }
            }
            Step::Send { tensor, transfer, .. } => {
                for (i, call) in calls.iter_mut().enumerate() {
                    if batch.failed[i].is_some() {
                        continue;
                    }
                    let sent =
                        batch.one(*tensor, i, call.state).and_then(|t| call.mailbox.send(*transfer, *tensor, &t));
                    if let Err(e) = sent {
                        batch.fail(i, e);
                    }
                }
            }
            Step::Free { tensor } => {
                batch.live.remove(tensor);
            }
            Step::SaveState { tensor, slot } => {
                for (i, call) in calls.iter().enumerate() {
                    if let Some(value) = batch.appended[i].remove(tensor) {
                        saved[i].insert(*slot, value);
                        continue;
                    }
                    let t = batch.one(*tensor, i, call.state)?;
                    // A row of a stacked tensor would keep the whole batch's storage alive with
                    // the session's state: the state gets its own copy.
                    let own = if matches!(batch.live.get(tensor), Some(Held::Rows(_))) { t.copy() } else { t };
                    saved[i].insert(*slot, SlotValue::new(own));
                }
            }
        }
    }
    Ok(batch.failed.into_iter().zip(saved).map(|(failed, saved)| failed.map_or(Ok(saved), Err)).collect())
}

/// The batch's tensors on this device.
struct Batch<'a> {
    entry: &'a EntryPlan,
    resident: &'a Resident,
    device: Device,
    live: HashMap<ValueId, Held>,
    /// Why each call failed, if it did; its lane carries zeros from then on.
    failed: Vec<Option<ExecError>>,
    /// Per call, the slot values in-place appends made, by the tensor they are saved as.
    appended: Vec<HashMap<ValueId, SlotValue>>,
}

impl Batch<'_> {
    /// An append to each call's state slot ([`state`]): in place behind the slot's value where
    /// it can be, else the op as written, per call.
    fn append(
        &mut self,
        calls: &[BatchCall],
        node: NodeId,
        a: &Append,
        op: &str,
        args: &[Arg],
    ) -> Result<(), ExecError> {
        let mut each = Vec::with_capacity(calls.len());
        for (i, call) in calls.iter().enumerate() {
            let done = match (&self.failed[i], call.state.get(&a.slot)) {
                (Some(_), _) => Err(ExecError::Plan("the call failed earlier".into())),
                (None, Some(past)) => self
                    .one(a.new, i, call.state)
                    .and_then(|new| state::append(self.entry, a, past, &new))
                    .and_then(|value| match value {
                        Some(value) => check(self.entry, a.out, value.tensor(), call.bindings).map(|()| Some(value)),
                        None => Ok(None),
                    }),
                (None, None) => Ok(None),
            };
            match done {
                Ok(Some(value)) => {
                    each.push(value.tensor().shallow_clone());
                    self.appended[i].insert(a.out, value);
                }
                Ok(None) => {
                    let t = self.run_for(i, call, node, op, args, &[a.out]).map(|mut outs| outs.remove(0));
                    let t = self.or_zeros(i, a.out, call.bindings, t)?;
                    each.push(t);
                }
                Err(e) => {
                    let t = self.or_zeros(i, a.out, call.bindings, Err(e))?;
                    each.push(t);
                }
            }
        }
        self.live.insert(a.out, Held::PerCall(each));
        Ok(())
    }

    /// Run an op once per call, on each call's tensors and symbol values; a call whose op fails
    /// (or that failed earlier) gets zeros of the plan's types and is marked failed.
    fn per_call(
        &mut self,
        calls: &[BatchCall],
        node: NodeId,
        op: &str,
        args: &[Arg],
        outputs: &[ValueId],
    ) -> Result<(), ExecError> {
        let mut each: Vec<Vec<Tensor>> = outputs.iter().map(|_| Vec::new()).collect();
        for (i, call) in calls.iter().enumerate() {
            let outs = if self.failed[i].is_some() {
                Err(ExecError::Plan("the call failed earlier".into()))
            } else {
                self.run_for(i, call, node, op, args, outputs)
            };
            match outs {
                Ok(outs) => outs.into_iter().enumerate().for_each(|(k, t)| each[k].push(t)),
                Err(e) => {
                    self.fail(i, e);
                    for (k, v) in outputs.iter().enumerate() {
                        let zeros = self.or_zeros(i, *v, call.bindings, Err(ExecError::Plan(String::new())))?;
                        each[k].push(zeros);
                    }
                }
            }
        }
        for (v, ts) in outputs.iter().zip(each) {
            self.live.insert(*v, Held::PerCall(ts));
        }
        Ok(())
    }

    /// Run an op for call `i` alone (its tensors, its symbol values), its outputs checked
    /// against the plan.
    fn run_for(
        &self,
        i: usize,
        call: &BatchCall,
        node: NodeId,
        op: &str,
        args: &[Arg],
        outputs: &[ValueId],
    ) -> Result<Vec<Tensor>, ExecError> {
        let resolve = |v: ValueId| self.one(v, i, call.state);
        let outs = call_kernel(Site { node: Some(node), op }, args, &resolve, call.bindings, self.device)?;
        if outs.len() != outputs.len() {
            let (expected, got) = (outputs.len(), outs.len());
            return Err(ExecError::OutputCount { node: Some(node), op: op.to_string(), expected, got });
        }
        for (v, t) in outputs.iter().zip(&outs) {
            check(self.entry, *v, t, call.bindings)?;
        }
        Ok(outs)
    }

    fn fail(&mut self, call: usize, e: ExecError) {
        if self.failed[call].is_none() {
            self.failed[call] = Some(e);
        }
    }

    /// `t`, or (when it is an error of this call) zeros of the plan's type in its place, the
    /// call marked failed.
    fn or_zeros(
        &mut self,
        call: usize,
        v: ValueId,
        bindings: &Bindings,
        t: Result<Tensor, ExecError>,
    ) -> Result<Tensor, ExecError> {
        match t {
            Ok(t) => Ok(t),
            Err(e) => {
                self.fail(call, e);
                let info = self.entry.tensors.get(&v).ok_or_else(|| ExecError::MissingTensor {
                    tensor: v,
                    name: String::new(),
                    reason: "not in the plan's tensor table".into(),
                })?;
                let shape = concrete_shape(self.entry, v, bindings)?;
                let kind = crate::tensor::kind_of(info.ty.dtype).ok_or_else(|| ExecError::BadTensor {
                    tensor: info.name.clone(),
                    reason: "no libtorch dtype".into(),
                })?;
                Tensor::f_zeros(shape.as_slice(), (kind, self.device))
                    .map_err(|e| ExecError::BadTensor { tensor: info.name.clone(), reason: torch_message(&e) })
            }
        }
    }

    fn on_device(&self, v: ValueId, t: Tensor) -> Result<Tensor, ExecError> {
        if t.device() == self.device {
            return Ok(t);
        }
        t.f_to_device(self.device).map_err(|e| ExecError::BadTensor {
            tensor: self.entry.tensors.get(&v).map(|t| t.name.clone()).unwrap_or_default(),
            reason: format!("moving a received tensor to {:?}: {}", self.device, torch_message(&e)),
        })
    }

    /// Call `call`'s tensor `v`: its own, its row of a stacked one, a shared one, or what the
    /// device holds (weights, constants, the call's state).
    fn one(&self, v: ValueId, call: usize, state: &Slots) -> Result<Tensor, ExecError> {
        match self.live.get(&v) {
            Some(Held::Shared(t)) => Ok(t.shallow_clone()),
            Some(Held::Rows(t)) => t.f_narrow(0, call as i64, 1).map_err(|e| self.torch(v, e)),
            Some(Held::PerCall(ts)) => Ok(ts[call].shallow_clone()),
            None => Env { entry: self.entry, resident: self.resident, state, live: HashMap::new() }.get(v),
        }
    }

    /// Make `v` stacked if it is one tensor per call (a tensor the device holds for every call,
    /// weights and constants, stays as it is).
    fn stack(&mut self, v: ValueId, calls: &[BatchCall]) -> Result<(), ExecError> {
        match self.live.get(&v) {
            Some(Held::PerCall(ts)) => {
                let t = Tensor::f_cat(ts, 0).map_err(|e| self.torch(v, e))?;
                self.live.insert(v, Held::Rows(t));
            }
            Some(_) => {}
            None => {
                // State is the only per-call tensor not in `live`; marks never stack it, but
                // stacking is still right when the calls' states agree in shape.
                if matches!(self.entry.tensors.get(&v).map(|t| &t.kind), Some(genie_codegen::TensorKind::State { .. }))
                {
                    let each = calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| self.one(v, i, c.state))
                        .collect::<Result<Vec<_>, _>>()?;
                    self.live.insert(v, Held::PerCall(each));
                    return self.stack(v, calls);
                }
            }
        }
        Ok(())
    }

    /// `v` for an op on stacked rows: the stacked tensor, or the one every call shares.
    fn stacked(&self, v: ValueId) -> Result<Tensor, ExecError> {
        match self.live.get(&v) {
            Some(Held::Shared(t) | Held::Rows(t)) => Ok(t.shallow_clone()),
            Some(Held::PerCall(_)) => Err(ExecError::Plan(format!("{v} was not stacked"))),
            None => {
                Env { entry: self.entry, resident: self.resident, state: &BTreeMap::new(), live: HashMap::new() }.get(v)
            }
        }
    }

    fn torch(&self, v: ValueId, e: tch::TchError) -> ExecError {
        ExecError::BadTensor {
            tensor: self.entry.tensors.get(&v).map(|t| t.name.clone()).unwrap_or_default(),
            reason: torch_message(&e),
        }
    }
}

/// The arguments with the size argument's rows (1, or -1 to be inferred) made `rows`.
fn resized(args: &[Arg], resize: Option<u32>, rows: i64) -> std::borrow::Cow<'_, [Arg]> {
    let Some(i) = resize.map(|i| i as usize) else { return std::borrow::Cow::Borrowed(args) };
    let mut args = args.to_vec();
    if let Some(Arg::Ints(sizes)) = args.get_mut(i) {
        if sizes.first() == Some(&1) {
            sizes[0] = rows;
        }
    }
    std::borrow::Cow::Owned(args)
}

/// Check a stacked output: the plan's type with `rows` rows.
fn check_rows(entry: &EntryPlan, v: ValueId, t: &Tensor, bindings: &Bindings, rows: i64) -> Result<(), ExecError> {
    let size = t.size();
    if size.first() != Some(&rows) {
        let name = entry.tensors.get(&v).map(|t| t.name.clone()).unwrap_or_default();
        let mut want = concrete_shape(entry, v, bindings)?;
        if let Some(first) = want.first_mut() {
            *first = rows;
        }
        return Err(ExecError::ShapeMismatch {
            tensor: v,
            name,
            expected: format!("{want:?} (the plan's type with one row per call)"),
            got: format!("{size:?}"),
        });
    }
    let row = t.f_narrow(0, 0, 1).map_err(|e| ExecError::BadTensor {
        tensor: entry.tensors.get(&v).map(|t| t.name.clone()).unwrap_or_default(),
        reason: torch_message(&e),
    })?;
    check(entry, v, &row, bindings)
}
