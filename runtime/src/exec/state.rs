//! State slot values, and appending to them in place.
//!
//! A decode step's KV update, as exported, is functional: `present = cat([past, new], d)`, its
//! output saved to the slot `past` came from. Run as written it copies the whole cache of every
//! layer at every step (O(context) per token, most of a batched step's time at a few hundred
//! tokens). The executor instead keeps such a slot's value as the front of a buffer with room
//! along `d` ([`Room`], reserved at the plan's memory bindings, which is what opening the session
//! reserved) and writes the new rows behind it: O(new rows) per step.
//!
//! Writing into a buffer is safe only where no tensor anyone holds can see the write. A room
//! records how far it is filled (shared by every handle to it); an append writes only at exactly
//! that mark, so every view ever made of the buffer (each `[0, mark)` at its time) keeps its
//! contents. A slot value that is not the filled front of its room (a call that failed after
//! appending left the mark further on; the value came from elsewhere) is copied into a new
//! buffer instead, as `cat` would. Rooms are only ever made here, never inferred from a tensor's
//! strides, so no weight, input or received tensor is ever written into.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use genie_codegen::{DevicePlan, EntryPlan, Step, TensorKind};
use genie_ir::{Arg, NodeId, ValueId};
use tch::Tensor;

use super::{concrete_shape, torch_message, ExecError};

/// A session's state slots on one device: slot id → value.
pub type Slots = BTreeMap<u32, SlotValue>;

/// The value of a state slot: the tensor the plan reads, and the room behind it if an in-place
/// append made it.
#[derive(Debug)]
pub struct SlotValue {
    tensor: Tensor,
    room: Option<Room>,
}

/// A buffer whose front `[0, filled)` along `dim` is (or was) a slot's value.
#[derive(Debug)]
struct Room {
    buffer: Tensor,
    dim: usize,
    filled: Arc<AtomicI64>,
}

impl SlotValue {
    /// A value held as it is (received, or computed by an op that is not an append).
    pub fn new(tensor: Tensor) -> SlotValue {
        SlotValue { tensor, room: None }
    }

    /// The tensor the plan reads.
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    /// Another handle to the same value and room (no copy).
    pub fn share(&self) -> SlotValue {
        SlotValue {
            tensor: self.tensor.shallow_clone(),
            room: self.room.as_ref().map(|r| Room {
                buffer: r.buffer.shallow_clone(),
                dim: r.dim,
                filled: r.filled.clone(),
            }),
        }
    }

    /// The bytes it holds: its whole buffer when it has room.
    pub fn bytes(&self) -> u64 {
        let t = self.room.as_ref().map_or(&self.tensor, |r| &r.buffer);
        if !t.defined() {
            return 0;
        }
        let elt = t.f_kind().map(|k| k.elt_size_in_bytes()).unwrap_or(0) as u64;
        (t.numel() as u64).saturating_mul(elt)
    }

    /// Whether this value is the front of a buffer with room behind it (for tests and stats).
    pub fn has_room(&self) -> bool {
        self.room.as_ref().is_some_and(|r| r.buffer.size()[r.dim] > self.tensor.size()[r.dim])
    }
}

/// A `cat` step that appends to the state slot it reads: `out = cat([past, new], dim)` where
/// `past` is read from `slot` and `out` is saved to the same slot.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Append {
    pub slot: u32,
    pub new: ValueId,
    pub dim: i64,
    pub out: ValueId,
}

/// The appends of one device's plan of `entry`, by node.
pub(crate) fn appends(entry: &EntryPlan, plan: &DevicePlan) -> HashMap<NodeId, Append> {
    let saved: HashMap<ValueId, u32> = plan
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::SaveState { tensor, slot } => Some((*tensor, *slot)),
            _ => None,
        })
        .collect();
    let mut found = HashMap::new();
    for step in &plan.steps {
        let Step::Exec { node, op, args, outputs, .. } = step else { continue };
        if op != "aten.cat.default" || outputs.len() != 1 {
            continue;
        }
        let (Some(Arg::Tensors(parts)), dim) = (args.first(), args.get(1)) else { continue };
        let dim = match dim {
            None => 0,
            Some(Arg::Int(d)) => *d,
            Some(_) => continue,
        };
        let [past, new] = parts.as_slice() else { continue };
        let Some(TensorKind::State { slot, .. }) = entry.tensors.get(past).map(|t| &t.kind) else { continue };
        if saved.get(&outputs[0]) == Some(slot) {
            found.insert(*node, Append { slot: *slot, new: *new, dim, out: outputs[0] });
        }
    }
    found
}

/// Run `append` for one call: `past` is the slot's value, `new` the rows to append. Writes
/// behind `past` when it is the filled front of its room, else copies both into a new buffer
/// with room up to the slot's size at the entry's memory bindings. `Ok(None)`: not an append
/// this can do in place (types or shapes differ); run the op as written.
pub(crate) fn append(
    entry: &EntryPlan,
    append: &Append,
    past: &SlotValue,
    new: &Tensor,
) -> Result<Option<SlotValue>, ExecError> {
    let p = &past.tensor;
    let rank = p.dim() as i64;
    let dim = if append.dim < 0 { append.dim + rank } else { append.dim };
    if !(0..rank).contains(&dim)
        || new.dim() as i64 != rank
        || p.f_kind().ok() != new.f_kind().ok()
        || p.device() != new.device()
    {
        return Ok(None);
    }
    let dim = dim as usize;
    let (mut want, have) = (p.size(), new.size());
    if want.iter().zip(&have).enumerate().any(|(d, (a, b))| d != dim && a != b) {
        return Ok(None);
    }
    let (len, rows) = (want[dim], have[dim]);
    let torch = |e: tch::TchError| ExecError::BadTensor {
        tensor: entry.tensors.get(&append.out).map(|t| t.name.clone()).unwrap_or_default(),
        reason: format!("appending to state slot {}: {}", append.slot, torch_message(&e)),
    };
    if let Some(room) = past.room.as_ref().filter(|r| r.dim == dim) {
        let capacity = room.buffer.size()[dim];
        // Claim [len, len + rows) only if nothing was written there since `past` was made.
        if len + rows <= capacity
            && room.filled.compare_exchange(len, len + rows, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            room.buffer.f_narrow(dim as i64, len, rows).map_err(torch)?.f_copy_(new).map_err(torch)?;
            let tensor = room.buffer.f_narrow(dim as i64, 0, len + rows).map_err(torch)?;
            let room = Room { buffer: room.buffer.shallow_clone(), dim, filled: room.filled.clone() };
            return Ok(Some(SlotValue { tensor, room: Some(room) }));
        }
    }
    // A new buffer, as large as the slot may grow under the memory bindings (what the session
    // reserved), at least what this step needs.
    let reserved = concrete_shape(entry, append.out, &entry.memory_bindings()).ok().and_then(|s| s.get(dim).copied());
    want[dim] = reserved.unwrap_or(0).max(len + rows);
    let kind = p.f_kind().map_err(torch)?;
    let buffer = Tensor::f_empty(want.as_slice(), (kind, p.device())).map_err(torch)?;
    buffer.f_narrow(dim as i64, 0, len).map_err(torch)?.f_copy_(p).map_err(torch)?;
    buffer.f_narrow(dim as i64, len, rows).map_err(torch)?.f_copy_(new).map_err(torch)?;
    let tensor = buffer.f_narrow(dim as i64, 0, len + rows).map_err(torch)?;
    Ok(Some(SlotValue { tensor, room: Some(Room { buffer, dim, filled: Arc::new(AtomicI64::new(len + rows)) }) }))
}
