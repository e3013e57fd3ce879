"""Session tables: run the dbt project in ``dbt/`` on the lake, in this process.

``build_session_tables`` runs ``dbt build`` (models, data tests and unit tests) through
``dbtRunner`` against ``settings.dbt_target`` (``duckdb``: the file ``settings.warehouse_path``;
``spark``: a local Spark session with its warehouse under ``settings.home``). dbt's target/ and
logs/ go under ``settings.home`` so a run never writes into the repository.

Incremental runs: the per-event and per-user models (``int_events_sessionized``,
``fct_sessions``, ``user_sequences``, ``user_features``) are rebuilt for the users with an event
on one of the ``affected_event_dates`` (ingestion's reconciliation records list them per
arrival day), from each such user's whole history, so late events and sessions crossing
midnight never leave fragments: any sequence of incremental runs gives the tables a full
refresh gives. :func:`build_pending_session_tables` works out those dates itself from the
reconciliation records no build has consumed yet (a full refresh when it cannot tell).

Rejected arrival days (``sessions.admission_record``, written by ``quality.admission``): their rows are left out by the staging model
(var ``excluded_arrival_dates``). The build record keeps the list each build used; a build whose
list differs (a day rejected or re-admitted since) is a full refresh: rare, and unlike a per-date
rebuild it stays exact when the day's events were also re-sent on other days.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from core.settings import REPO_ROOT, Settings

DBT_PROJECT_DIR = REPO_ROOT / "dbt"

# dbt keeps global state per invocation (flags, adapters, event manager), so invocations made
# from several threads of one process must not overlap.
_DBT_LOCK = threading.Lock()

_FAILED_STATUSES = {"error", "fail"}
_TEST_TYPES = {"test", "unit_test"}


class SessionTablesFailed(RuntimeError):
    """``dbt build`` (or ``dbt docs generate``) did not succeed; the message names the nodes."""


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment variables ``dbt/profiles.yml`` and the lake source read."""
    return {
        "RECSYS_WAREHOUSE_PATH": str(settings.warehouse_path),
        "RECSYS_LAKE_DIR": str(settings.lake_dir),
        "RECSYS_SPARK_MASTER": settings.spark_master,
        "RECSYS_SPARK_DRIVER_MEMORY": settings.spark_driver_memory,
        "RECSYS_SPARK_WAREHOUSE_DIR": str(settings.spark_warehouse_dir),
        # ingest/spark.py keeps Derby (the Hive metastore) in the same place
        "RECSYS_SPARK_DERBY_HOME": str(settings.home / "spark-derby"),
    }


def dbt_vars(
    settings: Settings,
    affected_event_dates: Iterable[date | str] | None = None,
    excluded_arrival_dates: Iterable[date | str] | None = None,
) -> dict[str, Any]:
    """The project vars taken from Settings, so dbt and the Python stages agree on them.

    ``excluded_arrival_dates``: the rejected days to leave out; ``None`` reads them from the
    admission record. Only a non-empty list is passed, so a build record from before there were
    rejections still matches.
    """
    values: dict[str, Any] = {
        "session_gap_minutes": settings.session_gap_minutes,
        "max_sequence_length": settings.max_sequence_length,
    }
    if affected_event_dates is not None:
        values["affected_event_dates"] = _iso_dates(affected_event_dates)
    if excluded_arrival_dates is None:
        from sessions.admission_record import excluded_arrival_dates as recorded_exclusions

        excluded_arrival_dates = recorded_exclusions(settings)
    excluded = _iso_dates(excluded_arrival_dates)
    if excluded:
        values["excluded_arrival_dates"] = excluded
    return values


def _iso_dates(days: Iterable[date | str]) -> list[str]:
    # date.fromisoformat validates strings too: the values end up in SQL literals
    return sorted({(d if isinstance(d, date) else date.fromisoformat(str(d))).isoformat()
                   for d in days})


def build_session_tables(
    settings: Settings,
    select: str | None = None,
    full_refresh: bool = False,
    affected_event_dates: Iterable[date | str] | None = None,
    *,
    run_tests: bool = True,
    excluded_arrival_dates: Iterable[date | str] | None = None,
) -> dict[str, Any]:
    """Run ``dbt build`` (``dbt run`` with ``run_tests=False``) and summarise it.

    ``affected_event_dates`` given (and ``full_refresh`` not): an incremental run that rebuilds
    the users with events on those dates, whole; an empty list rebuilds nobody. Otherwise every
    model is rebuilt from the whole lake (``--full-refresh``), which is also what happens to an
    incremental model that does not exist yet. Rows of ``excluded_arrival_dates`` (``None``: the
    admission record's rejected days) are left out.

    Returns ``{"models": n, "tests_passed": n, "tests_failed": n, "rows": {model: count},
    "mode": "full_refresh" | "incremental", "affected_event_dates": [...] | None}``, where tests
    count data tests and dbt unit tests and ``rows`` covers the models built in this run.
    Raises :class:`SessionTablesFailed` when the lake has no events or any node fails.
    """
    _require_lake_events(settings)
    incremental = affected_event_dates is not None and not full_refresh
    dates = _iso_dates(affected_event_dates) if incremental else None
    args = ["build" if run_tests else "run",
            *_common_args(settings, settings.home / "dbt_target", dates, excluded_arrival_dates)]
    if select:
        args += ["--select", select]
    if not incremental:
        args.append("--full-refresh")
    outcome = _invoke(settings, args)

    results = list(getattr(outcome.result, "results", None) or [])
    failed = [r for r in results if _status(r) in _FAILED_STATUSES]
    if not outcome.success or failed:
        raise SessionTablesFailed(_failure_message("dbt build", outcome, failed, results))

    built = [r.node for r in results if r.node.resource_type == "model" and _status(r) == "success"]
    tests = [r for r in results if r.node.resource_type in _TEST_TYPES]
    return {
        "models": len(built),
        "tests_passed": sum(1 for r in tests if _status(r) in {"pass", "warn"}),
        "tests_failed": sum(1 for r in tests if _status(r) in _FAILED_STATUSES),
        "rows": _row_counts(settings, {node.name: node.relation_name for node in built}),
        "mode": "incremental" if incremental else "full_refresh",
        "affected_event_dates": dates,
    }


# ---------------------------------------------------------------- pending rebuilds

_STATE_FILE = "session_tables_state.json"


def _state_path(settings: Settings) -> Path:
    return settings.home / "dbt_state" / _STATE_FILE


def _reconciliation_fingerprints(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each arrival day's reconciliation record: its content hash and affected event dates.

    A re-ingested day rewrites its record; its hash changes whenever its content does, and the
    modification time is part of it so that a re-run with an identical record still counts.
    """
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(settings.reconciliation_dir.glob("*.json")):
        raw = path.read_bytes()
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue  # being written; its day is picked up by the next build
        digest = hashlib.sha256(raw + str(path.stat().st_mtime_ns).encode()).hexdigest()
        found[path.stem] = {"sha256": digest,
                            "affected_event_dates": list(record.get("affected_event_dates", []))}
    return found


def pending_affected_event_dates(
    settings: Settings, excluded_arrival_dates: Iterable[date | str] | None = None
) -> list[str] | None:
    """Event dates the warehouse has not caught up with, or ``None`` when a full refresh is due.

    ``None`` when there is no warehouse, no record of a previous build, the target is Spark, or
    the session gap / K or the excluded arrival days (``None``: as recorded now) changed since
    the last build. Otherwise the union of the
    ``affected_event_dates`` of every reconciliation record that is new or changed since the
    last successful build (an arrival day re-ingested counts again).
    """
    state_path = _state_path(settings)
    if settings.dbt_target != "duckdb" or not settings.warehouse_path.is_file():
        return None
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    expected = dbt_vars(settings, excluded_arrival_dates=excluded_arrival_dates)
    if state.get("vars") != expected or state.get("warehouse") != str(settings.warehouse_path):
        return None
    consumed = state.get("reconciliations", {})
    pending: set[str] = set()
    for day, current in _reconciliation_fingerprints(settings).items():
        if consumed.get(day, {}).get("sha256") != current["sha256"]:
            pending.update(current["affected_event_dates"])
    return sorted(pending)


def build_pending_session_tables(settings: Settings, *, full_refresh: bool = False) -> dict[str, Any]:
    """Bring the session tables up to date with the lake: incremental when it can be.

    Rebuilds the users of :func:`pending_affected_event_dates` (a full refresh when that is
    ``None`` or ``full_refresh``), then records the reconciliation records it consumed and the
    excluded arrival days it left out. Both are read before dbt starts, so a day ingested or
    rejected during the build is caught next time.
    """
    from sessions.admission_record import excluded_arrival_dates

    snapshot = _reconciliation_fingerprints(settings)
    excluded = excluded_arrival_dates(settings)
    dates = None if full_refresh else pending_affected_event_dates(settings, excluded)
    summary = build_session_tables(settings, full_refresh=dates is None, affected_event_dates=dates,
                                   excluded_arrival_dates=excluded)
    summary["excluded_arrival_dates"] = excluded
    state_path = _state_path(settings)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_name(f".{_STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({
        "vars": dbt_vars(settings, excluded_arrival_dates=excluded),
        "warehouse": str(settings.warehouse_path),
        "reconciliations": snapshot,
    }, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, state_path)
    return summary


def generate_docs(settings: Settings) -> Path:
    """Write dbt's documentation site (index.html, manifest.json, catalog.json)."""
    docs_dir = settings.home / "dbt_docs"
    outcome = _invoke(settings, ["docs", "generate", *_common_args(settings, docs_dir)])
    if not outcome.success:
        raise SessionTablesFailed(_failure_message("dbt docs generate", outcome, [], []))
    return docs_dir


def _common_args(
    settings: Settings,
    target_path: Path,
    affected_event_dates: list[str] | None = None,
    excluded_arrival_dates: Iterable[date | str] | None = None,
) -> list[str]:
    return [
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", settings.dbt_target,
        "--target-path", str(target_path),
        "--log-path", str(settings.home / "dbt_logs"),
        "--vars", json.dumps(dbt_vars(settings, affected_event_dates, excluded_arrival_dates)),
        "--no-send-anonymous-usage-stats",
        "--no-use-colors",
    ]


def _require_lake_events(settings: Settings) -> None:
    # Both engines would fail on an empty lake too, but with a message about globs or paths.
    if not any(settings.events_dir.glob("event_date=*/arrival_date=*/*.parquet")):
        raise SessionTablesFailed(
            f"no event files under {settings.events_dir} "
            "(expected event_date=<d>/arrival_date=<a>/*.parquet); run ingestion first"
        )


def _invoke(settings: Settings, args: list[str]):
    # Imported here: loading dbt takes seconds and registers its logging, which callers that
    # only need the settings or the exception class should not pay for.
    from dbt.cli.main import dbtRunner

    settings.home.mkdir(parents=True, exist_ok=True)
    with _DBT_LOCK, _environment(dbt_env(settings)):
        return dbtRunner().invoke(args)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set env vars for one dbt invocation and restore the caller's afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _status(result: Any) -> str:
    return str(getattr(result.status, "value", result.status)).lower()


def _failure_message(command: str, outcome: Any, failed: list, results: list) -> str:
    lines = [f"{command} failed"]
    for r in failed:
        message = (r.message or "").strip().splitlines()
        lines.append(f"  {r.node.resource_type} {r.node.name}: {_status(r)}"
                     + (f" ({message[0]})" if message else ""))
    skipped = [r.node for r in results if _status(r) == "skipped"]
    if skipped:
        models = sorted(n.name for n in skipped if n.resource_type == "model")
        lines.append(f"  skipped because of them: models {', '.join(models) or '(none)'} "
                     f"and {len(skipped) - len(models)} tests")
    if outcome.exception is not None:
        lines.append(f"  {type(outcome.exception).__name__}: {outcome.exception}")
    return "\n".join(lines)


def _row_counts(settings: Settings, relations: Mapping[str, str]) -> dict[str, int]:
    if not relations:
        return {}
    if settings.dbt_target == "spark":
        return _spark_row_counts(relations)
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return {
            name: con.execute(f"select count(*) from {relation}").fetchone()[0]
            for name, relation in relations.items()
        }


def _spark_row_counts(relations: Mapping[str, str]) -> dict[str, int]:
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    # dbt-spark's session method built the session in this process; without one, counting
    # would start a fresh Spark with none of the profile's settings.
    if SparkContext._active_spark_context is None:
        return {}
    spark = SparkSession.getActiveSession() or SparkSession.builder.getOrCreate()
    return {name: spark.sql(f"select count(*) from {relation}").first()[0]
            for name, relation in relations.items()}
