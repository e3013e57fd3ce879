"""Failure alerts: one JSON line per failed task under ``$RECSYS_HOME/alerts/<date>.jsonl``.

``on_task_failure`` is the DAGs' ``on_failure_callback`` (in ``default_args``): Airflow calls it
with the task's context after the last try failed. The record is what an on-call person needs
first (which DAG, task, run, date, exception, log URL); a real deployment forwards the same
record to a pager or chat hook by tailing the folder (or extends :func:`notify`).

A callback must never fail the task a second time: errors while writing are logged, not raised.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.settings import Settings

log = logging.getLogger(__name__)


def alerts_dir(settings: Settings) -> Path:
    return settings.home / "alerts"


def alert_record(context: Any) -> dict[str, Any]:
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exception = context.get("exception")
    # A UserError reaches Airflow wrapped in AirflowFailException (no retries, see
    # logging_setup.task_stage_logs): the alert names what the user has to fix.
    cause = getattr(exception, "__cause__", None)
    shown = cause if isinstance(cause, UserError) else exception
    params = context.get("params") or {}
    run_date = None
    try:
        # The nightly DAG's resolved date (XCom of resolve_run_date) when there is one.
        run_date = ti.xcom_pull(task_ids="resolve_run_date") if ti is not None else None
    except Exception:  # noqa: BLE001 - a missing XCom or a DAG without that task
        run_date = None
    run_date = run_date or params.get("date") or params.get("end")
    if not run_date and dag_run is not None:
        when = getattr(dag_run, "logical_date", None) or getattr(dag_run, "run_after", None)
        run_date = when.date().isoformat() if when is not None else None
    return {
        "alerted_at": datetime.now(timezone.utc).isoformat(),
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "date": str(run_date) if run_date else None,
        "exception_type": type(shown).__name__ if shown is not None else None,
        "exception": str(shown) if shown is not None else None,
        "user_error": isinstance(shown, UserError),
        "traceback": "".join(traceback.format_exception(exception))[-4000:]
        if isinstance(exception, BaseException) else None,
        "log_url": getattr(ti, "log_url", None),
    }


def write_alert(settings: Settings, record: dict[str, Any]) -> Path:
    folder = alerts_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    day = record.get("date") or record["alerted_at"][:10]
    path = folder / f"{day}.jsonl"
    line = json.dumps(record, default=str) + "\n"
    # One write() of one line in append mode: concurrent failing tasks do not interleave.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return path


def notify(record: dict[str, Any], path: Path) -> None:
    """Hook for a pager/chat integration; by default a single ERROR log line."""
    log.error("ALERT dag_id=%s task_id=%s run_id=%s date=%s exception=%s record=%s",
              record["dag_id"], record["task_id"], record["run_id"], record["date"],
              record["exception_type"], path)


def load_alerts(settings: Settings) -> list[dict[str, Any]]:
    folder = alerts_dir(settings)
    records = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def on_task_failure(context: Any) -> None:
    """Airflow ``on_failure_callback``: append the alert record, never raise."""
    try:
        settings = Settings.from_env()
        record = alert_record(context)
        path = write_alert(settings, record)
        notify(record, path)
    except Exception:  # noqa: BLE001
        log.exception("could not write the failure alert")
