"""Tiny inline SVG charts for the run report: a line chart and a bar chart, no plotting library needed.

The report is one self-contained HTML file (it is also an MLflow artifact), so the charts are SVG text
embedded in it. Only what the report needs: labelled axes with min/max ticks, a legend, no interaction.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 560, 240, 56, 130, 28, 44
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def line_chart(title: str, x_labels: list[str], series: dict[str, list[float | None]], y_label: str = "") -> str:
    """One line per series over shared x labels; ``None`` values leave a gap."""
    values = [v for points in series.values() for v in points if v is not None]
    if not x_labels or not values:
        return _empty(title)
    low, high = _range(values)
    parts = _frame(title, y_label, low, high, x_labels)
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        segment: list[str] = []
        for i, value in enumerate(points):
            if value is None:
                parts.append(_polyline(segment, color))
                segment = []
                continue
            x, y = _x(i, len(x_labels)), _y(value, low, high)
            segment.append(f"{x:.1f},{y:.1f}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"><title>{escape(name)} '
                         f'{escape(x_labels[i])}: {value:.4g}</title></circle>')
        parts.append(_polyline(segment, color))
        parts.append(_legend(index, name, color))
    return _svg(parts)


def bar_chart(title: str, labels: list[str], series: dict[str, list[float]], y_label: str = "") -> str:
    """Grouped bars: one group per label, one bar per series."""
    values = [v for points in series.values() for v in points]
    if not labels or not values:
        return _empty(title)
    low, high = 0.0, max(values) or 1.0
    parts = _frame(title, y_label, low, high, labels)
    group = (WIDTH - PAD_LEFT - PAD_RIGHT) / len(labels)
    width = group * 0.8 / len(series)
    for index, (name, points) in enumerate(series.items()):
        color = COLORS[index % len(COLORS)]
        for i, value in enumerate(points):
            x = PAD_LEFT + i * group + group * 0.1 + index * width
            y = _y(value, low, high)
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width - 1, 1):.1f}" '
                         f'height="{HEIGHT - PAD_BOTTOM - y:.1f}" fill="{color}"><title>{escape(name)} '
                         f'{escape(labels[i])}: {value:.4g}</title></rect>')
        parts.append(_legend(index, name, color))
    return _svg(parts)


def _frame(title: str, y_label: str, low: float, high: float, x_labels: list[str]) -> list[str]:
    bottom, right = HEIGHT - PAD_BOTTOM, WIDTH - PAD_RIGHT
    parts = [f'<text x="{PAD_LEFT}" y="16" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{bottom}" stroke="#444"/>',
             f'<line x1="{PAD_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>',
             f'<text x="{PAD_LEFT - 4}" y="{bottom}" text-anchor="end">{_tick(low)}</text>',
             f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">{_tick(high)}</text>',
             f'<text x="12" y="{(PAD_TOP + bottom) / 2:.0f}" transform="rotate(-90 12 {(PAD_TOP + bottom) / 2:.0f})" '
             f'text-anchor="middle">{escape(y_label)}</text>']
    step = max(1, len(x_labels) // 6)
    for i in range(0, len(x_labels), step):
        parts.append(f'<text x="{_x(i, len(x_labels)):.1f}" y="{bottom + 16}" text-anchor="middle">'
                     f'{escape(x_labels[i])}</text>')
    return parts


def _legend(index: int, name: str, color: str) -> str:
    y = PAD_TOP + 14 * index
    return (f'<rect x="{WIDTH - PAD_RIGHT + 10}" y="{y}" width="10" height="10" fill="{color}"/>'
            f'<text x="{WIDTH - PAD_RIGHT + 24}" y="{y + 9}">{escape(name[:18])}</text>')


def _polyline(points: list[str], color: str) -> str:
    if len(points) < 2:
        return ""
    return f'<polyline points="{" ".join(points)}" fill="none" stroke="{color}" stroke-width="1.8"/>'


def _x(i: int, n: int) -> float:
    span = WIDTH - PAD_LEFT - PAD_RIGHT
    return PAD_LEFT + (span / 2 if n == 1 else i * span / (n - 1))


def _y(value: float, low: float, high: float) -> float:
    return HEIGHT - PAD_BOTTOM - (value - low) / (high - low) * (HEIGHT - PAD_BOTTOM - PAD_TOP)


def _range(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    if high == low:
        return low - (abs(low) or 1) * 0.1, high + (abs(high) or 1) * 0.1
    margin = (high - low) * 0.05
    return low - margin, high + margin


def _tick(value: float) -> str:
    return f"{value:.3g}"


def _svg(parts: list[str]) -> str:
    body = "".join(part for part in parts if part)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" '
            f'font-size="11" role="img">{body}</svg>')


def _empty(title: str) -> str:
    return _svg([f'<text x="{PAD_LEFT}" y="16" font-weight="bold">{escape(title)}</text>',
                 f'<text x="{PAD_LEFT}" y="{HEIGHT / 2:.0f}" fill="#777">no data yet</text>'])
