//! The registry's shape/dtype inference against PyTorch's own results.
//!
//! `data/op_cases.json` is produced by `data/gen_op_cases.py`, which calls every registered op
//! through `torch.ops.<namespace>` on real tensors and records the output dtypes and shapes (or
//! the error torch raised). Regenerate it with
//! `/work/main/.venv/bin/python ir/tests/data/gen_op_cases.py` after changing the cases.

use std::collections::{BTreeMap, BTreeSet};

use genie_ir::registry::{self, ArgKind, Schema};
use genie_ir::{Arg, DType, Dim, TensorType, ValueId};
use serde_json::Value;

const TABLE: &str = include_str!("data/op_cases.json");

fn table() -> Value {
    serde_json::from_str(TABLE).expect("op_cases.json is valid JSON")
}

fn cases(table: &Value) -> &Vec<Value> {
    table["cases"].as_array().expect("`cases` is a list")
}

/// One case's label for failure messages: op, arguments and note.
fn label(case: &Value) -> String {
    let note = case.get("note").and_then(Value::as_str).map(|n| format!("  ({n})")).unwrap_or_default();
    format!("{}  args={}  kwargs={}{note}", case["op"].as_str().unwrap_or("?"), case["args"], case["kwargs"])
}

fn tensor_type(spec: &Value) -> Result<TensorType, String> {
    let dtype = spec["dtype"].as_str().ok_or("tensor without dtype")?;
    let dtype = DType::from_name(dtype).ok_or_else(|| format!("unknown dtype `{dtype}`"))?;
    let shape = spec["shape"]
        .as_array()
        .ok_or("tensor without shape")?
        .iter()
        .map(|d| d.as_i64().ok_or_else(|| format!("bad dim {d}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TensorType::new(dtype, &shape))
}

/// Convert one JSON-encoded argument; `kind` is the schema's kind for its slot (lists need it).
fn convert(v: &Value, kind: Option<&ArgKind>, types: &mut Vec<TensorType>) -> Result<Arg, String> {
    Ok(match v {
        Value::Null => Arg::None,
        Value::Bool(b) => Arg::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Arg::Int(i),
            None => Arg::Float(n.as_f64().ok_or_else(|| format!("bad number {n}"))?),
        },
        Value::String(s) => Arg::Str(s.clone()),
        Value::Object(o) => {
            let (tag, inner) = o.iter().next().ok_or("empty object")?;
            let name = || inner.as_str().map(str::to_string).ok_or_else(|| format!("bad {tag} {inner}"));
            match tag.as_str() {
                "tensor" => {
                    types.push(tensor_type(inner)?);
                    Arg::Tensor(ValueId(types.len() as u32 - 1))
                }
                "dtype" => Arg::DType(DType::from_name(&name()?).ok_or_else(|| format!("unknown dtype {inner}"))?),
                "device" => Arg::Device(name()?),
                "layout" => Arg::Layout(name()?),
                "memory_format" => Arg::MemoryFormat(name()?),
                other => return Err(format!("unknown tag `{other}`")),
            }
        }
        Value::Array(items) => {
            let is_tensor = |x: &Value| x.get("tensor").is_some();
            let tensorish =
                items.iter().any(is_tensor) || matches!(kind, Some(ArgKind::TensorList | ArgKind::OptTensorList));
            if tensorish {
                let mut ids = Vec::new();
                for x in items {
                    ids.push(match convert(x, None, types)? {
                        Arg::Tensor(id) => Some(id),
                        Arg::None => None,
                        other => return Err(format!("tensor list element {other:?}")),
                    });
                }
                if matches!(kind, Some(ArgKind::OptTensorList)) || ids.iter().any(Option::is_none) {
                    Arg::OptTensors(ids)
                } else {
                    Arg::Tensors(ids.into_iter().flatten().collect())
                }
            } else if matches!(kind, Some(ArgKind::FloatList)) || items.iter().any(Value::is_f64) {
                Arg::Floats(
                    items
                        .iter()
                        .map(|x| x.as_f64().ok_or_else(|| format!("bad float {x}")))
                        .collect::<Result<_, _>>()?,
                )
            } else if matches!(kind, Some(ArgKind::BoolList(_))) || items.iter().any(Value::is_boolean) {
                Arg::Bools(
                    items
                        .iter()
                        .map(|x| x.as_bool().ok_or_else(|| format!("bad bool {x}")))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                Arg::Ints(
                    items.iter().map(|x| x.as_i64().ok_or_else(|| format!("bad int {x}"))).collect::<Result<_, _>>()?,
                )
            }
        }
    })
}

/// Bind a case's arguments through the op's schema and run inference.
fn infer_case(case: &Value) -> Result<Vec<TensorType>, String> {
    let op = case["op"].as_str().ok_or("case without op")?;
    let def = registry::lookup(op).map_err(|e| e.to_string())?;
    let schema = &def.schema;
    let mut types = Vec::new();
    let mut positional = Vec::new();
    for (i, a) in case["args"].as_array().ok_or("args is not a list")?.iter().enumerate() {
        positional.push(convert(a, schema.args.get(i).map(|s| &s.kind), &mut types)?);
    }
    let mut keywords = Vec::new();
    for (name, a) in case["kwargs"].as_object().ok_or("kwargs is not an object")? {
        let kind = schema.arg_index(name).map(|i| &schema.args[i].kind);
        keywords.push((name.clone(), convert(a, kind, &mut types)?));
    }
    let bound = schema.bind(positional, keywords).map_err(|e| format!("bind: {e}"))?;
    let lookup = |v: ValueId| types.get(v.index());
    registry::infer(op, &bound, &lookup).map_err(|e| e.to_string())
}

fn fmt_types(ts: &[TensorType]) -> String {
    format!("[{}]", ts.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
}

#[test]
fn inference_matches_torch() {
    let table = table();
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases(&table) {
        checked += 1;
        // A panic is a failure of its own: bad arguments must give an error, never a panic.
        let Ok(ours) = std::panic::catch_unwind(|| infer_case(case)) else {
            failures.push(format!("{}\n      inference panicked", label(case)));
            continue;
        };
        let expect = &case["expect"];
        let unmodeled = case.get("unmodeled").and_then(Value::as_str);
        let problem = match (expect.get("error"), unmodeled, ours) {
            (Some(_), _, Err(_)) => None,
            (Some(torch_err), _, Ok(outs)) => {
                Some(format!("torch raised {torch_err}, we inferred {}", fmt_types(&outs)))
            }
            (None, Some(_), Err(_)) => None,
            (None, Some(why), Ok(outs)) => {
                Some(format!("unmodeled ({why}): we must report an error, inferred {}", fmt_types(&outs)))
            }
            (None, None, Err(e)) => Some(format!("torch gives {expect}, we fail: {e}")),
            (None, None, Ok(outs)) => {
                let want = expect.as_array().ok_or("expect is neither a list nor an error").and_then(|outs| {
                    outs.iter().map(tensor_type).collect::<Result<Vec<_>, _>>().map_err(|_| "bad output")
                });
                match want {
                    Err(e) => Some(format!("bad case: {e}")),
                    Ok(want) if want != outs => {
                        Some(format!("torch gives {}, we infer {}", fmt_types(&want), fmt_types(&outs)))
                    }
                    Ok(_) => None,
                }
            }
        };
        if let Some(p) = problem {
            failures.push(format!("{}\n      {p}", label(case)));
        }
    }
    assert!(checked > 0, "no cases in op_cases.json");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases disagree with PyTorch:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn every_registered_op_has_a_case_and_every_case_a_registered_op() {
    let table = table();
    let covered: BTreeSet<&str> = cases(&table).iter().filter_map(|c| c["op"].as_str()).collect();
    let registered: BTreeSet<&str> = registry::registry().names().collect();
    let untested: Vec<_> = registered.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&registered).collect();
    assert!(untested.is_empty(), "registered ops without a case in op_cases.json: {untested:?}");
    assert!(unknown.is_empty(), "cases name ops that are not registered: {unknown:?}");
}

#[test]
fn schemas_are_torch_schemas() {
    let table = table();
    let torch: BTreeMap<&str, &str> = table["schemas"]
        .as_object()
        .expect("`schemas` is an object")
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    let mut failures = Vec::new();
    for name in registry::registry().names() {
        let def = registry::lookup(name).expect("listed ops resolve");
        match torch.get(name) {
            None => failures.push(format!("{name}: no torch schema in the table")),
            Some(&text) if text != def.schema_text => {
                failures.push(format!("{name}:\n      ours  {}\n      torch {text}", def.schema_text))
            }
            Some(&text) => match Schema::parse(text) {
                Ok(parsed) if parsed == def.schema => {}
                Ok(_) => failures.push(format!("{name}: same text, different parse")),
                Err(e) => failures.push(format!("{name}: torch's schema does not parse: {e}")),
            },
        }
    }
    assert!(failures.is_empty(), "schemas differ from PyTorch's:\n  {}", failures.join("\n  "));
}

/// The registry's schemas of the ops the census found are PyTorch's (that the `.pt2` importer
/// takes every census op, registered or not, is `frontends/tests/op_census.rs`).
#[test]
fn census_ops_in_the_registry_have_the_census_schema() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testsuite/data/op_census.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let census: BTreeMap<String, Value> = serde_json::from_str(&text).expect("op_census.json is a JSON object");
    assert!(!census.is_empty(), "empty op census");
    let registered = census.keys().filter(|op| registry::lookup(op).is_ok()).count();
    assert!(registered > 100, "only {registered} census ops are registered");
    let differ: Vec<String> = census
        .iter()
        .filter_map(|(op, entry)| {
            let (def, schema) = (registry::lookup(op).ok()?, entry["schema"].as_str()?);
            (def.schema_text != schema)
                .then(|| format!("{op}:\n      ours   {}\n      census {schema}", def.schema_text))
        })
        .collect();
    assert!(differ.is_empty(), "registry schemas differ from the census's:\n  {}", differ.join("\n  "));
}

/// Every case with its arguments mangled (tensors made 0-dim or empty, ints made extreme, lists
/// emptied): inference may refuse, but it must not panic.
#[test]
fn inference_never_panics_on_mangled_arguments() {
    fn mangle(v: &Value, how: usize) -> Value {
        match v {
            Value::Object(o) if o.contains_key("tensor") => {
                let shape: Vec<Value> = match how {
                    0 => vec![],
                    1 => vec![Value::from(0)],
                    _ => vec![Value::from(1); 6],
                };
                serde_json::json!({"tensor": {"dtype": o["tensor"]["dtype"], "shape": shape}})
            }
            Value::Number(n) if n.is_i64() => Value::from([-1, i64::MIN, i64::MAX, 0, 1 << 40][how % 5]),
            Value::Array(items) if how == 3 => Value::Array(vec![]),
            Value::Array(items) => Value::Array(items.iter().map(|x| mangle(x, how)).collect()),
            other => other.clone(),
        }
    }
    let table = table();
    let mut panics = Vec::new();
    for case in cases(&table) {
        for how in 0..5 {
            let mut m = case.clone();
            m["args"] = mangle(&case["args"], how);
            m["kwargs"] = mangle(&case["kwargs"], how);
            if std::panic::catch_unwind(|| infer_case(&m)).is_err() {
                panics.push(label(&m));
            }
        }
    }
    assert!(panics.is_empty(), "inference panicked on {} mangled cases:\n  {}", panics.len(), panics.join("\n  "));
}

/// Inference of `op` on `args` whose tensor ids index `types`.
fn infer_with(op: &str, args: &[Arg], types: &[TensorType]) -> Result<Vec<TensorType>, registry::InferError> {
    let lookup = |v: ValueId| types.get(v.index());
    registry::infer(op, args, &lookup)
}

/// Equations torch would never be given: every one is an `InferError` that names the problem,
/// never a panic (the text comes from a file).
#[test]
fn bad_einsum_equations_are_errors_naming_the_problem() {
    let types = [TensorType::new(DType::Float32, &[2, 3]), TensorType::new(DType::Float32, &[3, 4])];
    let infer = |equation: &str, operands: &[u32]| {
        let args = vec![
            Arg::Str(equation.to_string()),
            Arg::Tensors(operands.iter().map(|&i| ValueId(i)).collect()),
            Arg::None,
        ];
        std::panic::catch_unwind(|| infer_with("aten.einsum.default", &args, &types))
            .unwrap_or_else(|_| panic!("einsum inference panicked on {equation:?}"))
    };
    for (equation, operands, names) in [
        ("ij,jk->ik", &[0][..], "operands"),
        ("ij->ij", &[0, 1][..], "tensors were given"),
        ("ij,jk->ik", &[][..], "at least one operand"),
        ("ïj->j", &[0][..], "invalid subscript at index 0"),
        ("ij->j->", &[0][..], "invalid subscript at index 5"),
        ("ij->i,j", &[0][..], "invalid subscript"),
        (".", &[0][..], "not part of an ellipsis"),
        ("ij.", &[0][..], "not part of an ellipsis"),
        ("......", &[0][..], "second ellipsis"),
        ("...->......", &[0][..], "second ellipsis"),
        ("ijk", &[0][..], "3 subscripts for operand 0 of rank 2"),
        ("i", &[0][..], "1 subscripts for operand 0 of rank 2"),
        ("ij->k", &[0][..], "does not appear"),
        ("ij->jj", &[0][..], "more than once"),
        ("ii", &[0][..], "repeated"),
        ("ij,kj->ik", &[0, 1][..], "does not broadcast"),
        ("ij,jk->ik", &[1, 0][..], "does not broadcast"),
    ] {
        match infer(equation, operands) {
            Err(e) => assert!(e.to_string().contains(names), "{equation:?}: {e} should mention {names:?}"),
            Ok(outs) => panic!("{equation:?} was accepted: {outs:?}"),
        }
    }
    let ok = infer("ij,jk->ik", &[0, 1]).expect("a matrix product");
    assert_eq!(ok, vec![TensorType::new(DType::Float32, &[2, 4])]);
}

/// `_native_batch_norm_legit.no_stats` in eval mode has no statistics to use (libtorch crashes on
/// it on the CPU), so inference refuses it.
#[test]
fn batch_norm_without_stats_needs_training() {
    let types = [TensorType::new(DType::Float32, &[2, 3, 4])];
    let args = |training| {
        vec![Arg::Tensor(ValueId(0)), Arg::None, Arg::None, Arg::Bool(training), Arg::Float(0.1), Arg::Float(1e-5)]
    };
    let op = "aten._native_batch_norm_legit.no_stats";
    let e = infer_with(op, &args(false), &types).unwrap_err();
    assert!(e.to_string().contains("training=True"), "{e}");
    let outs = infer_with(op, &args(true), &types).unwrap();
    let stat = TensorType::new(DType::Float32, &[3]);
    assert_eq!(outs, vec![types[0].clone(), stat.clone(), stat]);
}

/// `unfold` of a symbolic dim: `(n - size) // step + 1` windows (no division with step 1); a
/// static dim shorter than the window is an error.
#[test]
fn unfold_windows_of_a_symbolic_dim() {
    let s0 = Dim::symbol("s0");
    let types = [TensorType::with_dims(DType::Float32, vec![Dim::constant(2), s0.clone()])];
    let args = |dim, size, step| vec![Arg::Tensor(ValueId(0)), Arg::Int(dim), Arg::Int(size), Arg::Int(step)];
    let op = "aten.unfold.default";
    let shape = |windows: Dim, size| vec![TensorType::with_dims(DType::Float32, vec![Dim::constant(2), windows, size])];
    let windows = s0.sub(&Dim::constant(3)).floor_div(&Dim::constant(2)).add(&Dim::constant(1));
    assert_eq!(infer_with(op, &args(1, 3, 2), &types).unwrap(), shape(windows, Dim::constant(3)));
    assert_eq!(infer_with(op, &args(-1, 3, 1), &types).unwrap(), shape(s0.sub(&Dim::constant(2)), Dim::constant(3)));
    let e = infer_with(op, &args(0, 3, 1), &types).unwrap_err();
    assert!(e.to_string().contains("maximum size"), "{e}");
    for (size, step, names) in [(-1, 1, "size"), (2, 0, "step"), (i64::MAX, 1, "maximum size")] {
        let e = infer_with(op, &args(0, size, step), &types).unwrap_err();
        assert!(e.to_string().contains(names), "size {size}, step {step}: {e}");
    }
}

/// A symbolic spatial dim scales by a whole factor only; grid sampling needs the same batch dim
/// on both sides (a batch of one is not broadcast).
#[test]
fn interpolation_of_symbolic_dims() {
    let s0 = Dim::symbol("s0");
    let x = TensorType::with_dims(DType::Float32, vec![Dim::constant(1), Dim::constant(3), s0.clone()]);
    let upsample = |scale: f64| {
        let args = vec![Arg::Tensor(ValueId(0)), Arg::None, Arg::Bool(false), Arg::Floats(vec![scale])];
        infer_with("aten.upsample_linear1d.vec", &args, std::slice::from_ref(&x))
    };
    let want = TensorType::with_dims(DType::Float32, vec![Dim::constant(1), Dim::constant(3), s0.scale(2)]);
    assert_eq!(upsample(2.0).unwrap(), vec![want]);
    assert!(upsample(1.5).unwrap_err().to_string().contains("symbolic"));

    let n = |batch: Dim, rest: &[i64]| {
        let mut dims = vec![batch];
        dims.extend(rest.iter().map(|&d| Dim::constant(d)));
        TensorType::with_dims(DType::Float32, dims)
    };
    let sample = |grid: TensorType| {
        let types = [n(s0.clone(), &[3, 4, 5]), grid];
        let args = vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1)), Arg::Int(0), Arg::Int(0), Arg::Bool(false)];
        infer_with("aten.grid_sampler_2d.default", &args, &types)
    };
    assert_eq!(sample(n(s0.clone(), &[6, 7, 2])).unwrap(), vec![n(s0.clone(), &[3, 6, 7])]);
    for other in [Dim::constant(1), Dim::symbol("s1")] {
        let e = sample(n(other.clone(), &[6, 7, 2])).unwrap_err();
        assert!(e.to_string().contains("batch"), "grid batch {other}: {e}");
    }
}

/// `scatter_reduce` names the reductions it takes.
#[test]
fn scatter_reduce_refuses_unknown_reductions() {
    let types = [
        TensorType::new(DType::Float32, &[3, 4]),
        TensorType::new(DType::Int64, &[3, 2]),
        TensorType::new(DType::Float32, &[3, 2]),
    ];
    let args = |reduce: &str| {
        vec![
            Arg::Tensor(ValueId(0)),
            Arg::Int(1),
            Arg::Tensor(ValueId(1)),
            Arg::Tensor(ValueId(2)),
            Arg::Str(reduce.into()),
            Arg::Bool(true),
        ]
    };
    let op = "aten.scatter_reduce.two";
    for reduce in ["sum", "prod", "mean", "amax", "amin"] {
        assert_eq!(infer_with(op, &args(reduce), &types).unwrap(), vec![types[0].clone()], "{reduce}");
    }
    for reduce in ["max", "add", "", "Sum"] {
        let e = infer_with(op, &args(reduce), &types).unwrap_err();
        assert!(e.to_string().contains("sum, prod, mean, amax or amin"), "{reduce:?}: {e}");
    }
}
