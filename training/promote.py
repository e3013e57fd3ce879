"""Champion / challenger: every promotion rule is a named check, and the record says which failed.

The candidate is promoted (alias ``champion`` moved to its version) only when all checks pass:

* ``quality_gate_passed``  - the night's data passed the Great Expectations gate;
* ``metrics_finite``       - no NaN / inf in the candidate's or the baseline's metrics;
* ``non_empty_outputs``    - the test window has examples and the candidate recommends something
  (catalog, ``n_examples`` and ``coverage_at_10`` above 0);
* ``enough_evaluation_examples`` - at least ``RECSYS_MIN_EVAL_EXAMPLES`` (default 200) test
  examples: a decision on a handful of next items is noise, so the night says "not enough
  evidence to promote" instead of promoting or rejecting on it;
* ``beats_popularity``     - candidate NDCG@10 > most-popular NDCG@10 on the same test window;
  not applicable (passes, and says so) when the candidate IS the popularity model;
* ``within_tolerance_of_champion`` - the CURRENT champion's checkpoint is re-scored on this
  night's test window (its score from the night it was trained is never reused: that was another
  window) and the candidate must reach ``champion NDCG@10 * (1 - tolerance)``
  (``RECSYS_PROMOTION_TOLERANCE``, default 0.0: at least as good); passes when there is none;
* ``coverage_floor``       - candidate ``coverage_at_10 >= RECSYS_PROMOTION_MIN_COVERAGE``
  (default 0.01): a model that shows everyone the same few items is refused;
* ``serves_in_api_path``   - the registered version is downloaded and loaded exactly as the API
  loads it (:func:`training.recommender.load_registered_version`) and answers smoke requests
  through :func:`serving.recommender.answer` with real users' online features read from Feast;
  a corrupt artifact fails here;
* ``champion_unchanged_since_evaluation`` - added by :func:`apply_decision`.

Every decision (promoted or not) writes a model card (:mod:`training.model_card`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any

from pipeline.settings import Settings

METRIC = "ndcg_at_10"
COVERAGE_METRIC = "coverage_at_10"
SMOKE_USERS = 5
SMOKE_K = 10


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
    min_coverage: float = 0.0
    candidate_model_name: str = ""
    split: dict[str, Any] = field(default_factory=dict)

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
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None  # no registered model, or no alias yet
        raise


def serves_in_api_path(settings: Settings, version: str) -> tuple[bool, str]:
    """Load ``version`` as serving does and answer smoke requests for a few real users.

    Users come from the last feature export and their features from the Feast online store, as
    in the API. Without a feature export (a registry used without Feast) only the load and the
    model's own smoke request are checked, and the detail says so.
    """
    from serving.precompute import active_user_ids
    from serving.recommender import answer
    from training.recommender import ModelLoadError, load_registered_version

    try:
        model = load_registered_version(settings, version)  # includes a smoke request
    except ModelLoadError as exc:
        return False, str(exc)
    try:
        users = active_user_ids(settings)[:SMOKE_USERS]
    except FileNotFoundError:
        return True, (f"v{version} loaded through the serving path and answered a smoke request; "
                      "no feature export, so no online-store read was tried")
    try:
        from features.store import feature_store, read_user_features

        features = read_user_features(feature_store(settings), users + ["__promotion_smoke_unknown__"])
    except Exception as exc:  # noqa: BLE001
        return False, f"online feature read failed: {type(exc).__name__}: {exc}"
    answered = 0
    try:
        for user_id in users:
            rec = answer(model, version, user_id, SMOKE_K, features.get(user_id))
            if not rec.items:
                return False, f"empty answer for user {user_id!r}"
            answered += not rec.fallback
        unknown = answer(model, version, "__promotion_smoke_unknown__", SMOKE_K, None)
        if not unknown.items:
            return False, "empty popularity fallback"
    except Exception as exc:  # noqa: BLE001
        return False, f"model failed on a smoke request: {type(exc).__name__}: {exc}"
    if users and not answered:
        return False, f"none of {len(users)} real users got a model answer (all fell back)"
    return True, (f"v{version} loaded through the serving path; {answered}/{len(users)} real users "
                  "answered from their online features, the unknown user from popularity")


def decide_promotion(
    settings: Settings,
    run_date: date | str,
    candidate: dict[str, Any],
    gate_passed: bool,
    tolerance: float | None = None,
    min_coverage: float | None = None,
) -> PromotionDecision:
    """Evaluate every check for ``candidate`` (the dict ``train_and_log`` returned); changes nothing.

    ``tolerance`` and ``min_coverage`` default to the settings' values.
    """
    from training.protocol import split_for_record
    from training.recommender import load_champion

    tolerance = settings.promotion_tolerance if tolerance is None else float(tolerance)
    min_coverage = settings.promotion_min_coverage if min_coverage is None else float(min_coverage)
    run_date = run_date.isoformat() if isinstance(run_date, date) else str(run_date)
    cand_metrics: dict[str, float] = dict(candidate["metrics"])
    base_metrics: dict[str, float] = dict(candidate["baseline_metrics"])
    cand_score = cand_metrics.get(METRIC, float("nan"))
    base_score = base_metrics.get(METRIC, float("nan"))
    model_name = str(candidate.get("model_name", ""))
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
    n_test = int(candidate.get("n_test_examples", cand_metrics.get("n_examples", 0)) or 0)
    n_items = int(candidate.get("n_items", 1) or 0)
    coverage = cand_metrics.get(COVERAGE_METRIC, float("nan"))
    non_empty = n_test > 0 and n_items > 0 and finite and coverage > 0
    checks.append(_check(
        "non_empty_outputs", non_empty,
        f"{n_test} test examples, {n_items} catalog items, candidate {COVERAGE_METRIC}={coverage:.4f}",
    ))
    floor = settings.min_eval_examples
    recorded = dict(candidate.get("split") or {})
    protocol = recorded.get("protocol", "user_temporal")
    checks.append(_check(
        "enough_evaluation_examples", n_test >= floor,
        f"{n_test} test examples under the {protocol} protocol (floor {floor})" if n_test >= floor
        else f"not enough evidence to promote: {n_test} test examples under the {protocol} protocol, "
             f"fewer than the floor of {floor} (RECSYS_MIN_EVAL_EXAMPLES)",
    ))
    if model_name == "popularity":
        checks.append(_check(
            "beats_popularity", finite,
            "not applicable: the candidate is the popularity model itself "
            f"({METRIC}={cand_score:.4f}); compared with the champion below",
        ))
    else:
        checks.append(_check(
            "beats_popularity", finite and cand_score > base_score,
            f"candidate {METRIC}={cand_score:.4f} vs popularity {base_score:.4f} on the same test window",
        ))

    champion_score: float | None = None
    champion_metrics: dict[str, float] | None = None
    loaded = load_champion(settings)
    champion_version = None if loaded is None else loaded[1]
    name = "within_tolerance_of_champion"
    if loaded is None:
        checks.append(_check(name, True, "no champion yet"))
    elif champion_version == str(candidate["model_version"]):
        checks.append(_check(name, True, "the candidate already is the champion"))
    else:
        champion, _ = loaded
        # The same window the candidate was measured on: rebuilt from the warehouse with the
        # candidate's split parameters, then checked against what the candidate recorded.
        split = split_for_record(settings, run_date, recorded)
        same_window = (
            recorded.get("test_start") == split.test_start.isoformat()
            and recorded.get("n_test_examples") == len(split.test_examples)
        )
        if not same_window:
            checks.append(_check(
                name, False,
                f"the warehouse's test window ({split.test_start.isoformat()}, "
                f"{len(split.test_examples)} examples) is not the candidate's "
                f"({recorded.get('test_start')}, {recorded.get('n_test_examples')}): cannot compare",
            ))
        else:
            # Under the candidate's seen-item rule: both are measured on the same ranking task.
            champion_metrics = champion.evaluate(split.test_examples, exclude_seen=split.exclude_seen)
            champion_score = champion_metrics[METRIC]
            threshold = champion_score * (1.0 - tolerance)
            ok = math.isfinite(champion_score) and finite and cand_score >= threshold
            checks.append(_check(
                name, ok,
                f"candidate {METRIC}={cand_score:.4f} vs champion v{champion_version} re-scored on "
                f"this test window {champion_score:.4f}; needs >= {threshold:.4f} "
                f"(tolerance {tolerance})",
            ))

    checks.append(_check(
        "coverage_floor", finite and coverage >= min_coverage,
        f"candidate {COVERAGE_METRIC}={coverage:.4f}, floor {min_coverage}",
    ))
    served, detail = serves_in_api_path(settings, str(candidate["model_version"]))
    checks.append(_check("serves_in_api_path", served, detail))

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
        min_coverage=min_coverage,
        candidate_model_name=model_name,
        split=dict(candidate.get("split") or {}),
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
        client.set_model_version_tag(name, decision.candidate_version, "promoted_at",
                                     datetime.now(timezone.utc).isoformat())
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
    try:
        from training.model_card import write_model_card

        card_path = write_model_card(settings, record, client=client)
    except Exception:  # noqa: BLE001 - documentation must not undo a decision already applied
        import logging

        logging.getLogger(__name__).exception("model card for v%s not written", decision.candidate_version)
        card_path = None
    return record | {"decision_path": str(path), "model_card_path": card_path}
