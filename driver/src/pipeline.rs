//! The compile pipeline as a library call: passes, placement, codegen.
//!
//! `genie compile`, `genie run`, `genie generate`, `genie bench` and the end-to-end tests all
//! compile through here, so a model means the same plan wherever it is compiled.

use std::collections::BTreeMap;

use genie_codegen::ProgramPlan;
use genie_ir::Program;
use genie_passes::placement::{self, ClusterSpec, PlacementOptions};

/// Why a program could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A `--state OUT=IN` override names no such input or output.
    #[error("state override: {0}")]
    StateOverride(String),
    /// A pass failed (the error names the pass).
    #[error("running passes on {program}")]
    Passes {
        program: String,
        #[source]
        source: genie_passes::PassError,
    },
    /// Placement found no assignment (e.g. the program does not fit the cluster).
    #[error("placing {program} on {devices} device(s)")]
    Placement {
        program: String,
        devices: usize,
        #[source]
        source: placement::PlacementError,
    },
    /// Plan generation failed.
    #[error("generating plans for {program}")]
    Codegen {
        program: String,
        #[source]
        source: genie_codegen::CodegenError,
    },
}

/// How to compile: symbol bindings for estimates, state overrides, placement options.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// `--bind s0=512`: symbol values for cost estimates.
    pub bindings: BTreeMap<String, i64>,
    /// `--state OUT=IN` overrides, as written.
    pub state: Vec<String>,
    pub policy: placement::Policy,
    pub max_seq: Option<i64>,
    /// The request an LLM's time estimates assume (`--prompt-len`, `--new-tokens`).
    pub request: Option<genie_ir::RequestShape>,
    /// Whether prefill and decode may run on different devices (`--disaggregate`).
    pub phases: placement::PhaseChoice,
    /// Copies of the program on disjoint devices (`--replicas`; 0 and 1: one).
    pub replicas: usize,
    /// Drop every state binding after the passes: KV caches become ordinary inputs and outputs
    /// that travel with each call (the semantics-blind baseline of `genie bench`).
    pub no_state: bool,
}

/// Run every pass on `program`, place it on `cluster` (writing `ann.device`; spare devices are
/// left out) and generate plans.
pub fn compile_program(
    program: &mut Program,
    cluster: &ClusterSpec,
    options: &CompileOptions,
) -> Result<ProgramPlan, PipelineError> {
    compile_program_placed(program, cluster, options).map(|(plan, _)| plan)
}

/// [`compile_program`], also returning the placement (its memory use, estimates and estimated
/// schedules).
pub fn compile_program_placed(
    program: &mut Program,
    cluster: &ClusterSpec,
    options: &CompileOptions,
) -> Result<(ProgramPlan, placement::Placement), PipelineError> {
    let state_overrides =
        genie_passes::state::parse_state_overrides(program, &options.state).map_err(PipelineError::StateOverride)?;
    let pass_options =
        genie_passes::PassOptions { bindings: options.bindings.clone(), state_overrides, request: options.request };
    genie_passes::PassManager::with_options(pass_options)
        .run(program, None)
        .map_err(|source| PipelineError::Passes { program: program.name.clone(), source })?;
    if options.no_state {
        program.state_bindings.clear();
    }
    let placement_options = PlacementOptions {
        policy: options.policy,
        max_seq: options.max_seq,
        bindings: options.bindings.clone(),
        request: options.request,
        phases: options.phases,
        replicas: options.replicas,
    };
    let cluster = &cluster.without_spares();
    let placement = placement::schedule(program, cluster, &placement_options).map_err(|source| {
        PipelineError::Placement { program: program.name.clone(), devices: cluster.devices.len(), source }
    })?;
    placement.apply(program);
    let plan = genie_codegen::generate(program)
        .map_err(|source| PipelineError::Codegen { program: program.name.clone(), source })?;
    Ok((plan, placement))
}

/// How to compile `program` for one call of `entry` (or of its only entry) with inputs of these
/// shapes: symbols bound by the shapes ([`bindings_from_shapes`]), and when the call is given
/// every input of its entry, its past state included, no state bindings: the state inputs are
/// the call's initial state and its present state comes back among the outputs.
pub fn one_call_options(program: &Program, entry: Option<&str>, shapes: &BTreeMap<String, Vec<i64>>) -> CompileOptions {
    let graph = match entry {
        Some(name) => program.entries.iter().find(|g| g.name == name),
        None if program.entries.len() == 1 => program.entries.first(),
        None => None,
    };
    let self_contained =
        graph.is_some_and(|g| g.inputs.iter().all(|&v| shapes.contains_key(&g.value(v).name)) && !g.inputs.is_empty());
    CompileOptions { bindings: bindings_from_shapes(program, shapes), no_state: self_contained, ..Default::default() }
}

/// Symbol values read off the shapes of the inputs a call is about to be made with: each symbol
/// that is a whole dim of an input, bound to that input's size there. Compiling with them plans
/// time and memory for that call rather than for the symbols' defaults.
pub fn bindings_from_shapes(program: &Program, shapes: &BTreeMap<String, Vec<i64>>) -> BTreeMap<String, i64> {
    let mut bindings = BTreeMap::new();
    for g in &program.entries {
        for &v in &g.inputs {
            let value = g.value(v);
            let Some(shape) = shapes.get(&value.name) else { continue };
            for (dim, size) in value.ty.shape.iter().zip(shape) {
                let symbols = dim.symbols();
                if let (Some(s), 1) = (symbols.first(), symbols.len()) {
                    if *dim == genie_ir::Dim::symbol(s.clone()) {
                        bindings.insert(s.clone(), *size);
                    }
                }
            }
        }
    }
    bindings
}
