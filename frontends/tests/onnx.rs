//! ONNX reader tests: the onnx package's backend test models, the generated single-op cases in
//! `tests/onnx_cases/` (made by `testsuite/scripts/onnx_cases.py`), the transformers exports of
//! `testsuite/scripts/onnx_census.py` (when `GENIE_ONNX_MODELS` names them), hand-built models for
//! the reader's rules, and malformed files.
//!
//! Numeric checks of the lowering run outside cargo (they need PyTorch):
//! `testsuite/scripts/onnx_numeric_check.py` imports each model with `genie inspect` and
//! interprets the result with PyTorch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use genie_frontends::onnx::proto::tensor_shape_proto::{dimension, Dimension};
use genie_frontends::onnx::proto::*;
use genie_frontends::onnx::{self, OnnxError};
use genie_frontends::{load_file, FrontendError};
use genie_ir::{Arg, DType, Dim, Program, TensorType, ValueDef, WeightData, WeightHash};
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Model files on disk.

/// The onnx package's backend test data: `GENIE_ONNX_DATA`, or the workspace venv.
fn backend_data_dir() -> PathBuf {
    if let Ok(d) = std::env::var("GENIE_ONNX_DATA") {
        return PathBuf::from(d);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
    let found = std::fs::read_dir(&venv).ok().and_then(|rd| {
        rd.flatten().map(|e| e.path().join("site-packages/onnx/backend/test/data")).find(|p| p.join("light").is_dir())
    });
    found.unwrap_or_else(|| {
        panic!(
            "the onnx package's backend test data was not found under {} (set GENIE_ONNX_DATA to \
             onnx/backend/test/data); this test must not pass without it",
            venv.display()
        )
    })
}

/// `(suite/case, model path)` for every model of a suite.
fn suite_models(data: &Path, suite: &str) -> Vec<(String, PathBuf)> {
    let dir = data.join(suite);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && p.join("model.onnx").is_file() {
            out.push((format!("{suite}/{name}"), p.join("model.onnx")));
        } else if p.extension().is_some_and(|x| x == "onnx") {
            out.push((format!("{suite}/{}", name.trim_end_matches(".onnx")), p));
        }
    }
    out.sort();
    out
}

/// The committed list of backend models expected not to import, with reasons.
fn expected_failures() -> BTreeMap<String, String> {
    let text = include_str!("onnx_expected_failures.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, r) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            (k.to_string(), r.trim().to_string())
        })
        .collect()
}

/// The reference outputs saved beside a model: `test_data_set_0/output_<k>.pb`, or for the
/// `light` suite `<stem>_output_<k>.pb`.
fn reference_outputs(model: &Path) -> Vec<TensorProto> {
    let dir = model.parent().unwrap_or(Path::new("."));
    let stem = model.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let mut out = Vec::new();
    for k in 0.. {
        let candidates =
            [dir.join(format!("test_data_set_0/output_{k}.pb")), dir.join(format!("{stem}_output_{k}.pb"))];
        let Some(bytes) = candidates.iter().find_map(|p| std::fs::read(p).ok()) else { break };
        out.push(TensorProto::decode(bytes.as_slice()).expect("reference outputs are TensorProtos"));
    }
    out
}

/// The imported graph's outputs have the dtypes and shapes of the reference outputs.
fn check_reference_types(model: &Path, p: &Program) -> Result<usize, String> {
    let g = &p.entries[0];
    let refs = reference_outputs(model);
    // Models with no reference data at all are checked for importing only.
    if !refs.is_empty() && refs.len() != g.outputs.len() {
        return Err(format!("{} outputs, {} reference outputs", g.outputs.len(), refs.len()));
    }
    for (out, r) in g.outputs.iter().zip(&refs) {
        let ty = &g.value(out.value).ty;
        let dtype = genie_frontends::onnx::dtype_of_code(r.data_type);
        let shape: Vec<Dim> = r.dims.iter().map(|&d| Dim::constant(d)).collect();
        let static_ok =
            ty.shape.len() == shape.len() && ty.shape.iter().zip(&shape).all(|(a, b)| a.as_const().is_none() || a == b);
        if dtype != Some(ty.dtype) || !static_ok {
            return Err(format!("output `{}` is {ty}, the reference is {:?} {:?}", out.name, dtype, r.dims));
        }
    }
    Ok(refs.len())
}

#[test]
fn onnx_backend_suites_import() {
    let data = backend_data_dir();
    let mut expected = expected_failures();
    let mut problems = Vec::new();
    let (mut total_ok, mut total) = (0, 0);
    for suite in ["light", "pytorch-converted", "pytorch-operator", "simple"] {
        let models = suite_models(&data, suite);
        assert!(!models.is_empty(), "no models in {}", data.join(suite).display());
        let (mut ok, mut excluded) = (0, 0);
        for (key, path) in &models {
            let listed = expected.remove(key);
            match (load_file(path), listed) {
                (Ok(p), None) => {
                    ok += 1;
                    if let Err(e) = check_reference_types(path, &p) {
                        problems.push(format!("{key}: {e}"));
                    }
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
                    assert_eq!(p.name, stem, "{key}: program name");
                    assert_eq!(p.entries.len(), 1, "{key}");
                    assert_eq!(p.entries[0].name, stem, "{key}: entry name");
                }
                (Err(_), Some(_)) => excluded += 1,
                (Ok(_), Some(reason)) => problems
                    .push(format!("{key} now imports: remove it from onnx_expected_failures.txt (listed: {reason})")),
                (Err(e), None) => problems.push(format!("{key}: {e}")),
            }
        }
        println!("{suite}: {ok}/{} imported, {excluded} expected failures", models.len());
        total_ok += ok;
        total += models.len();
    }
    println!("backend suites: {total_ok}/{total} imported");
    for stale in expected.keys() {
        problems.push(format!("{stale} is listed in onnx_expected_failures.txt but no such model exists"));
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
}

/// The single-op cases of `testsuite/scripts/onnx_cases.py`, committed in `tests/onnx_cases/`.
fn case_models() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_cases");
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().join("model.onnx").is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().join("model.onnx")))
        .collect();
    out.sort();
    out
}

#[test]
fn onnx_generated_cases_import() {
    let cases = case_models();
    assert!(cases.len() >= 100, "only {} cases in tests/onnx_cases", cases.len());
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|(name, p)| {
            let r = load_file(p).map_err(|e| e.to_string()).and_then(|prog| check_reference_types(p, &prog));
            match r {
                Ok(n) if n > 0 => None,
                Ok(_) => Some(format!("{name}: no reference outputs")),
                Err(e) => Some(format!("{name}: {e}")),
            }
        })
        .collect();
    println!("generated cases: {}/{} imported", cases.len() - failed.len(), cases.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Every `*.onnx` below a folder.
fn onnx_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// transformers models exported by `torch.onnx.export(dynamo=True)`: they need transformers and
/// minutes to make, so they are not in the repository.
#[test]
#[ignore = "needs exports made by `testsuite/scripts/onnx_census.py DIR`; run with GENIE_ONNX_MODELS=DIR"]
fn onnx_transformers_exports_import() {
    let dir = std::env::var("GENIE_ONNX_MODELS")
        .expect("GENIE_ONNX_MODELS names the folder testsuite/scripts/onnx_census.py wrote its exports to");
    let files = onnx_files_under(Path::new(&dir));
    assert!(!files.is_empty(), "no .onnx files under {dir}");
    for f in &files {
        let p = load_file(f).unwrap_or_else(|e| panic!("{e}"));
        let g = &p.entries[0];
        let external = p.weights.iter().filter(|(_, w)| matches!(w.data, WeightData::External { .. })).count();
        println!(
            "{}: {} nodes, {} weights ({external} external), symbols {:?}",
            p.name,
            g.nodes.len(),
            p.weights.len(),
            g.symbols.keys().collect::<Vec<_>>()
        );
        if f.with_extension("onnx.data").exists() {
            assert!(external > 0, "{}: weights should stay in the .onnx.data file", f.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-built models.

enum D {
    V(i64),
    P(&'static str),
    Unknown,
}

fn value_info(name: &str, elem: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: match d {
                D::V(v) => Some(dimension::Value::DimValue(*v)),
                D::P(p) => Some(dimension::Value::DimParam(p.to_string())),
                D::Unknown => None,
            },
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
    }
}

fn untyped(name: &str) -> ValueInfoProto {
    ValueInfoProto { name: name.into(), r#type: None }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: outputs.first().map(|o| format!("{op}_{o}")).unwrap_or_default(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::INTS, ints: v.to_vec(), ..Default::default() }
}

fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: attribute_type::FLOAT, f: v, ..Default::default() }
}

fn raw_tensor(name: &str, dtype: i32, dims: &[i64], raw: Vec<u8>) -> TensorProto {
    TensorProto { name: name.into(), data_type: dtype, dims: dims.to_vec(), raw_data: Some(raw), ..Default::default() }
}

fn f32_tensor(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
    raw_tensor(name, data_type::FLOAT, dims, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn i64_tensor(name: &str, dims: &[i64], v: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        data_type: data_type::INT64,
        dims: dims.to_vec(),
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

fn model(graph: GraphProto, opset: i64) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: opset }],
        graph: Some(graph),
        ..Default::default()
    }
}

fn graph(
    nodes: Vec<NodeProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    inits: Vec<TensorProto>,
) -> GraphProto {
    GraphProto {
        node: nodes,
        input: inputs,
        output: outputs,
        initializer: inits,
        name: "g".into(),
        ..Default::default()
    }
}

fn save(dir: &Path, file: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}

fn import(m: &ModelProto) -> Result<Program, OnnxError> {
    onnx::read_bytes(&m.encode_to_vec(), "model", Path::new("."))
}

/// Import through the public entry point (which also verifies the program).
fn load(m: &ModelProto) -> Program {
    let dir = tempfile::tempdir().unwrap();
    let p = save(dir.path(), "model.onnx", m);
    load_file(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn relu_model() -> ModelProto {
    model(
        graph(
            vec![node("Relu", &["x"], &["y"], vec![])],
            vec![value_info("x", data_type::FLOAT, &[D::V(2), D::V(3)])],
            vec![untyped("y")],
            vec![],
        ),
        18,
    )
}

#[test]
fn onnx_names_program_entry_inputs_and_outputs() {
    let m = model(
        graph(
            vec![node("Add", &["a", "b"], &["sum"], vec![]), node("Mul", &["a", "b"], &["prod"], vec![])],
            vec![value_info("a", data_type::FLOAT, &[D::V(4)]), value_info("b", data_type::FLOAT, &[D::V(4)])],
            vec![untyped("prod"), untyped("sum")],
            vec![],
        ),
        18,
    );
    let dir = tempfile::tempdir().unwrap();
    let p = load_file(&save(dir.path(), "tiny.onnx", &m)).unwrap();
    assert_eq!(p.name, "tiny");
    let g = &p.entries[0];
    assert_eq!(g.name, "tiny");
    let inputs: Vec<&str> = g.inputs.iter().map(|v| g.value(*v).name.as_str()).collect();
    assert_eq!(inputs, ["a", "b"]);
    let outputs: Vec<&str> = g.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(outputs, ["prod", "sum"]);
    assert_eq!(g.value(g.outputs[0].value).name, "prod");
    assert_eq!(g.node(g.producer(g.outputs[1].value).unwrap()).op, "aten.add.Tensor");
}

#[test]
fn onnx_symbolic_dims_become_symbols_and_shape_math_folds() {
    // y = Reshape(x, Concat(Shape(x)[0:2], [-1])) over x: [batch size, 3d, ?, 4].
    let m = model(
        graph(
            vec![
                node("Shape", &["x"], &["shape"], vec![]),
                node("Slice", &["shape", "zero", "two"], &["lead"], vec![]),
                node(
                    "Concat",
                    &["lead", "minus_one"],
                    &["target"],
                    vec![AttributeProto {
                        name: "axis".into(),
                        r#type: attribute_type::INT,
                        i: 0,
                        ..Default::default()
                    }],
                ),
                node("Reshape", &["x", "target"], &["y"], vec![]),
            ],
            vec![value_info("x", data_type::FLOAT, &[D::P("batch size"), D::P("3d"), D::Unknown, D::V(4)])],
            vec![untyped("y")],
            vec![i64_tensor("zero", &[1], &[0]), i64_tensor("two", &[1], &[2]), i64_tensor("minus_one", &[1], &[-1])],
        ),
        18,
    );
    let p = load(&m);
    let g = &p.entries[0];
    let syms: Vec<&str> = g.symbols.keys().map(String::as_str).collect();
    assert_eq!(syms, ["batch_size", "s_3d", "unk0"]);
    assert!(g.symbols.values().all(|r| r.min == 1 && r.max.is_none()));
    assert_eq!(g.nodes.len(), 1, "the shape arithmetic should fold away: {:?}", g.op_counts());
    let n = &g.nodes[0];
    assert_eq!(n.op, "aten.reshape.default");
    assert_eq!(n.args[1], Arg::SymInts(vec![Dim::symbol("batch_size"), Dim::symbol("s_3d"), Dim::constant(-1)]));
    let y = &g.value(g.outputs[0].value).ty;
    assert_eq!(y.shape, vec![Dim::symbol("batch_size"), Dim::symbol("s_3d"), Dim::parse("4*unk0").unwrap()]);
    // No weights: the folded constants never reached the graph.
    assert_eq!(g.values.iter().filter(|v| matches!(v.def, ValueDef::Weight(_))).count(), 0);
}

#[test]
fn onnx_external_data_is_referenced_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let weights: Vec<f32> = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let bytes: Vec<u8> = weights.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut data = vec![0xAB; 16];
    data.extend_from_slice(&bytes);
    std::fs::write(dir.path().join("ext.onnx.data"), &data).unwrap();
    let w = TensorProto {
        name: "w".into(),
        data_type: data_type::FLOAT,
        dims: vec![3, 2],
        data_location: data_location::EXTERNAL,
        external_data: vec![
            StringStringEntryProto { key: "location".into(), value: "ext.onnx.data".into() },
            StringStringEntryProto { key: "offset".into(), value: "16".into() },
            StringStringEntryProto { key: "length".into(), value: "24".into() },
        ],
        ..Default::default()
    };
    let m = model(
        graph(
            vec![node("MatMul", &["x", "w"], &["y"], vec![])],
            vec![value_info("x", data_type::FLOAT, &[D::V(1), D::V(3)])],
            vec![value_info("y", data_type::FLOAT, &[D::V(1), D::V(2)])],
            vec![w],
        ),
        17,
    );
    let path = save(dir.path(), "ext.onnx", &m);
    let p = load_file(&path).unwrap();
    let ty = TensorType::new(DType::Float32, &[3, 2]);
    let hash = WeightHash::of(&ty, &bytes);
    let entry = p.weights.get(&hash).expect("the weight is stored under its content hash");
    let canonical = dir.path().join("ext.onnx.data").canonicalize().unwrap();
    assert_eq!(entry.data, WeightData::External { path: canonical, offset: 16, len: 24 });
    assert_eq!(p.weights.read(&hash).unwrap(), bytes);
    let g = &p.entries[0];
    assert!(g.values.iter().any(|v| v.name == "w" && v.def == ValueDef::Weight(hash.clone())));

    // The data file gone: a typed error naming it.
    std::fs::remove_file(dir.path().join("ext.onnx.data")).unwrap();
    match onnx::read(&path) {
        Err(OnnxError::ExternalData { tensor, path, .. }) => {
            assert_eq!(tensor, "w");
            assert!(path.ends_with("ext.onnx.data"), "{}", path.display());
        }
        other => panic!("expected ExternalData, got {other:?}"),
    }
    // A range outside the file.
    std::fs::write(dir.path().join("ext.onnx.data"), &data[..30]).unwrap();
    let err = onnx::read(&path).unwrap_err();
    assert!(matches!(err, OnnxError::ExternalData { .. }) && err.to_string().contains("outside the file"), "{err}");
}

#[test]
fn onnx_external_location_must_stay_beside_the_model() {
    for location in ["../secret.bin", "/etc/passwd", ""] {
        let w = TensorProto {
            name: "w".into(),
            data_type: data_type::FLOAT,
            dims: vec![1],
            data_location: data_location::EXTERNAL,
            external_data: vec![StringStringEntryProto { key: "location".into(), value: location.into() }],
            ..Default::default()
        };
        let m = model(graph(vec![node("Identity", &["w"], &["y"], vec![])], vec![], vec![untyped("y")], vec![w]), 18);
        let err = import(&m).unwrap_err();
        assert!(matches!(err, OnnxError::ExternalData { .. }), "{location}: {err}");
    }
}

#[test]
fn onnx_typed_fields_follow_the_packing_rules() {
    let f16 = |v: f32| half::f16::from_f32(v).to_bits() as i32;
    let inits = vec![
        TensorProto {
            name: "f".into(),
            data_type: data_type::FLOAT,
            dims: vec![2],
            float_data: vec![1.5, -2.0],
            ..Default::default()
        },
        TensorProto {
            name: "h".into(),
            data_type: data_type::FLOAT16,
            dims: vec![2],
            int32_data: vec![f16(0.5), f16(-3.0)],
            ..Default::default()
        },
        TensorProto {
            name: "b".into(),
            data_type: data_type::BOOL,
            dims: vec![3],
            int32_data: vec![1, 0, 1],
            ..Default::default()
        },
        TensorProto {
            name: "i8".into(),
            data_type: data_type::INT8,
            dims: vec![2],
            int32_data: vec![-1, 7],
            ..Default::default()
        },
        i64_tensor("l", &[2], &[-5, 1 << 40]),
        TensorProto {
            name: "d".into(),
            data_type: data_type::DOUBLE,
            dims: vec![1],
            double_data: vec![0.25],
            ..Default::default()
        },
        TensorProto {
            name: "bf".into(),
            data_type: data_type::BFLOAT16,
            dims: vec![1],
            int32_data: vec![half::bf16::from_f32(2.5).to_bits() as i32],
            ..Default::default()
        },
    ];
    let names = ["f", "h", "b", "i8", "l", "d", "bf"];
    let nodes = names.iter().map(|n| node("Identity", &[n], &[&format!("out_{n}")], vec![])).collect();
    let outputs = names.iter().map(|n| untyped(&format!("out_{n}"))).collect();
    let p = load(&model(graph(nodes, vec![], outputs, inits), 18));
    let g = &p.entries[0];
    let bytes_of = |out: &str| -> Vec<u8> {
        let o = g.outputs.iter().find(|o| o.name == out).unwrap();
        match &g.value(o.value).def {
            ValueDef::Weight(h) => p.weights.read(h).unwrap(),
            ValueDef::Const(b) => b.0.clone(),
            other => panic!("{out}: {other:?}"),
        }
    };
    assert_eq!(bytes_of("out_f"), [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
    assert_eq!(
        bytes_of("out_h"),
        [half::f16::from_f32(0.5).to_le_bytes(), half::f16::from_f32(-3.0).to_le_bytes()].concat()
    );
    assert_eq!(bytes_of("out_b"), [1, 0, 1]);
    assert_eq!(bytes_of("out_i8"), [0xff, 7]);
    assert_eq!(bytes_of("out_l"), [(-5i64).to_le_bytes(), (1i64 << 40).to_le_bytes()].concat());
    assert_eq!(bytes_of("out_d"), 0.25f64.to_le_bytes());
    assert_eq!(bytes_of("out_bf"), half::bf16::from_f32(2.5).to_le_bytes());
}

#[test]
fn onnx_ir3_inputs_with_initializers_are_weights() {
    let mut m = model(
        graph(
            vec![node("Add", &["x", "bias"], &["y"], vec![])],
            vec![value_info("x", data_type::FLOAT, &[D::V(2)]), value_info("bias", data_type::FLOAT, &[D::V(2)])],
            vec![untyped("y")],
            vec![f32_tensor("bias", &[2], &[1.0, 2.0])],
        ),
        9,
    );
    m.ir_version = 3;
    let p = load(&m);
    let g = &p.entries[0];
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.value(g.inputs[0]).name, "x");
    assert!(g.values.iter().any(|v| v.name == "bias" && matches!(v.def, ValueDef::Weight(_))));
}

#[test]
fn onnx_constant_attribute_kinds_fold() {
    let attr = |name: &str, f: fn(&mut AttributeProto)| {
        let mut a = AttributeProto { name: name.into(), ..Default::default() };
        f(&mut a);
        a
    };
    let nodes = vec![
        node(
            "Constant",
            &[],
            &["c_float"],
            vec![attr("value_float", |a| {
                a.r#type = attribute_type::FLOAT;
                a.f = 2.0;
            })],
        ),
        node(
            "Constant",
            &[],
            &["c_floats"],
            vec![attr("value_floats", |a| {
                a.r#type = attribute_type::FLOATS;
                a.floats = vec![1.0, 2.0, 3.0];
            })],
        ),
        node(
            "Constant",
            &[],
            &["c_ints"],
            vec![attr("value_ints", |a| {
                a.r#type = attribute_type::INTS;
                a.ints = vec![3, 1];
            })],
        ),
        node(
            "Constant",
            &[],
            &["c_int"],
            vec![attr("value_int", |a| {
                a.r#type = attribute_type::INT;
                a.i = 1;
            })],
        ),
        node(
            "Constant",
            &[],
            &["c_tensor"],
            vec![AttributeProto {
                name: "value".into(),
                r#type: attribute_type::TENSOR,
                t: Some(f32_tensor("", &[3], &[10.0, 20.0, 30.0])),
                ..Default::default()
            }],
        ),
        node("Mul", &["c_floats", "c_float"], &["scaled"], vec![]),
        node("Add", &["scaled", "c_tensor"], &["summed"], vec![]),
        node("Reshape", &["x", "c_ints"], &["r"], vec![]),
        node("Unsqueeze", &["summed", "c_int_1d"], &["u"], vec![]),
        node("Add", &["r", "u"], &["y"], vec![]),
    ];
    let m = model(
        graph(
            nodes,
            vec![value_info("x", data_type::FLOAT, &[D::V(3)])],
            vec![untyped("y")],
            vec![i64_tensor("c_int_1d", &[1], &[0])],
        ),
        18,
    );
    let p = load(&m);
    let g = &p.entries[0];
    // Only the data path remains: reshape and add; the constants folded to [1, 3] = [12, 24, 36].
    assert_eq!(
        g.op_counts().into_iter().collect::<Vec<_>>(),
        [("aten.add.Tensor".to_string(), 1), ("aten.reshape.default".to_string(), 1)]
    );
    let add = g.nodes.iter().find(|n| n.op == "aten.add.Tensor").unwrap();
    let Arg::Tensor(c) = add.args[1] else { panic!() };
    let ValueDef::Const(bytes) = &g.value(c).def else { panic!("{:?}", g.value(c).def) };
    let want: Vec<u8> = [12.0f32, 24.0, 36.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(bytes.0, want);
    assert_eq!(g.value(g.outputs[0].value).ty, TensorType::new(DType::Float32, &[3, 3]));
}

#[test]
fn onnx_unsupported_ops_are_listed_in_one_error() {
    let mut foreign = node("FancyOp", &["x"], &["d"], vec![]);
    foreign.domain = "com.example".into();
    foreign.name = String::new();
    let m = model(
        graph(
            vec![
                node("Relu", &["x"], &["a"], vec![]),
                node("Frobnicate", &["a"], &["b"], vec![]),
                node("Frobnicate", &["b"], &["c"], vec![]),
                node("StringNormalizer", &["c"], &["s"], vec![]),
                foreign,
            ],
            vec![value_info("x", data_type::FLOAT, &[D::V(2)])],
            vec![untyped("s"), untyped("d")],
            vec![],
        ),
        18,
    );
    let Err(OnnxError::Unsupported(u)) = import(&m) else { panic!("expected Unsupported") };
    assert_eq!(u.ops.len(), 3);
    assert_eq!(u.ops["Frobnicate"], ["Frobnicate_b", "Frobnicate_c"]);
    assert_eq!(u.ops["StringNormalizer"], ["StringNormalizer_s"]);
    assert_eq!(u.ops["com.example::FancyOp"], ["#4"]);
    let text = OnnxError::Unsupported(u).to_string();
    assert!(text.contains("3 unsupported op type(s)") && text.contains("Frobnicate ×2"), "{text}");
}

#[test]
fn onnx_malformed_graphs_are_typed_errors() {
    let base = relu_model();
    let with = |f: fn(&mut ModelProto)| {
        let mut m = base.clone();
        f(&mut m);
        import(&m).unwrap_err()
    };
    fn g(m: &mut ModelProto) -> &mut GraphProto {
        m.graph.as_mut().unwrap()
    }
    let e = with(|m| m.graph = None);
    assert!(matches!(e, OnnxError::NoGraph), "{e}");
    let e = with(|m| m.opset_import[0].version = 99);
    assert!(matches!(e, OnnxError::Opset { version: 99, .. }), "{e}");
    let e = with(|m| g(m).node[0].input[0] = "nope".into());
    assert!(matches!(&e, OnnxError::UndefinedValue { value, .. } if value == "nope"), "{e}");
    let e = with(|m| g(m).output[0].name = "missing".into());
    assert!(matches!(e, OnnxError::UndefinedOutput(_)), "{e}");
    let e = with(|m| {
        let n = g(m).node[0].clone();
        g(m).node.push(n);
    });
    assert!(matches!(e, OnnxError::DuplicateValue(_)), "{e}");
    let e = with(|m| {
        g(m).input[0].r#type = Some(TypeProto {
            value: Some(type_proto::Value::SequenceType(type_proto::Sequence { elem_type: None })),
            denotation: String::new(),
        })
    });
    assert!(matches!(e, OnnxError::UnsupportedType { .. }) && e.to_string().contains("sequence"), "{e}");
    let e = with(|m| g(m).input[0] = value_info("x", data_type::STRING, &[D::V(2)]));
    assert!(matches!(e, OnnxError::Dtype { code: 8, .. }), "{e}");
    let e = with(|m| g(m).output[0] = value_info("y", data_type::INT64, &[D::V(2), D::V(3)]));
    assert!(matches!(e, OnnxError::TypeMismatch { .. }), "{e}");
    let e = with(|m| g(m).output[0] = value_info("y", data_type::FLOAT, &[D::V(2), D::V(4)]));
    assert!(matches!(e, OnnxError::TypeMismatch { .. }), "{e}");
    let e = with(|m| {
        let o = g(m).output[0].clone();
        g(m).output.push(o);
    });
    assert!(matches!(e, OnnxError::DuplicateOutput(_)), "{e}");
    let e = with(|m| g(m).node[0].input.clear());
    assert!(matches!(e, OnnxError::Arity { .. }), "{e}");
}

#[test]
fn onnx_bad_initializers_are_typed_errors() {
    let cases: Vec<(TensorProto, &str)> = vec![
        (raw_tensor("w", data_type::FLOAT, &[2, 3], vec![0; 20]), "raw_data has 20 bytes"),
        (
            TensorProto {
                name: "w".into(),
                data_type: data_type::FLOAT,
                dims: vec![4],
                float_data: vec![1.0],
                ..Default::default()
            },
            "float_data has 1",
        ),
        (raw_tensor("w", 99, &[1], vec![0; 4]), "unsupported element type 99"),
        (raw_tensor("w", data_type::UINT32, &[1], vec![0; 4]), "UINT32"),
        (raw_tensor("w", data_type::FLOAT, &[-1], vec![]), "negative dim"),
        (raw_tensor("w", data_type::FLOAT, &[1 << 40, 1 << 40], vec![]), "overflow"),
        (raw_tensor("w", data_type::FLOAT, &[1 << 31, 1 << 31], vec![]), "too large"),
        (TensorProto { segment: Some(Segment { begin: 0, end: 1 }), ..f32_tensor("w", &[1], &[1.0]) }, "segmented"),
    ];
    for (t, want) in cases {
        let m = model(graph(vec![node("Identity", &["w"], &["y"], vec![])], vec![], vec![untyped("y")], vec![t]), 18);
        let e = import(&m).unwrap_err();
        assert!(e.to_string().contains(want), "expected `{want}` in: {e}");
        assert!(e.to_string().contains("`w`"), "the error should name the tensor: {e}");
    }
}

#[test]
fn onnx_lowering_errors_name_the_node() {
    // A Reshape whose shape is run-time data.
    let m = model(
        graph(
            vec![node("Reshape", &["x", "s"], &["y"], vec![])],
            vec![value_info("x", data_type::FLOAT, &[D::V(6)]), value_info("s", data_type::INT64, &[D::V(2)])],
            vec![untyped("y")],
            vec![],
        ),
        18,
    );
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, OnnxError::Lowering { node, op, .. } if node == "`Reshape_y`" && op == "Reshape"), "{e}");
    // Incompatible shapes, rejected by the registry's inference.
    let m = model(
        graph(
            vec![node("MatMul", &["a", "b"], &["y"], vec![])],
            vec![
                value_info("a", data_type::FLOAT, &[D::V(2), D::V(3)]),
                value_info("b", data_type::FLOAT, &[D::V(4), D::V(5)]),
            ],
            vec![untyped("y")],
            vec![],
        ),
        18,
    );
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, OnnxError::Infer { node, .. } if node == "`MatMul_y`"), "{e}");
    // An attribute of the wrong type.
    let m = model(
        graph(
            vec![node("LeakyRelu", &["x"], &["y"], vec![ints_attr("alpha", &[1])])],
            vec![value_info("x", data_type::FLOAT, &[D::V(2)])],
            vec![untyped("y")],
            vec![],
        ),
        18,
    );
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, OnnxError::Attribute { attr, .. } if attr == "alpha"), "{e}");
    let _ = float_attr;
}

/// Found by the `onnx_read` fuzzer: a Concat of scalar constants folded at import indexed axis 0
/// of a scalar and panicked.
#[test]
fn onnx_concat_of_scalars_is_a_typed_error() {
    let m = model(
        graph(
            vec![node("Concat", &["a", "b"], &["y"], vec![])],
            vec![],
            vec![untyped("y")],
            vec![i64_tensor("a", &[], &[1]), i64_tensor("b", &[], &[2])],
        ),
        18,
    );
    let e = import(&m).unwrap_err();
    assert!(e.to_string().contains("cannot concatenate scalars"), "{e}");
}

/// Found by the `onnx_read` fuzzer: `GatherElements` of a rank-0 input indexed its dim at axis
/// 0 (which `axis` accepts for a scalar, as PyTorch does) and panicked. Every lowering that picks
/// a dim by axis refuses a rank-0 input instead.
#[test]
fn onnx_axes_of_scalars_are_typed_errors() {
    let int = |name: &str, v: i64| AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i: v,
        ..Default::default()
    };
    let idx = || i64_tensor("i", &[], &[0]);
    let axes = || i64_tensor("a", &[1], &[0]);
    let cases: Vec<(&str, NodeProto, Vec<TensorProto>)> = vec![
        ("GatherElements", node("GatherElements", &["x", "i"], &["y"], vec![]), vec![idx()]),
        ("Gather", node("Gather", &["x", "i"], &["y"], vec![]), vec![idx()]),
        ("Squeeze", node("Squeeze", &["x", "a"], &["y"], vec![]), vec![axes()]),
        ("Split", node("Split", &["x"], &["y", "z"], vec![int("num_outputs", 2)]), vec![]),
        (
            "Slice",
            node("Slice", &["x", "s", "e", "a"], &["y"], vec![]),
            vec![i64_tensor("s", &[1], &[0]), i64_tensor("e", &[1], &[1]), axes()],
        ),
        ("Pad", node("Pad", &["x", "p", "", "a"], &["y"], vec![]), vec![i64_tensor("p", &[2], &[0, 0]), axes()]),
        ("CumSum", node("CumSum", &["x", "i"], &["y"], vec![int("exclusive", 1)]), vec![idx()]),
    ];
    for (op, n, inits) in cases {
        let outputs: Vec<ValueInfoProto> = n.output.iter().map(|o| untyped(o)).collect();
        let m = model(graph(vec![n], vec![value_info("x", data_type::FLOAT, &[])], outputs, inits), 18);
        let e = import(&m).expect_err(op);
        assert!(e.to_string().contains("out of range for rank 0"), "{op}: {e}");
    }
}

/// Found by the `onnx_read` fuzzer: an empty initializer (no elements, so within every element
/// bound) with long axes was kept on the host for folding, and folders that walk one index list
/// per axis, or reduce over the empty axis, tried to allocate terabytes. Such tensors stay off
/// the host; the ops are lowered instead.
#[test]
fn onnx_empty_tensors_with_long_axes_are_not_folded() {
    let empty = |dims: &[i64]| TensorProto {
        name: "x".into(),
        data_type: data_type::INT64,
        dims: dims.to_vec(),
        ..Default::default()
    };
    // A Slice of [0, 2^40] along its second axis: its folder would list 2^40 indices.
    let m = model(
        graph(
            vec![node("Slice", &["x", "s", "e", "a"], &["y"], vec![])],
            vec![],
            vec![untyped("y")],
            vec![
                empty(&[0, 1 << 40]),
                i64_tensor("s", &[1], &[0]),
                i64_tensor("e", &[1], &[1]),
                i64_tensor("a", &[1], &[1]),
            ],
        ),
        18,
    );
    let p = import(&m).unwrap();
    let ops: Vec<&str> = p.entries[0].nodes.iter().map(|n| n.op.as_str()).collect();
    assert!(ops.contains(&"aten.slice.Tensor"), "lowered, not folded: {ops:?}");
    // ReduceSum over the empty axis of [0, 4000, 4000, 4000]: 64 billion sums of nothing.
    let m = model(
        graph(
            vec![node("ReduceSum", &["x", "a"], &["y"], vec![])],
            vec![],
            vec![untyped("y")],
            vec![empty(&[0, 4000, 4000, 4000]), i64_tensor("a", &[1], &[0])],
        ),
        18,
    );
    let p = import(&m).unwrap();
    let ops: Vec<&str> = p.entries[0].nodes.iter().map(|n| n.op.as_str()).collect();
    assert!(ops.iter().any(|op| op.starts_with("aten.sum")), "lowered, not folded: {ops:?}");
    // Concat along axis 1 of empty tensors whose axes from 1 on multiply past usize before
    // their last, 0, is reached: the folder sized its blocks by that product and overflowed.
    let mut dims = vec![0i64];
    dims.extend([4000; 16]);
    dims.push(0);
    let mut y = empty(&dims);
    y.name = "z".into();
    let m = model(
        graph(
            vec![node(
                "Concat",
                &["x", "z"],
                &["y"],
                vec![AttributeProto { name: "axis".into(), r#type: attribute_type::INT, i: 1, ..Default::default() }],
            )],
            vec![],
            vec![untyped("y")],
            vec![empty(&dims), y],
        ),
        18,
    );
    let p = import(&m).unwrap();
    assert_eq!(p.entries[0].values[p.entries[0].outputs[0].value.index()].ty.shape.len(), 18);
}

/// Found by the `onnx_read` fuzzer: `Clip` of a float8 input with a constant lower bound and a
/// tensor upper bound made the constant bound a tensor of 8 bytes (an f64) typed as one-byte
/// float8, which the verifier refused. A constant of a dtype the importer cannot encode is now
/// a typed error at the node.
#[test]
fn onnx_constants_of_unencodable_dtypes_are_typed_errors() {
    let m = model(
        graph(
            vec![node("Clip", &["x", "lo", "hi"], &["y"], vec![])],
            vec![
                value_info("x", data_type::FLOAT8E4M3FN, &[D::V(4)]),
                value_info("hi", data_type::FLOAT8E4M3FN, &[D::V(4)]),
            ],
            vec![untyped("y")],
            vec![i64_tensor("lo", &[], &[-1])],
        ),
        13,
    );
    let e = import(&m).unwrap_err();
    assert!(matches!(&e, OnnxError::Lowering { op, reason, .. } if op == "Clip" && reason.contains("float8")), "{e}");
}

/// xorshift64*, for reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn onnx_corrupt_files_never_panic() {
    // A real model with initializers, attributes and value infos.
    let data = backend_data_dir();
    let bytes = std::fs::read(data.join("light/light_inception_v1.onnx")).unwrap();
    assert!(onnx::read_bytes(&bytes, "m", Path::new(".")).is_ok());
    // Every truncation is an error (or, rarely, a smaller valid model), never a panic.
    let mut errors = 0;
    for cut in (0..bytes.len()).step_by(97) {
        if onnx::read_bytes(&bytes[..cut], "m", Path::new(".")).is_err() {
            errors += 1;
        }
    }
    assert!(errors > 0);
    // Bit flips and random bytes.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.next() % 8 {
            let i = (rng.next() % b.len() as u64) as usize;
            b[i] ^= 1 << (rng.next() % 8);
        }
        let _ = onnx::read_bytes(&b, "m", Path::new("."));
    }
    for len in [0usize, 1, 7, 64, 4096] {
        let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = onnx::read_bytes(&b, "m", Path::new("."));
    }
    // A file that is not ONNX at all.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.onnx");
    std::fs::write(&p, b"\xff\xff\xff\xff this is not a protobuf").unwrap();
    let e = load_file(&p).unwrap_err();
    assert!(matches!(e, FrontendError::Onnx { source: OnnxError::Decode(_), .. }), "{e}");
    let e = load_file(&dir.path().join("absent.onnx")).unwrap_err();
    assert!(matches!(e, FrontendError::Onnx { source: OnnxError::Io { .. }, .. }), "{e}");
}
