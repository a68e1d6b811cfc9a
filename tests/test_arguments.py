"""``check_run_arguments``: arguments of the wrong Python type or sign end in a NeffkitError
that names the argument, before anything runs; every accepted form passes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from neffkit.arguments import check_run_arguments
from neffkit.errors import NeffkitError


@pytest.mark.parametrize(
    "inputs",
    [
        None,
        [np.zeros(2)],
        (np.zeros(2),),
        {"x": np.zeros(2)},
        [{"x": np.zeros(2)}, {"x": np.ones(2)}],
        "inputs.npz",
        Path("inputs.npz"),
    ],
    ids=["none", "list", "tuple", "dict", "sets", "str-path", "path"],
)
def test_every_documented_form_of_inputs_passes(inputs: object) -> None:
    check_run_arguments(inputs)


@pytest.mark.parametrize(
    "inputs", [np.zeros(2), b"abc", 3, 1.5, {1, 2}], ids=["array", "bytes", "int", "float", "set"]
)
def test_inputs_of_another_type_are_refused_by_name(inputs: object) -> None:
    with pytest.raises(NeffkitError, match=rf"^inputs must be .*got {type(inputs).__name__}$"):
        check_run_arguments(inputs)


@pytest.mark.parametrize("seed", [0, 7, -1, np.int64(3), np.uint8(1)])
def test_integer_seeds_pass(seed: object) -> None:
    check_run_arguments(seed=seed)


@pytest.mark.parametrize("seed", [True, False, 1.0, "1", None, np.float32(1)])
def test_other_seeds_are_refused(seed: object) -> None:
    with pytest.raises(NeffkitError, match="^seed must be an integer"):
        check_run_arguments(seed=seed)


@pytest.mark.parametrize("name", ["atol", "rtol"])
@pytest.mark.parametrize("value", [None, 0, 0.0, 1e-5, 3, np.float32(0.1), np.int32(2)])
def test_non_negative_finite_tolerances_pass(name: str, value: object) -> None:
    check_run_arguments(**{name: value})


@pytest.mark.parametrize("name", ["atol", "rtol"])
@pytest.mark.parametrize("value", [True, "0.1", [0.1], complex(1, 0)])
def test_tolerances_that_are_not_numbers_are_refused(name: str, value: object) -> None:
    with pytest.raises(NeffkitError, match=rf"^{name} must be a number, got"):
        check_run_arguments(**{name: value})


@pytest.mark.parametrize("name", ["atol", "rtol"])
@pytest.mark.parametrize("value", [-1e-9, -1, math.inf, math.nan, np.float64(-np.inf)])
def test_negative_or_non_finite_tolerances_are_refused(name: str, value: object) -> None:
    with pytest.raises(NeffkitError, match=rf"^{name} must be a non-negative finite number"):
        check_run_arguments(**{name: value})


def test_the_first_bad_argument_is_named() -> None:
    # inputs are checked before the seed, the seed before the tolerances
    with pytest.raises(NeffkitError, match="^inputs"):
        check_run_arguments(inputs=3, seed="x", atol=-1)
    with pytest.raises(NeffkitError, match="^seed"):
        check_run_arguments(seed="x", atol=-1)
    with pytest.raises(NeffkitError, match="^atol"):
        check_run_arguments(atol=-1, rtol=-1)
