"""The nightly pipeline's stages, one function each, callable without a scheduler.

Each stage takes the typed :class:`~core.settings.Settings` and the run's date, does its work
on the real tool (Spark, dbt, Great Expectations, Feast, PyTorch, MLflow) and returns a small
JSON-serialisable summary, which Airflow keeps as the task's XCom. Every stage is idempotent for
its date: re-running it rewrites the same outputs.

Heavy libraries are imported inside the functions: the DAG file imports this module at every
parse, and feast / great_expectations / torch cost seconds each to import.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from core.settings import Settings

log = logging.getLogger(__name__)

# The online store is refreshed with every feature row of this window ending at the run's date,
# so a fresh online store (first run, a new Redis) gets the full state, and re-running a past
# date rewrites the same rows. It matches the user feature views' TTL.
FEATURE_MATERIALIZATION_DAYS = 90


def day_bounds(run_date: date) -> tuple[datetime, datetime]:
    """The run's data interval: the whole UTC day ``[run_date, run_date + 1 day)``."""
    start = datetime.combine(run_date, time.min, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def ingest_events(settings: Settings, run_date: date) -> dict[str, Any]:
    """Spark: the arrival day's raw logs -> lake partitions, quarantine and a reconciliation."""
    from ingest.ingest_day import ingest_arrival_day
    from ingest.spark import spark_session
    from quality.admission import excluded_arrival_dates

    reconciliation = ingest_arrival_day(settings, run_date, spark=spark_session(settings),
                                        excluded_arrival_dates=excluded_arrival_dates(settings))
    log.info("ingested %s: %s", run_date, reconciliation)
    return reconciliation


def ingest_events_range(settings: Settings, first: date, last: date, strict: bool = False) -> dict[str, Any]:
    """Spark: arrival days ``first..last`` in date order, as day-by-day runs would ingest them.

    Checks every raw folder before ingesting anything (``ingest.ingest_day.plan_arrival_days``):
    a day without a raw folder is skipped (one log line each) and listed in ``skipped_days``;
    with ``strict`` such a range raises ``MissingArrivalDay`` before anything is ingested, and a
    range in which no day has a raw folder always does. Returns the per-day reconciliation
    records and the union of their ``affected_event_dates`` (what downstream must recompute).
    """
    from ingest.ingest_day import ingest_arrival_day, plan_arrival_days, skipped_days_line
    from ingest.spark import spark_session
    from quality.admission import excluded_arrival_dates

    plan = plan_arrival_days(settings, first, last, strict=strict)
    spark = spark_session(settings)
    excluded = excluded_arrival_dates(settings)
    records = []
    for day in plan.days:
        records.append(ingest_arrival_day(settings, day, spark=spark, excluded_arrival_dates=excluded))
        log.info("ingested %s: %s", day, records[-1])
    log.info("%s", skipped_days_line(plan, len(records)))
    return {
        "first": first.isoformat(),
        "last": last.isoformat(),
        "days": len(records),
        "skipped_days": [day.isoformat() for day in plan.skipped],
        "input_rows": sum(r["input_rows"] for r in records),
        "written_rows": sum(r["written_rows"] for r in records),
        "affected_event_dates": sorted({d for r in records for d in r["affected_event_dates"]}),
        "reconciliations": records,
    }


def build_sessions(
    settings: Settings, run_date: date, full_refresh: bool = False, *,
    readmit_reason: str | None = None, readmitted_by: str = "nightly_recsys readmit Param",
) -> dict[str, Any]:
    """dbt: lake -> staging -> sessionized events -> session tables, sequences, feature tables.

    Incremental: rebuilds the users with events on the ``affected_event_dates`` of every
    reconciliation record no build has consumed yet (the run's arrival day, a backfill's whole
    range, a re-ingested day), from their whole history; a full refresh when there is no
    warehouse or build record yet, the session settings or the rejected days changed, or
    ``full_refresh``. Rows of arrival days the gate rejected are left out (quality.admission);
    ``readmit_reason`` first re-admits ``run_date`` when it is one of them (recorded).
    """
    from sessions.session_tables import build_pending_session_tables

    if readmit_reason:
        from quality.admission import excluded_arrival_dates, readmit

        if run_date.isoformat() in excluded_arrival_dates(settings):
            readmit(settings, run_date, readmit_reason, by=readmitted_by)
        else:
            log.info("readmit asked for %s, which is not excluded: nothing to re-admit", run_date)
    summary = build_pending_session_tables(settings, full_refresh=full_refresh)
    log.info("session tables for %s: %s", run_date, summary)
    return summary


def check_quality(settings: Settings, run_date: date) -> dict[str, Any]:
    """Great Expectations: validate the day's events and the session tables; raise to stop.

    A failed gate records the day as rejected and rebuilds the session tables without it before
    raising QualityGateFailed, so neither tonight's nor a later night's features and training
    see its rows until a person re-admits it (``python -m quality.admission readmit``).
    """
    from quality.admission import enforce_admission
    from quality.gate import run_quality_gate

    verdict = run_quality_gate(settings, run_date)
    enforce_admission(settings, verdict)  # raises: nothing downstream runs
    return dataclasses.asdict(verdict) | {"run_date": run_date.isoformat()}


def materialize_features(
    settings: Settings,
    run_date: date,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Feast: export the feature tables, register the repo, load the online store for the date.

    The interval is explicit: by default the ``FEATURE_MATERIALIZATION_DAYS`` ending with the
    run's data interval (so rows a late event changed on earlier days are refreshed too), or
    ``[start, end)`` as given. Re-running a past date is safe: no user is rolled back to an
    older row (see features.materialize.materialize), and readers see whole rows throughout.
    """
    from features.definitions import apply_feature_repo
    from features.export import export_feature_data
    from features.materialize import materialize

    rows = export_feature_data(settings)
    apply_feature_repo(settings)
    if end is None:
        _, end = day_bounds(run_date)
    if start is None:
        start = end - timedelta(days=FEATURE_MATERIALIZATION_DAYS)
    summary = materialize(settings, start, end)
    return {"exported_rows": rows, "interval": [start.isoformat(), end.isoformat()], **summary}


def train_candidate(
    settings: Settings, run_date: date, model_name: str, epochs: int, *,
    protocol: str | None = None, test_days: float | None = None, val_days: float | None = None,
    exclude_seen: str | None = None, max_minutes: float | None = None,
) -> dict[str, Any]:
    """PyTorch + MLflow: train the candidate (``auto``: the best of several on validation) and
    the popularity baseline, register the candidate. ``None`` leaves a choice to the settings
    (and the settings' ``auto`` to the log: see training.protocol); ``max_minutes`` is each
    model's optimisation budget (``settings.train_max_minutes``; 0: none)."""
    from training.tracking import train_and_log

    minutes = settings.train_max_minutes if max_minutes is None else max_minutes
    summary = train_and_log(settings, run_date, model_name=model_name, epochs=epochs, protocol=protocol,
                            test_days=test_days, val_days=val_days, exclude_seen=exclude_seen,
                            max_train_seconds=minutes * 60.0 if minutes else None)
    split = summary["split"]
    log.info("evaluation protocol %s (%s); %s val / %s test examples; exclude_seen=%s (%s); candidate %s",
             split["protocol"], split.get("protocol_reason"), split["n_val_examples"], split["n_test_examples"],
             split["exclude_seen"], split.get("exclude_seen_reason"), summary["model_name"])
    return summary


def evaluate_candidate(settings: Settings, run_date: date, candidate: dict[str, Any]) -> dict[str, Any]:
    """Champion vs challenger on the same fresh held-out window; every rule is a named check."""
    from quality.gate import load_verdict
    from registry.promotion import decide_promotion
    from serving.smoke import serves_in_api_path

    # The gate task already stopped the run when it failed; reading its recorded verdict again
    # keeps promotion safe even when this stage is called on its own.
    verdict = load_verdict(settings, run_date)
    gate_passed = verdict is not None and verdict.passed
    decision = decide_promotion(settings, run_date, candidate, gate_passed=gate_passed,
                                serving_check=serves_in_api_path)
    return dataclasses.asdict(decision)


def promote_candidate(settings: Settings, run_date: date, decision: dict[str, Any]) -> dict[str, Any]:
    """MLflow registry: move the champion alias when every check passed; record the decision."""
    from registry.promotion import PromotionDecision, apply_decision

    return apply_decision(settings, PromotionDecision(**decision))


def generate_docs(settings: Settings) -> dict[str, Any]:
    """dbt's documentation site (``dbt docs generate``) under ``$RECSYS_HOME/dbt_docs``."""
    from sessions.session_tables import generate_docs as dbt_docs_generate

    docs_dir = dbt_docs_generate(settings)
    return {"dbt_docs_index": str(docs_dir / "index.html")}


def write_nightly_report(
    settings: Settings, run_date: date, run_id: str | None = None,
    task_states: dict[str, str] | None = None,
) -> dict[str, Any]:
    """dbt docs + the static HTML report of the night (``reports/<date>/index.html``).

    Runs after every other task, whatever their outcome: a failure of the docs is logged and the
    report is written anyway (it says the docs are missing).
    """
    from pipeline.report import write_report

    docs: dict[str, Any] = {}
    if any(settings.events_dir.glob("event_date=*/arrival_date=*/*.parquet")):
        try:
            docs = generate_docs(settings)
        except Exception as exc:  # noqa: BLE001 - the report must still be written
            log.warning("dbt docs generate failed: %s", exc)
    result = write_report(settings, run_date, run_id=run_id, task_states=task_states)
    log.info("nightly report for %s: %s", run_date, result["report_path"])
    return result | docs


def precompute_recommendations(settings: Settings, run_date: date | None = None) -> dict[str, Any]:
    """Serving: the champion's top-K for every active user, stored for ``RECSYS_SERVING_MODE=precomputed``."""
    from serving.precompute import precompute

    summary = precompute(settings)
    return summary | ({"run_date": run_date.isoformat()} if run_date else {})


def rollback_champion(settings: Settings, version: int | str | None = None, reason: str = "",
                      force: bool = False) -> dict[str, Any]:
    """MLflow registry: move the champion alias to ``version`` (None: the previous champion).

    Raises (after recording why) when the version does not exist, cannot serve, or has no
    passing decision record and ``force`` is not set (a forced rollback is recorded as such).
    """
    from registry.rollback import rollback

    return rollback(settings, version, to_previous=version is None, reason=reason, force=force)
