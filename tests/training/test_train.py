"""The shared loop: TrainConfig, determinism, validation-only selection, resume, objectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import training.evaluate as evaluate_mod
from training.cli import main as train_cli
from training.config import TrainConfig
from training.loo import load_loo_split
from training.objectives import (
    FitObjective, GenerativeObjective, MaskedObjective, NextItemObjective, batches, mask_batch, objective_for,
)
from training.train import train_model

TINY = {"d_model": 16, "n_heads": 1, "n_layers": 1, "dropout": 0.1}


@pytest.fixture
def loo_split(tmp_path, amazon_file):
    return load_loo_split(amazon_file(tmp_path / "Tiny.txt"), max_len=10)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**({"epochs": 2, "batch_size": 16, "lr": 3e-3, "patience": 10, "progress": False} | kw))


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_config_overrides_and_checkpoint(settings, loo_split, tmp_path):
    with pytest.raises(TypeError):
        TrainConfig().with_overrides(not_a_field=1)
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    result = train_model(settings, loo_split, "sasrec", _cfg(), model_config=TINY, epochs=1,
                         checkpoint_path=tmp_path / "c.pt")
    assert result.train_config.epochs == 1 and result.epochs_run == 1
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ckpt["train"]["epochs"] == 1 and ckpt["train"]["batch_size"] == 16
    assert ckpt["train"]["seed"] == settings.seed and ckpt["train"]["device"] == "cpu"
    assert ckpt["config"]["d_model"] == 16 and ckpt["split"]["protocol"] == "leave_one_out"
    assert TrainConfig.from_dict(ckpt["train"]) == result.train_config.with_overrides(seed=settings.seed, device="cpu")
    assert {"hr_at_20", "ndcg_at_50", "mrr_at_10", "mrr", "coverage_at_10"} <= set(result.test_metrics)
    assert 0.0 <= result.test_extra["popularity_bias_at_10"] <= 1.0


def test_same_seed_same_weights(settings, loo_split, tmp_path):
    a = train_model(settings, loo_split, "sasrec", _cfg(), model_config=TINY, checkpoint_path=tmp_path / "a.pt")
    b = train_model(settings, loo_split, "sasrec", _cfg(), model_config=TINY, checkpoint_path=tmp_path / "b.pt")
    c = train_model(settings, loo_split, "sasrec", _cfg(seed=settings.seed + 1), model_config=TINY,
                    checkpoint_path=tmp_path / "c.pt")
    assert _same_weights(a.model.state_dict(), b.model.state_dict())
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert not _same_weights(a.model.state_dict(), c.model.state_dict())


def test_selection_uses_validation_only_and_test_is_scored_once(settings, loo_split, tmp_path, monkeypatch):
    calls: list[str] = []
    real = evaluate_mod.evaluate_examples

    def spy(scorer, examples, *args, **kwargs):
        calls.append("test" if examples is loo_split.test_examples else
                     "val" if examples is loo_split.val_examples else "other")
        return real(scorer, examples, *args, **kwargs)

    monkeypatch.setattr(evaluate_mod, "evaluate_examples", spy)
    result = train_model(settings, loo_split, "sasrec", _cfg(epochs=4), model_config=TINY,
                         checkpoint_path=tmp_path / "a.pt")
    assert calls == ["val"] * 4 + ["test"]
    vals = [r["val_ndcg_at_10"] for r in result.history]
    assert result.best_epoch == 1 + vals.index(max(vals))
    assert result.val_metrics["ndcg_at_10"] == max(vals)
    # Replacing the test targets changes nothing about training or selection.
    monkeypatch.setattr(evaluate_mod, "evaluate_examples", real)
    shuffled = type(loo_split)(**{**loo_split.__dict__,
                                  "test_examples": list(reversed(loo_split.test_examples))})
    other = train_model(settings, shuffled, "sasrec", _cfg(epochs=4), model_config=TINY,
                        checkpoint_path=tmp_path / "b.pt")
    assert other.best_epoch == result.best_epoch
    assert _same_weights(other.model.state_dict(), result.model.state_dict())


def test_resume_equals_an_uninterrupted_run(settings, loo_split, tmp_path):
    straight = train_model(settings, loo_split, "sasrec", _cfg(epochs=4), model_config=TINY,
                           checkpoint_path=tmp_path / "straight.pt")
    train_model(settings, loo_split, "sasrec", _cfg(epochs=2), model_config=TINY,
                checkpoint_path=tmp_path / "part.pt")
    resumed = train_model(settings, loo_split, "sasrec", _cfg(epochs=4), model_config=TINY,
                          checkpoint_path=tmp_path / "resumed.pt", resume_from=tmp_path / "part.pt")
    assert resumed.epochs_run == 4 and len(resumed.history) == 4
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    s = torch.load(tmp_path / "straight.pt", weights_only=True)
    r = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert _same_weights(s["resume"]["model"], r["resume"]["model"])  # last epoch's weights
    assert _same_weights(s["state_dict"], r["state_dict"])  # the selected checkpoint
    assert resumed.best_epoch == straight.best_epoch and resumed.test_metrics == straight.test_metrics


def test_time_cap_and_eval_every(settings, loo_split, tmp_path):
    capped = train_model(settings, loo_split, "sasrec", _cfg(epochs=50, max_train_seconds=0.0),
                         model_config=TINY, checkpoint_path=tmp_path / "a.pt")
    assert capped.epochs_run == 1 and capped.stopped_by == "time" and capped.best_epoch == 1
    sparse = train_model(settings, loo_split, "sasrec", _cfg(epochs=5, eval_every=2),
                         model_config=TINY, checkpoint_path=tmp_path / "b.pt")
    assert [r["epoch"] for r in sparse.history] == [2, 4, 5]  # every 2nd and the last


def test_sampled_loss_and_non_neural_models(settings, loo_split, tmp_path):
    sampled = train_model(settings, loo_split, "sasrec", _cfg(loss="sampled", n_negatives=5),
                          model_config=TINY, checkpoint_path=tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["train"]["loss_used"] == "sampled"
    assert all(r["train_loss"] == r["train_loss"] for r in sampled.history)  # finite, not NaN
    pop = train_model(settings, loo_split, "popularity", checkpoint_path=tmp_path / "p.pt")
    assert pop.best_epoch == 0 and pop.history == [] and pop.stopped_by == ""
    assert pop.test_extra["popularity_bias_at_10"] > 0.5


def test_masked_objective_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 7]])
    inputs, targets = mask_batch(x, mask_token=99, mask_prob=0.3, mask_last_prob=0.0, generator=g)
    masked = inputs == 99
    assert masked.any(dim=1).all()  # at least one masked item per row
    assert not (masked & (x == 0)).any()  # padding is never masked
    assert torch.equal(targets[masked], x[masked]) and (targets[~masked] == 0).all()
    last_only, t = mask_batch(x, 99, 0.3, mask_last_prob=1.0, generator=g)
    assert torch.equal((last_only == 99).nonzero()[:, 1], torch.tensor([4, 4, 4]))
    assert torch.equal(t[:, -1], x[:, -1])


def test_each_model_is_handed_its_objective():
    from training.models import MODELS

    kinds = {name: type(objective_for(name)) for name in MODELS}
    assert kinds == {"sasrec": NextItemObjective, "bert4rec": MaskedObjective, "gru4rec": NextItemObjective,
                     "hstu": NextItemObjective, "popularity": FitObjective, "covisitation": FitObjective,
                     "sknn": FitObjective, "repeat": FitObjective, "hybrid": NextItemObjective,
                     "tiger": GenerativeObjective}
    assert objective_for("sasrec") is not objective_for("sasrec")  # one per run: it holds the run's windows


def test_length_buckets_visit_every_window_once():
    lengths = torch.tensor([5, 1, 3, 2, 4, 1, 5, 2, 3, 4])
    order = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    out = batches(order, lengths, batch_size=3, buckets=2, generator=torch.Generator().manual_seed(2))
    assert sorted(torch.cat(out).tolist()) == list(range(10))
    plain = batches(order, lengths, batch_size=3, buckets=0, generator=torch.Generator())
    assert torch.equal(torch.cat(plain), order)


def test_bert4rec_trains_when_registered(settings, loo_split, tmp_path):
    from training.models import MODELS

    if "bert4rec" not in MODELS:
        pytest.skip("bert4rec is not registered")
    result = train_model(settings, loo_split, "bert4rec", _cfg(), model_config=TINY,
                         checkpoint_path=tmp_path / "b.pt")
    assert result.epochs_run == 2 and result.test_metrics["n_examples"] == len(loo_split.test_examples)


def test_cli_trains_a_leave_one_out_file(tmp_path, monkeypatch, capsys, amazon_file):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    data = amazon_file(tmp_path / "Tiny.txt")
    train_cli(["--loo", str(data), "--model", "sasrec", "--epochs", "1", "--max-len", "10",
               "--out", str(tmp_path / "out"), "--no-progress", "--model-config", json.dumps(TINY)])
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_run"] == 1 and Path(summary["checkpoint_path"]).exists()
    assert summary["split"]["dataset"] == "Tiny"
