"""The task logs of a DAG run made by ``pipeline.run_dag`` (the demo's way, ``dag.test()``) are
where Airflow's UI reads them: for a night the quality gate stops, Airflow's own log reader (what
the UI and the REST API serve) shows each task's structured stage lines, and the red
``check_quality`` square explains itself; the run names the file that holds the error."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from core.settings import Settings

# A corrupted day through Spark, dbt and the gate takes minutes; tests/dags/test_run_dag_exit.py
# reads a failed task's log back through the same log reader within the CI run.
pytestmark = [pytest.mark.slow, pytest.mark.heavy]

FIRST_DAY = date(2026, 10, 1)
HISTORY_DAYS = 3
CORRUPT_DAY = FIRST_DAY + timedelta(days=HISTORY_DAYS)


def _shown(run_id: str, task_id: str) -> str:
    """The task's log as Airflow's log reader serves it, one ``event key=value...`` line a record."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.log.log_reader import TaskLogReader
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(run_id=run_id, task_id=task_id).one()
        chunks, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
        lines = []
        for record in chunks:
            fields = record.model_dump(exclude_none=True)
            extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("event", "timestamp"))
            lines.append(f"{fields.get('event')} {extra}")
    text = "\n".join(lines)
    assert "Log file not found" not in text and "Could not read served logs" not in text, text[:2000]
    return text


def test_a_gate_failure_is_explained_by_its_task_log(tmp_path_factory) -> None:
    from ingest.generator import generate_logs
    from pipeline.run_dag import failure_lines, run_nightly
    from pipeline.stages import ingest_events_range

    home = tmp_path_factory.mktemp("task_logs")
    mp = pytest.MonkeyPatch()
    mp.setenv("RECSYS_HOME", str(home))
    mp.setenv("RECSYS_SPARK_MASTER", "local[2]")
    try:
        settings = Settings.from_env()
        subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], check=True,
                       capture_output=True)
        generate_logs(settings.raw_dir, FIRST_DAY, HISTORY_DAYS + 1, n_users=200, n_items=40, seed=11,
                      corrupt_dates=[CORRUPT_DAY])
        ingest_events_range(settings, FIRST_DAY, CORRUPT_DAY - timedelta(days=1))

        result = run_nightly(CORRUPT_DAY, model="popularity", epochs=1)
    finally:
        mp.undo()

    assert result["tasks"]["check_quality"] == "failed", result
    run_id = result["run_id"]
    # Every task that ran has its log at the UI's path (the configured filename template).
    from airflow.configuration import conf

    base = Path(conf.get("logging", "base_log_folder"))
    for task_id in ("resolve_run_date", "ingest_events", "build_sessions", "check_quality"):
        assert result["task_logs"][task_id] == str(
            base / "dag_id=nightly_recsys" / f"run_id={run_id}" / f"task_id={task_id}" / "attempt=1.log")
    assert "train_candidate" not in result["task_logs"]  # upstream failed: never ran

    # A task that succeeded: its structured stage lines, with the run's fields.
    ingest = _shown(run_id, "ingest_events")
    assert "stage started" in ingest and "stage finished" in ingest
    assert f"stage=ingest_events dag_id=nightly_recsys run_id={run_id} run_date={CORRUPT_DAY}" in ingest

    # The red square: the gate's error, its traceback and the alert, in the task's own log.
    gate = _shown(run_id, "check_quality")
    assert "stage=check_quality" in gate and "Task failed with exception" in gate
    assert "QualityGateFailed" in gate and "'frames':" in gate
    error = result["errors"]["check_quality"]
    assert error.startswith("Task failed with exception: ") and "QualityGateFailed" in error
    lines = failure_lines(result, None)
    assert f"    last error: {error}" in lines
    assert f"    task log (the error, as the Airflow UI shows it): {result['task_logs']['check_quality']}" in lines
