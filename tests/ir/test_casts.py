"""neffkit's own casts to int4 / uint4 / int2 / uint2 / float4e2m1 / float8e8m0, against the
ONNX spec written out by hand (no ml_dtypes conversion decides an expected value here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto as TP

from neffkit.backends.torch.ops.cast import round_e8m0, round_fp4, wrap_int_bits
from neffkit.ir.casts import SUBBYTE_INTS, cast, spec_defined, to_e8m0, to_fp4

X = np.array(
    [-1e6, -9.5, -9.0, -8.5, -8.0, -7.9, -2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 0.99, 1.5, 2.5, 3.0,
     7.0, 7.99, 8.0, 15.0, 15.99, 16.0, 17.0, 3e9, np.nan, np.inf, -np.inf],
    dtype=np.float64,
)  # fmt: skip

# truncation toward zero; out of range: low bits of the truncated value; NaN / Inf / beyond
# int32: 0
WANT = {
    TP.INT4: [0, 7, 7, -8, -8, -7, -2, -1, 0, 0, 0, 0, 0, 1, 2, 3,
              7, 7, -8, -1, -1, 0, 1, 0, 0, 0, 0],
    TP.UINT4: [0, 7, 7, 8, 8, 9, 14, 15, 0, 0, 0, 0, 0, 1, 2, 3,
               7, 7, 8, 15, 15, 0, 1, 0, 0, 0, 0],
    TP.INT2: [0, -1, -1, 0, 0, 1, -2, -1, 0, 0, 0, 0, 0, 1, -2, -1,
              -1, -1, 0, -1, -1, 0, 1, 0, 0, 0, 0],
    TP.UINT2: [0, 3, 3, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 1, 2, 3,
               3, 3, 0, 3, 3, 0, 1, 0, 0, 0, 0],
}  # fmt: skip


@pytest.mark.parametrize("to", list(SUBBYTE_INTS))
def test_float_to_subbyte_int_follows_the_stated_rules(to: int) -> None:
    got = cast(X, to).astype(np.int64)
    assert got.tolist() == WANT[to]


@pytest.mark.parametrize("to", list(SUBBYTE_INTS))
def test_integers_keep_their_low_bits(to: int) -> None:
    # the spec: fixed point -> fixed point out of range discards the higher bits
    bits, signed = SUBBYTE_INTS[to]
    x = np.array([-200, -129, -9, -8, -3, -1, 0, 1, 3, 7, 8, 15, 16, 17, 200], np.int64)
    low = x & ((1 << bits) - 1)
    want = np.where(signed & (low >= 1 << (bits - 1)), low - (1 << bits), low)
    assert cast(x, to).astype(np.int64).tolist() == want.tolist()
    big = np.array([2**64 - 1, 2**63, 5], np.uint64)
    lowb = (big & np.uint64((1 << bits) - 1)).astype(np.int64)
    want_b = np.where(signed & (lowb >= 1 << (bits - 1)), lowb - (1 << bits), lowb)
    assert cast(big, to).astype(np.int64).tolist() == want_b.tolist()


def test_spec_defined_marks_only_float_out_of_range_elements() -> None:
    d = spec_defined(X, TP.INT4)
    in_range = [-8.5, -8.0, -7.9, -2.5, -1.5, -0.5, -0.0, 0.0, 0.5, 0.99, 1.5, 2.5, 3.0, 7.0, 7.99]
    assert sorted(X[d].tolist()) == sorted(in_range)
    assert spec_defined(np.array([200, -200]), TP.INT4).all()  # integers: always defined
    assert spec_defined(X, TP.FLOAT).all()
    assert spec_defined(np.array([300.0, -1.0, 255.9]), TP.UINT8).tolist() == [False, False, True]


def test_float4_rounds_to_nearest_even_and_saturates() -> None:
    x = np.array([0.24, 0.25, 0.26, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 5.01, 6.5, 100.0, np.inf,
                  -np.inf, -0.3, np.nan, -0.0])  # fmt: skip
    want = [0.0, 0.0, 0.5, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 6.0, 6.0, -6.0, -0.5, 0.0, -0.0]
    got = to_fp4(x)
    assert got.tolist() == want
    assert np.signbit(got[-1])


def test_e8m0_special_rows_follow_the_spec_table() -> None:
    x = np.array([0.0, np.inf, 1e-40, np.nan, 2.0**127 * 1.25, 4.0, 5.0, 6.0], np.float32)
    lo, hi, nan = 2.0**-127, 2.0**127, np.nan
    np.testing.assert_array_equal(
        to_e8m0(x, True, "up"), np.array([lo, hi, lo, nan, hi, 4.0, 8.0, 8.0], np.float32)
    )
    np.testing.assert_array_equal(
        to_e8m0(x, False, "nearest"), np.array([nan, nan, nan, nan, nan, 4.0, 4.0, 8.0], np.float32)
    )
    np.testing.assert_array_equal(to_e8m0(np.array([5.0, 7.9], np.float32), True, "down"), [4, 4])
    with pytest.raises(ValueError, match="round_mode"):
        to_e8m0(x, True, "sideways")


def _wide_floats() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate(
        [
            X,
            rng.uniform(-20, 20, 2000),
            np.arange(-40, 40, 0.25),
            np.ldexp(rng.uniform(1, 2, 500), rng.integers(-130, 128, 500)),
        ]
    ).astype(np.float32)


@pytest.mark.parametrize("to", list(SUBBYTE_INTS))
def test_numpy_rules_equal_the_torch_backend_helpers_int(to: int) -> None:
    x = _wide_floats()
    bits, signed = SUBBYTE_INTS[to]
    t = wrap_int_bits(torch.from_numpy(x), bits, signed, torch.int8).numpy()
    np.testing.assert_array_equal(t.astype(np.int64), cast(x, to).astype(np.int64))


def test_numpy_rules_equal_the_torch_backend_helpers_float() -> None:
    x = _wide_floats()
    np.testing.assert_array_equal(round_fp4(torch.from_numpy(x)).numpy(), to_fp4(x))
    for sat in (True, False):
        for mode in ("up", "down", "nearest"):
            got = round_e8m0(torch.from_numpy(np.abs(x)), sat, mode).numpy()
            np.testing.assert_array_equal(got, to_e8m0(np.abs(x), sat, mode))
