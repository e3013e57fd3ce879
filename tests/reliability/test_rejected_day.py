"""A day that fails its quality gate never reaches the tables training reads, until a person
re-admits it (quality/admission.py).

Three arrival days A, B and C share users; B's reconciliation does not add up (rows lost by
ingestion), a critical failure of the real gate, and C re-sends one of B's events. After B's
rejection the session tables, and the split training builds from them, are those of a lake where
B never arrived; after B's re-admission they are those of a lake where it always was.

Lakes and reconciliation records are written directly in the layout ingest/ writes (pyarrow,
JSON), so no Spark runs; dbt and Great Expectations are the real ones.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sessions.session_tables import build_pending_session_tables, build_session_tables
from core.settings import Settings

A, B, C = date(2026, 11, 20), date(2026, 11, 21), date(2026, 11, 22)
K = 5
# Everything training, features and the gate read from the warehouse.
TABLES = ("stg_lake__events", "int_events_sessionized", "fct_sessions", "user_sequences",
          "user_features", "item_features", "dim_items")
LAKE_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("event_time", pa.timestamp("us", tz="UTC")),
    ("user_id", pa.string()), ("session_id", pa.string()), ("item_id", pa.string()),
    ("event_type", pa.string()), ("extra", pa.string()),
])


def day_events(arrival: date) -> list[dict]:
    """Six users, three events each on the arrival day, plus a late one from the day before."""
    start = datetime.combine(arrival, datetime.min.time(), tzinfo=timezone.utc)
    rows = []
    for user in range(6):
        for j in range(3):
            rows.append({
                "event_id": f"{arrival:%m%d}-{user}-{j}",
                "event_time": start + timedelta(hours=8, minutes=37 * user + 20 * j),
                "user_id": f"u{user}", "session_id": None,
                "item_id": f"i{(3 * user + j + arrival.day) % 9}",
                "event_type": "purchase" if j == 2 and user % 2 else "view", "extra": None,
            })
    rows.append({"event_id": f"{arrival:%m%d}-late", "event_time": start - timedelta(hours=2),
                 "user_id": "u1", "session_id": None, "item_id": f"i{arrival.day % 9}",
                 "event_type": "click", "extra": None})
    if arrival == C:  # a re-send of one of B's events
        rows.append(next(r for r in day_events(B) if r["event_id"] == f"{B:%m%d}-2-1"))
    return rows


def arrive(settings: Settings, arrival: date, *, lost_rows: int = 0) -> None:
    """The day's lake partitions and reconciliation record, as ingestion publishes them."""
    rows = day_events(arrival)
    dates = sorted({r["event_time"].date().isoformat() for r in rows})
    for event_date in dates:
        folder = settings.events_dir / f"event_date={event_date}" / f"arrival_date={arrival}"
        folder.mkdir(parents=True, exist_ok=True)
        part = [r for r in rows if r["event_time"].date().isoformat() == event_date]
        pq.write_table(pa.Table.from_pylist(part, schema=LAKE_SCHEMA), folder / "part-00000.parquet")
    settings.reconciliation_dir.mkdir(parents=True, exist_ok=True)
    (settings.reconciliation_dir / f"{arrival}.json").write_text(json.dumps({
        "arrival_date": arrival.isoformat(), "input_rows": len(rows) + lost_rows,
        "written_rows": len(rows), "quarantined_rows": 0, "duplicate_rows": 0,
        "quarantine_reasons": {}, "ingested_files": [], "ignored_files": [],
        "event_dates": dates, "affected_event_dates": dates,
    }))


def tables(settings: Settings) -> dict[str, list[tuple]]:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {name: con.execute(f"select * from {name} order by all").fetchall() for name in TABLES}


def split_of(settings: Settings) -> dict:
    """The night's split as training builds it from the warehouse (as of C)."""
    from training.protocol import load_split

    split = load_split(settings, C, protocol="user_temporal", test_days=0.5, val_days=0.5,
                       exclude_seen=False)
    return {"info": split.info(),
            "train": [[split.vocab.item(i) for i in s] for s in split.train_sequences],
            "val": split.val_examples, "test": split.test_examples}


def reference(tmp_path: Path, name: str, days: list[date]) -> Settings:
    """A warehouse built in one go from a lake that only ever had ``days``."""
    settings = Settings(home=tmp_path / name, max_sequence_length=K)
    for day in days:
        arrive(settings, day)
    build_session_tables(settings, run_tests=False)
    return settings


def rejected_verdict(day: date):
    from quality.gate import GateVerdict

    return GateVerdict(run_date=day, passed=False, suites={"ingestion_reconciliation": False},
                       failed_critical=["ingestion_reconciliation: expect_column_values_to_be_between"
                                        "(unaccounted_rows) observed [3]"],
                       failed_warnings=[], data_docs_index="index.html")


def b_rows(settings: Settings) -> int:
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute("select count(*) from int_events_sessionized "
                           "where arrival_date = ?", [B]).fetchone()[0]


def test_a_rejection_recorded_before_a_crash_is_applied_by_the_next_build(tmp_path):
    from quality.admission import record_rejection

    nightly = Settings(home=tmp_path / "nightly", max_sequence_length=K)
    for day in (A, B, C):
        arrive(nightly, day, lost_rows=3 if day == B else 0)
    build_pending_session_tables(nightly)
    assert b_rows(nightly) > 0

    record_rejection(nightly, rejected_verdict(B))
    # The gate's process died here, before its own rebuild: the next night's build must notice.
    summary = build_pending_session_tables(nightly)
    assert summary["mode"] == "full_refresh" and summary["excluded_arrival_dates"] == [B.isoformat()]

    never = reference(tmp_path, "never", [A, C])
    assert tables(nightly) == tables(never)
    assert split_of(nightly) == split_of(never)


def test_readmit_command_records_who_why_and_rejects_bad_input(tmp_path, monkeypatch, capsys):
    from quality.admission import excluded_arrival_dates, main, read_events, record_rejection

    settings = Settings(home=tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    for argv, says in ((["readmit", "2026-11-21", "--reason", "x"], "not excluded (never rejected)"),
                       (["readmit", "21/11/2026", "--reason", "x"], "not a date"),
                       (["readmit", "2026-11-21", "--reason", "  "], "needs a reason")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_.value.code == 2 and err.startswith("error: ") and says in err and "\n" not in err

    record_rejection(settings, rejected_verdict(B))
    assert excluded_arrival_dates(settings) == [B.isoformat()]
    main(["list"])
    assert "EXCLUDED" in capsys.readouterr().out
    assert main(["readmit", "2026-11-21", "--reason", "lost rows were a blank line", "--by", "ana"]) == 0
    assert excluded_arrival_dates(settings) == []
    event = read_events(settings)[-1]
    assert (event["action"], event["by"], event["reason"]) == ("readmitted", "ana", "lost rows were a blank line")
    assert datetime.fromisoformat(event["at"]).tzinfo is not None
    main(["list"])
    assert "readmitted" in capsys.readouterr().out


def test_a_rerun_of_a_rejected_day_that_now_passes_stays_out(tmp_path):
    from quality.admission import ArrivalDayExcluded, enforce_admission, record_rejection
    from quality.gate import GateVerdict

    settings = Settings(home=tmp_path)
    record_rejection(settings, rejected_verdict(B))
    passed = GateVerdict(run_date=B, passed=True, failed_critical=[], failed_warnings=[],
                         suites={}, data_docs_index="index.html")
    # The gate judged tables built without B: passing says nothing about B's rows.
    with pytest.raises(ArrivalDayExcluded, match="recsys admission readmit 2026-11-21"):
        enforce_admission(settings, passed)
    assert enforce_admission(settings, dataclasses.replace(passed, run_date=C)).run_date == C


@pytest.mark.heavy
def test_rejected_day_never_trains_until_readmitted(tmp_path):
    from pipeline import stages
    from quality.admission import excluded_arrival_dates
    from quality.gate import QualityGateFailed, load_verdict

    nightly = Settings(home=tmp_path / "nightly", max_sequence_length=K)
    arrive(nightly, A)
    stages.build_sessions(nightly, A)
    stages.check_quality(nightly, A)

    arrive(nightly, B, lost_rows=3)
    stages.build_sessions(nightly, B)
    assert b_rows(nightly) > 0  # built before the gate judged it
    with pytest.raises(QualityGateFailed, match="unaccounted_rows"):
        stages.check_quality(nightly, B)
    assert excluded_arrival_dates(nightly) == [B.isoformat()]
    assert b_rows(nightly) == 0  # taken out before the run stopped

    arrive(nightly, C)
    stages.build_sessions(nightly, C)
    stages.check_quality(nightly, C)
    never = reference(tmp_path, "never", [A, C])
    assert tables(nightly) == tables(never)
    assert split_of(nightly) == split_of(never)

    # B's night again with the DAG's readmit Param (the command line does the same: see above).
    stages.build_sessions(nightly, B, readmit_reason="the lost rows were blank lines", readmitted_by="ana")
    always = reference(tmp_path, "always", [A, B, C])
    assert tables(nightly) == tables(always)
    # The person saw B's failures: its gate now reports them as warnings and lets the run go on.
    stages.check_quality(nightly, B)
    verdict = load_verdict(nightly, B)
    assert verdict.passed and verdict.readmitted["by"] == "ana"
    assert verdict.readmitted["reason"] == "the lost rows were blank lines"
    assert any("re-admitted: ingestion_reconciliation" in w for w in verdict.failed_warnings)
