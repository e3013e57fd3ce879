"""Incremental session tables: any arrival order of the same events, built run by run with the
affected event dates, gives exactly the tables of one full refresh (hypothesis property test),
and the pipeline's pending-dates bookkeeping picks the dates from the reconciliation records."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from test_session_tables import write_lake  # noqa: E402

from sessions.session_tables import (  # noqa: E402
    build_pending_session_tables,
    build_session_tables,
    pending_affected_event_dates,
)
from core.settings import Settings  # noqa: E402

K = 3
# Only the models an incremental run rebuilds per user (and what they read).
SELECT = "+fct_sessions +user_sequences +user_features"
TABLES = {
    "int_events_sessionized": "event_id",
    "fct_sessions": "session_id",
    "user_sequences": "user_id",
    "user_features": "user_id, feature_date",
}

# (event_id, event_time UTC, user_id, log session id, item_id, event_type)
POOL = [
    # u1: a session crossing midnight, split or merged depending on which events have arrived
    ("a1", "2026-11-20T23:20:00", "u1", None, "i1", "view"),
    ("a2", "2026-11-20T23:45:00", "u1", None, "i2", "click"),
    ("a3", "2026-11-21T00:10:00", "u1", None, "i3", "view"),  # bridges a2 .. a4
    ("a4", "2026-11-21T00:35:00", "u1", None, "i4", "purchase"),
    ("a5", "2026-11-21T01:05:00", "u1", None, "i5", "view"),  # exactly 30 minutes after a4
    ("a6", "2026-11-22T09:00:00", "u1", None, "i1", "view"),
    # u2: identical timestamps and a logged session spanning two days
    ("b1", "2026-11-21T12:00:00", "u2", None, "i2", "view"),
    ("b2", "2026-11-21T12:00:00", "u2", None, "i3", "view"),
    ("b3", "2026-11-21T23:59:00", "u2", "s1", "i4", "view"),
    ("b4", "2026-11-22T00:30:00", "u2", "s1", "i5", "add_to_cart"),
    # u3: one-event sessions, one a day
    ("c1", "2026-11-20T08:00:00", "u3", None, "i1", "view"),
    ("c2", "2026-11-22T08:00:00", "u3", None, "i6", "purchase"),
]
ARRIVAL0 = date(2026, 11, 21)


def _lake_rows(batches: list[list[tuple]]) -> list[tuple]:
    """Batch b arrives on ARRIVAL0 + b: events of an earlier date in it are late events."""
    return [(*e, (ARRIVAL0 + timedelta(days=b)).isoformat())
            for b, events in enumerate(batches) for e in events]


def _tables(settings: Settings) -> dict[str, list[tuple]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {name: con.execute(f"select * from {name} order by {key}").fetchall()
                for name, key in TABLES.items()}


@st.composite
def arrivals(draw):
    n_batches = draw(st.integers(min_value=2, max_value=3))
    batch_of = draw(st.lists(st.integers(0, n_batches - 1), min_size=len(POOL), max_size=len(POOL)))
    batches: list[list[tuple]] = [[] for _ in range(n_batches)]
    for event, b in zip(POOL, batch_of):
        batches[b].append(event)
    # a re-send: the same event again in a later batch (the first arrival wins)
    resend = draw(st.sampled_from([None, *range(len(POOL))]))
    if resend is not None and batch_of[resend] < n_batches - 1:
        batches[batch_of[resend] + 1].append(POOL[resend])
    return [b for b in batches if b] or [POOL]


@pytest.mark.slow
@hsettings(max_examples=6, deadline=None, derandomize=True,
           suppress_health_check=[HealthCheck.too_slow])
@given(batches=arrivals())
def test_incremental_runs_equal_a_full_refresh(batches):
    with tempfile.TemporaryDirectory(prefix="recsys-incr-") as tmp:
        incremental = Settings(home=Path(tmp) / "incremental", max_sequence_length=K)
        for b, events in enumerate(batches):
            # each arrival writes its own arrival_date partitions; earlier ones stay as they are
            write_lake(incremental.events_dir, _lake_rows([[] for _ in range(b)] + [events]))
            summary = build_session_tables(
                incremental, select=SELECT, run_tests=False,
                affected_event_dates=sorted({e[1][:10] for e in events}),
            )
            assert summary["mode"] == "incremental"

        full = Settings(home=Path(tmp) / "full", max_sequence_length=K)
        shutil.copytree(incremental.events_dir, full.events_dir)
        assert build_session_tables(full, select=SELECT, run_tests=False)["mode"] == "full_refresh"

        got, expected = _tables(incremental), _tables(full)
        for name in TABLES:
            assert got[name] == expected[name], name
        assert len(got["int_events_sessionized"]) == len(POOL)


def _write_reconciliation(settings: Settings, arrival: str, affected: list[str]) -> None:
    settings.reconciliation_dir.mkdir(parents=True, exist_ok=True)
    (settings.reconciliation_dir / f"{arrival}.json").write_text(
        json.dumps({"arrival_date": arrival, "affected_event_dates": affected}))


@pytest.mark.slow
def test_pending_dates_come_from_unconsumed_reconciliation_records(tmp_path):
    settings = Settings(home=tmp_path, max_sequence_length=K)
    first = [e for e in POOL if e[1] < "2026-11-22"]
    write_lake(settings.events_dir, _lake_rows([first]))
    _write_reconciliation(settings, "2026-11-21", ["2026-11-20", "2026-11-21"])
    assert pending_affected_event_dates(settings) is None  # no warehouse yet: full refresh
    assert build_pending_session_tables(settings)["mode"] == "full_refresh"
    assert pending_affected_event_dates(settings) == []

    # the next arrival day brings 2026-11-22 events and a late one of 2026-11-20
    late = [e for e in POOL if e[1] >= "2026-11-22"]
    write_lake(settings.events_dir, _lake_rows([[], late]))
    _write_reconciliation(settings, "2026-11-22", ["2026-11-22"])
    assert pending_affected_event_dates(settings) == ["2026-11-22"]
    summary = build_pending_session_tables(settings)
    assert summary["mode"] == "incremental"
    assert summary["affected_event_dates"] == ["2026-11-22"]
    assert summary["tests_failed"] == 0
    assert pending_affected_event_dates(settings) == []

    sessions = defaultdict(list)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for user_id, n in con.execute("select user_id, n_events from fct_sessions").fetchall():
            sessions[user_id].append(n)
    assert sum(sum(v) for v in sessions.values()) == len(POOL)

    # another gap setting cannot be caught up incrementally
    assert pending_affected_event_dates(Settings(home=tmp_path, max_sequence_length=K,
                                                 session_gap_minutes=45)) is None
