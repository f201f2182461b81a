#!/usr/bin/env python3
"""Generate `op_cases.json`: PyTorch's own shape/dtype results for every op in Genie's registry.

Each case calls `torch.ops.aten.<name>.<overload>(*args, **kwargs)` on real CPU tensors (fixed
seeds; index tensors hold valid indices) and records the outputs' dtypes and shapes, or the error
torch raised. `ir/tests/op_inference.rs` replays every case through the registry's schema binding
and inference and compares.

Encoding of arguments (positional `args`, keyword `kwargs`):
  tensor        {"tensor": {"dtype": "float32", "shape": [2, 3]}}
  list          [...] (tensors, None holes, ints, floats, bools)
  None / int / float / bool / str  as JSON
  dtype         {"dtype": "int64"}
  device, layout, memory format   {"device": "cpu"}, {"layout": "strided"},
                                  {"memory_format": "contiguous_format"}
Result: `expect` is a list of {"dtype", "shape"} or {"error": "<message>"}.
`unmodeled`: torch computes a result Genie deliberately does not model (data-dependent shapes);
the registry must report an error for these. `device: "meta"`: the case runs on the meta device
because the CPU kernel differs from the accelerator one (CPU-only dtype rules or refusals).

Run:  /work/main/.venv/bin/python ir/tests/data/gen_op_cases.py
"""

import json
import math
import os
import sys

import torch

INT64_MAX = 2**63 - 1
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "op_cases.json")


class T:
    """A tensor argument: dtype, shape, and how to fill it (`high` bounds integer values)."""

    def __init__(self, dtype, shape, high=None, low=0, fill=None):
        self.dtype, self.shape, self.high, self.low, self.fill = dtype, list(shape), high, low, fill

    def enc(self):
        return {"tensor": {"dtype": self.dtype, "shape": self.shape}}

    def make(self, gen, device):
        dt = getattr(torch, self.dtype)
        if device == "meta":
            return torch.empty(self.shape, dtype=dt, device="meta")
        if self.fill is not None:
            return torch.full(self.shape, self.fill, dtype=dt)
        if dt == torch.bool:
            return torch.randint(0, 2, self.shape, generator=gen).bool()
        if dt.is_floating_point or dt.is_complex:
            return torch.randn(self.shape, generator=gen).to(dt)
        return torch.randint(self.low, self.high if self.high is not None else 4, self.shape, generator=gen).to(dt)


class Tag:
    """A dtype, device, layout or memory format argument."""

    def __init__(self, kind, name):
        self.kind, self.name = kind, name

    def enc(self):
        return {self.kind: self.name}

    def make(self):
        if self.kind == "device":
            return torch.device(self.name)
        return getattr(torch, self.name)


def D(name):
    return Tag("dtype", name)


def enc(v):
    if isinstance(v, (T, Tag)):
        return v.enc()
    if isinstance(v, (list, tuple)):
        return [enc(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("non-finite floats are not encodable")
    return v


def make(v, gen, device):
    if isinstance(v, T):
        return v.make(gen, device)
    if isinstance(v, Tag):
        return v.make()
    if isinstance(v, (list, tuple)):
        return [make(x, gen, device) for x in v]
    return v


CASES = []


def C(op, *args, note=None, unmodeled=None, on="cpu", **kwargs):
    """Declare one case: `op` is the registry key (`aten.add.Tensor`)."""
    CASES.append(dict(op=op, args=list(args), kwargs=kwargs, note=note, unmodeled=unmodeled, device=on))


def torch_op(key):
    _, name, overload = key.split(".")
    return getattr(getattr(torch.ops.aten, name), overload)


def run(case, seed):
    gen = torch.Generator().manual_seed(seed)
    args = [make(a, gen, case["device"]) for a in case["args"]]
    kwargs = {k: make(v, gen, case["device"]) for k, v in case["kwargs"].items()}
    try:
        res = torch_op(case["op"])(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - torch raises many types; the message is the record
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return {"error": f"{type(e).__name__}: {msg}"[:240]}
    outs = [] if res is None else [res] if isinstance(res, torch.Tensor) else list(res)
    for o in outs:
        if not isinstance(o, torch.Tensor):
            raise TypeError(f"{case['op']}: non-tensor output {o!r}")
    return [{"dtype": str(o.dtype).removeprefix("torch."), "shape": list(o.shape)} for o in outs]


# ---------------------------------------------------------------------------------------------
# Cases. Shorthands: f32 = T("float32", shape) etc.

def f32(*s):
    return T("float32", s)


def f16(*s):
    return T("float16", s)


def bf16(*s):
    return T("bfloat16", s)


def f64(*s):
    return T("float64", s)


def i64(*s, high=4, low=0):
    return T("int64", s, high=high, low=low)


def i32(*s, high=4, low=0):
    return T("int32", s, high=high, low=low)


def u8(*s):
    return T("uint8", s, high=2)


def i8(*s):
    return T("int8", s)


def b(*s):
    return T("bool", s)


# Element-wise binary arithmetic: broadcasting, promotion tiers, shape errors.
for name in ["add", "sub", "mul", "rsub"]:
    ov = "Tensor"
    key = f"aten.{name}.{ov}"
    C(key, f32(2, 3), f32(3), note="broadcast")
    C(key, i64(2, 3), f32(), note="0-dim float tensor promotes an int tensor")
    C(key, f16(4), f32(), note="0-dim f32 does not promote f16")
    C(key, u8(3), i8(3), note="uint8 with int8 gives int16")
    C(key, f32(2, 3), f32(4), note="shape mismatch")
    if name != "mul":
        C(key, b(3), b(3), note="bool arithmetic")
        C(key, i32(2), i32(2), alpha=0.5, note="float alpha with integral tensors")
    else:
        C(key, b(3), b(3), note="bool * bool stays bool")
        C(key, b(2, 1), i32(3), note="bool with int broadcast")
C("aten.add.Tensor", f32(2, 1, 4), bf16(3, 1), alpha=2, note="f32 with bf16")
C("aten.add.Tensor", b(2), i32(2), note="bool + int")
for name in ["add_", "mul_"]:
    key = f"aten.{name}.Tensor"
    C(key, f32(2, 3), i64(3), note="in-place keeps self's dtype")
    C(key, f32(3), f32(2, 3), note="in-place cannot grow self")
    C(key, i64(2), f32(2), note="in-place result float cannot be cast to int")
for name in ["add", "sub", "rsub"]:
    key = f"aten.{name}.Scalar"
    C(key, i64(3), 2.5, note="int tensor + float scalar")
    C(key, f16(2), 1, note="f16 + int scalar")
    C(key, i32(2, 2), 2)
    C(key, f32(2), 1, 2)
C("aten.add.Scalar", b(2), True, note="bool + bool scalar")
C("aten.add.Scalar", b(2), 2, note="bool + int scalar")
C("aten.sub.Scalar", b(2), True, note="bool - bool")
C("aten.mul.Scalar", i64(3), 2.5)
C("aten.mul.Scalar", b(3), 2)
C("aten.mul.Scalar", bf16(2, 2), 3.0)
C("aten.mul.Scalar", b(2), False)
C("aten.div.Tensor", i64(2, 3), i64(3), note="true division of ints")
C("aten.div.Tensor", f16(3), f32(), note="0-dim f32")
C("aten.div.Tensor", b(2), b(2))
C("aten.div.Tensor", f32(2), f32(3))
C("aten.div.Scalar", i64(3), 2)
C("aten.div.Scalar", f64(3), 2.0)
C("aten.div.Scalar", b(3), True)
C("aten.div.Tensor_mode", i64(2, 3), i64(3), rounding_mode="floor")
C("aten.div.Tensor_mode", i32(2), i64(2), rounding_mode="trunc")
C("aten.div.Tensor_mode", i64(2), i64(2), rounding_mode=None)
C("aten.div.Tensor_mode", f32(2), f32(3), rounding_mode="floor")
C("aten.div.Tensor_mode", b(2), b(2), rounding_mode="floor")
C("aten.div.Scalar_mode", i64(3), 2, rounding_mode="floor")
C("aten.div.Scalar_mode", i64(3), 2.5, rounding_mode="trunc")
C("aten.div.Scalar_mode", i64(3), 2, rounding_mode=None)
C("aten.floor_divide.default", i32(4), f32(4))
C("aten.floor_divide.default", i64(2, 1), i64(3, high=3, low=1))
C("aten.floor_divide.default", f32(2), f32(3))
C("aten.floor_divide.default", b(2), b(2))
for name in ["remainder", "fmod"]:
    C(f"aten.{name}.Tensor", i64(2, 3), f32(3))
    C(f"aten.{name}.Tensor", i32(3, high=5, low=1), i64(3, high=5, low=1))
    C(f"aten.{name}.Tensor", f32(2), f32(4))
    C(f"aten.{name}.Scalar", i64(3), 2)
    C(f"aten.{name}.Scalar", i64(3), 1.5)
    C(f"aten.{name}.Scalar", f16(3), 2)
    C(f"aten.{name}.Scalar", b(3), True)
C("aten.pow.Tensor_Scalar", i64(3), 2)
C("aten.pow.Tensor_Scalar", i64(3), 0.5, note="int ** float is float")
C("aten.pow.Tensor_Scalar", i64(3), -1, note="ints to negative int powers")
C("aten.pow.Tensor_Scalar", f16(2, 2), 2)
C("aten.pow.Tensor_Scalar", b(2), 2)
C("aten.pow.Tensor_Tensor", f32(2, 3), i64(3))
C("aten.pow.Tensor_Tensor", i64(2), i32(2))
C("aten.pow.Tensor_Tensor", f32(2), f32(3))
C("aten.pow.Tensor_Tensor", f16(3), f32())
C("aten.pow.Scalar", 2, i64(3))
C("aten.pow.Scalar", 2.0, i64(3))
C("aten.pow.Scalar", 2, f16(2, 2))
C("aten.pow.Scalar", True, b(2))
for key in ["aten.maximum.default", "aten.minimum.default", "aten.max.other", "aten.min.other"]:
    C(key, f32(2, 3), i64(3))
    C(key, b(2), b(2))
    C(key, f16(3), f32())
    C(key, f32(2), f32(3))
C("aten.atan2.default", i64(2, 3), i64(3))
C("aten.atan2.default", f16(2), f32(2))
C("aten.atan2.default", f32(2), f32(3))

# Unary ops that keep integer dtypes.
for name in ["neg", "abs", "sign", "square", "floor", "ceil", "round", "trunc"]:
    key = f"aten.{name}.default"
    C(key, f32(2, 3))
    C(key, i64(4))
    C(key, b(3))
    C(key, f16())
# Unary ops that make integers float.
for name in ["reciprocal", "sqrt", "rsqrt", "exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin", "cos",
             "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "erf", "sigmoid", "tanh"]:
    key = f"aten.{name}.default"
    C(key, f32(2, 3))
    C(key, i64(4), note="integers compute in the default float dtype")
    C(key, bf16(2))
    C(key, b(3))
C("aten.clamp.default", i64(3), 0.5, note="float bound promotes an int tensor")
C("aten.clamp.default", f16(2, 3), 0, 1)
C("aten.clamp.default", i64(3), None, 2)
C("aten.clamp.default", f32(3), note="neither min nor max")
C("aten.clamp.default", b(3), 0, 1)
C("aten.clamp.Tensor", f32(2, 3), f32(3), f32(2, 1))
C("aten.clamp.Tensor", i64(3), f32(), None)
C("aten.clamp.Tensor", f32(2, 3), f32(4), None)
C("aten.clamp.Tensor", f32(2), None, None)
C("aten.clamp_min.default", i64(3), 0.5)
C("aten.clamp_min.default", f16(2), 0)
C("aten.clamp_min.default", i32(2), 1)
C("aten.clamp_max.default", i64(3), 0.5)
C("aten.clamp_max.default", bf16(2, 2), 1)
C("aten.clamp_max.default", b(2), 0)

# Activations.
for name in ["relu", "relu6", "hardtanh", "leaky_relu", "elu", "celu", "selu", "softplus", "gelu", "silu", "mish",
             "hardswish", "hardsigmoid", "relu_", "silu_", "hardtanh_"]:
    key = f"aten.{name}.default"
    C(key, f32(2, 3))
    C(key, f16(4))
    C(key, i64(3))
    C(key, b(2))
C("aten.gelu.default", f32(2, 3), approximate="tanh")
C("aten.gelu.default", f32(2), approximate="bad")
C("aten.hardtanh.default", f32(2, 3), -2, 2)
C("aten.leaky_relu.default", bf16(2, 3), 0.2)
C("aten.elu.default", f32(3), 1.0, 1.0, 1.0)
C("aten.softplus.default", f32(3), 2, 10)
C("aten.prelu.default", f32(2, 3, 4), f32(3), note="one weight per channel")
C("aten.prelu.default", f32(2, 3, 4), f32(1))
C("aten.prelu.default", f32(2, 3), f32(5), note="weight size mismatch")
C("aten.prelu.default", f32(4), f32(1))
C("aten.prelu.default", i64(2, 3), i64(3))

# Comparisons and logic.
for name in ["eq", "ne", "lt", "le", "gt", "ge"]:
    C(f"aten.{name}.Tensor", f32(2, 3), i64(3))
    C(f"aten.{name}.Tensor", f32(2, 3), f32(4))
    C(f"aten.{name}.Tensor", b(2, 1), b(3))
    C(f"aten.{name}.Scalar", i64(3), 1.5)
    C(f"aten.{name}.Scalar", f16(2, 2), 0)
    C(f"aten.{name}.Scalar", b(2), True)
C("aten.logical_not.default", f32(2, 3))
C("aten.logical_not.default", i64(3))
C("aten.logical_not.default", b())
for name in ["logical_and", "logical_or", "logical_xor"]:
    C(f"aten.{name}.default", f32(2, 3), i64(3))
    C(f"aten.{name}.default", b(2), b(3))
    C(f"aten.{name}.default", b(2, 1), b(1, 4))
C("aten.bitwise_not.default", i64(2, 3))
C("aten.bitwise_not.default", b(3))
C("aten.bitwise_not.default", f32(3))
for name in ["bitwise_and", "bitwise_or", "bitwise_xor", "__and__", "__or__"]:
    C(f"aten.{name}.Tensor", i32(2, 3), i64(3))
    C(f"aten.{name}.Tensor", b(2), b(2))
    C(f"aten.{name}.Tensor", f32(2), f32(2))
    C(f"aten.{name}.Tensor", u8(2), b(2))
    C(f"aten.{name}.Tensor", i64(2), i64(3))
for name in ["bitwise_and", "bitwise_or"]:
    C(f"aten.{name}.Scalar", i64(3), 3)
    C(f"aten.{name}.Scalar", b(3), True)
    C(f"aten.{name}.Scalar", b(3), 1)
    C(f"aten.{name}.Scalar", f32(3), 1)
    C(f"aten.{name}.Scalar", i32(3), 1)
for name in ["isnan", "isinf"]:
    C(f"aten.{name}.default", f32(2, 3))
    C(f"aten.{name}.default", i64(3))
    C(f"aten.{name}.default", f16())
C("aten.where.self", b(2, 1), f32(1, 3), i64(3), note="three-way broadcast, promotion")
C("aten.where.self", b(2), f16(2), f32(), note="0-dim other")
C("aten.where.self", i64(2), f32(2), f32(2), note="non-bool condition")
C("aten.where.self", b(2), f32(3), f32(3))
C("aten.where.self", u8(2), f32(2), f32(2), note="uint8 condition")
C("aten.where.ScalarOther", b(2, 3), f16(3), 0.0)
C("aten.where.ScalarOther", b(2, 3), i64(3), 0.5)
C("aten.where.ScalarOther", b(3), i32(3), 1)
C("aten.where.ScalarOther", b(2), f32(3), 1)
C("aten.where.ScalarSelf", b(2, 3), 1.0, i64(3))
C("aten.where.ScalarSelf", b(3), 0, f16(3))
C("aten.where.ScalarSelf", b(4), 0, f16(3))
C("aten.masked_fill.Scalar", f32(2, 3), b(3), 0.0, note="mask broadcasts to self")
C("aten.masked_fill.Scalar", i64(2, 3), b(2, 3), 1.5)
C("aten.masked_fill.Scalar", f32(3), b(2, 3), 0.0, note="mask larger than self")
C("aten.masked_fill.Scalar", f32(3), i64(3), 0.0, note="non-bool mask")
C("aten.masked_fill.Scalar", f16(1, 1, 4, 4), b(4, 4), -65504.0)
C("aten.masked_fill.Tensor", f32(2, 3), b(3), f32())
C("aten.masked_fill.Tensor", f32(2, 3), b(3), f32(1), note="value must be 0-dim")
C("aten.masked_fill.Tensor", f16(2, 3), b(2, 3), f64())
C("aten.masked_fill.Tensor", i64(2), b(2), f32())

# Creation.
C("aten.arange.default", 5)
C("aten.arange.default", 5.0)
C("aten.arange.default", 2.5)
C("aten.arange.default", 10, dtype=D("float16"))
C("aten.arange.default", -3, note="negative end")
C("aten.arange.default", 0)
C("aten.arange.start", 1, 10)
C("aten.arange.start", 0.0, 1)
C("aten.arange.start", 5, 1, note="end < start")
C("aten.arange.start", 3, 3)
C("aten.arange.start", 2, 7, dtype=D("int32"))
C("aten.arange.start_step", 0, 10, 3)
C("aten.arange.start_step", 0, 1, 0.1, note="float step")
C("aten.arange.start_step", 10, 0, -2)
C("aten.arange.start_step", 0, 10, 0)
C("aten.arange.start_step", 0, 10, -1, note="step sign disagrees with bounds")
C("aten.arange.start_step", 0.5, 2, 0.3)
C("aten.arange.start_step", 1, 10, 2, dtype=D("float32"))
C("aten.full.default", [2, 3], 1.5)
C("aten.full.default", [2], 7)
C("aten.full.default", [2], True)
C("aten.full.default", [2, 3], 1, dtype=D("float16"))
C("aten.full.default", [-1], 0)
C("aten.full.default", [], 2.0)
for name in ["zeros", "ones"]:
    C(f"aten.{name}.default", [2, 3])
    C(f"aten.{name}.default", [2], dtype=D("int32"))
    C(f"aten.{name}.default", [])
    C(f"aten.{name}.default", [2, -3])
    C(f"aten.{name}.default", [0, 4], dtype=D("bool"), layout=Tag("layout", "strided"), device=Tag("device", "cpu"))
C("aten.empty.memory_format", [2, 3])
C("aten.empty.memory_format", [1, 3, 4, 4], dtype=D("bfloat16"), memory_format=Tag("memory_format", "channels_last"))
C("aten.empty.memory_format", [-2])
for name in ["zeros_like", "ones_like", "empty_like"]:
    C(f"aten.{name}.default", i64(2, 3))
    C(f"aten.{name}.default", f32(2, 3), dtype=D("float16"))
    C(f"aten.{name}.default", b(), memory_format=Tag("memory_format", "preserve_format"))
C("aten.full_like.default", i64(2, 3), 2.5, note="keeps self's dtype")
C("aten.full_like.default", f32(2), 1, dtype=D("int32"))
C("aten.full_like.default", b(3), True)
for name in ["new_ones", "new_zeros", "new_empty"]:
    C(f"aten.{name}.default", f16(2), [2, 3])
    C(f"aten.{name}.default", i64(2), [4], dtype=D("float32"))
    C(f"aten.{name}.default", f32(2), [-1])
C("aten.new_full.default", f16(2), [2, 3], 1.5)
C("aten.new_full.default", i64(2), [3], 2.5)
C("aten.new_full.default", i64(2), [3], 2, dtype=D("bool"))
C("aten.scalar_tensor.default", 3)
C("aten.scalar_tensor.default", 3, dtype=D("int64"))
C("aten.scalar_tensor.default", True)
C("aten.scalar_tensor.default", 1.5, dtype=D("float16"))
C("aten.eye.default", 3)
C("aten.eye.default", 4, dtype=D("bool"))
C("aten.eye.default", 0)
C("aten.eye.default", -1)

# Conversion.
C("aten._to_copy.default", f32(2, 3), dtype=D("float16"))
C("aten._to_copy.default", i64(2))
C("aten._to_copy.default", f32(2), dtype=D("bool"), device=Tag("device", "cpu"), layout=Tag("layout", "strided"))
C("aten.to.dtype", f32(2, 3), D("int32"))
C("aten.to.dtype", b(2), D("float32"), False, True)
C("aten.to.dtype", bf16(2), D("float64"), memory_format=Tag("memory_format", "preserve_format"))
C("aten.to.device", f32(2, 3), Tag("device", "cpu"), D("float16"))
C("aten.to.device", i64(3), Tag("device", "cpu"), D("int64"), copy=True)
C("aten.to.dtype_layout", f32(2, 3), dtype=D("bfloat16"))
C("aten.to.dtype_layout", i64(2), device=Tag("device", "cpu"))
C("aten.to.dtype_layout", i64(2), dtype=D("float32"), layout=Tag("layout", "strided"), device=Tag("device", "cpu"))
C("aten.type_as.default", f32(2, 3), i64(1))
C("aten.type_as.default", i64(2), f16(4, 4))
C("aten.type_as.default", b(2), b())

# Assertions.
C("aten._assert_tensor_metadata.default", f32(2, 3), dtype=D("float32"))
C("aten._assert_tensor_metadata.default", f32(2, 3), dtype=D("int64"))
C("aten._assert_tensor_metadata.default", f32(2, 3), [2, 3])
C("aten._assert_tensor_metadata.default", f32(2, 3), [3, 3])
C("aten._assert_tensor_metadata.default", i64(2), None, None, D("int64"), device=Tag("device", "cpu"))
C("aten._assert_async.msg", T("bool", [], fill=True), "must hold")
C("aten._assert_async.msg", T("int64", [], fill=1), "must hold")
C("aten._assert_async.msg", T("bool", [2], fill=True), "needs one element")
C("aten._assert_scalar.default", 1, "must hold")
C("aten._assert_scalar.default", True, "must hold")

# Reductions.
C("aten.sum.default", i32(2, 3), note="ints accumulate in int64")
C("aten.sum.default", b(4))
C("aten.sum.default", f16(2, 2))
C("aten.sum.default", f32(3), dtype=D("float64"))
C("aten.sum.default", i64(3), dtype=D("int32"))
C("aten.sum.dim_IntList", f32(2, 3, 4), [1], True)
C("aten.sum.dim_IntList", f32(2, 3, 4), [-1, 0])
C("aten.sum.dim_IntList", i32(2, 3), None)
C("aten.sum.dim_IntList", f32(2, 3), [], note="empty dim list reduces everything")
C("aten.sum.dim_IntList", f32(2, 3), [2], note="dim out of range")
C("aten.sum.dim_IntList", b(2, 3), [1], dtype=D("float16"))
C("aten.sum.dim_IntList", f32(2, 3), [1, -1], note="repeated dim")
C("aten.sum.dim_IntList", f32(), [0], True, note="0-dim input")
C("aten.prod.dim_int", f32(2, 3), 1)
C("aten.prod.dim_int", i32(2, 3), -1, True)
C("aten.prod.dim_int", b(2, 3), 0, dtype=D("float32"))
C("aten.prod.dim_int", f32(2, 3), 2)
C("aten.mean.default", f32(2, 3))
C("aten.mean.default", i64(3), note="integer mean")
C("aten.mean.default", i64(3), dtype=D("float32"))
C("aten.mean.default", f16(2, 2))
C("aten.mean.dim", f32(2, 3, 4), [-1], True)
C("aten.mean.dim", f32(2, 3, 4), [0, 2])
C("aten.mean.dim", bf16(2, 3), None)
C("aten.mean.dim", i64(2, 3), [1])
C("aten.mean.dim", i64(2, 3), [1], dtype=D("float64"))
C("aten.mean.dim", f32(2, 3), [3])
for name in ["amax", "amin"]:
    C(f"aten.{name}.default", f32(2, 3, 4), [1])
    C(f"aten.{name}.default", i64(2, 3), [-1], True)
    C(f"aten.{name}.default", f32(2, 3), note="default dims: all")
    C(f"aten.{name}.default", f32(2, 3), [0, 1], True)
    C(f"aten.{name}.default", f32(0, 3), [0], note="reducing an empty dim")
    C(f"aten.{name}.default", b(2, 3), [1])
for name in ["max", "min"]:
    C(f"aten.{name}.dim", f32(2, 3), 1)
    C(f"aten.{name}.dim", i64(2, 3, 4), -2, True)
    C(f"aten.{name}.dim", f32(2, 3), 2)
    C(f"aten.{name}.dim", f32(), 0, note="0-dim input")
    C(f"aten.{name}.default", f32(2, 3))
    C(f"aten.{name}.default", i32(5))
    C(f"aten.{name}.default", f32(0, 3), note="empty input")
for name in ["argmax", "argmin"]:
    C(f"aten.{name}.default", f32(2, 3))
    C(f"aten.{name}.default", f32(2, 3), 1, True)
    C(f"aten.{name}.default", i64(2, 3), -1)
    C(f"aten.{name}.default", f32(2, 3), None, True, note="keepdim without dim")
    C(f"aten.{name}.default", f32(2, 3), 3)
for name in ["var", "std"]:
    C(f"aten.{name}.correction", f32(2, 3, 4), [1], correction=0, keepdim=True)
    C(f"aten.{name}.correction", f16(2, 3))
    C(f"aten.{name}.correction", i64(2, 3), [1], note="integer input")
    C(f"aten.{name}.correction", f32(2, 3), [-1, 0])
    C(f"aten.{name}.correction", f64(4), None, correction=1.5)
for name in ["any", "all"]:
    C(f"aten.{name}.dim", i64(2, 3), 1)
    C(f"aten.{name}.dim", u8(2, 3), 0, True, note="uint8 stays uint8")
    C(f"aten.{name}.dim", f32(2, 3), -1)
    C(f"aten.{name}.dim", b(2, 3), 2)
    C(f"aten.{name}.default", f32(2, 3))
    C(f"aten.{name}.default", u8(3))
    C(f"aten.{name}.default", b())
C("aten.logsumexp.default", f32(2, 3), [1])
C("aten.logsumexp.default", i64(2, 3), [1], True, note="int input gives default float")
C("aten.logsumexp.default", f16(2, 3, 4), [0, 2])
C("aten.logsumexp.default", f32(2, 3), [2])
C("aten.linalg_vector_norm.default", f32(2, 3), 2, [1], True)
C("aten.linalg_vector_norm.default", f32(2, 3))
C("aten.linalg_vector_norm.default", f16(2, 3), 1, None, False, dtype=D("float32"))
C("aten.linalg_vector_norm.default", i64(2, 3), note="integer input")
C("aten.linalg_vector_norm.default", bf16(2, 3), 2.5, [-1])
for name in ["cumsum", "cumprod"]:
    C(f"aten.{name}.default", i32(2, 3), 0)
    C(f"aten.{name}.default", f16(2, 3), -1)
    C(f"aten.{name}.default", b(4), 0)
    C(f"aten.{name}.default", f32(2, 3), 1, dtype=D("float64"))
    C(f"aten.{name}.default", f32(2, 3), 2)
    C(f"aten.{name}.default", f32(), 0)

# Sorting and selection.
C("aten.topk.default", f32(3, 5), 2)
C("aten.topk.default", f32(3, 5), 2, 0, False)
C("aten.topk.default", i64(3, 5), 6, note="k larger than the dim")
C("aten.topk.default", f16(4), 0)
C("aten.topk.default", f32(), 1, note="0-dim input")
C("aten.sort.default", f32(3, 5))
C("aten.sort.default", i64(3, 5), 0, True)
C("aten.sort.default", b(4), -1)
C("aten.sort.default", f32(3), 1)
C("aten.argsort.default", f32(3, 5))
C("aten.argsort.default", i32(4, 2), 0, True)
C("aten.argsort.default", f32(3), 2)
C("aten.one_hot.default", i64(3, high=4), 5)
C("aten.one_hot.default", i64(2, 3, high=3), 3)
C("aten.one_hot.default", i64(3, high=4), unmodeled="num_classes=-1 takes the class count from the data")
C("aten.one_hot.default", f32(3), 3, note="one_hot of floats")
C("aten.one_hot.default", i32(3, high=3), 3, note="one_hot of int32")

# Matrix products.
C("aten.mm.default", f32(2, 3), f32(3, 4))
C("aten.mm.default", f32(2, 3), f32(4, 5), note="inner dim mismatch")
C("aten.mm.default", f32(2, 3), f64(3, 4), note="dtype mismatch")
C("aten.mm.default", f32(3), f32(3, 4), note="1-D operand")
C("aten.mm.default", i64(2, 3), i64(3, 4))
C("aten.bmm.default", f32(2, 3, 4), f32(2, 4, 5))
C("aten.bmm.default", f32(1, 3, 4), f32(2, 4, 5), note="bmm does not broadcast the batch")
C("aten.bmm.default", f16(2, 3, 4), f16(2, 5, 5))
C("aten.bmm.default", f32(3, 4), f32(4, 5))
C("aten.addmm.default", f32(4), f32(2, 3), f32(3, 4))
C("aten.addmm.default", f32(2, 1), f32(2, 3), f32(3, 4), beta=0.5, alpha=2)
C("aten.addmm.default", f32(3), f32(2, 3), f32(3, 4), note="bias does not broadcast")
C("aten.addmm.default", f32(4), f32(2, 3), f32(2, 4))
C("aten.addmm.default", f64(4), f32(2, 3), f32(3, 4), note="bias dtype differs")
C("aten.baddbmm.default", f32(2, 3, 5), f32(2, 3, 4), f32(2, 4, 5))
C("aten.baddbmm.default", f32(5), f32(2, 3, 4), f32(2, 4, 5), beta=0.0)
C("aten.baddbmm.default", f32(3, 1), f32(2, 3, 4), f32(2, 4, 5))
C("aten.baddbmm.default", f32(2, 3, 5), f32(2, 3, 4), f32(2, 3, 5))
C("aten.matmul.default", f32(3), f32(3), note="dot product")
C("aten.matmul.default", f32(3), f32(3, 4))
C("aten.matmul.default", f32(2, 3), f32(3))
C("aten.matmul.default", f32(2, 1, 3, 4), f32(5, 4, 6), note="batch broadcast")
C("aten.matmul.default", f32(2, 3), f32(4, 5))
C("aten.matmul.default", f32(2, 3, 4), f32(4))
C("aten.matmul.default", f32(4), f32(2, 4, 5))
C("aten.matmul.default", f32(2, 3), f16(3, 2), note="dtype mismatch")
C("aten.linear.default", f32(2, 3), f32(4, 3), f32(4))
C("aten.linear.default", f32(5, 2, 3), f32(4, 3))
C("aten.linear.default", f32(2, 3), f32(3), note="1-D weight")
C("aten.linear.default", f32(2, 3), f32(4, 5))
C("aten.linear.default", f32(2, 3), f32(4, 3), f32(5))
C("aten.linear.default", f32(3), f32(4, 3), f32(4))

# Convolution. (`torch.ops` rejects a bare int for `SymInt[N]`; exported graphs always carry lists.)
C("aten.conv1d.default", f32(1, 2, 8), f32(4, 2, 3), f32(4), [2], [1])
C("aten.conv1d.default", f32(2, 8), f32(4, 2, 3), note="unbatched")
C("aten.conv1d.default", f32(1, 4, 9), f32(6, 2, 3), None, [1], [0], [2], 2, note="dilation and groups")
C("aten.conv1d.default", f32(1, 3, 8), f32(4, 2, 3), note="channel mismatch")
C("aten.conv1d.default", f32(1, 2, 2), f32(4, 2, 3), note="kernel larger than input")
C("aten.conv2d.default", f32(1, 3, 8, 8), f32(6, 3, 3, 3), f32(6), [2, 2], [1, 1])
C("aten.conv2d.default", f32(1, 3, 8, 8), f32(6, 3, 3, 3), None, [2], [1], note="one-element lists for SymInt[2]")
C("aten.conv2d.default", f32(2, 4, 9, 7), f32(8, 2, 3, 3), None, [1, 2], [0, 1], [2, 1], 2, note="groups")
C("aten.conv2d.default", f32(3, 8, 8), f32(6, 3, 3, 3), note="unbatched")
C("aten.conv2d.default", f32(1, 4, 8, 8), f32(6, 3, 3, 3), note="channel mismatch")
C("aten.conv2d.default", f16(1, 3, 8, 8), f16(6, 3, 3, 3), stride=[3])
C("aten.conv3d.default", f32(1, 2, 6, 6, 6), f32(4, 2, 3, 3, 3), None, [2], [1])
C("aten.conv3d.default", f32(1, 2, 6, 6, 6), f32(4, 1, 1, 2, 2), None, [1], [0], [1], 2)
C("aten.conv3d.default", f32(2, 6, 6, 6), f32(4, 2, 3, 3, 3))
C("aten.conv3d.default", f32(1, 2, 6, 6), f32(4, 2, 3, 3, 3), note="rank mismatch")
C("aten.conv2d.padding", f32(1, 3, 8, 8), f32(6, 3, 3, 3), None, [1, 1], "same", [2, 2])
C("aten.conv2d.padding", f32(1, 3, 8, 8), f32(6, 3, 4, 4), padding="same", note="even kernel")
C("aten.conv2d.padding", f32(1, 3, 8, 8), f32(6, 3, 3, 3), padding="valid", stride=[2, 2])
C("aten.conv2d.padding", f32(1, 3, 8, 8), f32(6, 3, 3, 3), None, [2, 2], "same", note="same with stride")
C("aten.conv2d.padding", f32(1, 3, 8, 8), f32(6, 3, 3, 3), padding="full")
C("aten.convolution.default", f32(1, 3, 8, 8), f32(6, 3, 3, 3), f32(6), [2, 2], [1, 1], [1, 1], False, [0, 0], 1)
C("aten.convolution.default", f32(1, 4, 5, 5), f32(4, 2, 3, 3), None, [2, 2], [1, 1], [1, 1], True, [1, 1], 2,
  note="transposed with output_padding and groups")
C("aten.convolution.default", f32(1, 2, 8), f32(4, 2, 3), None, [1], [0], [1], False, [0], 1)
C("aten.convolution.default", f32(1, 3, 8, 8), f32(6, 3, 3, 3), None, [1], [0], [1], False, [0], 1,
  note="one-element lists for a 2-D kernel")
C("aten.convolution.default", f32(1, 3, 8, 8), f32(6, 2, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1)
C("aten.conv_transpose1d.default", f32(1, 4, 5), f32(4, 2, 3), None, [2], [1], [1])
C("aten.conv_transpose1d.default", f32(4, 5), f32(4, 2, 3), note="unbatched")
C("aten.conv_transpose1d.default", f32(1, 4, 5), f32(4, 3, 3), None, [1], [0], [0], 2, [2], note="groups, dilation")
C("aten.conv_transpose1d.default", f32(1, 3, 5), f32(4, 2, 3), note="channel mismatch")
C("aten.conv_transpose2d.input", f32(1, 4, 5, 5), f32(4, 2, 3, 3), f32(2), [2, 2], [1, 1], [1, 1])
C("aten.conv_transpose2d.input", f32(1, 4, 5, 6), f32(4, 2, 3, 3), None, [2, 1], [0, 1], [1, 0], 1, [1, 2])
C("aten.conv_transpose2d.input", f32(1, 4, 5, 5), f32(4, 2, 3, 3), None, [1], [0], [0], 2)
C("aten.conv_transpose2d.input", f32(1, 4, 5, 5), f32(4, 2, 3, 3), None, [2], [0], [2],
  note="output_padding must be smaller than stride or dilation")

# Normalisation.
C("aten.layer_norm.default", f32(2, 3, 4), [4], f32(4), f32(4))
C("aten.layer_norm.default", f16(2, 3, 4), [3, 4])
C("aten.layer_norm.default", f32(2, 3, 4), [5], note="normalized_shape mismatch")
C("aten.layer_norm.default", f32(2, 3, 4), [4], f32(3))
C("aten.layer_norm.default", f32(4), [2, 4])
C("aten.native_layer_norm.default", f32(2, 3, 4), [4], f32(4), f32(4), 1e-5)
C("aten.native_layer_norm.default", f32(2, 3, 4), [3, 4], None, None, 1e-5)
C("aten.native_layer_norm.default", f16(2, 4), [4], None, None, 1e-5, on="meta",
  note="accelerator kernels keep statistics in float32; the CPU kernel in the input dtype")
C("aten.native_layer_norm.default", f32(2, 4), [3], None, None, 1e-5)
C("aten.rms_norm.default", f32(2, 4), [4], f32(4))
C("aten.rms_norm.default", bf16(2, 3, 4), [3, 4], None, 1e-6)
C("aten.rms_norm.default", f32(2, 4), [3])
C("aten.rms_norm.default", f32(2, 4), [4], f32(2))
C("aten.group_norm.default", f32(2, 6, 4), 3)
C("aten.group_norm.default", f32(2, 6, 4, 4), 2, f32(6), f32(6))
C("aten.group_norm.default", f32(2, 6, 4), 4, note="channels not divisible")
C("aten.group_norm.default", f32(2, 6), 3)
C("aten.group_norm.default", f32(2, 6, 4), 3, f32(3))
C("aten.native_group_norm.default", f32(2, 6, 4, 4), f32(6), f32(6), 2, 6, 16, 3, 1e-5)
C("aten.native_group_norm.default", f32(3, 4, 5), None, None, 3, 4, 5, 2, 1e-5)
C("aten.native_group_norm.default", f16(3, 4, 5), None, None, 3, 4, 5, 2, 1e-5, on="meta")
C("aten.native_group_norm.default", f32(2, 6, 4), None, None, 2, 6, 4, 4, 1e-5, note="channels not divisible")
C("aten.batch_norm.default", f32(2, 3, 4, 4), f32(3), f32(3), f32(3), f32(3), False, 0.1, 1e-5, False)
C("aten.batch_norm.default", f32(2, 3), None, None, f32(3), f32(3), False, 0.1, 1e-5, False)
C("aten.batch_norm.default", f32(2, 3, 4), f32(4), None, f32(3), f32(3), False, 0.1, 1e-5, False,
  note="weight size mismatch")
C("aten.batch_norm.default", f32(3), None, None, f32(3), f32(3), False, 0.1, 1e-5, False)
C("aten._native_batch_norm_legit_no_training.default", f32(2, 3, 4, 4), f32(3), f32(3), f32(3), f32(3), 0.1, 1e-5)
# The saved statistics are device-dependent: empty on CPU (what a CPU export records, and what the
# registry gives), [C] on accelerators. Mixed f16/f32 parameters change their dtype on CPU only.
C("aten._native_batch_norm_legit_no_training.default", f16(2, 3, 4), None, None, f16(3), f16(3), 0.1, 1e-5)
C("aten._native_batch_norm_legit_no_training.default", f32(2, 3, 4), None, None, f32(4), f32(4), 0.1, 1e-5, on="meta",
  note="running stats of the wrong size: the CPU kernel does not check")
C("aten.instance_norm.default", f32(2, 3, 4), None, None, None, None, True, 0.1, 1e-5, False)
C("aten.instance_norm.default", f32(2, 3, 4, 4), f32(3), f32(3), f32(3), f32(3), False, 0.1, 1e-5, False)
C("aten.instance_norm.default", f32(2, 3, 4), f32(5), None, None, None, True, 0.1, 1e-5, False)

# Softmax.
for name in ["softmax", "log_softmax"]:
    C(f"aten.{name}.int", f32(2, 3), -1)
    C(f"aten.{name}.int", f16(2, 3), 0, D("float32"))
    C(f"aten.{name}.int", i64(2, 3), 1, note="integer input without dtype")
    C(f"aten.{name}.int", i64(2, 3), 1, D("float64"))
    C(f"aten.{name}.int", f32(2, 3), 2)
    C(f"aten._{name}.default", f32(2, 3), -1, False)
    C(f"aten._{name}.default", f16(2, 3), -1, True, on="meta",
      note="half_to_float: the CPU kernel refuses it, accelerators return float32")
    C(f"aten._{name}.default", bf16(2, 3), 0, False)
    C(f"aten._{name}.default", i64(2, 3), 0, False)
    C(f"aten._{name}.default", f32(2, 3), 3, False)

# Embedding and attention.
C("aten.embedding.default", f32(10, 4), i64(2, 3, high=10))
C("aten.embedding.default", f16(10, 4), i32(5, high=10), 0)
C("aten.embedding.default", f32(10, 4), f32(3), note="float indices")
C("aten.embedding.default", f32(10), i64(3, high=10), note="1-D weight")
C("aten.embedding.default", f32(10, 4), i64(high=10), note="0-dim indices")
SDPA = "aten.scaled_dot_product_attention.default"
C(SDPA, f32(2, 4, 5, 8), f32(2, 4, 6, 8), f32(2, 4, 6, 16))
C(SDPA, f32(2, 4, 5, 8), f32(2, 4, 5, 8), f32(2, 4, 5, 8), b(5, 5), note="bool mask")
C(SDPA, f32(2, 4, 5, 8), f32(2, 4, 5, 8), f32(2, 4, 5, 8), is_causal=True, scale=0.5)
C(SDPA, f32(1, 8, 5, 8), f32(1, 2, 6, 8), f32(1, 2, 6, 8), enable_gqa=True, note="grouped-query attention")
C(SDPA, f32(1, 8, 5, 8), f32(1, 2, 6, 8), f32(1, 2, 6, 8), note="GQA shapes without enable_gqa")
C(SDPA, f32(1, 8, 5, 8), f32(1, 3, 6, 8), f32(1, 3, 6, 8), enable_gqa=True, note="heads not divisible")
C(SDPA, f32(2, 4, 5, 8), f32(2, 4, 6, 4), f32(2, 4, 6, 8), note="head dim mismatch")
C(SDPA, f16(2, 5, 8), f32(2, 6, 8), f32(2, 6, 8), note="dtype mismatch")
C(SDPA, f32(3, 5, 8), f32(3, 6, 8), f32(3, 6, 8), f32(1, 5, 6), note="3-D inputs, float mask")
C(SDPA, f32(2, 4, 5, 8), f32(2, 4, 6, 8), f32(2, 4, 7, 8), on="meta",
  note="key/value length mismatch: the CPU kernel does not check")
C(SDPA, f32(4, 5, 8), f32(2, 4, 6, 8), f32(2, 4, 6, 8), note="batch dims broadcast")
C(SDPA, f32(2, 4, 5, 8), f32(1, 4, 6, 8), f32(1, 4, 6, 8), f32(2, 4, 6, 5), note="mask of the wrong length")
C(SDPA, f32(2, 4, 5, 8), f32(2, 4, 6, 8), f32(2, 4, 6, 8), b(4, 6), note="mask does not broadcast")

# Pooling and resampling.
C("aten.max_pool1d.default", f32(2, 3, 9), [3], [2])
C("aten.max_pool1d.default", f32(3, 10), [3], [], [1], [2], True, note="unbatched, ceil_mode, dilation")
C("aten.max_pool1d.default", f32(2, 3, 9), 3)
C("aten.max_pool1d.default", f32(2, 3, 9), [3], [1], [2], note="padding more than half the kernel")
C("aten.max_pool2d.default", f32(1, 3, 8, 8), [2, 2])
C("aten.max_pool2d.default", f32(1, 3, 7, 7), [3, 3], [2, 2], [1, 1], [1, 1], True, note="ceil_mode")
C("aten.max_pool2d.default", f32(1, 3, 6, 6), 3, 2, 1, 1, True, note="int[2] as one int, ceil_mode")
C("aten.max_pool2d.default", f32(3, 9, 7), [3, 2], [2, 1], [0, 1], [2, 1])
C("aten.max_pool2d.default", f32(1, 3, 2, 2), [3, 3], note="kernel larger than input")
C("aten.max_pool2d.default", f32(1, 3, 5, 5), [2, 2], [2, 2], [0, 0], [1, 1], True,
  note="ceil_mode window starting in the padding is dropped")
C("aten.max_pool3d.default", f32(1, 2, 6, 6, 6), [2], [2])
C("aten.max_pool3d.default", f32(2, 5, 5, 5), [3, 3, 3], [2, 2, 2], [1, 1, 1], [1, 1, 1], True)
C("aten.max_pool3d.default", f32(1, 2, 6, 6), [2, 2, 2])
C("aten.max_pool2d_with_indices.default", f32(1, 3, 8, 8), [2, 2])
C("aten.max_pool2d_with_indices.default", f32(1, 3, 7, 7), [3, 3], [2, 2], [1, 1], [1, 1], True)
C("aten.max_pool2d_with_indices.default", f32(1, 3, 7, 7), [3, 3], [2, 2], [2, 2])
C("aten.avg_pool1d.default", f32(2, 3, 9), [3], [2])
C("aten.avg_pool1d.default", f32(2, 3, 9), [3], [2], [1], True, False)
C("aten.avg_pool1d.default", f32(3, 9), 4)
C("aten.avg_pool1d.default", f32(2, 3, 9), [2], [2], [2])
C("aten.avg_pool2d.default", f32(1, 3, 8, 8), [2, 2])
C("aten.avg_pool2d.default", f32(1, 3, 7, 7), [3, 3], [2, 2], [1, 1], True, False, 2)
C("aten.avg_pool2d.default", f32(1, 3, 5, 5), [2, 2], [2, 2], [1, 1], True, note="ceil_mode with padding")
C("aten.avg_pool2d.default", f32(1, 3, 8, 8), [3, 3], [2, 2], [2, 2], note="padding more than half")
C("aten.avg_pool2d.default", i64(1, 3, 8, 8), [2, 2])
C("aten.avg_pool3d.default", f32(1, 2, 6, 6, 6), [2, 2, 2])
C("aten.avg_pool3d.default", f32(2, 5, 5, 5), 3, 2, 1, True)
C("aten.avg_pool3d.default", f32(1, 2, 2, 2, 2), [3, 3, 3])
C("aten.adaptive_avg_pool1d.default", f32(2, 3, 8), [4])
C("aten.adaptive_avg_pool1d.default", f32(3, 8), [5])
C("aten.adaptive_avg_pool1d.default", f32(8), [4])
for name in ["adaptive_avg_pool2d", "_adaptive_avg_pool2d"]:
    C(f"aten.{name}.default", f32(1, 3, 8, 8), [2, 2])
    C(f"aten.{name}.default", f32(3, 7, 7), [1, 1])
    C(f"aten.{name}.default", f32(1, 3, 8, 8), [3], note="one size for both dims")
    C(f"aten.{name}.default", f32(8, 8), [2, 2])
C("aten.adaptive_max_pool2d.default", f32(1, 3, 8, 8), [2, 2])
C("aten.adaptive_max_pool2d.default", f32(3, 8, 8), [3, 5])
C("aten.adaptive_max_pool2d.default", f32(8, 8), [2, 2])
C("aten.upsample_nearest2d.vec", f32(1, 3, 4, 4), [8, 8], None)
C("aten.upsample_nearest2d.vec", f32(1, 3, 4, 5), None, [2.0, 1.5])
C("aten.upsample_nearest2d.vec", f32(1, 3, 4, 4), None, None)
C("aten.upsample_nearest2d.vec", f32(1, 3, 4), [8, 8], None)
C("aten.upsample_nearest2d.vec", f32(1, 3, 4, 4), [8, 8, 8], None)
C("aten.upsample_bilinear2d.vec", f32(1, 3, 4, 4), None, False, [1.5, 1.5])
C("aten.upsample_bilinear2d.vec", f32(2, 3, 4, 4), [6, 3], True, None)
C("aten.upsample_bilinear2d.vec", f32(1, 3, 5, 5), None, False, [0.5, 0.3])
C("aten.upsample_bilinear2d.vec", f32(1, 3, 4, 4), [2, 2], False, [1.5, 1.5], note="both size and scales")
C("aten.glu.default", f32(2, 6))
C("aten.glu.default", f32(2, 6, 4), 1)
C("aten.glu.default", f32(2, 5), note="odd dim")
C("aten.glu.default", f32(), note="0-dim")
C("aten.pixel_shuffle.default", f32(1, 8, 2, 2), 2)
C("aten.pixel_shuffle.default", f32(9, 2, 3), 3)
C("aten.pixel_shuffle.default", f32(1, 6, 2, 2), 2)
C("aten.pixel_shuffle.default", f32(2, 2, 1, 18, 2, 2), 3)

# Identity and copies.
for name in ["alias", "detach", "detach_", "lift_fresh_copy"]:
    C(f"aten.{name}.default", f32(2, 3))
    C(f"aten.{name}.default", i64())
C("aten.clone.default", f32(2, 3))
C("aten.clone.default", f16(1, 3, 4, 4), memory_format=Tag("memory_format", "channels_last"))
C("aten.contiguous.default", f32(2, 3))
C("aten.contiguous.default", b(2), memory_format=Tag("memory_format", "contiguous_format"))
C("aten.dropout.default", f32(2, 3), 0.5, False)
C("aten.dropout.default", f16(4), 0.0, True)
C("aten.feature_dropout.default", f32(2, 3, 4), 0.5, False)
C("aten.feature_dropout.default", f32(2, 3, 4), 0.1, True)

# Views and reshapes.
for name in ["view", "reshape", "_unsafe_view"]:
    C(f"aten.{name}.default", f32(2, 3, 4), [6, -1], note="-1 inferred")
    C(f"aten.{name}.default", f32(2, 3, 4), [-1])
    C(f"aten.{name}.default", f32(2, 3, 4), [5, 5], note="bad numel")
    C(f"aten.{name}.default", f32(2, 3, 4), [-1, -1], note="two -1")
    C(f"aten.{name}.default", f32(0, 4), [-1, 2], note="-1 with zero elements")
    C(f"aten.{name}.default", f32(0, 4), [0, -1], note="-1 next to a zero dim")
    C(f"aten.{name}.default", f32(), [1, 1])
    C(f"aten.{name}.default", f32(2, 3), [7, -1], note="-1 not divisible")
for name in ["view_as", "reshape_as"]:
    C(f"aten.{name}.default", f32(2, 3, 4), i64(6, 4))
    C(f"aten.{name}.default", f32(2, 3), f16(3, 2))
    C(f"aten.{name}.default", f32(2, 3), f32(5))
C("aten.expand.default", f32(3, 1), [2, 3, 4])
C("aten.expand.default", f32(3, 1), [-1, 5])
C("aten.expand.default", f32(3, 1), [3, 2, 4], note="non-singleton dim changes")
C("aten.expand.default", f32(3, 1), [4])
C("aten.expand.default", f32(3, 1), [-1, 3, 1], note="-1 in a new leading dim")
C("aten.expand.default", f32(), [2, 2])
C("aten.expand_as.default", f32(3, 1), f16(2, 3, 4))
C("aten.expand_as.default", f32(3, 2), f32(3, 4))
C("aten.expand_as.default", f32(1), f32())
C("aten.permute.default", f32(2, 3, 4), [2, 0, 1])
C("aten.permute.default", f32(2, 3, 4), [-1, 0, 1], note="negative dims")
C("aten.permute.default", f32(2, 3, 4), [0, 1], note="too few dims")
C("aten.permute.default", f32(2, 3, 4), [0, 0, 1], note="repeated dim")
C("aten.permute.default", f32(), [])
C("aten.transpose.int", f32(2, 3, 4), 0, -1)
C("aten.transpose.int", f32(2, 3), 1, 1)
C("aten.transpose.int", f32(), 0, -1, note="0-dim")
C("aten.transpose.int", f32(2, 3), 0, 2)
C("aten.t.default", f32(2, 3))
C("aten.t.default", f32(3))
C("aten.t.default", f32())
C("aten.t.default", f32(2, 3, 4))
C("aten.unsqueeze.default", f32(2, 3), -1)
C("aten.unsqueeze.default", f32(2, 3), 2)
C("aten.unsqueeze.default", f32(2, 3), 0)
C("aten.unsqueeze.default", f32(2, 3), 3)
C("aten.unsqueeze.default", f32(), 0)
C("aten.unsqueeze.default", f32(2, 3), -3)
C("aten.squeeze.default", f32(1, 3, 1))
C("aten.squeeze.default", f32(2, 3))
C("aten.squeeze.default", f32())
C("aten.squeeze.dim", f32(1, 3, 1), 0)
C("aten.squeeze.dim", f32(1, 3, 1), 1, note="non-1 dim is kept")
C("aten.squeeze.dim", f32(1, 3, 1), -1)
C("aten.squeeze.dim", f32(1, 3, 1), 3)
C("aten.squeeze.dim", f32(), 0)
C("aten.squeeze.dims", f32(1, 3, 1), [0, 2])
C("aten.squeeze.dims", f32(1, 3, 1), [-1, 1])
C("aten.squeeze.dims", f32(1, 3, 1), [5])
C("aten.squeeze.dims", f32(), [0])
C("aten.flatten.using_ints", f32(2, 3, 4, 5), 1, 2)
C("aten.flatten.using_ints", f32(2, 3, 4, 5))
C("aten.flatten.using_ints", f32(), note="0-dim becomes 1-D")
C("aten.flatten.using_ints", f32(2, 3, 4), 2, 1)
C("aten.flatten.using_ints", f32(2, 3, 4), -2, -1)
C("aten.flatten.using_ints", f32(2, 3), 0, 5)
C("aten.unflatten.int", f32(2, 12), 1, [3, -1])
C("aten.unflatten.int", f32(2, 12), -1, [2, 2, 3])
C("aten.unflatten.int", f32(2, 12), 1, [5, -1])
C("aten.unflatten.int", f32(2, 12), 1, [5, 2])
C("aten.unflatten.int", f32(6), 0, [2, 3])
C("aten.slice.Tensor", f32(4, 10), 1, 2, INT64_MAX, note="INT64_MAX end")
C("aten.slice.Tensor", f32(4, 10), 1, -3, note="negative start")
C("aten.slice.Tensor", f32(4, 10), -1, 1, 9, 3, note="step 3")
C("aten.slice.Tensor", f32(4, 10), 0, 3, 1, note="start after end")
C("aten.slice.Tensor", f32(4, 10), 1, -20, 20, note="clamped bounds")
C("aten.slice.Tensor", f32(4, 10), 0, None, None, 0, note="step 0")
C("aten.slice.Tensor", f32(4, 10), 0, None, -1)
C("aten.slice.Tensor", f32(4, 10), 2)
C("aten.slice.Tensor", f32(4, 10), 1, 12, 15, note="start past the end")
C("aten.narrow.default", f32(4, 10), 0, 1, 2)
C("aten.narrow.default", f32(4, 10), -1, -3, 3, note="negative start")
C("aten.narrow.default", f32(4, 10), 1, 8, 5, note="past the end")
C("aten.narrow.default", f32(4, 10), 1, 2, -1, note="negative length")
C("aten.narrow.default", f32(4, 10), 2, 0, 1)
C("aten.select.int", f32(4, 10), 1, -1)
C("aten.select.int", f32(4, 10), 0, 3)
C("aten.select.int", f32(4, 10), 0, 4, note="index out of range")
C("aten.select.int", f32(4, 10), 1, -11)
C("aten.select.int", f32(4), 0, 2)
C("aten.split.Tensor", f32(5, 2), 2, note="uneven split")
C("aten.split.Tensor", f32(2, 6), 3, -1)
C("aten.split.Tensor", f32(2, 6), 10, 1, note="split size larger than the dim")
C("aten.split.Tensor", f32(0, 2), 2, note="splitting an empty dim")
C("aten.split.Tensor", f32(4, 2), 0, note="split size 0")
C("aten.split.Tensor", f32(4, 2), -1)
C("aten.split_with_sizes.default", f32(5, 2), [2, 3])
C("aten.split_with_sizes.default", f32(2, 6), [1, 0, 5], -1)
C("aten.split_with_sizes.default", f32(5, 2), [2, 2], note="sizes do not sum to the dim")
C("aten.split_with_sizes.default", f32(5, 2), [6, -1])
C("aten.chunk.default", f32(5), 3, note="uneven chunks")
C("aten.chunk.default", f32(6, 2), 4, note="fewer chunks than asked")
C("aten.chunk.default", f32(2, 7), 7, -1)
C("aten.chunk.default", f32(0, 3), 2)
C("aten.chunk.default", f32(4), 0)
C("aten.chunk.default", f32(2, 3), 5, 1)
C("aten.unbind.int", f32(3, 2))
C("aten.unbind.int", f32(3, 2), -1)
C("aten.unbind.int", f32(0, 2))
C("aten.unbind.int", f32(), 0)

# Joining and copying.
C("aten.cat.default", [f32(2, 3), f32(4, 3)])
C("aten.cat.default", [f32(2, 3), i64(2, 1)], -1, note="promotes")
C("aten.cat.default", [f64(0), i64(2, 3)], 1, note="1-D empty tensor is skipped but promotes")
C("aten.cat.default", [f32(2, 3), f32(2, 4)], note="size mismatch off the cat dim")
C("aten.cat.default", [], note="empty list")
C("aten.cat.default", [f32(2, 3), f32(3)], note="rank mismatch")
C("aten.cat.default", [f32(0), f32(0)], note="only empty tensors")
C("aten.cat.default", [f32(2, 3)], 2)
C("aten.cat.default", [f32(), f32()], note="0-dim")
C("aten.stack.default", [f32(2, 3), f32(2, 3)], 1)
C("aten.stack.default", [f32(2, 3), i64(2, 3), f16(2, 3)], -1)
C("aten.stack.default", [f32(2, 3), f32(3, 2)], note="shape mismatch")
C("aten.stack.default", [], note="empty list")
C("aten.stack.default", [f32(), f32()])
C("aten.stack.default", [f32(2)], 2)
C("aten.repeat.default", f32(2, 3), [2, 1, 2])
C("aten.repeat.default", f32(2, 3), [2])
C("aten.repeat.default", f32(), [3])
C("aten.repeat.default", f32(2), [0, 2])
C("aten.repeat.default", f32(2), [-1])
C("aten.repeat_interleave.self_int", f32(2, 3), 2)
C("aten.repeat_interleave.self_int", f32(2, 3), 2, 1)
C("aten.repeat_interleave.self_int", f32(2, 3), 3, -2, output_size=6)
C("aten.repeat_interleave.self_int", f32(2, 3), 2, 2)
C("aten.repeat_interleave.self_int", f32(2, 3), -1)
C("aten.flip.default", f32(2, 3), [0])
C("aten.flip.default", f32(2, 3), [-1, 0])
C("aten.flip.default", f32(2, 3), [2])
C("aten.flip.default", f32(2, 3), [0, 0])
C("aten.roll.default", f32(2, 3), [1], [0])
C("aten.roll.default", f32(2, 3), [2], note="no dims: flattened roll")
C("aten.roll.default", f32(2, 3), [1, 2], [0, 1])
C("aten.roll.default", f32(2, 3), [1, 2], [0])
C("aten.roll.default", f32(2, 3), [1], [2])
C("aten.constant_pad_nd.default", f32(2, 3), [1, 2])
C("aten.constant_pad_nd.default", f32(2, 3), [-1, 0, 1, 1], 1.5, note="negative padding crops")
C("aten.constant_pad_nd.default", f32(2, 3), [1, 2, 3], note="odd pad length")
C("aten.constant_pad_nd.default", f32(2, 3), [1, 1, 1, 1, 1, 1], note="more pads than dims")
C("aten.constant_pad_nd.default", f32(2, 3), [-2, -2], note="cropped to a negative size")
C("aten.constant_pad_nd.default", i64(2, 3), [1, 1], 2.5)
C("aten.pad.default", f32(1, 2, 3), [1, 1], "reflect")
C("aten.pad.default", f32(1, 2, 3), [1, 2], "constant", 0.5)
C("aten.pad.default", f32(1, 2, 3, 4), [1, 1, 2, 2], "replicate")
C("aten.pad.default", f32(1, 2, 3), [3, 3], "reflect", note="reflect pad as large as the dim")
C("aten.pad.default", f32(1, 2, 3), [1, 1], "circular")
C("aten.pad.default", f32(1, 2, 3), [1, 1], "bogus")
C("aten.pad.default", f32(1, 2, 3), [1, 1], "reflect", 1.0, note="value with a non-constant mode")
C("aten.pad.default", f32(1, 2, 3), [2, 2], "reflect", note="reflect pad just under the dim")
C("aten.pad.default", f32(1, 2, 3), [3, 3], "circular", note="circular pad up to the dim")
C("aten.pad.default", f32(1, 2, 3), [4, 0], "circular", note="circular pad past the dim")
for name in ["tril", "triu"]:
    C(f"aten.{name}.default", f32(3, 4), 1)
    C(f"aten.{name}.default", i64(2, 3, 4))
    C(f"aten.{name}.default", f32(3), note="1-D input")
    C(f"aten.{name}.default", b(3, 3), -1)
C("aten.diff.default", f32(5))
C("aten.diff.default", f32(5, 3), 2, 0, f32(2, 3))
C("aten.diff.default", b(4), note="bool diff is xor")
C("aten.diff.default", i64(2, 3), 1, -1, None, i32(2, 2))
C("aten.diff.default", f32(3), 5, note="n larger than the dim")
C("aten.diff.default", f32(), note="0-dim")
C("aten.diff.default", f32(5, 3), 1, 0, f32(3), note="prepend rank mismatch")
C("aten.diff.default", f32(5), 1, 0, i64(2), note="prepend dtype")

# Indexing and scattering.
IDX = "aten.index.Tensor"
C(IDX, f32(5, 6, 7), [i64(2, high=5)])
C(IDX, f32(5, 6, 7), [None, i64(2, 3, high=6)], note="None hole before the index")
C(IDX, f32(5, 6, 7), [i64(2, high=5), None, i64(2, high=7)], note="non-adjacent indices go first")
C(IDX, f32(5, 6, 7), [None, i64(2, high=6), i64(2, high=7)], note="adjacent indices stay in place")
C(IDX, f32(5, 6, 7), [i64(2, 1, high=5), i64(3, high=6)], note="index shapes broadcast")
C(IDX, f32(5, 6, 7), [i64(2, high=5), i64(3, high=6)], note="index shapes do not broadcast")
C(IDX, f32(5, 6), [b(5)], unmodeled="boolean mask: output length depends on the data")
C(IDX, f32(5, 6), [i64(2, high=5), i64(2, high=6), i64(2, high=1)], note="too many indices")
C(IDX, f32(5, 6), [f32(2)], note="float index")
C(IDX, f32(5, 6), [i32(2, high=5)])
C(IDX, f32(5, 6), [i64(high=5)], note="0-dim index")
C("aten.index_select.default", f32(5, 4), 0, i64(3, high=5))
C("aten.index_select.default", f32(5, 4), -1, i32(6, high=4))
C("aten.index_select.default", f32(5, 4), 0, i64(high=5), note="0-dim index")
C("aten.index_select.default", f32(5, 4), 0, i64(2, 2, high=5), note="2-D index")
C("aten.index_select.default", f32(5, 4), 0, f32(3))
C("aten.index_select.default", f32(5), 0, i64(3, high=5))
C("aten.index_select.default", f32(5, 4), 2, i64(3, high=4))
C("aten.gather.default", f32(3, 4), 1, i64(3, 2, high=4))
C("aten.gather.default", f32(3, 4), 0, i64(2, 4, high=3))
C("aten.gather.default", f32(3, 4), 1, i64(3, high=4), note="rank mismatch")
C("aten.gather.default", f32(3, 4), 1, i32(3, 2, high=4), note="int32 index")
C("aten.gather.default", f32(3, 4), 1, i64(4, 2, high=4), note="index larger than self off the dim")
C("aten.scatter.src", f32(3, 4), 1, i64(3, 2, high=4), f32(3, 2))
C("aten.scatter.src", f32(3, 4), 1, i64(3, 2, high=4), f16(3, 2), note="src dtype differs")
C("aten.scatter.src", f32(3, 4), 0, i64(2, 4, high=3), f32(3, 5))
C("aten.scatter.src", f32(3, 4), 1, i64(3, high=4), f32(3))
C("aten.scatter.value", f32(3, 4), 1, i64(3, 2, high=4), 1.5)
C("aten.scatter.value", i64(3, 4), 0, i64(2, 4, high=3), 2)
C("aten.scatter.value", f32(3, 4), 2, i64(3, 2, high=4), 1.0)
for name in ["index_copy", "index_copy_"]:
    C(f"aten.{name}.default", f32(5, 3), 0, i64(2, high=5), f32(2, 3))
    C(f"aten.{name}.default", f32(5, 3), -1, i64(2, high=3), f32(5, 2))
    C(f"aten.{name}.default", f32(5, 3), 0, i64(2, high=5), f16(2, 3), note="source dtype differs")
    C(f"aten.{name}.default", f32(5, 3), 0, i64(2, high=5), f32(3, 3), note="source size mismatch")
    C(f"aten.{name}.default", f32(5, 3), 0, i32(2, high=5), f32(2, 3), note="int32 index")
for name in ["index_put", "index_put_"]:
    C(f"aten.{name}.default", f32(5, 3), [i64(2, high=5)], f32(2, 3))
    C(f"aten.{name}.default", f32(5, 3), [i64(2, high=5)], f32(3), note="values broadcast")
    C(f"aten.{name}.default", f32(5, 3), [None, i64(2, high=3)], f32(5, 2), True)
    C(f"aten.{name}.default", f32(5, 3), [i64(2, high=5)], f16(2, 3), note="values dtype differs")
    C(f"aten.{name}.default", f32(5, 3), [i64(2, high=5)], f32(4, 3), note="values do not broadcast")
    C(f"aten.{name}.default", f32(5, 3), [b(5)], f32(), note="boolean mask with a scalar value")
C("aten.slice_scatter.default", f32(4, 6), f32(4, 3), 1, 0, 6, 2)
C("aten.slice_scatter.default", f32(4, 6), f32(2, 6), 0, 2)
C("aten.slice_scatter.default", f32(4, 6), f32(4, 2), 1, -2, INT64_MAX)
C("aten.slice_scatter.default", f32(4, 6), f32(4, 3), 1, 0, 2, note="src size mismatch")
C("aten.slice_scatter.default", f32(4, 6), f16(2, 6), 0, 2, note="src dtype differs")
C("aten.select_scatter.default", f32(4, 6), f32(6), 0, 1)
C("aten.select_scatter.default", f32(4, 6), f32(4), -1, -1)
C("aten.select_scatter.default", f32(4, 6), f32(4), 0, 1, note="src shape mismatch")
C("aten.select_scatter.default", f32(4, 6), i64(6), 0, 1, note="src dtype differs")
C("aten.copy_.default", f32(2, 3), i64(3), note="src broadcasts and converts")
C("aten.copy_.default", f16(2, 3), f32(2, 3))
C("aten.copy_.default", f32(2, 3), f32(4), note="src does not broadcast")
C("aten.copy_.default", f32(3), f32(2, 3), note="src larger than self")


# Edge cases of the checks above.
C("aten.add.Tensor", b(2), b(2), alpha=True, note="bool alpha with bool tensors")
C("aten.add.Tensor", f32(2), f32(2), alpha=True, note="bool alpha with float tensors")
C("aten.sub.Scalar", i64(2), True, note="int tensor - bool scalar")
C("aten.add_.Tensor", b(2), i64(2), note="in-place int result into bool self")
C("aten.add_.Tensor", f16(2, 3), f32(), note="in-place with a 0-dim f32")
C("aten.mul_.Tensor", i32(2, 3), i64(2, 3), note="in-place int64 result cast to int32")
C("aten.roll.default", f32(2, 3), [1, 2], note="several shifts without dims")
C("aten.scatter.src", f32(3, 4), 1, i64(3, 2, high=2), f32(3, 1), note="index larger than src")
C("aten.gather.default", f32(3, 4), 1, i64(3, 6, high=4), note="index larger than self along dim is fine")
C("aten.conv_transpose2d.input", f32(1, 4, 5, 5), f32(4, 2, 3, 3), None, [1, 1], [0, 0], [1, 1], 1, [2, 2],
  note="output_padding below the dilation")
C("aten.prelu.default", f32(4), f32(3), note="1-D input has one channel")
C("aten.prelu.default", f32(2, 3), f32(), note="0-dim weight")
C("aten._assert_tensor_metadata.default", f32(2, 3), [2, 3, 1], note="rank differs")
C("aten.diff.default", f32(5), 0, note="n = 0")
C("aten.mean.dim", f32(2, 3), [0, 0], note="repeated dim")
C("aten.softmax.int", b(2, 3), 1, note="bool input")
C(SDPA, f32(1, 8, 5, 8), f32(1, 2, 6, 8), f32(1, 2, 6, 8), b(1, 1, 5, 6), enable_gqa=True, note="GQA with a mask")
C(SDPA, f32(5, 8), f32(6, 8), f32(6, 4), note="2-D inputs")
C("aten.masked_fill.Scalar", f32(2, 1), b(2, 3), 1, note="self broadcast to the mask")
C("aten.index.Tensor", f32(5, 6, 7), [None, None, i64(4, high=7)], note="index on the last dim")
C("aten.index.Tensor", f32(5, 6, 7), [], note="no indices")
C("aten.index_put.default", f32(5, 6, 7), [i64(2, high=5), None, i64(2, high=7)], f32(2, 6),
  note="non-adjacent indices move the indexed dims first")
C("aten.cumsum.default", b(2, 3), 1, dtype=D("bool"))
C("aten.split.Tensor", f32(4, 2), 0, 1, note="split size 0 on a non-empty dim")
C("aten.chunk.default", f32(), 2, note="0-dim")
C("aten.select.int", f32(), 0, 0, note="0-dim")
C("aten.slice.Tensor", f32(), 0, 0, 1, note="0-dim")
C("aten.unflatten.int", f32(), 0, [1], note="0-dim")
C("aten.narrow.default", f32(), 0, 0, 1, note="0-dim")
C("aten.repeat_interleave.self_int", f32(), 2, 0, note="0-dim with a dim")


def main():
    torch.manual_seed(0)
    cases, schemas = [], {}
    for seed, case in enumerate(CASES):
        op = case["op"]
        if op not in schemas:
            schemas[op] = str(torch_op(op)._schema)
        out = {"op": op, "args": enc(case["args"]), "kwargs": {k: enc(v) for k, v in case["kwargs"].items()}}
        for key in ("note", "unmodeled"):
            if case[key]:
                out[key] = case[key]
        if case["device"] != "cpu":
            out["device"] = case["device"]
        out["expect"] = run(case, seed)
        cases.append(out)
    lines = ["{", f'  "torch_version": {json.dumps(torch.__version__)},', '  "schemas": {']
    items = sorted(schemas.items())
    for i, (k, v) in enumerate(items):
        lines.append(f"    {json.dumps(k)}: {json.dumps(v)}" + ("," if i + 1 < len(items) else ""))
    lines.append("  },")
    lines.append('  "cases": [')
    for i, c in enumerate(cases):
        lines.append("    " + json.dumps(c, sort_keys=True) + ("," if i + 1 < len(cases) else ""))
    lines.append("  ]")
    lines.append("}")
    with open(OUT, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(cases)} cases for {len(schemas)} ops -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
