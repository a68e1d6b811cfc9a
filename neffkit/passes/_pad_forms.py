"""What ``pad-loop`` knows about a body value: padded axes, and affine forms of small integers.

A body value is in one of three states:

* **full**: the padded body computes exactly the original value;
* **padded** (``Padded``): the original has the loop's length L along some axes (the *time*
  axes), the padded body has the buffer's length P there; positions below L hold the original
  values, positions from L on are garbage (or exact zeros, along ``zero`` axes);
* **form** (``Forms``): a small integer tensor (a shape, an index, a step counter) whose
  elements are each known as an affine form of the iteration number i and of the time length
  S the body reads from shapes: the original holds ``a*i + c*S + b`` with ``S = k*i + L0``,
  the padded body holds ``a*i + c*P + b`` (``Shape`` of a padded value reads P). A use as data
  gets the original value back; a use as a shape gets P where the original had L.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: One element of a form: ("aff", a, c, b), ("sym", n) (a symbolic dim, the same in both
#: bodies; n its sentinel size), ("x",) (unknown, the same in both bodies: a product of such)
#: or ("bad",) (differs between the bodies and is not affine: unusable).
Elem = tuple[object, ...]
X: Elem = ("x",)
BAD: Elem = ("bad",)
#: forms of at most this many elements are tracked (shape vectors, indices, counters)
MAX_ELEMS = 64


def aff(a: int, c: int, b: int) -> Elem:
    """The form ``a*i + c*S + b``."""
    return ("aff", a, c, b)


def const(b: int) -> Elem:
    """The form of a constant."""
    return ("aff", 0, 0, b)


@dataclass(frozen=True)
class Padded:
    """A value padded along ``axes`` (valid below L); along ``zero`` its padding is exact 0."""

    axes: frozenset[int]
    zero: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Forms:
    """A small integer tensor known element by element (row-major) as forms."""

    elems: tuple[Elem, ...]
    shape: tuple[int, ...]

    @property
    def honest(self) -> bool:
        """True when the padded body computes the original values (no S, nothing bad)."""
        return all(_honest(e) for e in self.elems)

    @property
    def bad(self) -> bool:
        """True when an element differs between the bodies and cannot be restored."""
        return any(e[0] == "bad" for e in self.elems)


def original(e: Elem, k: int, l0: int) -> tuple[int, int] | None:
    """``(a, b)`` with the original element ``a*i + b``, or None when it is not affine."""
    if e[0] != "aff":
        return None
    _, a, c, b = e
    return int(a) + int(c) * k, int(b) + int(c) * l0  # type: ignore[call-overload]


def _honest(e: Elem) -> bool:
    return e[0] in ("x", "sym") or (e[0] == "aff" and e[2] == 0)


def add(p: Elem, q: Elem) -> Elem:
    """The form of ``p + q``."""
    if p[0] == "aff" and q[0] == "aff":
        return ("aff", p[1] + q[1], p[2] + q[2], p[3] + q[3])  # type: ignore[operator]
    return X if _honest(p) and _honest(q) else BAD


def neg(p: Elem) -> Elem:
    """The form of ``-p``."""
    if p[0] == "aff":
        return ("aff", -p[1], -p[2], -p[3])  # type: ignore[operator]
    return X if p[0] == "sym" else p


def mul(p: Elem, q: Elem) -> Elem:
    """The form of ``p * q`` (affine when one side is a constant)."""
    if p[0] == "sym" and q == const(1):
        return p
    if q[0] == "sym" and p == const(1):
        return q
    if p[0] == "aff" and q[0] == "aff":
        if p[1] == 0 and p[2] == 0:
            p, q = q, p
        if q[1] == 0 and q[2] == 0:
            s = q[3]
            return ("aff", p[1] * s, p[2] * s, p[3] * s)  # type: ignore[operator]
    return X if _honest(p) and _honest(q) else BAD


def broadcast_elems(
    a: Forms, b: Forms, op: str
) -> Forms | None:
    """Element-wise ``op`` (Add/Sub/Mul) of two forms, with numpy broadcasting of rank <= 1."""
    if len(a.shape) > 1 or len(b.shape) > 1:
        return None
    na, nb = len(a.elems), len(b.elems)
    if na != nb and 1 not in (na, nb):
        return None
    n = max(na, nb)
    shape = a.shape if len(a.shape) >= len(b.shape) else b.shape
    if na != nb:
        shape = (n,) if (a.shape or b.shape) else ()
    out = []
    for j in range(n):
        p = a.elems[0 if na == 1 else j]
        q = b.elems[0 if nb == 1 else j]
        if op == "Add":
            out.append(add(p, q))
        elif op == "Sub":
            out.append(add(p, neg(q)))
        else:
            out.append(mul(p, q))
    return Forms(tuple(out), shape)


#: op type -> rule(padder, node) for nodes that read a padded value or a shape holding L;
#: filled by ``neffkit.passes._pad_rules`` (the rules need the padder, which needs this table)
RULES: dict[str, Callable[[Any, Any], None]] = {}
#: op type -> rule(padder, node) -> bool for integer ops computed on forms (False: not here)
FORM_OPS: dict[str, Callable[[Any, Any], bool]] = {}
