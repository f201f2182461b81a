//! Which cluster a caller means: a cluster file, or N embedded workers of some memory. The CLI's
//! `--cluster`/`--workers`/`--worker-memory`/`--device`/`--token`/`--ca` and the Python
//! package's `genie.local(...)`/`genie.connect(cluster=...)` both describe it with a
//! [`ClusterChoice`], so both place on the same devices and reach the same workers.

use std::path::PathBuf;

use genie_passes::placement::{self, cluster, ClusterSpec};
use genie_runtime::deploy::{DeployError, Deployment, DeploymentSpec, LocalMemory};

/// Why a cluster choice does not describe a usable cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("reading the cluster file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster file {path}")]
    Spec {
        path: PathBuf,
        #[source]
        source: cluster::ClusterError,
    },
    #[error("cluster file {path}")]
    Deployment {
        path: PathBuf,
        #[source]
        source: Box<DeployError>,
    },
    #[error("the cluster has remote workers: give their token")]
    NoToken,
    #[error("embedded workers: {0}")]
    Local(String),
}

/// A cluster as its user names it.
#[derive(Clone, Debug, Default)]
pub struct ClusterChoice {
    /// A cluster file (RON): its devices, and in its `deployment` section where each worker
    /// listens. Without a deployment section the workers are started in this process.
    pub file: Option<PathBuf>,
    /// Embedded workers (no file): how many ([`cluster::DEFAULT_WORKERS`] if unset).
    pub workers: Option<usize>,
    /// Embedded workers: each one's memory, e.g. `1GiB` ([`cluster::DEFAULT_WORKER_MEMORY`]).
    pub worker_memory: Option<String>,
    /// Where embedded workers run ops: `cpu` (default) or `cuda:N`.
    pub device: Option<String>,
    /// The remote workers' token.
    pub token: Option<String>,
    /// Trust remote workers whose certificate this CA (PEM) signed, not pinned fingerprints.
    pub ca: Option<PathBuf>,
}

impl ClusterChoice {
    /// The devices placement plans for.
    pub fn spec(&self) -> Result<ClusterSpec, ClusterError> {
        if let Some(path) = &self.file {
            let text = self.read_file(path)?;
            return ClusterSpec::from_ron(&text).map_err(|source| ClusterError::Spec { path: path.clone(), source });
        }
        let n = self.workers.unwrap_or(cluster::DEFAULT_WORKERS);
        if n == 0 {
            return Err(ClusterError::Local("at least one worker is needed".into()));
        }
        let memory = match &self.worker_memory {
            Some(s) => placement::parse_size(s).map_err(|e| ClusterError::Local(format!("worker memory: {e}")))?,
            None => cluster::DEFAULT_WORKER_MEMORY,
        };
        Ok(ClusterSpec::local_workers(n, memory))
    }

    /// Where the workers are: the file's deployment section (with this choice's token and CA),
    /// else embedded workers that enforce their devices' memory.
    pub fn deployment(&self) -> Result<Deployment, ClusterError> {
        let local = || -> Result<Deployment, ClusterError> {
            let text = self.device.as_deref().unwrap_or("cpu");
            let device = genie_runtime::worker::parse_device(text)
                .ok_or_else(|| ClusterError::Local(format!("device `{text}` is not `cpu` or `cuda:N`")))?;
            Ok(Deployment::Local { device, memory: LocalMemory::FromPlan })
        };
        let Some(path) = &self.file else { return local() };
        let text = self.read_file(path)?;
        let spec = DeploymentSpec::from_cluster_ron(&text)
            .map_err(|source| ClusterError::Deployment { path: path.clone(), source: Box::new(source) })?;
        let Some(spec) = spec else { return local() };
        let token = self.token.clone().ok_or(ClusterError::NoToken)?;
        spec.resolve(token, self.ca.as_deref())
            .map_err(|source| ClusterError::Deployment { path: path.clone(), source: Box::new(source) })
    }

    fn read_file(&self, path: &PathBuf) -> Result<String, ClusterError> {
        std::fs::read_to_string(path).map_err(|source| ClusterError::Read { path: path.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_workers_by_count_and_memory() {
        let choice = ClusterChoice { workers: Some(3), worker_memory: Some("1GiB".into()), ..Default::default() };
        let spec = choice.spec().unwrap();
        assert_eq!(spec.devices.len(), 3);
        assert!(spec.devices.iter().all(|d| d.memory == 1 << 30));
        assert!(matches!(choice.deployment().unwrap(), Deployment::Local { memory: LocalMemory::FromPlan, .. }));
        let none = ClusterChoice { workers: Some(0), ..Default::default() };
        assert!(matches!(none.spec(), Err(ClusterError::Local(_))));
        let bad = ClusterChoice { worker_memory: Some("lots".into()), ..Default::default() };
        assert!(bad.spec().unwrap_err().to_string().contains("worker memory"));
        let gpu = ClusterChoice { device: Some("tpu".into()), ..Default::default() };
        assert!(gpu.deployment().unwrap_err().to_string().contains("tpu"));
    }

    #[test]
    fn a_file_with_remote_workers_needs_their_token() {
        let dir = std::env::temp_dir().join(format!("genie-cluster-choice-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.ron");
        std::fs::write(
            &path,
            r#"(devices: [(name: "gpu0", kind: cuda, memory: "80GiB")],
                deployment: (workers: {"gpu0": (address: "127.0.0.1:7070", fingerprint: "sha256:ab")}))"#,
        )
        .unwrap();
        let mut choice = ClusterChoice { file: Some(path.clone()), ..Default::default() };
        assert_eq!(choice.spec().unwrap().devices[0].name, "gpu0");
        assert!(matches!(choice.deployment(), Err(ClusterError::NoToken)));
        choice.token = Some("t".into());
        assert!(matches!(choice.deployment().unwrap(), Deployment::Remote { .. }));
        let missing = ClusterChoice { file: Some(dir.join("nope.ron")), ..Default::default() };
        assert!(matches!(missing.spec(), Err(ClusterError::Read { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
