"""Promotion needs a real win over the champion (issue 19): a candidate equal to the champion
(a re-run of the same night) or better only by noise is never promoted, and the decision says
why with the paired test's numbers. Real MLflow registry (SQLite under tmp_path), tiny models."""

from __future__ import annotations

import json

import pytest

from tests.reliability.conftest import TINY_SASREC
from tests.training.conftest import DAY1


def run_night(settings, day):
    """Train, decide and apply, as the nightly DAG's three tasks do."""
    from registry.promotion import apply_decision, decide_promotion
    from serving.smoke import serves_in_api_path
    from training.tracking import train_and_log

    candidate = train_and_log(settings, day, "sasrec", epochs=2, lr=3e-3, model_config=TINY_SASREC)
    return candidate, apply_decision(settings, decide_promotion(settings, day, candidate, gate_passed=True, serving_check=serves_in_api_path))


def test_rerunning_a_night_changes_nothing(ring):
    from registry.versions import champion_version

    first_candidate, first = run_night(ring, DAY1)
    assert first["promote"] is True and champion_version(ring) == first_candidate["model_version"]

    again_candidate, again = run_night(ring, DAY1)
    # The same data, seed and code: the same model, registered as a new version.
    assert again_candidate["model_version"] != first_candidate["model_version"]
    assert again_candidate["metrics"] == first_candidate["metrics"]
    assert again["promote"] is False and again["failed_checks"] == ["beats_champion"]
    assert champion_version(ring) == first_candidate["model_version"]
    assert again["champion_version_after"] == first_candidate["model_version"]

    # The reason, with the numbers, is in the decision file and the check's detail.
    saved = json.loads((ring.decisions_dir / f"{DAY1}.json").read_text())
    paired = saved["paired_test"]
    assert paired["n_paired_examples"] == again_candidate["n_test_examples"] > 0
    assert paired["examples_improved"] == paired["examples_worse"] == 0
    assert paired["mean_difference"] == 0.0 and paired["interval"] == [0.0, 0.0]
    assert paired["relative_gain"] == 0.0 and paired["confidence"] == ring.promotion_confidence
    assert paired["significant"] is False
    detail = {c["name"]: c for c in saved["checks"]}["beats_champion"]["detail"]
    assert "a tie" in detail and f"same {paired['n_paired_examples']} test examples" in detail

    # Deciding it again gives the same answer: the bootstrap's seed is fixed.
    from registry.promotion import apply_decision, decide_promotion
    from serving.smoke import serves_in_api_path

    third = apply_decision(ring, decide_promotion(ring, DAY1, again_candidate, gate_passed=True, serving_check=serves_in_api_path))
    assert third["promote"] is False and third["paired_test"] == again["paired_test"]
    assert champion_version(ring) == first_candidate["model_version"]


def test_a_gain_from_a_few_lucky_examples_is_not_a_win():
    from training.evaluate import paired_bootstrap

    # Better on one example out of three hundred, equal on the rest: a positive mean that a
    # resample without that example does not reproduce.
    lucky = [1.0] + [0.0] * 299
    mean, lower, upper = paired_bootstrap(lucky, samples=2000, confidence=0.95, seed=0)
    assert mean > 0 and lower <= 0 < upper
    assert paired_bootstrap(lucky, samples=2000, confidence=0.95, seed=0) == (mean, lower, upper)
    # Better on most examples is a win; an exact tie never is.
    _, lower, _ = paired_bootstrap([0.1] * 250 + [0.0] * 50, samples=2000, confidence=0.95, seed=0)
    assert lower > 0
    assert paired_bootstrap([0.0] * 300, samples=2000, confidence=0.95, seed=0) == (0.0, 0.0, 0.0)


def test_per_example_ndcg_is_the_evaluators_ranking():
    import torch

    from training.evaluate import evaluate, ndcg_per_example

    generator = torch.Generator().manual_seed(0)
    table = torch.randn(9, 9, generator=generator)  # [N + 1, N + 1]: last input item -> scores

    def scorer(inputs):  # [B, L] -> [B, N + 1]
        return table[inputs[:, -1]]

    inputs = [[1, 2], [3], [4, 5, 6], [7], [2, 8]]
    targets = [3, 4, 0, 7, 5]  # an unknown target (0) and a seen one (7) are misses
    for exclude_seen in (True, False):
        per_example = ndcg_per_example(scorer, inputs, targets, 8, k=3, batch_size=2, exclude_seen=exclude_seen)
        metrics = evaluate(scorer, inputs, targets, 8, k=3, ks=(3,), exclude_seen=exclude_seen)
        assert per_example.shape == (5,) and per_example[2] == 0.0
        assert per_example.mean().item() == pytest.approx(metrics["ndcg_at_3"])
    assert ndcg_per_example(scorer, inputs, targets, 8, exclude_seen=True)[3] == 0.0
