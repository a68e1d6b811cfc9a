"""Element types torch lacks (int4, uint4, int2, uint2, float4e2m1, float8e8m0) in the torch
backend: held in carrier dtypes (int8, uint8, float32) inside the module, ml_dtypes arrays at
the boundaries.

Checks Cast / CastLike / BitCast / QuantizeLinear / DequantizeLinear against the ONNX reference
(ml_dtypes conversions, ``onnx.numpy_helper.to_float8e8m0``, the ReferenceEvaluator), eager and
scripted, graph inputs / outputs / constants of these types, every ONNX node case that uses
them, and (when a GPU is present) CUDA.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto as TP
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import neffkit.backends.torch as tb
from neffkit.backends.torch.convert import from_carrier, to_torch
from neffkit.frontends.onnx import load
from neffkit.ir.casts import OWN_CAST_TYPES, spec_defined
from neffkit.ir.casts import cast as own_cast
from neffkit.ir.tensor import np_dtype
from neffkit.testing.conformance import compare, neffkit_torch_runner, plain_node_cases, run_case
from neffkit.testing.onnx_cases import Case

SUBBYTE_INTS = (TP.INT4, TP.UINT4, TP.INT2, TP.UINT2)
CARRIED = (*SUBBYTE_INTS, TP.FLOAT4E2M1, TP.FLOAT8E8M0)
_NAMES = {"int4", "uint4", "int2", "uint2", "float4_e2m1fn", "float8_e8m0fnu"}
OPSET = 26

# Floats that exercise truncation, ties, wrapping, saturation and the special values.
FLOATS = np.array(
    [-1e6, -300.5, -20, -9, -8.5, -8, -7.5, -3.5, -2.5, -1.5, -0.5, -0.25, -0.0, 0.0, 0.2499,
     0.25, 0.26, 0.5, 0.75, 1.05, 1.25, 1.5, 1.75, 2.5, 3.5, 5.0, 5.01, 6.5, 7.0, 7.5, 8, 9, 15,
     16, 17, 31, 1e6, np.nan, np.inf, -np.inf],
    dtype=np.float64,
)  # fmt: skip
INTS = np.array([-200, -129, -20, -9, -8, -3, -2, -1, 0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 127])


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[tuple[str, int, list[int]]],
    outputs: list[tuple[str, int]],
    initializers: list[onnx.TensorProto] = (),
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, None) for n, t in outputs],
        list(initializers),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _run(model: onnx.ModelProto, feed: list[np.ndarray], script: bool) -> list[np.ndarray]:
    g = load(model)
    module = torch.jit.script(tb.compile(g)) if script else None
    return tb.run(g, feed, module=module)


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal dtype, shape and values (NaN equal to NaN, -0 equal to 0)."""
    assert got.dtype == want.dtype, f"{got.dtype} != {want.dtype}"
    assert got.shape == want.shape
    g, w = got.astype(np.float64), want.astype(np.float64)
    bad = ~((g == w) | (np.isnan(g) & np.isnan(w)))
    assert not bad.any(), f"at {np.flatnonzero(bad)}: got {g[bad]}, want {w[bad]}"


def _same_where_defined(got: np.ndarray, want: np.ndarray, x: np.ndarray, to: int) -> None:
    """Like ``_same``, on the elements whose cast the ONNX spec defines (``spec_defined``):
    the reference (ml_dtypes) changed its out-of-range float -> int4 results between
    versions, so only the defined ones are its to decide."""
    defined = spec_defined(x, to)
    _same(got[defined], want[defined])


def _cast_model(src: int, to: int, **attrs: object) -> onnx.ModelProto:
    node = helper.make_node("Cast", ["x"], ["y"], to=to, **attrs)
    return _model([node], [("x", src, [None])], [("y", to)])


# -- carriers at the boundaries -------------------------------------------------------------


@pytest.mark.parametrize("elem", CARRIED)
def test_to_torch_and_back(elem: int) -> None:
    codes = np.arange(16 if elem != TP.FLOAT8E8M0 else 256, dtype=np.uint8)
    if elem in (TP.INT2, TP.UINT2):
        codes = codes[:4]
    arr = codes.view(np_dtype(elem)) if elem in (TP.FLOAT4E2M1, TP.FLOAT8E8M0) else None
    if arr is None:
        info = {TP.INT4: (-8, 8), TP.UINT4: (0, 16), TP.INT2: (-2, 2), TP.UINT2: (0, 4)}[elem]
        arr = np.arange(*info).astype(np_dtype(elem))
    t = to_torch(arr)
    assert t.dtype == tb.convert.CARRIERS[elem]
    _same(from_carrier(t.numpy(), elem), arr)


@pytest.mark.parametrize("elem", CARRIED)
@pytest.mark.parametrize("script", [False, True])
def test_identity_input_output(elem: int, script: bool) -> None:
    x = np.array([0.5, 1.0, 2.0, 4.0, 0.5, 1.0]).astype(np_dtype(elem)).reshape(2, 3)
    model = _model(
        [helper.make_node("Identity", ["x"], ["y"])], [("x", elem, [2, 3])], [("y", elem)]
    )
    (y,) = _run(model, [x], script)
    _same(y, x)


@pytest.mark.parametrize("elem", CARRIED)
def test_initializer_and_constant(elem: int) -> None:
    vals = np.array([1.0, 2.0, 0.5, 4.0]).astype(np_dtype(elem))
    init = numpy_helper.from_array(vals, "w")
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(vals, "cv"))
    nodes = [
        helper.make_node("Cast", ["w"], ["a"], to=TP.FLOAT),
        helper.make_node("Cast", ["c"], ["b"], to=TP.FLOAT),
        helper.make_node("Identity", ["c"], ["d"]),
    ]
    model = _model([const, *nodes], [], [("a", TP.FLOAT), ("b", TP.FLOAT), ("d", elem)], [init])
    a, b, d = _run(model, [], script=True)
    _same(a, vals.astype(np.float32))
    _same(b, vals.astype(np.float32))
    _same(d, vals)


# -- Cast ------------------------------------------------------------------------------------


@pytest.mark.parametrize("to", [*SUBBYTE_INTS, TP.FLOAT4E2M1])
@pytest.mark.parametrize("src", [TP.FLOAT, TP.DOUBLE, TP.FLOAT16, TP.BFLOAT16])
@pytest.mark.parametrize("script", [False, True])
def test_cast_float_to_subbyte(src: int, to: int, script: bool) -> None:
    # the spec-defined elements agree with the reference (x.astype(ml_dtypes type):
    # truncation for the integers, round-to-nearest-even with saturation at +-6 for float4);
    # every element, out-of-range ones included, agrees with neffkit's own rules
    x = FLOATS.astype(np_dtype(src))
    (y,) = _run(_cast_model(src, to), [x], script)
    _same_where_defined(y, x.astype(np_dtype(to)), x, to)
    _same(y, own_cast(x, to))


def test_cast_float_to_int4_out_of_range_keeps_low_bits() -> None:
    # undefined in the spec; neffkit keeps the low bits of the truncated value, and gives 0
    # for NaN, infinities and values beyond int32 (whatever ml_dtypes does)
    x = np.array([-9.5, 8.0, 15.9, 16.0, 17.0, -129.0, 3e9, -3e9, 1e30, np.nan, np.inf], np.float64)
    want = np.array([7, -8, -1, 0, 1, -1, 0, 0, 0, 0, 0]).astype(ml_dtypes.int4)
    (y,) = _run(_cast_model(TP.DOUBLE, TP.INT4), [x], script=False)
    _same(y, want)
    (y,) = _run(_cast_model(TP.DOUBLE, TP.INT4), [x], script=True)
    _same(y, want)


@pytest.mark.parametrize("to", [*SUBBYTE_INTS, TP.FLOAT4E2M1])
@pytest.mark.parametrize(
    "src", [TP.INT8, TP.UINT8, TP.INT16, TP.INT32, TP.INT64, TP.UINT16, TP.UINT64, TP.BOOL]
)
def test_cast_int_to_subbyte(src: int, to: int) -> None:
    # integers keep their low bits (200 -> int4 -8), as the spec says for fixed point casts
    x = INTS.astype(np_dtype(src)) if src != TP.BOOL else (INTS % 3 == 0)
    (y,) = _run(_cast_model(src, to), [x], script=True)
    _same(y, x.astype(np_dtype(to)))


_ALL_VALUES = {
    TP.INT4: np.arange(-8, 8),
    TP.UINT4: np.arange(0, 16),
    TP.INT2: np.arange(-2, 2),
    TP.UINT2: np.arange(0, 4),
    TP.FLOAT4E2M1: np.arange(16, dtype=np.uint8).view(ml_dtypes.float4_e2m1fn),
}


@pytest.mark.parametrize("src", [*SUBBYTE_INTS, TP.FLOAT4E2M1])
@pytest.mark.parametrize(
    "to",
    [TP.FLOAT, TP.FLOAT16, TP.DOUBLE, TP.BFLOAT16, TP.INT8, TP.UINT8, TP.INT32, TP.INT64,
     TP.UINT16, TP.BOOL, TP.INT4, TP.UINT4, TP.INT2, TP.UINT2, TP.FLOAT4E2M1, TP.FLOAT8E4M3FN],
)  # fmt: skip
def test_cast_from_subbyte(src: int, to: int) -> None:
    x = _ALL_VALUES[src].astype(np_dtype(src))
    (y,) = _run(_cast_model(src, to), [x], script=True)
    try:
        want = ReferenceEvaluator(_cast_model(src, to)).run(None, {"x": x})[0]
    except TypeError:  # ml_dtypes has no direct cast between some pairs (int4 -> uint4 ...)
        wide = np.float32 if src == TP.FLOAT4E2M1 else np.int64
        want = x.astype(wide).astype(np_dtype(to))
    _same_where_defined(y, want, x, to)
    if to in OWN_CAST_TYPES:
        _same(y, own_cast(x, to))


def _e8m0_inputs() -> np.ndarray:
    rng = np.random.default_rng(0)
    normal = np.ldexp(rng.uniform(1.0, 2.0, 200), rng.integers(-126, 128, 200))
    exact = np.ldexp(1.0, np.arange(-126, 128))
    edges = [1.5, 0.75, 3.0, 1.0000001, 2.0**127 * 1.25, 2.0**127 * 1.5, 2.0**127, 3e38]
    tiny = [0.0, 2.0**-127, 2.0**-127 * 1.5, 2.0**-126 * 0.99, 2.0**-128, 1e-44, 2.0**-149]
    return np.concatenate([normal, exact, edges, tiny, -normal[:20]]).astype(np.float32)


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [1, 0])
@pytest.mark.parametrize("script", [False, True])
def test_cast_to_e8m0_matches_reference(round_mode: str, saturate: int, script: bool) -> None:
    x = _e8m0_inputs()
    # leave out where the spec's table wins over the reference (test_cast_to_e8m0_spec_table)
    a = np.abs(x)
    if saturate and round_mode == "up":
        x = x[(a == 0) | (a >= 2.0**-127)]
    if not saturate and round_mode == "nearest":
        x = x[(a >= 2.0**-127) & (a <= 2.0**127)]
    m = _cast_model(TP.FLOAT, TP.FLOAT8E8M0, saturate=saturate, round_mode=round_mode)
    (y,) = _run(m, [x], script)
    want = numpy_helper.to_float8e8m0(x, bool(saturate), round_mode)
    _same(y, want)
    _same(y, own_cast(x, TP.FLOAT8E8M0, saturate=bool(saturate), round_mode=round_mode))
    # float16 / float64 inputs as well (the reference reads them as float32)
    for src, arr in [(TP.FLOAT16, x[np.abs(x) < 6e4].astype(np.float16)), (TP.DOUBLE, x * 1.0)]:
        m = _cast_model(src, TP.FLOAT8E8M0, saturate=saturate, round_mode=round_mode)
        (y,) = _run(m, [arr.astype(np_dtype(src))], script)
        want = numpy_helper.to_float8e8m0(arr, bool(saturate), round_mode)
        if not saturate and round_mode == "nearest":  # float16 zeros
            want = np.where(arr == 0, np.nan, want.astype(np.float32)).astype(want.dtype)
        _same(y, want)


def test_cast_to_e8m0_spec_table() -> None:
    # The rows of the Cast spec's FLOAT8E8M0 table where the reference differs (documented in
    # ops.cast.round_e8m0): saturate + up, then non-saturate + nearest.
    x = np.array([0.0, np.inf, 1e-40, np.nan, 2.0**127 * 1.25, 4.0], np.float32)
    nan, lo, hi = np.nan, 2.0**-127, 2.0**127
    (y,) = _run(_cast_model(TP.FLOAT, TP.FLOAT8E8M0), [x], script=False)
    _same(y, np.array([lo, hi, lo, nan, hi, 4.0]).astype(ml_dtypes.float8_e8m0fnu))
    _same(y, own_cast(x, TP.FLOAT8E8M0))
    m = _cast_model(TP.FLOAT, TP.FLOAT8E8M0, saturate=0, round_mode="nearest")
    (y,) = _run(m, [x], script=False)
    _same(y, np.array([nan, nan, nan, nan, nan, 4.0]).astype(ml_dtypes.float8_e8m0fnu))
    _same(y, own_cast(x, TP.FLOAT8E8M0, saturate=False, round_mode="nearest"))


@pytest.mark.parametrize("to", [TP.FLOAT, TP.FLOAT16, TP.DOUBLE, TP.FLOAT4E2M1, TP.INT4])
def test_cast_from_e8m0(to: int) -> None:
    x = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu)
    if to in (TP.INT4, TP.FLOAT4E2M1):
        x = x[120:140]  # within int32: larger ones are undefined for integers
    (y,) = _run(_cast_model(TP.FLOAT8E8M0, to), [x], script=True)
    want = x.astype(np.float32).astype(np_dtype(to))  # ml_dtypes has no direct e8m0 -> int4
    _same_where_defined(y, want, x, to)
    if to in OWN_CAST_TYPES:
        _same(y, own_cast(x, to))


@pytest.mark.parametrize("to", [*SUBBYTE_INTS, TP.FLOAT4E2M1, TP.FLOAT8E8M0])
def test_castlike(to: int) -> None:
    like = np.array([1.0]).astype(np_dtype(to))
    node = helper.make_node("CastLike", ["x", "like"], ["y"])
    model = _model([node], [("x", TP.FLOAT, [None]), ("like", to, [1])], [("y", to)])
    x = np.abs(FLOATS).astype(np.float32) if to == TP.FLOAT8E8M0 else FLOATS.astype(np.float32)
    (y,) = _run(model, [x, like], script=True)
    want = ReferenceEvaluator(model).run(None, {"x": x, "like": like})[0]
    if to == TP.FLOAT8E8M0:  # Inf saturates to E8M0_MAX by the spec (the reference: NaN)
        want = np.where(np.isinf(x), 2.0**127, want.astype(np.float32)).astype(want.dtype)
    _same_where_defined(y, want, x, to)
    _same(y, own_cast(x, to))


# -- BitCast ---------------------------------------------------------------------------------


_BITCASTS = [
    (TP.INT4, TP.UINT4),
    (TP.UINT4, TP.INT4),
    (TP.INT4, TP.FLOAT4E2M1),
    (TP.FLOAT4E2M1, TP.INT4),
    (TP.FLOAT4E2M1, TP.UINT4),
    (TP.UINT4, TP.FLOAT4E2M1),
    (TP.INT2, TP.UINT2),
    (TP.UINT2, TP.INT2),
    (TP.FLOAT8E8M0, TP.UINT8),
    (TP.UINT8, TP.FLOAT8E8M0),
    (TP.INT8, TP.FLOAT8E8M0),
    (TP.FLOAT8E8M0, TP.FLOAT8E4M3FN),
]


def _every_code(elem: int) -> np.ndarray:
    n = {TP.INT2: 4, TP.UINT2: 4, TP.INT4: 16, TP.UINT4: 16, TP.FLOAT4E2M1: 16}.get(elem, 256)
    if elem in (TP.INT4, TP.INT2, TP.INT8):
        half = n // 2
        return np.concatenate([np.arange(half), np.arange(-half, 0)]).astype(np_dtype(elem))
    codes = np.arange(n, dtype=np.uint8)
    if elem in (TP.FLOAT4E2M1, TP.FLOAT8E8M0, TP.FLOAT8E4M3FN):
        return codes.view(np_dtype(elem))
    return codes.astype(np_dtype(elem))


@pytest.mark.parametrize(("src", "to"), _BITCASTS)
@pytest.mark.parametrize("script", [False, True])
def test_bitcast(src: int, to: int, script: bool) -> None:
    x = _every_code(src)
    model = _model(
        [helper.make_node("BitCast", ["x"], ["y"], to=to)], [("x", src, [None])], [("y", to)]
    )
    (y,) = _run(model, [x], script)
    _same(y, _every_code(to))  # code i of one type is code i of the other


def test_bitcast_refuses_other_widths() -> None:
    node = helper.make_node("BitCast", ["x"], ["y"], to=TP.INT8)
    model = _model([node], [("x", TP.INT4, [2])], [("y", TP.INT8)])
    with pytest.raises(Exception, match="different widths"):
        _run(model, [np.zeros(2, ml_dtypes.int4)], script=False)


# -- QuantizeLinear / DequantizeLinear -------------------------------------------------------


def _qdq_models(elem: int, axis: int, block: int) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    attrs = {"axis": axis, "block_size": block} if block else {"axis": axis}
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], **attrs)
    dq = helper.make_node("DequantizeLinear", ["y", "s", "zp"], ["z"], **attrs)
    ins = [("x", TP.FLOAT, [4, 6]), ("s", TP.FLOAT, None), ("zp", elem, None)]
    quant = _model([q], ins, [("y", elem)])
    both = _model([q, dq], ins, [("y", elem), ("z", TP.FLOAT)])
    return quant, both


@pytest.mark.parametrize("elem", [*SUBBYTE_INTS, TP.FLOAT4E2M1])
@pytest.mark.parametrize(("axis", "block"), [(0, 0), (1, 0), (1, 4), (0, 3)])
@pytest.mark.parametrize("script", [False, True])
def test_quantize_dequantize(elem: int, axis: int, block: int, script: bool) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 6)) * 6).astype(np.float32)
    # far out of range saturates (+-inf are left out: the reference converts them to int32
    # first, an undefined conversion that gives INT_MIN, which a zero point then wraps)
    x[0, :3] = [1e9, -1e9, 300.0]
    n = 4 if axis == 0 else 6
    n = -(-n // block) if block else n
    shape = [n] if not block else ([n, 6] if axis == 0 else [4, n])
    s = rng.uniform(0.3, 2.0, shape).astype(np.float32)
    zp_vals = {TP.INT4: [-1, 0, 2], TP.UINT4: [8, 3, 0], TP.INT2: [-1, 0, 1], TP.UINT2: [1, 2, 0]}
    zp_vals[TP.FLOAT4E2M1] = [0.0, 0.5, 0.0]
    zp = np.resize(np.array(zp_vals[elem]), shape).astype(np_dtype(elem))
    _, both = _qdq_models(elem, axis, block)
    want = ReferenceEvaluator(both).run(None, {"x": x, "s": s, "zp": zp})
    got = _run(both, [x, s, zp], script)
    _same(got[0], want[0])
    assert not compare(want[1], got[1], 1e-6, 1e-6)


# -- the ONNX node cases and CUDA ------------------------------------------------------------


@functools.cache
def _carrier_cases() -> list[Case]:
    out = []
    for c in plain_node_cases():
        dts = {np.asarray(a).dtype.name for i, o in c.data_sets for a in [*i, *o]}
        if dts & _NAMES:
            out.append(c)
    return out


def test_there_are_carrier_cases() -> None:
    assert len(_carrier_cases()) >= 80


@pytest.mark.parametrize("case", _carrier_cases(), ids=lambda c: c.name)
def test_onnx_node_case(case: Case) -> None:
    outcome = run_case(case, neffkit_torch_runner)
    assert outcome.status == "passed", f"{case.name}: {outcome.message}"


def _device_models() -> list[tuple[onnx.ModelProto, list[np.ndarray]]]:
    """Graphs through every carrier helper, with inputs, to run on CUDA and on the CPU."""
    out = []
    for src in (TP.DOUBLE, TP.FLOAT, TP.FLOAT16):
        for to in (*SUBBYTE_INTS, TP.FLOAT4E2M1):
            out.append((_cast_model(src, to), [FLOATS.astype(np_dtype(src))]))
    for mode in ("up", "down", "nearest"):
        for sat in (0, 1):
            m = _cast_model(TP.FLOAT, TP.FLOAT8E8M0, saturate=sat, round_mode=mode)
            out.append((m, [_e8m0_inputs()]))
    for src, to in _BITCASTS:
        node = helper.make_node("BitCast", ["x"], ["y"], to=to)
        out.append((_model([node], [("x", src, [None])], [("y", to)]), [_every_code(src)]))
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4, 6)) * 6).astype(np.float32)
    for elem in (*SUBBYTE_INTS, TP.FLOAT4E2M1):
        _, both = _qdq_models(elem, 1, 4)
        s = rng.uniform(0.3, 2.0, [4, 2]).astype(np.float32)
        out.append((both, [x, s, np.ones([4, 2]).astype(np_dtype(elem))]))
    return out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("script", [False, True])
def test_cuda(script: bool) -> None:
    # the ONNX node cases, on the device
    for case in [c for c in _carrier_cases() if "_expanded" not in c.name]:
        g = load(case.load_model())
        module = tb.compile(g, device="cuda")
        if script:
            module = torch.jit.script(module)
        for inputs, expected in case.data_sets:
            got = tb.run(g, inputs, device="cuda", module=module)
            for e, o in zip(expected, got):
                assert not compare(e, o, case.rtol, case.atol), case.name
    # every helper on the device gives the CPU's bits
    for model, feed in _device_models():
        g = load(model)
        module = tb.compile(g, device="cuda")
        if script:
            module = torch.jit.script(module)
        want = tb.run(g, feed)
        got = tb.run(g, feed, device="cuda", module=module)
        for w, o in zip(want, got):
            _same(o, w)
