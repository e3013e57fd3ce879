"""TIGER-style generative retrieval: semantic ids, the constrained beam search, and training in
the shared loop through to a Recommender loaded from the checkpoint."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from core.settings import Settings
from training.config import TrainConfig
from training.evaluate import evaluate, left_pad
from training.item_side import ItemAttributes
from training.loo import load_loo_split
from training.models import make_config, split_shape
from training.models.tiger import TIGER
from training.objectives import GenerativeObjective, objective_for
from training.recommender import load_recommender
from training.semantic_ids import SemanticIdConfig, resolve_collisions, semantic_ids
from training.train import train_model

N_ITEMS = 24
# Small codebooks: 4 x 4 x 4 tuples for 24 items, so most code tuples name no item and the beam
# search's constraint is doing real work.
TINY = {"d_model": 32, "n_heads": 2, "n_layers": 1, "n_decoder_layers": 1, "dropout": 0.0, "codebook_size": 4,
        "levels": 3, "collision_codes": N_ITEMS, "attribute_dim": 4, "cooc_dim": 8, "max_items": 8}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: a second intra-op thread only adds synchronisation on a shared, busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def ring_split(folder: Path, n_users: int = 80, seed: int = 0):
    """Users walk a ring ``i -> i % N + 1`` without noise (the next item is a function of the last),
    with a category and a brand per item."""
    rng = random.Random(seed)
    lines = []
    for user in range(1, n_users + 1):
        current, items = rng.randint(1, N_ITEMS), []
        for _ in range(rng.randint(6, 10)):
            items.append(current)
            current = current % N_ITEMS + 1
        lines.append(f"{user} " + " ".join(map(str, items)))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "Ring.txt"
    path.write_text("\n".join(lines) + "\n")
    split = load_loo_split(path, max_len=10)
    mapping = {str(i): [f"category_{i % 3}", f"brand_{i % 5}"] for i in range(1, N_ITEMS + 1)}
    split.item_attributes = ItemAttributes.from_mapping(split.vocab, mapping)
    return split


@pytest.fixture
def split(tmp_path):
    return ring_split(tmp_path / "data")


def _model(split, seed: int = 0, **overrides) -> TIGER:
    torch.manual_seed(seed)
    config = make_config("tiger", **(split_shape(split) | TINY | overrides))
    return TIGER.from_split(config, split).eval()


def test_semantic_ids_are_unique_per_item_and_deterministic(split):
    config = SemanticIdConfig(codebook_size=4, levels=3, attribute_dim=4, cooc_dim=8, seed=3)
    ids = semantic_ids(split.train_sequences, N_ITEMS, split.item_attributes, config)
    again = semantic_ids(split.train_sequences, N_ITEMS, split.item_attributes, config)
    assert ids.codes.shape == (N_ITEMS + 1, 4) and ids.codes.dtype == torch.long
    assert torch.equal(ids.codes, again.codes)
    assert (ids.codes[0] == 0).all()  # padding
    assert len(torch.unique(ids.codes[1:], dim=0)) == N_ITEMS  # every item its own tuple
    assert int(ids.codes[1:, :3].max()) < 4 and int(ids.codes[1:, 3].max()) == ids.max_group - 1
    # Without side information the co-visitation block alone still separates every item.
    plain = semantic_ids(split.train_sequences, N_ITEMS, None, config)
    assert len(torch.unique(plain.codes[1:], dim=0)) == N_ITEMS


def test_collisions_are_numbered_most_frequent_item_first():
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2]])
    resolved, largest = resolve_collisions(codes, counts=np.array([1, 5, 0, 5]))
    # group (1, 2): rows 1 and 3 are tied on count (row order decides), row 0 is the rarest
    assert resolved[:, 2].tolist() == [2, 0, 0, 1] and largest == 3
    assert (resolved[:, :2] == codes).all()


def test_too_many_collisions_for_the_config_is_a_clear_error(split):
    with pytest.raises(ValueError, match="collision_codes"):
        _model(split, codebook_size=2, levels=1, collision_codes=2)


def test_generative_objective_cuts_windows_to_what_the_encoder_reads(split):
    objective = objective_for("tiger")
    assert isinstance(objective, GenerativeObjective)
    config = make_config("tiger", **(split_shape(split) | TINY | {"max_items": 4}))
    model = objective.build(TIGER, config, split)  # the loop's hook: codes from the training data
    assert len(torch.unique(model.codes[1:], dim=0)) == N_ITEMS
    objective.start(model, config, TrainConfig(), 0, 0, torch.device("cpu"))
    inputs = objective.windows(split.train_sequences, split.max_len)  # [W, 4]
    assert inputs.shape[1] == 4
    x, y = objective.batch(torch.arange(8))  # [8, L] x2
    loss = objective.loss(model(x), y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.tok_emb.weight.grad is not None and model.decoder[0].cross_attn.q.weight.grad is not None


def test_encoder_is_causal_at_item_granularity(split):
    model = _model(split)
    x = torch.randint(1, N_ITEMS + 1, (3, 8))  # [B, L]
    changed = x.clone()
    changed[:, 5] = changed[:, 5] % N_ITEMS + 1  # a different item at step 5
    with torch.no_grad():
        memory, memory_changed = model(x), model(changed)  # [B, L * P, D] x2
    P = model.n_codes
    assert memory.shape == (3, 8 * P, TINY["d_model"])
    assert torch.allclose(memory[:, :5 * P], memory_changed[:, :5 * P], atol=1e-6)
    assert not torch.allclose(memory[:, 5 * P:], memory_changed[:, 5 * P:])


def _teacher_forced_log_prob(model: TIGER, x: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``[B, K]`` log-probabilities of ``items [B, K]`` after ``x [B, L]``: the full (uncached)
    decoder on each item's codes, every step renormalised over the codes that continue an item."""
    B, K = items.shape
    memory = model(x)  # [B, L * P, D]
    visible = (x != 0).clone()
    visible[:, -1] = True
    codes = model.codes[items]  # [B, K, P]
    start = torch.full((B, K, 1), model.bos, dtype=torch.long)
    tokens = torch.cat([start, (codes + model.offsets)[..., :-1]], dim=-1)  # [B, K, P]
    hidden = model.decode(memory, visible[:, None, :].expand(B, K, -1), tokens)  # [B, K, P, D]
    trie, total = model.trie(), torch.zeros(B, K)
    for s in range(model.n_codes):
        logits = model.code_logits(hidden[:, :, s], s).masked_fill(~trie.next_codes(codes[..., :s]), float("-inf"))
        total += logits.log_softmax(dim=-1).gather(-1, codes[..., s:s + 1]).squeeze(-1)
    return total


def test_beam_search_scores_only_real_items_with_their_log_probabilities(split):
    model = _model(split, beam_size=20)
    x = left_pad([[3, 4, 5], [17], [9, 1, 22, 8, 2, 11, 6, 7, 12, 13], []], length=10)  # [4, 10]
    with torch.no_grad():
        scores = model.score_last(x)  # [4, N + 1]
        found = model.trie().item_of(model.codes[1:].unsqueeze(0))  # [1, N]
        top = scores.topk(20).indices  # [4, 20]
        expected = _teacher_forced_log_prob(model, x[:, -TINY["max_items"]:], top)  # [4, 20]
    assert torch.equal(found[0], torch.arange(1, N_ITEMS + 1))  # every item's tuple is found
    assert scores.shape == (4, N_ITEMS + 1) and torch.isneginf(scores[:, 0]).all()
    assert (torch.isfinite(scores).sum(dim=1) == 20).all()  # a full beam, every one a real item
    # The cached, incremental beam search scores exactly what the full decoder gives each item.
    assert torch.allclose(scores.gather(1, top), expected, atol=1e-4)


def test_a_beam_as_wide_as_the_catalog_is_a_distribution_over_it(split):
    model = _model(split, beam_size=64)
    with torch.no_grad():
        scores = model.score_last(left_pad([[3, 4, 5], [20, 21]]))  # [2, N + 1]
    assert torch.isfinite(scores[:, 1:]).all()  # every item reached: no tuple of an item is lost
    assert torch.allclose(scores[:, 1:].logsumexp(dim=1), torch.zeros(2), atol=1e-5)


def test_the_evaluator_excludes_seen_items_from_the_beam(split):
    model = _model(split, beam_size=64)  # every item in the beam, so only the rule decides
    inputs, seen_targets = [[3, 4, 5], [10, 11]], [4, 10]
    kept = evaluate(model.score_last, inputs, seen_targets, N_ITEMS, ks=(50,), exclude_seen=False)
    excluded = evaluate(model.score_last, inputs, seen_targets, N_ITEMS, ks=(50,), exclude_seen=True)
    assert kept["hr_at_50"] == 1.0 and excluded["hr_at_50"] == 0.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run of the shared loop on the ring, checkpoint written (trained once for the tests below)."""
    folder = tmp_path_factory.mktemp("tiger")
    split = ring_split(folder / "data")
    settings = Settings(home=folder / "home").replace(seed=7)
    config = TrainConfig(epochs=60, batch_size=16, lr=1e-2, patience=60, progress=False, length_buckets=4)
    result = train_model(settings, split, "tiger", config, model_config=TINY, checkpoint_path=folder / "tiger.pt")
    return split, result


def test_a_tiny_model_learns_the_deterministic_next_item(trained):
    split, result = trained
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0] * 0.3, losses
    assert result.test_metrics["hr_at_10"] == 1.0
    assert result.test_metrics["mrr"] > 0.9, result.test_metrics  # the next item ranked first


def test_the_checkpoint_loads_into_a_recommender_that_scores_the_same(trained):
    split, result = trained
    recommender = load_recommender(result.checkpoint_path)
    assert recommender.model_name == "tiger"
    assert torch.equal(recommender.model.codes, result.model.codes)  # the code table is in the state
    x = left_pad([[3, 4, 5], [17, 18]])  # [2, 3]
    assert torch.allclose(recommender.score(x), result.model.score_last(x))
    metrics = recommender.evaluate(split.test_examples)
    for name in ("hr_at_10", "ndcg_at_10", "mrr"):
        assert metrics[name] == pytest.approx(result.test_metrics[name])
    recommender.smoke_test()
    top = recommender.recommend(["5", "6", "7"], k=3)
    assert top[0][0] == "8" and len(top) == 3


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_default_config_gives_every_amazon_item_its_own_code_tuple(shared_data):
    from training.loo import attributes_file

    for name in ("Beauty", "Sports_and_Outdoors"):
        path = shared_data / "amazon" / f"{name}.txt"
        split = load_loo_split(path, attributes=attributes_file(path))
        model = TIGER.from_split(make_config("tiger", **split_shape(split)), split)  # raises on too many collisions
        assert len(torch.unique(model.codes[1:], dim=0)) == split.vocab.n_items
