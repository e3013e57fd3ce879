"""Training you can watch and bound: one log line per epoch, a time budget that cuts an epoch
within a step, and torch's CPU threads sized to the usable cores."""

from __future__ import annotations

import logging
import os
import time
from types import SimpleNamespace

import pytest
import torch

import training.devices as devices_mod
import training.objectives as objectives_mod
import training.train as train_mod
from training.config import TrainConfig
from training.loo import load_loo_split
from training.train import train_model

TINY = {"d_model": 16, "n_heads": 1, "n_layers": 1, "dropout": 0.1}


@pytest.fixture
def loo_split(tmp_path, amazon_file):
    return load_loo_split(amazon_file(tmp_path / "Tiny.txt"), max_len=10)


@pytest.fixture
def counted_steps(monkeypatch):
    """Counts optimisation steps (one loss per step) and advances a fake clock by 1 s per step.

    The clock is the training loop's ``time.monotonic``: the budget logic is tested without
    depending on how fast this machine is.
    """
    state = SimpleNamespace(steps=0, now=1000.0)
    real_loss = objectives_mod.full_softmax_loss

    def loss(*args, **kwargs):
        state.steps += 1
        state.now += 1.0
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(objectives_mod, "full_softmax_loss", loss)
    monkeypatch.setattr(train_mod, "time", SimpleNamespace(monotonic=lambda: state.now, time=time.time))
    return state


def _cfg(**kw) -> TrainConfig:
    # batch_size 2: an epoch of the tiny split is dozens of steps.
    return TrainConfig(**({"epochs": 3, "batch_size": 2, "lr": 3e-3, "patience": 10, "progress": False} | kw))


def test_time_budget_cuts_the_epoch_within_a_step(settings, loo_split, tmp_path, counted_steps):
    result = train_model(settings, loo_split, "sasrec", _cfg(max_train_seconds=0.0), model_config=TINY,
                         checkpoint_path=tmp_path / "a.pt")
    (row,) = result.history
    assert row["steps_per_epoch"] > 10  # a long epoch ...
    assert counted_steps.steps == row["steps"] == 1  # ... cut after its first step
    # The partial epoch's model is validated and kept: the work done is not lost.
    assert result.stopped_by == "time" and result.epochs_run == 1 and result.best_epoch == 1
    assert "ndcg_at_10" in result.val_metrics and result.checkpoint_path.exists()


def test_time_budget_spent_mid_way_through_a_later_epoch(settings, loo_split, tmp_path, counted_steps):
    full = train_model(settings, loo_split, "sasrec", _cfg(epochs=1), model_config=TINY,
                       checkpoint_path=tmp_path / "full.pt")
    per_epoch = counted_steps.steps
    counted_steps.steps = 0
    # One whole epoch fits in the budget, then three more steps (the fake clock: 1 s per step).
    result = train_model(settings, loo_split, "sasrec", _cfg(epochs=50, max_train_seconds=per_epoch + 3),
                         model_config=TINY, checkpoint_path=tmp_path / "a.pt")
    assert full.history[0]["steps"] == per_epoch > 10
    assert counted_steps.steps == per_epoch + 3
    assert [r["steps"] for r in result.history] == [per_epoch, 3]
    assert result.stopped_by == "time" and result.epochs_run == 2


@pytest.mark.parametrize("progress", [False, True])
def test_every_epoch_logs_one_line(settings, loo_split, tmp_path, caplog, progress):
    caplog.set_level(logging.INFO, logger="training.train")
    train_model(settings, loo_split, "sasrec", _cfg(epochs=3, batch_size=16, eval_every=2, progress=progress),
                model_config=TINY, checkpoint_path=tmp_path / "a.pt")
    lines = [r for r in caplog.records if r.name == "training.train" and " epoch " in r.getMessage()]
    assert [r.epoch for r in lines] == [1, 2, 3]
    for record in lines:
        message = record.getMessage()
        for field in ("train_loss=", "val_ndcg_at_10=", "epoch_seconds=", "sequences_per_s="):
            assert field in message, message
        assert record.levelno == logging.INFO and record.train_loss > 0 and record.sequences_per_s > 0
    # Validated every 2nd epoch and at the last one; epoch 1's line says it was not validated.
    assert "val_ndcg_at_10=-" in lines[0].getMessage()
    assert [r.val_ndcg_at_10 is None for r in lines] == [True, False, False]


@pytest.fixture
def torch_threads(monkeypatch):
    """Restores torch's thread count, and starts from "training never set one"."""
    before = torch.get_num_threads()
    monkeypatch.setattr(devices_mod, "_threads_set_by_training", None)
    yield
    torch.set_num_threads(before)


def test_cpu_training_uses_one_thread_per_usable_core(settings, loo_split, tmp_path, monkeypatch, torch_threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(devices_mod._IMPORTED_TORCH_THREADS)  # as if nobody had chosen a count
    pinned = {0, 1, 2} if torch.get_num_threads() != 3 else {0, 1}
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: pinned, raising=False)
    train_model(settings, loo_split, "sasrec", _cfg(epochs=1, batch_size=64), model_config=TINY,
                checkpoint_path=tmp_path / "a.pt")
    assert torch.get_num_threads() == len(pinned)


def test_an_explicit_thread_count_is_left_alone(settings, loo_split, tmp_path, monkeypatch, torch_threads):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4}, raising=False)
    # OMP_NUM_THREADS set: the environment decided.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(devices_mod._IMPORTED_TORCH_THREADS)
    train_model(settings, loo_split, "sasrec", _cfg(epochs=1, batch_size=64), model_config=TINY,
                checkpoint_path=tmp_path / "a.pt")
    assert torch.get_num_threads() == devices_mod._IMPORTED_TORCH_THREADS
    # torch.set_num_threads called by the caller: kept.
    monkeypatch.delenv("OMP_NUM_THREADS")
    chosen = 2 if devices_mod._IMPORTED_TORCH_THREADS != 2 else 3
    torch.set_num_threads(chosen)
    train_model(settings, loo_split, "sasrec", _cfg(epochs=1, batch_size=64), model_config=TINY,
                checkpoint_path=tmp_path / "b.pt")
    assert torch.get_num_threads() == chosen
