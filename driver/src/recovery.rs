//! Placing a program again after a worker was lost: the runtime's [`Replace`], with the
//! compiler behind it. The cluster's devices (spares included) that still answer are placed on
//! as if they were the whole cluster, the plan is loaded through the one deployment path (a
//! worker that already holds a weight proves it and is not sent it again), and the failed
//! program is released where it still is.

use std::collections::BTreeSet;
use std::sync::Mutex;

use genie_passes::placement::ClusterSpec;
use genie_runtime::client::{ClientOptions, Program};
use genie_runtime::deploy::{self, Deployed, Deployment};
use genie_runtime::recovery::{BoxFuture, RecoveryError, Replace, Replaced};

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

    async fn place_again(&self, failed: &Program, session: u64) -> Result<Replaced, RecoveryError> {
        let names: Vec<String> = self.cluster.devices.iter().map(|d| d.name.clone()).collect();
        let alive = deploy::answering(&self.deployment, &names, &self.client).await;
        let used: Vec<String> = deploy::plan_devices(failed.plan()).into_iter().map(|(name, _)| name).collect();
        let lost: Vec<String> = used.iter().filter(|d| !alive.contains(*d)).cloned().collect();
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
        Ok(Replaced { program, lost })
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
    fn replace<'a>(&'a self, failed: &'a Program, session: u64) -> BoxFuture<'a, Result<Replaced, RecoveryError>> {
        Box::pin(self.place_again(failed, session))
    }
}
