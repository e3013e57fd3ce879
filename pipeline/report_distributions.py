"""The nightly report's distributions of the data the night trained on, read from the warehouse.

* session lengths: events per session (``fct_sessions``), as (length, number of sessions);
* the item long tail: events per item (``int_events_sessionized``), by popularity rank, at a few
  hundred log-spaced ranks (enough for a log-log curve whatever the catalog's size), with the
  share of all events the top 1%, 10% and 20% of the items hold;
* events per type (``int_events_sessionized``).

Every query aggregates inside DuckDB (read-only) and returns a bounded number of rows. The window
is everything the warehouse holds up to the run date, the data the night's model was trained
and evaluated on. Only the DuckDB warehouse is read; on another target the section says so.
"""

from __future__ import annotations

import logging
import math
from datetime import date, timedelta
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

# Rows returned per distribution at most: a chart has no use for more points than pixels.
MAX_LENGTHS = 2000
TAIL_POINTS = 300
TOP_SHARES = (0.01, 0.10, 0.20)


def log_spaced_ranks(n: int, points: int = TAIL_POINTS) -> list[int]:
    """Distinct ranks 1..n spread evenly on a log scale, 1 and n included."""
    if n < 1:
        return []
    if n <= points:
        return list(range(1, n + 1))
    step = math.log(n) / (points - 1)
    return sorted({min(n, max(1, round(math.exp(i * step)))) for i in range(points)} | {1, n})


def _session_lengths(con, until: date) -> list[tuple[int, int]]:
    rows = con.execute(
        "select n_events, count(*) from fct_sessions where session_start < ? "
        "group by n_events order by n_events limit ?", [until, MAX_LENGTHS],
    ).fetchall()
    return [(int(length), int(n)) for length, n in rows]


def length_summary(lengths: list[tuple[int, int]]) -> dict[str, float]:
    """Number of sessions, mean, median, 90th percentile (nearest rank) and longest, from
    (length, count) rows."""
    total = sum(n for _, n in lengths)
    if not total:
        return {}

    def quantile(q: float) -> int:
        seen = 0
        for length, n in sorted(lengths):
            seen += n
            if seen >= q * total:
                return length
        return lengths[-1][0]
    return {"n_sessions": total, "mean": sum(length * n for length, n in lengths) / total,
            "median": quantile(0.5), "p90": quantile(0.9), "max": max(length for length, _ in lengths)}


def _item_tail(con, run_date: date) -> dict[str, Any]:
    ranked = ("with counts as (select item_id, count(*) as n from int_events_sessionized "
              "where event_date <= ? group by item_id), "
              "ranked as (select n, row_number() over (order by n desc, item_id) as rank from counts) ")
    n_items, n_events = con.execute(ranked + "select count(*), coalesce(sum(n), 0) from ranked",
                                    [run_date]).fetchone()
    n_items, n_events = int(n_items), int(n_events)
    ranks = log_spaced_ranks(n_items)
    points = con.execute(
        ranked + "select rank, n from ranked where list_contains(?, rank) order by rank",
        [run_date, ranks],
    ).fetchall() if ranks else []
    shares = []
    for share in TOP_SHARES:
        top = max(1, math.ceil(n_items * share)) if n_items else 0
        held = con.execute(ranked + "select coalesce(sum(n), 0) from ranked where rank <= ?",
                           [run_date, top]).fetchone()[0]
        shares.append({"items_share": share, "n_items": top,
                       "events_share": int(held) / n_events if n_events else 0.0})
    return {"n_items": n_items, "n_events": n_events, "points": [(int(r), int(n)) for r, n in points],
            "top_shares": shares}


def _event_types(con, run_date: date) -> list[tuple[str, int]]:
    rows = con.execute(
        "select event_type, count(*) as n from int_events_sessionized where event_date <= ? "
        "group by event_type order by n desc, event_type limit 50", [run_date],
    ).fetchall()
    return [(str(kind), int(n)) for kind, n in rows]


def distributions(settings: Settings, run_date: date) -> dict[str, Any] | None:
    """Session lengths, the item long tail and events per type up to ``run_date``; None when the
    warehouse cannot be read (not built yet, another dbt target)."""
    if settings.dbt_target != "duckdb" or not settings.warehouse_path.exists():
        return None
    try:
        import duckdb

        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            return {
                "window": f"everything up to {run_date.isoformat()}",
                "session_lengths": (lengths := _session_lengths(con, run_date + timedelta(days=1))),
                "session_summary": length_summary(lengths),
                "item_tail": _item_tail(con, run_date),
                "event_types": _event_types(con, run_date),
            }
    except Exception as exc:  # noqa: BLE001 - a report section, never the report's failure
        log.warning("no distributions for %s: %s", run_date, exc)
        return None
