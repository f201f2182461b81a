"""Golden cases for the executor's kernels: every registry op run by eager PyTorch.

Each case is an op overload called through `torch.ops.aten` (`ns=` names another namespace) on
small tensors (fixed seed), with its outputs. `runtime/src/exec/tests.rs` runs the same call through `run_op` (arguments bound by
the registry schema, defaults filled) and compares. Arguments are typed so the Rust side can
rebuild `genie_ir::Arg`s exactly:

  {"t": k} tensor input k     {"ts": [k, ...]} tensor list (null = a hole in Tensor?[])
  {"i": 3} int   {"is": [..]} int list   {"f": 0.5} float ("inf", "-inf", "nan" as strings)
  {"fs": [..]} float list
  {"b": true}    {"s": "tanh"}   {"dtype": "float32"}   {"device": "cpu"}
  {"layout": "strided"}   {"mf": "contiguous_format"}   null (None)

Tensors are {"dtype", "shape", "hex"} (little-endian bytes). A case with "check": "meta" has
uninitialised outputs (`empty`): only dtype and shape are compared.

Regenerate (deterministic on one machine; another CPU may round a few float results differently
in the last bit, so keep earlier cases as they are, add new ones in a function called last, and
append only their cases to the committed file):
  .venv/bin/python runtime/src/exec/testdata/make_op_cases.py runtime/src/exec/testdata/op_cases.json
"""
import json
import math
import sys

import torch
# Registers `torch.ops.transformers.*` (the MoE fallback the registry knows).
import transformers.integrations.moe  # noqa: F401

torch.manual_seed(0)
g = torch.Generator().manual_seed(0)

CASES = []


def f(*shape, lo=-2.0, hi=2.0, dtype=torch.float32):
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(dtype)


def pos(*shape):
    return f(*shape, lo=0.2, hi=2.0)


def unit(*shape):
    return f(*shape, lo=-0.9, hi=0.9)


def ints(*shape, lo=-5, hi=6, dtype=torch.int64):
    return torch.randint(lo, hi, shape, generator=g, dtype=dtype)


def bools(*shape):
    return torch.rand(*shape, generator=g) > 0.5


def distinct(*shape):
    """Values with no ties (for sort/topk/argmax)."""
    n = 1
    for s in shape:
        n *= s
    return (torch.randperm(n, generator=g).to(torch.float32) / 4 - n / 8).reshape(shape)


class Enc:
    def __init__(self):
        self.inputs = []

    def tensor(self, t):
        self.inputs.append(t)
        return len(self.inputs) - 1

    def arg(self, a):
        if a is None:
            return None
        if isinstance(a, torch.Tensor):
            return {"t": self.tensor(a)}
        if isinstance(a, bool):
            return {"b": a}
        if isinstance(a, int):
            return {"i": a}
        if isinstance(a, float):
            return {"f": a if math.isfinite(a) else str(a)}
        if isinstance(a, str):
            return {"s": a}
        if isinstance(a, torch.dtype):
            return {"dtype": str(a).replace("torch.", "")}
        if isinstance(a, torch.device):
            return {"device": str(a)}
        if isinstance(a, torch.layout):
            return {"layout": str(a).replace("torch.", "")}
        if isinstance(a, torch.memory_format):
            return {"mf": str(a).replace("torch.", "")}
        if isinstance(a, (list, tuple)):
            if any(isinstance(x, torch.Tensor) for x in a):
                return {"ts": [None if x is None else self.tensor(x) for x in a]}
            if all(isinstance(x, int) and not isinstance(x, bool) for x in a):
                return {"is": list(a)}
            return {"fs": [float(x) for x in a]}
        raise TypeError(f"cannot encode {a!r}")


def tensor_json(t):
    t = t.detach().contiguous()
    raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
    return {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "hex": raw.numpy().tobytes().hex()}


def case(op, *args, check="values", ns="aten", **kw):
    base, _, overload = op.partition(".")
    fn = getattr(getattr(getattr(torch.ops, ns), base), overload or "default")
    enc = Enc()
    pos_args = [enc.arg(a) for a in args]
    kw_args = {k: enc.arg(v) for k, v in kw.items()}
    # Call on clones: in-place overloads mutate their first argument.
    call_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    out = fn(*call_args, **kw)
    if out is None:
        outs = []
    elif isinstance(out, torch.Tensor):
        outs = [out]
    else:
        outs = list(out)
    CASES.append({
        "op": f"{ns}.{base}.{overload or 'default'}",
        "args": pos_args,
        "kwargs": kw_args,
        "inputs": [tensor_json(t) for t in enc.inputs],
        "outputs": [tensor_json(t) for t in outs],
        "check": check,
    })


def elementwise():
    a, b = f(2, 3), f(2, 3)
    case("add.Tensor", a, f(3))
    case("add.Tensor", a, b, alpha=2.5)
    case("add.Tensor", ints(2, 3), ints(3), alpha=3)
    case("add.Tensor", ints(2, 3), f(2, 3))
    case("add_.Tensor", a, b, alpha=-1)
    case("add_.Tensor", f(2, 3, dtype=torch.float16), b)
    case("add.Scalar", a, 2.0, 3)
    case("add.Scalar", ints(4), 3, 2)
    case("add.Scalar", ints(4), 1.5)
    case("sub.Tensor", a, b, alpha=2)
    case("sub.Scalar", a, 1.5, 2)
    case("rsub.Tensor", a, b)
    case("rsub.Tensor", a, b, alpha=3)
    case("rsub.Scalar", a, 1.0)
    case("rsub.Scalar", ints(5), 7, 2)
    case("mul.Tensor", a, f(1, 3))
    case("mul.Tensor", bools(4), ints(4))
    case("mul.Scalar", a, -0.5)
    case("mul_.Tensor", a, b)
    case("mul_.Tensor", f(2, 3, dtype=torch.float16), f(3))
    case("div.Tensor", a, pos(2, 3))
    case("div.Tensor", ints(6), ints(6, lo=1, hi=4))
    case("div.Scalar", a, 4)
    case("div.Tensor_mode", f(6) * 3, pos(6), rounding_mode="floor")
    case("div.Tensor_mode", ints(6) * 3, ints(6, lo=1, hi=4), rounding_mode="trunc")
    case("div.Tensor_mode", a, pos(2, 3), rounding_mode=None)
    case("div.Scalar_mode", f(6) * 3, 2.0, rounding_mode="floor")
    case("div.Scalar_mode", ints(6) * 3, 4, rounding_mode="trunc")
    case("floor_divide", ints(6) * 3, ints(6, lo=1, hi=4))
    case("floor_divide", f(6) * 3, pos(6))
    case("remainder.Tensor", f(6) * 3, pos(6))
    case("remainder.Tensor", ints(6) * 3, ints(6, lo=1, hi=4))
    case("remainder.Scalar", f(6) * 3, 1.5)
    case("fmod.Tensor", f(6) * 3, pos(6))
    case("fmod.Scalar", ints(6) * 3, 4)
    case("pow.Scalar", 2.0, f(5))
    case("pow.Scalar", 3, ints(5, lo=0, hi=4))
    case("pow.Tensor_Scalar", pos(5), 0.5)
    case("pow.Tensor_Scalar", f(5), 2)
    case("pow.Tensor_Scalar", ints(5), 3)
    case("pow.Tensor_Tensor", pos(5), f(5))
    case("maximum", a, b)
    case("minimum", a, b)
    case("max.other", a, b)
    case("min.other", a, b)
    case("atan2", a, b)
    for op in ["neg", "abs", "sign", "square", "floor", "ceil", "round", "trunc", "exp", "exp2", "expm1",
               "sin", "cos", "tan", "atan", "sinh", "cosh", "asinh", "erf", "relu", "relu_", "relu6", "silu",
               "silu_", "sigmoid", "tanh", "mish", "hardswish", "hardsigmoid", "selu"]:
        case(op, f(2, 5) * 4)
    for op in ["reciprocal", "sqrt", "rsqrt", "log", "log2", "log10", "log1p"]:
        case(op, pos(2, 5))
    for op in ["asin", "acos", "atanh"]:
        case(op, unit(2, 5))
    case("acosh", pos(2, 5) + 1)
    case("neg", ints(5))
    case("abs", ints(5))
    case("square", ints(5))
    case("square", bools(5))
    case("sign", ints(5))
    case("round", torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4]))
    case("clamp", a, -0.5, 0.7)
    case("clamp", a, None, 0.3)
    case("clamp", ints(6), -1)
    case("clamp.Tensor", a, f(3) - 1, f(2, 1) + 1)
    case("clamp.Tensor", a, None, f(3))
    case("clamp_min", a, 0.1)
    case("clamp_max", ints(6), 2)
    case("hardtanh", f(6) * 3)
    case("hardtanh", f(6) * 3, -0.5, 2.0)
    case("hardtanh_", f(6) * 3, 0.0, 6.0)
    case("gelu", f(6) * 3)
    case("gelu", f(6) * 3, approximate="tanh")
    case("leaky_relu", f(6) * 3)
    case("leaky_relu", f(6) * 3, 0.2)
    case("elu", f(6) * 3)
    case("elu", f(6) * 3, 0.5, 1.5, 2.0)
    case("celu", f(6) * 3)
    case("celu", f(6) * 3, 0.5)
    case("softplus", f(6) * 3)
    case("softplus", f(8) * 10, 2, 5)
    case("prelu", f(2, 3, 4), pos(3) / 4)
    case("prelu", f(2, 3), torch.tensor([0.25]))
    for cmp in ["eq", "ne", "lt", "le", "gt", "ge"]:
        x = ints(2, 3, lo=-2, hi=3)
        case(f"{cmp}.Tensor", x, ints(3, lo=-2, hi=3))
        case(f"{cmp}.Tensor", a, b)
        case(f"{cmp}.Scalar", x, 1)
        case(f"{cmp}.Scalar", a, 0.25)
    case("logical_not", ints(6, lo=-1, hi=2))
    case("logical_not", bools(6))
    case("logical_and", bools(6), ints(6, lo=0, hi=2))
    case("logical_or", bools(6), bools(6))
    case("logical_xor", f(6), bools(6))
    case("bitwise_not", ints(6))
    case("bitwise_not", bools(6))
    case("bitwise_and.Tensor", ints(6, lo=0, hi=16), ints(6, lo=0, hi=16))
    case("bitwise_and.Tensor", bools(6), bools(6))
    case("bitwise_and.Scalar", ints(6, lo=0, hi=16), 6)
    case("bitwise_or.Tensor", ints(6, lo=0, hi=16), ints(6, lo=0, hi=16))
    case("bitwise_or.Scalar", ints(6, lo=0, hi=16), 9)
    case("bitwise_xor.Tensor", ints(6, lo=0, hi=16), ints(6, lo=0, hi=16))
    case("__and__.Tensor", bools(6), bools(6))
    case("__or__.Tensor", bools(6), bools(6))
    nan = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.0])
    case("isnan", nan)
    case("isinf", nan)
    case("where.self", bools(2, 3), a, b)
    case("where.self", bools(3), ints(2, 3), f(1))
    case("where.ScalarOther", bools(2, 3), a, 0.5)
    case("where.ScalarSelf", bools(2, 3), -1.0, a)
    case("masked_fill.Scalar", a, bools(3), -1e9)
    case("masked_fill.Scalar", ints(2, 3), bools(2, 3), 7)
    case("masked_fill.Tensor", a, bools(2, 3), torch.tensor(2.5))


def views():
    x = f(2, 3, 4)
    for op in ["alias", "detach", "detach_", "lift_fresh_copy", "clone"]:
        case(op, x)
    case("clone", x, memory_format=torch.contiguous_format)
    case("contiguous", x.transpose(0, 2))
    case("dropout", x, 0.3, False)
    case("feature_dropout", x, 0.3, False)
    case("view", x, [4, -1])
    case("reshape", x.transpose(1, 2), [2, 12])
    case("_unsafe_view", x, [6, 4])
    case("view_as", x, f(24))
    case("reshape_as", x.transpose(0, 1), f(6, 4))
    case("expand", f(3, 1), [2, 3, 5])
    case("expand", f(3, 1), [-1, 4])
    case("expand_as", f(1, 4), x)
    case("permute", x, [2, 0, 1])
    case("transpose.int", x, 0, -1)
    case("t", f(3, 4))
    case("t", f(5))
    case("unsqueeze", x, -1)
    case("squeeze", f(1, 3, 1))
    case("squeeze.dim", f(1, 3, 1), 2)
    case("squeeze.dims", f(1, 3, 1, 2), [0, 2])
    case("flatten.using_ints", x, 1, -1)
    case("unflatten.int", f(2, 12), 1, [3, 4])
    case("slice.Tensor", x, 2, 1, 3)
    case("slice.Tensor", x, 1, None, None, 2)
    case("slice.Tensor", x, 2, -3, 9223372036854775807)
    case("narrow", x, 2, 1, 2)
    case("select.int", x, 1, -1)
    case("split.Tensor", f(7, 2), 3)
    case("split_with_sizes", f(2, 6), [1, 2, 3], 1)
    case("chunk", f(7, 2), 3)
    case("unbind.int", x, 1)
    case("cat", [f(2, 3), f(1, 3)])
    case("cat", [f(2, 3), f(2, 1)], 1)
    case("cat", [ints(2), f(3)])
    case("stack", [f(2, 3), f(2, 3)], 1)
    case("repeat", f(2, 3), [2, 1, 2])
    case("repeat_interleave.self_int", f(2, 3), 2, 1)
    case("repeat_interleave.self_int", f(2, 3), 2)
    case("repeat_interleave.self_int", f(2, 3), 3, 0, output_size=6)
    case("flip", x, [0, 2])
    case("roll", f(3, 4), [1], [1])
    case("roll", f(3, 4), [2])
    case("roll", f(3, 4), [1, -1], [0, 1])
    case("constant_pad_nd", f(2, 3), [1, 2])
    case("constant_pad_nd", f(2, 3), [1, 0, 0, 2], 1.5)
    case("constant_pad_nd", f(2, 4), [-1, 1])
    case("constant_pad_nd", ints(2, 3), [1, 1], 7)
    case("pad", f(1, 2, 4), [2, 1], "reflect")
    case("pad", f(1, 2, 4), [1, 2], "replicate")
    case("pad", f(1, 2, 4), [1, 1], "circular")
    case("pad", f(2, 3), [1, 1], "constant", 3.0)
    case("tril", f(4, 4))
    case("tril", f(3, 4), 1)
    case("triu", f(4, 4), -1)
    case("triu", ints(2, 3, 3))
    case("diff", f(6))
    case("diff", f(2, 5), 2, 1, f(2, 1), f(2, 2))
    case("diff", f(3, 4), 1, 0)


def indexing():
    x = f(4, 5)
    case("index.Tensor", x, [torch.tensor([0, 2, -1])])
    case("index.Tensor", x, [None, torch.tensor([1, 3])])
    case("index.Tensor", x, [torch.tensor([[0], [3]]), torch.tensor([1, 2, 4])])
    case("index.Tensor", x, [torch.tensor([True, False, True, False])])
    case("index_select", x, 1, torch.tensor([4, 0, 0]))
    case("gather", x, 1, torch.tensor([[0, 1], [4, 4], [2, 3], [1, 0]]))
    case("gather", x, 0, torch.tensor([[0, 1, 3, 2, 0]]), sparse_grad=False)
    case("scatter.src", torch.zeros(3, 5), 0, torch.tensor([[0, 1, 2, 0, 1]]), f(1, 5))
    case("scatter.value", torch.zeros(3, 5), 1, torch.tensor([[0], [2], [4]]), 1.5)
    idx = torch.tensor([2, 0])
    case("index_copy", f(3, 4), 0, idx, f(2, 4))
    case("index_copy_", f(3, 4), 1, idx, f(3, 2))
    case("index_put", f(5, 3), [torch.tensor([0, 3])], f(2, 3))
    case("index_put", f(5, 3), [torch.tensor([1, 1]), torch.tensor([0, 2])], torch.tensor([1.0, 2.0]), True)
    case("index_put_", f(5, 3), [None, torch.tensor([2])], f(5, 1))
    case("index_put_", f(5), [torch.tensor([True, False, True, False, False])], torch.tensor(9.0))
    case("slice_scatter", f(4, 6), f(4, 2), 1, 1, 5, 2)
    case("slice_scatter", f(4, 6), f(2, 6), 0, None, 2)
    case("select_scatter", f(3, 4), f(3), 1, 2)
    case("select_scatter", f(3, 4), f(4), 0, -1)
    case("copy_", f(2, 3), f(3))
    case("copy_", f(2, 3), ints(2, 3))
    case("copy_", ints(2, 3), f(2, 3) * 3)


def nn():
    case("mm", f(2, 3), f(3, 4))
    case("bmm", f(2, 2, 3), f(2, 3, 4))
    case("addmm", f(4), f(2, 3), f(3, 4))
    case("addmm", f(2, 4), f(2, 3), f(3, 4), beta=0.5, alpha=2.0)
    case("addmm", f(1, 4), f(2, 3), f(3, 4), beta=0, alpha=1.5)
    case("baddbmm", f(2, 2, 4), f(2, 2, 3), f(2, 3, 4))
    case("baddbmm", f(4), f(2, 2, 3), f(2, 3, 4), beta=2.0, alpha=0.5)
    case("matmul", f(3), f(3))
    case("matmul", f(2, 1, 3, 4), f(5, 4, 2))
    case("matmul", f(3, 4), f(4))
    case("linear", f(2, 3), f(4, 3), f(4))
    case("linear", f(2, 5, 3), f(4, 3))
    case("conv1d", f(1, 2, 7), f(4, 2, 3), f(4), [2], [1], [1], 1)
    case("conv1d", f(2, 4, 6), f(4, 2, 2), None, [1], [0], [2], 2)
    case("conv2d", f(1, 2, 5, 5), f(3, 2, 3, 3), f(3))
    case("conv2d", f(1, 4, 6, 5), f(4, 1, 3, 2), f(4), [2, 1], [1, 0], [1, 2], 4)
    case("conv3d", f(1, 2, 4, 4, 4), f(2, 2, 2, 2, 2), None, [1, 2, 1], [1, 0, 0])
    case("conv2d.padding", f(1, 2, 5, 5), f(3, 2, 3, 3), f(3), [1, 1], "same")
    case("conv2d.padding", f(1, 2, 5, 5), f(3, 2, 2, 2), None, [1, 1], "valid", [2, 2])
    case("convolution", f(1, 2, 5, 5), f(3, 2, 3, 3), f(3), [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    case("convolution", f(1, 3, 4, 4), f(3, 2, 3, 3), f(2), [2, 2], [1, 1], [1, 1], True, [1, 1], 1)
    case("convolution", f(1, 4, 7), f(4, 1, 3), None, [1], [2], [2], False, [0], 4)
    case("conv_transpose1d", f(1, 2, 5), f(2, 3, 3), f(3), [2], [1], [1])
    case("conv_transpose2d.input", f(1, 2, 3, 3), f(2, 4, 3, 3), f(4), [2, 2], [1, 1], [1, 0], 1, [1, 1])
    case("conv_transpose2d.input", f(1, 4, 3, 3), f(4, 1, 2, 2), None, [1, 1], [0, 0], [0, 0], 2)
    x = f(2, 3, 4)
    case("layer_norm", x, [4], f(4), f(4), 1e-5)
    case("layer_norm", x, [3, 4])
    case("native_layer_norm", x, [4], f(4), None, 1e-6)
    case("rms_norm", x, [4], pos(4))
    case("rms_norm", x, [3, 4], None, 1e-3)
    x4 = f(2, 6, 3, 3)
    case("group_norm", x4, 3, f(6), f(6))
    case("group_norm", x4, 2, None, None, 1e-3)
    case("native_group_norm", x4, f(6), f(6), 2, 6, 9, 3, 1e-5)
    m, v = f(6), pos(6)
    case("batch_norm", x4, f(6), f(6), m, v, False, 0.1, 1e-5, True)
    case("batch_norm", f(4, 6), None, None, m, v, False, 0.1, 1e-3, False)
    case("_native_batch_norm_legit_no_training", x4, f(6), f(6), m, v, 0.1, 1e-5)
    case("instance_norm", x4, f(6), f(6), None, None, True, 0.1, 1e-5, False)
    case("instance_norm", f(2, 3, 5), None, None, None, None, True, 0.1, 1e-3, False)
    case("softmax.int", x, -1)
    case("softmax.int", x, 1, torch.float64)
    case("_softmax", x, 0, False)
    case("log_softmax.int", x, 2)
    case("_log_softmax", x, -1, False)
    case("embedding", f(10, 4), torch.tensor([[1, 3], [9, 0]]))
    case("embedding", f(10, 4), torch.tensor([2, 0, 2]), 0)
    q, k, vv = f(1, 2, 4, 8), f(1, 2, 5, 8), f(1, 2, 5, 8)
    case("scaled_dot_product_attention", q, k, vv)
    case("scaled_dot_product_attention", q, k, vv, bools(4, 5) | torch.eye(4, 5, dtype=torch.bool))
    case("scaled_dot_product_attention", q, f(1, 2, 4, 8), f(1, 2, 4, 8), None, 0.0, True)
    case("scaled_dot_product_attention", q, k, vv, f(1, 1, 4, 5), scale=0.3)
    case("scaled_dot_product_attention", f(1, 4, 3, 8), f(1, 2, 3, 8), f(1, 2, 3, 8), enable_gqa=True)
    p = f(1, 2, 6, 7)
    case("max_pool1d", f(1, 2, 9), [3], [2], [1])
    case("max_pool1d", f(1, 2, 9), [2], [], [0], [2], True)
    case("max_pool2d", p, [3, 3], [2, 2], [1, 1])
    case("max_pool2d", p, [2, 3], [], [0, 1], [1, 1], True)
    case("max_pool3d", f(1, 1, 4, 5, 6), [2, 2, 2], [2, 1, 2])
    case("max_pool2d_with_indices", p, [3, 3], [2, 2], [1, 1])
    case("avg_pool1d", f(1, 2, 9), [3], [2], [1], False, False)
    case("avg_pool1d", f(1, 2, 9), [3])
    case("avg_pool2d", p, [3, 3], [2, 2], [1, 1])
    case("avg_pool2d", p, [3, 2], [2, 2], [1, 1], True, False)
    case("avg_pool2d", p, [2, 2], [1, 1], [0, 0], False, True, 3)
    case("avg_pool3d", f(1, 1, 4, 5, 6), [2, 2, 2], [2, 1, 2], [1, 0, 1])
    case("adaptive_avg_pool1d", f(1, 2, 9), [4])
    case("adaptive_avg_pool2d", p, [3, 2])
    case("adaptive_avg_pool2d", p, [1, 1])
    case("_adaptive_avg_pool2d", p, [4, 3])
    case("adaptive_max_pool2d", p, [3, 2])
    u = f(1, 2, 3, 4)
    case("upsample_nearest2d.vec", u, [6, 7], None)
    case("upsample_nearest2d.vec", u, None, [2.0, 1.5])
    case("upsample_bilinear2d.vec", u, [5, 8], False, None)
    case("upsample_bilinear2d.vec", u, [5, 8], True, None)
    case("upsample_bilinear2d.vec", u, None, False, [2.0, 2.5])
    case("glu", f(2, 6))
    case("glu", f(4, 3), 0)
    case("pixel_shuffle", f(1, 8, 2, 3), 2)


def misc():
    case("arange", 5)
    case("arange", 2.5)
    case("arange", 6, dtype=torch.float32)
    case("arange.start", 2, 9)
    case("arange.start", -1.0, 2, dtype=torch.float64)
    case("arange.start_step", 1, 10, 3)
    case("arange.start_step", 0, 1, 0.25)
    case("arange.start_step", 5, -3, -2, dtype=torch.int32)
    case("full", [2, 3], 1.5)
    case("full", [2], 7)
    case("full", [3], True)
    case("full", [2, 2], 3, dtype=torch.float16)
    case("zeros", [2, 3])
    case("zeros", [4], dtype=torch.int64)
    case("ones", [3, 1])
    case("ones", [2], dtype=torch.bool)
    case("empty.memory_format", [2, 3], check="meta")
    case("empty.memory_format", [4], dtype=torch.int32, check="meta")
    case("zeros_like", ints(2, 3))
    case("zeros_like", f(2), dtype=torch.int64)
    case("ones_like", f(2, 3))
    case("empty_like", f(3, 2), check="meta")
    case("full_like", f(2, 3), 2.5)
    case("full_like", f(2, 3), 4, dtype=torch.int64)
    case("new_ones", ints(2), [2, 3])
    case("new_zeros", f(2), [3], dtype=torch.float64)
    case("new_empty", f(2), [1, 2], check="meta")
    case("new_full", ints(2), [2, 2], 5)
    case("new_full", f(2), [3], 0.5, dtype=torch.float64)
    case("scalar_tensor", 3)
    case("scalar_tensor", 0.5, dtype=torch.float64)
    case("eye", 3)
    case("eye", 4, dtype=torch.int64)
    case("_to_copy", f(2, 3) * 4, dtype=torch.int32)
    case("_to_copy", ints(3), dtype=torch.float16)
    case("_to_copy", f(3))
    case("to.dtype", f(2, 3) * 4, torch.int64)
    case("to.dtype", ints(3), torch.bool)
    case("to.device", f(3), torch.device("cpu"), torch.float64)
    case("to.dtype_layout", f(3), dtype=torch.float16, layout=torch.strided, device=torch.device("cpu"))
    case("to.dtype_layout", ints(3))
    case("type_as", ints(3), f(1))
    case("_assert_tensor_metadata", f(2, 3), [2, 3], None, torch.float32)
    case("_assert_tensor_metadata", ints(2), None, None, None, device=torch.device("cpu"))
    case("_assert_async.msg", torch.tensor(True), "must hold")
    case("_assert_scalar", 1, "must hold")
    x = f(2, 3, 4)
    case("sum", x)
    case("sum", ints(2, 3))
    case("sum", bools(5))
    case("sum", x, dtype=torch.float64)
    case("sum.dim_IntList", x, [1])
    case("sum.dim_IntList", x, [0, 2], True)
    case("sum.dim_IntList", x, None)
    case("sum.dim_IntList", ints(2, 3), [-1], False, dtype=torch.float32)
    case("prod.dim_int", pos(2, 3), 1)
    case("prod.dim_int", ints(2, 3), 0, True)
    case("mean", x)
    case("mean", x, dtype=torch.float64)
    case("mean.dim", x, [-1], True)
    case("mean.dim", x, [0, 1])
    case("mean.dim", x, None)
    case("amax", x, [1])
    case("amax", x, [0, 2], True)
    case("amax", x)
    case("amin", ints(2, 3), [0])
    d = distinct(3, 4)
    case("max.dim", d, 1)
    case("max.dim", d, 0, True)
    case("min.dim", d, -1)
    case("max", d)
    case("min", ints(6))
    case("argmax", d)
    case("argmax", d, 1)
    case("argmax", d, 0, True)
    case("argmin", d, -1)
    case("var.correction", x)
    case("var.correction", x, [1], correction=0, keepdim=True)
    case("var.correction", x, [0, 2], correction=2)
    case("std.correction", x, [-1])
    case("std.correction", x, None, correction=0)
    b = ints(2, 3, lo=0, hi=2)
    case("any.dim", b, 1)
    case("any.dim", bools(2, 3), 0, True)
    case("any", b)
    case("all.dim", b, 0)
    case("all", bools(2, 3))
    case("all", torch.ones(3, dtype=torch.bool))
    case("logsumexp", x, [1])
    case("logsumexp", x, [0, 2], True)
    case("linalg_vector_norm", x)
    case("linalg_vector_norm", x, 1, [1])
    case("linalg_vector_norm", x, float("inf"), [0, 2], True)
    case("linalg_vector_norm", x, 3, None, False, dtype=torch.float64)
    case("linalg_vector_norm", x, 0, [-1])
    case("cumsum", x, 1)
    case("cumsum", ints(2, 3), 0)
    case("cumsum", ints(2, 3), -1, dtype=torch.float32)
    case("cumprod", pos(2, 3), 1)
    case("topk", d, 2)
    case("topk", d, 2, 0, False)
    case("topk", distinct(8), 3, -1, True, True)
    case("sort", d)
    case("sort", d, 0, True)
    case("argsort", d, 1)
    case("argsort", d, 0, True)
    case("one_hot", torch.tensor([0, 2, 1, 2]))
    case("one_hot", torch.tensor([[0], [3]]), 5)


def added():
    """Ops added after the first set; kept last so the earlier cases' random inputs stay as they were."""
    # histc: values on bin edges, outside the range, NaN; the data's range when min == max.
    edges = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 4.5, 5.0, -1.0, 5.5, float("nan"), 2.5])
    case("histc", edges, 5, 0, 5)
    case("histc", f(4, 6), 7)
    case("histc", f(30), 4, -1.5, 1.0)
    case("histc", f(20, dtype=torch.float64), 6, 0.25, 0.25)
    case("histc", torch.full((3,), 2.0), 4)
    case("histc", torch.zeros(0), 3)
    case("histc", f(40).half(), 5, -1, 1)
    case("histc", f(40).bfloat16(), 3)
    # index_add: repeated indices accumulate; alpha is converted to self's dtype first.
    case("index_add", f(5, 3), 0, torch.tensor([0, 2, 0]), f(3, 3))
    case("index_add", f(5, 3), 1, torch.tensor([2, 0], dtype=torch.int32), f(5, 2), alpha=-0.5)
    case("index_add", ints(5), 0, torch.tensor([4, 4, 1]), ints(3), alpha=3)
    case("index_add", ints(4, 2), 0, torch.tensor([0, 0, 3]), ints(3, 2), alpha=2.5)
    case("index_add", f(1).reshape(()), 0, torch.tensor([0]), f(1).reshape(()))
    case("index_add", bools(4, 2), 0, torch.tensor([1, 3]), bools(2, 2))
    # masked_scatter: self and mask broadcast; extra source elements are unused.
    mask = torch.tensor([[True, False, True], [False, True, False]])
    case("masked_scatter", f(2, 3), mask, f(6))
    case("masked_scatter", f(1, 3), mask, f(2, 4))
    case("masked_scatter", f(2, 3), torch.tensor([False, True, True]), f(5))
    case("masked_scatter", ints(2, 3), mask, ints(3))
    # as_strided on contiguous inputs (what an exported graph holds).
    x = f(4, 5)
    case("as_strided", x, [2, 2], [1, 2])
    case("as_strided", x, [3, 2], [5, 1], 7)
    case("as_strided", x, [2, 3], [0, 1], 3)
    case("as_strided", x, [20], [0])
    case("as_strided", x, [], [], 19)
    case("as_strided", f(2, 3, 4), [2, 2, 2], [12, 1, 4], 1)
    # im2col / col2im (unfold / fold).
    case("im2col", f(2, 3, 5, 6), [2, 3], [1, 1], [0, 0], [1, 1])
    case("im2col", f(3, 5, 6), [2, 3], [2, 1], [1, 2], [2, 3])
    case("im2col", f(1, 2, 4, 4).half(), [3, 3], [1, 1], [1, 1], [2, 2])
    case("col2im", f(2, 18, 16), [5, 6], [2, 3], [1, 1], [0, 0], [1, 1])
    case("col2im", f(18, 9), [5, 6], [2, 3], [2, 1], [1, 2], [2, 3])
    case("col2im", f(1, 18, 16), [4, 4], [3, 3], [1, 1], [1, 1], [1, 1])
    # einsum: explicit and implicit outputs, ellipses, diagonals, broadcasting, paths, dtypes.
    case("einsum", "ij,jk->ik", [f(2, 3), f(3, 4)])
    case("einsum", "ba,ca", [f(2, 3), f(4, 3)])
    case("einsum", "ii->i", [f(3, 3)])
    case("einsum", "ii", [f(3, 3)])
    case("einsum", "...ij,...jk->...ik", [f(5, 1, 2, 3), f(4, 3, 4)])
    case("einsum", "b h i d, b h j d -> b h i j", [f(2, 2, 3, 4), f(2, 2, 5, 4)])
    case("einsum", "ij,ij->ij", [f(2, 1), f(1, 3)])
    case("einsum", "ij,jk,kl->il", [f(2, 3), f(3, 4), f(4, 5)], path=[0, 2, 0, 1])
    case("einsum", "i,j->ij", [f(3).half(), f(4)])
    case("einsum", "ij->i", [ints(2, 3, dtype=torch.int32)])
    case("einsum", "ij,k->i", [ints(2, 3, dtype=torch.int32), ints(4, dtype=torch.int32)])
    case("einsum", "ijj->j", [f(2, 3, 3)])
    case("einsum", "bij,bjk->bik", [f(0, 2, 3), f(0, 3, 4)])
    # _native_batch_norm_legit.no_stats: batch statistics.
    x4 = f(2, 3, 4, 4)
    case("_native_batch_norm_legit.no_stats", x4, f(3), f(3), True, 0.1, 1e-5)
    case("_native_batch_norm_legit.no_stats", f(4, 3), None, None, True, 0.1, 1e-3)
    case("_native_batch_norm_legit.no_stats", f(2, 3, 5), None, f(3), True, 0.0, 1e-5)
    case("_native_batch_norm_legit.no_stats", f(2, 3, 5).half(), f(3), f(3), True, 0.1, 1e-5)
    # grouped_mm_fallback: an expert with no rows, rows past the last offset, int32 offsets.
    inp, w = f(7, 4), f(3, 4, 5)
    case("grouped_mm_fallback", inp, w, torch.tensor([2, 2, 7]), ns="transformers")
    case("grouped_mm_fallback", inp, w, torch.tensor([0, 3, 5], dtype=torch.int32), ns="transformers")
    case("grouped_mm_fallback", inp, w, torch.tensor([0, 0, 0]), ns="transformers")
    case("grouped_mm_fallback", ints(4, 2), ints(2, 2, 3), torch.tensor([1, 4]), ns="transformers")


def added_resampling():
    """Resampling, windows and scatter reductions; after `added()`, for the same reason."""
    # adaptive_avg_pool3d: batched, unbatched, larger than the input, the [1, 1, 1] mean.
    v = f(2, 3, 4, 5, 6)
    case("adaptive_avg_pool3d", v, [2, 3, 2])
    case("adaptive_avg_pool3d", f(3, 5, 6, 7), [2, 2, 3])
    case("adaptive_avg_pool3d", v, [5, 7, 8])
    case("adaptive_avg_pool3d", v, [1, 1, 1])
    case("adaptive_avg_pool3d", f(4, 5, 6), [1, 1, 1])
    case("adaptive_avg_pool3d", f(1, 2, 4, 4, 4, dtype=torch.float64), [3, 1, 2])
    case("adaptive_avg_pool3d", f(1, 2, 4, 4, 4).half(), [2, 2, 2])
    # grid_sampler: every interpolation and padding mode, grids reaching outside [-1, 1].
    x2, g2 = f(2, 3, 5, 6), f(2, 4, 7, 2, lo=-1.3, hi=1.3)
    for interpolation in range(3):
        for padding in range(3):
            case("grid_sampler", x2, g2, interpolation, padding, interpolation == padding)
            case("grid_sampler_2d", x2, g2, interpolation, padding, interpolation != padding)
    x3, g3 = f(2, 2, 4, 5, 3), f(2, 3, 2, 4, 3, lo=-1.3, hi=1.3)
    for interpolation in range(2):
        for padding in range(3):
            case("grid_sampler", x3, g3, interpolation, padding, padding == 1)
    case("grid_sampler", x2.double(), g2.double(), 2, 1, True)
    case("grid_sampler_2d", x2.bfloat16(), g2.bfloat16(), 0, 0, False)
    case("grid_sampler_2d", f(1, 2, 3, 3), f(1, 0, 4, 2), 0, 0, False)
    # upsample_bicubic2d / upsample_linear1d: sizes and scales, align_corners, downscaling.
    u = f(2, 3, 4, 5)
    case("upsample_bicubic2d.vec", u, [7, 9], False, None)
    case("upsample_bicubic2d.vec", u, [7, 9], True, None)
    case("upsample_bicubic2d.vec", u, None, False, [2.0, 1.5])
    case("upsample_bicubic2d.vec", u, None, True, [0.5, 0.7])
    case("upsample_bicubic2d.vec", u, [3, 2], False, None)
    case("upsample_bicubic2d.vec", u.half(), [6, 6], False, None)
    case("upsample_bicubic2d.vec", ints(1, 2, 4, 4, lo=0, hi=256, dtype=torch.uint8), [7, 5], False, None)
    w = f(2, 3, 6)
    case("upsample_linear1d.vec", w, [11], False, None)
    case("upsample_linear1d.vec", w, [11], True, None)
    case("upsample_linear1d.vec", w, None, False, [2.5])
    case("upsample_linear1d.vec", w, None, True, [0.4])
    case("upsample_linear1d.vec", w, [1], True, None)
    case("upsample_linear1d.vec", w.bfloat16(), [9], False, None)
    # unfold: disjoint, overlapping and strided windows, empty windows, 0-dim.
    t = f(2, 10)
    case("unfold", t, 1, 3, 2)
    case("unfold", t, -1, 4, 1)
    case("unfold", t, 0, 2, 1)
    case("unfold", t, 1, 3, 100)
    case("unfold", t, 1, 0, 3)
    case("unfold", f(2, 3, 4), 1, 2, 1)
    case("unfold", ints(10), 0, 4, 3)
    case("unfold", bools(3, 4), 1, 2, 2)
    case("unfold", f(1).reshape(()), 0, 1, 1)
    # scatter_reduce: every reduction with and without self, repeated indices, int32 indices.
    s, i, src = f(3, 4), ints(3, 5, lo=0, hi=4), f(3, 5)
    for reduce in ["sum", "prod", "mean", "amax", "amin"]:
        for include_self in [True, False]:
            case("scatter_reduce.two", s, 1, i, src, reduce, include_self=include_self)
    case("scatter_reduce.two", s, 0, ints(2, 4, lo=0, hi=3, dtype=torch.int32), f(2, 4), "sum")
    case("scatter_reduce.two", s, -2, ints(2, 3, lo=0, hi=3), f(4, 4), "amax", include_self=False)
    si = ints(3, 4)
    case("scatter_reduce.two", si, 1, i, ints(3, 5), "mean")
    case("scatter_reduce.two", si, 1, i, ints(3, 5), "mean", include_self=False)
    case("scatter_reduce.two", si, 1, i, ints(3, 5), "prod", include_self=False)
    case("scatter_reduce.two", bools(3, 4), 1, i, bools(3, 5), "amin")
    case("scatter_reduce.two", s.half(), 1, i, src.half(), "mean")
    case("scatter_reduce.two", f(1).reshape(()), 0, torch.tensor([0, 0]), f(2), "sum")
    case("scatter_reduce.two", s, 1, torch.zeros(0, dtype=torch.int64), f(3, 4), "amax")


elementwise()
views()
indexing()
nn()
misc()
added()
added_resampling()

with open(sys.argv[1], "w") as out:
    json.dump({"torch": torch.__version__, "cases": CASES}, out, separators=(",", ":"))
    out.write("\n")
print(f"{len(CASES)} cases")
