"""Charts as inline SVG, drawn on the server: no chart library, no script, and the numbers
are in the page (each bar has a <title> with its label and value, for hover and for screen
readers). Styled by classes in dashboard.css, so both themes apply."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

Point = tuple[str, float]

WIDTH, HEIGHT, PAD = 1000, 150, 18


def bar_chart(
    points: Sequence[Point], *, label: str = "chart", unit: str = "", top: float | None = None
) -> str:
    """Bars for (label, value) points, scaled to `top` (default: the largest value; a
    share is clearer against its whole, top=100 for percentages)."""
    if not points:
        return _frame(label, "")
    top = max(top or 0.0, *(v for _, v in points)) or 1.0
    slot = WIDTH / len(points)
    bars = []
    for i, (name, value) in enumerate(points):
        height = (HEIGHT - PAD) * value / top
        x, y = i * slot + slot * 0.1, HEIGHT - PAD - height
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" '
            f'height="{height:.1f}"><title>{escape(name)}: {_num(value)}{escape(unit)}'
            "</title></rect>"
        )
    return _frame(label, "".join(bars) + _axis(points, top, unit))


def line_chart(points: Sequence[Point], *, label: str = "chart", unit: str = "") -> str:
    """A line through (label, value) points, scaled to the largest value."""
    if not points:
        return _frame(label, "")
    top = max(v for _, v in points) or 1.0
    step = WIDTH / max(len(points) - 1, 1)
    xy = [(i * step, HEIGHT - PAD - (HEIGHT - PAD) * v / top) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    dots = "".join(
        f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5"><title>{escape(name)}: '
        f"{_num(value)}{escape(unit)}</title></circle>"
        for (x, y), (name, value) in zip(xy, points, strict=True)
    )
    return _frame(
        label, f'<polyline class="line" points="{path}"/>{dots}' + _axis(points, top, unit)
    )


def _axis(points: Sequence[Point], top: float, unit: str) -> str:
    first, last = escape(points[0][0]), escape(points[-1][0])
    return (
        f'<text class="axis" x="0" y="{HEIGHT - 4}">{first}</text>'
        f'<text class="axis" x="{WIDTH}" y="{HEIGHT - 4}" text-anchor="end">{last}</text>'
        f'<text class="axis" x="0" y="10">max {_num(top)}{escape(unit)}</text>'
    )


def _frame(label: str, body: str) -> str:
    middle = f'x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle"'
    empty = "" if body else f'<text class="axis" {middle}>no data</text>'
    return (
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}">{body}{empty}</svg>'
    )


def _num(value: float) -> str:
    if value == int(value):
        return f"{value:g}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.2g}"  # $0.0044, not 0.00
