"""The report's distributions from a DuckDB warehouse: session lengths, the item long tail at
log-spaced ranks, events per type, all bounded and cut at the run date; and their charts' scales."""

from __future__ import annotations

from datetime import date

import duckdb
import pytest

from pipeline.report_charts import event_type_chart, event_type_figure, item_tail_figure, session_length_figure
from pipeline.report_distributions import TAIL_POINTS, distributions, length_summary, log_spaced_ranks

RUN_DATE = date(2026, 10, 2)


@pytest.fixture
def warehouse(settings):
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create table fct_sessions (session_id varchar, session_start timestamp, n_events integer)")
        # lengths 1 x 5, 2 x 3, 9 x 1 up to the run date (the 90th percentile, by nearest rank, is the
        # ninth of nine: 9); one long session the day after is left out
        con.execute("insert into fct_sessions values " + ", ".join(
            [f"('a{i}', '2026-10-02 10:00', 1)" for i in range(5)]
            + [f"('b{i}', '2026-10-01 23:59', 2)" for i in range(3)]
            + ["('c', '2026-10-02 23:59:59', 9)", "('late', '2026-10-03 00:00', 500)"]))
        con.execute("create table int_events_sessionized (item_id varchar, event_type varchar, event_date date)")
        # item i has 1000 // i events (a Zipf-like tail over 400 items), all views but every
        # tenth item's events are purchases; events after the run date are left out
        rows = [(f"item{i:03d}", "purchase" if i % 10 == 0 else "view") for i in range(1, 401)
                for _ in range(1000 // i)]
        con.executemany("insert into int_events_sessionized values (?, ?, '2026-10-01')", rows)
        con.execute("insert into int_events_sessionized values ('item999', 'click', '2026-10-03')")
    return settings


def test_the_distributions_of_the_data_up_to_the_run_date(warehouse):
    dist = distributions(warehouse, RUN_DATE)
    assert dist["session_lengths"] == [(1, 5), (2, 3), (9, 1)]
    assert dist["session_summary"] == {"n_sessions": 9, "mean": pytest.approx(20 / 9), "median": 1, "p90": 9,
                                       "max": 9}
    tail = dist["item_tail"]
    counts = {i: 1000 // i for i in range(1, 401)}
    assert tail["n_items"] == 400 and tail["n_events"] == sum(counts.values())
    assert tail["points"][0] == (1, 1000) and tail["points"][-1] == (400, 2)
    assert all(n == counts[rank] for rank, n in tail["points"])  # rank r is the r-th most popular
    assert len(tail["points"]) <= TAIL_POINTS
    top1 = tail["top_shares"][0]
    assert top1["n_items"] == 4 and top1["events_share"] == pytest.approx((1000 + 500 + 333 + 250) / tail["n_events"])
    purchases = sum(n for i, n in counts.items() if i % 10 == 0)
    assert dist["event_types"] == [("view", tail["n_events"] - purchases), ("purchase", purchases)]


def test_no_warehouse_or_another_target_gives_no_section(settings):
    assert distributions(settings, RUN_DATE) is None
    spark = settings.model_copy(update={"dbt_target": "spark"})
    assert distributions(spark, RUN_DATE) is None


def test_log_spaced_ranks_cover_the_catalog_in_few_points():
    assert log_spaced_ranks(0) == [] and log_spaced_ranks(5) == [1, 2, 3, 4, 5]
    ranks = log_spaced_ranks(10_000_000)
    assert ranks[0] == 1 and ranks[-1] == 10_000_000 and len(ranks) <= TAIL_POINTS + 1
    assert ranks == sorted(set(ranks))
    assert length_summary([]) == {}


def test_the_charts_use_log_scales_where_counts_span_orders_of_magnitude():
    short = session_length_figure([(1, 50_000), (2, 900), (3, 12)])
    (ax,) = short.axes
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    assert ax.get_ylabel() == "sessions (log scale)" and ax.get_xlabel() == "events per session"
    long = session_length_figure([(1, 50_000), (30, 100), (700, 1)])
    assert long.axes[0].get_xscale() == "log" and long.axes[0].get_yscale() == "log"
    tail = item_tail_figure([(1, 1000), (10, 100), (100, 10)])
    assert (tail.axes[0].get_xscale(), tail.axes[0].get_yscale()) == ("log", "log")
    bars = event_type_figure([("view", 9_000), ("purchase", 1_000)])
    assert [t.get_text() for t in bars.axes[0].texts] == ["9,000 (90.00%)", "1,000 (10.00%)"]
    assert session_length_figure([]) is None and item_tail_figure([]) is None
    assert "no data" in event_type_chart([])
