"""The expectation suites of the quality gate, as code.

Each expectation carries its severity twice: GX's own ``severity`` field (shown in Data Docs) and
``meta={"critical": bool}`` (kept in the stored suite JSON for anyone reading it without GX). The
gate blocks the pipeline on a failed critical expectation and only reports failed warnings.

``great_expectations`` is imported inside the functions: it takes seconds to import and Airflow
parses every DAG file that imports this module.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from core.names import EVENT_TYPES
from core.settings import Settings

if TYPE_CHECKING:
    import great_expectations as gx

INGESTED_EVENTS = "ingested_events"
INGESTION_RECONCILIATION = "ingestion_reconciliation"
SESSIONS = "sessions"
USER_SEQUENCES = "user_sequences"
# Validation order of the gate (lake first, then the dbt tables built from it).
SUITE_NAMES = (INGESTED_EVENTS, INGESTION_RECONCILIATION, SESSIONS, USER_SEQUENCES)

# Thresholds that Settings does not carry. A quarantine share above this means the upstream log
# format changed or broke: training on the remaining 95 % would silently skew the data.
MAX_QUARANTINE_SHARE = 0.05
# Client retries produce duplicates; many of them is worth a look but not worth stopping for,
# since ingestion already dropped them.
MAX_DUPLICATE_SHARE = 0.2
# More events than this for one user is a bot or a broken id, not a person.
MAX_USER_EVENTS = 100_000


def _expectation(cls_name: str, *, critical: bool, **kwargs: Any):
    import great_expectations.expectations as gxe

    cls = getattr(gxe, cls_name)
    return cls(
        severity="critical" if critical else "warning",
        meta={"critical": critical},
        **kwargs,
    )


def event_time_window(settings: Settings, run_date: date) -> tuple[datetime, datetime]:
    """The event times ingestion accepts for arrival day ``run_date``, as naive UTC datetimes.

    Mirrors ingestion's quarantine rules: older than ``max_event_age_days`` before the arrival
    day's start, or later than ``max_future_skew_minutes`` after its end, never reaches the lake.
    """
    day_start = datetime.combine(run_date, time.min)
    earliest = day_start - timedelta(days=settings.max_event_age_days)
    latest = day_start + timedelta(days=1, minutes=settings.max_future_skew_minutes)
    return earliest, latest


def ingested_events_suite(settings: Settings, run_date: date) -> "gx.ExpectationSuite":
    """The valid events that arrived on ``run_date`` (lake rows with that ``arrival_date``)."""
    import great_expectations as gx

    earliest, latest = event_time_window(settings, run_date)
    expectations = [
        _expectation("ExpectTableRowCountToBeBetween", critical=True, min_value=1),
        _expectation("ExpectColumnValuesToBeUnique", critical=True, column="event_id"),
        *(
            _expectation("ExpectColumnValuesToNotBeNull", critical=True, column=column)
            for column in ("event_id", "user_id", "item_id", "event_time", "event_type")
        ),
        _expectation(
            "ExpectColumnValuesToBeInSet",
            critical=True,
            column="event_type",
            value_set=list(EVENT_TYPES),
        ),
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=True,
            column="event_time",
            min_value=earliest,
            max_value=latest,
        ),
    ]
    return gx.ExpectationSuite(
        name=INGESTED_EVENTS,
        expectations=expectations,
        meta={"run_date": run_date.isoformat()},
    )


def ingestion_reconciliation_suite(
    settings: Settings,
    max_quarantine_share: float = MAX_QUARANTINE_SHARE,
    max_duplicate_share: float = MAX_DUPLICATE_SHARE,
) -> "gx.ExpectationSuite":
    """The one-row frame of the day's reconciliation JSON plus derived columns
    ``unaccounted_rows``, ``quarantine_share``, ``duplicate_share`` and ``ignored_files`` (the
    number of raw files ingestion left unread).

    ``settings`` is taken for the same call shape as the other suites; Settings holds none of
    this suite's thresholds (see the module constants).
    """
    import great_expectations as gx

    expectations = [
        _expectation(
            "ExpectColumnValuesToBeBetween", critical=True, column="input_rows", min_value=1
        ),
        # Every input line must be written, quarantined or dropped as a duplicate.
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=True,
            column="unaccounted_rows",
            min_value=0,
            max_value=0,
        ),
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=True,
            column="quarantine_share",
            min_value=0,
            max_value=max_quarantine_share,
        ),
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=False,
            column="duplicate_share",
            min_value=0,
            max_value=max_duplicate_share,
        ),
        # Files under the raw day that ingestion did not read (wrong suffix, a subfolder, an
        # upload in progress): their lines are in no count above. The record names each file
        # and why; a warning, since the day's other files are complete.
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=False,
            column="ignored_files",
            min_value=0,
            max_value=0,
        ),
    ]
    return gx.ExpectationSuite(name=INGESTION_RECONCILIATION, expectations=expectations)


def sessions_suite(settings: Settings) -> "gx.ExpectationSuite":
    """Warehouse table ``fct_sessions`` plus the computed column ``end_minus_start_seconds``."""
    import great_expectations as gx

    expectations = [
        _expectation("ExpectTableRowCountToBeBetween", critical=True, min_value=1),
        _expectation("ExpectColumnValuesToBeUnique", critical=True, column="session_id"),
        *(
            _expectation("ExpectColumnValuesToNotBeNull", critical=True, column=column)
            for column in ("session_id", "session_start", "session_end", "converted")
        ),
        _expectation(
            "ExpectColumnValuesToBeBetween", critical=True, column="n_events", min_value=1
        ),
        _expectation(
            "ExpectColumnValuesToBeBetween", critical=True, column="duration_seconds", min_value=0
        ),
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=True,
            column="end_minus_start_seconds",
            min_value=0,
        ),
        # DuckDB hands a BOOLEAN column to pandas as ``bool``, or ``boolean`` when it has NULLs.
        _expectation(
            "ExpectColumnValuesToBeInTypeList",
            critical=True,
            column="converted",
            type_list=["bool", "boolean"],
        ),
    ]
    return gx.ExpectationSuite(name=SESSIONS, expectations=expectations)


def user_sequences_suite(
    settings: Settings, max_user_events: int = MAX_USER_EVENTS
) -> "gx.ExpectationSuite":
    """Warehouse table ``user_sequences`` (one row per user)."""
    import great_expectations as gx

    expectations = [
        _expectation("ExpectTableRowCountToBeBetween", critical=True, min_value=1),
        _expectation("ExpectColumnValuesToNotBeNull", critical=True, column="user_id"),
        _expectation("ExpectColumnValuesToBeUnique", critical=True, column="user_id"),
        _expectation(
            "ExpectColumnValuesToBeBetween",
            critical=True,
            column="n_events",
            min_value=1,
            max_value=max_user_events,
        ),
    ]
    return gx.ExpectationSuite(name=USER_SEQUENCES, expectations=expectations)


def build_suites(settings: Settings, run_date: date) -> dict[str, "gx.ExpectationSuite"]:
    """All suites of the gate for ``run_date``, keyed by name, in validation order."""
    return {
        INGESTED_EVENTS: ingested_events_suite(settings, run_date),
        INGESTION_RECONCILIATION: ingestion_reconciliation_suite(settings),
        SESSIONS: sessions_suite(settings),
        USER_SEQUENCES: user_sequences_suite(settings),
    }
