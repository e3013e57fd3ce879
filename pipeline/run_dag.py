"""Run the nightly DAG once, in this process, through Airflow's own ``dag.test()``.

Used by the demo and the end-to-end test: the DAG is parsed from ``dags/`` by a real DagBag
and every task runs with Airflow's task runner against the metadata database named by the
environment (see :mod:`pipeline.airflow_env`; run ``airflow db migrate`` first).

    python -m pipeline.run_dag --date 2026-11-20                  # model=auto, protocol from the log
    python -m pipeline.run_dag --date 2026-11-20 --model sasrec --epochs 20 --protocol session
    python -m pipeline.run_dag --date 2026-11-20 --readmit "duplicates were a client retry; checked"

Each task's log is written where Airflow's UI reads it (``$AIRFLOW_HOME/logs/dag_id=.../run_id=.../
task_id=.../attempt=N.log``, see :mod:`pipeline.task_log_files`). Everything the run prints
(Airflow's, every task's, Spark's) is also written to a log file,
``$RECSYS_HOME/logs/run_dag/<dag>_<date>_<started>.log`` (``--log`` to choose). Exit status 0
when the DAG run succeeded; 1 when it failed, after printing to stderr the failed tasks with
their alert records (``$RECSYS_HOME/alerts/<date>.jsonl``), last error lines and task logs (the
files that hold the errors), and the run log's path; 2 for a user error
(one ``error:`` line, e.g. an Airflow database that was never migrated). The last line of
stdout is always ``DAG_RUN_RESULT {json}`` once the run has ended.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from core.errors import UserError
from core.settings import REPO_ROOT, Settings

DAG_ID = "nightly_recsys"
FAILED_STATES = ("failed", "upstream_failed")


def run_nightly(run_date: date, model: str = "auto", epochs: int = 20, **params: Any) -> dict[str, Any]:
    """Run the nightly DAG for ``run_date``; the run's state, task states, failed tasks and alerts.

    Returns whatever the run's outcome (a failed run is a result, not an exception):
    ``failed_tasks`` lists the tasks that failed themselves (not ``upstream_failed``) and
    ``alerts`` the alert records this run appended (traceback left out; it stays in the file),
    ``task_logs`` each task's Airflow log file (written where the UI reads it, see
    :mod:`pipeline.task_log_files`) and ``errors`` the last error line of each failed task's log.
    """
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.task_log_files import last_error_line, task_log_files

    dagbag = DagBag(dag_folder=str(REPO_ROOT / "dags"))
    if dagbag.import_errors:
        raise RuntimeError(f"DAG import errors: {dagbag.import_errors}")
    dag = dagbag.dags[DAG_ID]
    try:
        # Every Param explicitly: dag.test() in one process keeps a Param an earlier run's conf set.
        conf = {"protocol": "settings", "test_days": 0, "val_days": 0, "exclude_seen": "settings",
                "readmit": False, "readmit_reason": ""}
        conf |= {k: v for k, v in params.items() if v is not None}
        with task_log_files() as task_logs:
            dag_run = dag.test(run_conf=conf | {"date": run_date.isoformat(), "model": model, "epochs": epochs})
    except Exception as exc:
        if "no such table" in str(exc):
            raise UserError(
                "the Airflow metadata database has no tables",
                fix="run `recsys airflow migrate` first",
            ) from exc
        raise
    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    # In the DAG's own order, so a reader sees where a run stopped.
    tasks = {task_id: states[task_id] for task_id in dag.task_ids if task_id in states}
    result = {
        "dag_id": DAG_ID,
        "run_date": run_date.isoformat(),
        "run_id": dag_run.run_id,
        "state": str(dag_run.state),
        "tasks": tasks,
        "failed_tasks": [task_id for task_id, state in tasks.items() if state == "failed"],
        # Each task's Airflow log (what the UI shows): tasks that never ran have none.
        "task_logs": {task_id: str(task_logs[task_id]) for task_id in tasks if task_id in task_logs},
    }
    result["errors"] = {task_id: last_error_line(Path(result["task_logs"][task_id]))
                        for task_id in result["failed_tasks"] if task_id in result["task_logs"]}
    if result["state"] != "success":
        path, alerts = run_alerts(Settings.from_env(), run_date, dag_run.run_id)
        result["alerts_path"] = str(path)
        result["alerts"] = [{k: v for k, v in record.items() if k != "traceback"} for record in alerts]
    return result


def run_alerts(settings: Settings, run_date: date, run_id: str) -> tuple[Path, list[dict[str, Any]]]:
    """The alert records of DAG run ``run_id`` (``$RECSYS_HOME/alerts/<date>.jsonl``, see pipeline.alerts)."""
    from pipeline.alerts import alerts_dir

    path = alerts_dir(settings) / f"{run_date.isoformat()}.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a crash mid-write
            if record.get("run_id") == run_id:
                records.append(record)
    return path, records


def failure_lines(result: dict[str, Any], log_path: Path | None) -> list[str]:
    """What a person needs first about a failed run: which tasks, why (the alert, the last error
    line) and the file that holds the error (the failed task's Airflow log)."""
    lines = [f"DAG run failed: {result['dag_id']} for {result['run_date']} "
             f"(run {result.get('run_id')}, state {result['state']})"]
    alerts = {record.get("task_id"): record for record in result.get("alerts", [])}
    task_logs, errors = result.get("task_logs") or {}, result.get("errors") or {}
    for task_id in result.get("failed_tasks") or [t for t, s in result["tasks"].items() if s in FAILED_STATES]:
        record = alerts.get(task_id)
        why = f": {record.get('exception_type')}: {record.get('exception')}" if record else ""
        lines.append(f"  failed task: {task_id}{why}")
        if errors.get(task_id):
            lines.append(f"    last error: {errors[task_id]}")
        if task_logs.get(task_id):
            lines.append(f"    task log (the error, as the Airflow UI shows it): {task_logs[task_id]}")
    skipped = [t for t, s in result["tasks"].items() if s == "upstream_failed"]
    if skipped:
        lines.append(f"  not run (upstream failed): {', '.join(skipped)}")
    if result.get("alerts"):
        for record in result["alerts"]:
            lines.append(f"  alert record ({result.get('alerts_path')}): {json.dumps(record, default=str)}")
    else:
        lines.append(f"  no alert record of this run in {result.get('alerts_path')}")
    if log_path is not None:
        lines.append(f"  the run's whole output (Spark's too): {log_path}")
    return lines


def default_log_path(settings: Settings, run_date: date) -> Path:
    started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return settings.home / "logs" / "run_dag" / f"{DAG_ID}_{run_date.isoformat()}_{started}.log"


@contextlib.contextmanager
def tee_output(path: Path) -> Iterator[Path]:
    """Send everything written to this process's stdout and stderr (file descriptors 1 and 2, so
    child processes and the Spark JVM too) into the log file ``path``, echoed to the original stdout.

    The file is the target and a thread follows it (rather than a pipe): a child that outlives
    the block (the Spark JVM lives as long as this process) keeps appending to the file and can
    never block on a full pipe, and leaving the block echoes every byte written before it ends.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    start = os.fstat(target).st_size
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    finished = threading.Event()

    def echo(data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(saved[1], view):]
        except OSError:  # the reader of our stdout went away: the file still gets everything
            pass

    def follow() -> None:
        with open(path, "rb") as source:
            source.seek(start)
            while True:
                last_pass = finished.is_set()  # set after fds 1 and 2 were restored
                chunk = source.read(1 << 16)
                if chunk:
                    echo(chunk)
                elif last_pass:
                    return
                else:
                    finished.wait(0.1)

    follower = threading.Thread(target=follow, name="run_dag-log-echo", daemon=True)
    for fd in (1, 2):
        os.dup2(target, fd)
    follower.start()
    try:
        yield path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            os.dup2(saved[fd], fd)
        finished.set()
        follower.join()
        for fd in (*saved.values(), target):
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    from core.cli_errors import add_debug_flag, user_errors

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--date", required=True, type=date.fromisoformat)
    parser.add_argument("--model", default="auto", help="auto (the schedule's default) or a model name")
    parser.add_argument("--epochs", default=20, type=int)
    parser.add_argument("--protocol", choices=("auto", "user_temporal", "session"),
                        help="evaluation protocol (default: RECSYS_EVAL_PROTOCOL)")
    parser.add_argument("--test-days", type=float, help="test window in days (default: from the settings/log)")
    parser.add_argument("--val-days", type=float, help="validation window in days")
    parser.add_argument("--exclude-seen", choices=("auto", "true", "false"), help="seen-item rule")
    parser.add_argument("--readmit", metavar="REASON", default=None,
                        help="re-admit the date, rejected by an earlier quality gate, for this reason "
                             "(the DAG's readmit Param; recorded)")
    parser.add_argument("--log", type=Path, default=None,
                        help="also write the run's output here (default: $RECSYS_HOME/logs/run_dag/...)")
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    with user_errors(debug=args.debug):
        log_path = args.log or default_log_path(Settings.from_env(), args.date)
        with tee_output(log_path):
            result = run_nightly(args.date, args.model, args.epochs, protocol=args.protocol,
                                 test_days=args.test_days, val_days=args.val_days, exclude_seen=args.exclude_seen,
                                 readmit=True if args.readmit else None, readmit_reason=args.readmit)
            # py4j says goodbye at interpreter exit, after the result line otherwise.
            logging.getLogger("py4j").setLevel(logging.WARNING)
        result["log_path"] = str(log_path)
        failed = result["state"] != "success"
        if failed:
            print("\n".join(failure_lines(result, log_path)), file=sys.stderr, flush=True)
        # The last line of output is the machine-readable result (Airflow logs come before it).
        print("DAG_RUN_RESULT " + json.dumps(result, default=str), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
