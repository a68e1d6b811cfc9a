"""The shared shape arithmetic: numpy's rules on static shapes, and what symbols and unknown
dims give."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from neffkit.passes import shapes

_static = st.lists(st.integers(1, 4), max_size=4).map(tuple)


@given(st.lists(_static, min_size=1, max_size=3))
def test_broadcast_of_static_shapes_is_numpys(found: list[tuple[int, ...]]) -> None:
    try:
        want: tuple[int, ...] | None = tuple(np.broadcast_shapes(*found))
    except ValueError:
        want = None
    assert shapes.broadcast(*found) == want


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (("N", 1), (1, 4), ("N", 4)),
        (("N", 3), (3,), ("N", 3)),
        (("N", 3), ("M", 3), (None, 3)),  # two symbols: either may be 1
        (("N",), ("N",), ("N",)),
        ((None, 3), (1, 3), (None, 3)),
        (("N", 5), (2, 1), (2, 5)),  # a static dim wins: N must be 1 or 2
        ((2, 3), (4, 3), None),
        ((), (2,), (2,)),
    ],
)
def test_broadcast_with_symbols(a: tuple, b: tuple, want: tuple | None) -> None:
    assert shapes.broadcast(a, b) == want
    assert shapes.broadcast(b, a) == want


@pytest.mark.parametrize(
    ("x", "other", "want"),
    [((2, 3), (3,), True), ((2, 3), (1, 1), True), (("N", 3), (2, 3), False),
     ((3,), (2, 3), False), ((2, 3), (), True), ((2, 1), (3,), False)],
)  # fmt: skip
def test_keeps_shape(x: tuple, other: tuple, want: bool) -> None:
    assert shapes.keeps_shape(x, other) is want


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ((5, 2, 3), (3, 4), (5, 2, 4)),
        ((3,), (3, 4), (4,)),
        ((2, 3), (3,), (2,)),
        ((3,), (3,), ()),
        (("B", "T", 8), (8, 16), ("B", "T", 16)),
        ((2, 3), (4, 5), None),  # inner dims differ
        ((2, "K"), (3, 4), (2, 4)),  # a symbol there may be right
    ],
)
def test_matmul(a: tuple, b: tuple, want: tuple | None) -> None:
    assert shapes.matmul(a, b) == want


def test_gemm_and_transpose() -> None:
    assert shapes.gemm((3, 2), (3, 4), True, False) == (2, 4)
    assert shapes.gemm(("M", 8), (16, 8), False, True) == ("M", 16)
    assert shapes.gemm((2, 3), (4, 5), False, False) is None
    assert shapes.gemm((2, 3, 1), (3, 4), False, False) is None
    assert shapes.transpose((2, "N", 4), [2, 0, 1]) == (4, 2, "N")
    assert shapes.transpose((2, "N", 4), None) == (4, "N", 2)
    assert shapes.transpose((2, 3), [0, 0]) is None


@pytest.mark.parametrize(
    ("x", "target", "allowzero", "want"),
    [
        ((2, 3, 4), [0, -1], False, (2, 12)),
        ((2, 3, 4), [-1], False, (24,)),
        ((2, 3, 4), [4, 6], False, (4, 6)),
        ((2, 3, 4), [5, 5], False, None),  # element counts differ
        ((2, 3, 4), [-1, -1], False, None),
        ((2, 3, 4), [-1, 5], False, None),  # 24 is no multiple of 5
        ((2, 3, 4), [-2, 12], False, None),
        ((0, 3), [0, 3], True, (0, 3)),
        (("N", 3), [0, 3], False, ("N", 3)),  # a 0 copies the symbol
        (("N", 3), [-1, 3], False, None),  # -1 needs the element count
        (None, [2, 3], False, (2, 3)),  # no dim of x needed
        (None, [0, 3], False, None),
    ],
)
def test_reshape(x: tuple | None, target: list[int], allowzero: bool, want: tuple | None) -> None:
    assert shapes.reshape(x, target, allowzero) == want
