"""Cost models for partitioned decoders: a per-call overhead and a cost per step position.

The optimizer in :mod:`neffkit.tune.plan` sees only a :class:`CostModel`; where the numbers come
from is separate: :func:`neffkit.tune.measure.measure_costs` times a backend on this machine,
:func:`simulated` describes an accelerator by two parameters.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from neffkit.errors import NeffkitError

__all__ = ["CostModel", "interpolate", "padded", "parse_simulate", "simulated"]


@dataclass(frozen=True)
class CostModel:
    """What a partitioned decoder costs, in seconds.

    Attributes:
        overhead: the cost of one call of a compiled unit, whatever it computes.
        steps: ``steps[t - 1]`` is the cost of decoding step t (it computes over t positions),
            for t in 1..max_len, without the call overhead.
        source: how the numbers were obtained (printed with the result).
    """

    overhead: float
    steps: tuple[float, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.steps:
            raise NeffkitError("a cost model needs the cost of at least one step")
        bad = [x for x in (self.overhead, *self.steps) if not (math.isfinite(x) and x >= 0)]
        if bad:
            raise NeffkitError(f"costs must be finite and non-negative, got {bad[0]!r}")

    @property
    def max_len(self) -> int:
        """The longest request the model prices (the number of step positions)."""
        return len(self.steps)

    def partition(self, first: int, last: int) -> float:
        """The cost of one call that runs steps ``first..last`` (1-based, inclusive)."""
        return self.overhead + math.fsum(self.steps[first - 1 : last])


def simulated(overhead: float, per_position: float, max_len: int, fixed: float = 0.0) -> CostModel:
    """A simulated accelerator: each call costs ``overhead``, step t costs
    ``fixed + per_position * t`` (it computes over t positions)."""
    steps = tuple(fixed + per_position * t for t in range(1, max_len + 1))
    label = f"simulated: overhead {_ms(overhead)}, per position {_ms(per_position)}"
    if fixed:
        label += f", per step {_ms(fixed)}"
    return CostModel(overhead, steps, label)


def padded(costs: CostModel) -> CostModel:
    """The costs of the padded host loop (``pad-loop``): every step computes over all
    ``max_len`` positions, so every step costs what the last one does."""
    return CostModel(costs.overhead, (costs.steps[-1],) * costs.max_len, costs.source)


_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_KEYS = {"overhead": "overhead", "per-position": "per_position", "per-step": "fixed"}


def parse_simulate(text: str, max_len: int) -> CostModel:
    """The cost model of ``--simulate overhead=2ms,per-position=0.01ms[,per-step=0.1ms]``.

    Units: s, ms, us, ns (a bare number is seconds).

    Raises:
        NeffkitError: an unknown key, a missing one, or a value that is not a duration.
    """
    values: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in _KEYS:
            raise NeffkitError(
                f"--simulate: expected key=duration with key one of {', '.join(_KEYS)}, "
                f"got {item!r}"
            )
        values[_KEYS[key]] = _duration(raw.strip(), key)
    missing = [k for k in ("overhead", "per-position") if _KEYS[k] not in values]
    if missing:
        raise NeffkitError(f"--simulate: missing {' and '.join(missing)} (e.g. {_EXAMPLE})")
    return simulated(max_len=max_len, **values)


_EXAMPLE = "overhead=2ms,per-position=0.01ms"


def _duration(raw: str, key: str) -> float:
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|ns)?", raw)
    if m is None:
        raise NeffkitError(f"--simulate: {key}={raw!r} is not a duration (e.g. 2ms, 10us)")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def interpolate(measured: dict[int, float], max_len: int) -> tuple[float, ...]:
    """Step costs for 1..max_len from costs measured at some positions: linear between them,
    flat beyond the first and last measured position."""
    if not measured:
        raise NeffkitError("no step position was measured")
    xs: Sequence[int] = sorted(measured)
    out = []
    for t in range(1, max_len + 1):
        if t <= xs[0]:
            out.append(measured[xs[0]])
        elif t >= xs[-1]:
            out.append(measured[xs[-1]])
        else:
            hi = next(i for i, x in enumerate(xs) if x >= t)
            a, b = xs[hi - 1], xs[hi]
            w = (t - a) / (b - a)
            out.append(measured[a] * (1 - w) + measured[b] * w)
    return tuple(out)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:g} ms"
