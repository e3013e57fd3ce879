"""Champion / challenger: every promotion rule is a named check, and the record says which failed.

The candidate is promoted (alias ``champion`` moved to its version) only when all checks pass:

* ``quality_gate_passed``  - the night's data passed the Great Expectations gate;
* ``metrics_finite``       - no NaN / inf in the candidate's or the baseline's metrics;
* ``beats_popularity``     - candidate NDCG@10 > most-popular NDCG@10 on the same test window;
* ``not_worse_than_champion`` - the CURRENT champion's checkpoint is re-scored on this night's
  test window (its score from the night it was trained is never reused: that was another window)
  and the candidate must reach ``champion NDCG@10 - tolerance``; passes when there is no champion.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

from pipeline.settings import Settings

METRIC = "ndcg_at_10"


@dataclass
class PromotionDecision:
    # Plain JSON types only: the DAG passes this through XCom as ``asdict`` and rebuilds it.
    promote: bool
    checks: list[dict[str, Any]]  # {name, passed, detail}, in evaluation order
    candidate_version: str
    champion_version: str | None
    metrics: dict[str, Any]
    run_date: str = ""
    candidate_run_id: str | None = None
    tolerance: float = 0.0
    decided_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @property
    def failed_checks(self) -> list[str]:
        return [c["name"] for c in self.checks if not c["passed"]]


def _check(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def _finite(values: dict[str, Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values.values())


def _alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None  # no registered model, or no alias yet
        raise


def decide_promotion(
    settings: Settings,
    run_date: date | str,
    candidate: dict[str, Any],
    gate_passed: bool,
    tolerance: float = 0.0,
) -> PromotionDecision:
    """Evaluate every check for ``candidate`` (the dict ``train_and_log`` returned); changes nothing."""
    from training.data import load_split
    from training.recommender import load_champion

    run_date = run_date.isoformat() if isinstance(run_date, date) else str(run_date)
    cand_metrics: dict[str, float] = dict(candidate["metrics"])
    base_metrics: dict[str, float] = dict(candidate["baseline_metrics"])
    cand_score = cand_metrics.get(METRIC, float("nan"))
    base_score = base_metrics.get(METRIC, float("nan"))
    checks = [
        _check("quality_gate_passed", gate_passed,
               "quality gate passed" if gate_passed else "quality gate failed or has no verdict"),
    ]
    finite = _finite(cand_metrics) and _finite(base_metrics)
    checks.append(_check(
        "metrics_finite", finite,
        "all candidate and baseline metrics are finite" if finite
        else f"non-finite metric: candidate={cand_metrics}, popularity={base_metrics}",
    ))
    beats = finite and cand_score > base_score
    checks.append(_check(
        "beats_popularity", beats,
        f"candidate {METRIC}={cand_score:.4f} vs popularity {base_score:.4f} on the same test window",
    ))

    champion_score: float | None = None
    champion_metrics: dict[str, float] | None = None
    loaded = load_champion(settings)
    champion_version = None if loaded is None else loaded[1]
    if loaded is None:
        checks.append(_check("not_worse_than_champion", True, "no champion yet"))
    elif champion_version == str(candidate["model_version"]):
        checks.append(_check("not_worse_than_champion", True, "the candidate already is the champion"))
    else:
        champion, _ = loaded
        # The same window the candidate was measured on: rebuilt from the warehouse with the
        # candidate's split parameters, then checked against what the candidate recorded.
        split = load_split(
            settings, as_of=run_date,
            test_days=int(candidate.get("test_days", 1)), val_days=int(candidate.get("val_days", 1)),
        )
        recorded = candidate.get("split", {})
        same_window = (
            recorded.get("test_start") == split.test_start.isoformat()
            and recorded.get("n_test_examples") == len(split.test_examples)
        )
        if not same_window:
            checks.append(_check(
                "not_worse_than_champion", False,
                f"the warehouse's test window ({split.test_start.isoformat()}, "
                f"{len(split.test_examples)} examples) is not the candidate's "
                f"({recorded.get('test_start')}, {recorded.get('n_test_examples')}): cannot compare",
            ))
        else:
            champion_metrics = champion.evaluate(split.test_examples)
            champion_score = champion_metrics[METRIC]
            ok = math.isfinite(champion_score) and finite and cand_score >= champion_score - tolerance
            checks.append(_check(
                "not_worse_than_champion", ok,
                f"candidate {METRIC}={cand_score:.4f} vs champion v{champion_version} re-scored on "
                f"this test window {champion_score:.4f} (tolerance {tolerance})",
            ))

    return PromotionDecision(
        promote=all(c["passed"] for c in checks),
        checks=checks,
        candidate_version=str(candidate["model_version"]),
        champion_version=champion_version,
        metrics={
            "candidate": cand_metrics,
            "popularity": base_metrics,
            "champion_rescored": champion_metrics,
            "metric": METRIC,
        },
        run_date=run_date,
        candidate_run_id=candidate.get("run_id"),
        tolerance=tolerance,
    )


def apply_decision(settings: Settings, decision: PromotionDecision) -> dict[str, Any]:
    """Move the champion alias when (and only when) every check passed; always record why.

    Order matters for a crash half-way: the alias moves first, then the version's tags, then the
    decision file, so a record never claims a promotion that did not happen.
    """
    from training.train import mlflow_client

    client = mlflow_client(settings)
    name = settings.registered_model_name
    # A decision is only valid against the champion it was measured against: re-running this
    # step alone for an old date (cleared in the Airflow UI) after a newer promotion must not
    # move the alias back to an older candidate.
    current = _alias_version(client, name, settings.champion_alias)
    unchanged = current == decision.champion_version or current == decision.candidate_version
    decision = replace(decision, checks=[*decision.checks, _check(
        "champion_unchanged_since_evaluation", unchanged,
        f"champion at evaluation v{decision.champion_version}, now v{current}",
    )])
    promote = decision.promote and all(c["passed"] for c in decision.checks)
    if promote:
        client.set_registered_model_alias(name, settings.champion_alias, decision.candidate_version)
    failed = [c for c in decision.checks if not c["passed"]]
    reasons = "; ".join(f"{c['name']}: {c['detail']}" for c in failed) or "all checks passed"
    client.set_model_version_tag(name, decision.candidate_version, "decision",
                                 "promoted" if promote else "rejected")
    # MLflow caps tag values (5000 chars in the SQL store); the full text is in the JSON record.
    client.set_model_version_tag(name, decision.candidate_version, "reasons", reasons[:4900])
    client.set_model_version_tag(name, decision.candidate_version, "decision_date", decision.run_date)

    champion_after = _alias_version(client, name, settings.champion_alias)
    record = asdict(decision) | {
        "promote": promote,
        "failed_checks": [c["name"] for c in failed],
        "reasons": reasons,
        "registered_model_name": name,
        "champion_version_before": decision.champion_version,
        "champion_version_after": champion_after,
    }
    settings.decisions_dir.mkdir(parents=True, exist_ok=True)
    path = settings.decisions_dir / f"{decision.run_date}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    return record | {"decision_path": str(path)}
