"""A small SVG chart writer for bench results: grouped bars and lines, no plotting library.

The benches run where matplotlib is not installed; two chart kinds cover what they plot, as
plain SVG text that any browser and GitHub render.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

#: line and bar colours, one per series (colour-blind safe: Okabe-Ito)
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000")

_W, _H = 760, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 200, 40, 60


def _nice_max(value: float) -> float:
    """A round axis end at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _ticks(top: float, count: int = 5) -> list[float]:
    return [top * i / count for i in range(count + 1)]


def _decades(low: float, top: float) -> list[float]:
    n = round(math.log10(top / low))
    return [low * 10**i for i in range(n + 1)]


def _fraction(value: float, top: float, low: float | None) -> float:
    """Where ``value`` sits on the y axis, 0 at the bottom and 1 at the top."""
    if low is None:
        return value / top
    value = max(value, low)
    return math.log10(value / low) / math.log10(top / low)


def _num(x: float) -> str:
    return f"{x:g}" if abs(x) >= 0.01 or x == 0 else f"{x:.1e}"


def _frame(
    title: str, y_label: str, x_label: str, y_top: float, y_low: float | None = None
) -> list[str]:
    """The SVG header, title, y grid with ticks (by decade from ``y_low`` when given: a log
    axis), and axis labels."""
    plot_h = _H - _TOP - _BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{_W}" height="{_H}" fill="white"/>',
        f'<text x="{_W / 2}" y="22" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]
    for tick in _ticks(y_top) if y_low is None else _decades(y_low, y_top):
        y = _TOP + plot_h * (1 - _fraction(tick, y_top, y_low))
        out.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        out.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(tick)}</text>')
    mid = _TOP + plot_h / 2
    out.append(
        f'<text x="16" y="{mid}" text-anchor="middle" transform="rotate(-90 16 {mid})">'
        f"{escape(y_label)}</text>"
    )
    out.append(
        f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 12}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    out.append(
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" '
        'stroke="black"/>'
    )
    return out


def _legend(names: Sequence[str], dashed: Sequence[bool] | None = None) -> list[str]:
    out = []
    for i, name in enumerate(names):
        y = _TOP + 10 + 20 * i
        x = _W - _RIGHT + 14
        colour = COLOURS[i % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if dashed and dashed[i] else ""
        out.append(
            f'<line x1="{x}" y1="{y}" x2="{x + 22}" y2="{y}" stroke="{colour}" '
            f'stroke-width="4"{dash}/>'
        )
        out.append(f'<text x="{x + 28}" y="{y + 4}">{escape(name)}</text>')
    return out


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: dict[str, Sequence[float | None]],
    y_label: str,
    x_label: str = "",
    log: bool = False,
) -> str:
    """Grouped bars: one group per ``groups`` entry, one bar per series (None: no bar); ``log``
    draws the y axis by decades (for values that span several)."""
    values = [v for vs in series.values() for v in vs if v is not None and v > 0]
    y_top = _nice_max(max(values, default=1.0))
    y_low = None
    if log:
        y_top = 10 ** math.ceil(math.log10(max(values, default=1.0)))
        y_low = 10 ** math.floor(math.log10(min(values, default=1.0)))
        y_top = max(y_top, y_low * 10)
    out = _frame(title, y_label, x_label, y_top, y_low)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.8 / max(1, len(series))
    for g, label in enumerate(groups):
        x0 = _LEFT + g * group_w + group_w * 0.1
        for s, vs in enumerate(series.values()):
            v = vs[g]
            if v is None:
                continue
            h = plot_h * _fraction(v, y_top, y_low)
            x = x0 + s * bar_w
            out.append(
                f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar_w * 0.9:.1f}" '
                f'height="{h:.1f}" fill="{COLOURS[s % len(COLOURS)]}">'
                f"<title>{escape(label)}: {v:.3g}</title></rect>"
            )
        cx = _LEFT + g * group_w + group_w / 2
        head, _, tail = label.partition("-")  # two lines: the labels are long
        y = _H - _BOTTOM + 16
        out.append(
            f'<text x="{cx:.1f}" y="{y}" text-anchor="middle">{escape(head)}'
            f'<tspan x="{cx:.1f}" dy="14">{escape(tail)}</tspan></text>'
        )
    out += _legend(list(series))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def line_chart(
    title: str,
    series: dict[str, Sequence[tuple[float, float]]],
    y_label: str,
    x_label: str,
    dashed: Sequence[bool] | None = None,
) -> str:
    """One polyline per series of (x, y) points, x from 0 to the largest x."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    x_top = _nice_max(max(xs, default=1.0))
    y_top = _nice_max(max(ys, default=1.0))
    out = _frame(title, y_label, x_label, y_top)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    for tick in _ticks(x_top):
        x = _LEFT + plot_w * tick / x_top
        out.append(
            f'<text x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{_num(tick)}</text>'
        )
    for i, pts in enumerate(series.values()):
        coords = " ".join(
            f"{_LEFT + plot_w * x / x_top:.1f},{_TOP + plot_h * (1 - y / y_top):.1f}"
            for x, y in sorted(pts)
        )
        dash = ' stroke-dasharray="5 3"' if dashed and dashed[i] else ""
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="{COLOURS[i % len(COLOURS)]}" '
            f'stroke-width="2"{dash}/>'
        )
    out += _legend(list(series), dashed)
    out.append("</svg>")
    return "\n".join(out) + "\n"
