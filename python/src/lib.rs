//! `genie._native`: the Rust side of the Python package. Each function is a call into the
//! library the CLI uses (frontends, `genie_driver::pipeline` and `::cluster`, the runtime's
//! deployment, generation and per-op remoting); the Python package (`python/genie/`) gives it
//! its shape. Tensors cross as `torch.Tensor` objects sharing storage with libtorch tensors
//! (`pyo3-tch`), so nothing is copied on the way in or out. Every blocking call releases the GIL.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use genie_codegen::ProgramPlan;
use genie_driver::cluster::ClusterChoice;
use genie_driver::pipeline::{self, CompileOptions, PipelineError};
use genie_driver::recovery::Replanner;
use genie_ir::render::{self, DotColoring};
use genie_ir::{Arg, DType, ValueId};
use genie_passes::placement::{ClusterSpec, PhaseChoice, Policy, RequestShape};
use genie_runtime::client::{self, ClientError, ClientOptions, DEFAULT_DETECTION};
use genie_runtime::deploy::{self, Connected, DeployError, Deployed, Deployment, LocalMemory};
use genie_runtime::generate::{self, GenerateError};
use genie_runtime::per_op::PerOpError;
use genie_runtime::recovery::DEFAULT_MAX_RECOVERIES;
use genie_runtime::wire::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3_tch::PyTensor;
use tch::Tensor;

create_exception!(genie, GenieError, PyException, "Any error Genie reports.");
create_exception!(genie, GenieImportError, GenieError, "A model file could not be imported.");
create_exception!(genie, GenieCompileError, GenieError, "A pass or plan generation failed.");
create_exception!(genie, GeniePlacementError, GenieError, "The program does not fit the cluster.");
create_exception!(genie, GenieRuntimeError, GenieError, "Deploying, running or generating failed.");
create_exception!(
    genie,
    GenieRefusedError,
    GenieRuntimeError,
    "A worker refused: wrong token, out of memory, a limit reached."
);

/// Which Python exception an error becomes.
#[derive(Clone, Copy, Debug)]
enum ErrorClass {
    Import,
    Compile,
    Placement,
    Runtime,
    Refused,
    /// A Python-side mistake (an argument of the wrong kind): `ValueError`.
    Usage,
}

/// An error on its way to Python: its class and the message with every cause, as the CLI
/// prints it (`a: b: c`).
#[derive(Debug)]
struct Failure {
    class: ErrorClass,
    message: String,
}

impl Failure {
    fn new(class: ErrorClass, e: &(dyn StdError + 'static)) -> Failure {
        let mut message = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            cause = c.source();
        }
        Failure { class, message }
    }

    fn usage(message: impl Into<String>) -> Failure {
        Failure { class: ErrorClass::Usage, message: message.into() }
    }

    /// A runtime error, refused when a worker refused anywhere in its chain.
    fn runtime(e: &(dyn StdError + 'static)) -> Failure {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(c) = cause {
            if client_error(c).is_some_and(is_refusal) {
                return Failure::new(ErrorClass::Refused, e);
            }
            cause = c.source();
        }
        Failure::new(ErrorClass::Runtime, e)
    }
}

/// The client error an error is or wraps directly. Transparent wrappers (`DeployError::Client`,
/// `PerOpError::Client`) hide it from `source()`, so they are looked into by name.
fn client_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a ClientError> {
    if let Some(c) = e.downcast_ref::<ClientError>() {
        return Some(c);
    }
    if let Some(DeployError::Client(c)) = e.downcast_ref::<DeployError>() {
        return Some(c);
    }
    if let Some(PerOpError::Client(c)) = e.downcast_ref::<PerOpError>() {
        return Some(c);
    }
    match e.downcast_ref::<GenerateError>()? {
        GenerateError::Step { source, .. } | GenerateError::Session(source) => Some(source),
        _ => None,
    }
}

fn is_refusal(e: &ClientError) -> bool {
    match e {
        ClientError::Refused { .. } => true,
        ClientError::Remote { error, .. } => matches!(
            error.kind,
            ErrorKind::Unauthorized | ErrorKind::VersionMismatch | ErrorKind::OutOfMemory | ErrorKind::LimitReached
        ),
        _ => false,
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        match f.class {
            ErrorClass::Import => GenieImportError::new_err(f.message),
            ErrorClass::Compile => GenieCompileError::new_err(f.message),
            ErrorClass::Placement => GeniePlacementError::new_err(f.message),
            ErrorClass::Runtime => GenieRuntimeError::new_err(f.message),
            ErrorClass::Refused => GenieRefusedError::new_err(f.message),
            ErrorClass::Usage => PyValueError::new_err(f.message),
        }
    }
}

fn compile_failure(e: PipelineError) -> Failure {
    let class = match &e {
        PipelineError::Placement { .. } => ErrorClass::Placement,
        PipelineError::StateOverride(_) => ErrorClass::Usage,
        PipelineError::Passes { .. } | PipelineError::Codegen { .. } => ErrorClass::Compile,
    };
    Failure::new(class, &e)
}

/// Identities of loaded programs and compiled plans, so a connection deploys each once.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A model imported from its files, as `genie.load` returns it.
#[pyclass(module = "genie._native", frozen)]
struct Program {
    id: u64,
    files: Vec<PathBuf>,
    /// As imported: what compiling starts from.
    imported: Arc<genie_ir::Program>,
    /// What `summary` and `dot` show, as `genie inspect` does: models after every pass, RON
    /// programs as written.
    analysed: genie_ir::Program,
}

#[pymethods]
impl Program {
    /// The program's name.
    #[getter]
    fn name(&self) -> String {
        self.imported.name.clone()
    }

    /// The model files it was imported from.
    #[getter]
    fn files(&self) -> Vec<String> {
        self.files.iter().map(|p| p.display().to_string()).collect()
    }

    /// `genie inspect --summary --format json`, as a JSON string.
    #[pyo3(signature = (bindings=None))]
    fn summary_json(&self, bindings: Option<BTreeMap<String, i64>>) -> PyResult<String> {
        let summary =
            render::summary(&self.analysed, &render::SummaryOptions { bindings: bindings.unwrap_or_default() });
        serde_json::to_string(&summary).map_err(|e| GenieError::new_err(e.to_string()))
    }

    /// Graphviz DOT of the analysed program (`genie inspect --format dot`).
    fn dot(&self) -> String {
        render::dot_program(&self.analysed, DotColoring::Auto)
    }
}

/// A compiled placement plan and the program it was compiled from (whose weights it needs).
#[pyclass(module = "genie._native", frozen)]
struct Plan {
    id: u64,
    plan: Arc<ProgramPlan>,
    program: Arc<genie_ir::Program>,
    /// The program as imported and the options it was compiled with: what a recovery from a
    /// lost worker compiles again.
    imported: Arc<genie_ir::Program>,
    options: CompileOptions,
}

#[pymethods]
impl Plan {
    /// `genie inspect PLAN --summary --format json`, as a JSON string.
    fn summary_json(&self) -> PyResult<String> {
        serde_json::to_string(&genie_codegen::summary(&self.plan)).map_err(|e| GenieError::new_err(e.to_string()))
    }

    /// Graphviz DOT, nodes coloured by device.
    fn dot(&self) -> String {
        genie_codegen::summary::dot(&self.plan)
    }

    /// Write the plan: RON when the name ends in `.ron`, else binary (as `genie compile -o`).
    fn save(&self, path: PathBuf) -> PyResult<()> {
        genie_codegen::write_file(&path, &self.plan).map_err(|e| Failure::new(ErrorClass::Runtime, &e).into())
    }

    /// The devices the plan uses, in order.
    #[getter]
    fn devices(&self) -> Vec<String> {
        self.plan.devices.iter().map(|d| d.name.clone()).collect()
    }
}

/// Import model files (`.pt2`, `.onnx`, `.ron`; several form one program) and run every pass
/// on models (RON programs are kept as written, as `genie inspect` shows them).
#[pyfunction]
fn load(py: Python<'_>, files: Vec<PathBuf>) -> PyResult<Program> {
    if files.is_empty() {
        return Err(PyValueError::new_err("give at least one model file"));
    }
    let program = py.allow_threads(|| -> Result<Program, Failure> {
        let imported = genie_frontends::load(&files).map_err(|e| Failure::new(ErrorClass::Import, &e))?;
        let mut analysed = imported.clone();
        let all_ron = files.iter().all(|f| f.extension().is_some_and(|e| e.eq_ignore_ascii_case("ron")));
        if !all_ron {
            genie_passes::PassManager::with_options(genie_passes::PassOptions::default())
                .run(&mut analysed, None)
                .map_err(|e| Failure::new(ErrorClass::Compile, &e))?;
        }
        Ok(Program {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            files: files.clone(),
            imported: Arc::new(imported),
            analysed,
        })
    })?;
    Ok(program)
}

/// A cluster as Python names it: a file, or embedded workers.
#[pyclass(module = "genie._native", frozen)]
#[derive(Clone)]
struct Cluster {
    choice: ClusterChoice,
}

#[pymethods]
impl Cluster {
    #[new]
    #[pyo3(signature = (file=None, workers=None, memory=None, device=None, token=None, ca=None))]
    fn new(
        file: Option<PathBuf>,
        workers: Option<usize>,
        memory: Option<String>,
        device: Option<String>,
        token: Option<String>,
        ca: Option<PathBuf>,
    ) -> PyResult<Cluster> {
        let choice = ClusterChoice { file, workers, worker_memory: memory, device, token, ca };
        // Checked now, so a bad size or file fails where it was written.
        choice.spec().map_err(|e| Failure::new(ErrorClass::Usage, &e))?;
        Ok(Cluster { choice })
    }

    /// The devices placement plans for, as (name, memory in bytes).
    #[getter]
    fn devices(&self) -> PyResult<Vec<(String, u64)>> {
        let spec = self.choice.spec().map_err(|e| Failure::new(ErrorClass::Usage, &e))?;
        Ok(spec.devices.iter().map(|d| (d.name.clone(), d.memory)).collect())
    }
}

/// Compile options as Python passes them (`genie.compile(..., **options)`).
fn compile_options(options: Option<&Bound<'_, PyDict>>) -> PyResult<CompileOptions> {
    let mut out = CompileOptions::default();
    let Some(options) = options else { return Ok(out) };
    let mut request = RequestShape::default();
    let mut has_request = false;
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        match key.as_str() {
            "policy" => {
                let text: String = value.extract()?;
                out.policy = text.parse::<Policy>().map_err(|e| PyValueError::new_err(format!("policy: {e}")))?;
            }
            "disaggregate" => {
                let text: String = value.extract()?;
                out.phases =
                    text.parse::<PhaseChoice>().map_err(|e| PyValueError::new_err(format!("disaggregate: {e}")))?;
            }
            "max_seq" => out.max_seq = value.extract()?,
            "replicas" => out.replicas = value.extract()?,
            "bindings" => out.bindings = value.extract()?,
            "state" => out.state = value.extract()?,
            "prompt_len" => {
                request.prompt_len = value.extract()?;
                has_request = true;
            }
            "new_tokens" => {
                request.new_tokens = value.extract()?;
                has_request = true;
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "unknown compile option `{other}` (options: policy, disaggregate, max_seq, replicas, \
                     bindings, state, prompt_len, new_tokens)"
                )))
            }
        }
    }
    if has_request {
        if request.prompt_len < 1 || request.new_tokens < 0 {
            return Err(PyValueError::new_err("prompt_len must be at least 1 and new_tokens at least 0"));
        }
        out.request = Some(request);
    }
    Ok(out)
}

fn compile_for(
    imported: &Arc<genie_ir::Program>,
    spec: &ClusterSpec,
    options: &CompileOptions,
) -> Result<Plan, Failure> {
    let mut compiled = (**imported).clone();
    let plan = pipeline::compile_program(&mut compiled, spec, options).map_err(compile_failure)?;
    Ok(Plan {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        plan: Arc::new(plan),
        program: Arc::new(compiled),
        imported: imported.clone(),
        options: options.clone(),
    })
}

/// Passes, placement and codegen for the cluster (`genie compile`).
#[pyfunction]
#[pyo3(signature = (program, cluster, options=None))]
fn compile(
    py: Python<'_>,
    program: &Program,
    cluster: &Cluster,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Plan> {
    let options = compile_options(options)?;
    let spec = cluster.choice.spec().map_err(|e| Failure::new(ErrorClass::Usage, &e))?;
    Ok(py.allow_threads(|| compile_for(&program.imported, &spec, &options))?)
}

/// A program or a plan, as `Connection` methods take them.
#[derive(FromPyObject)]
enum Runnable<'py> {
    Plan(PyRef<'py, Plan>),
    Program(PyRef<'py, Program>),
}

/// What a [`Runnable`] holds, free of the GIL.
enum Target {
    Plan {
        id: u64,
        plan: Arc<ProgramPlan>,
        program: Arc<genie_ir::Program>,
        imported: Arc<genie_ir::Program>,
        options: CompileOptions,
    },
    Program {
        id: u64,
        imported: Arc<genie_ir::Program>,
    },
}

impl Runnable<'_> {
    fn target(&self) -> Target {
        match self {
            Runnable::Plan(p) => Target::Plan {
                id: p.id,
                plan: p.plan.clone(),
                program: p.program.clone(),
                imported: p.imported.clone(),
                options: p.options.clone(),
            },
            Runnable::Program(p) => Target::Program { id: p.id, imported: p.imported.clone() },
        }
    }
}

/// A program deployed by a connection, and what places it again after a lost worker (remote
/// workers only: embedded ones live and die with this process).
struct Loaded {
    deployed: Deployed,
    replanner: Option<Replanner>,
    /// What calls run on: the deployed program, or the one the last recovery placed (whose
    /// new parts the replanner's deployments own).
    current: Mutex<client::Program>,
}

impl Loaded {
    /// Greedy generation on this deployment, recovering from lost workers as the CLI's
    /// `genie generate` does (at most `max_recoveries` times).
    async fn generate(
        &self,
        prompt: &[i64],
        new_tokens: usize,
        max_recoveries: usize,
        on_step: impl FnMut(&generate::StepDone<'_>) + Send,
    ) -> Result<generate::Generated, GenerateError> {
        let program = self.program();
        let generated = genie_driver::recovery::generate(
            &program,
            prompt,
            new_tokens,
            None,
            self.replanner.as_ref(),
            max_recoveries,
            on_step,
        )
        .await?;
        if !generated.recoveries.is_empty() {
            // Later calls go on where this one recovered to, not to the lost worker.
            *lock(&self.current) = generated.program.clone();
        }
        Ok(generated)
    }

    fn program(&self) -> client::Program {
        lock(&self.current).clone()
    }

    async fn close(&self) {
        if let Some(r) = &self.replanner {
            r.close().await;
        }
        self.deployed.close().await;
    }
}

/// Workers reached (or started) for a cluster, and the programs deployed on them.
#[pyclass(module = "genie._native", frozen)]
struct Connection {
    /// Shared with the threads calls run on (see [`interruptible`]).
    inner: Arc<Clients>,
}

/// What a [`Connection`] holds.
struct Clients {
    runtime: tokio::runtime::Runtime,
    spec: ClusterSpec,
    deployment: Deployment,
    options: ClientOptions,
    /// Per program or plan id: its deployment. Held while deploying, so that threads asking
    /// for the same program at once deploy it once.
    /// By program (or plan) id and whether it was compiled without state bindings (a call given
    /// its entry's every input, state included).
    deployed: Mutex<HashMap<(u64, bool), Arc<Loaded>>>,
    max_recoveries: usize,
    /// The worker single ops go to (connected on first use).
    op_worker: Mutex<Option<Arc<Connected>>>,
    closed: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Clients {
    fn check_open(&self) -> PyResult<()> {
        if *lock(&self.closed) {
            return Err(GenieRuntimeError::new_err("this connection is closed"));
        }
        Ok(())
    }

    /// The deployment of a program (compiled for this cluster with `options` the first time)
    /// or of a plan.
    fn deployed(&self, what: Target, options: CompileOptions) -> Result<Arc<Loaded>, Failure> {
        let id = match &what {
            Target::Plan { id, .. } | Target::Program { id, .. } => *id,
        };
        let id = (id, options.no_state);
        let mut loaded = lock(&self.deployed);
        if let Some(d) = loaded.get(&id) {
            return Ok(d.clone());
        }
        let (plan, program, imported, options) = match what {
            Target::Plan { plan, program, imported, options, .. } => (plan, program, imported, options),
            Target::Program { imported, .. } => {
                let plan = compile_for(&imported, &self.spec, &options)?;
                (plan.plan, plan.program, imported, options)
            }
        };
        let deployed = self
            .runtime
            .block_on(deploy::deploy(plan, &program.weights, &self.deployment, &self.options))
            .map_err(|e| Failure::runtime(&e))?;
        let replanner = matches!(self.deployment, Deployment::Remote { .. }).then(|| {
            Replanner::new(
                (*imported).clone(),
                self.spec.clone(),
                options,
                self.deployment.clone(),
                self.options.clone(),
            )
        });
        let current = Mutex::new(deployed.program().clone());
        let entry = Arc::new(Loaded { deployed, replanner, current });
        loaded.insert(id, entry.clone());
        Ok(entry)
    }

    fn op_worker(&self) -> Result<Arc<Connected>, Failure> {
        if let Some(c) = lock(&self.op_worker).as_ref() {
            return Ok(c.clone());
        }
        let (deployment, device) = match &self.deployment {
            Deployment::Local { device, .. } => {
                (Deployment::Local { device: *device, memory: LocalMemory::Unlimited }, "op0".to_string())
            }
            Deployment::Remote { workers, .. } => {
                let first = workers.keys().next().ok_or_else(|| Failure::usage("the cluster file names no worker"))?;
                (self.deployment.clone(), first.clone())
            }
        };
        let connected = self
            .runtime
            .block_on(deploy::connect(&deployment, &[(device, 0)], &self.options))
            .map_err(|e| Failure::runtime(&e))?;
        let connected = Arc::new(connected);
        *lock(&self.op_worker) = Some(connected.clone());
        Ok(connected)
    }
}

#[pymethods]
impl Connection {
    #[new]
    #[pyo3(signature = (cluster, timeout_s=120.0, detect_s=None, max_recoveries=None))]
    fn new(
        cluster: &Cluster,
        timeout_s: f64,
        detect_s: Option<f64>,
        max_recoveries: Option<usize>,
    ) -> PyResult<Connection> {
        let spec = cluster.choice.spec().map_err(|e| Failure::new(ErrorClass::Usage, &e))?;
        let deployment = cluster.choice.deployment().map_err(|e| Failure::new(ErrorClass::Usage, &e))?;
        let timeout = Duration::try_from_secs_f64(timeout_s)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| PyValueError::new_err(format!("timeout_s must be positive, not {timeout_s}")))?;
        let detection = match detect_s {
            None => DEFAULT_DETECTION,
            Some(s) => Duration::try_from_secs_f64(s)
                .ok()
                .filter(|t| !t.is_zero())
                .ok_or_else(|| PyValueError::new_err(format!("detect_s must be positive, not {s}")))?,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| GenieRuntimeError::new_err(format!("starting the client runtime: {e}")))?;
        let inner = Clients {
            runtime,
            spec,
            deployment,
            options: ClientOptions { run_timeout: timeout, ..ClientOptions::default() }.with_detection(detection),
            deployed: Mutex::new(HashMap::new()),
            max_recoveries: max_recoveries.unwrap_or(DEFAULT_MAX_RECOVERIES),
            op_worker: Mutex::new(None),
            closed: Mutex::new(false),
        };
        Ok(Connection { inner: Arc::new(inner) })
    }

    /// One call of an entry: inputs and outputs by name.
    #[pyo3(signature = (program, inputs, entry=None))]
    fn run(
        &self,
        py: Python<'_>,
        program: Runnable<'_>,
        inputs: BTreeMap<String, PyTensor>,
        entry: Option<String>,
    ) -> PyResult<BTreeMap<String, PyTensor>> {
        self.inner.check_open()?;
        let inputs: BTreeMap<String, Tensor> = inputs.into_iter().map(|(k, v)| (k, v.0)).collect();
        let options = match &program {
            Runnable::Program(p) => {
                let shapes = inputs.iter().map(|(k, t)| (k.clone(), t.size())).collect();
                pipeline::one_call_options(&p.imported, entry.as_deref(), &shapes)
            }
            Runnable::Plan(_) => CompileOptions::default(),
        };
        let (target, inner) = (program.target(), self.inner.clone());
        let outputs = interruptible(py, move || {
            let loaded = inner.deployed(target, options)?;
            let output = inner.runtime.block_on(loaded.program().run_once(entry.as_deref(), &inputs));
            output.map(|o| o.outputs).map_err(|e| Failure::runtime(&e))
        })??;
        Ok(outputs.into_iter().map(|(k, v)| (k, PyTensor(v))).collect())
    }

    /// Greedy generation: the new tokens. The program's entries are a prefill and a decode
    /// step joined by state (the KV cache stays on the workers).
    fn generate(
        &self,
        py: Python<'_>,
        program: Runnable<'_>,
        prompt: Vec<i64>,
        max_new_tokens: usize,
    ) -> PyResult<Vec<i64>> {
        self.inner.check_open()?;
        let options = generation_options(&prompt, max_new_tokens)?;
        let (target, inner) = (program.target(), self.inner.clone());
        let tokens = interruptible(py, move || {
            let loaded = inner.deployed(target, options)?;
            let generated =
                inner.runtime.block_on(loaded.generate(&prompt, max_new_tokens, inner.max_recoveries, |_| {}));
            generated.map(|g| g.tokens).map_err(|e| generate_failure(&e))
        })??;
        Ok(tokens)
    }

    /// [`Connection::generate`], the tokens yielded as each is produced.
    fn generate_stream(&self, program: Runnable<'_>, prompt: Vec<i64>, max_new_tokens: usize) -> PyResult<TokenStream> {
        self.inner.check_open()?;
        let options = generation_options(&prompt, max_new_tokens)?;
        let (target, inner) = (program.target(), self.inner.clone());
        let (tx, rx) = mpsc::channel();
        // Deploying happens on the stream's thread too: the first `next` waits for it.
        std::thread::Builder::new()
            .name("genie-generate".into())
            .spawn(move || {
                let loaded = match inner.deployed(target, options) {
                    Ok(l) => l,
                    Err(f) => {
                        let _ = tx.send(Err(f));
                        return;
                    }
                };
                let tokens = tx.clone();
                let generation = loaded.generate(&prompt, max_new_tokens, inner.max_recoveries, move |step| {
                    let _ = tokens.send(Ok(step.token));
                });
                if let Err(e) = inner.runtime.block_on(generation) {
                    let _ = tx.send(Err(generate_failure(&e)));
                }
            })
            .map_err(|e| GenieRuntimeError::new_err(format!("starting the generation thread: {e}")))?;
        Ok(TokenStream { tokens: Mutex::new(rx) })
    }

    /// One op on a worker (the prototype's `execute_remote_operation`): `args` and `kwargs`
    /// as the op's ATen schema names them; tensors are sent, the outputs come back.
    #[pyo3(signature = (op, args, kwargs=None))]
    fn exec_op(
        &self,
        py: Python<'_>,
        op: String,
        args: &Bound<'_, PyList>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Vec<PyTensor>> {
        self.inner.check_open()?;
        let mut tensors = Vec::new();
        let mut positional = Vec::new();
        for (i, a) in args.iter().enumerate() {
            positional
                .push(to_arg(&a, &mut tensors).map_err(|e| PyTypeError::new_err(format!("{op}: argument {i}: {e}")))?);
        }
        let mut keywords = Vec::new();
        if let Some(kwargs) = kwargs {
            for (k, v) in kwargs.iter() {
                let name: String = k.extract()?;
                let arg = to_arg(&v, &mut tensors).map_err(|e| PyTypeError::new_err(format!("{op}: `{name}`: {e}")))?;
                keywords.push((name, arg));
            }
        }
        let inner = self.inner.clone();
        let out = interruptible(py, move || -> Result<Vec<Tensor>, Failure> {
            let connected = inner.op_worker()?;
            let worker = connected.addresses()[0].device.clone();
            let call = genie_runtime::per_op::exec_single_op(
                connected.cluster(),
                &worker,
                &op,
                positional,
                keywords,
                &tensors,
            );
            inner.runtime.block_on(call).map_err(|e| Failure::runtime(&e))
        })??;
        Ok(out.into_iter().map(PyTensor).collect())
    }

    /// Release every program on its workers and stop embedded ones. Idempotent.
    fn close(&self, py: Python<'_>) {
        let inner = &self.inner;
        let deployed: Vec<Arc<Loaded>> = {
            let mut closed = lock(&inner.closed);
            if *closed {
                return;
            }
            *closed = true;
            lock(&inner.deployed).drain().map(|(_, d)| d).collect()
        };
        let op_worker = lock(&inner.op_worker).take();
        py.allow_threads(|| {
            inner.runtime.block_on(async {
                for d in &deployed {
                    d.close().await;
                }
                if let Some(c) = &op_worker {
                    c.close().await;
                }
            })
        });
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        *lock(&self.inner.closed)
    }
}

fn generation_options(prompt: &[i64], max_new_tokens: usize) -> PyResult<CompileOptions> {
    if prompt.is_empty() {
        return Err(PyValueError::new_err("the prompt is empty"));
    }
    let request = RequestShape { prompt_len: prompt.len() as i64, new_tokens: max_new_tokens as i64 };
    Ok(CompileOptions { request: Some(request), ..Default::default() })
}

fn generate_failure(e: &GenerateError) -> Failure {
    Failure::runtime(e)
}

/// How often a call waiting for its result looks for Python signals (Ctrl-C).
const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// `work` on a thread of its own, waited for with the GIL released and interruptible: a
/// KeyboardInterrupt (or any signal handler's exception) returns at once, and the work finishes
/// in the background, its result dropped.
fn interruptible<T: Send + 'static>(py: Python<'_>, work: impl FnOnce() -> T + Send + 'static) -> PyResult<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("genie-call".into())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .map_err(|e| GenieRuntimeError::new_err(format!("starting the call's thread: {e}")))?;
    receive(py, &Mutex::new(rx))?.ok_or_else(|| GenieRuntimeError::new_err("the call's thread ended without a result"))
}

/// The next value from `rx`, waited for with the GIL released and Python signals checked every
/// [`SIGNAL_CHECK`]; `None` once its sender is gone. (A receiver is not shared between threads;
/// the lock makes waiting on it from whichever thread holds it sound.)
fn receive<T: Send>(py: Python<'_>, rx: &Mutex<mpsc::Receiver<T>>) -> PyResult<Option<T>> {
    loop {
        match py.allow_threads(|| lock(rx).recv_timeout(SIGNAL_CHECK)) {
            Ok(value) => return Ok(Some(value)),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
        }
    }
}

/// Tokens of a streaming generation, as they come.
#[pyclass(module = "genie._native")]
struct TokenStream {
    tokens: Mutex<mpsc::Receiver<Result<i64, Failure>>>,
}

#[pymethods]
impl TokenStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<i64>> {
        // `None` once the generation thread has finished: the stream is over.
        receive(py, &self.tokens)?.transpose().map_err(PyErr::from)
    }
}

/// A Python argument of a single op, as the IR holds it; tensors are appended to `tensors`
/// and named by their index there.
fn to_arg(value: &Bound<'_, PyAny>, tensors: &mut Vec<Tensor>) -> Result<Arg, String> {
    if value.is_none() {
        return Ok(Arg::None);
    }
    if let Ok(t) = value.extract::<PyTensor>() {
        tensors.push(t.0);
        return Ok(Arg::Tensor(ValueId(tensors.len() as u32 - 1)));
    }
    if value.is_instance_of::<PyBool>() {
        return Ok(Arg::Bool(value.extract().map_err(|e| e.to_string())?));
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(Arg::Int(value.extract().map_err(|e| e.to_string())?));
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(Arg::Float(value.extract().map_err(|e| e.to_string())?));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(Arg::Str(value.extract().map_err(|e| e.to_string())?));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items: Vec<Bound<'_, PyAny>> =
            value.try_iter().map_err(|e| e.to_string())?.collect::<PyResult<_>>().map_err(|e| e.to_string())?;
        let all = |f: &dyn Fn(&Bound<'_, PyAny>) -> bool| items.iter().all(f);
        if all(&|v| v.extract::<PyTensor>().is_ok()) && !items.is_empty() {
            let mut ids = Vec::new();
            for v in &items {
                tensors.push(v.extract::<PyTensor>().map_err(|e| e.to_string())?.0);
                ids.push(ValueId(tensors.len() as u32 - 1));
            }
            return Ok(Arg::Tensors(ids));
        }
        if all(&|v| v.is_instance_of::<PyBool>()) && !items.is_empty() {
            return Ok(Arg::Bools(
                items.iter().map(|v| v.extract()).collect::<PyResult<_>>().map_err(|e| e.to_string())?,
            ));
        }
        if all(&|v| v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>()) {
            return Ok(Arg::Ints(
                items.iter().map(|v| v.extract()).collect::<PyResult<_>>().map_err(|e| e.to_string())?,
            ));
        }
        if all(&|v| v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>()) {
            return Ok(Arg::Floats(
                items.iter().map(|v| v.extract()).collect::<PyResult<_>>().map_err(|e| e.to_string())?,
            ));
        }
        return Err("a list must hold only tensors, only bools, or only numbers".into());
    }
    // torch.dtype, whose str is `torch.float32`.
    let type_name = value.get_type().name().map_err(|e| e.to_string())?.to_string();
    if type_name == "dtype" {
        let text = value.str().map_err(|e| e.to_string())?.to_string();
        return DType::from_name(&text).map(Arg::DType).ok_or_else(|| format!("dtype {text} is not one Genie carries"));
    }
    Err(format!("cannot pass a {type_name} to an op"))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Program>()?;
    m.add_class::<Plan>()?;
    m.add_class::<Cluster>()?;
    m.add_class::<Connection>()?;
    m.add_class::<TokenStream>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add("GenieError", py.get_type::<GenieError>())?;
    m.add("GenieImportError", py.get_type::<GenieImportError>())?;
    m.add("GenieCompileError", py.get_type::<GenieCompileError>())?;
    m.add("GeniePlacementError", py.get_type::<GeniePlacementError>())?;
    m.add("GenieRuntimeError", py.get_type::<GenieRuntimeError>())?;
    m.add("GenieRefusedError", py.get_type::<GenieRefusedError>())?;
    Ok(())
}
