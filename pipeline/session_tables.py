"""Session tables: run the dbt project in ``dbt/`` on the lake, in this process.

``build_session_tables`` runs ``dbt build`` (models, data tests and unit tests) through
``dbtRunner`` against ``settings.dbt_target`` (``duckdb``: the file ``settings.warehouse_path``;
``spark``: a local Spark session with its warehouse under ``settings.home``). dbt's target/ and
logs/ go under ``settings.home`` so a run never writes into the repository.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from pipeline.settings import REPO_ROOT, Settings

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


def dbt_vars(settings: Settings) -> dict[str, Any]:
    """The project vars taken from Settings, so dbt and the Python stages agree on them."""
    return {
        "session_gap_minutes": settings.session_gap_minutes,
        "max_sequence_length": settings.max_sequence_length,
    }


def build_session_tables(
    settings: Settings, select: str | None = None, full_refresh: bool = False
) -> dict[str, Any]:
    """Run ``dbt build`` and summarise it.

    Returns ``{"models": n, "tests_passed": n, "tests_failed": n, "rows": {model: count}}``,
    where tests count data tests and dbt unit tests and ``rows`` covers the models built in
    this run. Raises :class:`SessionTablesFailed` when the lake has no events or any node fails.
    """
    _require_lake_events(settings)
    args = ["build", *_common_args(settings, settings.home / "dbt_target")]
    if select:
        args += ["--select", select]
    if full_refresh:
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
    }


def generate_docs(settings: Settings) -> Path:
    """Write dbt's documentation site (index.html, manifest.json, catalog.json)."""
    docs_dir = settings.home / "dbt_docs"
    outcome = _invoke(settings, ["docs", "generate", *_common_args(settings, docs_dir)])
    if not outcome.success:
        raise SessionTablesFailed(_failure_message("dbt docs generate", outcome, [], []))
    return docs_dir


def _common_args(settings: Settings, target_path: Path) -> list[str]:
    return [
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target", settings.dbt_target,
        "--target-path", str(target_path),
        "--log-path", str(settings.home / "dbt_logs"),
        "--vars", json.dumps(dbt_vars(settings)),
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
