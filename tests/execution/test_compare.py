"""The one per-dtype tolerance policy and the comparison of outputs under it (float16,
bfloat16, float32/64, integers, bool, NaN, sequences, optionals, missing outputs)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from neffkit.execution.compare import (
    compare,
    compare_all,
    default_tolerances,
    explain,
    tolerances,
)

BF16 = ml_dtypes.bfloat16


@pytest.mark.parametrize(
    ("dtype", "want"),
    [
        (np.float64, (1e-6, 1e-8)),
        (np.float32, (1e-4, 1e-5)),
        (np.float16, (1e-2, 1e-3)),
        (BF16, (5e-2, 1e-2)),
        (ml_dtypes.float8_e4m3fn, (0.25, 1e-2)),
        (np.complex64, (1e-4, 1e-5)),
        (np.int64, (0.0, 0.0)),
        (np.uint8, (0.0, 0.0)),
        (np.bool_, (0.0, 0.0)),
    ],
)
def test_default_tolerances_per_dtype(dtype, want) -> None:
    assert default_tolerances(dtype) == want
    assert tolerances(dtype) == want


def test_given_tolerances_apply_to_every_dtype_but_bool() -> None:
    assert tolerances(np.float16, rtol=0.5) == (0.5, 1e-3)
    assert tolerances(np.int32, atol=1) == (0.0, 1.0)
    assert tolerances(np.bool_, rtol=1, atol=1) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("dtype", "close", "far"),
    [
        (np.float32, 1 + 5e-5, 1 + 1e-3),
        (np.float16, 1 + 4e-3, 1 + 5e-2),
        (BF16, 1 + 3e-2, 1.25),
        (np.float64, 1 + 5e-7, 1 + 1e-5),
    ],
)
def test_floats_pass_within_their_dtypes_tolerance_and_fail_beyond(dtype, close, far) -> None:
    ref = np.ones(4, dtype)
    assert compare(ref, np.full(4, close, dtype)).ok
    bad = compare(ref, np.full(4, far, dtype), name="y")
    assert not bad.ok and bad.mismatches == 4
    assert explain(bad).startswith("4 of 4 elements outside")


def test_integers_and_bools_compare_exactly_unless_told() -> None:
    ref = np.array([1, 2, 3], np.int64)
    assert not compare(ref, ref + np.array([0, 0, 1])).ok
    assert compare(ref, ref + np.array([0, 0, 1]), atol=1).ok
    flags = np.array([True, False])
    assert not compare(flags, ~flags, atol=10).ok


def test_nan_and_inf_agree_only_in_the_same_place() -> None:
    ref = np.array([np.nan, np.inf, 1.0], np.float32)
    assert compare(ref, ref.copy()).ok
    assert not compare(ref, np.array([1.0, np.inf, 1.0], np.float32)).ok
    assert not compare(ref, np.array([np.nan, -np.inf, 1.0], np.float32)).ok


def test_shape_and_dtype_must_match() -> None:
    ref = np.zeros(3, np.float32)
    assert explain(compare(ref, np.zeros(4, np.float32))) == "shape [4] != reference [3]"
    assert explain(compare(ref, np.zeros(3, np.float64))) == "dtype float64 != reference float32"


def test_sequences_and_optionals() -> None:
    a = [np.ones(2, np.float32), np.zeros(1, np.float32)]
    assert compare(a, [x.copy() for x in a]).ok
    short = compare(a, a[:1])
    assert "a sequence of 1 elements, the reference's has 2" in short.note
    assert compare(None, None).ok
    assert "candidate's optional is empty" in compare(np.ones(1), None).note


def test_compare_all_names_outputs_and_marks_missing_ones() -> None:
    ref = [np.ones(2, np.float32), np.ones(1, np.int64)]
    out = compare_all(ref, [np.ones(2, np.float32)], names=["y", "n"], rtol=0.0, atol=0.0)
    assert [(c.name, c.ok) for c in out] == [("y", True), ("n", False)]
    assert out[1].note == "missing from the candidate"
