"""The report's history charts after one night and after thirty: titled and labelled axes, every
tick label inside the saved (tight) figure, date ticks that do not overlap, the newest night
always labelled, and one night drawn as labelled bars rather than lone dots."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.report_charts import MAX_X_TICKS, line_figure, volume_figure
from pipeline.report_page import charts

FIRST = date(2026, 10, 1)
METRIC = "ndcg_at_10"


def _nights(n: int) -> dict:
    days = [(FIRST + timedelta(days=i)).isoformat() for i in range(n)]
    decisions = [{"run_date": d, "metrics": {
        "candidate": {METRIC: 0.10 + 0.002 * i},
        "champion_rescored": None if i == 0 else {METRIC: 0.10 + 0.001 * i},
        "popularity": {METRIC: 0.05}}} for i, d in enumerate(days)]
    volumes = [{"arrival_date": d, "written_rows": 2_000_000 + 1_000 * i, "quarantined_rows": 150 + i,
                "quarantine_share": (150 + i) / (2_000_150 + 1_001 * i)} for i, d in enumerate(days)]
    return {"decisions": decisions, "volumes": volumes, "days": days}


def _metrics_figure(nights: dict) -> Figure:
    history = nights["decisions"]
    series = {label: [(d["run_date"], (d["metrics"][key] or {}).get(METRIC)) for d in history]
              for label, key in (("candidate", "candidate"), ("champion (re-scored)", "champion_rescored"),
                                 ("popularity", "popularity"))}
    return line_figure(series, title=f"{METRIC}: candidate vs champion vs popularity",
                       x_labels=nights["days"], x_title="run date")


def _layout(fig: Figure):
    canvas = FigureCanvasAgg(fig)
    renderer = canvas.get_renderer()
    fig.draw(renderer)
    # What savefig(bbox_inches="tight") keeps, in display pixels.
    tight = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)
    return renderer, tight


def _inside(box, outer, slack: float = 1.0) -> bool:
    return (box.x0 >= outer.x0 - slack and box.y0 >= outer.y0 - slack
            and box.x1 <= outer.x1 + slack and box.y1 <= outer.y1 + slack)


def _tick_labels(ax, axis: str):
    """The tick labels drawn: visible, not empty, and at a tick inside the axis's view limits."""
    low, high = sorted(getattr(ax, f"get_{axis}lim")())
    locations = getattr(ax, f"get_{axis}ticks")()
    labels = getattr(ax, f"get_{axis}ticklabels")()
    return [t for loc, t in zip(locations, labels)
            if t.get_visible() and t.get_text() and low - 1e-9 * abs(high - low) <= loc <= high + 1e-9 * abs(high - low)]


def _assert_readable(fig: Figure) -> None:
    renderer, tight = _layout(fig)
    for ax in fig.axes:
        for axis in ("x", "y"):
            labels = _tick_labels(ax, axis)
            boxes = [t.get_window_extent(renderer) for t in labels]
            for text, box in zip(labels, boxes):
                assert _inside(box, tight), f"{axis} tick {text.get_text()!r} is clipped"
            for a, b in zip(boxes, boxes[1:]):
                assert not a.overlaps(b), f"{axis} ticks overlap: {a} {b}"
        for label in (ax.xaxis.label, ax.yaxis.label, ax.title):
            if label.get_text():
                assert _inside(label.get_window_extent(renderer), tight), label.get_text()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        assert _inside(legend.get_window_extent(renderer), tight)


@pytest.mark.parametrize("n", [2, 7, 30])
def test_the_metric_history_reads_well_over_many_nights(n):
    nights = _nights(n)
    fig = _metrics_figure(nights)
    _assert_readable(fig)
    (ax,) = fig.axes
    dates = [t.get_text() for t in _tick_labels(ax, "x")]
    assert 2 <= len(dates) <= MAX_X_TICKS if n > 1 else len(dates) == 1
    assert all(date.fromisoformat(d) for d in dates)  # whole ISO dates, not offsets or indices
    assert dates[-1] == nights["days"][-1]  # the report's own night is always labelled
    assert ax.get_xlabel() == "run date" and ax.get_title(loc="left").startswith(METRIC)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["candidate", "champion (re-scored)",
                                                                  "popularity"]
    # every night is a point of the candidate's line, the champion's starts on the second night
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines["candidate"].get_xdata()) == n
    assert sum(y == y for y in lines["champion (re-scored)"].get_ydata()) == n - 1


def test_one_night_is_a_labelled_bar_per_series():
    nights = _nights(1)
    fig = _metrics_figure(nights)
    _assert_readable(fig)
    (ax,) = fig.axes
    assert [t.get_text() for t in _tick_labels(ax, "y")] == ["candidate", "popularity"]  # no champion yet
    assert ax.get_xlabel() == f"run date {nights['days'][0]}"
    bar_labels = [t.get_text() for t in ax.texts]
    assert bar_labels == ["0.1", "0.05"]


@pytest.mark.parametrize("n", [1, 30])
def test_the_volume_panels_read_well_over_many_nights(n):
    fig = volume_figure(_nights(n)["volumes"])
    _assert_readable(fig)
    top, bottom = fig.axes
    assert top.get_ylabel() == "written rows" and bottom.get_ylabel() == "quarantined rows"
    # the counts are printed in full, never in scientific notation with an offset
    assert all("e" not in t.get_text() and "1e" not in t.get_text() for t in _tick_labels(top, "y"))
    assert not top.yaxis.get_offset_text().get_text()
    assert (len(top.texts) > 0) == (n <= 14)  # bar labels only while they fit


@pytest.mark.parametrize("n", [1, 30])
def test_the_page_draws_every_history_chart(n):
    nights = _nights(n)
    data = {"decisions": nights["decisions"], "volumes": nights["volumes"], "training": None,
            "distributions": None}
    drawn = charts(data, METRIC)
    assert "<svg" in drawn["volumes"] and "<svg" in drawn["metrics"]
    assert nights["days"][-1] in drawn["metrics"]
