"""The dbt session tables on a small hand-made lake: sessionization edge cases, point-in-time
features, the runner's summary and failures, and the Spark target agreeing with DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sessions.session_tables import (
    DBT_PROJECT_DIR,
    SessionTablesFailed,
    build_session_tables,
    generate_docs,
)
from core.settings import Settings

# Small K so the truncation of recent_item_ids shows on a handful of events.
K = 3

# (event_id, event_time UTC, user_id, log session id, item_id, event_type, arrival_date)
EVENTS = [
    # u1: a gap of exactly 30 minutes stays, 30 minutes and 1 second splits
    ("a1", "2026-11-20T10:00:00", "u1", None, "i1", "view", "2026-11-21"),
    ("a2", "2026-11-20T10:30:00", "u1", None, "i2", "click", "2026-11-21"),
    ("a3", "2026-11-20T11:00:01", "u1", None, "i3", "purchase", "2026-11-21"),
    # u2: one session across midnight; an empty log id means no log id
    ("b1", "2026-11-20T23:50:00", "u2", None, "i1", "view", "2026-11-21"),
    ("b2", "2026-11-21T00:10:00", "u2", "", "i2", "add_to_cart", "2026-11-21"),
    # u3: logged sessions win over the gap; the untagged event gets a gap session of its own
    ("c1", "2026-11-21T09:00:00", "u3", "s9", "i1", "view", "2026-11-22"),
    ("c2", "2026-11-21T09:01:00", "u3", "s10", "i4", "view", "2026-11-22"),
    ("c3", "2026-11-21T09:05:00", "u3", None, "i2", "view", "2026-11-22"),
    ("c4", "2026-11-21T15:00:00", "u3", "s9", "i3", "purchase", "2026-11-22"),
    # u4: identical timestamps are ordered by event_id
    ("d2", "2026-11-20T12:00:00", "u4", None, "i5", "view", "2026-11-21"),
    ("d1", "2026-11-20T12:00:00", "u4", None, "i6", "click", "2026-11-21"),
    # u5: more events than K, over two days
    ("e1", "2026-11-20T08:00:00", "u5", None, "i1", "view", "2026-11-21"),
    ("e2", "2026-11-20T08:01:00", "u5", None, "i2", "view", "2026-11-21"),
    ("e3", "2026-11-20T08:02:00", "u5", None, "i3", "view", "2026-11-21"),
    ("e4", "2026-11-20T08:03:00", "u5", None, "i4", "purchase", "2026-11-21"),
    ("e5", "2026-11-20T08:04:00", "u5", None, "i5", "view", "2026-11-21"),
    ("e6", "2026-11-21T08:00:00", "u5", None, "i6", "view", "2026-11-22"),
    ("e7", "2026-11-21T08:01:00", "u5", None, "i7", "view", "2026-11-22"),
    # i9: the trailing 7-day window (Nov 10 drops out of Nov 17's week)
    ("f1", "2026-11-10T12:00:00", "u6", None, "i9", "view", "2026-11-11"),
    ("f2", "2026-11-14T12:00:00", "u7", None, "i9", "view", "2026-11-15"),
    ("f3", "2026-11-17T12:00:00", "u6", None, "i9", "view", "2026-11-18"),
    ("f4", "2026-11-17T13:00:00", "u6", None, "i9", "purchase", "2026-11-18"),
]
# The same event sent again and landing in a later arrival day: counted once.
RESENT = [("a1", "2026-11-20T10:00:00", "u1", None, "i1", "view", "2026-11-22")]

MARTS = ("fct_sessions", "user_sequences", "dim_items", "user_features", "item_features")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def write_lake(events_dir: Path, events: list[tuple]) -> None:
    """Write events as ingest/ does: event_date=<d>/arrival_date=<a>/part-*.parquet."""
    partitions: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for event in events:
        partitions[(event[1][:10], event[6])].append(event)
    schema = pa.schema([
        ("event_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.string()), ("session_id", pa.string()), ("item_id", pa.string()),
        ("event_type", pa.string()), ("extra", pa.string()),
    ])
    for (event_date, arrival_date), rows in partitions.items():
        folder = events_dir / f"event_date={event_date}" / f"arrival_date={arrival_date}"
        folder.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(
            [
                {"event_id": e[0], "event_time": _utc(e[1]), "user_id": e[2], "session_id": e[3],
                 "item_id": e[4], "event_type": e[5], "extra": None}
                # reversed: the tables must not depend on the order rows sit in the files
                for e in reversed(rows)
            ],
            schema=schema,
        )
        pq.write_table(table, folder / "part-00000.parquet")


def query(settings: Settings, sql: str) -> list[tuple]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def ordered_events() -> list[tuple]:
    return sorted(EVENTS, key=lambda e: (e[1], e[0]))


def naive(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    dbt_dir_before = sorted(p.name for p in DBT_PROJECT_DIR.iterdir())
    settings = Settings(home=tmp_path_factory.mktemp("sessions"), max_sequence_length=K)
    write_lake(settings.events_dir, EVENTS + RESENT)
    summary = build_session_tables(settings)
    return settings, summary, dbt_dir_before


def test_sessions_split_on_gaps_and_follow_log_ids(built):
    settings, *_ = built
    sessions = dict(query(settings, "select session_id, item_ids from fct_sessions"))
    assert sessions == {
        "u1#1": ["i1", "i2"],  # 30 minutes exactly: same session
        "u1#2": ["i3"],  # 30 minutes and 1 second: new session
        "u2#1": ["i1", "i2"],
        "log:s9": ["i1", "i3"],  # six hours apart, one logged session
        "log:s10": ["i4"],
        "u3#1": ["i2"],
        "u4#1": ["i6", "i5"],  # same timestamp: d1 before d2
        "u5#1": ["i1", "i2", "i3", "i4", "i5"],
        "u5#2": ["i6", "i7"],
        "u6#1": ["i9"],
        "u6#2": ["i9"],
        "u6#3": ["i9"],
        "u7#1": ["i9"],
    }


def test_session_crossing_midnight_stays_one_session(built):
    settings, *_ = built
    rows = query(settings, "select session_id, event_number, event_date from int_events_sessionized "
                           "where user_id = 'u2' order by event_number")
    assert rows == [("u2#1", 1, date(2026, 11, 20)), ("u2#1", 2, date(2026, 11, 21))]


def test_session_facts(built):
    settings, *_ = built
    rows = {r[0]: r[1:] for r in query(
        settings,
        "select session_id, user_id, session_start, session_end, duration_seconds, n_events, "
        "n_views, n_clicks, n_add_to_cart, n_purchases, converted from fct_sessions")}
    assert rows["u1#1"] == ("u1", naive("2026-11-20T10:00:00"), naive("2026-11-20T10:30:00"),
                            1800.0, 2, 1, 1, 0, 0, False)
    assert rows["u1#2"] == ("u1", naive("2026-11-20T11:00:01"), naive("2026-11-20T11:00:01"),
                            0.0, 1, 0, 0, 0, 1, True)
    assert rows["u2#1"][3:] == (1200.0, 2, 1, 0, 1, 0, False)
    assert rows["log:s9"][3:] == (21600.0, 2, 1, 0, 0, 1, True)
    assert sum(r[4] for r in rows.values()) == len(EVENTS)  # the re-sent event counts once


def test_user_sequences_are_in_time_order(built):
    settings, *_ = built
    expected: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for e in ordered_events():
        expected[e[2]][0].append(e[4])
        expected[e[2]][1].append(naive(e[1]))
    rows = query(settings, "select user_id, item_ids, event_times, n_events, first_event_time, "
                           "last_event_time from user_sequences")
    assert {r[0]: (r[1], r[2]) for r in rows} == dict(expected)
    for user_id, items, times, n_events, first, last in rows:
        assert (n_events, first, last) == (len(items), times[0], times[-1])


def test_user_features_are_point_in_time(built):
    settings, *_ = built
    session_starts = query(settings, "select user_id, session_start from fct_sessions")
    rows = query(settings, "select user_id, feature_date, event_timestamp, recent_item_ids, "
                           "n_events_total, n_sessions_total, n_purchases_total from user_features")
    active_days = {(e[2], date.fromisoformat(e[1][:10])) for e in EVENTS}
    assert {(r[0], r[1]) for r in rows} == active_days
    for user_id, day, as_of, recent, n_events, n_sessions, n_purchases in rows:
        history = [e for e in ordered_events() if e[2] == user_id and naive(e[1]) <= as_of]
        assert as_of == max(naive(e[1]) for e in history if e[1].startswith(str(day)))
        # nothing after event_timestamp, the last K before it, oldest first
        assert recent == [e[4] for e in history][-K:]
        assert n_events == len(history)
        assert n_purchases == sum(e[5] == "purchase" for e in history)
        assert n_sessions == sum(u == user_id and start <= as_of for u, start in session_starts)


def test_user_features_examples(built):
    settings, *_ = built
    rows = {(r[0], str(r[1])): r[2:] for r in query(settings, "select * from user_features")}
    assert rows[("u2", "2026-11-20")] == (naive("2026-11-20T23:50:00"), ["i1"], 1, 1, 0)
    assert rows[("u5", "2026-11-20")] == (naive("2026-11-20T08:04:00"), ["i3", "i4", "i5"], 5, 1, 1)
    assert rows[("u5", "2026-11-21")] == (naive("2026-11-21T08:01:00"), ["i5", "i6", "i7"], 7, 2, 1)


def test_item_features_count_the_trailing_week(built):
    settings, *_ = built
    rows = query(settings, "select item_id, feature_date, event_timestamp, n_events_1d, "
                           "n_events_7d, n_users_7d from item_features order by item_id, feature_date")
    assert [r[1:] for r in rows if r[0] == "i9"] == [
        (date(2026, 11, 10), naive("2026-11-10T12:00:00"), 1, 1, 1),
        (date(2026, 11, 14), naive("2026-11-14T12:00:00"), 1, 2, 2),
        (date(2026, 11, 17), naive("2026-11-17T13:00:00"), 2, 3, 2),  # Nov 10 is out
    ]
    for item_id, day, as_of, n_1d, n_7d, users_7d in rows:
        week = [e for e in EVENTS if e[4] == item_id
                and day - timedelta(days=6) <= date.fromisoformat(e[1][:10]) <= day]
        today = [e for e in week if e[1].startswith(str(day))]
        assert (n_1d, n_7d, users_7d) == (len(today), len(week), len({e[2] for e in week}))
        assert as_of == max(naive(e[1]) for e in today)


def test_dim_items_rank_by_events_then_item_id(built):
    settings, *_ = built
    rows = query(settings, "select item_id, n_events, n_users, n_purchases, popularity_rank "
                           "from dim_items order by popularity_rank")
    counts = defaultdict(lambda: [0, set(), 0])
    for e in EVENTS:
        counts[e[4]][0] += 1
        counts[e[4]][1].add(e[2])
        counts[e[4]][2] += e[5] == "purchase"
    expected = sorted(counts, key=lambda item: (-counts[item][0], item))
    assert [r[0] for r in rows] == expected
    assert [r[4] for r in rows] == list(range(1, len(expected) + 1))
    for item_id, n_events, n_users, n_purchases, _ in rows:
        assert (n_events, n_users, n_purchases) == (
            counts[item_id][0], len(counts[item_id][1]), counts[item_id][2])
    assert [r[:2] for r in rows[:3]] == [("i1", 4), ("i2", 4), ("i9", 4)]  # ties: by item_id


def test_summary_counts_models_tests_and_rows(built):
    settings, summary, _ = built
    # 7 tables + the incremental runs' rebuild set + the item attributes (staging and mart),
    # built empty: this lake has no item table
    assert summary["models"] == 10
    assert summary["rows"]["dim_item_attributes"] == 0
    assert summary["mode"] == "full_refresh"
    assert summary["rows"]["int_session_rebuild_users"] == 0  # only an incremental run fills it
    assert summary["tests_failed"] == 0
    assert summary["tests_passed"] >= 50
    assert summary["rows"]["stg_lake__events"] == len(EVENTS)  # the re-sent copy is dropped
    assert summary["rows"]["int_events_sessionized"] == len(EVENTS)
    assert summary["rows"]["fct_sessions"] == 13
    assert summary["rows"]["user_sequences"] == 7
    for model in MARTS:
        (count,) = query(settings, f"select count(*) from {model}")[0]
        assert summary["rows"][model] == count


def test_dbt_unit_tests_ran_and_passed(built):
    settings, *_ = built
    run_results = json.loads((settings.home / "dbt_target" / "run_results.json").read_text())
    unit = {r["unique_id"].split(".")[-1]: r["status"] for r in run_results["results"]
            if r["unique_id"].startswith("unit_test.")}
    assert len(unit) >= 6
    assert {"gap_of_exactly_the_threshold_stays_in_the_session",
            "gap_one_second_over_the_threshold_starts_a_session",
            "identical_timestamps_are_ordered_by_event_id",
            "events_given_out_of_order_are_sessionized_in_time_order",
            "lone_events_are_one_event_sessions",
            "log_session_ids_take_precedence_over_the_gap",
            "incremental_run_rebuilds_the_affected_users_from_their_whole_history",
            "rejected_arrival_days_are_left_out_before_deduplication"} <= set(unit)
    assert set(unit.values()) == {"pass"}


def test_docs_are_generated_under_home(built):
    settings, *_ = built
    docs = generate_docs(settings)
    assert docs == settings.home / "dbt_docs"
    assert (docs / "index.html").exists()
    catalog = json.loads((docs / "catalog.json").read_text())
    assert "model.recsys.fct_sessions" in catalog["nodes"]


def test_nothing_is_written_into_the_repo(built):
    *_, dbt_dir_before = built
    assert sorted(p.name for p in DBT_PROJECT_DIR.iterdir()) == dbt_dir_before
    for generated in ("target", "logs", "dbt_packages"):
        assert not (DBT_PROJECT_DIR / generated).exists()


def test_settings_reach_dbt_and_repeated_runs_work(tmp_path):
    settings = Settings(home=tmp_path, session_gap_minutes=60, max_sequence_length=K)
    write_lake(settings.events_dir, EVENTS)
    build_session_tables(settings)
    u1 = query(settings, "select session_id, n_events from fct_sessions where user_id = 'u1'")
    assert u1 == [("u1#1", 3)]  # the 30m+1s gap is inside a 60-minute session
    again = build_session_tables(settings, select="fct_sessions")
    assert again["models"] == 1
    assert set(again["rows"]) == {"fct_sessions"}


def test_failing_data_test_names_the_node(tmp_path):
    settings = Settings(home=tmp_path)
    write_lake(settings.events_dir, EVENTS + [
        ("z1", "2026-11-20T10:00:00", "u9", None, "i1", "like", "2026-11-21")])
    with pytest.raises(SessionTablesFailed) as failure:
        build_session_tables(settings)
    assert "accepted_values_stg_lake__events_event_type" in str(failure.value)
    assert "skipped because of them" in str(failure.value)


def test_empty_lake_is_a_clear_error(tmp_path):
    with pytest.raises(SessionTablesFailed, match="no event files under"):
        build_session_tables(Settings(home=tmp_path))


# Runs in a fresh interpreter: a JVM started here would outlive the test, and a Spark session
# left by another test module would lend this build its warehouse and catalog.
SPARK_CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from pyspark.sql import SparkSession
    from sessions.session_tables import build_session_tables
    from core.settings import Settings

    home, out, k, marts = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    settings = Settings(home=home, dbt_target="spark", spark_master="local[2]",
                        max_sequence_length=k)
    summary = build_session_tables(settings)
    spark = SparkSession.builder.getOrCreate()
    tables = {m: [list(r) for r in spark.sql(f"select * from recsys.{m}").collect()] for m in marts}
    spark.stop()
    out.write_text(json.dumps({"summary": summary, "tables": tables}, default=str))
""")


@pytest.mark.slow
@pytest.mark.heavy  # dbt on a Spark session takes minutes on a 2-core CI box: make test-all
def test_spark_target_builds_the_same_tables(built, tmp_path):
    duck_settings, *_ = built
    home = tmp_path / "spark-home"
    write_lake(home / "lake" / "events", EVENTS + RESENT)
    out = tmp_path / "spark_tables.json"
    # UTC in the child so Spark hands back the same naive UTC datetimes DuckDB does
    env = {**os.environ, "TZ": "UTC"}
    child = subprocess.run(
        [sys.executable, "-c", SPARK_CHILD, str(home), str(out), str(K), *MARTS],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert child.returncode == 0, child.stdout[-4000:] + child.stderr[-4000:]
    spark = json.loads(out.read_text())
    assert spark["summary"]["tests_failed"] == 0
    assert spark["summary"]["models"] == 10

    def normalized(rows):
        return sorted(json.loads(json.dumps([list(r) for r in rows], default=str)), key=json.dumps)

    for model in MARTS:
        duck_rows = query(duck_settings, f"select * from {model}")
        assert normalized(spark["tables"][model]) == normalized(duck_rows), model
    # Spark's warehouse, metastore and derby.log stay in its home
    assert (home / "spark-warehouse" / "recsys.db").is_dir()
    assert (home / "spark-derby" / "metastore_db").is_dir()
    assert not any((tmp_path / name).exists() for name in ("metastore_db", "derby.log"))
