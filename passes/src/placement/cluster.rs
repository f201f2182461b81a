//! The cluster spec: the hardware placement plans for. Devices (kind, memory, peak FLOP/s,
//! memory bandwidth) and the links between them and the client. Read from RON; `--workers N`
//! builds a local one.
//!
//! ```ron
//! (
//!   devices: [
//!     (name: "gpu0", kind: cuda, memory: "80GiB", flops: 9.9e14, mem_bandwidth: 3.35e12),
//!     (name: "gpu1", kind: cuda, memory: "80GiB"),
//!   ],
//!   links: [(from: "client", to: "gpu0", bandwidth: 1.25e9, latency: 2e-4)],
//!   default_link: (bandwidth: 1.25e9, latency: 1e-4),
//!   deployment: (workers: {"gpu0": (address: "10.0.0.2:7070", fingerprint: "sha256:…")}),
//! )
//! ```
//! Where each device's worker runs (address, certificate fingerprint, token) is deployment, not
//! hardware: the file may carry it in a `deployment` section, which the runtime reads
//! (`genie_runtime::deploy`) and placement ignores, as it ignores the `address` and
//! `fingerprint` that devices carried before that section existed.
//!
//! The client is a node of the cluster named [`CLIENT`]; links may name it. A link applies in both
//! directions unless the reverse direction is listed too. Pairs without a link use
//! `default_link`. Sizes are bytes, or strings with a unit (`64MB`, `2GiB`; `K`/`M`/`G`/`T` alone
//! are binary units). Bandwidths are bytes per second, latencies seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The name of the client node. No device may take it.
pub use genie_ir::CLIENT;

/// What kind of processor a device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cpu,
    Cuda,
}

impl DeviceKind {
    /// `cpu` or `cuda`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Cuda => "cuda",
        }
    }

    /// Peak FLOP/s assumed when the spec gives none.
    pub fn default_flops(self) -> f64 {
        match self {
            DeviceKind::Cpu => 1.0e11,
            DeviceKind::Cuda => 5.0e13,
        }
    }

    /// Memory bandwidth (bytes/s) assumed when the spec gives none.
    pub fn default_mem_bandwidth(self) -> f64 {
        match self {
            DeviceKind::Cpu => 2.0e10,
            DeviceKind::Cuda => 1.0e12,
        }
    }

    /// Fixed cost of launching one op (seconds) assumed when the spec gives none.
    pub fn default_op_overhead(self) -> f64 {
        match self {
            DeviceKind::Cpu => 1.0e-6,
            DeviceKind::Cuda => 5.0e-6,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One accelerator (or CPU) a worker offers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub name: String,
    pub kind: DeviceKind,
    /// Memory in bytes (RON also takes `"2GiB"`).
    #[serde(deserialize_with = "de_size")]
    pub memory: u64,
    /// Peak FLOP/s; default by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// Memory bandwidth in bytes/s; default by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_bandwidth: Option<f64>,
    /// Fixed seconds per op launched; default by kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_overhead: Option<f64>,
    /// Held in reserve: placement leaves it out, and a recovery from a lost worker may place
    /// the lost part on it (`spare: true`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub spare: bool,
}

impl DeviceSpec {
    /// Peak FLOP/s (given or default).
    pub fn peak_flops(&self) -> f64 {
        self.flops.unwrap_or(self.kind.default_flops())
    }

    /// Memory bandwidth (given or default).
    pub fn bandwidth(&self) -> f64 {
        self.mem_bandwidth.unwrap_or(self.kind.default_mem_bandwidth())
    }

    /// Per-op overhead (given or default).
    pub fn overhead(&self) -> f64 {
        self.op_overhead.unwrap_or(self.kind.default_op_overhead())
    }
}

/// Bandwidth and latency of a link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkParams {
    /// Bytes per second.
    #[serde(default = "default_bandwidth")]
    pub bandwidth: f64,
    /// Seconds per message.
    #[serde(default = "default_latency")]
    pub latency: f64,
}

fn default_bandwidth() -> f64 {
    1.25e9
}

fn default_latency() -> f64 {
    1.0e-4
}

impl Default for LinkParams {
    /// 10 Gb/s and 100 µs.
    fn default() -> Self {
        LinkParams { bandwidth: default_bandwidth(), latency: default_latency() }
    }
}

impl LinkParams {
    /// Loopback between local processes over tuned QUIC (DESIGN.md: about 4 GB/s, ~80 µs).
    pub fn loopback() -> LinkParams {
        LinkParams { bandwidth: 4.0e9, latency: 8.0e-5 }
    }

    /// Seconds to move `bytes` over this link as one message (0 for nothing).
    pub fn time(&self, bytes: u64) -> f64 {
        if bytes == 0 {
            0.0
        } else {
            self.latency + bytes as f64 / self.bandwidth
        }
    }
}

/// A link between two nodes (devices or the client).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkSpec {
    pub from: String,
    pub to: String,
    #[serde(default = "default_bandwidth")]
    pub bandwidth: f64,
    #[serde(default = "default_latency")]
    pub latency: f64,
}

/// The cluster: devices, links and the default link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    pub devices: Vec<DeviceSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    #[serde(default)]
    pub default_link: LinkParams,
}

/// A cluster spec that cannot be used. Each variant names the field at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClusterError {
    /// The RON text does not parse as a cluster spec.
    #[error("not a cluster spec: {0}")]
    Parse(String),
    /// A field has a value it cannot take.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A size string (`64MB`) does not parse.
    #[error("`{0}` is not a size (write bytes or a number with a unit: 64MB, 2GiB)")]
    Size(String),
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ClusterError {
    ClusterError::Invalid { field: field.into(), reason: reason.into() }
}

/// Parse a size: bytes, or a number with a unit (`B`, `KB`/`MB`/`GB`/`TB` decimal,
/// `KiB`/`MiB`/`GiB`/`TiB` and the bare `K`/`M`/`G`/`T` binary). Case-insensitive.
pub fn parse_size(text: &str) -> Result<u64, ClusterError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.replace('_', "").parse().map_err(|_| ClusterError::Size(text.to_string()))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        _ => return Err(ClusterError::Size(text.to_string())),
    };
    let bytes = num * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(ClusterError::Size(text.to_string()));
    }
    Ok(bytes.round() as u64)
}

/// Deserialise a size from an integer, a float or a string with a unit.
fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a size: bytes or a string such as \"2GiB\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom("a size cannot be negative"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u64, E> {
            if v.is_finite() && v >= 0.0 {
                Ok(v.round() as u64)
            } else {
                Err(E::custom("a size must be a finite, non-negative number"))
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V)
}

/// Memory of each local worker when `--worker-memory` is not given.
pub const DEFAULT_WORKER_MEMORY: u64 = 8 << 30;
/// Local workers when no cluster is given at all.
pub const DEFAULT_WORKERS: usize = 2;

impl ClusterSpec {
    /// `n` identical local CPU workers (`worker0`, `worker1`, …) on loopback.
    pub fn local_workers(n: usize, memory: u64) -> ClusterSpec {
        let devices = (0..n)
            .map(|i| DeviceSpec {
                name: format!("worker{i}"),
                kind: DeviceKind::Cpu,
                memory,
                flops: None,
                mem_bandwidth: None,
                op_overhead: None,
                spare: false,
            })
            .collect();
        ClusterSpec { devices, links: Vec::new(), default_link: LinkParams::loopback() }
    }

    /// Parse RON (with implicit `Some`, so `flops: 1e14` works) and validate. A `deployment`
    /// section, and the `address`/`fingerprint` devices once carried, are the runtime's and are
    /// skipped here.
    pub fn from_ron(text: &str) -> Result<ClusterSpec, ClusterError> {
        let opts = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let spec: ClusterSpec = opts.from_str(text).map_err(|e| ClusterError::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Pretty RON of the spec.
    pub fn to_ron(&self) -> String {
        let config = ron::ser::PrettyConfig::new().indentor("  ".to_string()).struct_names(false);
        ron::ser::to_string_pretty(self, config).unwrap_or_default()
    }

    /// Check every field; the error names the one at fault (`devices[1].memory`).
    pub fn validate(&self) -> Result<(), ClusterError> {
        if self.devices.is_empty() {
            return Err(invalid("devices", "the cluster has no devices"));
        }
        let positive = |field: String, v: Option<f64>| -> Result<(), ClusterError> {
            match v {
                Some(x) if !(x.is_finite() && x > 0.0) => Err(invalid(field, format!("must be positive, got {x}"))),
                _ => Ok(()),
            }
        };
        let mut names = BTreeSet::new();
        for (i, d) in self.devices.iter().enumerate() {
            let f = |name: &str| format!("devices[{i}].{name}");
            if d.name.is_empty() {
                return Err(invalid(f("name"), "must not be empty"));
            }
            if d.name == CLIENT {
                return Err(invalid(f("name"), format!("`{CLIENT}` is the client's name")));
            }
            if !names.insert(d.name.as_str()) {
                return Err(invalid(f("name"), format!("`{}` is used by another device", d.name)));
            }
            if d.memory == 0 {
                return Err(invalid(f("memory"), "must be positive"));
            }
            positive(f("flops"), d.flops)?;
            positive(f("mem_bandwidth"), d.mem_bandwidth)?;
            if let Some(o) = d.op_overhead {
                if !(o.is_finite() && o >= 0.0) {
                    return Err(invalid(f("op_overhead"), format!("must be non-negative, got {o}")));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (i, l) in self.links.iter().enumerate() {
            let f = |name: &str| format!("links[{i}].{name}");
            for (field, end) in [("from", &l.from), ("to", &l.to)] {
                if end != CLIENT && !names.contains(end.as_str()) {
                    return Err(invalid(f(field), format!("no device named `{end}`")));
                }
            }
            if l.from == l.to {
                return Err(invalid(f("to"), "a link joins two different nodes"));
            }
            if !seen.insert((l.from.as_str(), l.to.as_str())) {
                return Err(invalid(f("to"), format!("{} -> {} is listed twice", l.from, l.to)));
            }
            positive(f("bandwidth"), Some(l.bandwidth))?;
            if !(l.latency.is_finite() && l.latency >= 0.0) {
                return Err(invalid(f("latency"), format!("must be non-negative, got {}", l.latency)));
            }
        }
        positive("default_link.bandwidth".into(), Some(self.default_link.bandwidth))?;
        if !(self.default_link.latency.is_finite() && self.default_link.latency >= 0.0) {
            return Err(invalid("default_link.latency", "must be non-negative"));
        }
        Ok(())
    }

    /// Index of a device by name.
    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.name == name)
    }

    /// The link table: `table[a][b]` for nodes `0..n` (devices in order, then the client at `n`).
    pub fn link_table(&self) -> Vec<Vec<LinkParams>> {
        let n = self.devices.len();
        let index = |name: &str| if name == CLIENT { Some(n) } else { self.device_index(name) };
        let mut given: BTreeMap<(usize, usize), LinkParams> = BTreeMap::new();
        for l in &self.links {
            if let (Some(a), Some(b)) = (index(&l.from), index(&l.to)) {
                given.insert((a, b), LinkParams { bandwidth: l.bandwidth, latency: l.latency });
            }
        }
        (0..=n)
            .map(|a| {
                (0..=n)
                    .map(|b| given.get(&(a, b)).or_else(|| given.get(&(b, a))).copied().unwrap_or(self.default_link))
                    .collect()
            })
            .collect()
    }

    /// The part of the cluster made of `names` (in the cluster's order): those devices, the
    /// links among them and to the client, the same default link.
    pub fn subset(&self, names: &[&str]) -> ClusterSpec {
        let keep = |n: &str| n == CLIENT || names.contains(&n);
        ClusterSpec {
            devices: self.devices.iter().filter(|d| names.contains(&d.name.as_str())).cloned().collect(),
            links: self.links.iter().filter(|l| keep(&l.from) && keep(&l.to)).cloned().collect(),
            default_link: self.default_link,
        }
    }

    /// The devices placement may use: every one that is not a spare.
    pub fn without_spares(&self) -> ClusterSpec {
        let names: Vec<&str> = self.devices.iter().filter(|d| !d.spare).map(|d| d.name.as_str()).collect();
        self.subset(&names)
    }

    /// The part of the cluster made of `names` with none of them held in reserve: what a
    /// recovery places on (the devices still alive, spares included).
    pub fn recovering_on(&self, names: &[&str]) -> ClusterSpec {
        let mut spec = self.subset(names);
        for d in &mut spec.devices {
            d.spare = false;
        }
        spec
    }

    /// Total memory of all devices.
    pub fn total_memory(&self) -> u64 {
        self.devices.iter().map(|d| d.memory).fold(0, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("64MB").unwrap(), 64_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("2G").unwrap(), 2 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1.5 KiB").unwrap(), 1536);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn ron_round_trips_and_defaults_apply() {
        let text = r#"(
            devices: [
                (name: "gpu0", kind: cuda, memory: "80GiB", flops: 9.9e14),
                (name: "cpu0", kind: cpu, memory: 1000000),
            ],
            links: [(from: "client", to: "gpu0", bandwidth: 2e9)],
        )"#;
        let spec = ClusterSpec::from_ron(text).unwrap();
        assert_eq!(spec.devices[0].memory, 80 << 30);
        assert_eq!(spec.devices[1].peak_flops(), DeviceKind::Cpu.default_flops());
        let t = spec.link_table();
        assert_eq!(t[2][0].bandwidth, 2e9, "client -> gpu0 as given");
        assert_eq!(t[0][2].bandwidth, 2e9, "the reverse direction too");
        assert_eq!(t[0][1], LinkParams::default());
        let again = ClusterSpec::from_ron(&spec.to_ron()).unwrap();
        assert_eq!(again, spec);
    }

    #[test]
    fn deployment_and_legacy_addresses_are_not_hardware() {
        let text = r#"(
            devices: [
                (name: "gpu0", kind: cuda, memory: "80GiB", address: "10.0.0.2:7070", fingerprint: "sha256:ab"),
                (name: "gpu1", kind: cuda, memory: "80GiB"),
            ],
            deployment: (workers: {"gpu1": (address: "10.0.0.3:7070", fingerprint: "sha256:cd")}, ca: "ca.pem"),
        )"#;
        let spec = ClusterSpec::from_ron(text).unwrap();
        assert_eq!(spec.devices.len(), 2);
        assert!(!spec.to_ron().contains("address"), "{}", spec.to_ron());
        assert!(!spec.to_ron().contains("deployment"), "{}", spec.to_ron());
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |text: &str| ClusterSpec::from_ron(text).unwrap_err().to_string();
        assert!(bad("(devices: [])").starts_with("devices:"));
        assert!(bad(r#"(devices: [(name: "a", kind: cpu, memory: 0)])"#).starts_with("devices[0].memory"));
        assert!(bad(r#"(devices: [(name: "a", kind: cpu, memory: 1), (name: "a", kind: cpu, memory: 1)])"#)
            .starts_with("devices[1].name"));
        assert!(bad(r#"(devices: [(name: "client", kind: cpu, memory: 1)])"#).starts_with("devices[0].name"));
        assert!(bad(r#"(devices: [(name: "a", kind: cpu, memory: 1, flops: -1.0)])"#).starts_with("devices[0].flops"));
        assert!(bad(r#"(devices: [(name: "a", kind: cpu, memory: 1)], links: [(from: "a", to: "b")])"#)
            .starts_with("links[0].to"));
        assert!(bad(
            r#"(devices: [(name: "a", kind: cpu, memory: 1)], links: [(from: "a", to: "client", bandwidth: 0.0)])"#
        )
        .starts_with("links[0].bandwidth"));
        assert!(bad(r#"(devices: [(name: "a", kind: tpu, memory: 1)])"#).starts_with("not a cluster spec"));
    }

    #[test]
    fn local_workers_are_named_in_order() {
        let c = ClusterSpec::local_workers(3, 1 << 20);
        c.validate().unwrap();
        let names: Vec<&str> = c.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["worker0", "worker1", "worker2"]);
    }
}
