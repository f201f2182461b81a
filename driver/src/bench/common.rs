//! What the suites that serve generation requests on `genie worker` processes share (`pd`,
//! `serve`, `recovery`): the worker processes, compiling and deploying on them, prompts and percentiles.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use genie_codegen::ProgramPlan;
use genie_ir::RequestShape;
use genie_passes::placement::{ClusterSpec, PhaseChoice};
use genie_runtime::client::{ClientOptions, Program};
use genie_runtime::deploy::{self, Deployed, DeploymentSpec};
use genie_runtime::generate::{self, Generated};

use super::BenchError;
use crate::pipeline::{compile_program, CompileOptions};

/// A `genie worker` process, killed when dropped.
pub(super) struct WorkerProcess {
    child: Child,
    /// Where it listens (`127.0.0.1:PORT`).
    pub address: String,
    /// Its certificate's fingerprint, to pin.
    pub fingerprint: String,
}

impl WorkerProcess {
    /// SIGKILL the process and reap it.
    pub(super) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `genie worker` on a free loopback port with the token and `flags`, and read where it
/// listens from its first line.
pub(super) fn start_worker(genie: &Path, token: &str, flags: &[&str]) -> Result<WorkerProcess, BenchError> {
    let what = format!("genie worker {}", flags.join(" "));
    let failed = |reason: String| BenchError::Script { what: what.clone(), reason };
    let child = Command::new(genie)
        .args(["worker", "--listen", "127.0.0.1:0", "--token", token])
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    // Owned from here, so that any failure below kills it rather than leaving it running.
    let mut worker = WorkerProcess { child, address: String::new(), fingerprint: String::new() };
    let mut line = String::new();
    let stdout = worker.child.stdout.take().ok_or_else(|| failed("no stdout".into()))?;
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    // "genie worker listening on ADDR device cpu fingerprint FP memory M [cpus N]"
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words.iter().position(|x| *x == w).and_then(|i| words.get(i + 1)).map(|s| s.to_string());
    match (after("on"), after("fingerprint")) {
        (Some(address), Some(fingerprint)) => {
            (worker.address, worker.fingerprint) = (address, fingerprint);
            Ok(worker)
        }
        _ => Err(failed(format!("unexpected first line `{}`", line.trim()))),
    }
}

/// The `deployment` section of a cluster file: where each named device's worker listens, its
/// fingerprint pinned.
pub(super) fn deployment_section(devices: &[(&str, &WorkerProcess)]) -> String {
    let workers: Vec<String> = devices
        .iter()
        .map(|(name, w)| format!("\"{name}\": (address: \"{}\", fingerprint: \"{}\")", w.address, w.fingerprint))
        .collect();
    format!("deployment: (workers: {{{}}})", workers.join(", "))
}

/// What to compile and for which requests.
pub(super) struct Compile<'a> {
    /// The suite, for errors.
    pub suite: &'a str,
    pub files: &'a [PathBuf],
    pub request: RequestShape,
    pub phases: PhaseChoice,
    /// The sequence length the plan's memory is reckoned at (placement and the workers'
    /// admission); `None`: placement's default.
    pub max_seq: Option<i64>,
}

/// Compile the model for a cluster file and deploy it on the workers its deployment names.
pub(super) fn compile_and_deploy(
    runtime: &tokio::runtime::Runtime,
    what: &Compile<'_>,
    cluster: &str,
    token: &str,
) -> Result<(Deployed, ProgramPlan), BenchError> {
    let workload = |reason: String| BenchError::Workload { workload: what.suite.into(), reason };
    let spec = ClusterSpec::from_ron(cluster).map_err(|e| workload(format!("cluster: {e}")))?;
    let mut program = genie_frontends::load(what.files)?;
    let options = CompileOptions {
        request: Some(what.request),
        phases: what.phases,
        max_seq: what.max_seq,
        ..CompileOptions::default()
    };
    let plan = compile_program(&mut program, &spec, &options)
        .map_err(|source| BenchError::Compile { files: what.files.to_vec(), source: Box::new(source) })?;
    let deployment = DeploymentSpec::from_cluster_ron(cluster)?
        .ok_or_else(|| workload("no deployment section".into()))?
        .resolve(token.to_string(), None)?;
    let client = ClientOptions { run_timeout: Duration::from_secs(600), ..ClientOptions::default() };
    let deployed = runtime.block_on(deploy::deploy(Arc::new(plan.clone()), &program.weights, &deployment, &client))?;
    Ok((deployed, plan))
}

/// Greedy generations of `prompts` from this client, as tokio tasks: generation `i` starts
/// `i × interval_s` after the first (all at once with 0) on `programs[i % len]`. What each
/// generated, in order, and the seconds from the first start to the last finish.
pub(super) fn generate_concurrently(
    runtime: &tokio::runtime::Runtime,
    suite: &str,
    programs: &[Program],
    prompts: Vec<Vec<i64>>,
    new_tokens: usize,
    interval_s: f64,
) -> Result<(Vec<Generated>, f64), BenchError> {
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = prompts
        .into_iter()
        .enumerate()
        .map(|(i, prompt)| {
            let program = programs[i % programs.len()].clone();
            let at = start + Duration::from_secs_f64(interval_s * i as f64);
            runtime.spawn(async move {
                tokio::time::sleep_until(at).await;
                let g = generate::greedy(&program, &prompt, new_tokens, None).await;
                (g, tokio::time::Instant::now())
            })
        })
        .collect();
    let failed = |reason: String| BenchError::Workload { workload: suite.into(), reason };
    let mut out = Vec::new();
    let mut last = start;
    for (i, task) in tasks.into_iter().enumerate() {
        let (g, done) = runtime.block_on(task).map_err(|e| failed(format!("generation {i}'s task: {e}")))?;
        let g = g.map_err(|e| failed(format!("generation {i}: {}", with_causes(&e))))?;
        last = last.max(done);
        out.push(g);
    }
    Ok((out, (last - start).as_secs_f64()))
}

/// An error and its causes, `: `-separated.
pub(super) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text += &format!(": {c}");
        cause = c.source();
    }
    text
}

/// A deterministic prompt of `len` token ids below `vocab`, one per seed.
pub(super) fn prompt(seed: u64, len: i64, vocab: i64) -> Vec<i64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % vocab as u64) as i64
        })
        .collect()
}

/// Nearest-rank percentile of unsorted values.
pub(super) fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

pub(super) fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// A process-unique token for the workers a suite starts.
pub(super) fn token() -> String {
    format!("{:016x}", std::process::id() as u64 ^ 0x5eed_5eed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
