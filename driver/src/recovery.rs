//! Placing a program again after a worker was lost: the runtime's [`Replace`], with the
//! compiler behind it. First choice: keep the program and move each lost device's part to a
//! worker that answers and is not in use (a spare, or the lost worker itself back after a
//! restart) with at least that device's memory, so the survivors keep the session's state.
//! Otherwise the cluster's devices (spares included) that answer are placed on as if they were
//! the whole cluster, the plan is loaded through the one deployment path (a worker that already
//! holds a weight proves it and is not sent it again), and the failed program is released
//! where it still is.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientOptions, Program, WorkerAddress};
use genie_runtime::deploy::{self, Deployed, Deployment};
use genie_runtime::recovery::{BoxFuture, Loss, RecoveryError, Replace, Replaced};

use crate::pipeline::{compile_program, CompileOptions};

/// What placing the program again needs: the program as imported (before any pass), the whole
/// cluster, the options it was compiled with, and where its workers are.
pub struct Replanner {
    source: genie_ir::Program,
    cluster: ClusterSpec,
    options: CompileOptions,
    deployment: Deployment,
    client: ClientOptions,
    /// Every deployment a recovery made, kept open until [`Replanner::close`].
    deployed: Mutex<Vec<Deployed>>,
}

/// Greedy generation on `program`, recovering from lost workers through `replanner` (at most
/// `max_recoveries` times) when there is one and recoveries are allowed; else a lost worker
/// ends it. `genie generate` and the Python package's `generate` both run this.
pub async fn generate(
    program: &genie_runtime::client::Program,
    prompt: &[i64],
    new_tokens: usize,
    metrics: Option<&genie_runtime::metrics::GenerationMetrics>,
    replanner: Option<&Replanner>,
    max_recoveries: usize,
    on_step: impl FnMut(&genie_runtime::generate::StepDone<'_>) + Send,
) -> Result<genie_runtime::generate::Generated, genie_runtime::generate::GenerateError> {
    use genie_runtime::generate;
    match replanner.filter(|_| max_recoveries > 0) {
        Some(replace) => {
            let recovery = genie_runtime::recovery::Recovery { replace, max_recoveries };
            generate::greedy_recovering(program, prompt, new_tokens, metrics, recovery, on_step).await
        }
        None => generate::greedy_with(program, prompt, new_tokens, metrics, on_step).await,
    }
}

impl Replanner {
    /// `source` is the program as the frontends gave it (compiling writes into a program, so
    /// keep a copy from before).
    pub fn new(
        source: genie_ir::Program,
        cluster: ClusterSpec,
        options: CompileOptions,
        deployment: Deployment,
        client: ClientOptions,
    ) -> Replanner {
        Replanner { source, cluster, options, deployment, client, deployed: Mutex::new(Vec::new()) }
    }

    /// Tell the workers of every recovery's deployment that this client is done.
    pub async fn close(&self) {
        let deployed = std::mem::take(&mut *self.deployed.lock().unwrap_or_else(|p| p.into_inner()));
        for d in deployed {
            d.close().await;
        }
    }

    async fn place_again(&self, loss: Loss<'_>) -> Result<Replaced, RecoveryError> {
        let (failed, session) = (loss.program, loss.session);
        let names: Vec<String> = self.cluster.devices.iter().map(|d| d.name.clone()).collect();
        let alive = deploy::answering(&self.deployment, &names, &self.client).await;
        let used: Vec<String> = deploy::plan_devices(failed.plan()).into_iter().map(|(name, _)| name).collect();
        let mut lost: Vec<String> = used.iter().filter(|d| !alive.contains(*d)).cloned().collect();
        if lost.is_empty() {
            // Every worker answers: the one whose connection or state the call lost restarted.
            lost.extend(loss.suspect.filter(|d| used.iter().any(|u| u == d)).map(str::to_string));
        }
        if let Some(moves) = self.moves(failed, &lost, &alive, &used) {
            match failed.moved(&moves, &self.source.weights).await {
                Ok(program) => {
                    let kept: Vec<String> = used.iter().filter(|d| !lost.contains(d)).cloned().collect();
                    let to: Vec<&str> =
                        lost.iter().map(|d| moves.get(d).map_or(d.as_str(), |a| a.device.as_str())).collect();
                    tracing::warn!(
                        "recovering: the program kept on {}, its part on {} now on {}",
                        kept.join(", "),
                        lost.join(", "),
                        to.join(", ")
                    );
                    return Ok(Replaced { program, lost, kept });
                }
                Err(e) => tracing::warn!("recovering: moving the lost parts failed ({e}); placing the program anew"),
            }
        }
        tracing::warn!(
            "recovering: {} answer{}, lost {}",
            alive.iter().cloned().collect::<Vec<_>>().join(", "),
            if alive.len() == 1 { "s" } else { "" },
            if lost.is_empty() { "none".to_string() } else { lost.join(", ") }
        );
        if alive.is_empty() {
            self.abandon_later(failed, session, &lost);
            return Err(RecoveryError::NoSurvivor { lost });
        }
        let alive: Vec<String> = alive.into_iter().collect();
        let on: Vec<&str> = alive.iter().map(String::as_str).collect();
        let cluster = self.cluster.recovering_on(&on);
        // Compiling is seconds of CPU for a large model: off the runtime's threads.
        let (mut program, options) = (self.source.clone(), self.options.clone());
        let compiled = tokio::task::spawn_blocking(move || {
            let plan = compile_program(&mut program, &cluster, &options);
            (plan, program)
        })
        .await;
        let (compiled, program) = match compiled {
            Ok(done) => done,
            Err(e) => {
                self.abandon_later(failed, session, &lost);
                return Err(RecoveryError::Load { alive, source: Box::new(e) });
            }
        };
        let plan = match compiled {
            Ok(plan) => plan,
            Err(source) => {
                self.abandon_later(failed, session, &lost);
                return Err(RecoveryError::DoesNotFit { alive, lost, source: Box::new(source) });
            }
        };
        // Nothing of the failed session or program stays held where a worker still has it
        // (released before loading, so its memory is free for the new placement).
        let dead: BTreeSet<String> = lost.iter().cloned().collect();
        failed.abandon(Some(session), self.client.probe_timeout(), &dead).await;
        let deployed = deploy::deploy(std::sync::Arc::new(plan), &program.weights, &self.deployment, &self.client)
            .await
            .map_err(|source| RecoveryError::Load { alive: alive.clone(), source: Box::new(source) })?;
        let program = deployed.program().clone();
        self.deployed.lock().unwrap_or_else(|p| p.into_inner()).push(deployed);
        Ok(Replaced { program, lost, kept: Vec::new() })
    }

    /// Where each lost device's part can go with the program kept: nowhere new when the lost
    /// worker answers again (restarted: it takes its part back), else a worker that answers,
    /// runs no part of the program, and has the lost device's kind and at least its memory.
    /// `None` when some part has no such place, the program has several copies, or the
    /// workers are embedded.
    fn moves(
        &self,
        failed: &Program,
        lost: &[String],
        alive: &BTreeSet<String>,
        used: &[String],
    ) -> Option<BTreeMap<String, WorkerAddress>> {
        let Deployment::Remote { workers, .. } = &self.deployment else { return None };
        if lost.is_empty() || failed.replicas() != 1 {
            return None;
        }
        let spec = |name: &str| self.cluster.devices.iter().find(|d| d.name == name);
        let mut taken: Vec<&str> = Vec::new();
        let mut moves = BTreeMap::new();
        for d in lost.iter().filter(|d| !alive.contains(*d)) {
            let need = failed.plan().devices.iter().find(|p| p.name == *d).map_or(0, |p| p.memory_bytes);
            let kind = spec(d).map(|s| s.kind);
            let to = alive.iter().find(|r| {
                !used.contains(r)
                    && !taken.contains(&r.as_str())
                    && spec(r).is_some_and(|s| Some(s.kind) == kind && s.memory >= need)
            })?;
            taken.push(to);
            let w = workers.get(to)?;
            let address = WorkerAddress {
                device: to.clone(),
                addr: w.address,
                trust: w.trust.clone(),
                server_name: w.server_name.clone(),
            };
            moves.insert(d.clone(), address);
        }
        Some(moves)
    }
}

impl Replanner {
    /// Release the failed program in the background, the error going out at once.
    fn abandon_later(&self, failed: &Program, session: u64, lost: &[String]) {
        let (failed, within) = (failed.clone(), self.client.probe_timeout());
        let dead: BTreeSet<String> = lost.iter().cloned().collect();
        tokio::spawn(async move { failed.abandon(Some(session), within, &dead).await });
    }
}

impl Replace for Replanner {
    fn replace<'a>(&'a self, loss: Loss<'a>) -> BoxFuture<'a, Result<Replaced, RecoveryError>> {
        Box::pin(self.place_again(loss))
    }
}
