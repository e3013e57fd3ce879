"""The night's training budget (RECSYS_TRAIN_MAX_MINUTES, the DAG's train_minutes Param) stops
each model's optimisation when it runs out; the best validated epoch is still registered."""

from __future__ import annotations

import pytest

from pipeline import stages


@pytest.fixture
def ring_night(settings, synth):
    synth.write(settings.warehouse_path, synth.ring_rows())
    return settings


def test_the_settings_budget_stops_training_by_time(ring_night, synth):
    capped = ring_night.replace(train_max_minutes=1e-4)  # spent after the first step
    summary = stages.train_candidate(capped, synth.DAY1, "sasrec", 50)
    assert summary["stopped_by"] == "time" and summary["epochs_run"] == 1, summary
    assert summary["best_epoch"] == 1 and summary["model_version"]


def test_the_stage_argument_wins_over_the_settings(ring_night, synth):
    capped = ring_night.replace(train_max_minutes=1e-4)
    summary = stages.train_candidate(capped, synth.DAY1, "sasrec", 2, max_minutes=0)  # 0: no limit
    assert summary["stopped_by"] != "time" and summary["epochs_run"] == 2, summary


def test_a_negative_budget_is_refused(ring_night, synth):
    with pytest.raises(ValueError, match="max_train_seconds must be >= 0"):
        stages.train_candidate(ring_night, synth.DAY1, "sasrec", 2, max_minutes=-1)
