//! The plan data model: what a compiled program is, for the runtime and for people.
//!
//! Tensor ids are the SRG's value ids of the entry (`%12`), so a plan reads next to the graph it
//! came from. Every map is a `BTreeMap` and every list is in a stated order, so the same inputs
//! give byte-identical RON and binary.

use std::collections::BTreeMap;

use genie_ir::{Arg, Batching, HexBytes, InputRole, NodeId, Phase, Port, Residency, TensorType, ValueId, WeightHash};
use serde::{Deserialize, Serialize};

/// Format version written into every plan (RON and binary). Version 2: devices carry no
/// address (where a worker runs is the runtime's deployment), inputs carry their role.
/// Version 3: state handoffs (a state output sent to its slot on another device), the phase
/// decision. Version 4: each `Exec` says how it runs in a batched step. Version 5: replicas.
/// Version 6: fused element-wise regions of each device plan.
pub const PLAN_FORMAT_VERSION: u32 = 6;

/// Placement's estimate of one call of an entry (defined in the IR's placement record).
pub use genie_ir::Estimate;
/// The pseudo-device that sends user inputs and receives outputs (defined once, in the IR).
pub use genie_ir::CLIENT;
/// Placement's decision about an LLM's phases (defined in the IR's placement record).
pub use genie_ir::{PhaseEstimate, PhaseRecord, PlacedDevice, RequestShape};

/// A compiled program: per entry, a plan per device; the resident set of each device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramPlan {
    pub version: u32,
    pub program: String,
    pub policy: Option<String>,
    pub max_seq: Option<i64>,
    /// Devices in the cluster's order, with what stays resident on each.
    pub devices: Vec<DeviceInfo>,
    pub state_slots: Vec<StateSlot>,
    pub entries: Vec<EntryPlan>,
    /// For a program whose prefill hands state to decode: together or apart, and why.
    pub phases: Option<PhaseRecord>,
    /// Copies of the program on disjoint devices (`genie compile --replicas R`): replica `r`
    /// runs device `devices[i]`'s part on `replicas[r][i]`; `replicas[0]` names `devices`
    /// themselves. Empty: one copy. A session runs on one replica, chosen when it opens.
    #[serde(default)]
    pub replicas: Vec<Vec<PlacedDevice>>,
}

/// A device and its resident set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub name: String,
    pub kind: String,
    pub memory_bytes: u64,
    /// Weights resident here (uploaded once, used by every entry), by hash.
    pub weights: Vec<ResidentWeight>,
    /// Resident weights and constants, in bytes.
    pub weight_bytes: u64,
    /// State slots held here.
    pub slots: Vec<u32>,
    /// KV-cache slots at the memory bindings.
    pub kv_bytes: u64,
    /// The largest activation peak of any entry.
    pub activation_bytes: u64,
    /// `weight_bytes + kv_bytes + activation_bytes`.
    pub peak_bytes: u64,
    /// Nodes executed here, over all entries.
    pub nodes: usize,
}

/// A weight handle in a device's resident set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResidentWeight {
    pub hash: WeightHash,
    pub bytes: u64,
    /// The first name a graph gives it.
    pub name: String,
}

/// State carried between calls (a KV cache): one slot per connected set of state bindings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateSlot {
    pub id: u32,
    /// `entry.input` of its first binding target.
    pub name: String,
    pub device: String,
    /// The type of its first binding target (symbolic).
    pub ty: TensorType,
    /// Bytes reserved, at the memory bindings.
    pub bytes: u64,
    /// Entry outputs written into the slot at the end of a call.
    pub writes: Vec<Port>,
    /// Entry inputs read from the slot at the start of a call.
    pub reads: Vec<Port>,
}

/// One entry graph's plans.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryPlan {
    pub name: String,
    pub phase: Phase,
    /// Symbols, their ranges, the values used for bytes and memory, and where the runtime can
    /// read each from a tensor's shape.
    pub symbols: Vec<SymbolInfo>,
    /// Every tensor a step names.
    pub tensors: BTreeMap<ValueId, TensorInfo>,
    /// Graph inputs in order: user inputs come from the client, state inputs from their slot.
    pub inputs: Vec<IoPort>,
    /// Graph outputs in order: user outputs go to the client, state outputs into their slot.
    pub outputs: Vec<IoPort>,
    /// Every network transfer of one call.
    pub transfers: Vec<Transfer>,
    /// The state outputs this entry hands to a slot on another device (prefill's KV cache going
    /// to decode's device), each one of `transfers`.
    pub handoffs: Vec<Handoff>,
    /// One plan per device that has work, in the cluster's order, then the client's.
    pub plans: Vec<DevicePlan>,
    /// Bytes of all transfers at the cost bindings.
    pub bytes_per_call: u64,
    /// Network messages in sequence on the longest chain (client → w0 → w1 → client is 3).
    pub hops: u32,
    pub estimate: Option<Estimate>,
}

/// A symbol of an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SymbolInfo {
    pub name: String,
    pub min: i64,
    pub max: Option<i64>,
    /// The value used for bytes per call.
    pub cost_value: i64,
    /// The value used for memory.
    pub memory_value: i64,
    /// Graph inputs (user or state) one of whose dims is exactly this symbol.
    pub sources: Vec<DimSource>,
}

/// "Dim `dim` of input tensor `tensor`".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DimSource {
    pub tensor: ValueId,
    pub dim: u32,
}

/// A graph input or output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IoPort {
    pub name: String,
    pub tensor: ValueId,
    /// The state slot, for state inputs and outputs.
    pub slot: Option<u32>,
    /// The device the tensor is on (the client for user inputs).
    pub device: String,
    /// For a user input: what it carries (token ids, mask, positions), as the annotate pass
    /// found it.
    #[serde(default)]
    pub role: Option<InputRole>,
}

/// A tensor of an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub ty: TensorType,
    pub kind: TensorKind,
    pub residency: Option<Residency>,
    /// Bytes at the memory bindings.
    pub bytes: u64,
}

/// Where a tensor comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TensorKind {
    /// The i-th graph input, sent by the client each call.
    Input { index: u32 },
    /// The i-th graph input, read from a state slot.
    State { index: u32, slot: u32 },
    /// A resident weight.
    Weight { hash: WeightHash },
    /// A small inline constant (little-endian bytes of the type).
    Const { data: HexBytes },
    /// Output `output` of node `node`.
    Node { node: NodeId, output: u32 },
}

/// One tensor moving between two nodes of the cluster in one call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: u32,
    pub tensor: ValueId,
    /// The tensor's name.
    pub name: String,
    pub from: String,
    pub to: String,
    /// Bytes at the cost bindings.
    pub bytes: u64,
    pub residency: Option<Residency>,
    /// The edge: the producing node (none for inputs) and the consumers on `to` (none for the
    /// client).
    pub producer: Option<NodeId>,
    pub consumers: Vec<NodeId>,
}

/// A state output sent, once per call, from the device that produced it to its slot's device,
/// which saves it there: the one time prefill's KV cache crosses the network when decode runs
/// elsewhere. Sent right after it is produced, so one layer's state travels while the next
/// layer computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Handoff {
    pub transfer: u32,
    pub slot: u32,
    /// The state output's name.
    pub output: String,
    pub from: String,
    pub to: String,
    /// Bytes at the cost bindings.
    pub bytes: u64,
    /// True when the sender still computes after sending it: the transfer overlaps the rest of
    /// the call.
    pub overlaps_compute: bool,
}

/// What one device does in one call, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevicePlan {
    pub device: String,
    pub steps: Vec<Step>,
    /// The largest live activation bytes while running these steps (memory bindings).
    pub activation_peak_bytes: u64,
    /// Runs of element-wise steps an executor may run as one compiled loop ([`crate::fusion`]).
    #[serde(default)]
    pub fused: Vec<crate::fusion::FusedRegion>,
}

/// One step of a device plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Receive a tensor (transfer `transfer`) from another device or the client.
    Recv { tensor: ValueId, from: String, transfer: u32 },
    /// Run a node: its op (ATen overload name) and arguments, tensors by id, and how it runs
    /// when calls of several sessions execute as one batched step (the node's `mark-batching`
    /// mark; once per call where the entry is not marked).
    Exec { node: NodeId, op: String, args: Vec<Arg>, outputs: Vec<ValueId>, batching: Batching },
    /// Send a tensor (transfer `transfer`) to another device or the client.
    Send { tensor: ValueId, to: String, transfer: u32 },
    /// Drop a tensor after its last use.
    Free { tensor: ValueId },
    /// At the end of a call: the tensor becomes the slot's value for the next call.
    SaveState { tensor: ValueId, slot: u32 },
}

impl Step {
    /// Tensors the step reads or writes.
    pub fn tensors(&self) -> Vec<ValueId> {
        match self {
            Step::Recv { tensor, .. } | Step::Send { tensor, .. } | Step::Free { tensor } => vec![*tensor],
            Step::SaveState { tensor, .. } => vec![*tensor],
            Step::Exec { args, outputs, .. } => {
                let mut v: Vec<ValueId> = args.iter().flat_map(Arg::values).collect();
                v.extend(outputs.iter().copied());
                v
            }
        }
    }
}

impl ProgramPlan {
    /// The entry plan with this name.
    pub fn entry(&self, name: &str) -> Option<&EntryPlan> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The device info with this name.
    pub fn device(&self, name: &str) -> Option<&DeviceInfo> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// Every copy of the program, each as the cluster devices that run `devices` in order: the
    /// recorded replicas, or the one copy on `devices` themselves.
    pub fn replica_devices(&self) -> Vec<Vec<PlacedDevice>> {
        if self.replicas.is_empty() {
            let own = self
                .devices
                .iter()
                .map(|d| PlacedDevice { name: d.name.clone(), kind: d.kind.clone(), memory_bytes: d.memory_bytes })
                .collect();
            vec![own]
        } else {
            self.replicas.clone()
        }
    }
}

impl EntryPlan {
    /// The plan of one device (or the client).
    pub fn plan(&self, device: &str) -> Option<&DevicePlan> {
        self.plans.iter().find(|p| p.device == device)
    }

    /// The symbol values this entry's memory is reckoned at (each symbol's `memory_value`).
    pub fn memory_bindings(&self) -> std::collections::BTreeMap<String, i64> {
        self.symbols.iter().map(|s| (s.name.clone(), s.memory_value)).collect()
    }
}
