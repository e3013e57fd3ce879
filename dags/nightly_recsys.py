"""Nightly Airflow DAG: raw logs -> lake -> sessions -> quality gate -> features -> model -> champion.

This file only wires tasks; every task is one call into ``pipeline.stages``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

MODELS = ["sasrec", "popularity"]

DOC = """
### Nightly recommender pipeline

Processes one **arrival day** of raw interaction logs (by default yesterday's, or the `date` param):

1. `ingest_events` — Spark reads `raw/<date>/`, writes valid events to the Parquet lake by event
   date, rejected rows with a reason to the quarantine, and a reconciliation record.
2. `build_sessions` — `dbt build`: staging, sessionization, session tables, sequences, features.
3. `check_quality` — Great Expectations suites; a failed critical expectation **fails the task**
   and nothing downstream runs (Data Docs under `$RECSYS_HOME/gx`).
4. `materialize_features` — Feast export + apply + materialize the run's interval to the online store.
5. `train_candidate` — PyTorch model + popularity baseline, logged and registered in MLflow.
6. `evaluate_candidate` — candidate vs re-scored champion vs popularity on the same held-out window.
7. `promote_candidate` — moves the `champion` alias only if every check passed; records why.
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
    default_args={"owner": "recsys-platform", "retries": 0},
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Arrival date",
            description="Arrival day to process (YYYY-MM-DD). Empty: the day before the run.",
        ),
        "model": Param("sasrec", enum=MODELS, title="Model", description="Candidate model to train."),
        "epochs": Param(
            20, type="integer", minimum=1, maximum=500, title="Epochs",
            description="Maximum training epochs (early stopping on validation NDCG@10).",
        ),
    },
)
def nightly_recsys():
    def settings():
        from pipeline.settings import Settings

        return Settings.from_env()

    @task
    def resolve_run_date() -> str:
        context = get_current_context()
        if context["params"].get("date"):
            return date.fromisoformat(context["params"]["date"]).isoformat()
        run_after = context["dag_run"].run_after
        return (run_after - timedelta(days=1)).date().isoformat()

    # Spark and file moves can hit transient I/O errors: retry those; the rest fail fast.
    @task(retries=2, retry_delay=timedelta(minutes=1))
    def ingest_events(run_date: str) -> dict:
        from pipeline import stages

        return stages.ingest_events(settings(), date.fromisoformat(run_date))

    @task(retries=1, retry_delay=timedelta(minutes=1))
    def build_sessions(run_date: str, _ingested: dict) -> dict:
        from pipeline import stages

        return stages.build_sessions(settings(), date.fromisoformat(run_date))

    @task
    def check_quality(run_date: str, _sessions: dict) -> dict:
        from pipeline import stages

        return stages.check_quality(settings(), date.fromisoformat(run_date))

    @task(retries=2, retry_delay=timedelta(minutes=1))
    def materialize_features(run_date: str, _verdict: dict) -> dict:
        from pipeline import stages

        return stages.materialize_features(settings(), date.fromisoformat(run_date))

    @task
    def train_candidate(run_date: str, _features: dict, params: dict | None = None) -> dict:
        from pipeline import stages

        return stages.train_candidate(
            settings(), date.fromisoformat(run_date), params["model"], int(params["epochs"])
        )

    @task
    def evaluate_candidate(run_date: str, candidate: dict) -> dict:
        from pipeline import stages

        return stages.evaluate_candidate(settings(), date.fromisoformat(run_date), candidate)

    @task
    def promote_candidate(run_date: str, decision: dict) -> dict:
        from pipeline import stages

        return stages.promote_candidate(settings(), date.fromisoformat(run_date), decision)

    run_date = resolve_run_date()
    ingested = ingest_events(run_date)
    sessions = build_sessions(run_date, ingested)
    verdict = check_quality(run_date, sessions)
    features = materialize_features(run_date, verdict)
    candidate = train_candidate(run_date, features)
    decision = evaluate_candidate(run_date, candidate)
    promote_candidate(run_date, decision)


nightly_recsys()
