"""Running the quality gate's suites with Great Expectations: the file-mode project under
``settings.gx_dir`` (one dataframe asset, validation definition and checkpoint per suite), its
Data Docs, and each failed expectation told in one line.

The verdict built from these results lives in :mod:`quality.gate`. ``great_expectations`` is
imported inside functions (seconds to import; Airflow parses DAG files that import the gate).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from core.settings import Settings
from quality import suites as suites_mod
from quality.data_docs import localize_site
from quality.inputs import FRAME_READERS, InputUnavailable

DATASOURCE_NAME = "recsys_quality"
BATCH_DEFINITION_NAME = "whole_frame"
CHECKPOINT_PREFIX = "quality_gate_"
# Enough offending values to recognise the problem without flooding the verdict and the logs.
PARTIAL_UNEXPECTED_COUNT = 5


@dataclass(frozen=True)
class SuiteResults:
    # "<suite>: <expectation>(<column>) <what was observed>", in suite then expectation order.
    failed_critical: list[str]
    failed_warnings: list[str]
    # Suite name -> every expectation of it succeeded (False also when its input was missing).
    suites: dict[str, bool]
    # Filesystem path of the Data Docs site's index.html.
    data_docs_index: Path


def validate_suites(settings: Settings, run_date: date) -> SuiteResults:
    """Run every suite of ``run_date`` on its input and update Data Docs.

    Never raises for bad or missing data: a suite whose input is missing fails critically.
    Great Expectations' own INFO lines (datasources saved, config providers) are held back for
    the run: in the task log they buried the gate's verdict.
    """
    gx_logger = logging.getLogger("great_expectations")
    level = gx_logger.level
    gx_logger.setLevel(max(logging.WARNING, level))
    try:
        return _validate_suites(settings, run_date)
    finally:
        gx_logger.setLevel(level)


def _validate_suites(settings: Settings, run_date: date) -> SuiteResults:
    import great_expectations as gx

    context = _file_context(settings)
    checkpoints = _register_checkpoints(context, suites_mod.build_suites(settings, run_date))
    # One run id for the whole gate groups its four results in Data Docs; the timestamp keeps
    # each re-run of a day as its own result instead of overwriting the previous one.
    run_id = gx.RunIdentifier(
        run_name=f"quality_gate_{run_date.isoformat()}", run_time=datetime.now(timezone.utc)
    )

    failed_critical: list[str] = []
    failed_warnings: list[str] = []
    suite_ok: dict[str, bool] = {}
    for name in suites_mod.SUITE_NAMES:
        try:
            frame = FRAME_READERS[name](settings, run_date)
        except InputUnavailable as exc:
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

    index = _data_docs_index(context)
    localize_site(index)  # GX links its scripts and styles on CDNs: copies served from the site
    return SuiteResults(failed_critical, failed_warnings, suite_ok, index)


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
