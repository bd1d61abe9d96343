"""The page's charts as geometry: rectangles and lines the templates draw as inline SVG.

Drawn on the server, so the page needs no charting script; the geometry is pure arithmetic,
tested on its own. Coordinates are in the SVG's own units (its ``viewBox``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Bar", "Chart", "columns", "horizontal_bars"]


@dataclass(frozen=True, kw_only=True)
class Bar:
    label: str
    value: int
    x: float
    y: float
    width: float
    height: float
    #: a CSS class naming the bar's kind (e.g. the outcome), for its colour
    kind: str = ""


@dataclass(frozen=True, kw_only=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    #: the largest value the chart's scale reaches (at least the largest bar)
    scale: int
    #: the y of a horizontal limit line (columns with a limit), else None
    limit_y: float | None = None
    limit: int | None = None

    @property
    def empty(self) -> bool:
        return not any(bar.value for bar in self.bars)


def horizontal_bars(
    items: Sequence[tuple[str, int, str]],
    *,
    width: int = 320,
    bar_height: int = 18,
    gap: int = 6,
) -> Chart:
    """One bar per (label, value, kind), each as long as its share of the largest."""
    scale = max((value for _, value, _ in items), default=0)
    bars = tuple(
        Bar(
            label=label,
            value=value,
            x=0.0,
            y=float(i * (bar_height + gap)),
            width=width * value / scale if scale else 0.0,
            height=float(bar_height),
            kind=kind,
        )
        for i, (label, value, kind) in enumerate(items)
    )
    height = max(len(items) * (bar_height + gap) - gap, 0)
    return Chart(width=width, height=height, bars=bars, scale=scale)


def columns(
    values: Sequence[tuple[str, int]],
    *,
    width: int = 600,
    height: int = 120,
    gap: float = 1.0,
    limit: int | None = None,
) -> Chart:
    """One column per (label, value), left to right, grown from the bottom; ``limit`` draws a
    line the columns are measured against (the scale reaches it, or the highest column)."""
    scale = max([value for _, value in values] + [limit or 0])
    step = width / len(values) if values else 0.0
    bars = []
    for i, (label, value) in enumerate(values):
        tall = height * value / scale if scale else 0.0
        bars.append(
            Bar(
                label=label,
                value=value,
                x=i * step,
                y=height - tall,
                width=max(step - gap, 0.5),
                height=tall,
                kind="over" if limit is not None and value > limit else "",
            )
        )
    limit_y = height - height * limit / scale if limit is not None and scale else None
    return Chart(
        width=width, height=height, bars=tuple(bars), scale=scale, limit_y=limit_y, limit=limit
    )
