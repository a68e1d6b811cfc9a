"""Hand-written one-node models of the op-family tests (see ``harness.edge_params``): inputs the
ONNX conformance cases do not reach (uint64 extremes, negative axes, empty tensors, old opsets).
"""

from __future__ import annotations

import numpy as np

_F = np.float32
_U64 = np.array([0, 1, 7, 2**63 - 1, 2**63, 2**63 + 12345, 2**64 - 2, 2**64 - 1], dtype=np.uint64)


def _a(*shape: int) -> np.ndarray:
    return np.arange(int(np.prod(shape)), dtype=_F).reshape(shape)


# (id, opset, node text, input declarations, inputs)
MATH_EDGE = [
    (
        "div_u64_big",
        18,
        "y = Div(a, b)",
        "uint64[8] a, uint64[8] b",
        [_U64, np.array([3, 1, 2, 2**63 + 1, 5, 2**63, 2**64 - 1, 2**32 + 1], dtype=np.uint64)],
    ),
    (
        "mod_u64_big",
        18,
        "y = Mod(a, b)",
        "uint64[8] a, uint64[8] b",
        [_U64, np.array([3, 1, 2, 2**63 + 1, 5, 2**63, 2**64 - 1, 2**32 + 1], dtype=np.uint64)],
    ),
    ("less_u64_big", 18, "y = Less(a, b)", "uint64[8] a, uint64[8] b", [_U64, _U64[::-1].copy()]),
    ("min_u64_big", 18, "y = Min(a, b)", "uint64[8] a, uint64[8] b", [_U64, _U64[::-1].copy()]),
    (
        "shift_right_u64_big",
        18,
        'y = BitShift<direction="RIGHT">(a, b)',
        "uint64[8] a, uint64[8] b",
        [_U64, np.array([0, 1, 3, 63, 64, 1, 7, 62], dtype=np.uint64)],
    ),
    (
        "int_div_trunc",
        18,
        "y = Div(a, b)",
        "int32[4] a, int32[4] b",
        [np.array([7, -7, 7, -7], np.int32), np.array([2, 2, -2, -2], np.int32)],
    ),
    (
        "pow_int_float",
        18,
        "y = Pow(a, b)",
        "int32[3] a, float[3] b",
        [np.array([2, 3, 4], np.int32), np.array([2.0, 0.5, 3.0], _F)],
    ),
    ("clip_v6", 6, "y = Clip<min=-1.5, max=2.5>(x)", "float[2,3] x", [_a(2, 3) - 2]),
    (
        "clip_int_runtime_bounds",
        13,
        "y = Clip(x, lo, hi)",
        "int32[5] x, int32 lo, int32 hi",
        [np.arange(-2, 3, dtype=np.int32), np.array(-1, np.int32), np.array(1, np.int32)],
    ),
    (
        "cast_f8_nosat",
        19,
        "y = Cast<to=17, saturate=0>(x)",
        "float[6] x",
        [np.array([1.0, 460.0, 470.0, 1e6, -np.inf, np.nan], _F)],
    ),
    (
        "cast_f8_sat",
        19,
        "y = Cast<to=19>(x)",
        "float[5] x",
        [np.array([1.0, 6e4, 1e6, -np.inf, np.inf], _F)],
    ),
    (
        "topk_ties_smallest",
        11,
        "v, i = TopK<largest=0>(x, k)",
        "float[2,5] x, int64[1] k",
        [np.array([[1, 0, 1, 0, 1], [2, 2, 2, 2, 2]], _F), np.array([3], np.int64)],
    ),
    (
        "argmin_last",
        13,
        "y = ArgMin<axis=1, keepdims=0, select_last_index=1>(x)",
        "float[2,4] x",
        [np.array([[1, 0, 0, 2], [3, 3, 3, 3]], _F)],
    ),
    (
        "reduce_max_empty_static",
        13,
        "y = ReduceMax<axes=[1], keepdims=0>(x)",
        "int32[2,0,3] x",
        [np.zeros((2, 0, 3), np.int32)],
    ),
    (
        "reduce_max_empty_dynamic",
        13,
        "y = ReduceMax<axes=[1], keepdims=1>(x)",
        "float[N,0] x",
        [np.zeros((3, 0), _F)],
    ),
    (
        "reduce_min_empty_runtime",
        18,
        "y = ReduceMin<keepdims=1>(x, a)",
        "float[2,0] x, int64[1] a",
        [np.zeros((2, 0), _F), np.array([1], np.int64)],
    ),
    (
        "reduce_prod_int_axes",
        13,
        "y = ReduceProd<axes=[0,2]>(x)",
        "int32[2,3,2] x",
        [np.arange(1, 13, dtype=np.int32).reshape(2, 3, 2) % 5 + 1],
    ),
    (
        "reduce_sum_noop_v13",
        13,
        "y = ReduceSum<noop_with_empty_axes=1>(x)",
        "float[2,3] x",
        [_a(2, 3)],
    ),
    (
        "reduce_l2_int",
        18,
        "y = ReduceL2<keepdims=0>(x, a)",
        "int64[2,3] x, int64[1] a",
        [np.array([[3, 4, 0], [1, 1, 1]], np.int64), np.array([1], np.int64)],
    ),
    (
        "cumprod_exclusive_int",
        26,
        "y = CumProd<exclusive=1>(x, a)",
        "int32[2,3] x, int32 a",
        [np.array([[1, 2, 3], [4, 5, 6]], np.int32), np.array(1, np.int32)],
    ),
    (
        "unique_unsorted_axis",
        11,
        "y, i, r, c = Unique<sorted=0, axis=0>(x)",
        "float[4,2] x",
        [np.array([[2, 1], [0, 1], [2, 1], [0, 0]], _F)],
    ),
    ("nonzero", 13, "y = NonZero(x)", "float[2,3] x", [np.array([[0, 1, 0], [2, 0, 3]], _F)]),
    (
        "det_batch",
        11,
        "y = Det(x)",
        "float[2,2,2] x",
        [np.array([[[1, 2], [3, 4]], [[2, 0], [0, 2]]], _F)],
    ),
    (
        "isinf_neither",
        10,
        "y = IsInf<detect_positive=0, detect_negative=0>(x)",
        "float[2] x",
        [np.array([np.inf, 1], _F)],
    ),
    (
        "shrink_bias",
        9,
        "y = Shrink<lambd=1.0, bias=0.5>(x)",
        "float[5] x",
        [np.array([-2, -1, 0, 1, 2], _F)],
    ),
    (
        "bitcast_f16_bf16",
        26,
        "y = BitCast<to=16>(x)",
        "float16[3] x",
        [np.array([1.0, -2.5, 0.0], np.float16)],
    ),
]

_MAX = np.iinfo(np.int64).max
_MIN = np.iinfo(np.int64).min


def _i(*v: int) -> np.ndarray:
    return np.array(v, dtype=np.int64)


def _s(v: int) -> np.ndarray:
    return np.array(v, dtype=np.int32)


def _f(v: float) -> np.ndarray:
    return np.array(v, dtype=_F)


def _ones(*shape: int) -> np.ndarray:
    return np.ones(shape, dtype=_F)


# (id, opset, node, inputs): the node's inputs are declared from the arrays fed to them, its
# outputs are those left of "=" ("y" when the node has no "="); the first input is the data.
SHAPE_EDGE = [
    ("reshape_zero", 14, "Reshape(x, s)", [_a(2, 3, 4), _i(0, -1, 2)]),
    ("reshape_allowzero", 14, "Reshape<allowzero=1>(x, s)", [_a(0, 3), _i(3, 0)]),
    ("reshape_v1", 1, "Reshape<shape=[0,-1]>(x)", [_a(2, 3, 4)]),
    ("flatten_neg", 13, "Flatten<axis=-2>(x)", [_a(2, 3, 4, 5)]),
    ("flatten_0", 13, "Flatten<axis=0>(x)", [_a(2, 3, 4)]),
    ("flatten_rank", 13, "Flatten<axis=3>(x)", [_a(2, 3, 4)]),
    ("flatten_1d", 13, "Flatten(x)", [_a(5)]),
    ("squeeze_all", 13, "Squeeze(x)", [_a(1, 3, 1, 2)]),
    ("squeeze_v11", 11, "Squeeze<axes=[-2]>(x)", [_a(1, 3, 1, 2)]),
    ("unsqueeze_v11", 11, "Unsqueeze<axes=[0,-1]>(x)", [_a(3, 2)]),
    ("unsqueeze_neg", 13, "Unsqueeze(x, a)", [_a(3, 2), _i(-1, -3)]),
    ("unsqueeze_mixed", 13, "Unsqueeze(x, a)", [_a(3, 2), _i(2, -3)]),
    ("transpose_default", 13, "Transpose(x)", [_a(2, 3, 4)]),
    ("concat_empty", 13, "Concat<axis=-1>(x, z)", [_a(2, 0), _a(2, 3)]),
    ("split_uneven", 18, "a, b, c = Split<num_outputs=3, axis=-1>(x)", [_a(2, 7)]),
    ("split_zero_tail", 18, "a, b, c = Split<num_outputs=3>(x)", [_a(4)]),
    ("split_v11", 11, "a, b = Split<split=[1,3]>(x)", [_a(4, 2)]),
    ("split_v13_even", 13, "a, b = Split<axis=1>(x)", [_a(2, 6)]),
    ("slice_v1", 1, "Slice<starts=[1,-100], ends=[1000,-1], axes=[1,0]>(x)", [_a(3, 4)]),
    ("slice_rev_all", 13, "Slice(x, s, e, a, t)", [_a(3, 5), _i(-1), _i(_MIN), _i(-1), _i(-1)]),
    ("slice_rev_step", 13, "Slice(x, s, e, a, t)",
     [_a(3, 7), _i(_MAX, 2), _i(0, -100), _i(1, 0), _i(-2, -1)]),
    ("slice_step3", 13, "Slice(x, s, e, a, t)", [_a(3, 8), _i(2), _i(_MAX), _i(-1), _i(3)]),
    ("slice_empty_rev", 13, "Slice(x, s, e, a, t)", [_a(6), _i(1), _i(4), _i(0), _i(-1)]),
    ("slice_no_axes", 13, "Slice(x, s, e)", [_a(4, 4), _i(1, -3), _i(-1, _MAX)]),
    ("slice_mixed_axes", 13, "Slice(x, s, e, a)", [_a(4, 5), _i(1, -2), _i(3, 5), _i(0, -1)]),
    ("expand_both", 13, "Expand(x, s)", [_a(3, 1), _i(2, 1, 6)]),
    ("expand_smaller", 13, "Expand(x, s)", [_a(2, 3), _i(1)]),
    ("tile", 13, "Tile(x, r)", [_a(2, 3), _i(2, 1)]),
    ("pad_v2_reflect", 2, 'Pad<pads=[0,2,0,1], mode="reflect">(x)', [_a(2, 4)]),
    ("pad_v2_value", 2, "Pad<pads=[1,0,0,1], value=7.0>(x)", [_a(2, 3)]),
    ("pad_int_value", 13, "Pad(x, p, v)", [_a(2, 3).astype(np.int32), _i(1, -1, 0, 2), _s(5)]),
    ("pad_neg_edge", 13, 'Pad<mode="edge">(x, p)', [_a(3, 4), _i(2, -1, -1, 3)]),
    ("pad_wrap_big", 13, 'Pad<mode="wrap">(x, p)', [_a(2, 3), _i(0, 4, 1, 5)]),
    ("pad_reflect_3d", 13, 'Pad<mode="reflect">(x, p)', [_a(3, 3, 3), _i(1, 0, 2, 2, 1, 0)]),
    ("pad_axes", 18, 'Pad<mode="edge">(x, p, , a)', [_a(2, 3, 4), _i(1, 2), _i(-2)]),
    ("constantofshape_scalar", 20, "ConstantOfShape<value=int64[1] {7}>(s)", [_i()]),
    ("constantofshape_default", 20, "ConstantOfShape(s)", [_i(2, 3)]),
    ("range_int_neg", 11, "Range(a, b, c)", [_s(10), _s(-3), _s(-4)]),
    ("range_float", 11, "Range(a, b, c)", [_f(0.5), _f(2.7), _f(0.3)]),
    ("range_empty", 11, "Range(a, b, c)", [np.array(5), np.array(1), np.array(1)]),
    ("eyelike", 22, "EyeLike<k=-1, dtype=7>(x)", [_a(3, 5)]),
    ("trilu_k", 14, "Trilu<upper=0>(x, k)", [_a(2, 4, 5), np.array(-1)]),
    ("gather_neg", 13, "Gather<axis=1>(x, i)", [_a(3, 4), np.array([[0, -1], [-4, 2]])]),
    ("gather_scalar", 13, "Gather<axis=-1>(x, i)", [_a(3, 4), np.array(-2)]),
    ("gather_1d", 13, "Gather(x, i)", [_a(3, 4), _i(2, 0)]),
    ("gather_elements", 13, "GatherElements<axis=-1>(x, i)",
     [_a(2, 3), np.array([[-1, 0, 1], [2, -2, -3]])]),
    ("gathernd_b1", 13, "GatherND<batch_dims=1>(x, i)",
     [_a(2, 3, 4), np.array([[[1], [-1]], [[0], [2]]])]),
    ("gathernd_k2", 13, "GatherND(x, i)", [_a(3, 4, 2), np.array([[0, 1], [2, -1]])]),
    ("scatter_v10", 10, "Scatter<axis=-1>(x, i, u)", [_a(2, 3), _i(-1, 0)[:, None], _ones(2, 1)]),
    ("scatter_elements_add", 18, 'ScatterElements<axis=0, reduction="add">(x, i, u)',
     [_a(3, 2), np.array([[-1, 0], [2, 0]]), _ones(2, 2)]),
    ("scatternd_add", 18, 'ScatterND<reduction="add">(x, i, u)',
     [_a(4, 2), np.array([[1], [1], [-1]]), _ones(3, 2)]),
    ("onehot", 11, "OneHot<axis=0>(i, d, v)",
     [np.array([[0, -1], [5, 2]]), _f(3.0), np.array([-1.0, 4.0], _F)]),
    ("compress_flat", 11, "Compress(x, c)", [_a(2, 3), np.array([False, True, False, True])]),
    ("shape_slice", 21, "Shape<start=-3, end=-1>(x)", [_a(2, 3, 4, 5)]),
    ("center_crop_pad", 18, "CenterCropPad<axes=[-1, 0]>(x, s)", [_a(5, 4), _i(7, 2)]),
]  # fmt: skip

# Where the reference evaluator lacks the op version or rejects the case: the expected outputs.
SHAPE_EXPECTED = {
    "reshape_v1": [_a(2, 3, 4).reshape(2, 12)],
    "scatter_v10": [np.array([[0, 1, 1], [1, 4, 5]], _F)],
    # numpy.pad (the reference) rejects negative pads; they crop.
    "pad_int_value": [np.pad(_a(2, 3)[:, 1:], ((1, 0), (0, 2)), constant_values=5).astype("i4")],
    "pad_neg_edge": [np.pad(_a(3, 4)[:-1, 1:], ((2, 0), (0, 3)), mode="edge")],
}
