//! Unit tests of the executor: kernel coverage, golden cases from eager PyTorch, typed errors,
//! functional semantics of in-place ops, symbol binding, and one hand-made plan.

use std::collections::{BTreeMap, VecDeque};

use genie_codegen::{DevicePlan, DimSource, EntryPlan, IoPort, Step, SymbolInfo, TensorInfo, TensorKind, Transfer};
use genie_ir::{Arg, Batching, DType, Dim, HexBytes, NodeId, Phase, TensorType, ValueId, WeightHash};
use serde_json::Value;
use tch::{Device, Kind, Tensor};

use super::*;

// ---------------------------------------------------------------------------------------------
// Coverage.

#[test]
fn every_registry_op_has_a_kernel_and_every_kernel_an_op() {
    let kernels: std::collections::BTreeSet<&str> = kernel_names().into_iter().collect();
    let registry: std::collections::BTreeSet<&str> = genie_ir::registry::registry().names().collect();
    let missing: Vec<&&str> = registry.difference(&kernels).collect();
    assert!(missing.is_empty(), "registry ops without a kernel: {missing:?}");
    let stray: Vec<&&str> = kernels.difference(&registry).collect();
    assert!(stray.is_empty(), "kernels for ops the registry does not define: {stray:?}");
}

// ---------------------------------------------------------------------------------------------
// Golden cases: every registry op, run by eager PyTorch (testdata/make_op_cases.py).

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

fn json_tensor(v: &Value) -> Tensor {
    let dtype = DType::from_name(v["dtype"].as_str().expect("dtype")).expect("known dtype");
    let shape: Vec<i64> = v["shape"].as_array().expect("shape").iter().map(|d| d.as_i64().expect("dim")).collect();
    let ty = TensorType::new(dtype, &shape);
    tensor_from_bytes(&ty, &shape, &hex(v["hex"].as_str().expect("hex")), Device::Cpu).expect("tensor")
}

fn json_arg(v: &Value) -> Arg {
    let Some(obj) = v.as_object() else { return Arg::None };
    let (k, x) = obj.iter().next().expect("one key");
    let ints = |x: &Value| x.as_array().expect("list").iter().map(|i| i.as_i64().expect("int")).collect();
    match k.as_str() {
        "t" => Arg::Tensor(ValueId(x.as_u64().expect("index") as u32)),
        "ts" => {
            let items: Vec<Option<ValueId>> =
                x.as_array().expect("list").iter().map(|i| i.as_u64().map(|i| ValueId(i as u32))).collect();
            if items.iter().all(Option::is_some) {
                Arg::Tensors(items.into_iter().flatten().collect())
            } else {
                Arg::OptTensors(items)
            }
        }
        "i" => Arg::Int(x.as_i64().expect("int")),
        "is" => Arg::Ints(ints(x)),
        "f" => Arg::Float(match x.as_str() {
            Some(special) => special.parse().expect("inf, -inf or nan"),
            None => x.as_f64().expect("float"),
        }),
        "fs" => Arg::Floats(x.as_array().expect("list").iter().map(|f| f.as_f64().expect("float")).collect()),
        "b" => Arg::Bool(x.as_bool().expect("bool")),
        "s" => Arg::Str(x.as_str().expect("str").to_string()),
        "dtype" => Arg::DType(DType::from_name(x.as_str().expect("dtype")).expect("known dtype")),
        "device" => Arg::Device(x.as_str().expect("device").to_string()),
        "layout" => Arg::Layout(x.as_str().expect("layout").to_string()),
        "mf" => Arg::MemoryFormat(x.as_str().expect("mf").to_string()),
        other => panic!("unknown argument encoding {other}"),
    }
}

fn bytes_of(t: &Tensor) -> Vec<u8> {
    tensor_to_bytes(t).expect("bytes")
}

/// |got - want| <= atol + rtol * |want| elementwise, NaNs where the reference has NaN.
fn close(got: &Tensor, want: &Tensor, rtol: f64, atol: f64) -> Result<(), String> {
    if got.kind() != want.kind() || got.size() != want.size() {
        return Err(format!("{:?} {:?}, want {:?} {:?}", got.kind(), got.size(), want.kind(), want.size()));
    }
    if got.numel() == 0 {
        return Ok(());
    }
    let floating = matches!(want.kind(), Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double);
    if !floating {
        return if bytes_of(got) == bytes_of(want) { Ok(()) } else { Err("values differ".into()) };
    }
    let (g, w) = (got.to_kind(Kind::Double), want.to_kind(Kind::Double));
    let both_nan = g.isnan().logical_and(&w.isnan());
    let same = g.eq_tensor(&w).logical_or(&both_nan);
    let within = (&g - &w).abs().le_tensor(&(w.abs() * rtol + atol));
    let ok = same.logical_or(&within).all().int64_value(&[]) != 0;
    if ok {
        Ok(())
    } else {
        let diff = (&g - &w).abs().nan_to_num(0.0, None, None).max().double_value(&[]);
        Err(format!("max |diff| {diff:e}"))
    }
}

#[test]
fn golden_cases_match_eager_pytorch() {
    let data: Value = serde_json::from_str(include_str!("testdata/op_cases.json")).expect("op_cases.json");
    let cases = data["cases"].as_array().expect("cases");
    let mut covered = std::collections::BTreeSet::new();
    let mut problems = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let op = case["op"].as_str().expect("op");
        covered.insert(op.to_string());
        let def = genie_ir::registry::lookup(op).unwrap_or_else(|e| panic!("case {n}: {e}"));
        let positional: Vec<Arg> = case["args"].as_array().expect("args").iter().map(json_arg).collect();
        let keywords: Vec<(String, Arg)> =
            case["kwargs"].as_object().expect("kwargs").iter().map(|(k, v)| (k.clone(), json_arg(v))).collect();
        let args = def.schema.bind(positional, keywords).unwrap_or_else(|e| panic!("case {n} ({op}): {e}"));
        let inputs: Vec<Tensor> = case["inputs"].as_array().expect("inputs").iter().map(json_tensor).collect();
        let before: Vec<Vec<u8>> = inputs.iter().map(bytes_of).collect();
        let want: Vec<Tensor> = case["outputs"].as_array().expect("outputs").iter().map(json_tensor).collect();
        let lookup = |v: ValueId| inputs.get(v.index()).map(Tensor::shallow_clone);
        let label = format!("case {n} {op}({})", args.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
        let got = match run_op(op, &args, &lookup, &Bindings::new(), Device::Cpu) {
            Ok(g) => g,
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                continue;
            }
        };
        if got.len() != want.len() {
            problems.push(format!("{label}: {} outputs, eager gives {}", got.len(), want.len()));
            continue;
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let r = if case["check"] == "meta" {
                if g.kind() == w.kind() && g.size() == w.size() {
                    Ok(())
                } else {
                    Err(format!("{:?} {:?}, want {:?} {:?}", g.kind(), g.size(), w.kind(), w.size()))
                }
            } else {
                let (rtol, atol) = match w.kind() {
                    Kind::Half | Kind::BFloat16 => (1e-3, 1e-3),
                    _ => (1e-5, 1e-6),
                };
                close(g, w, rtol, atol)
            };
            if let Err(e) = r {
                problems.push(format!("{label}: output {i}: {e}"));
            }
        }
        // Functional semantics: no input changes, in-place overloads included.
        for (i, (t, b)) in inputs.iter().zip(&before).enumerate() {
            if &bytes_of(t) != b {
                problems.push(format!("{label}: input {i} was modified"));
            }
        }
    }
    let uncovered: Vec<&str> = genie_ir::registry::registry().names().filter(|op| !covered.contains(*op)).collect();
    assert!(uncovered.is_empty(), "registry ops with no golden case: {uncovered:?}");
    assert!(problems.is_empty(), "{} of {} cases fail:\n{}", problems.len(), cases.len(), problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// run_op: typed errors, symbolic ints.

fn t(data: &[f32], shape: &[i64]) -> Tensor {
    Tensor::from_slice(data).reshape(shape)
}

fn run(op: &str, args: &[Arg], inputs: &[Tensor], bindings: &Bindings) -> Result<Vec<Tensor>, ExecError> {
    let lookup = |v: ValueId| inputs.get(v.index()).map(Tensor::shallow_clone);
    run_op(op, args, &lookup, bindings, Device::Cpu)
}

#[test]
fn unknown_ops_and_bad_arguments_are_typed_errors() {
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let e =
        run("aten.frobnicate.default", &[Arg::Tensor(ValueId(0))], &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::UnknownOp { node: None, ref op } if op == "aten.frobnicate.default"), "{e}");

    // The schema rejects a wrong kind of argument, or a wrong count.
    let e = run(
        "aten.add.Tensor",
        &[Arg::Tensor(ValueId(0)), Arg::Str("x".into()), Arg::Int(1)],
        &[x.shallow_clone()],
        &Bindings::new(),
    )
    .unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 1, .. }), "{e}");
    let e = run("aten.relu.default", &[], &[], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { .. }), "{e}");
    // A value the op does not accept.
    let args = [Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(0)), Arg::Str("round".into())];
    let e = run("aten.div.Tensor_mode", &args, &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 2, .. }), "{e}");
    let e = run(
        "aten.clamp.default",
        &[Arg::Tensor(ValueId(0)), Arg::None, Arg::None],
        &[x.shallow_clone()],
        &Bindings::new(),
    )
    .unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { .. }), "{e}");
    // A tensor id nobody gave.
    let e = run("aten.relu.default", &[Arg::Tensor(ValueId(7))], &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::MissingTensor { tensor: ValueId(7), .. }), "{e}");
    // An undefined tensor (what `Tensor::new()` makes) is refused, not passed to libtorch.
    let e = run("aten.relu.default", &[Arg::Tensor(ValueId(0))], &[Tensor::new()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadTensor { .. }), "{e}");
    // libtorch's own checks: shapes that do not fit.
    let y = t(&[1.0, 2.0, 3.0], &[3, 1]);
    let e = run(
        "aten.mm.default",
        &[Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1))],
        &[x.shallow_clone(), y],
        &Bindings::new(),
    )
    .unwrap_err();
    match &e {
        ExecError::Torch { op, message, .. } => {
            assert_eq!(op, "aten.mm.default");
            assert!(!message.contains("Exception raised from"), "backtrace kept: {message}");
        }
        other => panic!("{other}"),
    }
    // A failed assert is an error, not a panic.
    let e = run(
        "aten._assert_async.msg",
        &[Arg::Tensor(ValueId(0)), Arg::Str("x must be positive".into())],
        &[Tensor::from_slice(&[false]).reshape([])],
        &Bindings::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("x must be positive"), "{e}");
    let e = run("aten._assert_scalar.default", &[Arg::Int(0), Arg::Str("s0 > 1".into())], &[], &Bindings::new())
        .unwrap_err();
    assert!(e.to_string().contains("s0 > 1"), "{e}");
}

#[test]
fn symbolic_ints_are_evaluated_under_the_bindings() {
    let x = Tensor::arange(12, (Kind::Float, Device::Cpu));
    let s0 = Dim::symbol("s0");
    let args = [Arg::Tensor(ValueId(0)), Arg::SymInts(vec![s0.clone(), Dim::constant(12).floor_div(&s0)])];
    let b: Bindings = [("s0".to_string(), 3)].into();
    let out = run("aten.view.default", &args, &[x.shallow_clone()], &b).unwrap();
    assert_eq!(out[0].size(), [3, 4]);
    let b: Bindings = [("s0".to_string(), 4)].into();
    assert_eq!(run("aten.view.default", &args, &[x.shallow_clone()], &b).unwrap()[0].size(), [4, 3]);
    // Unbound: a typed error naming the argument.
    let e = run("aten.view.default", &args, &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 1, .. }), "{e}");
    // A symbolic Scalar (`full(size, s0 + 1)`).
    let args = [Arg::Ints(vec![2]), Arg::SymInt(s0.add(&Dim::constant(1))), Arg::None, Arg::None, Arg::None, Arg::None];
    let b: Bindings = [("s0".to_string(), 6)].into();
    let out = run("aten.full.default", &args, &[], &b).unwrap();
    assert_eq!(out[0].kind(), Kind::Int64);
    assert_eq!(Vec::<i64>::try_from(&out[0]).unwrap(), [7, 7]);
}

/// Ops named with `_` compute a new tensor: the argument (a resident weight, a state slot) is
/// never written.
#[test]
fn in_place_ops_do_not_mutate_their_inputs() {
    let cases: Vec<(&str, Vec<Arg>, Vec<Tensor>)> = vec![
        (
            "aten.add_.Tensor",
            vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1)), Arg::Int(2)],
            vec![t(&[1.0, 2.0], &[2]), t(&[3.0, 4.0], &[2])],
        ),
        (
            "aten.mul_.Tensor",
            vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1))],
            vec![t(&[1.0, 2.0], &[2]), t(&[3.0, 4.0], &[2])],
        ),
        ("aten.relu_.default", vec![Arg::Tensor(ValueId(0))], vec![t(&[-1.0, 2.0], &[2])]),
        ("aten.silu_.default", vec![Arg::Tensor(ValueId(0))], vec![t(&[-1.0, 2.0], &[2])]),
        (
            "aten.hardtanh_.default",
            vec![Arg::Tensor(ValueId(0)), Arg::Int(0), Arg::Int(1)],
            vec![t(&[-1.0, 2.0], &[2])],
        ),
        (
            "aten.copy_.default",
            vec![Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1)), Arg::Bool(false)],
            vec![t(&[1.0, 2.0], &[2]), t(&[5.0], &[1])],
        ),
        (
            "aten.index_put_.default",
            vec![
                Arg::Tensor(ValueId(0)),
                Arg::OptTensors(vec![Some(ValueId(1))]),
                Arg::Tensor(ValueId(2)),
                Arg::Bool(false),
            ],
            vec![t(&[1.0, 2.0, 3.0], &[3]), Tensor::from_slice(&[1i64]), t(&[9.0], &[1])],
        ),
        (
            "aten.index_copy_.default",
            vec![Arg::Tensor(ValueId(0)), Arg::Int(0), Arg::Tensor(ValueId(1)), Arg::Tensor(ValueId(2))],
            vec![t(&[1.0, 2.0, 3.0], &[3]), Tensor::from_slice(&[2i64]), t(&[9.0], &[1])],
        ),
    ];
    for (op, args, inputs) in cases {
        let before: Vec<Vec<u8>> = inputs.iter().map(bytes_of).collect();
        let out = run(op, &args, &inputs, &Bindings::new()).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert_ne!(bytes_of(&out[0]), before[0], "{op}: the result should differ from the input here");
        for (i, (x, b)) in inputs.iter().zip(&before).enumerate() {
            assert_eq!(&bytes_of(x), b, "{op}: input {i} changed");
        }
        // And the result does not share the input's storage.
        assert_ne!(out[0].data_ptr(), inputs[0].data_ptr(), "{op}: result aliases its input");
    }
    // An in-place op keeps its input's dtype, as the mutated tensor would.
    let half = t(&[1.0, 2.0], &[2]).to_kind(Kind::Half);
    let out = run(
        "aten.add_.Tensor",
        &[Arg::Tensor(ValueId(0)), Arg::Tensor(ValueId(1)), Arg::Int(1)],
        &[half, t(&[0.5, 0.5], &[2])],
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(out[0].kind(), Kind::Half);
}

// ---------------------------------------------------------------------------------------------
// Kernels that check their data before libtorch sees it, against values worked out by hand.

fn tensors(n: u32) -> Vec<Arg> {
    (0..n).map(|i| Arg::Tensor(ValueId(i))).collect()
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).reshape([-1])).expect("floats")
}

/// `transformers.grouped_mm_fallback` against a loop of `mm` over the groups, with an expert that
/// gets no rows, rows past the last offset (zero) and int32 offsets; bad offsets are errors.
#[test]
fn grouped_mm_fallback_is_a_loop_of_mm() {
    let op = "transformers.grouped_mm_fallback.default";
    let x = Tensor::randn([7, 4], (Kind::Float, Device::Cpu));
    let w = Tensor::randn([3, 4, 5], (Kind::Float, Device::Cpu));
    let ends = [2i32, 2, 6];
    let offs = Tensor::from_slice(&ends);
    let out = run(op, &tensors(3), &[x.shallow_clone(), w.shallow_clone(), offs], &Bindings::new()).unwrap();
    assert_eq!(out[0].size(), [7, 5]);
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        let (start_, end_) = (start as i64, end as i64);
        let want = x.narrow(0, start_, end_ - start_).mm(&w.get(i as i64));
        close(&out[0].narrow(0, start_, end_ - start_), &want, 1e-6, 1e-6).unwrap_or_else(|e| panic!("group {i}: {e}"));
        start = end;
    }
    assert_eq!(floats(&out[0].narrow(0, 6, 1)), [0.0; 5], "rows past the last offset are zero");

    // Offsets that decrease, leave [0, S], or do not match the experts are errors, not clamped.
    for (bad, why) in [
        (Tensor::from_slice(&[4i64, 2, 6]), "decreasing"),
        (Tensor::from_slice(&[2i64, 2, 9]), "past the rows"),
        (Tensor::from_slice(&[-1i64, 2, 6]), "negative"),
        (Tensor::from_slice(&[2i64, 6]), "one per expert"),
        (Tensor::from_slice(&[2.0f32, 2.0, 6.0]), "integers"),
    ] {
        let e = run(op, &tensors(3), &[x.shallow_clone(), w.shallow_clone(), bad], &Bindings::new()).unwrap_err();
        assert!(matches!(e, ExecError::BadArgument { index: 2, .. }), "{why}: {e}");
    }
    let e =
        run(op, &tensors(3), &[x.reshape([1, 7, 4]), w.shallow_clone(), Tensor::from_slice(&ends)], &Bindings::new())
            .unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 0, .. }), "{e}");
}

/// `index_add` accumulates repeated indices with alpha converted to self's dtype; an index out
/// of range is an error before libtorch sees it.
#[test]
fn index_add_by_hand_and_out_of_range() {
    let op = "aten.index_add.default";
    let args = |alpha: Arg| {
        vec![Arg::Tensor(ValueId(0)), Arg::Int(0), Arg::Tensor(ValueId(1)), Arg::Tensor(ValueId(2)), alpha]
    };
    let x = Tensor::from_slice(&[1i64, 1, 1, 1]);
    let index = Tensor::from_slice(&[0i64, 0, 3]);
    let source = Tensor::from_slice(&[1i64, 2, 3]);
    // Integer self: alpha 2.5 is 2, as `alpha.to<int64_t>()` makes it.
    let out = run(
        op,
        &args(Arg::Float(2.5)),
        &[x.shallow_clone(), index.shallow_clone(), source.shallow_clone()],
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(Vec::<i64>::try_from(&out[0]).unwrap(), [7, 1, 1, 7]);
    let xf = t(&[0.0, 0.0, 0.0, 0.0], &[4]);
    let out = run(
        op,
        &args(Arg::Float(-0.5)),
        &[xf.shallow_clone(), index.shallow_clone(), t(&[1.0, 2.0, 4.0], &[3])],
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(floats(&out[0]), [-1.5, 0.0, 0.0, -2.0]);
    for bad in [[0i64, 4, 1], [0, -1, 1]] {
        let e = run(
            op,
            &args(Arg::Int(1)),
            &[xf.shallow_clone(), Tensor::from_slice(&bad), t(&[1.0, 2.0, 4.0], &[3])],
            &Bindings::new(),
        )
        .unwrap_err();
        assert!(matches!(e, ExecError::BadArgument { index: 2, .. }), "{bad:?}: {e}");
    }
}

/// `masked_scatter` fills the broadcast mask's ones in order; too short a source is an error.
#[test]
fn masked_scatter_by_hand_and_short_source() {
    let op = "aten.masked_scatter.default";
    let mask = Tensor::from_slice(&[true, false, true, false, true, false]).reshape([2, 3]);
    let x = t(&[0.0; 3], &[1, 3]);
    let out = run(
        op,
        &tensors(3),
        &[x.shallow_clone(), mask.shallow_clone(), t(&[1.0, 2.0, 3.0, 4.0], &[4])],
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(out[0].size(), [2, 3]);
    assert_eq!(floats(&out[0]), [1.0, 0.0, 2.0, 0.0, 3.0, 0.0]);
    let e = run(op, &tensors(3), &[x, mask, t(&[1.0, 2.0], &[2])], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 2, .. }), "{e}");
}

/// `histc` bins as ATen's CPU kernel does: the right edge in the last bin, NaN and values outside
/// not counted, the data's range when min == max.
#[test]
fn histc_by_hand() {
    let op = "aten.histc.default";
    let args = |bins, lo: f64, hi: f64| vec![Arg::Tensor(ValueId(0)), Arg::Int(bins), Arg::Float(lo), Arg::Float(hi)];
    let x = t(&[0.0, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, -1.0, 5.5, f32::NAN, 2.5], &[11]);
    let out = run(op, &args(5, 0.0, 5.0), &[x.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [1.0, 1.0, 2.0, 1.0, 3.0]);
    // min == max: the data's range [2, 2] widened to [1, 3].
    let out = run(op, &args(4, 0.0, 0.0), &[t(&[2.0, 2.0, 2.0], &[3])], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [0.0, 0.0, 3.0, 0.0]);
    let e = run(op, &args(4, 2.0, 1.0), &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 3, .. }), "{e}");
    let e = run(op, &args(0, 0.0, 1.0), &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 1, .. }), "{e}");
    // NaN in the data with min == max: the range is not finite.
    let e = run(op, &args(4, 0.0, 0.0), &[x], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 2, .. }), "{e}");
}

/// `as_strided` addresses its input's own elements, even when the input is a view into a larger
/// tensor (the offset counts from the view's first element; nothing past its end is reachable).
#[test]
fn as_strided_addresses_the_input_not_its_storage() {
    let op = "aten.as_strided.default";
    let base = Tensor::arange(20, (Kind::Float, Device::Cpu));
    let view = base.narrow(0, 5, 10);
    let args = |size: Vec<i64>, stride: Vec<i64>, offset: i64| {
        vec![Arg::Tensor(ValueId(0)), Arg::Ints(size), Arg::Ints(stride), Arg::Int(offset)]
    };
    let out = run(op, &args(vec![2, 2], vec![1, 3], 1), &[view.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [6.0, 9.0, 7.0, 10.0]);
    // A transposed input: its contiguous form [[0, 3], [1, 4], [2, 5]] row-major, not its storage.
    let tr = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]).tr();
    let out = run(op, &args(vec![3], vec![2], 0), &[tr], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [0.0, 1.0, 2.0]);
    // The view has 10 elements: element 10 is past its end, though inside `base`.
    let e = run(op, &args(vec![2], vec![1], 9), &[view], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::Torch { .. }), "{e}");
}

/// Batch statistics by hand; eval mode (which crashes libtorch) and a weight of the wrong size
/// (which its CPU kernel reads past) are errors.
#[test]
fn batch_norm_without_stats() {
    let op = "aten._native_batch_norm_legit.no_stats";
    let args = |training| {
        vec![
            Arg::Tensor(ValueId(0)),
            Arg::Tensor(ValueId(1)),
            Arg::None,
            Arg::Bool(training),
            Arg::Float(0.1),
            Arg::Float(0.0),
        ]
    };
    // Two channels over a batch of two: channel 0 holds 1, 3; channel 1 holds 2, 6.
    let x = t(&[1.0, 2.0, 3.0, 6.0], &[2, 2]);
    let w = t(&[1.0, 2.0], &[2]);
    let out = run(op, &args(true), &[x.shallow_clone(), w.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[1]), [2.0, 4.0], "save_mean");
    assert_eq!(floats(&out[2]), [1.0, 0.5], "save_invstd: 1/sqrt(var)");
    assert_eq!(floats(&out[0]), [-1.0, -2.0, 1.0, 2.0]);
    let e = run(op, &args(false), &[x.shallow_clone(), w], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 3, .. }), "{e}");
    let e = run(op, &args(true), &[x, t(&[1.0], &[1])], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 1, .. }), "{e}");
}

/// `einsum` is libtorch's: a matrix product by hand, and a bad equation is an error.
#[test]
fn einsum_by_hand() {
    let op = "aten.einsum.default";
    let args = |eq: &str| vec![Arg::Str(eq.into()), Arg::Tensors(vec![ValueId(0), ValueId(1)]), Arg::None];
    let (a, b) = (t(&[1.0, 2.0, 3.0, 4.0], &[2, 2]), t(&[5.0, 6.0, 7.0, 8.0], &[2, 2]));
    let out = run(op, &args("ij,jk->ik"), &[a.shallow_clone(), b.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [19.0, 22.0, 43.0, 50.0]);
    let out = run(op, &args("ij,ij->"), &[a.shallow_clone(), b.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [70.0]);
    let e = run(op, &args("ij,jk->iq"), &[a, b], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::Torch { .. }), "{e}");
}

/// `col2im(im2col(x))` with windows that neither overlap nor leave gaps is `x`.
#[test]
fn col2im_undoes_im2col_of_disjoint_windows() {
    let x = Tensor::randn([2, 3, 4, 6], (Kind::Float, Device::Cpu));
    let pair = |a, b| Arg::Ints(vec![a, b]);
    let (kernel, one, zero) = (pair(2, 3), pair(1, 1), pair(0, 0));
    let cols = run(
        "aten.im2col.default",
        &[Arg::Tensor(ValueId(0)), kernel.clone(), one.clone(), zero.clone(), kernel.clone()],
        &[x.shallow_clone()],
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(cols[0].size(), [2, 18, 4]);
    let back = run(
        "aten.col2im.default",
        &[Arg::Tensor(ValueId(0)), pair(4, 6), kernel.clone(), one, zero, kernel],
        &cols,
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(bytes_of(&back[0]), bytes_of(&x));
}

/// `scatter_reduce` of every reduction, with and without self, by hand; a bad reduction and an
/// index out of range or of the wrong dtype are errors before libtorch sees them (an empty
/// index is not looked at).
#[test]
fn scatter_reduce_by_hand_and_bad_indices() {
    let op = "aten.scatter_reduce.two";
    let args = |dim: i64, reduce: &str, include_self: bool| {
        vec![
            Arg::Tensor(ValueId(0)),
            Arg::Int(dim),
            Arg::Tensor(ValueId(1)),
            Arg::Tensor(ValueId(2)),
            Arg::Str(reduce.into()),
            Arg::Bool(include_self),
        ]
    };
    let x = t(&[1.0, 2.0, 3.0, 4.0], &[4]);
    let index = Tensor::from_slice(&[0i64, 0, 2]);
    let src = t(&[5.0, 6.0, 7.0], &[3]);
    let inputs = || [x.shallow_clone(), index.shallow_clone(), src.shallow_clone()];
    for (reduce, with_self, without_self) in [
        ("sum", [12.0, 2.0, 10.0, 4.0], [11.0, 2.0, 7.0, 4.0]),
        ("prod", [30.0, 2.0, 21.0, 4.0], [30.0, 2.0, 7.0, 4.0]),
        ("mean", [4.0, 2.0, 5.0, 4.0], [5.5, 2.0, 7.0, 4.0]),
        ("amax", [6.0, 2.0, 7.0, 4.0], [6.0, 2.0, 7.0, 4.0]),
        ("amin", [1.0, 2.0, 3.0, 4.0], [5.0, 2.0, 7.0, 4.0]),
    ] {
        let out = run(op, &args(0, reduce, true), &inputs(), &Bindings::new()).unwrap();
        assert_eq!(floats(&out[0]), with_self, "{reduce} with self");
        let out = run(op, &args(-1, reduce, false), &inputs(), &Bindings::new()).unwrap();
        assert_eq!(floats(&out[0]), without_self, "{reduce} without self");
    }
    // Integer mean divides with the floor, as ATen does: (1 + 2 + 4) / 3 and (3 + 2) / 2.
    let xi = Tensor::from_slice(&[1i64, 3]);
    let out = run(
        op,
        &args(0, "mean", true),
        &[xi, Tensor::from_slice(&[0i32, 0, 1]), Tensor::from_slice(&[2i64, 4, 2])],
        &Bindings::new(),
    )
    .unwrap();
    assert_eq!(Vec::<i64>::try_from(&out[0]).unwrap(), [2, 2]);
    for reduce in ["max", "add", "SUM", ""] {
        let e = run(op, &args(0, reduce, true), &inputs(), &Bindings::new()).unwrap_err();
        assert!(matches!(e, ExecError::BadArgument { index: 4, .. }), "{reduce:?}: {e}");
    }
    for (bad, why) in [
        (Tensor::from_slice(&[0i64, 4, 1]), "past the end"),
        (Tensor::from_slice(&[0i64, -1, 1]), "negative"),
        (Tensor::from_slice(&[0.0f32, 1.0, 2.0]), "float"),
        (Tensor::from_slice(&[0i16, 1, 2]), "int16"),
    ] {
        let e = run(op, &args(0, "sum", true), &[x.shallow_clone(), bad, src.shallow_clone()], &Bindings::new())
            .unwrap_err();
        assert!(matches!(e, ExecError::BadArgument { index: 2, .. }), "{why}: {e}");
    }
    let e = run(op, &args(1, "sum", true), &inputs(), &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 1, .. }), "dim out of range: {e}");
    // An empty index scatters nothing, whatever its dtype.
    let empty = Tensor::zeros([0], (Kind::Float, Device::Cpu));
    let out =
        run(op, &args(0, "amax", true), &[x.shallow_clone(), empty, src.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), floats(&x));
}

/// `unfold` windows by hand (overlapping, along dim 0 of a matrix, of a 0-dim tensor); windows
/// that do not fit are libtorch's errors.
#[test]
fn unfold_by_hand() {
    let op = "aten.unfold.default";
    let args = |dim, size, step| vec![Arg::Tensor(ValueId(0)), Arg::Int(dim), Arg::Int(size), Arg::Int(step)];
    let v = Tensor::arange(10, (Kind::Float, Device::Cpu));
    let out = run(op, &args(0, 4, 3), &[v.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(out[0].size(), [3, 4]);
    assert_eq!(floats(&out[0]), [0.0, 1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 6.0, 7.0, 8.0, 9.0]);
    let m = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
    let out = run(op, &args(0, 2, 1), &[m.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(out[0].size(), [1, 3, 2]);
    assert_eq!(floats(&out[0]), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    let out = run(op, &args(-1, 1, 5), &[t(&[7.0], &[])], &Bindings::new()).unwrap();
    assert_eq!((out[0].size(), floats(&out[0])), (vec![1], vec![7.0]));
    for (dim, size, step) in [(0, 11, 1), (0, 3, 0), (0, -1, 1), (1, 2, 1)] {
        let e = run(op, &args(dim, size, step), &[v.shallow_clone()], &Bindings::new()).unwrap_err();
        assert!(matches!(e, ExecError::Torch { .. }), "dim {dim}, size {size}, step {step}: {e}");
    }
}

/// `grid_sampler` on the input's own pixel centres (`align_corners`) gives it back in every mode;
/// a point far outside is 0 with zeros padding and the edge with border padding; modes outside
/// 0..=2 (which libtorch's CPU kernel does not check) are errors.
#[test]
fn grid_sampler_by_hand_and_bad_modes() {
    let x = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([1, 1, 2, 3]);
    // grid[0, h, w] = (x, y) of pixel (h, w).
    let centres = t(&[-1.0, -1.0, 0.0, -1.0, 1.0, -1.0, -1.0, 1.0, 0.0, 1.0, 1.0, 1.0], &[1, 2, 3, 2]);
    let args = |interpolation, padding, align| {
        vec![
            Arg::Tensor(ValueId(0)),
            Arg::Tensor(ValueId(1)),
            Arg::Int(interpolation),
            Arg::Int(padding),
            Arg::Bool(align),
        ]
    };
    for op in ["aten.grid_sampler.default", "aten.grid_sampler_2d.default"] {
        let sample = |grid: &Tensor, interpolation, padding, align| {
            run(op, &args(interpolation, padding, align), &[x.shallow_clone(), grid.shallow_clone()], &Bindings::new())
        };
        for interpolation in 0..3 {
            for padding in 0..3 {
                let out = sample(&centres, interpolation, padding, true).unwrap();
                close(&out[0], &x, 1e-6, 1e-6).unwrap_or_else(|e| panic!("{op} modes {interpolation}/{padding}: {e}"));
            }
        }
        let far_right = t(&[5.0, -1.0], &[1, 1, 1, 2]);
        assert_eq!(floats(&sample(&far_right, 0, 0, true).unwrap()[0]), [0.0], "{op}: zeros");
        assert_eq!(floats(&sample(&far_right, 0, 1, true).unwrap()[0]), [2.0], "{op}: border");
        for (interpolation, padding, index) in [(3, 0, 2), (-1, 0, 2), (0, 3, 3), (0, -1, 3)] {
            let e = sample(&centres, interpolation, padding, false).unwrap_err();
            assert!(matches!(e, ExecError::BadArgument { index: i, .. } if i == index), "{op}: {e}");
        }
    }
    // Bicubic needs a 4-D input: libtorch's error for a 5-D one.
    let (x3, g3) = (
        Tensor::zeros([1, 1, 2, 2, 2], (Kind::Float, Device::Cpu)),
        Tensor::zeros([1, 1, 1, 1, 3], (Kind::Float, Device::Cpu)),
    );
    let e = run("aten.grid_sampler.default", &args(2, 0, false), &[x3, g3], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::Torch { .. }), "{e}");
}

/// `upsample_linear1d` by hand from a size and from a scale (which ATen passes on: it sets the
/// source positions when corners are not aligned); bad sizes and scales are errors.
#[test]
fn upsample_by_hand_and_bad_sizes() {
    let args = |size: Option<Vec<i64>>, align, scales: Option<Vec<f64>>| {
        vec![
            Arg::Tensor(ValueId(0)),
            size.map_or(Arg::None, Arg::Ints),
            Arg::Bool(align),
            scales.map_or(Arg::None, Arg::Floats),
        ]
    };
    let linear = "aten.upsample_linear1d.vec";
    let x = t(&[0.0, 1.0], &[1, 1, 2]);
    let out = run(linear, &args(Some(vec![3]), true, None), &[x.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [0.0, 0.5, 1.0]);
    let out = run(linear, &args(None, false, Some(vec![2.0])), &[x.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [0.0, 0.25, 0.75, 1.0]);
    // A scale that does not divide: the size is truncated, the scale still sets the positions.
    let out = run(linear, &args(None, false, Some(vec![1.7])), &[x.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(out[0].size(), [1, 1, 3]);
    for (bad, index) in [
        (args(None, false, Some(vec![f64::NAN])), 3),
        (args(None, false, Some(vec![1e300])), 3),
        (args(Some(vec![3]), false, Some(vec![2.0])), 1),
        (args(None, false, None), 1),
        (args(Some(vec![3, 3]), false, None), 1),
    ] {
        let e = run(linear, &bad, &[x.shallow_clone()], &Bindings::new()).unwrap_err();
        assert!(matches!(e, ExecError::BadArgument { index: i, .. } if i == index), "{bad:?}: {e}");
    }
    let bicubic = "aten.upsample_bicubic2d.vec";
    let e = run(bicubic, &args(Some(vec![4, 4]), false, None), &[x.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::BadArgument { index: 0, .. }), "a 3-D input: {e}");
    let x2 = x.reshape([1, 1, 1, 2]);
    let e = run(bicubic, &args(Some(vec![0, 4]), false, None), &[x2.shallow_clone()], &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::Torch { .. }), "an empty output: {e}");
    // Corners aligned and the same size: the input back.
    let out = run(bicubic, &args(Some(vec![1, 2]), true, None), &[x2.shallow_clone()], &Bindings::new()).unwrap();
    assert_eq!(floats(&out[0]), [0.0, 1.0]);
}

/// `adaptive_avg_pool3d` means by hand: `[1, 1, 1]` (ATen's mean), one output per input (the
/// input back) and a mean over depth and height.
#[test]
fn adaptive_avg_pool3d_by_hand() {
    let op = "aten.adaptive_avg_pool3d.default";
    let x = Tensor::arange(8, (Kind::Float, Device::Cpu)).reshape([1, 1, 2, 2, 2]);
    let pool =
        |size: Vec<i64>| run(op, &[Arg::Tensor(ValueId(0)), Arg::Ints(size)], &[x.shallow_clone()], &Bindings::new());
    assert_eq!(floats(&pool(vec![1, 1, 1]).unwrap()[0]), [3.5]);
    assert_eq!(bytes_of(&pool(vec![2, 2, 2]).unwrap()[0]), bytes_of(&x));
    let out = pool(vec![1, 1, 2]).unwrap();
    assert_eq!((out[0].size(), floats(&out[0])), (vec![1, 1, 1, 1, 2], vec![3.0, 4.0]));
    let e = pool(vec![-1, 2, 2]).unwrap_err();
    assert!(matches!(e, ExecError::Torch { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// A hand-made plan: y = relu(x @ w + 1) on worker0, x from the client, y back to it.

fn ty(dtype: DType, dims: &[Dim]) -> TensorType {
    TensorType::with_dims(dtype, dims.to_vec())
}

fn info(name: &str, ty: TensorType, kind: TensorKind) -> TensorInfo {
    TensorInfo { name: name.into(), ty, kind, residency: None, bytes: 0 }
}

fn w_bytes() -> Vec<u8> {
    [1.0f32, 0.0, 0.0, 1.0, 1.0, -1.0].iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn w_hash() -> WeightHash {
    WeightHash::of(&TensorType::new(DType::Float32, &[3, 2]), &w_bytes())
}

/// The symbol `s0` in [1, 8], reckoned at 4 for cost and 8 for memory, read from `source`.
fn s0_up_to_8(source: DimSource) -> SymbolInfo {
    SymbolInfo { name: "s0".into(), min: 1, max: Some(8), cost_value: 4, memory_value: 8, sources: vec![source] }
}

fn tiny_plan() -> EntryPlan {
    let s0 = Dim::symbol("s0");
    let (x, w, one, h, y) = (ValueId(0), ValueId(1), ValueId(2), ValueId(3), ValueId(4));
    let mut tensors = BTreeMap::new();
    tensors.insert(x, info("x", ty(DType::Float32, &[s0.clone(), Dim::constant(3)]), TensorKind::Input { index: 0 }));
    tensors.insert(w, info("w", TensorType::new(DType::Float32, &[3, 2]), TensorKind::Weight { hash: w_hash() }));
    tensors.insert(
        one,
        info(
            "one",
            TensorType::new(DType::Float32, &[]),
            TensorKind::Const { data: HexBytes(1.0f32.to_le_bytes().to_vec()) },
        ),
    );
    let node = |n: u32| TensorKind::Node { node: NodeId(n), output: 0 };
    tensors.insert(h, info("h", ty(DType::Float32, &[s0.clone(), Dim::constant(2)]), node(0)));
    tensors.insert(y, info("y", ty(DType::Float32, &[s0.clone(), Dim::constant(2)]), node(1)));
    let transfer = |id: u32, tensor: ValueId, from: &str, to: &str| Transfer {
        id,
        tensor,
        name: String::new(),
        from: from.into(),
        to: to.into(),
        bytes: 0,
        residency: None,
        producer: None,
        consumers: vec![],
    };
    let worker = DevicePlan {
        device: "worker0".into(),
        steps: vec![
            Step::Recv { tensor: x, from: "client".into(), transfer: 0 },
            Step::Exec {
                node: NodeId(0),
                op: "aten.addmm.default".into(),
                args: vec![Arg::Tensor(one), Arg::Tensor(x), Arg::Tensor(w), Arg::Int(1), Arg::Int(1)],
                outputs: vec![h],
                batching: Batching::PerCall,
            },
            Step::Free { tensor: x },
            Step::Exec {
                node: NodeId(1),
                op: "aten.relu_.default".into(),
                args: vec![Arg::Tensor(h)],
                outputs: vec![y],
                batching: Batching::PerCall,
            },
            Step::Send { tensor: y, to: "client".into(), transfer: 1 },
            Step::Free { tensor: h },
        ],
        activation_peak_bytes: 0,
        fused: Vec::new(),
    };
    let client = DevicePlan {
        device: "client".into(),
        steps: vec![
            Step::Send { tensor: x, to: "worker0".into(), transfer: 0 },
            Step::Recv { tensor: y, from: "worker0".into(), transfer: 1 },
        ],
        activation_peak_bytes: 0,
        fused: Vec::new(),
    };
    EntryPlan {
        name: "tiny".into(),
        phase: Phase::Unknown,
        symbols: vec![s0_up_to_8(DimSource { tensor: x, dim: 0 })],
        tensors,
        inputs: vec![IoPort { name: "x".into(), tensor: x, slot: None, device: "client".into(), role: None }],
        outputs: vec![IoPort { name: "y".into(), tensor: y, slot: None, device: "worker0".into(), role: None }],
        transfers: vec![transfer(0, x, "client", "worker0"), transfer(1, y, "worker0", "client")],
        handoffs: Vec::new(),
        plans: vec![worker, client],
        bytes_per_call: 0,
        hops: 2,
        estimate: None,
    }
}

/// A mailbox with tensors queued for each transfer, recording what is sent.
#[derive(Default)]
struct Queue {
    inbox: BTreeMap<u32, VecDeque<Tensor>>,
    sent: BTreeMap<u32, Tensor>,
}

impl Mailbox for Queue {
    fn recv(&mut self, transfer: u32, tensor: ValueId) -> Result<Tensor, ExecError> {
        self.inbox
            .get_mut(&transfer)
            .and_then(VecDeque::pop_front)
            .ok_or_else(|| ExecError::Mailbox(format!("nothing for transfer {transfer} ({tensor})")))
    }

    fn send(&mut self, transfer: u32, _: ValueId, value: &Tensor) -> Result<(), ExecError> {
        self.sent.insert(transfer, value.shallow_clone());
        Ok(())
    }
}

fn resident() -> Resident {
    let mut r = Resident::new(Device::Cpu);
    let w = tensor_from_bytes(&TensorType::new(DType::Float32, &[3, 2]), &[3, 2], &w_bytes(), Device::Cpu).unwrap();
    r.insert(w_hash(), w);
    r
}

#[test]
fn a_device_plan_runs_and_checks_its_tensors() {
    let entry = tiny_plan();
    let plan = &entry.plans[0];
    let r = resident();
    assert_eq!(r.bytes(), 24);
    assert!(r.contains(&w_hash()));
    let x = t(&[1.0, 2.0, 3.0, -4.0, 0.0, 1.0], &[2, 3]);
    let b = bind_symbols(&entry, &|v| (v == ValueId(0)).then(|| x.size())).unwrap();
    assert_eq!(b["s0"], 2);
    assert_eq!(concrete_shape(&entry, ValueId(4), &b).unwrap(), [2, 2]);
    let mut mb = Queue::default();
    mb.inbox.entry(0).or_default().push_back(x.shallow_clone());
    let saved = run_device_plan(&entry, plan, &b, &r, &BTreeMap::new(), &mut mb).unwrap();
    assert!(saved.is_empty());
    // [1 2 3; -4 0 1] @ [1 0; 0 1; 1 -1] + 1 = [5 0; -2 -2], relu → [5 0; 0 0]
    assert_eq!(Vec::<f32>::try_from(mb.sent[&1].flatten(0, -1)).unwrap(), [5.0, 0.0, 0.0, 0.0]);
    // The resident weight is untouched.
    assert_eq!(bytes_of(r.get(&w_hash()).unwrap()), w_bytes());

    // A received tensor of the wrong shape or dtype: typed error naming it.
    for bad in [t(&[1.0, 2.0, 3.0], &[1, 3]), x.to_kind(Kind::Double)] {
        let mut mb = Queue::default();
        mb.inbox.entry(0).or_default().push_back(bad);
        let e = run_device_plan(&entry, plan, &b, &r, &BTreeMap::new(), &mut mb).unwrap_err();
        assert!(matches!(e, ExecError::ShapeMismatch { tensor: ValueId(0), ref name, .. } if name == "x"), "{e}");
    }
    // The weight is not resident.
    let mut mb = Queue::default();
    mb.inbox.entry(0).or_default().push_back(x.shallow_clone());
    let e = run_device_plan(&entry, plan, &b, &Resident::new(Device::Cpu), &BTreeMap::new(), &mut mb).unwrap_err();
    assert!(matches!(e, ExecError::NotResident { tensor: ValueId(1), .. }), "{e}");
    // Nothing arrives.
    let e = run_device_plan(&entry, plan, &b, &r, &BTreeMap::new(), &mut Queue::default()).unwrap_err();
    assert!(matches!(e, ExecError::Mailbox(_)), "{e}");
    // A kernel whose output disagrees with the plan's type.
    let mut wrong = entry.clone();
    wrong.tensors.get_mut(&ValueId(3)).unwrap().ty = TensorType::new(DType::Float32, &[2, 3]);
    let mut mb = Queue::default();
    mb.inbox.entry(0).or_default().push_back(x.shallow_clone());
    let e = run_device_plan(&wrong, &wrong.plans[0], &b, &r, &BTreeMap::new(), &mut mb).unwrap_err();
    assert!(matches!(e, ExecError::ShapeMismatch { tensor: ValueId(3), .. }), "{e}");
    // A step that uses a freed tensor.
    let mut wrong = entry.clone();
    wrong.plans[0].steps.swap(2, 3);
    wrong.plans[0].steps.insert(2, Step::Free { tensor: ValueId(3) });
    let mut mb = Queue::default();
    mb.inbox.entry(0).or_default().push_back(x.shallow_clone());
    let e = run_device_plan(&wrong, &wrong.plans[0], &b, &r, &BTreeMap::new(), &mut mb).unwrap_err();
    assert!(matches!(e, ExecError::MissingTensor { tensor: ValueId(3), .. }), "{e}");
}

#[test]
fn binding_checks_shapes_and_ranges() {
    let entry = tiny_plan();
    let bind = |shape: Vec<i64>| bind_symbols(&entry, &move |_| Some(shape.clone()));
    assert_eq!(bind(vec![8, 3]).unwrap()["s0"], 8);
    let e = bind(vec![9, 3]).unwrap_err();
    assert!(
        matches!(e, ExecError::SymbolOutOfRange { ref symbol, value: 9, min: 1, max: Some(8) } if symbol == "s0"),
        "{e}"
    );
    let e = bind(vec![0, 3]).unwrap_err();
    assert!(matches!(e, ExecError::SymbolOutOfRange { value: 0, .. }), "{e}");
    let e = bind(vec![2, 4]).unwrap_err();
    assert!(matches!(e, ExecError::ShapeMismatch { tensor: ValueId(0), .. }), "{e}");
    let e = bind(vec![2, 3, 1]).unwrap_err();
    assert!(matches!(e, ExecError::ShapeMismatch { .. }), "{e}");
    let e = bind_symbols(&entry, &|_| None).unwrap_err();
    assert!(matches!(e, ExecError::UnboundSymbol { ref symbol, .. } if symbol == "s0"), "{e}");
    let e = concrete_shape(&entry, ValueId(4), &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::UnboundSymbol { .. }), "{e}");
    let e = concrete_shape(&entry, ValueId(99), &Bindings::new()).unwrap_err();
    assert!(matches!(e, ExecError::MissingTensor { .. }), "{e}");
}

#[test]
fn symbols_only_in_expressions_are_solved() {
    // An input of shape [s0 + 1, 2*s1]: no bare source, each dim is linear in one symbol.
    let mut entry = tiny_plan();
    let (s0, s1) = (Dim::symbol("s0"), Dim::symbol("s1"));
    let x = entry.tensors.get_mut(&ValueId(0)).unwrap();
    x.ty = ty(DType::Float32, &[s0.add(&Dim::constant(1)), s1.scale(2)]);
    entry.symbols[0].sources.clear();
    entry.symbols.push(SymbolInfo {
        name: "s1".into(),
        min: 1,
        max: None,
        cost_value: 1,
        memory_value: 1,
        sources: vec![],
    });
    let b = bind_symbols(&entry, &|_| Some(vec![5, 6])).unwrap();
    assert_eq!((b["s0"], b["s1"]), (4, 3));
    // 2*s1 = 7 has no integer solution.
    let e = bind_symbols(&entry, &|_| Some(vec![5, 7])).unwrap_err();
    assert!(matches!(e, ExecError::UnboundSymbol { ref symbol, .. } if symbol == "s1"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// State appended in place (`state.rs`).

/// A decode-like plan: `present = cat([past, new], 1)` with `past` read from slot 0 and
/// `present` saved back to it and sent to the client. `past` is [1, s0, 2] (s0 up to 8 at the
/// memory bindings), `new` [1, 1, 2].
fn append_plan() -> EntryPlan {
    let s0 = Dim::symbol("s0");
    let (past, new, present) = (ValueId(0), ValueId(1), ValueId(2));
    let (one, two) = (Dim::constant(1), Dim::constant(2));
    let mut tensors = BTreeMap::new();
    let past_ty = ty(DType::Float32, &[one.clone(), s0.clone(), two.clone()]);
    tensors.insert(past, info("past", past_ty, TensorKind::State { index: 0, slot: 0 }));
    tensors.insert(
        new,
        info("new", ty(DType::Float32, &[one.clone(), one.clone(), two.clone()]), TensorKind::Input { index: 1 }),
    );
    let present_ty = ty(DType::Float32, &[one.clone(), s0.add(&one), two]);
    tensors.insert(present, info("present", present_ty, TensorKind::Node { node: NodeId(0), output: 0 }));
    let worker = DevicePlan {
        device: "worker0".into(),
        steps: vec![
            Step::Recv { tensor: new, from: "client".into(), transfer: 0 },
            Step::Exec {
                node: NodeId(0),
                op: "aten.cat.default".into(),
                args: vec![Arg::Tensors(vec![past, new]), Arg::Int(1)],
                outputs: vec![present],
                batching: Batching::PerCall,
            },
            Step::Send { tensor: present, to: "client".into(), transfer: 1 },
            Step::SaveState { tensor: present, slot: 0 },
        ],
        activation_peak_bytes: 0,
        fused: Vec::new(),
    };
    EntryPlan {
        name: "decode".into(),
        phase: Phase::Unknown,
        symbols: vec![s0_up_to_8(DimSource { tensor: past, dim: 1 })],
        tensors,
        inputs: vec![],
        outputs: vec![],
        transfers: vec![],
        handoffs: Vec::new(),
        plans: vec![worker],
        bytes_per_call: 0,
        hops: 1,
        estimate: None,
    }
}

/// One step of [`append_plan`] from `past` with the row `row`: the slot's new value.
fn append_step(entry: &EntryPlan, past: &SlotValue, row: f32) -> SlotValue {
    let mut mb = Queue::default();
    mb.inbox.entry(0).or_default().push_back(t(&[row, -row], &[1, 1, 2]));
    let b = Bindings::from([("s0".to_string(), past.tensor().size()[1])]);
    let state = Slots::from([(0, past.share())]);
    let mut saved = run_device_plan(entry, &entry.plans[0], &b, &Resident::new(Device::Cpu), &state, &mut mb).unwrap();
    let value = saved.remove(&0).expect("slot 0 saved");
    assert!(value.tensor().equal(&mb.sent[&1]), "the value sent is the value saved");
    value
}

fn rows_of(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.contiguous().flatten(0, -1)).unwrap()
}

#[test]
fn appends_to_a_state_slot_write_in_place_behind_it_and_never_change_a_value_held_elsewhere() {
    let entry = append_plan();
    let start = SlotValue::new(t(&[1.0, -1.0, 2.0, -2.0], &[1, 2, 2]));
    // The first append copies into a buffer with room up to the memory bindings (s0 + 1 = 9).
    let a = append_step(&entry, &start, 3.0);
    assert_eq!(rows_of(a.tensor()), [1.0, -1.0, 2.0, -2.0, 3.0, -3.0]);
    assert!(a.has_room());
    assert_eq!(a.bytes(), 9 * 2 * 4, "the slot holds its whole buffer");
    assert_eq!(rows_of(start.tensor()), [1.0, -1.0, 2.0, -2.0], "the value appended to is unchanged");
    // The next writes behind it: same storage, one more row.
    let b = append_step(&entry, &a, 4.0);
    assert_eq!(b.tensor().data_ptr(), a.tensor().data_ptr(), "appended in place");
    assert_eq!(rows_of(b.tensor()), [1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0]);
    assert_eq!(rows_of(a.tensor()), [1.0, -1.0, 2.0, -2.0, 3.0, -3.0], "the earlier value still reads as it was");
    // Appending again to `a` (a call that failed after appending leaves the slot at `a`): the row
    // behind `a` belongs to `b` now, so this copies, and `b` keeps its row.
    let c = append_step(&entry, &a, 5.0);
    assert_ne!(c.tensor().data_ptr(), a.tensor().data_ptr(), "a stale value is copied, not written behind");
    assert_eq!(rows_of(c.tensor()), [1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 5.0, -5.0]);
    assert_eq!(rows_of(b.tensor()), [1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0], "no value held elsewhere changes");
    // Grown past the room's end (9 rows), appends go on: each into a new buffer.
    let mut v = c;
    for row in 6..=12 {
        v = append_step(&entry, &v, row as f32);
    }
    assert_eq!(v.tensor().size(), [1, 11, 2]);
    assert_eq!(rows_of(v.tensor())[10 * 2..], [12.0, -12.0]);

    // Batched: two calls at different lengths, each appended in place behind its own slot.
    let (x, y) = (append_step(&entry, &start, 7.0), append_step(&entry, &a, 8.0));
    let (mut mx, mut my) = (Queue::default(), Queue::default());
    mx.inbox.entry(0).or_default().push_back(t(&[9.0, -9.0], &[1, 1, 2]));
    my.inbox.entry(0).or_default().push_back(t(&[10.0, -10.0], &[1, 1, 2]));
    let (bx, by) = (Bindings::from([("s0".to_string(), 3)]), Bindings::from([("s0".to_string(), 4)]));
    let (sx, sy) = (Slots::from([(0, x.share())]), Slots::from([(0, y.share())]));
    let mut calls = [
        BatchCall { bindings: &bx, state: &sx, mailbox: &mut mx },
        BatchCall { bindings: &by, state: &sy, mailbox: &mut my },
    ];
    let results = run_device_plan_batched(&entry, &entry.plans[0], &Resident::new(Device::Cpu), &mut calls).unwrap();
    let got: Vec<SlotValue> = results.into_iter().map(|r| r.unwrap().remove(&0).unwrap()).collect();
    assert_eq!(rows_of(got[0].tensor()), [1.0, -1.0, 2.0, -2.0, 7.0, -7.0, 9.0, -9.0]);
    assert_eq!(rows_of(got[1].tensor()), [1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 8.0, -8.0, 10.0, -10.0]);
    assert_eq!(got[0].tensor().data_ptr(), x.tensor().data_ptr());
    assert_eq!(got[1].tensor().data_ptr(), y.tensor().data_ptr());
    assert!(got[0].tensor().equal(&mx.sent[&1]) && got[1].tensor().equal(&my.sent[&1]));
}
