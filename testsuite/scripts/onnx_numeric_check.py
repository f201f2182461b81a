"""Check imported ONNX models numerically against the reference outputs the onnx package ships.

`genie inspect --pass import --format json` writes each model as Genie imports it; this script
interprets that SRG with PyTorch (every node is an ATen overload, called through
`torch.ops.aten`), feeds it `test_data_set_*/input_*.pb` from beside the model, and compares with
`output_*.pb`. It checks the ONNX lowering's semantics, independent of any Genie runtime. The
models: the generated cases of `frontends/tests/onnx_cases/`, the onnx package's backend suites
(`pytorch-converted`, `pytorch-operator`, `simple`), and with `--models DIR` the transformers
exports `onnx_census.py DIR` made.

Usage (after `cargo xtask setup` and a release build):
  .venv/bin/python testsuite/scripts/onnx_numeric_check.py [--models DIR] [--keep JSON_DIR]
"""
import glob
import subprocess
import json
import os
import re
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import torch

DTYPES = {
    "bool": torch.bool, "uint8": torch.uint8, "int8": torch.int8, "int16": torch.int16,
    "int32": torch.int32, "int64": torch.int64, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float32": torch.float32, "float64": torch.float64, "complex64": torch.complex64,
    "complex128": torch.complex128, "float8_e4m3fn": torch.float8_e4m3fn, "float8_e5m2": torch.float8_e5m2,
}


def dim(v, env):
    if isinstance(v, int):
        return v
    return int(eval(v, {"__builtins__": {}}, env))


def tensor_from(hexbytes, ty):
    raw = bytes.fromhex(hexbytes)
    dtype = DTYPES[ty["dtype"]]
    shape = [int(d) for d in ty["shape"]]
    t = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    return t.reshape(shape).clone()


def weight(entry):
    data = entry["data"]
    if "Inline" in data:
        return tensor_from(data["Inline"], entry["ty"])
    ext = data["External"]
    with open(ext["path"], "rb") as f:
        f.seek(ext["offset"])
        return tensor_from(f.read(ext["len"]).hex(), entry["ty"])


def bind_symbols(graph, inputs):
    env = {}
    for vid in graph["inputs"]:
        v = graph["values"][vid]
        for d, n in zip(v["ty"]["shape"], inputs[v["name"]].shape):
            if isinstance(d, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", d):
                env[d] = n
    return env


def arg(a, vals, env, spec_type):
    if a == "None":
        return None
    (k, v), = a.items()
    if k == "Tensor":
        return vals[v]
    if k == "Tensors":
        return [vals[x] for x in v]
    if k == "OptTensors":
        return [None if x is None else vals[x] for x in v]
    if k in ("Int", "Bool", "Str", "Ints", "Bools"):
        return v
    if k == "Float":
        # JSON has no infinities: serde writes them as null (only padding values use them).
        return float("-inf") if v is None else v
    if k == "Floats":
        return v
    if k == "SymInt":
        return dim(v, env)
    if k == "SymInts":
        return [dim(x, env) for x in v]
    if k == "DType":
        return DTYPES[v]
    return None


def run(prog, inputs):
    g = prog["entries"][0]
    env = bind_symbols(g, inputs)
    vals = {}
    for i, v in enumerate(g["values"]):
        d = v["def"]
        if "Input" in d:
            vals[i] = inputs[v["name"]]
        elif "Weight" in d:
            vals[i] = weight(prog["weights"][d["Weight"]])
        elif "Const" in d:
            vals[i] = tensor_from(d["Const"], v["ty"])
    for n in g["nodes"]:
        _, name, overload = n["op"].split(".")
        fn = getattr(getattr(torch.ops.aten, name), overload)
        pos, kw = [], {}
        for spec, a in zip(fn._schema.arguments, n["args"]):
            x = arg(a, vals, env, spec.type)
            if spec.kwarg_only:
                kw[spec.name] = x
            else:
                pos.append(x)
        out = fn(*pos, **kw)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        for vid, o in zip(n["outputs"], outs):
            vals[vid] = o
    return {o["name"]: vals[o["value"]] for o in g["outputs"]}


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return t


def main(jdir):
    ok = bad = skipped = 0
    for jf in sorted(glob.glob(os.path.join(jdir, "*.json")), key=lambda p: int(os.path.basename(p)[:-5])):
        model_path = open(jf[:-5] + ".path").read()
        sets = sorted(glob.glob(os.path.join(os.path.dirname(model_path), "test_data_set_*")))
        if not sets:
            skipped += 1
            continue
        prog = json.load(open(jf))
        g = prog["entries"][0]
        in_names = [g["values"][v]["name"] for v in g["inputs"]]
        model = onnx.load(model_path, load_external_data=False)
        init = {i.name for i in model.graph.initializer}
        onnx_inputs = [i.name for i in model.graph.input if i.name not in init]
        onnx_outputs = [o.name for o in model.graph.output]
        for s in sets:
            try:
                ins = {}
                for k, p in enumerate(sorted(glob.glob(os.path.join(s, "input_*.pb")), key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0]))):
                    t = load_pb(p)
                    name = onnx_inputs[k] if k < len(onnx_inputs) else t.name
                    ins[name] = torch.from_numpy(onnx.numpy_helper.to_array(t).copy())
                missing = [n for n in in_names if n not in ins]
                if missing:
                    raise RuntimeError(f"no data for inputs {missing}")
                got = run(prog, ins)
                for k, p in enumerate(sorted(glob.glob(os.path.join(s, "output_*.pb")), key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[0]))):
                    want = onnx.numpy_helper.to_array(load_pb(p))
                    name = onnx_outputs[k]
                    have = got[name]
                    have_np = have.detach().to(torch.float64).numpy() if have.dtype in (torch.bfloat16,) else have.detach().numpy()
                    if have_np.shape != want.shape:
                        raise RuntimeError(f"output {name}: shape {have_np.shape} != {want.shape}")
                    if want.dtype != object and have_np.dtype != want.dtype:
                        raise RuntimeError(f"output {name}: dtype {have_np.dtype} != {want.dtype}")
                    if want.dtype.kind in "fc":
                        close = np.allclose(have_np, want, rtol=1e-3, atol=1e-4, equal_nan=True)
                    else:
                        close = np.array_equal(have_np, want)
                    if not close:
                        err = np.max(np.abs(have_np.astype(np.float64) - want.astype(np.float64))) if want.size else 0
                        raise RuntimeError(f"output {name}: values differ (max abs err {err})")
                ok += 1
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                bad += 1
                print(f"MISMATCH {model_path} {os.path.basename(s)}: {type(e).__name__}: {str(e)[:300]}")
    print(f"numeric check: {ok} data sets match, {bad} differ or fail, {skipped} models without data")
    return 1 if bad else 0


def onnx_models(root, extra):
    """Every model the check covers, in a stable order."""
    paths = sorted(glob.glob(os.path.join(root, "frontends/tests/onnx_cases/*/model.onnx")))
    data = os.path.join(os.path.dirname(onnx.__file__), "backend/test/data")
    for suite in ["pytorch-converted", "pytorch-operator", "simple"]:
        paths += sorted(glob.glob(os.path.join(data, suite, "*/model.onnx")))
    if extra:
        paths += sorted(glob.glob(os.path.join(extra, "**/*.onnx"), recursive=True))
    return paths


def collect(genie, paths, jdir):
    """Import each model with `genie inspect`; models Genie cannot import are skipped."""
    os.makedirs(jdir, exist_ok=True)
    n = 0
    for path in paths:
        out = os.path.join(jdir, f"{n}.json")
        done = subprocess.run([genie, "inspect", "--pass", "import", "--format", "json", path, "-o", out],
                              capture_output=True)
        if done.returncode != 0:
            continue
        with open(os.path.join(jdir, f"{n}.path"), "w") as f:
            f.write(path)
        n += 1
    print(f"imported {n} of {len(paths)} models")


if __name__ == "__main__":
    import argparse
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="also check the .onnx files under this folder")
    parser.add_argument("--keep", help="write the imported programs here instead of a temporary folder")
    parser.add_argument("--genie", default=os.path.join(root, "target/release/genie"))
    args = parser.parse_args()
    jdir = args.keep or tempfile.mkdtemp(prefix="genie-onnx-json-")
    collect(args.genie, onnx_models(root, args.models), jdir)
    sys.exit(main(jdir))
