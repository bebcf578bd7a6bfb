"""A small inline-SVG toolkit shared by every dashboard chart.

Charts are drawn on the server as plain SVG so pages need no chart library and tests can read
the data back from attributes: every mark carries ``data-*`` attributes with the values it shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

Attrs = Mapping[str, object]


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def attrs_text(attrs: Attrs) -> str:
    """Render attributes (``data_trial`` becomes ``data-trial``), escaped, None values dropped."""
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f'{name}="{escape(_fmt(value), quote=True)}"')
    return " ".join(parts)


def element(tag: str, attrs: Attrs, body: str = "") -> str:
    """One SVG element; ``body`` is inserted as is (already escaped or markup)."""
    return f"<{tag} {attrs_text(attrs)}>{body}</{tag}>"


@dataclass(frozen=True)
class Scale:
    """A linear map from a data interval onto a pixel interval."""

    low: float
    high: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        """The pixel position of ``value``."""
        span = self.high - self.low
        if span == 0:
            return (self.start + self.end) / 2
        return self.start + (value - self.low) / span * (self.end - self.start)


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]``.

    Args:
        low: Lower bound.
        high: Upper bound.
        count: Roughly how many ticks to place.
        integer: Only whole-number ticks (epochs, counts): the step is at least 1 and never
            2.5, so a short range gets fewer ticks rather than fractional ones.

    Raises:
        ValueError: if a bound is not finite.
    """
    if not math.isfinite(low) or not math.isfinite(high):
        raise ValueError(f"tick bounds must be finite, got {low}, {high}")
    if high <= low:
        return [float(math.ceil(low))] if integer and math.ceil(low) <= high else [low]
    raw = (high - low) / max(count, 1)
    if integer:
        raw = max(raw, 1.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def padded_range(values: Iterable[float], pad: float = 0.05) -> tuple[float, float]:
    """The range of ``values`` widened by ``pad`` of its span (or by 0.5 when flat)."""
    items = [v for v in values if math.isfinite(v)]
    if not items:
        return 0.0, 1.0
    low, high = min(items), max(items)
    span = high - low
    margin = span * pad if span > 0 else 0.5
    return low - margin, high + margin


@dataclass
class Chart:
    """A plot area with margins, axes and an element list, rendered as one ``<svg>``.

    Args:
        kind: Chart name, written as ``data-chart`` so pages and tests find it.
        width: Width in pixels (the SVG scales to its container through ``viewBox``).
        height: Height in pixels.
        title: Accessible title.
    """

    kind: str
    width: int = 640
    height: int = 320
    title: str = ""
    margin: tuple[int, int, int, int] = (16, 16, 36, 52)  # top, right, bottom, left
    parts: list[str] = field(default_factory=list)

    @property
    def plot_left(self) -> float:
        """Left edge of the plot area."""
        return float(self.margin[3])

    @property
    def plot_right(self) -> float:
        """Right edge of the plot area."""
        return float(self.width - self.margin[1])

    @property
    def plot_top(self) -> float:
        """Top edge of the plot area."""
        return float(self.margin[0])

    @property
    def plot_bottom(self) -> float:
        """Bottom edge of the plot area."""
        return float(self.height - self.margin[2])

    def x_scale(self, low: float, high: float) -> Scale:
        """A horizontal scale over the plot area."""
        return Scale(low, high, self.plot_left, self.plot_right)

    def y_scale(self, low: float, high: float) -> Scale:
        """A vertical scale over the plot area (values grow upwards)."""
        return Scale(low, high, self.plot_bottom, self.plot_top)

    def add(self, tag: str, attrs: Attrs, body: str = "") -> None:
        """Append one element."""
        self.parts.append(element(tag, attrs, body))

    def text(self, x: float, y: float, label: str, **attrs: object) -> None:
        """Append a text label (escaped)."""
        self.add("text", {"x": round(x, 1), "y": round(y, 1), **attrs}, escape(label))

    def axes(self, x: Scale | None, y: Scale | None, x_label: str = "", y_label: str = "",
             y_format: str = "{:.2f}", x_format: str = "{:g}",
             x_integer: bool = False) -> None:  # fmt: skip
        """Draw the frame, grid lines, tick labels and axis titles (``x_integer``: whole ticks)."""
        left, right, top, bottom = self.plot_left, self.plot_right, self.plot_top, self.plot_bottom
        self.add("rect", {"class": "frame", "x": left, "y": top, "width": right - left,
                          "height": bottom - top})  # fmt: skip
        if y is not None:
            for tick in nice_ticks(min(y.low, y.high), max(y.low, y.high)):
                py = round(y(tick), 1)
                self.add("line", {"class": "grid", "x1": left, "y1": py, "x2": right, "y2": py})
                self.text(left - 6, py + 4, y_format.format(tick), class_="tick", text_anchor="end")
        if x is not None:
            for tick in nice_ticks(min(x.low, x.high), max(x.low, x.high), integer=x_integer):
                px = round(x(tick), 1)
                self.text(
                    px, bottom + 16, x_format.format(tick), class_="tick", text_anchor="middle"
                )
        if x_label:
            self.text((left + right) / 2, self.height - 4, x_label, class_="axis-label",
                      text_anchor="middle")  # fmt: skip
        if y_label:
            self.text(12, (top + bottom) / 2, y_label, class_="axis-label", text_anchor="middle",
                      transform=f"rotate(-90 12 {(top + bottom) / 2:.1f})")  # fmt: skip

    def polyline(self, points: Sequence[tuple[float, float]], **attrs: object) -> None:
        """Append a polyline through pixel ``points``."""
        coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.add("polyline", {"points": coords, "fill": "none", **attrs})

    def render(self, empty_message: str | None = None) -> str:
        """The finished ``<svg>`` markup; ``empty_message`` is drawn when nothing was plotted."""
        body = "".join(self.parts)
        if empty_message is not None:
            body += element("text", {"class": "empty", "x": self.width / 2, "y": self.height / 2,
                                     "text-anchor": "middle"}, escape(empty_message))  # fmt: skip
        title = element("title", {}, escape(self.title)) if self.title else ""
        head = attrs_text({"xmlns": "http://www.w3.org/2000/svg", "class": "chart",
                           "data_chart": self.kind, "viewBox": f"0 0 {self.width} {self.height}",
                           "role": "img", "aria-label": self.title or self.kind})  # fmt: skip
        return f"<svg {head}>{title}{body}</svg>"
