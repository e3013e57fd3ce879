"""``python -m pipeline.run_dag``: a failed DAG run exits non-zero and says which task failed, its
alert record, its last error line and its Airflow task log (the file holding the error, read back
through Airflow's log reader as the UI does); a user error is one line with exit status 2.

The command runs in a child process (Airflow reads its configuration at first import) on a fresh
metadata database under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from pipeline.airflow_env import airflow_env
from core.settings import Settings

RUN_DATE = date(2026, 11, 20)


def _env(home: Path) -> dict[str, str]:
    base = dict(os.environ)
    base.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)  # the test session's database: not ours
    base.pop("RECSYS_DEBUG", None)
    return airflow_env(Settings(home=home), base=base)


def _run_dag(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.run_dag", "--date", RUN_DATE.isoformat(), *args],
        env=env, capture_output=True, text=True, timeout=600,
    )


READ_TASK_LOG = """
import sys
from airflow.models.taskinstance import TaskInstance
from airflow.utils.log.log_reader import TaskLogReader
from airflow.utils.session import create_session

with create_session() as session:
    ti = session.query(TaskInstance).filter_by(run_id=sys.argv[1], task_id=sys.argv[2]).one()
    chunks, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
    for record in chunks:
        fields = record.model_dump(exclude_none=True)
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("event", "timestamp"))
        print(fields.get("event"), extra)
"""


def _read_task_log(env: dict[str, str], run_id: str, task_id: str) -> str:
    """A task's log through Airflow's own log reader (what the UI and the REST API serve)."""
    proc = subprocess.run([sys.executable, "-c", READ_TASK_LOG, run_id, task_id], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Log file not found" not in proc.stdout and "Could not read served logs" not in proc.stdout
    return proc.stdout


def test_an_unmigrated_airflow_database_is_one_line(tmp_path: Path) -> None:
    proc = _run_dag(_env(tmp_path / "home"), "--model", "popularity")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "error: the Airflow metadata database has no tables "
        "(fix: run `recsys airflow migrate` first)"
    ]


# ingest_events retries twice, a minute apart, before the run fails: about 2.5 minutes.
@pytest.mark.slow
def test_a_failed_run_exits_non_zero_with_task_alert_and_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _env(home)
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env, check=True,
                   capture_output=True)

    # No raw folder for the date: the real nightly DAG fails at ingest_events.
    proc = _run_dag(env, "--model", "popularity", "--epochs", "1")

    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("DAG_RUN_RESULT ")
    result = json.loads(last.removeprefix("DAG_RUN_RESULT "))
    assert result["state"] == "failed"
    assert result["failed_tasks"] == ["ingest_events"]
    assert result["tasks"]["resolve_run_date"] == "success"
    assert result["tasks"]["build_sessions"] == "upstream_failed"

    # The alert the failure callback appended, found by the run's id.
    alerts = home / "alerts" / f"{RUN_DATE}.jsonl"
    (record,) = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert record["run_id"] == result["run_id"] and record["task_id"] == "ingest_events"
    assert record["exception_type"] == "MissingArrivalDay" and record["user_error"] is True
    # A user error is not retried: the I/O retries of ingest_events would only repeat it.
    assert record["try_number"] == 1
    assert result["alerts"] == [{k: v for k, v in record.items() if k != "traceback"}]

    missing = str(home / "raw" / RUN_DATE.isoformat())
    log_path = Path(result["log_path"])
    stderr = proc.stderr.splitlines()
    assert stderr[0].startswith(f"DAG run failed: nightly_recsys for {RUN_DATE}")
    assert f"  failed task: ingest_events: MissingArrivalDay: raw folder of the arrival day not found: {missing}" in stderr
    assert any(line.startswith(f"  alert record ({alerts}): ") and result["run_id"] in line for line in stderr)
    # The failed task's Airflow log, where the UI reads it, and its last error line.
    task_log = (home / "airflow" / "logs" / "dag_id=nightly_recsys" / f"run_id={result['run_id']}"
                / "task_id=ingest_events" / "attempt=1.log")
    assert result["task_logs"]["ingest_events"] == str(task_log)
    assert "build_sessions" not in result["task_logs"]  # never ran: no log
    error = result["errors"]["ingest_events"]
    assert f"MissingArrivalDay: raw folder of the arrival day not found: {missing}" in error
    assert f"    last error: {error}" in stderr
    assert f"    task log (the error, as the Airflow UI shows it): {task_log}" in stderr
    assert f"  the run's whole output (Spark's too): {log_path}" in stderr
    # Read back as the UI's log reader does: the stage's structured lines and the error.
    shown = _read_task_log(env, result["run_id"], "ingest_events")
    assert "stage started" in shown and "stage=ingest_events" in shown and f"run_id={result['run_id']}" in shown
    assert "Task failed with exception" in shown and "MissingArrivalDay" in shown
    assert "Done. Returned value was: 2026-11-20" in _read_task_log(env, result["run_id"], "resolve_run_date")
    # The log holds the task's error (its traceback included) and everything else the run printed.
    assert log_path.parent == home / "logs" / "run_dag"
    text = log_path.read_text()
    assert f"MissingArrivalDay: raw folder of the arrival day not found: {missing}" in text
    assert "Traceback" in text
