"""Structured logs for the pipeline's stages: one ``key=value`` (or JSON) line per record, each
carrying the DAG run's id and the run's date.

Airflow keeps every task's log; with these fields a log search (``run_id=scheduled__2026-11-20``
or ``run_date=2026-11-20``) finds every stage's lines of one night, whichever task wrote them.

    from core.logging_setup import stage_logging

    with stage_logging("ingest_events", run_id="manual__...", run_date="2026-11-20"):
        ...  # every record of the "pipeline", "ingest", ... loggers carries the fields

``RECSYS_LOG_FORMAT=json`` switches the lines to JSON objects (for a log shipper).
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime, timezone
from typing import Any, Iterator

from core.errors import UserError

# The platform's own packages: their records get the run fields and go through our handler.
PLATFORM_LOGGERS = ("core", "ingest", "sessions", "quality", "features", "training", "registry", "serving", "pipeline")
FIELDS = ("stage", "dag_id", "run_id", "run_date", "try_number")
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class RunContextFilter(logging.Filter):
    """Adds the run's fields to every record it sees (never overriding ones set by the caller)."""

    def __init__(self, **fields: Any):
        super().__init__()
        self.fields = {k: v for k, v in fields.items() if v is not None}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def _quote(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """``ts=... level=INFO logger=pipeline.stages stage=... run_id=... run_date=... msg="..."``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = structured_fields(record)
        line = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = structured_fields(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, default=str)


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "logger": record.name,
    }
    for key in FIELDS:
        if hasattr(record, key):
            fields[key] = getattr(record, key)
    # Anything passed with ``extra=`` (rows=..., path=...) becomes a field too.
    for key, value in vars(record).items():
        if key not in _STANDARD_ATTRS and key not in fields and not key.startswith("_"):
            fields[key] = value
    fields["msg"] = record.getMessage()
    return fields


def make_formatter(fmt: str | None = None) -> logging.Formatter:
    if fmt is None:
        from core.settings import Settings

        try:
            fmt = Settings.from_env().log_format
        except UserError:  # a bad setting is reported by the stage itself, in the default format
            fmt = "kv"
    fmt = fmt.lower()
    return JsonFormatter() if fmt == "json" else KeyValueFormatter()


@contextlib.contextmanager
def stage_logging(
    stage: str,
    *,
    run_id: str | None = None,
    run_date: str | None = None,
    dag_id: str | None = None,
    try_number: int | None = None,
    stream=None,
    fmt: str | None = None,
) -> Iterator[logging.LoggerAdapter]:
    """Route the platform loggers' records through a structured handler carrying the run fields.

    The handler writes to ``stream`` (default: stdout, which Airflow's task runner captures into
    the task log at INFO; stderr would be logged as errors). Records keep propagating, so Airflow's own handlers still see them. Yields an
    adapter for the caller's own lines (logger ``pipeline.<stage>``).
    """
    import sys

    context = RunContextFilter(stage=stage, dag_id=dag_id, run_id=run_id, run_date=run_date,
                               try_number=try_number)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(make_formatter(fmt))
    handler.addFilter(context)
    loggers = [logging.getLogger(name) for name in PLATFORM_LOGGERS]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        if lg.level == logging.NOTSET or lg.level > logging.INFO:
            lg.setLevel(logging.INFO)
    adapter = logging.LoggerAdapter(logging.getLogger(f"pipeline.{stage}"), context.fields)
    try:
        yield adapter
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
        handler.flush()


def context_fields(context: Any) -> dict[str, Any]:
    """The run fields of an Airflow task context (a dict-like ``Context``)."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    return {
        "dag_id": getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
    }


@contextlib.contextmanager
def task_stage_logs(stage: str, run_date: str | None) -> Iterator[logging.LoggerAdapter]:
    """Inside an Airflow task: :func:`stage_logging` with the task's dag_id, run_id and try.

    A :class:`~core.errors.UserError` (no data for the date, too little to split) fails the
    task at once, without the retries meant for transient I/O errors: retrying cannot fix it.
    """
    from airflow.sdk import get_current_context
    from airflow.sdk.exceptions import AirflowFailException

    from core.errors import UserError

    context = get_current_context()
    with stage_logging(stage, run_date=run_date, **context_fields(context)) as log:
        log.info("stage started")
        try:
            yield log
        except UserError as exc:
            log.error("stage failed: %s", exc)
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        log.info("stage finished")


def airflow_task_states() -> dict[str, str]:
    """Inside an Airflow task: this DAG run's task states (through the task SDK, no DB access)."""
    from airflow.sdk import get_current_context

    ti = get_current_context()["ti"]
    try:
        found = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id])
    except Exception:  # noqa: BLE001 - the report then shows no task table
        return {}
    states = found.get(ti.run_id, found) if isinstance(found, dict) else {}
    return {str(k): str(v) for k, v in states.items()}
