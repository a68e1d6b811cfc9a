"""neffkit's own ONNX ``Cast`` to the element types numpy lacks, and where the spec is silent.

The torch backend and constant folding must agree with the ONNX specification and with each
other, whatever version of ml_dtypes is installed (ml_dtypes 0.7 changed what out-of-range
float -> int4 casts give). This module is the numpy statement of the rules; the torch
backend's helpers (``backends/torch/ops/cast.py``) follow the same rules and
tests hold the two against each other.

The rules, for a cast to INT4 / UINT4 / INT2 / UINT2:

- integers and bools keep their low bits (two's complement), as the spec says for every
  fixed-point cast that is out of range (200 -> int4 -8);
- floats are truncated toward zero. Where the result is out of the target's range the spec
  leaves the cast undefined; neffkit then keeps the low bits of the truncated value (like an
  integer cast), and gives 0 for NaN, infinities and values beyond the int32 range.

FLOAT4E2M1 rounds to nearest even and saturates at +-6 (infinities included); NaN gives 0.
FLOAT8E8M0 follows the spec's table (see :func:`to_e8m0`).
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as TP

from neffkit.ir.tensor import np_dtype

#: (bits, signed) of the sub-byte integer types.
SUBBYTE_INTS: dict[int, tuple[int, bool]] = {
    TP.INT4: (4, True),
    TP.UINT4: (4, False),
    TP.INT2: (2, True),
    TP.UINT2: (2, False),
}

#: Element types whose casts neffkit computes itself (numpy has no kernels for them).
OWN_CAST_TYPES = frozenset((*SUBBYTE_INTS, TP.FLOAT4E2M1, TP.FLOAT8E8M0))

_INT_RANGES: dict[int, tuple[int, int]] = {
    TP.BOOL: (0, 1),
    TP.INT2: (-2, 1),
    TP.UINT2: (0, 3),
    TP.INT4: (-8, 7),
    TP.UINT4: (0, 15),
    TP.INT8: (-(2**7), 2**7 - 1),
    TP.UINT8: (0, 2**8 - 1),
    TP.INT16: (-(2**15), 2**15 - 1),
    TP.UINT16: (0, 2**16 - 1),
    TP.INT32: (-(2**31), 2**31 - 1),
    TP.UINT32: (0, 2**32 - 1),
    TP.INT64: (-(2**63), 2**63 - 1),
    TP.UINT64: (0, 2**64 - 1),
}

_E8M0_MIN = 2.0**-127
_E8M0_MAX = 2.0**127
_F32_MIN_NORMAL = 2.0**-126


def _is_float(arr: np.ndarray) -> bool:
    """True for numpy floats and the ml_dtypes float types (bfloat16, float8, float4 ...)."""
    if arr.dtype.kind == "f":
        return True
    name = arr.dtype.name
    return name.startswith(("bfloat", "float"))


def spec_defined(x: np.ndarray, to: int) -> np.ndarray:
    """Where ``Cast(x, to)`` has a result the ONNX spec defines (a bool mask like ``x``).

    Only float -> fixed-point casts have undefined elements: NaN, infinities and values whose
    truncation is outside the target's range. Every other cast is defined everywhere.
    """
    x = np.asarray(x)
    if to not in _INT_RANGES or to == TP.BOOL or not _is_float(x):
        return np.ones(x.shape, dtype=bool)
    lo, hi = _INT_RANGES[to]
    with np.errstate(invalid="ignore"):
        t = np.trunc(x.astype(np.float64))
        return np.isfinite(t) & (t >= lo) & (t <= hi)


def cast(x: np.ndarray, to: int, *, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``Cast(x, to)`` for a target in :data:`OWN_CAST_TYPES`, as an array of ``np_dtype(to)``.

    Raises:
        ValueError: ``to`` is not one of the types this module casts to.
    """
    x = np.asarray(x)
    if to in SUBBYTE_INTS:
        bits, signed = SUBBYTE_INTS[to]
        return _wrap_int_bits(x, bits, signed).astype(np_dtype(to))
    if to == TP.FLOAT4E2M1:
        return to_fp4(x).astype(np_dtype(to))
    if to == TP.FLOAT8E8M0:
        return to_e8m0(x, saturate, round_mode).astype(np_dtype(to))
    raise ValueError(f"neffkit casts only to {sorted(OWN_CAST_TYPES)}, not to type {to}")


def _wrap_int_bits(x: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """The low ``bits`` bits of ``x`` (floats truncated first) as int64 values of the type."""
    if _is_float(x):
        with np.errstate(invalid="ignore"):
            t = np.trunc(x.astype(np.float64))
            ok = (t >= -(2.0**31)) & (t <= 2.0**31 - 1)  # false for NaN
        v = np.where(ok, t, 0.0).astype(np.int64)
    elif x.dtype == np.uint64:
        v = (x & np.uint64((1 << bits) - 1)).astype(np.int64)
    else:
        v = x.astype(np.int64)
    v = v & ((1 << bits) - 1)
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


def to_fp4(x: np.ndarray) -> np.ndarray:
    """FLOAT4E2M1 values as float32: round to nearest even, saturate at +-6, NaN -> 0."""
    xf = np.asarray(x).astype(np.float64)
    with np.errstate(invalid="ignore"):
        a = np.minimum(np.abs(xf), 6.0)
        # the spacing of representable values: 0.5 below 2, 1 in [2, 4), 2 in [4, 6]
        step = np.where(a < 2.0, 0.5, np.where(a < 4.0, 1.0, 2.0))
        q = np.round(a / step) * step  # numpy rounds half to even
    q = np.where(np.isnan(q), 0.0, q)
    return np.copysign(q, xf).astype(np.float32)


def to_e8m0(x: np.ndarray, saturate: bool, round_mode: str) -> np.ndarray:
    """FLOAT8E8M0 values (powers of two, or NaN) as float32.

    The input is read as float32 and its sign ignored; the exponent is kept and moved up by
    one when ``round_mode`` is "up" and any mantissa bit is set, or "nearest" and the
    mantissa is >= 1.5. The spec's table decides the special rows: with saturate, Inf gives
    2^127 and values below 2^-127 give 2^-127; without saturate and "nearest", values below
    2^-127 (0 included) and above 2^127 give NaN.

    Raises:
        ValueError: ``round_mode`` is not "up", "down" or "nearest".
    """
    if round_mode not in ("up", "down", "nearest"):
        raise ValueError(f"round_mode must be up, down or nearest, not '{round_mode}'")
    a = np.abs(np.asarray(x).astype(np.float32)).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        m, _ = np.frexp(a)  # a = m * 2^e, m in [0.5, 1)
        p = a / (m * 2.0)  # 2^floor(log2(a)), exact for normal a
        if round_mode == "up":
            inc = m != 0.5
        elif round_mode == "nearest":
            inc = m >= 0.75
        else:
            inc = np.zeros(a.shape, dtype=bool)
        if saturate:
            inc = inc & (p != _E8M0_MAX)
        y = np.where(inc, p * 2.0, p)
        if round_mode == "up":
            tiny_up = a > 0.0
        elif round_mode == "nearest":
            tiny_up = a > _E8M0_MIN
        else:
            tiny_up = np.zeros(a.shape, dtype=bool)
        y = np.where(a < _F32_MIN_NORMAL, np.where(tiny_up, _F32_MIN_NORMAL, _E8M0_MIN), y)
        y = np.where(y > _E8M0_MAX, np.nan, y)  # the step past 2^127 overflows
        if saturate:
            y = np.where(a < _E8M0_MIN, _E8M0_MIN, y)
            y = np.where(np.isinf(a), _E8M0_MAX, y)
        else:
            y = np.where(np.isinf(a), np.nan, y)
            if round_mode == "nearest":
                y = np.where((a < _E8M0_MIN) | (a > _E8M0_MAX), np.nan, y)
        y = np.where(np.isnan(a), np.nan, y)
    return y.astype(np.float32)
