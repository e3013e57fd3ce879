"""SASRec, the popularity baseline, the shared loop and checkpoint round-trips."""

from __future__ import annotations

from dataclasses import asdict

import torch

from training.data import load_split
from training.evaluate import left_pad
from training.losses import full_softmax_loss
from training.models.sasrec import SASRec, SASRecConfig
from training.objectives import training_windows
from training.recommender import load_checkpoint, load_recommender
from training.train import train_model


def _tiny_model(seed: int = 0) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(SASRecConfig(n_items=30, max_len=12, d_model=16, n_heads=2, n_layers=2, dropout=0.2)).eval()


def test_sasrec_is_causal():
    model = _tiny_model()
    x = torch.randint(1, 31, (3, 10))  # [B, L]
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] % 30) + 1  # a different item at step 6
    with torch.no_grad():
        h, h_changed = model(x), model(changed)  # [B, L, D] x2
    assert h.shape == (3, 10, 16)
    assert torch.equal(h[:, :6], h_changed[:, :6])  # earlier steps cannot see step 6
    assert not torch.allclose(h[:, 6:], h_changed[:, 6:])


def test_left_padding_does_not_change_the_prediction():
    model = _tiny_model()
    seq = [[4, 9, 2]]
    with torch.no_grad():
        short = model.score_last(left_pad(seq))  # [1, N + 1], no padding
        padded = model.score_last(left_pad(seq, length=12))  # [1, N + 1], 9 padding steps
    assert short.shape == (1, 31)
    assert torch.isneginf(short[0, 0])  # padding is never a recommendation
    assert torch.allclose(short[:, 1:], padded[:, 1:], atol=1e-5)
    assert torch.isfinite(model.score_last(torch.zeros(2, 5, dtype=torch.long))[:, 1:]).all()


def test_full_softmax_loss_ignores_padding():
    torch.manual_seed(0)
    hidden = torch.randn(2, 4, 8)  # [B, L, D]
    emb = torch.randn(11, 8)  # [N + 1, D]
    targets = torch.tensor([[0, 0, 3, 4], [0, 5, 6, 7]])  # [B, L]
    loss = full_softmax_loss(hidden, targets, emb)
    logits = hidden[targets != 0] @ emb[1:].T  # [5, N], padding column dropped
    expected = torch.nn.functional.cross_entropy(logits, targets[targets != 0] - 1)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_training_windows_cover_every_transition_once():
    x, y = training_windows([[1, 2, 3, 4, 5, 6, 7], [8, 9], [10]], max_len=3)  # [W, 3] x2
    pairs = sorted((int(a), int(b)) for a, b in zip(x.flatten(), y.flatten()) if b != 0)
    assert pairs == [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (8, 9)]
    assert x.shape[1] == 3 and (x[:, -1] != 0).all()  # left-padded: the last step is an item


def test_loss_falls_and_sasrec_beats_popularity(ring_warehouse, tiny_sasrec):
    split = load_split(ring_warehouse)
    result = train_model(ring_warehouse, split, "sasrec", epochs=6, lr=3e-3, patience=10,
                         model_config=tiny_sasrec)
    popularity = train_model(ring_warehouse, split, "popularity")
    losses = [row["train_loss"] for row in result.history]
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.9, losses
    assert result.val_metrics["ndcg_at_10"] == max(r["val_ndcg_at_10"] for r in result.history)
    assert result.best_epoch == 1 + [r["val_ndcg_at_10"] for r in result.history].index(
        result.val_metrics["ndcg_at_10"])
    assert result.test_metrics["ndcg_at_10"] > popularity.test_metrics["ndcg_at_10"] + 0.2


def test_training_is_deterministic_for_a_seed(ring_warehouse, tiny_sasrec):
    split = load_split(ring_warehouse)
    a = train_model(ring_warehouse, split, "sasrec", epochs=2, model_config=tiny_sasrec)
    b = train_model(ring_warehouse, split, "sasrec", epochs=2, model_config=tiny_sasrec)
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert a.test_metrics == b.test_metrics


def test_checkpoint_round_trip_gives_identical_scores(ring_warehouse, tiny_sasrec):
    split = load_split(ring_warehouse)
    result = train_model(ring_warehouse, split, "sasrec", epochs=3, lr=3e-3, model_config=tiny_sasrec)

    checkpoint = load_checkpoint(result.checkpoint_path)
    assert checkpoint["model_name"] == "sasrec"
    assert checkpoint["config"] == asdict(SASRecConfig(n_items=split.vocab.n_items, max_len=20, **tiny_sasrec))
    assert checkpoint["item_ids"] == split.vocab.item_ids
    assert len(checkpoint["popular_item_ids"]) == min(100, split.vocab.n_items)
    assert checkpoint["metrics"]["test"] == result.test_metrics
    assert checkpoint["split"]["test_start"] == split.test_start.isoformat()

    rec = load_recommender(result.checkpoint_path)
    assert rec.model_name == "sasrec" and rec.popular_item_ids == checkpoint["popular_item_ids"]
    inputs = left_pad([[1, 2, 3], [5], [7, 8, 9, 10, 11]])  # [3, 5]
    with torch.no_grad():
        expected = result.model.cpu().score_last(inputs)  # [3, N + 1]
    assert torch.equal(rec.score(inputs), expected)
    # The recommender fed with raw examples reproduces the loop's test metrics exactly.
    assert rec.evaluate(split.test_examples) == result.test_metrics

    history = ["item_005", "item_006", "item_006", "never_seen_item", "item_007"]
    recs = rec.recommend(history, k=5, exclude={"item_009"})
    assert len(recs) == 5
    ids = [i for i, _ in recs]
    assert not set(ids) & {"item_005", "item_006", "item_007", "item_009"}
    scores = [s for _, s in recs]
    assert scores == sorted(scores, reverse=True)
    # Same scores as the model on the encoded history (duplicate collapsed, unknown id dropped).
    encoded = [split.vocab.index(i) for i in ("item_005", "item_006", "item_007")]
    with torch.no_grad():
        direct = result.model.score_last(torch.tensor([encoded]))[0]  # [N + 1]
    for item, score in recs:
        assert score == float(direct[split.vocab.index(item)])
    # A model trained on the ring should continue it.
    assert ids[0] == "item_008"
    # Nothing known in the history: the training-period most popular items.
    assert [i for i, _ in rec.recommend(["nobody_knows"], k=3)] == rec.popular_item_ids[:3]


def test_popularity_checkpoint_recommends_by_training_counts(ring_warehouse):
    split = load_split(ring_warehouse)
    result = train_model(ring_warehouse, split, "popularity")
    assert result.best_epoch == 0 and result.history == []
    rec = load_recommender(result.checkpoint_path)
    assert rec.model_name == "popularity"
    top = rec.recommend(["item_000"], k=10)
    expected = [i for i in rec.popular_item_ids if i != "item_000"][:10]
    assert [i for i, _ in top] == expected
    counts = dict(zip(rec.popular_item_ids, load_checkpoint(result.checkpoint_path)["popular_item_counts"]))
    for item, score in top:
        assert int(score) == counts[item]  # score = training count (+ a tie-break fraction < 1)
