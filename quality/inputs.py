"""The quality gate's inputs: one pandas frame per suite, read from the lake (the day's rows),
the day's reconciliation record and the warehouse dbt built.

A missing or unreadable input raises :class:`InputUnavailable`, whose message says what is
missing and where; the gate reports it as a failed critical check of that suite.
"""

from __future__ import annotations

import json
from datetime import date
from typing import TYPE_CHECKING, Callable

from core.settings import Settings
from quality import suites as suites_mod

if TYPE_CHECKING:
    import pandas as pd

RECONCILIATION_COUNTS = ("input_rows", "written_rows", "quarantined_rows", "duplicate_rows")


class InputUnavailable(Exception):
    """A suite's input could not be read; the message says what is missing and where."""


def events_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    import duckdb

    day = run_date.isoformat()
    # Only that arrival day's sub-partitions are read: other days may be mid-rewrite by ingestion.
    pattern = settings.events_dir / "event_date=*" / f"arrival_date={day}" / "*.parquet"
    if not any(settings.events_dir.glob(f"event_date=*/arrival_date={day}/*.parquet")):
        raise InputUnavailable(
            f"no lake files for arrival_date={day} under {settings.events_dir} "
            "(did ingestion run for this day?)"
        )
    con = duckdb.connect()
    try:
        frame = con.execute(
            "SELECT event_id, event_time, user_id, session_id, item_id, event_type "
            "FROM read_parquet(?, hive_partitioning = true, union_by_name = true)",
            [str(pattern)],
        ).df()
    except duckdb.Error as exc:
        raise InputUnavailable(f"cannot read lake rows of arrival_date={day}: {exc}") from exc
    finally:
        con.close()
    frame["event_time"] = _naive_utc(frame["event_time"])
    return frame


def _naive_utc(column: "pd.Series") -> "pd.Series":
    """Timestamps as naive UTC, the form of the suite's event-time bounds.

    DuckDB reads Spark's INT96 timestamps as naive (already UTC) and UTC-adjusted ones as
    zone-aware in the session zone; both end up as the same naive UTC instants.
    """
    import pandas as pd

    column = pd.to_datetime(column)
    if column.dt.tz is not None:
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    return column


def reconciliation_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    import pandas as pd

    path = settings.reconciliation_dir / f"{run_date.isoformat()}.json"
    if not path.exists():
        raise InputUnavailable(
            f"reconciliation file {path} not found (did ingestion run for this day?)"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputUnavailable(f"reconciliation file {path} is unreadable: {exc}") from exc
    if not isinstance(record, dict):
        raise InputUnavailable(f"reconciliation file {path} is not a JSON object")
    missing = [key for key in RECONCILIATION_COUNTS if key not in record]
    if missing:
        raise InputUnavailable(f"reconciliation file {path} lacks {', '.join(missing)}")
    try:
        counts = {key: int(record[key]) for key in RECONCILIATION_COUNTS}
    except (TypeError, ValueError) as exc:
        raise InputUnavailable(f"reconciliation file {path} has a non-integer count: {exc}") from exc

    input_rows = counts["input_rows"]
    row: dict[str, float] = dict(counts)
    row["unaccounted_rows"] = input_rows - (
        counts["written_rows"] + counts["quarantined_rows"] + counts["duplicate_rows"]
    )
    # An empty day already fails "input_rows >= 1"; 0.0 keeps the share checks from also
    # reporting a meaningless division by zero.
    row["quarantine_share"] = counts["quarantined_rows"] / input_rows if input_rows > 0 else 0.0
    row["duplicate_share"] = counts["duplicate_rows"] / input_rows if input_rows > 0 else 0.0
    # A record written before ingestion listed its ignored files has none to report.
    ignored = record.get("ignored_files", [])
    if not isinstance(ignored, list):
        raise InputUnavailable(f"reconciliation file {path} has ignored_files that is not a list")
    row["ignored_files"] = len(ignored)
    return pd.DataFrame([row])


def _warehouse_query(settings: Settings, table: str, sql: str) -> "pd.DataFrame":
    import duckdb

    path = settings.warehouse_path
    if not path.exists():
        raise InputUnavailable(f"warehouse {path} not found (did dbt run?)")
    try:
        # Read-only: the gate must never change what dbt built, and may run beside a reader.
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise InputUnavailable(f"cannot open warehouse {path}: {exc}") from exc
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise InputUnavailable(f"cannot read table {table} from {path}: {exc}") from exc
    finally:
        con.close()


def sessions_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    # The warehouse holds all history; its tables are validated whole, whatever the run date.
    return _warehouse_query(
        settings,
        "fct_sessions",
        "SELECT session_id, n_events, duration_seconds, converted, session_start, session_end, "
        "epoch(session_end) - epoch(session_start) AS end_minus_start_seconds "
        "FROM main.fct_sessions",
    )


def user_sequences_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    return _warehouse_query(
        settings, "user_sequences", "SELECT user_id, n_events FROM main.user_sequences"
    )


# Suite name -> the reader of its input.
FRAME_READERS: dict[str, Callable[[Settings, date], "pd.DataFrame"]] = {
    suites_mod.INGESTED_EVENTS: events_frame,
    suites_mod.INGESTION_RECONCILIATION: reconciliation_frame,
    suites_mod.SESSIONS: sessions_frame,
    suites_mod.USER_SEQUENCES: user_sequences_frame,
}
