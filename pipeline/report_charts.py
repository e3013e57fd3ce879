"""The nightly report's charts: matplotlib figures saved as static SVG, inlined in the page.

Figures are built with the object-oriented API (``matplotlib.figure.Figure``), never pyplot, so no
GUI backend is selected and nothing global changes: style settings apply inside ``rc_context``.
Text stays text in the SVG (searchable, small) and labels are never parsed as mathtext, so a
``$`` in a model or series name is shown as is. Each chart has a ``*_figure`` builder (None when
there is nothing to draw; the tests measure its layout) and a function that returns its SVG.
"""

from __future__ import annotations

import html
import io
import math
import re
from typing import Any, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

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
    "axes.axisbelow": True,  # grid lines behind the bars, not across them
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


def _to_svg(fig: Figure | None, salt: str) -> str:
    """The figure as an ``<svg>`` element for inlining: no XML prolog, no DOCTYPE, no date; a
    "no data" line for no figure.

    The salt (the chart's title, also its accessible name) keeps the element ids stable from run
    to run and distinct between the charts of one page."""
    if fig is None:
        return no_data(salt)
    buf = io.StringIO()
    with matplotlib.rc_context(_STYLE | {"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", pad_inches=0.1,
                    metadata={"Date": None, "Creator": None})
    # The groups' ids (figure_1, axes_1, ...) are the same in every chart and nothing refers to
    # them: dropped, so the page's ids stay unique.
    text = re.sub(r'<g id="[^"]*"', "<g", buf.getvalue().strip())
    label = html.escape(salt, quote=True)
    return f'<svg role="img" aria-label="{label}"' + text[text.index("<svg") + len("<svg"):]


def _categorical_x(ax, labels: Sequence[str]) -> None:
    """Categories at 0..n-1, at most MAX_X_TICKS labelled (always the last one: the newest night),
    slanted when they are long."""
    n = len(labels)
    pad = max(0.0, (3 - n) / 2)  # one or two categories do not fill the whole width
    ax.set_xlim(-0.6 - pad, n - 0.4 + pad)
    step = math.ceil(n / MAX_X_TICKS)
    ticks = sorted(range(n - 1, -1, -step))
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


def line_figure(series: dict[str, Sequence[tuple[Any, float | None]]], *, title: str,
                x_labels: Sequence[Any] | None = None, x_title: str = "",
                size: tuple[float, float] = (7.0, 3.0)) -> Figure | None:
    """A line chart. ``series``: name -> [(x, y)], y may be None (a gap).

    The x values are categories in ``x_labels`` order (default: sorted). With a single x value
    the chart is a labelled bar per series; with no value at all there is no figure."""
    points = [(x, y) for data in series.values() for x, y in data if y is not None]
    if not points:
        return None
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
        return fig


def svg_line_chart(series: dict[str, Sequence[tuple[Any, float | None]]], *, title: str,
                   x_labels: Sequence[Any] | None = None, x_title: str = "",
                   size: tuple[float, float] = (7.0, 3.0)) -> str:
    """:func:`line_figure` as inline SVG, or a "no data" line."""
    return _to_svg(line_figure(series, title=title, x_labels=x_labels, x_title=x_title, size=size), title)


def volume_figure(volumes: Sequence[dict[str, Any]], *, title: str = "Rows per arrival day") -> Figure | None:
    """Written and quarantined rows per arrival day, one panel each (their scales differ by
    orders of magnitude), bars labelled with the count and the quarantine share."""
    if not volumes:
        return None
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
        return fig


def volume_chart(volumes: Sequence[dict[str, Any]], *, title: str = "Rows per arrival day") -> str:
    return _to_svg(volume_figure(volumes, title=title), title)


def _log_counts(axis) -> None:
    """A log-scale count axis labelled 1, 10, 100, 1,000 (no minor labels)."""
    axis.set_major_formatter(FuncFormatter(_number))
    axis.set_minor_formatter(NullFormatter())


def session_length_figure(lengths: Sequence[tuple[int, int]], *,
                          title: str = "Session lengths") -> Figure | None:
    """Sessions per length (events per session), counts on a log scale: one bar per length for
    short sessions, log-spaced bins on a log x axis once lengths run long."""
    lengths = [(int(length), int(n)) for length, n in lengths if n > 0 and length > 0]
    if not lengths:
        return None
    longest = max(length for length, _ in lengths)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(5.0, 2.8))
        ax = fig.add_subplot()
        ax.set_title(title, loc="left")
        if longest <= 40:
            ax.bar([length for length, _ in lengths], [n for _, n in lengths], width=0.8, color=WRITTEN_COLOR)
            ax.xaxis.set_major_locator(MaxNLocator(10, integer=True))
        else:
            edges = sorted({round(10 ** (i * math.log10(longest + 1) / 30)) for i in range(31)} | {1, longest + 1})
            ax.hist([length for length, _ in lengths], bins=edges, weights=[n for _, n in lengths],
                    color=WRITTEN_COLOR)
            ax.set_xscale("log")
            _log_counts(ax.xaxis)
        ax.set_yscale("log")
        _log_counts(ax.yaxis)
        ax.set_xlabel("events per session")
        ax.set_ylabel("sessions (log scale)")
        return fig


def session_length_chart(lengths: Sequence[tuple[int, int]], *, title: str = "Session lengths") -> str:
    return _to_svg(session_length_figure(lengths, title=title), title)


def item_tail_figure(points: Sequence[tuple[int, int]], *,
                     title: str = "Item long tail") -> Figure | None:
    """Events per item against the item's popularity rank, both on log scales."""
    points = [(int(rank), int(n)) for rank, n in points if rank > 0 and n > 0]
    if not points:
        return None
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(5.0, 2.8))
        ax = fig.add_subplot()
        ax.set_title(title, loc="left")
        ax.plot([r for r, _ in points], [n for _, n in points], color=WRITTEN_COLOR, linewidth=2,
                marker="o" if len(points) < 30 else None, markersize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_counts(ax.xaxis)
        _log_counts(ax.yaxis)
        ax.grid(True, which="major", axis="both")
        ax.set_xlabel("item popularity rank (log scale)")
        ax.set_ylabel("events per item (log scale)")
        return fig


def item_tail_chart(points: Sequence[tuple[int, int]], *, title: str = "Item long tail") -> str:
    return _to_svg(item_tail_figure(points, title=title), title)


def event_type_figure(counts: Sequence[tuple[str, int]], *, title: str = "Events per type") -> Figure | None:
    """A horizontal bar per event type, labelled with its count and share of all events."""
    counts = [(str(kind), int(n)) for kind, n in counts]
    total = sum(n for _, n in counts)
    if not total:
        return None
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(5.0, 0.8 + 0.35 * len(counts)))
        ax = fig.add_subplot()
        ax.set_title(title, loc="left")
        bars = ax.barh(range(len(counts)), [n for _, n in counts], color=WRITTEN_COLOR, height=0.6)
        ax.bar_label(bars, labels=[f"{_number(n)} ({_share(n / total)})" for _, n in counts], padding=3)
        ax.set_yticks(range(len(counts)), [kind for kind, _ in counts])
        ax.invert_yaxis()
        ax.grid(False)
        ax.xaxis.set_major_formatter(FuncFormatter(_number))
        ax.xaxis.set_major_locator(MaxNLocator(4, integer=True))
        ax.margins(x=0.3)
        ax.set_xlabel("events")
        return fig


def event_type_chart(counts: Sequence[tuple[str, int]], *, title: str = "Events per type") -> str:
    return _to_svg(event_type_figure(counts, title=title), title)
