"""The run report's charts, drawn with matplotlib: figures for MLflow, inline SVG for the HTML page.

The report is one self-contained HTML file (also an MLflow artifact), so each chart is embedded as
SVG text; the same ``Figure`` objects are logged to the report's MLflow run with ``mlflow.log_figure``.
Figures are built with ``matplotlib.figure.Figure`` (no pyplot state, no GUI backend), and the SVG is
written without a date and with a fixed id salt, so a rerun of the same day writes the same page.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure

WIDTH, HEIGHT = 7.2, 3.0  # inches at 100 dpi: 720 x 300 px on the page
_SVG_SETTINGS = {"svg.fonttype": "none", "svg.hashsalt": "clickstream-run-report"}


def line_chart(title: str, x_labels: Sequence[str], series: dict[str, Sequence[float | None]],
               y_label: str = "") -> Figure:
    """One line per series over shared x labels; ``None`` values leave a gap."""
    figure, axes = _axes(title, y_label)
    if not x_labels or not any(v is not None for points in series.values() for v in points):
        return _empty(figure, axes)
    positions = range(len(x_labels))
    for name, points in series.items():
        values = [float("nan") if v is None else float(v) for v in points]
        axes.plot(positions[: len(values)], values, marker="o", markersize=3, linewidth=1.6, label=name)
    _x_ticks(axes, x_labels)
    return _finish(figure, axes)


def bar_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float]], y_label: str = "") -> Figure:
    """Grouped bars: one group per label, one bar per series, centred on the label's tick."""
    figure, axes = _axes(title, y_label)
    if not labels or not any(len(points) for points in series.values()):
        return _empty(figure, axes)
    group = 0.8 / max(len(series), 1)
    for index, (name, points) in enumerate(series.items()):
        offset = (index - (len(series) - 1) / 2) * group
        axes.bar([i + offset for i in range(len(points))], points, width=group * 0.95, label=name)
    _x_ticks(axes, labels)
    return _finish(figure, axes)


def to_svg(figure: Figure, name: str = "chart") -> str:
    """The figure as an ``<svg>`` element to embed in HTML (no XML prolog or doctype).

    Its element ids are renumbered ``<name>-1``, ``<name>-2`` ... : matplotlib derives some from object
    ids (different on every run), and several charts inline in one page must not share an id.
    """
    buffer = io.StringIO()
    with matplotlib.rc_context(_SVG_SETTINGS):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return _renumber_ids(text[text.index("<svg"):], name)


def _renumber_ids(svg: str, name: str) -> str:
    ids = dict.fromkeys(re.findall(r'\bid="([^"]+)"', svg))
    renamed = {old: f"{name}-{number}" for number, old in enumerate(ids, 1)}
    if not renamed:
        return svg
    pattern = re.compile(r'(\bid="|#)(' + "|".join(re.escape(old) for old in sorted(renamed, key=len, reverse=True))
                         + r')(?=[")])')
    return pattern.sub(lambda match: match.group(1) + renamed[match.group(2)], svg)


def _axes(title: str, y_label: str):
    figure = Figure(figsize=(WIDTH, HEIGHT), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=10, fontweight="bold")
    axes.set_ylabel(y_label)
    axes.tick_params(labelsize=8)
    axes.grid(axis="y", alpha=0.3)
    return figure, axes


def _x_ticks(axes, labels: Sequence[str]) -> None:
    step = max(1, len(labels) // 8)  # at most about 8 labels, every one a tick
    rotated = max(len(label) for label in labels) > 4  # dates: slanted so that they do not overlap
    axes.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)],
                    rotation=30 if rotated else 0, ha="right" if rotated else "center")


def _finish(figure: Figure, axes) -> Figure:
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return figure


def _empty(figure: Figure, axes) -> Figure:
    axes.text(0.5, 0.5, "no data yet", transform=axes.transAxes, ha="center", va="center", color="#777")
    axes.set_xticks([])
    axes.set_yticks([])
    return figure
