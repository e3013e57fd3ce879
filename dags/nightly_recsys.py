"""Nightly Airflow DAG: raw logs -> lake -> sessions -> quality gate -> features -> model -> champion.

This file only wires tasks; every task is one call into ``pipeline.stages``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task, teardown

from core.names import AUTO_MODEL, MODEL_NAMES
from pipeline.alerts import on_task_failure
from pipeline.assets import LAKE_EVENTS, ONLINE_FEATURES, SESSION_TABLES, record_asset_event
from core.logging_setup import airflow_task_states, task_stage_logs

DOC = """
### Nightly recommender pipeline

Processes one **arrival day** of raw interaction logs (by default yesterday's, or the `date` param):

1. `ingest_events` — Spark reads `raw/<date>/`, writes valid events to the Parquet lake by event
   date, rejected rows with a reason to the quarantine, and a reconciliation record.
2. `build_sessions` — `dbt build`: staging, sessionization, session tables, sequences, features.
   Arrival days the gate rejected are left out (`$RECSYS_HOME/quality/admission.jsonl`).
3. `check_quality` — Great Expectations suites; a failed critical expectation **fails the task**
   and nothing downstream runs (Data Docs under `$RECSYS_HOME/gx`). The day is recorded as
   **rejected** and the session tables are rebuilt without it first, so no later night trains on
   it either, until a person re-admits it: `recsys admission readmit <date> --reason
   "..."` (the next build brings it back), or trigger this DAG for that date with the Param
   `readmit` (and `readmit_reason`): its gate then reports the day's failures as warnings.
4. `materialize_features` — Feast export + apply + materialize the run's interval to the online store.
5. `train_candidate` — PyTorch model + popularity baseline, logged and registered in MLflow;
   `model=auto` (the schedule's default) trains several and keeps the best on validation, under
   the evaluation protocol that fits the log (user-level temporal or session-based).
6. `evaluate_candidate` — candidate vs re-scored champion vs popularity on the same held-out window.
7. `promote_candidate` — moves the `champion` alias only if every check passed; records why.
8. `write_nightly_report` — runs whatever happened before it (a *teardown*: it never changes the
   run's state): `dbt docs generate`, then the static HTML report of the night under
   `$RECSYS_HOME/reports/<date>/index.html` (volumes and quarantine share per arrival day,
   data-quality results with a link to the GE Data Docs, training curves, candidate vs champion vs
   popularity over time, the promotion decision and its reasons, sample recommendations). Its
   path is the task's XCom `report_path` and the last line of its log.

**Assets** (data-aware scheduling): `ingest_events` updates `recsys_lake_events`,
`check_quality` `recsys_session_tables` (once the gate passed on them), `materialize_features`
`recsys_online_features`.
**Alerts**: a failed task appends a JSON line to `$RECSYS_HOME/alerts/<date>.jsonl`.
Logs of every stage are structured (`key=value`, or JSON with `RECSYS_LOG_FORMAT=json`) and carry
`run_id` and `run_date`.
"""


@dag(
    dag_id="nightly_recsys",
    description="Raw logs to a promoted sequential recommender, every night",
    doc_md=DOC,
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["recsys", "nightly", "training"],
    default_args={"owner": "recsys-platform", "retries": 0, "on_failure_callback": on_task_failure},
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Arrival date",
            description="Arrival day to process (YYYY-MM-DD). Empty: the day before the run.",
        ),
        "model": Param(
            AUTO_MODEL, enum=[AUTO_MODEL, *MODEL_NAMES], title="Model",
            description="Candidate model to train; auto trains RECSYS_AUTO_MODELS and keeps the best on validation.",
        ),
        "protocol": Param(
            "settings", enum=["settings", "auto", "user_temporal", "session"], title="Evaluation protocol",
            description="settings: RECSYS_EVAL_PROTOCOL; auto: chosen from the log (users who return -> "
                        "user_temporal, else session).",
        ),
        "test_days": Param(
            0, type="number", minimum=0, maximum=90, title="Test window (days)",
            description="0: RECSYS_EVAL_TEST_DAYS, or one day shrunk to fit a short log. Fractions allowed.",
        ),
        "val_days": Param(
            0, type="number", minimum=0, maximum=90, title="Validation window (days)",
            description="0: RECSYS_EVAL_VAL_DAYS, or one day shrunk to fit a short log.",
        ),
        "exclude_seen": Param(
            "settings", enum=["settings", "auto", "true", "false"], title="Exclude seen items",
            description="auto: keep seen items rankable when repeats are material on validation.",
        ),
        "epochs": Param(
            20, type="integer", minimum=1, maximum=500, title="Epochs",
            description="Maximum training epochs (early stopping on validation NDCG@10).",
        ),
        "train_minutes": Param(
            0, type="number", minimum=0, maximum=1440, title="Training budget (minutes per model)",
            description="0: RECSYS_TRAIN_MAX_MINUTES (0 there: no limit). Each model trained stops "
                        "optimising when its minutes run out; its best validated epoch is kept.",
        ),
        "readmit": Param(
            False, type="boolean", title="Re-admit the arrival day",
            description="The quality gate rejected this date before and you checked it: let its rows "
                        "back into the session tables (recorded with the reason below); its gate then "
                        "reports the failures as warnings. No effect on a date that is not rejected.",
        ),
        "readmit_reason": Param(
            # Optional: a "string" Param with an empty default is required by the trigger form.
            None, type=["null", "string"], title="Re-admission reason",
            description="What was checked (kept in $RECSYS_HOME/quality/admission.jsonl).",
        ),
    },
)
def nightly_recsys():
    def settings():
        from core.settings import Settings

        return Settings.from_env()

    @task
    def resolve_run_date() -> str:
        context = get_current_context()
        if context["params"].get("date"):
            return date.fromisoformat(context["params"]["date"]).isoformat()
        run_after = context["dag_run"].run_after
        return (run_after - timedelta(days=1)).date().isoformat()

    # Spark and file moves can hit transient I/O errors: retry those; the rest fail fast.
    @task(retries=2, retry_delay=timedelta(minutes=1), outlets=[LAKE_EVENTS])
    def ingest_events(run_date: str) -> dict:
        from pipeline import stages

        with task_stage_logs("ingest_events", run_date):
            summary = stages.ingest_events(settings(), date.fromisoformat(run_date))
        record_asset_event(LAKE_EVENTS, summary)
        return summary

    @task(retries=1, retry_delay=timedelta(minutes=1))
    def build_sessions(run_date: str, _ingested: dict, params: dict | None = None) -> dict:
        from pipeline import stages

        readmit = {}
        if params.get("readmit"):
            dag_run = get_current_context()["dag_run"]
            who = getattr(dag_run, "triggering_user_name", None) or "unknown user"
            readmit = {
                "readmit_reason": params.get("readmit_reason") or f"readmit Param of run {dag_run.run_id}",
                "readmitted_by": f"{who} (nightly_recsys run {dag_run.run_id}, readmit Param)",
            }
        with task_stage_logs("build_sessions", run_date):
            return stages.build_sessions(settings(), date.fromisoformat(run_date), **readmit)

    # The session tables are published (their asset event) only once the gate passed on them.
    @task(outlets=[SESSION_TABLES])
    def check_quality(run_date: str, sessions: dict) -> dict:
        from pipeline import stages

        with task_stage_logs("check_quality", run_date):
            verdict = stages.check_quality(settings(), date.fromisoformat(run_date))
        record_asset_event(SESSION_TABLES, {"run_date": run_date, **sessions, "gate_passed": verdict["passed"]})
        return verdict

    @task(retries=2, retry_delay=timedelta(minutes=1), outlets=[ONLINE_FEATURES])
    def materialize_features(run_date: str, _verdict: dict) -> dict:
        from pipeline import stages

        with task_stage_logs("materialize_features", run_date):
            summary = stages.materialize_features(settings(), date.fromisoformat(run_date))
        record_asset_event(ONLINE_FEATURES, {"run_date": run_date, **summary})
        return summary

    @task
    def train_candidate(run_date: str, _features: dict, params: dict | None = None) -> dict:
        from pipeline import stages

        def chosen(name: str):  # "settings" / 0 leave the choice to the settings
            value = params.get(name)
            return None if value in (None, "settings", 0, 0.0) else value

        with task_stage_logs("train_candidate", run_date):
            return stages.train_candidate(
                settings(), date.fromisoformat(run_date), params["model"], int(params["epochs"]),
                protocol=chosen("protocol"), test_days=chosen("test_days"), val_days=chosen("val_days"),
                exclude_seen=chosen("exclude_seen"), max_minutes=chosen("train_minutes"),
            )

    @task
    def evaluate_candidate(run_date: str, candidate: dict) -> dict:
        from pipeline import stages

        with task_stage_logs("evaluate_candidate", run_date):
            return stages.evaluate_candidate(settings(), date.fromisoformat(run_date), candidate)

    @task
    def promote_candidate(run_date: str, decision: dict) -> dict:
        from pipeline import stages

        with task_stage_logs("promote_candidate", run_date):
            return stages.promote_candidate(settings(), date.fromisoformat(run_date), decision)

    # A teardown runs once everything upstream is done, failed or not, and is left out of the
    # run's state: a gate failure still fails the run, and the night still gets its report.
    @teardown
    def write_nightly_report(run_date: str) -> dict:
        from pipeline import stages

        context = get_current_context()
        with task_stage_logs("write_nightly_report", run_date) as log:
            result = stages.write_nightly_report(
                settings(), date.fromisoformat(run_date), run_id=context["run_id"],
                task_states=airflow_task_states(),
            )
            log.info("nightly report: %s", result["report_path"], extra={"report_path": result["report_path"]})
        return result

    run_date = resolve_run_date()
    ingested = ingest_events(run_date)
    sessions = build_sessions(run_date, ingested)
    verdict = check_quality(run_date, sessions)
    features = materialize_features(run_date, verdict)
    candidate = train_candidate(run_date, features)
    decision = evaluate_candidate(run_date, candidate)
    promoted = promote_candidate(run_date, decision)
    report = write_nightly_report(run_date)
    [ingested, sessions, verdict, features, candidate, decision, promoted] >> report

nightly_recsys()
