"""The dashboard's charts, drawn as inline SVG with one ``data-*`` annotated mark per datum."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from service.dashboard.svg import Chart, padded_range

SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


@dataclass(frozen=True)
class TrialPoint:
    """What the charts need of one trial.

    Attributes:
        number: Optuna trial number (the order trials were created in).
        role: ``baseline``, ``search`` or ``final``.
        state: Optuna state name (``COMPLETE``, ``PRUNED``, ``RUNNING``, ...).
        value: Final validation accuracy (None unless COMPLETE).
        epochs: Per-epoch validation accuracy (None for an epoch that did not validate:
            proxy trainings validate every few epochs).
        baseline: Preset name of a baseline trial.
        contender: Label of the final pick's contender a final trial retrains.
    """

    number: int
    role: str
    state: str
    value: float | None
    epochs: Sequence[float | None] = field(default_factory=tuple)
    baseline: str | None = None
    contender: str | None = None

    @property
    def shown_value(self) -> float | None:
        """The value to plot: the final value, or the last epoch a pruned trial reached."""
        if self.value is not None:
            return self.value
        reached = _finite(self.epochs)
        if self.state == "PRUNED" and reached:
            return reached[-1]
        return None


@dataclass(frozen=True)
class Bar:
    """One bar of a bar chart: its label, length and extra ``data-*`` attributes."""

    label: str
    value: float
    data: dict[str, object] = field(default_factory=dict)
    note: str = ""


def _finite(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def trial_scatter(trials: Sequence[TrialPoint], baselines: dict[str, float | None]) -> str:
    """Accuracy of every finished trial by trial number, the best-so-far line, baseline lines.

    Args:
        trials: The search's trials; those without a value to show are skipped.
        baselines: Value of each baseline preset (None while it has not finished).

    Returns:
        SVG markup: ``circle.point`` per trial (``data-trial``, ``data-value``, ``data-role``,
        ``data-state``), ``polyline.best-so-far`` (``data-values``) and one
        ``line.baseline`` per finished baseline (``data-baseline``, ``data-value``).
    """
    chart = Chart("trials", title="Validation accuracy of every trial")
    shown = [t for t in trials if t.shown_value is not None]
    done_baselines = {k: v for k, v in baselines.items() if v is not None}
    if not shown and not done_baselines:
        chart.axes(None, None)
        return chart.render("No finished trial yet")
    numbers = [t.number for t in trials] or [0]
    x = chart.x_scale(min(numbers) - 0.5, max(numbers) + 0.5)
    low, high = padded_range(
        _finite([t.shown_value for t in shown]) + list(done_baselines.values())
    )
    y = chart.y_scale(max(low, 0.0), min(high, 1.0) if high <= 1.0 else high)
    chart.axes(x, y, "trial number", "validation accuracy")
    for index, (name, value) in enumerate(sorted(done_baselines.items())):
        py = round(y(value), 1)
        chart.add("line", {"class": "baseline", "data_baseline": name, "data_value": value,
                           "x1": chart.plot_left, "x2": chart.plot_right, "y1": py, "y2": py,
                           "stroke": SERIES_COLOURS[(index + 1) % len(SERIES_COLOURS)]})  # fmt: skip
        chart.text(chart.plot_right - 4, py - 4, f"{name} {value:.3f}", class_="baseline-label",
                   text_anchor="end")  # fmt: skip
    best: list[tuple[float, float]] = []
    best_values: list[float] = []
    for trial in sorted(shown, key=lambda t: t.number):
        point = trial.shown_value
        assert point is not None  # filtered above
        if trial.role == "search" and trial.state == "COMPLETE":
            current = max(point, best_values[-1]) if best_values else point
            best_values.append(current)
            best.append((x(trial.number), y(current)))
        chart.add("circle", {"class": f"point role-{trial.role} state-{trial.state.lower()}",
                             "cx": round(x(trial.number), 1), "cy": round(y(point), 1), "r": 4.5,
                             "data_trial": trial.number, "data_value": point,
                             "data_role": trial.role, "data_state": trial.state,
                             "data_baseline": trial.baseline, "data_contender": trial.contender},
                  f"<title>trial {trial.number} ({escape(_role_text(trial))}, {escape(trial.state)}): {point:.4f}</title>")  # fmt: skip
    if best:
        chart.polyline(best, class_="best-so-far",
                       data_values=",".join(f"{v:.6g}" for v in best_values))  # fmt: skip
    return chart.render()


def _role_text(trial: TrialPoint) -> str:
    return f"final of {trial.contender}" if trial.contender else trial.role


def epoch_curves(trials: Sequence[TrialPoint]) -> str:
    """Per-epoch validation accuracy of every trial; pruned trials dashed and marked with a cross.

    Returns:
        SVG markup: ``polyline.curve`` per trial with epochs (``data-trial``, ``data-state``,
        ``data-epochs``) and ``path.pruned-mark`` where a pruned trial stopped.
    """
    chart = Chart("epochs", title="Validation accuracy per epoch")
    curves = [t for t in trials if _finite(t.epochs)]
    if not curves:
        chart.axes(None, None)
        return chart.render("No epoch reported yet")
    longest = max(len(t.epochs) for t in curves)
    x = chart.x_scale(1, max(longest, 2))
    low, high = padded_range([v for t in curves for v in _finite(t.epochs)])
    y = chart.y_scale(max(low, 0.0), high)
    chart.axes(x, y, "epoch", "validation accuracy", x_integer=True)
    for trial in sorted(curves, key=lambda t: t.number):
        # Epochs that did not validate are left out; the curve joins the ones that did.
        points = [(x(i + 1), y(v)) for i, v in enumerate(trial.epochs) if v is not None]
        colour = SERIES_COLOURS[trial.number % len(SERIES_COLOURS)]
        chart.polyline(points, class_=f"curve role-{trial.role} state-{trial.state.lower()}",
                       stroke=colour, data_trial=trial.number, data_state=trial.state,
                       data_contender=trial.contender,
                       data_epochs=",".join("" if v is None else f"{v:.6g}"
                                            for v in trial.epochs))  # fmt: skip
        if trial.state == "PRUNED":
            px, py = points[-1]
            mark = f"M{px - 4:.1f},{py - 4:.1f}L{px + 4:.1f},{py + 4:.1f}M{px - 4:.1f},{py + 4:.1f}L{px + 4:.1f},{py - 4:.1f}"
            chart.add("path", {"class": "pruned-mark", "d": mark, "data_trial": trial.number,
                               "data_epoch": len(trial.epochs)},
                      f"<title>trial {trial.number} pruned after epoch {len(trial.epochs)}</title>")  # fmt: skip
    return chart.render()


def bar_chart(kind: str, bars: Sequence[Bar], title: str, value_format: str = "{:g}") -> str:
    """Horizontal bars, one per item, longest scale fixed by the largest value.

    Args:
        kind: ``data-chart`` name (e.g. ``op-frequency``, ``importance``, ``classes``).
        bars: The bars, drawn top to bottom in the given order.
        title: Accessible title.
        value_format: Format of the value written at the end of each bar.

    Returns:
        SVG markup with one ``rect.bar`` per item carrying ``data-label``, ``data-value`` and
        the bar's own ``data-*`` attributes.
    """
    row = 22
    label_width = max([len(b.label) for b in bars] + [4]) * 7 + 16
    chart = Chart(kind, width=640, height=max(60, 24 + row * len(bars)), title=title,
                  margin=(12, 110, 12, min(label_width, 260)))  # fmt: skip
    if not bars:
        return chart.render("Nothing to show yet")
    top_value = max(max(b.value for b in bars), 1e-12)
    x = chart.x_scale(0.0, top_value)
    for index, item in enumerate(bars):
        y = chart.plot_top + index * row
        width = max(x(item.value) - chart.plot_left, 1.0)
        chart.text(chart.plot_left - 6, y + 15, item.label, class_="bar-label", text_anchor="end")
        data = {f"data_{k}": v for k, v in item.data.items()}
        chart.add("rect", {"class": "bar", "x": chart.plot_left, "y": round(y + 3, 1),
                           "width": round(width, 1), "height": row - 6, "data_label": item.label,
                           "data_value": item.value, **data},
                  f"<title>{escape(item.label)}: {value_format.format(item.value)}</title>")  # fmt: skip
        note = value_format.format(item.value) + (f"  {item.note}" if item.note else "")
        chart.text(chart.plot_left + width + 6, y + 15, note, class_="bar-value")
    return chart.render()
