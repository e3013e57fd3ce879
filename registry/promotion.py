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
* ``beats_champion``       - the CURRENT champion's checkpoint is re-scored on this night's test
  window (its score from the night it was trained is never reused: that was another window),
  and so is the candidate's registered checkpoint; on the same examples, a paired bootstrap of
  the per-example NDCG@10 differences (``RECSYS_PROMOTION_BOOTSTRAP_SAMPLES`` resamples, a fixed
  seed) must put the lower end of the ``RECSYS_PROMOTION_CONFIDENCE`` interval of the mean
  difference above zero, and the relative gain must be at least ``RECSYS_PROMOTION_MIN_GAIN``.
  A tie (a re-run of the night, a copy of the champion) never passes; passes when there is no
  champion;
* ``coverage_floor``       - candidate ``coverage_at_10 >= RECSYS_PROMOTION_MIN_COVERAGE``
  (default 0.01): a model that shows everyone the same few items is refused;
* ``serves_in_api_path``   - the registered version is downloaded and loaded exactly as the API
  loads it (:func:`registry.versions.load_registered_version`) and answers smoke requests
  through the API's answer path with real users' online features read from Feast
  (:func:`serving.smoke.serves_in_api_path`, passed in by the caller);
  a corrupt artifact fails here;
* ``champion_unchanged_since_evaluation`` and ``artifact_unchanged_since_evaluation`` (the
  checkpoint's SHA-256 is still the one the checks ran on) - added by :func:`apply_decision`.

A promoted version with a large catalog gets its retrieval index before the alias moves
(:mod:`registry.ann_publish`; the decision file says whether and why not).

Every decision (promoted or not) writes a signed decision record on the candidate version
(:mod:`registry.decision_record`: serving loads only versions whose record passed) and a model
card (:mod:`registry.model_card`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Any, Callable

from core.settings import Settings
from registry.champion_comparison import METRIC

COVERAGE_METRIC = "coverage_at_10"
CHAMPION_CHECK = "beats_champion"
# (settings, registered version) -> (passed, detail)
ServingCheck = Callable[[Settings, str], "tuple[bool, str]"]


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
    decided_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    min_coverage: float = 0.0
    candidate_model_name: str = ""
    split: dict[str, Any] = field(default_factory=dict)
    min_gain: float = 0.0
    confidence: float = 0.95
    bootstrap_samples: int = 0
    # The champion comparison's numbers (empty when there was none): see
    # :func:`registry.champion_comparison.paired_test`.
    paired_test: dict[str, Any] = field(default_factory=dict)
    # SHA-256 of the registered checkpoint the checks ran on ("" when it could not be read).
    candidate_artifact_sha256: str = ""

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


def _settings_error(confidence: float, samples: int) -> str | None:
    if not 0.0 < confidence < 1.0:
        return f"RECSYS_PROMOTION_CONFIDENCE must be between 0 and 1 (exclusive), got {confidence}"
    if samples < 1:
        return f"RECSYS_PROMOTION_BOOTSTRAP_SAMPLES must be at least 1, got {samples}"
    return None


def _current_digest(settings: Settings, client, decision: PromotionDecision) -> tuple[str, str]:
    """The candidate checkpoint's SHA-256 now, and a detail comparing it with the evaluated one."""
    from registry.decision_record import artifact_digest
    from registry.versions import download_registered_checkpoint

    evaluated = decision.candidate_artifact_sha256
    try:
        digest = artifact_digest(download_registered_checkpoint(settings, decision.candidate_version, client))
    except Exception as exc:  # noqa: BLE001 - whatever broke, the checks' artifact is not confirmed
        return "", f"the checkpoint cannot be downloaded now: {type(exc).__name__}: {exc}"
    if not evaluated:
        return digest, "the decision carries no checkpoint digest: the checks' artifact is unknown"
    if digest != evaluated:
        return digest, f"the checkpoint changed since evaluation (sha256 {evaluated[:12]} -> {digest[:12]})"
    return digest, f"the checkpoint is the evaluated one (sha256 {digest[:12]})"


def decide_promotion(
    settings: Settings,
    run_date: date | str,
    candidate: dict[str, Any],
    gate_passed: bool,
    *,
    serving_check: ServingCheck,
    min_coverage: float | None = None,
    min_gain: float | None = None,
) -> PromotionDecision:
    """Evaluate every check for ``candidate`` (the dict ``train_and_log`` returned); changes nothing.

    ``serving_check(settings, version) -> (passed, detail)`` loads the registered version the way
    the API does and answers smoke requests (``serving.smoke.serves_in_api_path``): it is passed
    in because serving sits above the registry. ``min_coverage`` and ``min_gain`` default to the
    settings' values.
    """
    from registry.champion_comparison import paired_test
    from registry.decision_record import artifact_digest
    from training.protocol import split_for_record
    from registry.versions import download_registered_checkpoint, load_champion

    min_coverage = settings.promotion_min_coverage if min_coverage is None else float(min_coverage)
    min_gain = settings.promotion_min_gain if min_gain is None else float(min_gain)
    confidence, samples = float(settings.promotion_confidence), int(settings.promotion_bootstrap_samples)
    error = _settings_error(confidence, samples)
    if error:
        raise ValueError(error)
    run_date = run_date.isoformat() if isinstance(run_date, date) else str(run_date)
    version = str(candidate["model_version"])
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

    # The registered checkpoint the remaining checks run on; its digest goes into the record.
    try:
        checkpoint = download_registered_checkpoint(settings, version)
        digest = artifact_digest(checkpoint)
    except Exception:  # noqa: BLE001 - serves_in_api_path reports why it cannot be had
        checkpoint, digest = None, ""

    champion_metrics: dict[str, float] | None = None
    paired: dict[str, Any] = {}
    loaded = load_champion(settings)
    champion_version = None if loaded is None else loaded[1]
    if loaded is None:
        checks.append(_check(CHAMPION_CHECK, True, "no champion yet"))
    elif champion_version == version:
        checks.append(_check(CHAMPION_CHECK, True, "the candidate already is the champion"))
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
                CHAMPION_CHECK, False,
                f"the warehouse's test window ({split.test_start.isoformat()}, "
                f"{len(split.test_examples)} examples) is not the candidate's "
                f"({recorded.get('test_start')}, {recorded.get('n_test_examples')}): cannot compare",
            ))
        else:
            # Under the candidate's seen-item rule: both are measured on the same ranking task.
            champion_metrics = champion.evaluate(split.test_examples, exclude_seen=split.exclude_seen)
            passed, detail, paired = paired_test(
                champion, champion_version, checkpoint, split.test_examples, split.exclude_seen,
                min_gain, confidence, samples,
            )
            checks.append(_check(CHAMPION_CHECK, passed and finite, detail))

    checks.append(_check(
        "coverage_floor", finite and coverage >= min_coverage,
        f"candidate {COVERAGE_METRIC}={coverage:.4f}, floor {min_coverage}",
    ))
    served, detail = serving_check(settings, version)
    checks.append(_check("serves_in_api_path", served, detail))

    return PromotionDecision(
        promote=all(c["passed"] for c in checks),
        checks=checks,
        candidate_version=version,
        champion_version=champion_version,
        metrics={
            "candidate": cand_metrics,
            "popularity": base_metrics,
            "champion_rescored": champion_metrics,
            "metric": METRIC,
        },
        run_date=run_date,
        candidate_run_id=candidate.get("run_id"),
        min_coverage=min_coverage,
        candidate_model_name=model_name,
        split=dict(candidate.get("split") or {}),
        min_gain=min_gain,
        confidence=confidence,
        bootstrap_samples=samples,
        paired_test=paired,
        candidate_artifact_sha256=digest,
    )


def apply_decision(settings: Settings, decision: PromotionDecision) -> dict[str, Any]:
    """Move the champion alias when (and only when) every check passed; always record why.

    Order matters for a crash half-way. The signed decision record is written before the alias
    moves, so serving never finds the alias on a version without a passing record; when the move
    fails, the record is rewritten as not passed, so it never claims a promotion that did not
    happen (a crash between the two leaves a version that passed every check but is not champion:
    the decision file is not written yet, and a retry decides again). The version's tags and the
    decision file follow the alias.
    """
    from registry.decision_record import build_record, write_record
    from training.tracking import mlflow_client

    client = mlflow_client(settings)
    name = settings.registered_model_name
    version = decision.candidate_version
    # A decision is only valid against the champion it was measured against: re-running this
    # step alone for an old date (cleared in the Airflow UI) after a newer promotion must not
    # move the alias back to an older candidate.
    current = _alias_version(client, name, settings.champion_alias)
    unchanged = current == decision.champion_version or current == version
    digest, digest_detail = _current_digest(settings, client, decision)
    decision = replace(decision, checks=[*decision.checks, _check(
        "champion_unchanged_since_evaluation", unchanged,
        f"champion at evaluation v{decision.champion_version}, now v{current}",
    ), _check("artifact_unchanged_since_evaluation",
              bool(digest) and digest == decision.candidate_artifact_sha256, digest_detail)])
    promote = decision.promote and all(c["passed"] for c in decision.checks)

    def sign(passed: bool, checks: list[dict[str, Any]]) -> dict[str, Any]:
        return write_record(settings, client, build_record(
            settings, version, action="promotion", passed=passed, checks=checks,
            artifact_sha256=digest or decision.candidate_artifact_sha256,
            run_id=decision.candidate_run_id, run_date=decision.run_date,
        ))

    retrieval_index = None
    if promote:
        # Before the alias moves: serving must not find a large-catalog champion without its
        # index. A failed build leaves the version serving by exact scoring, never unpromoted.
        from registry.ann_publish import try_publish_index

        retrieval_index = try_publish_index(settings, client, version, digest or decision.candidate_artifact_sha256)
        signed = sign(True, decision.checks)
        try:
            client.set_registered_model_alias(name, settings.champion_alias, version)
        except Exception as exc:
            if _alias_version(client, name, settings.champion_alias) != version:
                sign(False, [*decision.checks, _check("alias_moved", False, str(exc))])
                raise
        client.set_model_version_tag(name, version, "promoted_at", datetime.now(timezone.utc).isoformat())
    elif current == version:
        # Re-deciding the serving champion's own version: a rejection now (e.g. the night's gate
        # failed on a re-run) does not un-decide the promotion that made it champion.
        signed = None
    else:
        signed = sign(False, decision.checks)
    failed = [c for c in decision.checks if not c["passed"]]
    reasons = "; ".join(f"{c['name']}: {c['detail']}" for c in failed) or "all checks passed"
    client.set_model_version_tag(name, version, "decision", "promoted" if promote else "rejected")
    # MLflow caps tag values (5000 chars in the SQL store); the full text is in the JSON record.
    client.set_model_version_tag(name, version, "reasons", reasons[:4900])
    client.set_model_version_tag(name, version, "decision_date", decision.run_date)

    champion_after = _alias_version(client, name, settings.champion_alias)
    record = asdict(decision) | {
        "promote": promote,
        "failed_checks": [c["name"] for c in failed],
        "reasons": reasons,
        "registered_model_name": name,
        "champion_version_before": decision.champion_version,
        "champion_version_after": champion_after,
        "decision_record": signed or "kept: the version is the serving champion, promoted earlier",
        "retrieval_index": retrieval_index,
    }
    settings.decisions_dir.mkdir(parents=True, exist_ok=True)
    path = settings.decisions_dir / f"{decision.run_date}.json"
    path.write_text(json.dumps(record, indent=2, default=str))
    try:
        from registry.model_card import write_model_card

        card_path = write_model_card(settings, record, client=client)
    except Exception:  # noqa: BLE001 - documentation must not undo a decision already applied
        import logging

        logging.getLogger(__name__).exception("model card for v%s not written", decision.candidate_version)
        card_path = None
    return record | {"decision_path": str(path), "model_card_path": card_path}
