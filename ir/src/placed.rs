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
}

impl PlacementRecord {
    /// The index of a device by name.
    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name == name)
    }
}
