//! Placement's result, kept in the program it placed: the device of every node (`ann.device`)
//! and this program-level record of the devices, the symbol values behind the estimates and
//! the estimate of each entry. Codegen reads both; nothing travels beside the program.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The pseudo-device that sends user inputs and receives outputs. No device may take the name.
pub const CLIENT: &str = "client";

/// One device placement used, as placement saw it (hardware only; where a worker runs is the
/// runtime's deployment, not the program's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlacedDevice {
    pub name: String,
    /// `cpu` or `cuda`.
    pub kind: String,
    pub memory_bytes: u64,
}

/// Placement's estimate of one call of an entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub latency_s: f64,
    pub compute_s: f64,
    pub transfer_s: f64,
    pub network_latency_s: f64,
}

/// What placement decided for the program as a whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlacementRecord {
    /// The policy placement optimised (`min-latency`, `balance-memory`).
    pub policy: String,
    /// `--max-seq`, the sequence length memory was planned for, if given.
    #[serde(default)]
    pub max_seq: Option<i64>,
    /// Devices in the cluster's order. Every node's `ann.device` names one.
    pub devices: Vec<PlacedDevice>,
    /// Per entry: symbol values for time estimates and bytes per call.
    #[serde(default)]
    pub cost_bindings: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per entry: symbol values for memory (KV caches at `--max-seq`, activation peaks).
    #[serde(default)]
    pub memory_bindings: BTreeMap<String, BTreeMap<String, i64>>,
    /// Per entry: the estimate of one call.
    #[serde(default)]
    pub estimates: BTreeMap<String, Estimate>,
    /// For a program with a prefill → decode pair: where each phase runs and why.
    #[serde(default)]
    pub phases: Option<PhaseRecord>,
    /// Copies of the program on disjoint devices (`--replicas R`): replica `r` runs what
    /// `devices[i]` runs on `replicas[r][i]`; `replicas[0]` is `devices`. Empty: one copy.
    #[serde(default)]
    pub replicas: Vec<Vec<PlacedDevice>>,
}

/// The shape of a generation request, which placement's time estimates assume for an LLM's
/// phases (`--prompt-len`, `--new-tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestShape {
    /// Tokens of the prompt: prefill's sequence length.
    pub prompt_len: i64,
    /// Tokens generated after the first: decode steps.
    pub new_tokens: i64,
}

impl Default for RequestShape {
    fn default() -> RequestShape {
        RequestShape { prompt_len: 512, new_tokens: 128 }
    }
}

impl RequestShape {
    /// The context a decode step sees on average over the generation: what its estimate uses.
    pub fn decode_context(&self) -> i64 {
        self.prompt_len.saturating_add(self.new_tokens / 2)
    }
}

/// Time to first token (the prefill side's calls, state handoff included) and time per output
/// token (the decode side's calls), estimated for a [`RequestShape`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseEstimate {
    pub ttft_s: f64,
    pub tpot_s: f64,
}

impl PhaseEstimate {
    /// `ttft + new_tokens × tpot`: the time of one whole request.
    pub fn request_s(&self, request: &RequestShape) -> f64 {
        self.ttft_s + request.new_tokens.max(0) as f64 * self.tpot_s
    }
}

/// Placement's decision about the phases of a program whose entries hand state to each other
/// (LLM prefill → decode): together on the same devices, or disaggregated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub request: RequestShape,
    /// True when some layer runs on different devices in prefill and decode, so state is
    /// handed over worker to worker after prefill.
    pub disaggregated: bool,
    /// The estimate of the chosen placement.
    pub chosen: PhaseEstimate,
    /// The estimate of the best placement that keeps the phases together (equal to `chosen`
    /// when that is it); none when no such placement fits.
    pub co_located: Option<PhaseEstimate>,
    /// The estimate of the best disaggregated placement found, when one fits.
    pub disaggregated_alternative: Option<PhaseEstimate>,
    /// Why, in words.
    pub reason: String,
}

impl PlacementRecord {
    /// The index of a device by name.
    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name == name)
    }
}
