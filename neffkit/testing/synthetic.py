"""Synthetic models of any size, for speed benchmarks and scaling tests.

The graphs look like real inference graphs: residual blocks of MatMul / Add / activation /
Reshape / Transpose with attributes, weights (some duplicated), and repeated subexpressions,
so loaders, exporters and passes meet realistic work per node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def synthetic_model(
    num_nodes: int,
    *,
    width: int = 16,
    seed: int = 0,
    duplicate_every: int = 4,
    repeat_every: int = 5,
) -> onnx.ModelProto:
    """A valid model with about ``num_nodes`` nodes.

    Args:
        num_nodes: target node count (the result is within one block of it).
        width: feature size of the [1, width] activations (weights are width x width).
        seed: weight values.
        duplicate_every: every k-th block reuses an earlier block's weight values under a new
            initializer name (what tensor deduplication should merge).
        repeat_every: every k-th block computes a subexpression twice (what CSE should merge).
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    shape_name = "shape_1_w"
    inits.append(numpy_helper.from_array(np.array([1, width], np.int64), shape_name))
    x = "x"
    block = 0
    weights: list[np.ndarray] = []
    while len(nodes) < num_nodes:
        b = f"b{block}"
        if weights and block % duplicate_every == 0:
            w_arr = weights[block % len(weights)]
        else:
            w_arr = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
            weights.append(w_arr)
        inits.append(numpy_helper.from_array(w_arr, f"{b}_w"))
        inits.append(
            numpy_helper.from_array(np.full(width, 0.01 * (block % 7), np.float32), f"{b}_bias")
        )
        nodes += [
            helper.make_node("MatMul", [x, f"{b}_w"], [f"{b}_mm"], name=f"{b}_matmul"),
            helper.make_node("Add", [f"{b}_mm", f"{b}_bias"], [f"{b}_add"], name=f"{b}_add"),
            helper.make_node("Relu", [f"{b}_add"], [f"{b}_act"], name=f"{b}_relu"),
            helper.make_node("Transpose", [f"{b}_act"], [f"{b}_t"], name=f"{b}_tr", perm=[1, 0]),
            helper.make_node("Transpose", [f"{b}_t"], [f"{b}_tt"], name=f"{b}_tr2", perm=[1, 0]),
            helper.make_node("Reshape", [f"{b}_tt", shape_name], [f"{b}_r"], name=f"{b}_reshape"),
        ]
        out = f"{b}_r"
        if block % repeat_every == 0:
            nodes += [
                helper.make_node("Mul", [out, out], [f"{b}_sq1"], name=f"{b}_sq1"),
                helper.make_node("Mul", [out, out], [f"{b}_sq2"], name=f"{b}_sq2"),
                helper.make_node("Sub", [f"{b}_sq1", f"{b}_sq2"], [f"{b}_z"], name=f"{b}_zero"),
                helper.make_node("Add", [out, f"{b}_z"], [f"{b}_out"], name=f"{b}_res"),
            ]
            out = f"{b}_out"
        nodes.append(helper.make_node("Add", [out, x], [f"{b}_y"], name=f"{b}_skip"))
        x = f"{b}_y"
        block += 1
    graph = helper.make_graph(
        nodes,
        "synthetic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
