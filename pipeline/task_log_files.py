"""Task logs of in-process DAG runs (``dag.test()``) in the files Airflow's UI reads.

``dag.test()`` runs every task in this process through Airflow's task runner but, unlike a
worker's supervisor, writes no task log file: the UI then says "Log file not found" for each
task. While :func:`task_log_files` is active, each task's records are also written, as the JSON
lines a worker's supervisor writes (Airflow's own processors), to
``<[logging] base_log_folder>/<[logging] log_filename_template>``
(``dag_id=.../run_id=.../task_id=.../attempt=N.log``), where the log reader (UI, REST API)
looks: Airflow's own records of the task (the task runner's, "Task failed with exception" with
its traceback) and every stdlib record (the stages' structured lines, with their fields).
Output written straight to the file descriptors (Spark's JVM, ``print``) is not a record: it
stays in the run's own output log (``pipeline.run_dag --log``).

A task's file opens when the task runner reports it running and closes when it reports the
task's end (Airflow's task-instance listener hooks), so the failure callbacks' records are in it.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import pluggy

# Airflow's listener hook marker (airflow.sdk._shared.listeners.hookimpl), without importing Airflow.
hookimpl = pluggy.HookimplMarker("airflow")
# A record's standard attributes: the rest came with ``extra=`` (the stages' run fields, ...).
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
ERROR_LEVELS = ("error", "critical", "exception", "fatal")


class _TaskLogSink:
    """The open task file and the listener hooks that open and close it."""

    def __init__(self) -> None:
        self.file: BinaryIO | None = None
        self.logger: Any = None
        self.paths: dict[str, Path] = {}
        self.open_groups = 0

    def open(self, ti: Any) -> None:
        import structlog
        from airflow.sdk.log import init_log_file, logging_processors
        from airflow.utils.helpers import log_filename_template_renderer

        self.close()
        self.open_groups = 0
        path = init_log_file(log_filename_template_renderer()(ti=ti))
        self.paths[ti.task_id] = path
        # Appended, as a worker does: a resumed (deferred) task keeps its first part.
        self.file = path.open("ab")
        self.logger = structlog.wrap_logger(structlog.BytesLogger(self.file),
                                            processors=logging_processors(json_output=True),
                                            logger_name="task").bind()

    def close(self) -> None:
        # The runner ends its last group after the task's end is reported: end it here instead.
        while self.open_groups and self.logger is not None:
            self.write("info", {"event": "::endgroup::", "logger_name": "task"})
        if self.file is not None:
            self.file.close()
        self.file = self.logger = None

    def write(self, method_name: str, event_dict: dict[str, Any]) -> None:
        if self.logger is None:
            return
        # The file opens inside the runner's "Pre Execute" group: its end alone would confuse
        # the UI's folding of log groups.
        event = str(event_dict.get("event", ""))
        if event.startswith("::group::"):
            self.open_groups += 1
        elif event == "::endgroup::":
            if not self.open_groups:
                return
            self.open_groups -= 1
        try:
            getattr(self.logger, method_name, self.logger.info)(**event_dict)
        except Exception:  # noqa: BLE001 - a log copy never fails the task it describes
            pass

    # Airflow's task-instance listener hooks (called by the task runner, in this process).
    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance) -> None:
        self.open(task_instance)

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance) -> None:
        self.close()

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error) -> None:
        self.close()

    @hookimpl
    def on_task_instance_skipped(self, previous_state, task_instance) -> None:
        self.close()


class _StdlibToTaskLog(logging.Handler):
    """Every stdlib record (the stages' structured lines included) into the open task file."""

    def __init__(self, sink: _TaskLogSink):
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if self.sink.logger is None:
            return
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}
        fields = {k: v if isinstance(v, (str, int, float, bool, type(None))) else str(v) for k, v in fields.items()}
        fields.pop("event", None)
        if record.exc_info:
            fields["exc_info"] = record.exc_info
        self.sink.write(record.levelname.lower(), {"event": record.getMessage(), "logger_name": record.name}
                        | fields)


@contextlib.contextmanager
def task_log_files() -> Iterator[dict[str, Path]]:
    """While active, every task run in this process writes its Airflow task log file.

    Yields ``{task_id: log path}``, filled as tasks run (a task that never ran has no file).
    """
    import structlog
    from airflow.sdk.listener import get_listener_manager

    sink = _TaskLogSink()

    def tee(logger: Any, method_name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        sink.write(method_name, {"logger_name": getattr(logger, "name", None) or "task"} | event_dict)
        return event_dict

    # In place, not structlog.configure(): loggers Airflow bound (and cached) before this see it too.
    processors = structlog.get_config()["processors"]
    processors.insert(0, tee)
    handler = _StdlibToTaskLog(sink)
    logging.getLogger().addHandler(handler)
    listeners = get_listener_manager()
    listeners.add_listener(sink)
    try:
        yield sink.paths
    finally:
        listeners.pm.unregister(sink)
        logging.getLogger().removeHandler(handler)
        processors.remove(tee)
        sink.close()


def read_task_log(path: Path) -> list[dict[str, Any]]:
    """A task log file's records (a line that is not JSON becomes ``{"event": line}``)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = {"event": line}
        records.append(record if isinstance(record, dict) else {"event": line})
    return records


def last_error_line(path: Path) -> str | None:
    """The task's error in one line: the last error record that carries an exception (else the
    last error record), its message and the exception's type and text."""
    if not Path(path).is_file():
        return None
    errors = [r for r in read_task_log(path) if str(r.get("level", "")).lower() in ERROR_LEVELS]
    if not errors:
        return None
    # Records after the exception (the failure callback's alert) tell less about the cause.
    record = ([r for r in errors if r.get("exception")] or errors)[-1]
    line = str(record.get("event", ""))
    details = record.get("exception")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        # Airflow's JSON traceback lists the raised exception first, then its causes.
        detail = details[0]
        line += f": {detail.get('exc_type')}: {detail.get('exc_value')}"
    return line
