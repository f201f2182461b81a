"""Generate small single-op ONNX models with reference outputs, for the ONNX reader's lowering.

Each case is one node (or a few) with attributes chosen to hit the tricky parts of ONNX semantics
(asymmetric and SAME padding, ceil mode, negative slice steps, negative gather indices, legacy
opset attributes, ...). Reference outputs come from onnxruntime (onnx.reference where ORT lacks
the op). The layout matches the onnx package's test data, so `onnx_numeric_check.py` checks them:

  <out>/<case>/model.onnx
  <out>/<case>/test_data_set_0/{input,output}_<i>.pb

Usage: .venv/bin/python testsuite/scripts/onnx_cases.py /tmp/genie_onnx_cases
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
NP2ONNX = {np.float32: TensorProto.FLOAT, np.int64: TensorProto.INT64, np.int32: TensorProto.INT32,
           np.bool_: TensorProto.BOOL, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE,
           np.uint8: TensorProto.UINT8, np.int8: TensorProto.INT8}


def f(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*v):
    return np.array(v, dtype=np.int64)


def case(name, op, inputs, attrs=None, opset=18, n_out=1, consts=None, extra_nodes=None, out_names=None):
    """inputs: list of (name, array) fed at run time; consts: (name, array) initializers."""
    consts = consts or []
    node_inputs = [n for n, _ in inputs] + [n for n, _ in consts]
    if op is not None and isinstance(op, tuple):
        op, node_inputs = op
    outs = out_names or [f"y{k}" for k in range(n_out)]
    nodes = [helper.make_node(op, node_inputs, outs, **(attrs or {}))] + (extra_nodes or [])
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, NP2ONNX[a.dtype.type], a.shape) for n, a in inputs],
        [helper.make_value_info(o, onnx.TypeProto()) for o in outs],
        [numpy_helper.from_array(a, n) for n, a in consts])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset <= 18 else 10
    m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    return name, m, {n: a for n, a in inputs}


def cases():
    x4 = f(1, 2, 7, 8)
    w = f(3, 2, 3, 3)
    b = f(3)
    yield case("conv_asym_pads", "Conv", [("x", x4)], {"pads": [0, 1, 2, 0], "strides": [2, 1]}, consts=[("w", w), ("b", b)])
    yield case("conv_same_upper", "Conv", [("x", x4)], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, consts=[("w", w)])
    yield case("conv_same_lower", "Conv", [("x", x4)], {"auto_pad": "SAME_LOWER", "strides": [2, 2], "dilations": [1, 2]}, consts=[("w", w), ("b", b)])
    yield case("conv_valid_group", "Conv", [("x", f(1, 4, 6, 6))], {"auto_pad": "VALID", "group": 2}, consts=[("w", f(6, 2, 3, 3))])
    yield case("conv1d", "Conv", [("x", f(2, 3, 10))], {"pads": [1, 2], "strides": [3]}, consts=[("w", f(4, 3, 4))])
    yield case("convT_basic", "ConvTranspose", [("x", f(1, 3, 4, 5))], {"strides": [2, 2], "pads": [1, 1, 1, 1]}, consts=[("w", f(3, 2, 3, 3)), ("b", f(2))])
    yield case("convT_asym", "ConvTranspose", [("x", f(1, 3, 4, 5))], {"strides": [2, 3], "pads": [0, 1, 2, 0], "output_padding": [1, 0]}, consts=[("w", f(3, 2, 3, 3)), ("b", f(2))])
    yield case("convT_output_shape", "ConvTranspose", [("x", f(1, 3, 4, 5))], {"strides": [2, 2], "output_shape": [9, 11]}, consts=[("w", f(3, 2, 3, 3))])
    yield case("convT_same_upper", "ConvTranspose", [("x", f(1, 3, 4, 5))], {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, consts=[("w", f(3, 4, 3, 3)), ("b", f(4))])
    yield case("convT_group_dil", "ConvTranspose", [("x", f(1, 4, 4, 5))], {"group": 2, "dilations": [2, 1]}, consts=[("w", f(4, 3, 3, 2))])
    yield case("maxpool_ceil", "MaxPool", [("x", x4)], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1})
    yield case("maxpool_asym", "MaxPool", [("x", x4)], {"kernel_shape": [3, 2], "pads": [1, 0, 0, 1]})
    yield case("maxpool_same", "MaxPool", [("x", x4)], {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"})
    yield case("maxpool_dil", "MaxPool", [("x", x4)], {"kernel_shape": [2, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1]})
    yield case("maxpool_1d", "MaxPool", [("x", f(2, 3, 9))], {"kernel_shape": [3], "strides": [2], "pads": [1, 1]})
    yield case("avgpool_exclude", "AveragePool", [("x", x4)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})
    yield case("avgpool_include", "AveragePool", [("x", x4)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1})
    yield case("avgpool_asym_exclude", "AveragePool", [("x", x4)], {"kernel_shape": [3, 3], "pads": [0, 1, 2, 0]})
    yield case("avgpool_asym_include", "AveragePool", [("x", x4)], {"kernel_shape": [3, 3], "pads": [0, 1, 2, 0], "count_include_pad": 1})
    yield case("avgpool_ceil", "AveragePool", [("x", x4)], {"kernel_shape": [2, 3], "strides": [2, 2], "ceil_mode": 1})
    yield case("avgpool_same_lower", "AveragePool", [("x", x4)], {"kernel_shape": [2, 2], "strides": [1, 1], "auto_pad": "SAME_LOWER"})
    yield case("globalavg", "GlobalAveragePool", [("x", x4)])
    yield case("globalmax", "GlobalMaxPool", [("x", x4)])
    yield case("lrn", "LRN", [("x", f(2, 5, 3, 3))], {"size": 3, "alpha": 0.1, "beta": 0.6, "bias": 2.0})
    yield case("lrn_even", "LRN", [("x", f(1, 6, 2, 2))], {"size": 4})
    yield case("batchnorm", "BatchNormalization", [("x", x4)], {"epsilon": 1e-3}, consts=[("s", f(2)), ("bb", f(2)), ("m", f(2)), ("v", np.abs(f(2)) + 0.5)])
    yield case("instnorm", "InstanceNormalization", [("x", x4)], {"epsilon": 1e-3}, consts=[("s", f(2)), ("bb", f(2))])
    yield case("layernorm_axis1", "LayerNormalization", [("x", f(2, 3, 4))], {"axis": 1}, consts=[("s", f(3, 4)), ("bb", f(3, 4))])
    yield case("layernorm_stats", "LayerNormalization", [("x", f(2, 3, 4))], {"axis": -1}, consts=[("s", f(4))], n_out=3)
    yield case("groupnorm21", "GroupNormalization", [("x", f(2, 6, 3, 3))], {"num_groups": 3}, opset=21, consts=[("s", f(6)), ("bb", f(6))])
    yield case("gemm_all", "Gemm", [("a", f(4, 3)), ("bm", f(5, 4))], {"transA": 1, "transB": 1, "alpha": 0.5, "beta": 2.0}, consts=[("c", f(1, 5))])
    yield case("gemm_linear", "Gemm", [("a", f(4, 3))], {"transB": 1}, consts=[("bm", f(5, 3)), ("c", f(5))])
    yield case("gemm_noc", "Gemm", [("a", f(4, 3)), ("bm", f(3, 5))], {"alpha": 3.0})
    yield case("matmul_batched", "MatMul", [("a", f(2, 1, 3, 4)), ("bm", f(5, 4, 2))])
    yield case("matmul_vec", "MatMul", [("a", f(4)), ("bm", f(2, 4, 3))])
    yield case("softmax11_axis1", "Softmax", [("x", f(2, 3, 4))], {"axis": 1}, opset=11)
    yield case("softmax13_axis1", "Softmax", [("x", f(2, 3, 4))], {"axis": 1}, opset=13)
    yield case("logsoftmax11_default", "LogSoftmax", [("x", f(2, 3, 4))], opset=11)
    yield case("slice_negstep", "Slice", [("x", f(5, 6))], consts=[("st", i64(-1, 4)), ("en", i64(-100, 0)), ("ax", i64(0, 1)), ("sp", i64(-2, -1))])
    yield case("slice_big_end", "Slice", [("x", f(5, 6))], consts=[("st", i64(1)), ("en", i64(2**63 - 1)), ("ax", i64(-1)), ("sp", i64(2))])
    yield case("slice_opset9", "Slice", [("x", f(5, 6))], {"starts": [1, -3], "ends": [1000, -1], "axes": [0, 1]}, opset=9)
    yield case("gather_neg", "Gather", [("x", f(5, 3))], {"axis": 0}, consts=[("i", i64(-1, 0, -5))])
    yield case("gather_scalar_axis1", "Gather", [("x", f(2, 4, 3))], {"axis": 1}, consts=[("i", np.array(-2, dtype=np.int64))])
    yield case("gather_2d_idx", "Gather", [("x", f(2, 4, 3))], {"axis": -1}, consts=[("i", i64(0, 2, 1, 1).reshape(2, 2))])
    yield case("gather_dyn", "Gather", [("x", f(6, 3)), ("i", np.array([[1, 5], [0, 2]], dtype=np.int64))], {"axis": 0})
    yield case("gather_dyn_axis1", "Gather", [("x", f(2, 6, 3)), ("i", np.array([4, 1], dtype=np.int32))], {"axis": 1})
    yield case("gather_elements", "GatherElements", [("x", f(3, 4))], {"axis": 1}, consts=[("i", np.array([[0, -1], [3, 2], [1, 1]], dtype=np.int64))])
    yield case("gather_nd", "GatherND", [("x", f(3, 4, 2)), ("i", np.array([[[0, 1]], [[2, 3]]], dtype=np.int64))])
    yield case("split13", "Split", [("x", f(6, 4))], {"axis": 0}, consts=[("s", i64(1, 2, 3))], n_out=3)
    yield case("split18_uneven", "Split", [("x", f(7, 4))], {"axis": 0, "num_outputs": 3}, n_out=3)
    yield case("split11_attr", "Split", [("x", f(4, 6))], {"axis": 1, "split": [2, 4]}, opset=11, n_out=2)
    yield case("squeeze13", "Squeeze", [("x", f(1, 3, 1, 2))], consts=[("a", i64(-2))])
    yield case("squeeze11_all", "Squeeze", [("x", f(1, 3, 1, 2))], opset=11)
    yield case("unsqueeze13", "Unsqueeze", [("x", f(3, 2))], consts=[("a", i64(-1, 0))])
    yield case("flatten_neg", "Flatten", [("x", f(2, 3, 4, 5))], {"axis": -2})
    yield case("flatten0", "Flatten", [("x", f(2, 3, 4))], {"axis": 0})
    yield case("reshape_zero", "Reshape", [("x", f(2, 3, 4))], consts=[("s", i64(0, -1, 2))])
    yield case("transpose_default", "Transpose", [("x", f(2, 3, 4))])
    yield case("expand_bidir", "Expand", [("x", f(3, 1))], consts=[("s", i64(2, 1, 4))])
    yield case("tile", "Tile", [("x", f(2, 3))], consts=[("r", i64(2, 3))])
    yield case("pad_constant", "Pad", [("x", f(2, 3, 4))], consts=[("p", i64(0, 1, 2, 0, 2, -1)), ("v", np.array(1.5, dtype=np.float32))])
    yield case("pad_reflect", "Pad", [("x", f(1, 2, 4, 5))], {"mode": "reflect"}, consts=[("p", i64(0, 0, 1, 2, 0, 0, 2, 1))])
    yield case("pad_edge", "Pad", [("x", f(1, 2, 4, 5))], {"mode": "edge"}, consts=[("p", i64(0, 0, 1, 2, 0, 0, 2, 1))])
    yield case("pad_wrap", "Pad", [("x", f(1, 2, 4, 5))], {"mode": "wrap"}, opset=19, consts=[("p", i64(0, 0, 1, 2, 0, 0, 2, 1))])
    yield case("pad_axes", "Pad", [("x", f(2, 3, 4))], consts=[("p", i64(1, 0, 2, 1)), ("v", np.array(0.0, dtype=np.float32)), ("ax", i64(-1, 0))])
    yield case("pad_opset2", "Pad", [("x", f(2, 3))], {"pads": [1, 0, 0, 2], "value": -1.0}, opset=6)
    yield case("concat_neg", "Concat", [("a", f(2, 3)), ("bb", f(2, 1))], {"axis": -1})
    yield case("cast_f2i", "Cast", [("x", f(3, 4) * 3)], {"to": TensorProto.INT32})
    yield case("cast_i2b", "Cast", [("x", np.array([0, 2, -1], dtype=np.int64))], {"to": TensorProto.BOOL})
    yield case("where", "Where", [("c", rng.random((2, 3)) > 0.5), ("a", f(2, 3)), ("bb", f(3))])
    yield case("clip11", "Clip", [("x", f(3, 4))], opset=11, consts=[("lo", np.array(-0.5, dtype=np.float32)), ("hi", np.array(0.3, dtype=np.float32))])
    yield case("clip11_min_only", ("Clip", ["x", "lo"]), [("x", f(3, 4))], opset=11, consts=[("lo", np.array(-0.5, dtype=np.float32))])
    yield case("clip6", "Clip", [("x", f(3, 4))], {"min": -0.2, "max": 0.1}, opset=6)
    yield case("clip13_int", "Clip", [("x", np.array([-5, 0, 7, 100], dtype=np.int64))], opset=13, consts=[("lo", np.array(-1, dtype=np.int64)), ("hi", np.array(10, dtype=np.int64))])
    yield case("div_int", "Div", [("a", np.array([7, -7, 9, -9], dtype=np.int64)), ("bb", np.array([2, 2, -4, -4], dtype=np.int64))])
    yield case("mod_int", "Mod", [("a", np.array([7, -7, 9, -9], dtype=np.int64)), ("bb", np.array([3, 3, -4, -4], dtype=np.int64))])
    yield case("mod_fmod", "Mod", [("a", f(4) * 5), ("bb", np.abs(f(4)) + 1)], {"fmod": 1})
    yield case("pow_tensor", "Pow", [("a", np.abs(f(3, 4)) + 0.1), ("bb", f(4))])
    yield case("pow_int_exp", "Pow", [("a", f(3, 4))], consts=[("e", np.array(3, dtype=np.int64))])
    yield case("max_variadic", "Max", [("a", f(3, 1)), ("bb", f(4)), ("c", f(1, 4))])
    yield case("mean_variadic", "Mean", [("a", f(3, 4)), ("bb", f(4)), ("c", f(3, 4))])
    yield case("sum_single", "Sum", [("a", f(3, 4))])
    yield case("hardsigmoid", "HardSigmoid", [("x", f(3, 4) * 3)], {"alpha": 0.3, "beta": 0.4})
    yield case("hardswish", "HardSwish", [("x", f(3, 4) * 4)])
    yield case("selu", "Selu", [("x", f(3, 4))], {"alpha": 2.0, "gamma": 3.0})
    yield case("elu", "Elu", [("x", f(3, 4))], {"alpha": 0.5})
    yield case("celu", "Celu", [("x", f(3, 4))], {"alpha": 2.0})
    yield case("leakyrelu", "LeakyRelu", [("x", f(3, 4))], {"alpha": 0.2})
    yield case("thresholdedrelu", "ThresholdedRelu", [("x", f(3, 4))], {"alpha": 0.3})
    yield case("shrink", "Shrink", [("x", f(3, 4))], {"lambd": 0.4, "bias": 0.1})
    yield case("prelu_bcast", "PRelu", [("x", f(2, 3, 4))], consts=[("s", f(4))])
    yield case("prelu_channel", "PRelu", [("x", f(2, 3, 4, 2))], consts=[("s", f(3, 1, 1))])
    yield case("gelu_tanh", "Gelu", [("x", f(3, 4))], {"approximate": "tanh"}, opset=20)
    yield case("softplus", "Softplus", [("x", f(3, 4) * 10)])
    yield case("isinf_pos", "IsInf", [("x", np.array([1.0, np.inf, -np.inf, np.nan], dtype=np.float32))], {"detect_negative": 0})
    yield case("erf", "Erf", [("x", f(3, 4))])
    yield case("reducesum13", "ReduceSum", [("x", f(2, 3, 4))], {"keepdims": 0}, opset=13, consts=[("a", i64(0, -1))])
    yield case("reducesum_noaxes", "ReduceSum", [("x", f(2, 3, 4))], opset=13)
    yield case("reducesum_noop", "ReduceSum", [("x", f(2, 3, 4))], {"noop_with_empty_axes": 1}, opset=13)
    yield case("reducemean11", "ReduceMean", [("x", f(2, 3, 4))], {"axes": [1]}, opset=11)
    yield case("reducemax18", "ReduceMax", [("x", f(2, 3, 4))], {"keepdims": 0}, consts=[("a", i64(1, 2))])
    yield case("reducemin_int", "ReduceMin", [("x", np.array([[3, 1], [-2, 5]], dtype=np.int64))], consts=[("a", i64(1))])
    yield case("reduceprod", "ReduceProd", [("x", f(2, 3, 4))], {"keepdims": 0}, consts=[("a", i64(0, 2))])
    yield case("reducel2", "ReduceL2", [("x", f(2, 3, 4))], consts=[("a", i64(-1))])
    yield case("reducel1", "ReduceL1", [("x", f(2, 3, 4))], consts=[("a", i64(1))])
    yield case("reducesumsq", "ReduceSumSquare", [("x", f(2, 3, 4))], consts=[("a", i64(1))])
    yield case("reducelse", "ReduceLogSumExp", [("x", f(2, 3, 4))], consts=[("a", i64(1))])
    yield case("argmax_last", "ArgMax", [("x", np.array([[1, 3, 3], [2, 2, 0]], dtype=np.float32))], {"axis": 1, "select_last_index": 1})
    yield case("argmin_keep0", "ArgMin", [("x", f(3, 4))], {"axis": 0, "keepdims": 0})
    yield case("cumsum_excl_rev", "CumSum", [("x", f(3, 4))], {"exclusive": 1, "reverse": 1}, consts=[("a", np.array(1, dtype=np.int64))])
    yield case("cumsum_int32", "CumSum", [("x", np.arange(6, dtype=np.int32).reshape(2, 3))], consts=[("a", np.array(0, dtype=np.int64))])
    yield case("topk_smallest", "TopK", [("x", f(3, 6))], {"axis": 1, "largest": 0}, consts=[("k", i64(2))], n_out=2)
    yield case("trilu_lower", "Trilu", [("x", f(4, 5))], {"upper": 0}, consts=[("k", np.array(-1, dtype=np.int64))])
    yield case("trilu_upper", "Trilu", [("x", f(2, 4, 5))], consts=[("k", np.array(2, dtype=np.int64))])
    yield case("depth2space_dcr", "DepthToSpace", [("x", f(1, 8, 2, 3))], {"blocksize": 2})
    yield case("depth2space_crd", "DepthToSpace", [("x", f(1, 8, 2, 3))], {"blocksize": 2, "mode": "CRD"})
    yield case("space2depth", "SpaceToDepth", [("x", f(1, 2, 4, 6))], {"blocksize": 2})
    yield case("resize_nearest_asym", "Resize", [("x", f(1, 2, 3, 4))], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, consts=[("roi", np.array([], dtype=np.float32)), ("sc", np.array([1, 1, 2, 3], dtype=np.float32))])
    yield case("resize_nearest_half", "Resize", [("x", f(1, 2, 3, 4))], {"mode": "nearest"}, consts=[("roi", np.array([], dtype=np.float32)), ("sc", np.array([1, 1, 2, 2], dtype=np.float32))])
    yield case("resize_linear_half", "Resize", [("x", f(1, 2, 3, 4))], {"mode": "linear"}, consts=[("roi", np.array([], dtype=np.float32)), ("sc", np.array([1, 1, 2, 1.5], dtype=np.float32))])
    yield case("resize_linear_align_sizes", ("Resize", ["x", "", "", "sz"]), [("x", f(1, 2, 3, 4))], {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, consts=[("sz", i64(1, 2, 5, 7))])
    yield case("upsample9", "Upsample", [("x", f(1, 2, 3, 4))], {"mode": "nearest"}, opset=9, consts=[("sc", np.array([1, 1, 2, 3], dtype=np.float32))])
    yield case("dropout12", "Dropout", [("x", f(3, 4))], opset=12)
    yield case("range_float", ("Range", ["s", "l", "d"]), [], consts=[("s", np.array(1.0, dtype=np.float32)), ("l", np.array(3.1, dtype=np.float32)), ("d", np.array(0.5, dtype=np.float32))])
    yield case("constant_of_shape_int", "ConstantOfShape", [], {"value": helper.make_tensor("v", TensorProto.INT32, [1], [7])}, consts=[("s", i64(2, 3))])
    yield case("shape_slice", "Shape", [("x", f(2, 3, 4))], {"start": 1, "end": -1}, opset=15)
    yield case("size", "Size", [("x", f(2, 3, 4))])
    yield case("identity", "Identity", [("x", f(2, 3))])
    yield case("bitshift_free_and", "And", [("a", rng.random((3,)) > 0.5), ("bb", rng.random((2, 3)) > 0.5)])
    yield case("not", "Not", [("a", rng.random((3,)) > 0.5)])
    yield case("sign", "Sign", [("x", np.array([-2.0, 0.0, 3.0], dtype=np.float32))])
    yield case("round_half_even", "Round", [("x", np.array([0.5, 1.5, 2.5, -0.5, -1.5], dtype=np.float32))])
    # Folding: a shape computation that must fold to a constant reshape target.
    yield case("fold_shape_chain", ("Shape", ["x"]), [("x", f(2, 3, 4))], out_names=["shp"], extra_nodes=[
        helper.make_node("Gather", ["shp", "i0"], ["d0"], axis=0),
        helper.make_node("Unsqueeze", ["d0", "ax0"], ["d0u"]),
        helper.make_node("Concat", ["d0u", "m1"], ["tgt"], axis=0),
        helper.make_node("Reshape", ["x", "tgt"], ["y0"]),
    ], consts=[("i0", np.array(0, dtype=np.int64)), ("ax0", i64(0)), ("m1", i64(-1))])


def reference(model, feeds):
    try:
        import onnxruntime as ort
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)
    except Exception:  # noqa: BLE001 - fall back to the reference evaluator
        from onnx.reference import ReferenceEvaluator
        return ReferenceEvaluator(model).run(None, feeds)


def main(out):
    n = 0
    for name, model, feeds in cases():
        outs = reference(model, feeds)
        d = os.path.join(out, name)
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        onnx.save(model, os.path.join(d, "model.onnx"))
        for k, (n_, a) in enumerate(feeds.items()):
            with open(os.path.join(d, "test_data_set_0", f"input_{k}.pb"), "wb") as fh:
                fh.write(numpy_helper.from_array(a, n_).SerializeToString())
        for k, (vi, o) in enumerate(zip(model.graph.output, outs)):
            with open(os.path.join(d, "test_data_set_0", f"output_{k}.pb"), "wb") as fh:
                fh.write(numpy_helper.from_array(np.asarray(o), vi.name).SerializeToString())
        n += 1
    print(f"{n} cases -> {out}")


if __name__ == "__main__":
    main(sys.argv[1])
