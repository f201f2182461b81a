//! `cargo xtask`: set-up and the project's standard commands.
//!
//! - `setup`: a project-local venv (`.venv`) with the pinned PyTorch wheel for tch, idempotent.
//! - `run`:   set up, build everything (release), then run the main job: inspect the bundled
//!   program through every pass, compile and run a GPT-2-style pair on two local workers, and
//!   run the README's Python example.
//! - `test`:  set up, build, run the whole test suite: the Rust tests, then the Python package's
//!   pytest suite (`python/tests`) against the wheel installed into `.venv`.
//! - `wheel-check`: install the wheel into a second, fresh venv that has only `torch==2.11.0` and
//!   `transformers` (`target/wheel-check-venv`), and run the README's Python example there.
//! - `lint`:  `cargo fmt --check` and clippy with warnings denied (the workspace and `python/`).
//! - `ci`:    `test` then `lint` (what `.ci/run` runs).
//! - `fuzz TARGET SECONDS`: run one cargo-fuzz target of `fuzz/` for that long (installs
//!   cargo-fuzz if missing), from its committed seeds in `fuzz/corpus/TARGET`.
//!
//! Building includes the Python package (`python/`, PyO3 + maturin): its wheel goes to
//! `target/wheels/` and is installed into `.venv`, so `import genie` works there.
//!
//! Every cargo invocation gets the environment tch needs (`VIRTUAL_ENV`, `PATH`,
//! `LIBTORCH_USE_PYTORCH`), so nobody sets variables by hand. Binaries carry an rpath to the
//! venv's libtorch, so `target/release/genie` runs from any shell afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// The PyTorch wheel tch 0.24 is built against (DESIGN.md: the libtorch version pin).
const TORCH_REQUIREMENT: &str = "torch==2.11.0";
/// Python packages the test suite uses besides torch (the ONNX reference models, safetensors),
/// and what `genie bench` needs: `testsuite/scripts/make_bench_models.py` exports ONNX through
/// onnxscript, and the bench times onnxruntime session creation. maturin builds the Python
/// package's wheel; its tests run under pytest against transformers models.
const TEST_REQUIREMENTS: &[&str] = &[
    "onnx==1.23.2",
    "numpy",
    "safetensors",
    "onnxscript==0.7.2",
    "onnxruntime==1.32.0",
    "maturin==1.16.0",
    "pytest==9.2.0",
    TRANSFORMERS_REQUIREMENT,
    // The model zoos of the op census and the coverage fixtures (testsuite/scripts).
    "torchvision==0.26.0",
    "diffusers==0.42.1",
];
/// The transformers the Python package's tests and `wheel-check` use.
const TRANSFORMERS_REQUIREMENT: &str = "transformers==5.25.0";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let rest = &args[args.len().min(1)..];
    let result = match task {
        "setup" => setup().map(|_| ()),
        "run" => run_main_job(rest),
        "test" => test(rest),
        "lint" => lint(),
        "ci" => test(&[]).and_then(|_| lint()),
        "wheel-check" => wheel_check(),
        "fuzz" => fuzz(rest),
        _ => {
            eprintln!("usage: cargo xtask <setup|run|test|lint|ci|wheel-check|fuzz TARGET SECONDS> [args]");
            return if task == "help" { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {task}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn venv() -> PathBuf {
    root().join(".venv")
}

fn venv_python() -> PathBuf {
    venv().join("bin").join("python")
}

fn status(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let st = cmd.status().map_err(|e| format!("cannot start {shown}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({st})"))
    }
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Find a Python 3 that can make venvs.
fn system_python() -> Result<String> {
    for cand in ["python3.11", "python3", "python"] {
        if output(Command::new(cand).args(["-c", "import venv, sys; print(sys.version_info[0])"])).as_deref()
            == Some("3")
        {
            return Ok(cand.to_string());
        }
    }
    Err("no python3 with the venv module on PATH".into())
}

/// Make `.venv` with the pinned torch and the test requirements. Costs a second when done before.
fn setup() -> Result<()> {
    let started = Instant::now();
    let stamp = venv().join(".genie-setup");
    let want = format!("{TORCH_REQUIREMENT} {}", TEST_REQUIREMENTS.join(" "));
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(want.as_str()) && venv_python().exists() {
        let version = output(Command::new(venv_python()).args(["-c", "import torch; print(torch.__version__)"]));
        if version.as_deref().is_some_and(|v| v.starts_with("2.11.0")) {
            return Ok(());
        }
    }
    if !venv_python().exists() {
        eprintln!("xtask: creating {}", venv().display());
        status(Command::new(system_python()?).args(["-m", "venv"]).arg(venv()))?;
    }
    eprintln!("xtask: installing {want} into {} (first run only)", venv().display());
    report_free_space();
    // The wheels (torch and its CUDA libraries) are several GB. Unpacking them in the system's
    // temporary folder or keeping a copy in pip's cache has run a machine out of space, so pip
    // gets a scratch folder on the project's own disk and no cache.
    let scratch = root().join("target").join("pip-scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    let mut pip = Command::new(venv_python());
    pip.args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-cache-dir"]);
    pip.arg(TORCH_REQUIREMENT).args(TEST_REQUIREMENTS).env("TMPDIR", &scratch);
    let installed = status(&mut pip);
    let _ = std::fs::remove_dir_all(&scratch);
    if installed.is_err() {
        report_free_space();
    }
    installed?;
    std::fs::write(&stamp, &want).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    eprintln!("xtask: set-up done in {:.0?}", started.elapsed());
    Ok(())
}

/// Print the free space where the venv and the build go, so a failed install says whether the
/// disk was the cause (the set-up needs about 5 GB for the venv and 3 GB for the build).
fn report_free_space() {
    if let Some(df) = output(Command::new("df").args(["-h", "-P"]).arg(root())) {
        eprintln!("xtask: disk space at {}:\n{df}", root().display());
    }
}

/// `cargo` with the environment torch-sys needs to find the venv's libtorch.
fn cargo() -> Command {
    with_torch_env(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// A command with the environment torch-sys needs (the venv first on `PATH`, `VIRTUAL_ENV`,
/// `LIBTORCH_USE_PYTORCH`), run from the repository root.
fn with_torch_env(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    let bin = venv().join("bin");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![bin];
    paths.extend(std::env::split_paths(&path));
    cmd.env("PATH", std::env::join_paths(paths).unwrap_or(path));
    cmd.env("VIRTUAL_ENV", venv());
    cmd.env("LIBTORCH_USE_PYTORCH", "1");
    cmd.env("GENIE_PYTHON", venv_python());
    cmd.current_dir(root());
    cmd
}

/// Build every target of the workspace in release: the binary and every test binary, so the
/// test command after the main command only runs them; then the Python package.
fn build_all() -> Result<()> {
    status(cargo().args(["build", "--release", "--workspace", "--all-targets"]))?;
    build_wheel().map(|_| ())
}

/// The Python package's wheel, built by maturin into `target/wheels/` (sharing `target/` with
/// the workspace, so common dependencies build once) and installed into `.venv`.
fn build_wheel() -> Result<PathBuf> {
    // The package refuses to load beside any other torch: its pin must be the one built against.
    let pinned = TORCH_REQUIREMENT.trim_start_matches("torch==");
    let build_info = root().join("python/genie/_build.py");
    let text = std::fs::read_to_string(&build_info).map_err(|e| format!("reading {}: {e}", build_info.display()))?;
    if !text.contains(&format!("TORCH_VERSION = \"{pinned}\"")) {
        return Err(format!("{} must say TORCH_VERSION = \"{pinned}\" ({TORCH_REQUIREMENT})", build_info.display()));
    }
    let wheels = root().join("target/wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    let mut maturin = with_torch_env(venv().join("bin/maturin"));
    status(
        maturin
            .current_dir(root().join("python"))
            .args(["build", "--release", "--quiet", "--interpreter"])
            .arg(venv_python())
            .arg("--out")
            .arg(&wheels)
            .arg("--target-dir")
            .arg(root().join("target")),
    )?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("reading {}: {e}", wheels.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("maturin wrote no wheel into {}", wheels.display()))?;
    status(
        Command::new(venv_python())
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-deps", "--force-reinstall"])
            .arg(&wheel),
    )?;
    Ok(wheel)
}

fn run_main_job(extra: &[String]) -> Result<()> {
    setup()?;
    build_all()?;
    let genie = root().join("target/release/genie");
    let example = root().join("examples/tiny_decoder.ron");
    // The bundled prefill + decode program, through every pass: tags, phases, state, cost.
    println!("== genie inspect examples/tiny_decoder.ron --pass all --summary -v");
    status(Command::new(&genie).args(["inspect", "--pass", "all", "--summary", "-v"]).arg(&example).args(extra))?;
    println!("\n== genie inspect examples/tiny_decoder.ron --pass all --bind s0=32");
    status(Command::new(&genie).args(["inspect", "--pass", "all", "--bind", "s0=32"]).arg(&example))?;
    // A GPT-2-style prefill + decode pair (torch.export archives) on two local workers that
    // cannot each hold every weight: what runs where, and what crosses the network per call.
    let fixtures = root().join("testsuite/fixtures/gpt2");
    let plan = root().join("target/gpt2.plan");
    println!("\n== genie compile gpt2/prefill.pt2 gpt2/decode.pt2 --workers 2 --worker-memory 80KB --max-seq 16");
    status(
        Command::new(&genie)
            .arg("compile")
            .arg(fixtures.join("prefill.pt2"))
            .arg(fixtures.join("decode.pt2"))
            .args(["--workers", "2", "--worker-memory", "80KB", "--max-seq", "16", "-o"])
            .arg(&plan),
    )?;
    // The same pair run for real: two workers on loopback (QUIC, TLS, token), prefill on the
    // prompt, then 16 greedy decode steps with the KV cache resident on the workers.
    println!("\n== genie generate gpt2/prefill.pt2 gpt2/decode.pt2 --prompt 11,17,116,44,50 --max-new-tokens 16 --workers 2 --worker-memory 100KB --max-seq 32 --stats");
    status(
        Command::new(&genie)
            .arg("generate")
            .arg(fixtures.join("prefill.pt2"))
            .arg(fixtures.join("decode.pt2"))
            .args(["--prompt", "11,17,116,44,50", "--max-new-tokens", "16", "--workers", "2"])
            .args(["--worker-memory", "100KB", "--max-seq", "32", "--stats"]),
    )?;
    // The same from Python (the README's opening example): a transformers LLaMA exported,
    // compiled for two embedded workers and generated with `import genie`.
    println!("\n== python: the README's example (export_decoder -> compile -> generate)");
    run_readme_example(&venv_python(), "readme-example")
}

fn test(extra: &[String]) -> Result<()> {
    setup()?;
    build_all()?;
    // Both suites run even when the first fails, so one run reports every failure.
    let rust = status(cargo().args(["test", "--release", "--workspace"]).args(extra));
    let python = pytest();
    match (rust, python) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
    }
}

/// The Python package's tests against the wheel installed in `.venv`, run from the repository
/// root so that `import genie` finds the installed package, not the sources in `python/`.
fn pytest() -> Result<()> {
    status(
        Command::new(venv_python())
            .args(["-m", "pytest", "-c", "python/pytest.ini", "python/tests", "-q"])
            .current_dir(root()),
    )
}

/// A second venv with only `torch` and `transformers` from PyPI, the wheel installed into it,
/// and the README's Python example run there (from an empty folder).
fn wheel_check() -> Result<()> {
    setup()?;
    let wheel = build_wheel()?;
    let fresh = root().join("target/wheel-check-venv");
    let _ = std::fs::remove_dir_all(&fresh);
    status(Command::new(system_python()?).args(["-m", "venv"]).arg(&fresh))?;
    let python = fresh.join("bin/python");
    let scratch = root().join("target/pip-scratch");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("creating {}: {e}", scratch.display()))?;
    status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--no-cache-dir"])
            .args([TORCH_REQUIREMENT, TRANSFORMERS_REQUIREMENT])
            .arg(&wheel)
            .env("TMPDIR", &scratch),
    )?;
    let _ = std::fs::remove_dir_all(&scratch);
    println!("== the README's Python example in {}", fresh.display());
    run_readme_example(&python, "wheel-check")
}

/// The README's Python example (the block after `<!-- python-example`), run by `python` in an
/// empty folder `target/NAME`.
fn run_readme_example(python: &Path, name: &str) -> Result<()> {
    let readme = std::fs::read_to_string(root().join("README.md")).map_err(|e| format!("reading README.md: {e}"))?;
    let example = readme
        .split_once("<!-- python-example")
        .and_then(|(_, rest)| rest.split_once("```python\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(code, _)| code.to_string())
        .ok_or("README.md has no python-example block")?;
    let work = root().join("target").join(name);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    status(Command::new(python).args(["-c", &example]).current_dir(&work))
}

fn lint() -> Result<()> {
    setup()?;
    status(cargo().args(["fmt", "--all", "--check"]))?;
    status(cargo().args(["fmt", "--manifest-path", "python/Cargo.toml", "--check"]))?;
    status(cargo().args(["clippy", "--release", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    status(
        cargo()
            .args(["clippy", "--release", "--manifest-path", "python/Cargo.toml", "--target-dir", "target"])
            .args(["--", "-D", "warnings"]),
    )
}

/// `cargo xtask fuzz TARGET SECONDS [libFuzzer flags]`: one fuzz target for that many seconds.
///
/// The targets need no libtorch. cargo-fuzz needs nightly features, so the stable toolchain is
/// asked for them with `RUSTC_BOOTSTRAP=1`. New inputs go to `fuzz/work/TARGET` (ignored by git)
/// and the committed seeds in `fuzz/corpus/TARGET` are read only; a crash is written to
/// `fuzz/artifacts/TARGET` and fails the task. An input running over 10 s counts as a crash
/// (`-timeout`), as does one allocating over libFuzzer's default 2 GB.
fn fuzz(args: &[String]) -> Result<()> {
    let usage = "usage: cargo xtask fuzz TARGET SECONDS [libFuzzer flags]";
    let (target, seconds) = match args {
        [target, seconds, ..] => {
            (target, seconds.parse::<u64>().map_err(|_| format!("{usage}: `{seconds}` is not seconds"))?)
        }
        _ => return Err(usage.into()),
    };
    let installed = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !installed {
        eprintln!("xtask: installing cargo-fuzz");
        status(cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let fuzz_dir = root().join("fuzz");
    let work = fuzz_dir.join("work").join(target);
    std::fs::create_dir_all(&work).map_err(|e| format!("creating {}: {e}", work.display()))?;
    let mut cmd = cargo();
    cmd.current_dir(&fuzz_dir).env("RUSTC_BOOTSTRAP", "1");
    cmd.args(["fuzz", "run", target.as_str()]).arg(&work);
    let seeds = fuzz_dir.join("corpus").join(target);
    if seeds.is_dir() {
        cmd.arg(&seeds);
    }
    cmd.arg("--").arg(format!("-max_total_time={seconds}")).arg("-timeout=10").args(&args[2..]);
    status(&mut cmd)
}
