"""Champion / challenger through a real MLflow registry (SQLite under tmp_path)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from tests.registry_fixtures import promote_for_test
from training.data import load_split
from training.evaluate import left_pad
from registry.promotion import PromotionDecision, apply_decision, decide_promotion
from serving.smoke import serves_in_api_path
from registry.versions import load_champion, load_recommender
from training.cli import main as train_cli
from training.tracking import mlflow_client, train_and_log


def _good(settings, run_date, tiny_sasrec):
    return train_and_log(settings, run_date, "sasrec", epochs=8, lr=3e-3, model_config=tiny_sasrec)


def _weak(settings, run_date, tiny_sasrec):
    # One epoch at a tiny learning rate: barely moved from its random initialisation.
    return train_and_log(settings, run_date, "sasrec", epochs=1, lr=1e-6, model_config=tiny_sasrec)


def _checks(decision: PromotionDecision) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in decision.checks}


def _champion_version(settings) -> str | None:
    loaded = load_champion(settings)
    return None if loaded is None else loaded[1]


@pytest.fixture
def ring_two_nights(settings, synth):
    synth.write(settings.warehouse_path, synth.ring_rows())
    return settings


def test_first_candidate_is_logged_registered_and_promoted(ring_two_nights, synth, tiny_sasrec):
    settings = ring_two_nights
    assert settings.mlflow_uri.startswith("sqlite:///") and str(settings.home) in settings.mlflow_uri
    assert load_champion(settings) is None

    candidate = _good(settings, synth.DAY1, tiny_sasrec)
    assert json.loads(json.dumps(candidate)) == candidate  # an XCom-safe summary
    assert candidate["model_version"] == "1"
    assert candidate["metrics"]["ndcg_at_10"] > candidate["baseline_metrics"]["ndcg_at_10"]

    client = mlflow_client(settings)
    run = client.get_run(candidate["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.metrics["popularity_ndcg_at_10"] == candidate["baseline_metrics"]["ndcg_at_10"]
    assert run.data.params["model.d_model"] == "32"
    assert len(client.get_metric_history(candidate["run_id"], "train_loss")) == candidate["epochs_run"]
    curve = client.get_metric_history(candidate["run_id"], "epoch_val_ndcg_at_10")
    assert len(curve) == candidate["epochs_run"]
    # The run's headline validation metric is the selected (best) epoch's, not the last one's.
    assert run.data.metrics["val_ndcg_at_10"] == max(m.value for m in curve)
    assert run.data.metrics["val_ndcg_at_10"] == candidate["val_metrics"]["ndcg_at_10"]
    assert [a.path for a in client.list_artifacts(candidate["run_id"], "checkpoint")] == [
        "checkpoint/checkpoint.pt"]
    assert run.info.artifact_uri.startswith(settings.mlflow_artifact_root.as_uri())
    version = client.get_model_version(settings.registered_model_name, "1")
    assert version.run_id == candidate["run_id"] and version.source.endswith("/checkpoint")

    decision = decide_promotion(settings, synth.DAY1, candidate, gate_passed=True, serving_check=serves_in_api_path)
    assert decision.promote, decision.checks
    assert _checks(decision) == {"quality_gate_passed": True, "metrics_finite": True,
                                 "non_empty_outputs": True, "enough_evaluation_examples": True,
                                 "beats_popularity": True,
                                 "beats_champion": True, "coverage_floor": True,
                                 "serves_in_api_path": True}
    assert decision.champion_version is None
    # The DAG passes the decision through XCom as a dict and rebuilds it.
    record = apply_decision(settings, PromotionDecision(**json.loads(json.dumps(asdict(decision)))))
    assert record["champion_version_after"] == "1"

    champion, version_id = load_champion(settings)
    assert version_id == "1" and champion.model_name == "sasrec"
    # The registry's copy scores exactly like the local checkpoint.
    local = load_recommender(candidate["checkpoint_path"])
    x = left_pad([[1, 2, 3], [4]])  # [2, 3]
    assert torch.equal(champion.score(x), local.score(x))
    saved = json.loads((settings.decisions_dir / "2026-11-10.json").read_text())
    assert saved["promote"] is True and saved["candidate_version"] == "1"
    version = client.get_model_version(settings.registered_model_name, "1")
    assert version.tags["decision"] == "promoted" and version.tags["reasons"] == "all checks passed"
    # The model card: local file, run artifact and the version's description agree.
    card = Path(record["model_card_path"]).read_text()
    assert card.startswith("# Model card: sequential_recommender v1")
    for section in ("## Data window", "test_start: " + candidate["split"]["test_start"],
                    "| ndcg_at_10 |", "| serves_in_api_path | yes |", "## Data quality",
                    "no quality-gate verdict recorded", "code revision"):
        assert section in card, section
    assert version.description == card
    assert "model_card.md" in [a.path for a in client.list_artifacts(candidate["run_id"])]


def test_worse_candidate_is_refused_and_the_champion_stays(ring_two_nights, synth, tiny_sasrec):
    settings = ring_two_nights
    champion = _good(settings, synth.DAY1, tiny_sasrec)
    apply_decision(settings, decide_promotion(settings, synth.DAY1, champion, gate_passed=True, serving_check=serves_in_api_path))
    assert _champion_version(settings) == champion["model_version"]

    # The next night: new data, a new test window, a much worse candidate.
    candidate = _weak(settings, synth.DAY2, tiny_sasrec)
    assert candidate["split"]["test_start"] != champion["split"]["test_start"]
    decision = decide_promotion(settings, synth.DAY2, candidate, gate_passed=True, serving_check=serves_in_api_path)
    assert not decision.promote
    assert _checks(decision)["beats_champion"] is False
    assert decision.champion_version == champion["model_version"]
    assert decision.paired_test["n_paired_examples"] == candidate["n_test_examples"]
    assert decision.paired_test["mean_difference"] < 0 and not decision.paired_test["significant"]

    # The champion was re-scored on the NEW test window, not given its old score.
    new_split = load_split(settings, as_of=synth.DAY2)
    rescored = load_recommender(champion["checkpoint_path"]).evaluate(new_split.test_examples)
    assert decision.metrics["champion_rescored"] == rescored
    assert rescored["n_examples"] == candidate["n_test_examples"] != champion["n_test_examples"]

    record = apply_decision(settings, decision)
    assert record["promote"] is False and "beats_champion" in record["failed_checks"]
    assert _champion_version(settings) == champion["model_version"]
    tags = mlflow_client(settings).get_model_version(
        settings.registered_model_name, candidate["model_version"]).tags
    assert tags["decision"] == "rejected" and "beats_champion" in tags["reasons"]
    saved = json.loads((settings.decisions_dir / "2026-11-11.json").read_text())
    assert saved["champion_version_after"] == champion["model_version"]


def test_better_candidate_is_promoted(ring_two_nights, synth, tiny_sasrec):
    settings = ring_two_nights
    old = _weak(settings, synth.DAY1, tiny_sasrec)
    # An old champion placed directly (as if promoted on an earlier night).
    promote_for_test(settings, old["model_version"])

    candidate = _good(settings, synth.DAY2, tiny_sasrec)
    decision = decide_promotion(settings, synth.DAY2, candidate, gate_passed=True, serving_check=serves_in_api_path)
    assert decision.promote, decision.checks
    assert decision.champion_version == old["model_version"]
    champion_score = decision.metrics["champion_rescored"]["ndcg_at_10"]
    assert candidate["metrics"]["ndcg_at_10"] > champion_score
    paired = decision.paired_test
    assert paired["champion_mean"] == pytest.approx(champion_score)
    assert paired["interval"][0] > 0 and paired["relative_gain"] >= 0.0 and paired["confidence"] == 0.95
    apply_decision(settings, decision)
    assert _champion_version(settings) == candidate["model_version"]


def test_a_stale_decision_cannot_move_the_champion_back(ring_two_nights, synth, tiny_sasrec):
    # Night 1 decides to promote v1 but its promote step is only re-run after night 2 promoted
    # v2 (a task cleared in the Airflow UI): applying the old decision must not roll back.
    settings = ring_two_nights
    first = _good(settings, synth.DAY1, tiny_sasrec)
    stale = decide_promotion(settings, synth.DAY1, first, gate_passed=True, serving_check=serves_in_api_path)
    assert stale.promote
    second = _good(settings, synth.DAY2, tiny_sasrec)
    apply_decision(settings, decide_promotion(settings, synth.DAY2, second, gate_passed=True, serving_check=serves_in_api_path))
    assert _champion_version(settings) == second["model_version"]

    record = apply_decision(settings, stale)
    assert record["promote"] is False
    assert "champion_unchanged_since_evaluation" in record["failed_checks"]
    assert _champion_version(settings) == second["model_version"]


def test_gate_failure_or_nan_metrics_refuse(ring_two_nights, synth, tiny_sasrec):
    settings = ring_two_nights
    candidate = _good(settings, synth.DAY1, tiny_sasrec)

    gate_failed = decide_promotion(settings, synth.DAY1, candidate, gate_passed=False, serving_check=serves_in_api_path)
    assert not gate_failed.promote
    assert [c["name"] for c in gate_failed.checks if not c["passed"]] == ["quality_gate_passed"]
    record = apply_decision(settings, gate_failed)
    assert record["champion_version_after"] is None
    assert load_champion(settings) is None  # nothing was promoted

    broken = candidate | {"metrics": candidate["metrics"] | {"ndcg_at_10": math.nan}}
    nan_decision = decide_promotion(settings, synth.DAY1, broken, gate_passed=True, serving_check=serves_in_api_path)
    assert not nan_decision.promote
    failed = {c["name"] for c in nan_decision.checks if not c["passed"]}
    assert {"metrics_finite", "beats_popularity"} <= failed
    apply_decision(settings, nan_decision)
    assert load_champion(settings) is None


def test_cli_trains_and_registers(ring_two_nights, synth, monkeypatch, capsys):
    settings = ring_two_nights
    monkeypatch.setenv("RECSYS_HOME", str(settings.home))
    monkeypatch.setenv("RECSYS_MAX_SEQUENCE_LENGTH", "20")
    train_cli(["--date", synth.DAY1.isoformat(), "--model", "popularity", "--epochs", "1"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["model_name"] == "popularity" and summary["model_version"] == "1"
    assert summary["metrics"] == summary["baseline_metrics"]


def corrupt_registered_artifact(settings, version: str) -> None:
    """Overwrite a registered version's checkpoint in the MLflow artifact store with junk."""
    from urllib.parse import urlparse

    from training.tracking import CHECKPOINT_FILE

    source = mlflow_client(settings).get_model_version_download_uri(settings.registered_model_name, version)
    path = Path(urlparse(source).path) / CHECKPOINT_FILE
    assert path.is_file(), path
    path.write_bytes(b"this is not a torch checkpoint")


def test_corrupt_artifact_is_refused(ring_two_nights, synth, tiny_sasrec):
    settings = ring_two_nights
    candidate = _good(settings, synth.DAY1, tiny_sasrec)
    corrupt_registered_artifact(settings, candidate["model_version"])
    decision = decide_promotion(settings, synth.DAY1, candidate, gate_passed=True, serving_check=serves_in_api_path)
    assert not decision.promote
    assert decision.failed_checks == ["serves_in_api_path"]
    assert "cannot be loaded" in {c["name"]: c for c in decision.checks}["serves_in_api_path"]["detail"]
    record = apply_decision(settings, decision)
    assert record["champion_version_after"] is None and load_champion(settings) is None


def test_popularity_can_be_promoted_when_there_is_no_better_champion(ring_two_nights, synth):
    settings = ring_two_nights
    candidate = train_and_log(settings, synth.DAY1, "popularity", epochs=1)
    decision = decide_promotion(settings, synth.DAY1, candidate, gate_passed=True, serving_check=serves_in_api_path)
    beats = {c["name"]: c for c in decision.checks}["beats_popularity"]
    assert beats["passed"] and "not applicable" in beats["detail"]
    assert decision.promote, decision.checks
    apply_decision(settings, decision)
    assert _champion_version(settings) == candidate["model_version"]


def test_min_gain_and_coverage_floor_come_from_settings(ring_two_nights, synth, tiny_sasrec):
    settings = ring_two_nights
    weak = _weak(settings, synth.DAY1, tiny_sasrec)
    promote_for_test(settings, weak["model_version"])
    good = _good(settings, synth.DAY1, tiny_sasrec)  # same night, same window, much better
    assert _checks(decide_promotion(settings, synth.DAY1, good, gate_passed=True, serving_check=serves_in_api_path))["beats_champion"] is True
    demanding = settings.replace(promotion_min_gain=100.0, promotion_min_coverage=1.01)
    decision = decide_promotion(demanding, synth.DAY1, good, gate_passed=True, serving_check=serves_in_api_path)
    checks = {c["name"]: c for c in decision.checks}
    assert checks["beats_champion"]["passed"] is False  # significant, but not +10000%
    assert "below the minimum gain" in checks["beats_champion"]["detail"]
    assert decision.paired_test["significant"] and not decision.paired_test["gain_ok"]
    assert checks["coverage_floor"]["passed"] is False and decision.min_gain == 100.0


def test_stage_refuses_a_model_trained_on_data_that_failed_the_gate(ring_two_nights, synth, tiny_sasrec):
    from pipeline.stages import evaluate_candidate, promote_candidate

    settings = ring_two_nights
    candidate = _good(settings, synth.DAY1, tiny_sasrec)
    settings.quality_dir.mkdir(parents=True, exist_ok=True)
    (settings.quality_dir / f"{synth.DAY1}.json").write_text(json.dumps({
        "run_date": synth.DAY1.isoformat(), "passed": False,
        "failed_critical": ["events: expect_column_values_to_not_be_null(user_id) 12% null"],
        "failed_warnings": [], "suites": {"events": False}, "data_docs_index": "/nowhere/index.html",
    }))
    decision = evaluate_candidate(settings, synth.DAY1, candidate)
    assert decision["promote"] is False
    record = promote_candidate(settings, synth.DAY1, decision)
    assert record["failed_checks"] == ["quality_gate_passed"] and load_champion(settings) is None
    card = Path(record["model_card_path"]).read_text()
    assert "gate: **FAILED**" in card and "12% null" in card
