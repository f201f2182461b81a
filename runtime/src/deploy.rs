//! Deployment: from a compiled plan to a connected cluster with the program loaded. This is the
//! one path every caller takes (`genie run`, `genie generate`, `genie bench`, the tests): where
//! each plan device's worker runs, how it is trusted, starting embedded workers, connecting,
//! uploading the weights the workers lack.
//!
//! A [`Deployment`] says where the workers are: started here on loopback
//! ([`Deployment::Local`], the embedded default), or already running ([`Deployment::Remote`]:
//! per device an address and a pinned certificate or a CA, plus the cluster's token). A cluster
//! file keeps that in its `deployment` section beside the hardware placement reads:
//!
//! ```ron
//! (
//!   devices: [(name: "gpu0", kind: cuda, memory: "80GiB")],
//!   deployment: (workers: {"gpu0": (address: "10.0.0.2:7070", fingerprint: "sha256:…")}),
//! )
//! ```
//! Files written before the section existed, with `address` and `fingerprint` on each device,
//! are read the same way (with a warning naming the move).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;

use genie_codegen::ProgramPlan;
use genie_ir::WeightStore;
use serde::Deserialize;
use tch::Device;

use crate::client::{ClientError, ClientOptions, Cluster, Program, WorkerAddress};
use crate::transport::Trust;
use crate::worker::{self, LocalWorkers, WorkerError};

/// Where the workers of a plan run.
#[derive(Clone, Debug)]
pub enum Deployment {
    /// One worker per plan device, started in this process on loopback with a self-signed
    /// certificate and a random token (the embedded default).
    Local { device: Device, memory: LocalMemory },
    /// Workers already running: per plan device, where it listens and how it is trusted.
    Remote { workers: BTreeMap<String, RemoteWorker>, token: String },
}

/// The memory an embedded worker enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalMemory {
    /// Its device's memory in the plan (so a plan that does not fit is refused as on real
    /// hardware).
    FromPlan,
    /// No limit.
    Unlimited,
}

/// A worker that runs elsewhere.
#[derive(Clone, Debug)]
pub struct RemoteWorker {
    pub address: SocketAddr,
    pub trust: Trust,
    /// The name a CA-signed certificate must carry (and the SNI): the host as the address was
    /// written.
    pub server_name: String,
}

impl RemoteWorker {
    /// A worker at `address` whose certificate is pinned by `fingerprint`.
    pub fn pinned(address: SocketAddr, fingerprint: impl Into<String>) -> RemoteWorker {
        RemoteWorker { address, trust: Trust::Fingerprint(fingerprint.into()), server_name: address.ip().to_string() }
    }
}

/// The host of a `host:port` address as written (brackets of an IPv6 literal removed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Why a deployment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The cluster file's deployment section does not parse or is inconsistent.
    #[error("cluster file deployment: {0}")]
    Spec(String),
    /// A worker's address does not resolve.
    #[error("resolving the address `{address}` of {device}")]
    Resolve {
        device: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
    /// A remote worker can be trusted neither by a pinned fingerprint nor a CA.
    #[error("device {device} has no `fingerprint` in the deployment section, and no CA was given")]
    NoTrust { device: String },
    /// The plan needs a device the deployment has no worker for.
    #[error("the plan needs device `{device}`, but the deployment has no worker for it (have: {have})")]
    MissingWorker { device: String, have: String },
    /// The weight store lacks weights the plan makes resident.
    #[error("the model files lack {} weight(s) the plan needs: {}", names.len(), names.join(", "))]
    MissingWeights { names: Vec<String> },
    /// Starting the embedded workers failed.
    #[error("starting local workers")]
    StartWorkers(#[source] WorkerError),
    /// Connecting or loading failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// The `deployment` section of a cluster file, as written.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct DeploymentSpec {
    /// Per device name: where its worker listens.
    pub workers: BTreeMap<String, WorkerEntry>,
}

/// One worker of a [`DeploymentSpec`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct WorkerEntry {
    /// `host:port`.
    pub address: String,
    /// The worker's certificate fingerprint (`sha256:…`, as `genie worker` prints it), pinned
    /// when connecting. Optional when a CA is given instead.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// What a deployment needs from a cluster file: its `deployment` section, and the addresses
/// devices carried before that section existed. Everything else is placement's.
#[derive(Deserialize)]
struct ClusterFile {
    #[serde(default)]
    devices: Vec<LegacyDevice>,
    #[serde(default)]
    deployment: Option<DeploymentSpec>,
}

#[derive(Deserialize)]
struct LegacyDevice {
    name: String,
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

impl DeploymentSpec {
    /// The deployment a cluster file (RON) describes, or `None` when it names no worker
    /// addresses (its devices are then started locally).
    pub fn from_cluster_ron(text: &str) -> Result<Option<DeploymentSpec>, DeployError> {
        let options = ron::Options::default().with_default_extension(ron::extensions::Extensions::IMPLICIT_SOME);
        let file: ClusterFile = options.from_str(text).map_err(|e| DeployError::Spec(e.to_string()))?;
        let legacy: BTreeMap<String, WorkerEntry> = file
            .devices
            .into_iter()
            .filter_map(|d| Some((d.name, WorkerEntry { address: d.address?, fingerprint: d.fingerprint })))
            .collect();
        match (file.deployment, legacy.is_empty()) {
            (Some(_), false) => Err(DeployError::Spec(format!(
                "devices {} carry an `address` and the file also has a `deployment` section; \
                 addresses and fingerprints belong in `deployment: (workers: {{...}})` only",
                legacy.keys().cloned().collect::<Vec<_>>().join(", ")
            ))),
            (Some(spec), true) => Ok(Some(spec)),
            (None, false) => {
                tracing::warn!(
                    "the cluster file gives worker addresses on its devices; they have moved to a \
                     `deployment: (workers: {{\"name\": (address: ..., fingerprint: ...)}})` section"
                );
                Ok(Some(DeploymentSpec { workers: legacy }))
            }
            (None, true) => Ok(None),
        }
    }

    /// Resolve every address and choose each worker's trust: the CA when one is given, else
    /// the pinned fingerprint.
    pub fn resolve(&self, token: String, ca: Option<&Path>) -> Result<Deployment, DeployError> {
        let mut workers = BTreeMap::new();
        for (device, entry) in &self.workers {
            let resolve_err =
                |source| DeployError::Resolve { device: device.clone(), address: entry.address.clone(), source };
            let address = entry.address.to_socket_addrs().map_err(resolve_err)?.next().ok_or_else(|| {
                resolve_err(std::io::Error::new(std::io::ErrorKind::NotFound, "resolves to no address"))
            })?;
            let trust = match (ca, &entry.fingerprint) {
                (Some(ca), _) => Trust::CaFile(ca.to_path_buf()),
                (None, Some(fp)) => Trust::Fingerprint(fp.clone()),
                (None, None) => return Err(DeployError::NoTrust { device: device.clone() }),
            };
            let server_name = host_of(&entry.address).to_string();
            workers.insert(device.clone(), RemoteWorker { address, trust, server_name });
        }
        Ok(Deployment::Remote { workers, token })
    }
}

/// Workers reached (and, for a local deployment, started): a connected [`Cluster`].
pub struct Connected {
    cluster: Cluster,
    addresses: Vec<WorkerAddress>,
    token: String,
    /// Embedded workers, stopped when this is dropped.
    _local: Option<LocalWorkers>,
}

impl Connected {
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Where each worker listens and how it is trusted (for a second client of the same
    /// workers).
    pub fn addresses(&self) -> &[WorkerAddress] {
        &self.addresses
    }

    /// The token the workers accept.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The same workers as a deployment another client can connect to.
    pub fn as_remote(&self) -> Deployment {
        let workers = self
            .addresses
            .iter()
            .map(|a| {
                let worker =
                    RemoteWorker { address: a.addr, trust: a.trust.clone(), server_name: a.server_name.clone() };
                (a.device.clone(), worker)
            })
            .collect();
        Deployment::Remote { workers, token: self.token.clone() }
    }

    /// Load a plan: check the weight store holds every weight the plan makes resident, then
    /// install the plan on every worker, uploading only the weights a worker lacks. A plan with
    /// replicas is loaded on each replica's workers (every one must be connected), and its
    /// sessions open on the least loaded.
    pub async fn load(&self, plan: Arc<ProgramPlan>, weights: &WeightStore) -> Result<Program, DeployError> {
        let mut missing: Vec<String> = plan
            .devices
            .iter()
            .flat_map(|d| &d.weights)
            .filter(|w| !weights.contains(&w.hash))
            .map(|w| w.name.clone())
            .collect();
        missing.dedup();
        if !missing.is_empty() {
            return Err(DeployError::MissingWeights { names: missing });
        }
        if plan.replicas.is_empty() {
            return Ok(self.cluster.load(plan, weights).await?);
        }
        let mut copies = Vec::new();
        for replica in plan.replica_devices() {
            let names: Vec<(String, String)> =
                plan.devices.iter().zip(&replica).map(|(d, r)| (d.name.clone(), r.name.clone())).collect();
            let view = self.cluster.renamed(&names)?;
            copies.push(view.load(plan.clone(), weights).await?);
        }
        Ok(Program::replicated(copies)?)
    }

    /// Tell every worker this client is done (embedded workers stop when this is dropped).
    pub async fn close(&self) {
        self.cluster.close().await;
    }
}

/// A program loaded on its workers.
pub struct Deployed {
    connected: Connected,
    program: Program,
}

impl Deployed {
    /// The loaded program: open sessions and run entries on it.
    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn cluster(&self) -> &Cluster {
        &self.connected.cluster
    }

    /// The connection this program was loaded over.
    pub fn connected(&self) -> &Connected {
        &self.connected
    }

    /// Tell every worker this client is done (embedded workers stop when this is dropped).
    pub async fn close(&self) {
        self.connected.close().await;
    }
}

/// Reach the workers of `devices` (name, memory) as `deployment` says, starting them for a local
/// deployment (where [`LocalMemory::FromPlan`] makes each enforce the memory given here). The
/// token in `options` is replaced by the deployment's.
pub async fn connect(
    deployment: &Deployment,
    devices: &[(String, u64)],
    options: &ClientOptions,
) -> Result<Connected, DeployError> {
    let (addresses, token, local) = match deployment {
        Deployment::Local { device, memory } => {
            worker::check_device(*device).map_err(DeployError::StartWorkers)?;
            let budgets: Vec<(String, Option<u64>)> = devices
                .iter()
                .map(|(name, bytes)| (name.clone(), (*memory == LocalMemory::FromPlan).then_some(*bytes)))
                .collect();
            let workers = worker::start_local_with_memory(&budgets, *device).map_err(DeployError::StartWorkers)?;
            (workers.addresses.clone(), workers.token.clone(), Some(workers))
        }
        Deployment::Remote { workers, token } => {
            let mut addresses = Vec::new();
            for (name, _) in devices {
                let w = workers.get(name).ok_or_else(|| DeployError::MissingWorker {
                    device: name.clone(),
                    have: workers.keys().cloned().collect::<Vec<_>>().join(", "),
                })?;
                addresses.push(WorkerAddress {
                    device: name.clone(),
                    addr: w.address,
                    trust: w.trust.clone(),
                    server_name: w.server_name.clone(),
                });
            }
            (addresses, token.clone(), None)
        }
    };
    let mut options = options.clone();
    options.token = token.clone();
    let cluster = Cluster::connect(addresses.clone(), options).await?;
    Ok(Connected { cluster, addresses, token, _local: local })
}

/// The devices a plan runs on, each once with its memory: its own, or every replica's.
pub fn plan_devices(plan: &ProgramPlan) -> Vec<(String, u64)> {
    let mut devices: Vec<(String, u64)> = Vec::new();
    for d in plan.replica_devices().into_iter().flatten() {
        if !devices.iter().any(|(name, _)| *name == d.name) {
            devices.push((d.name, d.memory_bytes));
        }
    }
    devices
}

/// Deploy a compiled plan: reach (or start) a worker for each of its devices (every replica's),
/// connect, load.
pub async fn deploy(
    plan: Arc<ProgramPlan>,
    weights: &WeightStore,
    deployment: &Deployment,
    options: &ClientOptions,
) -> Result<Deployed, DeployError> {
    let devices = plan_devices(&plan);
    let connected = connect(deployment, &devices, options).await?;
    let program = connected.load(plan, weights).await?;
    Ok(Deployed { connected, program })
}

/// Which of the deployment's workers (by device name) answer now: each reached on a fresh
/// connection that must say Hello and report its stats within `options.probe_timeout()`, all at
/// once. Embedded workers live in this process and always answer; a name the deployment has no
/// worker for does not.
pub async fn answering(deployment: &Deployment, names: &[String], options: &ClientOptions) -> BTreeSet<String> {
    let Deployment::Remote { workers, token } = deployment else {
        return names.iter().cloned().collect();
    };
    let within = options.probe_timeout();
    let mut options = options.clone();
    options.token = token.clone();
    options.retries = 0;
    options.request_timeout = within;
    options.transport.connect_timeout = within;
    let probes: Vec<_> = names
        .iter()
        .filter_map(|name| Some((name.clone(), workers.get(name)?.clone())))
        .map(|(name, w)| {
            let options = options.clone();
            async move {
                let address =
                    WorkerAddress { device: name.clone(), addr: w.address, trust: w.trust, server_name: w.server_name };
                let probe = async {
                    let cluster = Cluster::connect(vec![address], options).await?;
                    let stats = cluster.stats(&name).await;
                    tokio::spawn(async move { cluster.close().await });
                    stats
                };
                match tokio::time::timeout(within, probe).await {
                    Ok(Ok(_)) => Some(name),
                    Ok(Err(e)) => {
                        tracing::info!("{name} does not answer: {e}");
                        None
                    }
                    Err(_) => {
                        tracing::info!("{name} does not answer within {within:?}");
                        None
                    }
                }
            }
        })
        .collect();
    let mut alive = BTreeSet::new();
    for name in crate::client::join_all(probes).await.into_iter().flatten() {
        alive.insert(name);
    }
    alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deployment_section_names_addresses_and_trust() {
        let text = r#"(
            devices: [(name: "gpu0", kind: cuda, memory: "80GiB"), (name: "gpu1", kind: cuda, memory: "80GiB")],
            links: [(from: "client", to: "gpu0", bandwidth: 2e9)],
            deployment: (workers: {
                "gpu0": (address: "127.0.0.1:7070", fingerprint: "sha256:ab"),
                "gpu1": (address: "127.0.0.1:7071"),
            }),
        )"#;
        let spec = DeploymentSpec::from_cluster_ron(text).unwrap().expect("a deployment");
        assert_eq!(spec.workers["gpu0"].address, "127.0.0.1:7070");
        assert_eq!(spec.workers["gpu0"].fingerprint.as_deref(), Some("sha256:ab"));
        // gpu1 has no fingerprint: without a CA it cannot be trusted, with one it can.
        let err = spec.resolve("t".into(), None).unwrap_err();
        assert!(matches!(&err, DeployError::NoTrust { device } if device == "gpu1"), "{err}");
        let Deployment::Remote { workers, token } = spec.resolve("t".into(), Some(Path::new("ca.pem"))).unwrap() else {
            panic!("a remote deployment")
        };
        assert_eq!(token, "t");
        assert_eq!(workers["gpu1"].address, "127.0.0.1:7071".parse().unwrap());
        assert_eq!(workers["gpu1"].server_name, "127.0.0.1", "a CA-signed certificate is checked for the host written");
        assert_eq!(host_of("[::1]:7070"), "::1");
        assert_eq!(host_of("gpu0.example.com:7070"), "gpu0.example.com");
        assert!(matches!(&workers["gpu0"].trust, Trust::CaFile(p) if p == Path::new("ca.pem")));
    }

    #[test]
    fn addresses_on_devices_still_work_but_not_beside_a_section() {
        let legacy = r#"(devices: [
            (name: "gpu0", kind: cuda, memory: "80GiB", address: "127.0.0.1:7070", fingerprint: "sha256:ab"),
            (name: "gpu1", kind: cuda, memory: "80GiB"),
        ])"#;
        let spec = DeploymentSpec::from_cluster_ron(legacy).unwrap().expect("a deployment");
        assert_eq!(spec.workers.len(), 1);
        assert_eq!(spec.workers["gpu0"].fingerprint.as_deref(), Some("sha256:ab"));
        let Deployment::Remote { workers, .. } = spec.resolve("t".into(), None).unwrap() else {
            panic!("a remote deployment")
        };
        assert!(matches!(&workers["gpu0"].trust, Trust::Fingerprint(f) if f == "sha256:ab"));
        let both = r#"(devices: [(name: "gpu0", kind: cuda, memory: 1, address: "h:1")],
                       deployment: (workers: {"gpu0": (address: "h:1")}))"#;
        let err = DeploymentSpec::from_cluster_ron(both).unwrap_err().to_string();
        assert!(err.contains("gpu0") && err.contains("deployment"), "{err}");
        let local = r#"(devices: [(name: "gpu0", kind: cuda, memory: 1)])"#;
        assert_eq!(DeploymentSpec::from_cluster_ron(local).unwrap(), None);
        assert!(matches!(DeploymentSpec::from_cluster_ron("(devices: 7)"), Err(DeployError::Spec(_))));
    }

    #[test]
    fn an_unresolvable_address_names_the_device() {
        let text = r#"(devices: [], deployment: (workers: {"gpu0": (address: "no port here", fingerprint: "x")}))"#;
        let spec = DeploymentSpec::from_cluster_ron(text).unwrap().unwrap();
        let err = spec.resolve("t".into(), None).unwrap_err();
        assert!(matches!(&err, DeployError::Resolve { device, .. } if device == "gpu0"), "{err}");
    }
}
