"""The quality gate's decision: the day's verdict from the suites' results
(:mod:`quality.validation` runs them with Great Expectations on the lake rows, the
reconciliation and the dbt session tables), written to ``settings.quality_dir/<date>.json``.

The GX Airflow provider marks a task successful even when validation fails, so the DAG calls
:func:`enforce`, which raises :class:`QualityGateFailed` and stops training and promotion; the
nightly stage first records the day as rejected and takes its rows out of the session tables
(:mod:`quality.admission`). A day a person re-admitted passes, its critical failures as warnings.

Importing this module does not import ``great_expectations`` (seconds to import; Airflow parses
DAG files that import this module).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from core.settings import Settings
from quality.validation import validate_suites

log = logging.getLogger(__name__)


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
    run_date = _as_date(run_date)
    results = validate_suites(settings, run_date)
    failed_critical = list(results.failed_critical)
    failed_warnings = list(results.failed_warnings)

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
        suites=results.suites,
        data_docs_index=str(results.data_docs_index),
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
