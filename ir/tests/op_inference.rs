//! The registry's shape/dtype inference against PyTorch's own results.
//!
//! `data/op_cases.json` is produced by `data/gen_op_cases.py`, which calls every registered op
//! through `torch.ops.aten` on real tensors and records the output dtypes and shapes (or the error
//! torch raised). Regenerate it with
//! `/work/main/.venv/bin/python ir/tests/data/gen_op_cases.py` after changing the cases.

use std::collections::{BTreeMap, BTreeSet};

use genie_ir::registry::{self, ArgKind, Schema};
use genie_ir::{Arg, DType, TensorType, ValueId};
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

#[test]
fn every_census_op_is_registered() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../testsuite/data/op_census.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let census: BTreeMap<String, Value> = serde_json::from_str(&text).expect("op_census.json is a JSON object");
    assert!(!census.is_empty(), "empty op census");
    let missing: Vec<&String> = census
        .keys()
        // Importers remove `getitem`: tuple outputs become separate values.
        .filter(|op| op.as_str() != "_operator.getitem" && registry::lookup(op).is_err())
        .collect();
    assert!(missing.is_empty(), "ops torch.export emits for the census models but the registry lacks: {missing:?}");
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
