"""The platform's data assets, for Airflow's data-aware scheduling.

Producing tasks declare them as ``outlets``; each successful run of such a task records an asset
event (visible under *Assets* in the UI, with the task's summary as the event's ``extra``), and a
DAG with ``schedule=[asset]`` runs after every update. The URIs are logical names: where the data
lives follows ``Settings`` (``$RECSYS_HOME``), which differs between the embedded demo and the
containers, so it is not baked into the URI.

    lake_events ──▶ session_tables ──▶ online_features
    (ingest_events)  (check_quality)    (materialize_features)
    backfill_recsys updates the first two as well (from its build_sessions: it has no gate).

The nightly run publishes ``SESSION_TABLES`` from ``check_quality``, once the quality gate has
passed on the tables ``build_sessions`` built: a day the gate rejects never produces an event
(its rows are taken out of the tables again; see quality.admission). So a DAG scheduled on
``SESSION_TABLES`` or ``ONLINE_FEATURES`` (reporting, a downstream team, a refresh of features)
only ever starts on validated nightly tables. No DAG of this repository is scheduled on them
yet: the nightly DAG already runs ingestion -> sessions -> gate -> features in one run.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset

LAKE_EVENTS = Asset(
    name="recsys_lake_events", uri="recsys://lake/events", group="recsys",
    extra={"what": "valid events by event_date/arrival_date (Parquet), quarantine, reconciliation"},
)
SESSION_TABLES = Asset(
    name="recsys_session_tables", uri="recsys://warehouse/session_tables", group="recsys",
    extra={"what": "dbt marts: fct_sessions, user_sequences, user/item feature tables"},
)
ONLINE_FEATURES = Asset(
    name="recsys_online_features", uri="recsys://feast/online_store", group="recsys",
    extra={"what": "Feast feature views materialized to the online store (SQLite or Redis)"},
)

def record_asset_event(asset: Asset, summary: dict[str, Any]) -> None:
    """Inside a task with ``outlets=[asset]``: attach the stage's summary (scalars only) to the
    asset event Airflow records when the task succeeds."""
    from airflow.sdk import get_current_context

    extra = {k: v for k, v in summary.items() if isinstance(v, (str, int, float, bool)) or v is None}
    get_current_context()["outlet_events"][asset].extra = extra
