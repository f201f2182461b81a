//! The pass manager: a stated order, the verifier after every pass, per-pass timing.

use std::time::{Duration, Instant};

use genie_ir::{verify_program, Graph, Program, VerifyError};
use rayon::prelude::*;

/// A transformation of a program.
pub trait Pass {
    /// The name used by `genie inspect --pass NAME` and in logs.
    fn name(&self) -> &'static str;
    /// Run the pass; return a one-line account of what changed (for `-v` logs).
    fn run(&self, program: &mut Program) -> Result<String, PassError>;
}

/// Why a pass pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A pass left the program in a state the verifier rejects (a bug in that pass).
    #[error("after pass `{pass}`: {source}")]
    Verify {
        pass: &'static str,
        #[source]
        source: Box<VerifyError>,
    },
    /// A pass could not do its work on this program.
    #[error("pass `{pass}`: {reason}")]
    Failed { pass: &'static str, reason: String },
    /// `--pass NAME` named no pass in the pipeline.
    #[error("no pass named `{name}`; the passes are: {known}")]
    UnknownPass { name: String, known: String },
}

/// Run a per-entry pass's work on every entry, in parallel: for the passes that read and write
/// each entry graph on its own (not state bindings, which pair entries, nor placement), entries
/// are independent. Results come back in entry order, and an error is the first in entry order,
/// so the outcome does not depend on the thread count.
pub(crate) fn for_each_entry<T: Send>(
    program: &mut Program,
    f: impl Fn(&mut Graph) -> Result<T, PassError> + Sync,
) -> Result<Vec<T>, PassError> {
    let results: Vec<Result<T, PassError>> = program.entries.par_iter_mut().map(&f).collect();
    results.into_iter().collect()
}

/// User choices the standard pipeline takes.
#[derive(Debug, Clone, Default)]
pub struct PassOptions {
    /// Symbol bindings for cost hints (`--bind s0=512`).
    pub bindings: std::collections::BTreeMap<String, i64>,
    /// Explicit state bindings (`--state out=in`); when given they replace detection.
    pub state_overrides: Vec<genie_ir::StateBinding>,
    /// The request shape LLM entries' symbols are bound to where `--bind` does not say
    /// (`--prompt-len`, `--new-tokens`); see [`crate::cost::entry_bindings`].
    pub request: Option<genie_ir::RequestShape>,
}

/// What one pass did and how long it took.
#[derive(Debug, Clone)]
pub struct PassReport {
    pub pass: &'static str,
    pub elapsed: Duration,
    pub summary: String,
}

/// An ordered list of passes.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
}

impl PassManager {
    /// A pipeline of the given passes, in order.
    pub fn new(passes: Vec<Box<dyn Pass>>) -> PassManager {
        PassManager { passes }
    }

    /// The standard pipeline with default options.
    pub fn standard() -> PassManager {
        PassManager::with_options(PassOptions::default())
    }

    /// The standard pipeline, in order: cleanup, folding, tagging, annotation, state, batching,
    /// cost.
    pub fn with_options(options: PassOptions) -> PassManager {
        PassManager::new(vec![
            Box::new(crate::cleanup::RemoveNoOps),
            Box::new(crate::cleanup::DeadCode),
            Box::new(crate::cleanup::CommonSubexpressions),
            Box::new(crate::fold::FoldConstants),
            Box::new(crate::tagging::TagPatterns),
            Box::new(crate::annotate::Annotate),
            Box::new(crate::state::StateBindings { overrides: options.state_overrides }),
            Box::new(crate::batching::MarkBatching),
            Box::new(crate::cost::CostHintsPass { bindings: options.bindings, request: options.request }),
        ])
    }

    /// Pass names in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Run every pass (or up to and including `stop_after`), verifying after each.
    pub fn run(&self, program: &mut Program, stop_after: Option<&str>) -> Result<Vec<PassReport>, PassError> {
        if let Some(name) = stop_after {
            if !self.names().contains(&name) {
                return Err(PassError::UnknownPass { name: name.to_string(), known: self.names().join(", ") });
            }
        }
        let mut reports = Vec::new();
        for pass in &self.passes {
            let span = tracing::info_span!("pass", name = pass.name());
            let _enter = span.enter();
            let started = Instant::now();
            let summary = pass.run(program)?;
            verify_program(program).map_err(|e| PassError::Verify { pass: pass.name(), source: Box::new(e) })?;
            let elapsed = started.elapsed();
            tracing::info!("{:<16} {:>9.3} ms  {summary}", pass.name(), elapsed.as_secs_f64() * 1e3);
            reports.push(PassReport { pass: pass.name(), elapsed, summary });
            if stop_after == Some(pass.name()) {
                break;
            }
        }
        Ok(reports)
    }
}
