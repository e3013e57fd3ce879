"""The quality gate against small lake / reconciliation / warehouse fixtures built in tmp_path.

Real Great Expectations runs every case (file-mode project under ``settings.gx_dir``); the
fixtures are written directly (pyarrow, JSON, DuckDB SQL), so no Spark or dbt is needed.
"""

from __future__ import annotations

import json
import pickle
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import Settings
from quality.gate import (
    GateVerdict,
    QualityGateFailed,
    enforce,
    load_verdict,
    run_quality_gate,
    verdict_path,
)
from quality.suites import SUITE_NAMES, build_suites, event_time_window

RUN_DATE = date(2026, 11, 20)

LAKE_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("extra", pa.string()),
    ]
)


def _event(event_id: str, minute: int, user: str = "u1", item: str = "i1", kind: str = "view"):
    return {
        "event_id": event_id,
        "event_time": datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc) + timedelta(minutes=minute),
        "user_id": user,
        "session_id": None,
        "item_id": item,
        "event_type": kind,
        "extra": None,
    }


CLEAN_EVENTS = [
    _event("e1", 0, "u1", "i1", "view"),
    _event("e2", 1, "u1", "i2", "click"),
    _event("e3", 2, "u1", "i2", "add_to_cart"),
    _event("e4", 3, "u1", "i2", "purchase"),
    _event("e5", 5, "u2", "i3", "view"),
]


def write_events(settings: Settings, rows: list[dict], *, int96: bool = False) -> None:
    """Lake rows of arrival day RUN_DATE in the hive layout ingestion writes."""
    by_date: dict[str, list[dict]] = {}
    for row in rows:
        by_date.setdefault(row["event_time"].date().isoformat(), []).append(row)
    for event_date, day_rows in by_date.items():
        folder = settings.events_dir / f"event_date={event_date}" / f"arrival_date={RUN_DATE}"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.parquet"):
            old.unlink()
        table = pa.Table.from_pylist(day_rows, schema=LAKE_SCHEMA)
        # Spark's default output timestamp type is INT96; both encodings must validate alike.
        pq.write_table(
            table, folder / "part-00000.snappy.parquet", use_deprecated_int96_timestamps=int96
        )


def write_reconciliation(settings: Settings, **overrides: int) -> None:
    counts = {"input_rows": 6, "written_rows": 5, "quarantined_rows": 0, "duplicate_rows": 1}
    counts.update(overrides)
    record = {
        "arrival_date": RUN_DATE.isoformat(),
        **counts,
        "quarantine_reasons": {},
        "event_dates": [RUN_DATE.isoformat()],
    }
    settings.reconciliation_dir.mkdir(parents=True, exist_ok=True)
    (settings.reconciliation_dir / f"{RUN_DATE}.json").write_text(json.dumps(record))


SESSIONS_SQL = """
CREATE OR REPLACE TABLE fct_sessions AS
SELECT * FROM (VALUES
    ('u1#1', 'u1', TIMESTAMP '2026-11-20 10:00:00', TIMESTAMP '2026-11-20 10:03:00', 180.0, 4,
     ['i1', 'i2', 'i2', 'i2'], 1, 1, 1, 1, TRUE),
    ('u2#1', 'u2', TIMESTAMP '2026-11-20 10:05:00', TIMESTAMP '2026-11-20 10:05:00', 0.0, 1,
     ['i3'], 1, 0, 0, 0, FALSE)
) AS t(session_id, user_id, session_start, session_end, duration_seconds, n_events, item_ids,
       n_views, n_clicks, n_add_to_cart, n_purchases, converted)
"""

USER_SEQUENCES_SQL = """
CREATE OR REPLACE TABLE user_sequences AS
SELECT * FROM (VALUES
    ('u1', ['i1', 'i2', 'i2', 'i2'],
     [TIMESTAMP '2026-11-20 10:00:00', TIMESTAMP '2026-11-20 10:01:00',
      TIMESTAMP '2026-11-20 10:02:00', TIMESTAMP '2026-11-20 10:03:00'],
     4, TIMESTAMP '2026-11-20 10:00:00', TIMESTAMP '2026-11-20 10:03:00'),
    ('u2', ['i3'], [TIMESTAMP '2026-11-20 10:05:00'],
     1, TIMESTAMP '2026-11-20 10:05:00', TIMESTAMP '2026-11-20 10:05:00')
) AS t(user_id, item_ids, event_times, n_events, first_event_time, last_event_time)
"""


def write_warehouse(settings: Settings, *extra_sql: str) -> None:
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        for sql in (SESSIONS_SQL, USER_SEQUENCES_SQL, *extra_sql):
            con.execute(sql)
    finally:
        con.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A home with one clean day: every suite passes."""
    s = Settings(home=tmp_path)
    write_events(s, CLEAN_EVENTS)
    write_reconciliation(s)
    write_warehouse(s)
    return s


def _mentions(failures: list[str], *parts: str) -> bool:
    return any(all(part in failure for part in parts) for failure in failures)


def test_clean_day_passes_and_builds_data_docs(settings: Settings) -> None:
    verdict = run_quality_gate(settings, RUN_DATE)

    assert verdict.passed, verdict.failed_critical
    assert verdict.failed_critical == [] and verdict.failed_warnings == []
    assert verdict.suites == {name: True for name in SUITE_NAMES}
    index = Path(verdict.data_docs_index)
    assert index.name == "index.html" and index.is_file()
    assert index.is_relative_to(settings.gx_dir)
    assert enforce(verdict) is verdict
    # The verdict on disk is what later tasks read.
    assert verdict_path(settings, RUN_DATE).is_file()
    assert load_verdict(settings, RUN_DATE) == verdict
    assert load_verdict(settings, RUN_DATE + timedelta(days=1)) is None


def test_high_quarantine_share_fails_and_enforce_raises(settings: Settings) -> None:
    write_reconciliation(settings, input_rows=100, written_rows=90, quarantined_rows=10, duplicate_rows=0)

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert verdict.suites["ingestion_reconciliation"] is False
    assert _mentions(
        verdict.failed_critical,
        "ingestion_reconciliation: expect_column_values_to_be_between(quarantine_share)",
        "0.1",
    ), verdict.failed_critical
    with pytest.raises(QualityGateFailed) as raised:
        enforce(verdict)
    assert "quarantine_share" in str(raised.value)
    assert raised.value.verdict == verdict
    # Survives pickling (the message alone could not rebuild it).
    assert pickle.loads(pickle.dumps(raised.value)).verdict == verdict


def test_unaccounted_rows_fail(settings: Settings) -> None:
    write_reconciliation(settings, input_rows=10, written_rows=5, quarantined_rows=0, duplicate_rows=1)

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert _mentions(verdict.failed_critical, "expect_column_values_to_be_between(unaccounted_rows)", "4")


def test_duplicate_event_ids_fail(settings: Settings) -> None:
    write_events(settings, [*CLEAN_EVENTS, _event("e1", 7, "u2", "i4", "click")])

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert verdict.suites["ingested_events"] is False
    assert _mentions(
        verdict.failed_critical, "ingested_events: expect_column_values_to_be_unique(event_id)", "e1"
    ), verdict.failed_critical


def test_unknown_event_type_fails(settings: Settings) -> None:
    write_events(settings, [*CLEAN_EVENTS, _event("e6", 8, "u2", "i4", "wishlist")])

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert _mentions(
        verdict.failed_critical, "expect_column_values_to_be_in_set(event_type)", "wishlist"
    ), verdict.failed_critical


def test_event_time_outside_window_fails(settings: Settings) -> None:
    earliest, latest = event_time_window(settings, RUN_DATE)
    assert earliest == datetime(2026, 10, 21) and latest == datetime(2026, 11, 21, 1, 0)
    too_late = _event("e7", 0)
    too_late["event_time"] = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)
    write_events(settings, [*CLEAN_EVENTS, too_late], int96=True)

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert _mentions(
        verdict.failed_critical, "expect_column_values_to_be_between(event_time)", "2026-11-21T02:00"
    ), verdict.failed_critical


def test_negative_duration_fails(settings: Settings) -> None:
    write_warehouse(
        settings,
        "UPDATE fct_sessions SET duration_seconds = -5 WHERE session_id = 'u2#1'",
    )

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert verdict.suites["sessions"] is False
    assert _mentions(
        verdict.failed_critical, "sessions: expect_column_values_to_be_between(duration_seconds)", "-5"
    ), verdict.failed_critical
    assert verdict.suites["user_sequences"] is True


def test_missing_reconciliation_fails_clearly(settings: Settings) -> None:
    (settings.reconciliation_dir / f"{RUN_DATE}.json").unlink()

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert verdict.suites["ingestion_reconciliation"] is False
    assert _mentions(
        verdict.failed_critical,
        "ingestion_reconciliation: input missing",
        str(settings.reconciliation_dir / f"{RUN_DATE}.json"),
    ), verdict.failed_critical
    # The other suites still ran.
    assert verdict.suites["ingested_events"] and verdict.suites["sessions"]
    with pytest.raises(QualityGateFailed, match="ingestion_reconciliation: input missing"):
        enforce(verdict)


def test_missing_lake_day_and_warehouse_fail_without_crashing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    write_reconciliation(settings)

    verdict = run_quality_gate(settings, RUN_DATE)

    assert not verdict.passed
    assert _mentions(verdict.failed_critical, "ingested_events: input missing", f"arrival_date={RUN_DATE}")
    assert _mentions(verdict.failed_critical, "sessions: input missing", "warehouse")
    assert _mentions(verdict.failed_critical, "user_sequences: input missing", "warehouse")
    assert verdict.suites["ingestion_reconciliation"] is True
    assert Path(verdict.data_docs_index).is_file()


def test_warning_only_failure_passes_but_is_listed(settings: Settings) -> None:
    write_reconciliation(settings, input_rows=100, written_rows=70, quarantined_rows=0, duplicate_rows=30)

    verdict = run_quality_gate(settings, RUN_DATE)

    assert verdict.passed, verdict.failed_critical
    assert verdict.failed_critical == []
    assert _mentions(
        verdict.failed_warnings,
        "ingestion_reconciliation: expect_column_values_to_be_between(duplicate_share)",
        "0.3",
    ), verdict.failed_warnings
    assert verdict.suites["ingestion_reconciliation"] is False
    enforce(verdict)


def test_rerun_same_date_overwrites_verdict(settings: Settings) -> None:
    first = run_quality_gate(settings, RUN_DATE)
    assert first.passed

    write_events(settings, [*CLEAN_EVENTS, _event("e6", 8, kind="wishlist")])
    second = run_quality_gate(settings, RUN_DATE)
    assert not second.passed
    assert load_verdict(settings, RUN_DATE) == second

    write_events(settings, CLEAN_EVENTS)
    # Airflow passes datetimes; the gate works on the calendar day.
    third = run_quality_gate(settings, datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc))
    assert third.passed and third.run_date == RUN_DATE
    assert load_verdict(settings, RUN_DATE) == third
    assert sorted(p.name for p in settings.quality_dir.iterdir()) == [f"{RUN_DATE}.json"]


def test_suites_mark_every_expectation_with_a_severity(tmp_path: Path) -> None:
    suites = build_suites(Settings(home=tmp_path), RUN_DATE)
    assert list(suites) == list(SUITE_NAMES)
    for suite in suites.values():
        assert suite.expectations
        for expectation in suite.expectations:
            assert isinstance(expectation.meta["critical"], bool)
            assert (expectation.severity.value == "critical") == expectation.meta["critical"]
    warnings = [
        e.column
        for e in suites["ingestion_reconciliation"].expectations
        if not e.meta["critical"]
    ]
    assert warnings == ["duplicate_share", "ignored_files"]


def test_verdict_json_round_trip() -> None:
    verdict = GateVerdict(
        run_date=RUN_DATE,
        passed=False,
        failed_critical=["sessions: input missing: x"],
        failed_warnings=[],
        suites={"sessions": False},
        data_docs_index="/tmp/index.html",
    )
    assert GateVerdict.from_dict(json.loads(json.dumps(verdict.to_dict()))) == verdict
