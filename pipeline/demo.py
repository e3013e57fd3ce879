"""The whole nightly loop on generated logs, on the embedded defaults: ``make demo``.

1. generate N days of raw logs (the last one deliberately corrupted);
2. ingest the history days with the Spark job (the same job the DAG runs);
3. ``airflow db migrate`` + ``feast``-ready settings, then run the nightly DAG for the last good
   day: ingest -> dbt build -> quality gate -> Feast materialize -> train -> evaluate -> promote;
4. ask the recommendation API (the real FastAPI app, in process) for a known and an unknown user;
5. run the DAG for the corrupted day: the gate fails and the champion stays as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from core.settings import Settings
from pipeline.airflow_env import airflow_env
from pipeline.run_dag import default_log_path


def _say(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run_dag_subprocess(settings: Settings, run_date: date, model: str, epochs: int) -> dict[str, Any]:
    """Run the DAG in a child process so Airflow reads the embedded configuration at import.

    The child writes its whole output to ``log_path`` (``pipeline.run_dag --log``) and each task's
    log where Airflow's UI reads it; the console keeps the summary only.
    """
    log_path = default_log_path(settings, run_date)
    cmd = [sys.executable, "-m", "pipeline.run_dag", "--date", run_date.isoformat(),
           "--model", model, "--epochs", str(epochs), "--log", str(log_path)]
    proc = subprocess.run(cmd, env=airflow_env(settings), capture_output=True, text=True)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("DAG_RUN_RESULT "):
            return json.loads(line.removeprefix("DAG_RUN_RESULT ")) | {"log": str(log_path)}
    tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
    raise RuntimeError(f"the DAG run printed no result (exit {proc.returncode}); its output: {log_path}\n{tail}")


def migrate_airflow(settings: Settings) -> None:
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=airflow_env(settings), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def champion_version(settings: Settings) -> str | None:
    from registry.versions import load_champion

    loaded = load_champion(settings)
    return None if loaded is None else str(loaded[1])


def print_run(settings: Settings, result: dict[str, Any]) -> None:
    import duckdb

    run_date = result["run_date"]
    print(f"DAG run {result['state']} (run {result['run_id']}; whole output: {result['log']})")
    task_logs = result.get("task_logs") or {}
    for task_id, state in result["tasks"].items():
        print(f"  {task_id:<22} {state}")
        if state == "failed":
            print(f"    last error: {(result.get('errors') or {}).get(task_id)}")
            print(f"    task log:   {task_logs.get(task_id, 'none (the task never started)')}")
    if task_logs:
        folder = Path(next(iter(task_logs.values()))).parents[1]
        print(f"task logs (also in the Airflow UI, `make airflow-ui`): {folder}/task_id=*/")
    rec_path = settings.reconciliation_dir / f"{run_date}.json"
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
        print(f"events: input {rec['input_rows']}, written {rec['written_rows']}, "
              f"quarantined {rec['quarantined_rows']} {rec['quarantine_reasons']}, "
              f"duplicates {rec['duplicate_rows']}")
    if settings.warehouse_path.exists():
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            n_sessions, n_users = con.execute(
                "select count(*), count(distinct user_id) from fct_sessions").fetchone()
        print(f"sessions: {n_sessions} sessions of {n_users} users")
    verdict_path = settings.quality_dir / f"{run_date}.json"
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
        print(f"quality gate: {'PASSED' if verdict['passed'] else 'FAILED'}; "
              f"failed critical checks: {verdict['failed_critical'] or 'none'}; "
              f"Data Docs: {verdict['data_docs_index']}")
    decision_path = settings.decisions_dir / f"{run_date}.json"
    if decision_path.exists() and result["tasks"].get("promote_candidate") == "success":
        decision = json.loads(decision_path.read_text())
        metrics = decision["metrics"]
        split = decision.get("split") or {}
        print(f"evaluation: {split.get('protocol')} protocol ({split.get('protocol_reason')}); seen items "
              f"{'excluded' if split.get('exclude_seen', True) else 'rankable'} ({split.get('exclude_seen_reason')})")
        print(f"held-out window (full-catalog ranking), candidate {decision.get('candidate_model_name')}:")
        for name in ("candidate", "champion_rescored", "popularity"):
            if metrics.get(name):
                m = metrics[name]
                print(f"  {name:<18} NDCG@10 {m['ndcg_at_10']:.4f}  HR@10 {m['hr_at_10']:.4f}  "
                      f"MRR {m['mrr']:.4f}  coverage@10 {m['coverage_at_10']:.3f}  (n={int(m['n_examples'])})")
        print(f"promotion: {'PROMOTED' if decision['promote'] else 'REFUSED'} "
              f"version {decision['candidate_version']} ({decision['reasons']})")
        for check in decision["checks"]:
            print(f"  [{'x' if check['passed'] else ' '}] {check['name']}: {check['detail']}")


def print_recommendations(settings: Settings, user_ids: list[str]) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app

    with TestClient(create_app(settings)) as client:
        print("GET /health ->", client.get("/health").json())
        for user_id in user_ids:
            body = client.get(f"/recommendations/{user_id}", params={"k": 5}).json()
            items = ", ".join(i["item_id"] for i in body["items"])
            print(f"GET /recommendations/{user_id}?k=5 -> model v{body['model_version']} "
                  f"fallback={body['fallback']}: recent {body['recent_item_ids'][-5:]} -> [{items}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--days", type=int, default=8, help="days of history before the corrupted day")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--model", default="auto", help="auto (the schedule's default) or a model name")
    args = parser.parse_args(argv)

    from ingest.generator import generate_logs
    from ingest.spark import spark_session
    from pipeline.stages import ingest_events_range

    # Console noise that hides the summary: MLflow's download bars, Spark's hostname warning.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    warnings.filterwarnings("ignore", message=".*httpx.*")
    settings = Settings.from_env()
    started = time.monotonic()
    last_day = date.today() - timedelta(days=2)
    first_day = last_day - timedelta(days=args.days - 1)
    corrupt_day = last_day + timedelta(days=1)

    _say(f"generating {args.days} days + 1 corrupted day of logs into {settings.raw_dir}")
    summary = generate_logs(settings.raw_dir, first_day, args.days + 1, args.users, args.items,
                            seed=settings.seed, corrupt_dates=[corrupt_day])
    print(json.dumps({k: v for k, v in summary.items() if k != "days"}, default=str))

    _say(f"ingesting history {first_day} .. {last_day - timedelta(days=1)} with Spark ({settings.spark_master})")
    history = ingest_events_range(settings, first_day, last_day - timedelta(days=1))
    for rec in history["reconciliations"]:
        print(f"  {rec['arrival_date']}: {rec['written_rows']} written, "
              f"{rec['quarantined_rows']} quarantined, {rec['duplicate_rows']} duplicates")
    # The DAG runs in a child process with its own JVM: free this one's memory first.
    spark_session(settings).stop()

    _say("Airflow metadata (SQLite) and the nightly DAG for " + last_day.isoformat())
    migrate_airflow(settings)
    before = champion_version(settings)
    result = run_dag_subprocess(settings, last_day, args.model, args.epochs)
    print_run(settings, result)
    if result["state"] != "success":
        print("the nightly run failed: see the failed task's log above")
        return 1

    _say("recommendations from the API (FastAPI app, Feast online store, MLflow champion)")
    print(f"champion before: {before}, after: {champion_version(settings)}")
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        known = [r[0] for r in con.execute(
            "select user_id from user_sequences order by n_events desc, user_id limit 2").fetchall()]
    print_recommendations(settings, known + ["a-user-nobody-has-seen"])

    _say(f"a corrupted arrival day ({corrupt_day}): the gate must stop the run")
    before = champion_version(settings)
    bad = run_dag_subprocess(settings, corrupt_day, args.model, args.epochs)
    print_run(settings, bad)
    after = champion_version(settings)
    print(f"champion before: {before}, after: {after} -> "
          f"{'unchanged, as it must be' if before == after else 'CHANGED: this is a bug'}")
    from quality.admission import excluded_arrival_dates

    excluded = corrupt_day.isoformat() in excluded_arrival_dates(settings)
    print(f"{corrupt_day} {'rejected: its rows are out of the session tables' if excluded else 'NOT rejected: this is a bug'}"
          f" until `recsys admission readmit {corrupt_day} --reason ...`")

    _say(f"done in {time.monotonic() - started:.0f} s. Next: `make api`, `make airflow-ui` (README; "
         "login from RECSYS_AIRFLOW_USER / RECSYS_AIRFLOW_PASSWORD)")
    return 0 if bad["tasks"].get("check_quality") == "failed" and before == after and excluded else 1


if __name__ == "__main__":
    raise SystemExit(main())
