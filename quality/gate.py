"""The quality gate: validates the day's lake rows, its reconciliation and the dbt session tables
with Great Expectations, keeps results and Data Docs in ``settings.gx_dir`` and writes a verdict
to ``settings.quality_dir/<date>.json``.

The GX Airflow provider marks a task successful even when validation fails, so the DAG calls
:func:`enforce`, which raises :class:`QualityGateFailed` and stops training and promotion; the
nightly stage first records the day as rejected and takes its rows out of the session tables
(:mod:`quality.admission`). A day a person re-admitted passes, its critical failures as warnings.

``great_expectations`` is imported inside functions (seconds to import; Airflow parses DAG files
that import this module).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote, urlparse

from core.settings import Settings
from quality import suites as suites_mod

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

DATASOURCE_NAME = "recsys_quality"
BATCH_DEFINITION_NAME = "whole_frame"
CHECKPOINT_PREFIX = "quality_gate_"
RECONCILIATION_COUNTS = ("input_rows", "written_rows", "quarantined_rows", "duplicate_rows")
# Enough offending values to recognise the problem without flooding the verdict and the logs.
PARTIAL_UNEXPECTED_COUNT = 5


@dataclass(frozen=True)
class GateVerdict:
    run_date: date
    passed: bool
    # "<suite>: <expectation>(<column>) <what was observed>", in suite then expectation order.
    failed_critical: list[str]
    failed_warnings: list[str]
    # Suite name -> every expectation of it succeeded (False also when its input was missing).
    suites: dict[str, bool]
    # Filesystem path of the Data Docs site's index.html.
    data_docs_index: str
    # The person's re-admission (quality.admission event) that turned this day's critical
    # failures into warnings; None when the checks were judged as they are.
    readmitted: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["run_date"] = self.run_date.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GateVerdict":
        return cls(
            run_date=date.fromisoformat(data["run_date"]),
            passed=bool(data["passed"]),
            failed_critical=list(data["failed_critical"]),
            failed_warnings=list(data["failed_warnings"]),
            suites={str(k): bool(v) for k, v in data["suites"].items()},
            data_docs_index=str(data["data_docs_index"]),
            readmitted=data.get("readmitted"),
        )


class QualityGateFailed(RuntimeError):
    """Raised by :func:`enforce` when a critical check failed; carries the verdict."""

    def __init__(self, verdict: GateVerdict):
        self.verdict = verdict
        lines = [
            f"quality gate failed for {verdict.run_date.isoformat()}: "
            f"{len(verdict.failed_critical)} critical check(s) failed"
        ]
        lines += [f"  - {failure}" for failure in verdict.failed_critical]
        lines.append(f"Data Docs: {verdict.data_docs_index}")
        super().__init__("\n".join(lines))

    def __reduce__(self):
        # Exception pickling re-calls the class with ``self.args`` (the message); rebuild from
        # the verdict instead so the exception survives a trip between processes.
        return (type(self), (self.verdict,))


class _InputUnavailable(Exception):
    """A suite's input could not be read; the message says what is missing and where."""


def verdict_path(settings: Settings, run_date: date) -> Path:
    return settings.quality_dir / f"{_as_date(run_date).isoformat()}.json"


def load_verdict(settings: Settings, run_date: date) -> GateVerdict | None:
    """The verdict the gate wrote for ``run_date``, or None when it has not run for that day."""
    path = verdict_path(settings, run_date)
    if not path.exists():
        return None
    return GateVerdict.from_dict(json.loads(path.read_text(encoding="utf-8")))


def enforce(verdict: GateVerdict) -> GateVerdict:
    """Return ``verdict`` when it passed; raise :class:`QualityGateFailed` otherwise."""
    if not verdict.passed:
        raise QualityGateFailed(verdict)
    return verdict


def run_quality_gate(settings: Settings, run_date: date) -> GateVerdict:
    """Validate every suite for ``run_date``, update Data Docs and write the verdict JSON.

    Never raises for bad or missing data (that is a failed critical check in the verdict); call
    :func:`enforce` on the result to stop the pipeline.
    """
    import great_expectations as gx

    run_date = _as_date(run_date)
    context = _file_context(settings)
    checkpoints = _register_checkpoints(context, suites_mod.build_suites(settings, run_date))
    # One run id for the whole gate groups its four results in Data Docs; the timestamp keeps
    # each re-run of a day as its own result instead of overwriting the previous one.
    run_id = gx.RunIdentifier(
        run_name=f"quality_gate_{run_date.isoformat()}", run_time=datetime.now(timezone.utc)
    )

    loaders: dict[str, Callable[[Settings, date], "pd.DataFrame"]] = {
        suites_mod.INGESTED_EVENTS: _events_frame,
        suites_mod.INGESTION_RECONCILIATION: _reconciliation_frame,
        suites_mod.SESSIONS: _sessions_frame,
        suites_mod.USER_SEQUENCES: _user_sequences_frame,
    }
    failed_critical: list[str] = []
    failed_warnings: list[str] = []
    suite_ok: dict[str, bool] = {}
    for name in suites_mod.SUITE_NAMES:
        try:
            frame = loaders[name](settings, run_date)
        except _InputUnavailable as exc:
            suite_ok[name] = False
            failed_critical.append(f"{name}: input missing: {exc}")
            continue
        result = checkpoints[name].run(batch_parameters={"dataframe": frame}, run_id=run_id)
        suite_ok[name] = bool(result.success)
        for suite_result in result.run_results.values():
            for expectation_result in suite_result.results:
                if expectation_result.success:
                    continue
                message = _describe_failure(name, expectation_result)
                if _is_critical(expectation_result.expectation_config):
                    failed_critical.append(message)
                else:
                    failed_warnings.append(message)

    readmitted = _readmission(settings, run_date) if failed_critical else None
    if readmitted is not None:
        # A person re-admitted this day after seeing its failures: they no longer stop it.
        log.warning("%s was re-admitted by %s at %s (%s): its %d critical failure(s) count as warnings",
                    run_date.isoformat(), readmitted["by"], readmitted["at"], readmitted["reason"],
                    len(failed_critical))
        failed_warnings = [f"re-admitted: {f}" for f in failed_critical] + failed_warnings
        failed_critical = []

    verdict = GateVerdict(
        run_date=run_date,
        passed=not failed_critical,
        failed_critical=failed_critical,
        failed_warnings=failed_warnings,
        suites=suite_ok,
        data_docs_index=str(_data_docs_index(context)),
        readmitted=readmitted,
    )
    _write_verdict(settings, verdict)
    log.info(
        "quality gate %s: %s (%d critical, %d warning failures); Data Docs %s",
        run_date.isoformat(),
        "passed" if verdict.passed else "FAILED",
        len(failed_critical),
        len(failed_warnings),
        verdict.data_docs_index,
    )
    for failure in failed_critical:
        log.error("critical: %s", failure)
    for failure in failed_warnings:
        log.warning("warning: %s", failure)
    return verdict


# ---- Great Expectations project ----


def _file_context(settings: Settings):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    settings.gx_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=settings.gx_dir)
    # tqdm bars per metric batch only clutter Airflow task logs.
    progress_bars = context.variables.progress_bars
    if progress_bars is None or progress_bars.get("globally", True):
        context.variables.progress_bars = ProgressBarsConfig(
            globally=False, metric_calculations=False
        )
        context.variables.save()
    return context


def _register_checkpoints(context, suites: dict[str, Any]) -> dict[str, Any]:
    """Create or update, per suite, a dataframe asset, its validation definition and checkpoint.

    Every object is looked up by name first, so a re-run (same or other day) reuses the project
    instead of failing on "already exists"; suites are replaced because their content depends on
    the run date (event-time window) and on settings.
    """
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    if DATASOURCE_NAME in context.data_sources.all():
        datasource = context.data_sources.get(DATASOURCE_NAME)
    else:
        datasource = context.data_sources.add_pandas(name=DATASOURCE_NAME)

    checkpoints = {}
    for name, suite in suites.items():
        if name in datasource.get_asset_names():
            asset = datasource.get_asset(name)
        else:
            asset = datasource.add_dataframe_asset(name=name)
        existing = {bd.name: bd for bd in asset.batch_definitions}
        batch_definition = existing.get(BATCH_DEFINITION_NAME) or (
            asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION_NAME)
        )
        suite = context.suites.add_or_update(suite)
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=name, data=batch_definition, suite=suite)
        )
        checkpoints[name] = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=f"{CHECKPOINT_PREFIX}{name}",
                validation_definitions=[validation],
                # Renders only this result and the index; build_data_docs would re-render
                # every result ever stored, which grows night after night.
                actions=[UpdateDataDocsAction(name="update_data_docs")],
                result_format={
                    "result_format": "SUMMARY",
                    "partial_unexpected_count": PARTIAL_UNEXPECTED_COUNT,
                },
            )
        )
    return checkpoints


def _data_docs_index(context) -> Path:
    sites = context.get_docs_sites_urls(only_if_exists=False)
    index = _url_to_path(sites[0]["site_url"])
    if not index.exists():
        # No checkpoint ran (every input missing) on a fresh project: build the site so the
        # verdict's link still opens, showing the suites.
        context.build_data_docs()
    return index


def _url_to_path(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


# ---- inputs, one pandas frame per suite ----


def _events_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    import duckdb

    day = run_date.isoformat()
    # Only that arrival day's sub-partitions are read: other days may be mid-rewrite by ingestion.
    pattern = settings.events_dir / "event_date=*" / f"arrival_date={day}" / "*.parquet"
    if not any(settings.events_dir.glob(f"event_date=*/arrival_date={day}/*.parquet")):
        raise _InputUnavailable(
            f"no lake files for arrival_date={day} under {settings.events_dir} "
            "(did ingestion run for this day?)"
        )
    con = duckdb.connect()
    try:
        frame = con.execute(
            "SELECT event_id, event_time, user_id, session_id, item_id, event_type "
            "FROM read_parquet(?, hive_partitioning = true, union_by_name = true)",
            [str(pattern)],
        ).df()
    except duckdb.Error as exc:
        raise _InputUnavailable(f"cannot read lake rows of arrival_date={day}: {exc}") from exc
    finally:
        con.close()
    frame["event_time"] = _naive_utc(frame["event_time"])
    return frame


def _naive_utc(column: "pd.Series") -> "pd.Series":
    """Timestamps as naive UTC, the form of the suite's event-time bounds.

    DuckDB reads Spark's INT96 timestamps as naive (already UTC) and UTC-adjusted ones as
    zone-aware in the session zone; both end up as the same naive UTC instants.
    """
    import pandas as pd

    column = pd.to_datetime(column)
    if column.dt.tz is not None:
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    return column


def _reconciliation_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    import pandas as pd

    path = settings.reconciliation_dir / f"{run_date.isoformat()}.json"
    if not path.exists():
        raise _InputUnavailable(
            f"reconciliation file {path} not found (did ingestion run for this day?)"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _InputUnavailable(f"reconciliation file {path} is unreadable: {exc}") from exc
    if not isinstance(record, dict):
        raise _InputUnavailable(f"reconciliation file {path} is not a JSON object")
    missing = [key for key in RECONCILIATION_COUNTS if key not in record]
    if missing:
        raise _InputUnavailable(f"reconciliation file {path} lacks {', '.join(missing)}")
    try:
        counts = {key: int(record[key]) for key in RECONCILIATION_COUNTS}
    except (TypeError, ValueError) as exc:
        raise _InputUnavailable(f"reconciliation file {path} has a non-integer count: {exc}") from exc

    input_rows = counts["input_rows"]
    row: dict[str, float] = dict(counts)
    row["unaccounted_rows"] = input_rows - (
        counts["written_rows"] + counts["quarantined_rows"] + counts["duplicate_rows"]
    )
    # An empty day already fails "input_rows >= 1"; 0.0 keeps the share checks from also
    # reporting a meaningless division by zero.
    row["quarantine_share"] = counts["quarantined_rows"] / input_rows if input_rows > 0 else 0.0
    row["duplicate_share"] = counts["duplicate_rows"] / input_rows if input_rows > 0 else 0.0
    # A record written before ingestion listed its ignored files has none to report.
    ignored = record.get("ignored_files", [])
    if not isinstance(ignored, list):
        raise _InputUnavailable(f"reconciliation file {path} has ignored_files that is not a list")
    row["ignored_files"] = len(ignored)
    return pd.DataFrame([row])


def _warehouse_query(settings: Settings, table: str, sql: str) -> "pd.DataFrame":
    import duckdb

    path = settings.warehouse_path
    if not path.exists():
        raise _InputUnavailable(f"warehouse {path} not found (did dbt run?)")
    try:
        # Read-only: the gate must never change what dbt built, and may run beside a reader.
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise _InputUnavailable(f"cannot open warehouse {path}: {exc}") from exc
    try:
        return con.execute(sql).df()
    except duckdb.Error as exc:
        raise _InputUnavailable(f"cannot read table {table} from {path}: {exc}") from exc
    finally:
        con.close()


def _sessions_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    # The warehouse holds all history; its tables are validated whole, whatever the run date.
    return _warehouse_query(
        settings,
        "fct_sessions",
        "SELECT session_id, n_events, duration_seconds, converted, session_start, session_end, "
        "epoch(session_end) - epoch(session_start) AS end_minus_start_seconds "
        "FROM main.fct_sessions",
    )


def _user_sequences_frame(settings: Settings, run_date: date) -> "pd.DataFrame":
    return _warehouse_query(
        settings, "user_sequences", "SELECT user_id, n_events FROM main.user_sequences"
    )


# ---- results ----


def _is_critical(config) -> bool:
    # Either marker makes it critical: a suite edited by hand that drops one must not silently
    # turn a blocking check into a warning.
    severity = getattr(config, "severity", None)
    severity_value = getattr(severity, "value", severity)
    meta = config.meta or {}
    return severity_value == "critical" or bool(meta.get("critical", False))


def _describe_failure(suite_name: str, expectation_result) -> str:
    config = expectation_result.expectation_config
    kwargs = config.kwargs
    target = f"({kwargs['column']})" if "column" in kwargs else ""
    text = f"{suite_name}: {config.type}{target}"

    error = _exception_message(expectation_result.exception_info)
    if error:
        return f"{text} raised: {error}"

    result = expectation_result.result or {}
    if "observed_value" in result:
        text += f" observed {result['observed_value']!r}"
    elif "unexpected_count" in result:
        examples = [_plain(v) for v in result.get("partial_unexpected_list") or []]
        text += (
            f" observed {examples!r} ({result['unexpected_count']} of "
            f"{result.get('element_count')} rows unexpected)"
        )
    expected = ", ".join(
        f"{key}={_plain(kwargs[key])!r}"
        for key in ("min_value", "max_value", "value_set", "type_list")
        if kwargs.get(key) is not None
    )
    if expected:
        text += f"; expected {expected}"
    return text


def _exception_message(exception_info) -> str | None:
    # GX reports either one {"raised_exception", "exception_message"} dict or one per metric.
    if not exception_info:
        return None
    infos = exception_info.values() if "raised_exception" not in exception_info else [exception_info]
    for info in infos:
        if isinstance(info, dict) and info.get("raised_exception"):
            return str(info.get("exception_message"))
    return None


def _plain(value: Any) -> Any:
    """Values as they read in JSON and logs (no ``Timestamp(...)`` / numpy reprs)."""
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _write_verdict(settings: Settings, verdict: GateVerdict) -> None:
    path = verdict_path(settings, verdict.run_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(verdict.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    # Readers (the promotion step, a second DAG run) never see a half-written verdict.
    os.replace(tmp, path)


def _readmission(settings: Settings, run_date: date) -> dict[str, Any] | None:
    from quality.admission import readmission

    return readmission(settings, run_date)


def _as_date(value: date) -> date:
    # Airflow hands over datetimes (logical_date); the gate works per calendar day.
    return value.date() if isinstance(value, datetime) else value
