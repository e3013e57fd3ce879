"""Backfill Airflow DAG: ingest a range of arrival days in date order, then rebuild the session tables.

This file only wires tasks; every task is one call into ``pipeline.stages``.
"""

from __future__ import annotations

from datetime import date, datetime

from airflow.sdk import Param, dag, get_current_context, task

from pipeline.alerts import on_task_failure
from pipeline.assets import LAKE_EVENTS, SESSION_TABLES, record_asset_event
from core.logging_setup import task_stage_logs

DOC = """
### Backfill of raw logs into the lake

Triggered by hand (no schedule) with **Params** `start` and `end` (YYYY-MM-DD, inclusive) and
`strict` (default off):

1. `plan_arrival_days` — checks the range (`end` not before `start`) and every arrival day's raw
   folder `raw/<date>/`, before anything is written. A day without a raw folder (nothing arrived)
   is skipped: one log line each, and the plan's and the ingestion's XCom list it in
   `skipped_days`. With `strict` such a range fails this task instead (one line naming the
   missing days); a range in which no day has a raw folder always fails it.
2. `ingest_arrival_days` — the Spark ingestion job for each arrival day **in date order**, in one
   task: duplicates across days are only dropped when earlier days are in the lake first, so the
   days must not run in parallel or out of order. The lake ends up as day-by-day nightly runs
   would leave it; each day is published atomically and gets its reconciliation record
   (including `affected_event_dates`, the event dates whose content changed).
3. `build_sessions` — one `dbt build` over the whole lake.

Re-running a backfill rewrites the same partitions (every stage is idempotent for its dates).

Updates the assets `recsys_lake_events` and `recsys_session_tables`; a failed task appends an
alert record to `$RECSYS_HOME/alerts/<date>.jsonl`.
"""


@dag(
    dag_id="backfill_recsys",
    description="Ingest a range of arrival days, then rebuild the session tables",
    doc_md=DOC,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "backfill", "ingestion"],
    default_args={"owner": "recsys-platform", "retries": 0, "on_failure_callback": on_task_failure},
    params={
        "start": Param(
            type="string", format="date", title="First arrival date",
            description="First arrival day to ingest (YYYY-MM-DD).",
        ),
        "end": Param(
            type="string", format="date", title="Last arrival date",
            description="Last arrival day to ingest, inclusive (YYYY-MM-DD), not before the first.",
        ),
        "strict": Param(
            False, type="boolean", title="Strict",
            description="Fail before ingesting anything when a day of the range has no raw folder "
                        "(default: skip such days).",
        ),
    },
)
def backfill_recsys():
    def settings():
        from core.settings import Settings

        return Settings.from_env()

    @task
    def plan_arrival_days() -> dict:
        from ingest.ingest_day import plan_arrival_days as plan_days

        params = get_current_context()["params"]
        strict = bool(params.get("strict", False))
        plan = plan_days(settings(), date.fromisoformat(params["start"]), date.fromisoformat(params["end"]),
                         strict=strict)
        # first/last: the range as asked (a skipped day at either end stays inside it).
        return {"first": plan.first.isoformat(), "last": plan.last.isoformat(), "days": len(plan.days),
                "skipped_days": [day.isoformat() for day in plan.skipped], "strict": strict}

    # A retry re-runs the whole range: each day's ingestion replaces its own previous run.
    @task(retries=1, outlets=[LAKE_EVENTS])
    def ingest_arrival_days(plan: dict) -> dict:
        from pipeline import stages

        with task_stage_logs("ingest_arrival_days", plan["last"]):
            summary = stages.ingest_events_range(
                settings(), date.fromisoformat(plan["first"]), date.fromisoformat(plan["last"]),
                strict=bool(plan.get("strict", False)),
            )
        record_asset_event(LAKE_EVENTS, summary)
        return summary

    @task(retries=1, outlets=[SESSION_TABLES])
    def build_sessions(plan: dict, _ingested: dict) -> dict:
        from pipeline import stages

        with task_stage_logs("build_sessions", plan["last"]):
            summary = stages.build_sessions(settings(), date.fromisoformat(plan["last"]))
        record_asset_event(SESSION_TABLES, {"run_date": plan["last"], **summary})
        return summary

    plan = plan_arrival_days()
    build_sessions(plan, ingest_arrival_days(plan))


backfill_recsys()
