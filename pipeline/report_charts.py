"""The nightly report's charts: matplotlib figures saved as static SVG, inlined in the page.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``), never pyplot, so no
GUI backend is selected and nothing global changes: style settings apply inside ``rc_context``.
Text stays text in the SVG (searchable, small) and labels are never parsed as mathtext, so a
``$`` in a model or series name is shown as is.
"""

from __future__ import annotations

import html
import io
import math
import re
from typing import Any, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

SERIES_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")
WRITTEN_COLOR, QUARANTINED_COLOR = "#1f77b4", "#d62728"
# Past this many categories the bars are too narrow for a label on each.
MAX_BAR_LABELS = 14
MAX_X_TICKS = 8

_STYLE = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e5e5e5",
}


def _number(value: float, _pos: Any = None) -> str:
    """Axis and bar labels: thousands separators for counts, three significant digits otherwise."""
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _share(share: float) -> str:
    return "<0.01%" if 0 < share < 0.0001 else f"{100 * share:.2f}%"


def no_data(title: str) -> str:
    return f'<p class="muted">{html.escape(title)}: no data.</p>'


def _to_svg(fig: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element for inlining: no XML prolog, no DOCTYPE, no date.

    The salt (the chart's title, also its accessible name) keeps the element ids stable from run
    to run and distinct between the charts of one page."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.1,
                    metadata={"Date": None, "Creator": None})
    # The groups' ids (figure_1, axes_1, ...) are the same in every chart and nothing refers to
    # them: dropped, so the page's ids stay unique.
    text = re.sub(r'<g id="[^"]*"', "<g", buf.getvalue().strip())
    label = html.escape(salt, quote=True)
    return f'<svg role="img" aria-label="{label}"' + text[text.index("<svg") + len("<svg"):]


def _categorical_x(ax, labels: Sequence[str]) -> None:
    """Categories at 0..n-1, at most MAX_X_TICKS labelled, slanted when they are long."""
    n = len(labels)
    pad = max(0.0, (3 - n) / 2)  # one or two categories do not fill the whole width
    ax.set_xlim(-0.6 - pad, n - 0.4 + pad)
    step = math.ceil(n / MAX_X_TICKS)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks, [labels[i] for i in ticks])
    if n > 1 and max(len(s) for s in labels) > 6:
        for tick in ax.get_xticklabels():
            tick.set_rotation(30)
            tick.set_horizontalalignment("right")


def _single_x_bars(ax, series: dict[str, float | None], x_label: str) -> None:
    """One x value (a single night, a single epoch): a labelled bar per series, not lone dots."""
    names = [name for name, y in series.items() if y is not None]
    values = [float(series[name]) for name in names]
    colors = [SERIES_COLORS[list(series).index(name) % len(SERIES_COLORS)] for name in names]
    bars = ax.barh(range(len(names)), values, color=colors, height=0.6)
    ax.bar_label(bars, labels=[_number(v) for v in values], padding=3)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.grid(False)
    ax.xaxis.set_major_formatter(FuncFormatter(_number))
    ax.margins(x=0.2)
    ax.set_xlabel(x_label)


def svg_line_chart(series: dict[str, Sequence[tuple[Any, float | None]]], *, title: str,
                   x_labels: Sequence[Any] | None = None, x_title: str = "",
                   size: tuple[float, float] = (7.0, 3.0)) -> str:
    """A line chart as inline SVG. ``series``: name -> [(x, y)], y may be None (a gap).

    The x values are categories in ``x_labels`` order (default: sorted). With a single x value
    the chart is a labelled bar per series; with no value at all a "no data" line."""
    points = [(x, y) for data in series.values() for x, y in data if y is not None]
    if not points:
        return no_data(title)
    xs = list(x_labels) if x_labels is not None else sorted({x for x, _ in points})
    index = {x: i for i, x in enumerate(xs)}
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=size)
        ax = fig.add_subplot()
        ax.set_title(title, loc="left")
        if len(xs) == 1:
            only = xs[0]
            _single_x_bars(ax, {name: next((y for x, y in data if x == only and y is not None), None)
                                for name, data in series.items()}, f"{x_title} {only}".strip())
        else:
            for n, (name, data) in enumerate(series.items()):
                ys = [math.nan] * len(xs)
                for x, y in data:
                    if y is not None and x in index:
                        ys[index[x]] = float(y)
                ax.plot(range(len(xs)), ys, marker="o", markersize=4, linewidth=2, label=name,
                        color=SERIES_COLORS[n % len(SERIES_COLORS)])
            _categorical_x(ax, [str(x) for x in xs])
            ax.set_xlabel(x_title)
            ax.yaxis.set_major_formatter(FuncFormatter(_number))
            if len(series) > 1:
                ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _to_svg(fig, title)


def volume_chart(volumes: Sequence[dict[str, Any]], *, title: str = "Rows per arrival day") -> str:
    """Written and quarantined rows per arrival day, one panel each (their scales differ by
    orders of magnitude), bars labelled with the count and the quarantine share."""
    if not volumes:
        return no_data(title)
    days = [str(v["arrival_date"]) for v in volumes]
    labelled = len(days) <= MAX_BAR_LABELS
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(7.0, 4.4))
        top, bottom = fig.subplots(2, 1, sharex=True)
        panels = (
            (top, "written rows", WRITTEN_COLOR, [v["written_rows"] for v in volumes],
             lambda v: _number(v["written_rows"])),
            (bottom, "quarantined rows", QUARANTINED_COLOR, [v["quarantined_rows"] for v in volumes],
             lambda v: f"{_number(v['quarantined_rows'])} ({_share(v['quarantine_share'])})"),
        )
        for ax, label, color, counts, text in panels:
            bars = ax.bar(range(len(days)), counts, color=color, width=0.6)
            if labelled:
                ax.bar_label(bars, labels=[text(v) for v in volumes], padding=2, fontsize=8)
            ax.set_ylabel(label)
            ax.yaxis.set_major_formatter(FuncFormatter(_number))
            ax.yaxis.set_major_locator(MaxNLocator(4, integer=True))
            ax.set_ylim(0, max(max(counts), 1) * 1.2)  # room for the bar labels
        top.set_title(title, loc="left")
        _categorical_x(bottom, days)
        bottom.set_xlabel("arrival day")
        return _to_svg(fig, title)
