"""Shape arithmetic shared by every pass: broadcasting, MatMul / Gemm, Transpose and Reshape.

One copy of the ONNX shape rules for ``shape-infer``'s static rules (``shape_rules``) and for
the shapes the rewrite rules derive (``rewrite.rewriter``). A dim is an int, a symbol
(``"N"``) or ``None`` (unknown), as in :mod:`neffkit.ir.types`; on static shapes (ints only)
every function gives a static shape, and ``None`` means the shapes do not fit the op.

    broadcast((2, 1), (3,))          -> (2, 3)
    broadcast(("N", 1), (1, 4))      -> ("N", 4)
    broadcast((2,), (3,))            -> None        (not broadcastable)
    reshape((2, 3, 4), [0, -1])      -> (2, 12)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

from neffkit.ir.types import Dim

Dims = tuple[Dim, ...]
Static = tuple[int, ...]


def _symbolic(d: Dim) -> bool:
    return d is None or isinstance(d, str)


@overload
def broadcast(*shapes: Static) -> Static | None: ...
@overload
def broadcast(*shapes: Sequence[Dim]) -> Dims | None: ...
def broadcast(*shapes: Sequence[Dim]) -> Dims | None:
    """Multidirectional (numpy) broadcasting; None when two static dims clash.

    In one column: a static dim other than 1 wins (a symbol there must be 1 or that size);
    all 1 gives 1; one symbol and 1s give the symbol; two different symbols or an unknown
    dim give an unknown dim (``None``).
    """
    if len(shapes) == 2 and shapes[0] == shapes[1]:
        return tuple(shapes[0])  # the common case: each column broadcasts to itself
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for k in range(rank):
        size: Dim = None  # the static dim other than 1 seen so far
        other: Dim = 1  # the symbol seen so far (1: none)
        several = False  # two different symbols, or an unknown dim
        for s in shapes:
            j = len(s) - rank + k
            if j < 0:
                continue
            d = s[j]
            if d == 1:
                continue
            if d is not None and not isinstance(d, str):  # inline _symbolic: a hot loop
                if size is None:
                    size = d
                elif d != size:
                    return None
            elif d is None or (other != 1 and d != other):
                several = True
            else:
                other = d
        if size is not None:
            out.append(size)
        elif several:
            out.append(None)
        else:
            out.append(other)
    return tuple(out)


def keeps_shape(x: Sequence[Dim], other: Sequence[Dim]) -> bool:
    """True when broadcasting a tensor of shape ``x`` against ``other`` (static) leaves ``x``'s
    shape: ``other`` is no longer, and each of its dims is 1 or equals x's static dim."""
    if len(other) == 0:
        return True
    if len(other) > len(x):
        return False
    for od, xd in zip(reversed(other), reversed(x)):
        if od != 1 and not (isinstance(xd, int) and xd == od):
            return False
    return True


@overload
def matmul(a: Static, b: Static) -> Static | None: ...
@overload
def matmul(a: Sequence[Dim], b: Sequence[Dim]) -> Dims | None: ...
def matmul(a: Sequence[Dim], b: Sequence[Dim]) -> Dims | None:
    """``MatMul(a, b)`` (numpy matmul: a 1-D operand gains and then loses a dim; the batch
    dims broadcast); None when the inner dims are static and differ."""
    if not a or not b:
        return None
    a2 = (1, a[0]) if len(a) == 1 else tuple(a)
    b2 = (b[0], 1) if len(b) == 1 else tuple(b)
    if not _symbolic(a2[-1]) and not _symbolic(b2[-2]) and a2[-1] != b2[-2]:
        return None
    batch = broadcast(a2[:-2], b2[:-2])
    if batch is None:
        return None
    return batch + ((a2[-2],) if len(a) > 1 else ()) + ((b2[-1],) if len(b) > 1 else ())


@overload
def gemm(a: Static, b: Static, trans_a: bool, trans_b: bool) -> Static | None: ...
@overload
def gemm(a: Sequence[Dim], b: Sequence[Dim], trans_a: bool, trans_b: bool) -> Dims | None: ...
def gemm(a: Sequence[Dim], b: Sequence[Dim], trans_a: bool, trans_b: bool) -> Dims | None:
    """``Gemm(a, b)``: ``[M, N]`` from 2-D ``a`` and ``b``; None when K is static and differs."""
    if len(a) != 2 or len(b) != 2:
        return None
    m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
    k2, n = (b[1], b[0]) if trans_b else (b[0], b[1])
    if not _symbolic(k) and not _symbolic(k2) and k != k2:
        return None
    return (m, n)


@overload
def transpose(x: Static, perm: Sequence[int] | None) -> Static | None: ...
@overload
def transpose(x: Sequence[Dim], perm: Sequence[int] | None) -> Dims | None: ...
def transpose(x: Sequence[Dim], perm: Sequence[int] | None) -> Dims | None:
    """``Transpose(x, perm)`` (no perm reverses the dims); None when perm is no permutation."""
    p = list(range(len(x) - 1, -1, -1)) if perm is None else list(perm)
    if sorted(p) != list(range(len(x))):
        return None
    return tuple(x[i] for i in p)


@overload
def reshape(x: Static, target: Sequence[int], allowzero: bool) -> Static | None: ...
@overload
def reshape(x: Sequence[Dim] | None, target: Sequence[int], allowzero: bool) -> Dims | None: ...
def reshape(x: Sequence[Dim] | None, target: Sequence[int], allowzero: bool) -> Dims | None:
    """``Reshape(x, target)``: a ``0`` copies x's dim (without ``allowzero``), one ``-1``
    takes the rest of the element count (x and the other dims static); None when unknown or
    when the element counts cannot match. ``x`` may be None when the target needs no dim
    of it."""
    out: list[Dim] = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if x is None or i >= len(x):
                return None
            out.append(x[i])
        elif d < -1:
            return None
        else:
            out.append(d)
    if out.count(-1) > 1:
        return None
    xs = _ints(x)
    if -1 in out:
        known = _ints([d for d in out if d != -1])
        if xs is None or known is None:
            return None
        part = math.prod(known)
        total = math.prod(xs)
        if part == 0 or total % part:
            return None
        out[out.index(-1)] = total // part
    elif xs is not None:
        static = _ints(out)
        if static is not None and math.prod(static) != math.prod(xs):
            return None
    return tuple(out)


def _ints(dims: Sequence[Dim] | None) -> list[int] | None:
    """``dims`` when every one is static (an int), else None."""
    if dims is None:
        return None
    found = [d for d in dims if isinstance(d, int)]
    return found if len(found) == len(dims) else None
