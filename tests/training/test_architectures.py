"""The model zoo's shared interface: every architecture is checked against the contract the
training loop, evaluator and checkpoint loader rely on, plus each baseline on a toy whose answer
is known."""

from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from training.evaluate import left_pad
from training.losses import full_softmax_loss, sampled_softmax_loss
from training.models import MODELS, build_model, make_config
from training.models.covisitation import CoVisitation, CoVisitationConfig
from training.models.gru4rec import GRU4Rec, GRU4RecConfig
from training.models.hstu import HSTU, HSTUConfig
from training.models.sknn import SKNN, SKNNConfig

N_ITEMS, MAX_LEN, D = 30, 12, 16
NEURAL = ["sasrec", "bert4rec", "gru4rec", "hstu"]
NEXT_ITEM = ["sasrec", "gru4rec", "hstu"]
TINY = {"d_model": D}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These tensors are tiny: a second intra-op thread only adds synchronisation, which on a
    # shared, busy machine turns seconds into minutes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = make_config(name, n_items=N_ITEMS, max_len=MAX_LEN, **(TINY | overrides))
    return build_model(name, config).eval()


def test_registry_names_and_objectives():
    assert set(MODELS) == {"sasrec", "bert4rec", "gru4rec", "hstu", "popularity", "covisitation", "sknn", "repeat",
                           "hybrid", "tiger"}
    objectives = {name: cls.objective for name, (_, cls) in MODELS.items()}
    assert objectives == {
        "sasrec": "next_item", "gru4rec": "next_item", "hstu": "next_item", "bert4rec": "masked",
        "popularity": "none", "covisitation": "none", "sknn": "none", "repeat": "none",
        "hybrid": "next_item", "tiger": "generative",
    }
    for name in MODELS:
        config = make_config(name, n_items=7)
        assert config.max_len == 50 and config.n_items == 7  # the loop passes these to every model


@pytest.mark.parametrize("name", NEURAL)
def test_shapes_and_padding_column(name):
    model = _model(name)
    x = torch.randint(1, N_ITEMS + 1, (3, 10))  # [B, L]
    x[0, :4] = 0  # a left-padded row
    with torch.no_grad():
        hidden = model(x)  # [B, L, D]
        scores = model.score_last(x)  # [B, N + 1]
        empty = model.score_last(torch.zeros(2, 5, dtype=torch.long))  # users with no known history
    assert hidden.shape == (3, 10, D)
    assert model.output_embeddings.shape == (N_ITEMS + 1, D)
    assert scores.shape == (3, N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert torch.isfinite(empty[:, 1:]).all()
    # a full-length input must work too (BERT4Rec drops its oldest step to fit the [MASK])
    assert model.score_last(torch.randint(1, N_ITEMS + 1, (2, MAX_LEN))).shape == (2, N_ITEMS + 1)


@pytest.mark.parametrize("name", NEXT_ITEM)
def test_next_item_models_are_causal(name):
    model = _model(name)
    x = torch.randint(1, N_ITEMS + 1, (3, 10))  # [B, L]
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] % N_ITEMS) + 1  # a different item at step 6
    with torch.no_grad():
        h, h_changed = model(x), model(changed)  # [B, L, D] x2
    assert torch.allclose(h[:, :6], h_changed[:, :6], atol=1e-6)  # earlier steps cannot see step 6
    assert not torch.allclose(h[:, 6:], h_changed[:, 6:])


def test_bert4rec_is_bidirectional_and_never_recommends_the_mask():
    model = _model("bert4rec")
    x = torch.randint(1, N_ITEMS + 1, (3, 10))  # [B, L]
    changed = x.clone()
    changed[:, 6] = (changed[:, 6] % N_ITEMS) + 1
    with torch.no_grad():
        h, h_changed = model(x), model(changed)  # [B, L, D] x2
    assert not torch.allclose(h[:, :6], h_changed[:, :6])  # Cloze needs the future context
    assert model.mask_token == N_ITEMS + 1
    assert model.output_embeddings.shape[0] == N_ITEMS + 1  # the [MASK] row is not a class


@pytest.mark.parametrize("name", NEURAL)
def test_left_padding_does_not_change_score_last(name):
    model = _model(name)
    seqs = [[4, 9, 2, 17], [5]]
    with torch.no_grad():
        short = model.score_last(left_pad(seqs))  # [2, N + 1], padded to 4
        padded = model.score_last(left_pad(seqs, length=MAX_LEN - 1))  # [2, N + 1], 7+ padding steps
    assert torch.allclose(short[:, 1:], padded[:, 1:], atol=1e-5)


def test_gru4rec_state_ignores_padding_even_with_nonzero_biases():
    # Zeroed padding embeddings would not be enough: GRU biases move the state on empty steps.
    torch.manual_seed(0)
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=D, n_layers=2)).eval()
    with torch.no_grad():
        for name, p in model.gru.named_parameters():
            if name.startswith("bias"):
                p.uniform_(0.5, 1.0)
        a = model.score_last(left_pad([[3, 8, 1]]))  # [1, N + 1]
        b = model.score_last(left_pad([[3, 8, 1]], length=MAX_LEN))  # [1, N + 1]
    assert torch.allclose(a[:, 1:], b[:, 1:], atol=1e-5)


def test_gru4rec_untied_output_has_its_own_matrix():
    model = GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=D, tied=False))
    assert model.output_embeddings.data_ptr() != model.item_emb.weight.data_ptr()
    assert model.output_embeddings.shape == (N_ITEMS + 1, D)


def test_hstu_time_bias_is_used_only_with_timestamps():
    torch.manual_seed(0)
    model = HSTU(HSTUConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=D)).eval()
    x = torch.randint(1, N_ITEMS + 1, (2, 6))  # [B, L]
    t1 = torch.tensor([[0, 10, 100, 1_000, 10_000, 100_000]] * 2)  # [B, L], seconds
    t2 = torch.tensor([[0, 1, 2, 3, 4, 5]] * 2)  # [B, L], the same order, much shorter gaps
    with torch.no_grad():
        for layer in model.layers:
            layer.rab.time_w.normal_(0.0, 1.0)  # make the time bias matter
        plain, with_t1, with_t2 = model(x), model(x, t1), model(x, t2)  # [B, L, D] x3
    assert not torch.allclose(plain, with_t1)
    assert not torch.allclose(with_t1, with_t2)
    # shifting every timestamp by a constant changes no gap
    assert torch.allclose(model(x, t1 + 12345), with_t1, atol=1e-6)


def test_hstu_valid_key_normalisation_is_padding_invariant():
    model = _model("hstu", attn_norm="valid")
    with torch.no_grad():
        a = model.score_last(left_pad([[4, 9, 2]]))  # [1, N + 1]
        b = model.score_last(left_pad([[4, 9, 2]], length=MAX_LEN))  # [1, N + 1]
    assert torch.allclose(a[:, 1:], b[:, 1:], atol=1e-5)


def _cycle_batch(batch: int = 32, length: int = 10, generator: torch.Generator | None = None):
    """Deterministic walks 1 -> 2 -> ... -> N -> 1: the next item is a function of the current one."""
    starts = torch.randint(0, N_ITEMS, (batch, 1), generator=generator)  # [B, 1]
    walk = (starts + torch.arange(length + 1)) % N_ITEMS + 1  # [B, L + 1], items 1..N
    return walk[:, :-1], walk[:, 1:]  # inputs [B, L], next items [B, L]


def _mask_for_cloze(x: torch.Tensor, mask_token: int, mask_prob: float, generator: torch.Generator):
    """Cloze batch as the loop builds it: a share of real steps masked, targets only there."""
    masked = (torch.rand(x.shape, generator=generator) < mask_prob) & (x != 0)  # [B, L]
    masked[:, -1] = True  # at least one target per row (and the position score_last reads)
    inputs = x.masked_fill(masked, mask_token)  # [B, L]
    targets = x.masked_fill(~masked, 0)  # [B, L]
    return inputs, targets


@pytest.mark.parametrize("name", NEURAL)
def test_loss_falls_on_a_deterministic_cycle(name):
    model = _model(name, dropout=0.0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(50):
        x, y = _cycle_batch(generator=gen)  # [B, L] x2
        if model.objective == "masked":
            x, y = _mask_for_cloze(x, model.mask_token, model.config.mask_prob, gen)  # [B, L] x2
        loss = full_softmax_loss(model(x), y, model.output_embeddings)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    uniform = torch.log(torch.tensor(float(N_ITEMS))).item()  # the loss of knowing nothing
    assert losses[0] > 0.8 * uniform
    # Cloze gets targets at ~30% of the steps (and must learn to look sideways through attention),
    # so in the same 50 steps it gets less far than the next-item models.
    target = 0.85 if model.objective == "masked" else 0.5
    assert sum(losses[-5:]) / 5 < target * uniform, losses[::10]


@pytest.mark.parametrize("name", NEURAL)
def test_config_round_trip_reproduces_scores(name):
    model = _model(name, seed=3)
    # what a checkpoint stores and recommender.py rebuilds from
    config = make_config(name, **asdict(model.config))
    restored = build_model(name, config)
    restored.load_state_dict(model.state_dict())
    restored.eval()
    x = left_pad([[1, 2, 3], [7, 7, 30, 4, 12]])  # [2, 5]
    with torch.no_grad():
        assert torch.equal(model.score_last(x), restored.score_last(x))


def test_sampled_softmax_matches_a_hand_computed_value():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # [1, 2, 2]
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # [N + 1 = 4, 2]
    targets = torch.tensor([[0, 2]])  # [1, 2]; only the second step is scored
    # n_negatives >= N: every item is a negative, the target itself masked as an accidental hit
    loss = sampled_softmax_loss(hidden, targets, emb, n_negatives=10)
    # step 2: h = (0, 2); logits items 1, 2, 3 = 0, 2, 2; target 2
    expected = -(2.0 - torch.logsumexp(torch.tensor([0.0, 2.0, 2.0]), 0))
    assert torch.allclose(loss, expected, atol=1e-6)


def test_sampled_softmax_with_the_whole_catalog_is_the_full_softmax():
    torch.manual_seed(0)
    hidden = torch.randn(3, 5, 8)  # [B, L, D]
    emb = torch.randn(N_ITEMS + 1, 8)  # [N + 1, D]
    targets = torch.randint(0, N_ITEMS + 1, (3, 5))  # [B, L], with some padding
    targets[0, 0] = 4
    full = full_softmax_loss(hidden, targets, emb)
    assert torch.allclose(sampled_softmax_loss(hidden, targets, emb, n_negatives=N_ITEMS), full, atol=1e-5)


def test_sampled_softmax_masks_accidental_hits():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 8)  # [B, L, D]
    emb = torch.randn(N_ITEMS + 1, 8)  # [N + 1, D]
    negatives = torch.randperm(N_ITEMS, generator=torch.Generator().manual_seed(5))[:6] + 1  # [K]
    # every target is one of the negatives: each position has exactly one accidental hit
    targets = negatives[torch.tensor([[0, 1, 2], [3, 4, 5]])]  # [B, L]
    loss = sampled_softmax_loss(hidden, targets, emb, n_negatives=6, generator=torch.Generator().manual_seed(5))
    h, y = hidden.reshape(-1, 8), targets.reshape(-1)  # [M, D], [M]
    expected = torch.stack([
        torch.logsumexp(h[m] @ emb[negatives[negatives != y[m]]].T, 0).logaddexp(h[m] @ emb[y[m]])
        - h[m] @ emb[y[m]]
        for m in range(len(y))
    ]).mean()  # the positive against the 5 other negatives, never against itself
    assert torch.allclose(loss, expected, atol=1e-5)
    # one item only: its sole negative is the target itself, so (masked) the loss is exactly 0
    one = sampled_softmax_loss(hidden[..., :2], torch.ones(2, 3, dtype=torch.long), emb[:2, :2], n_negatives=1)
    assert one.item() == 0.0


def test_sampled_softmax_is_reproducible_and_trains_the_full_objective():
    torch.manual_seed(0)
    hidden0 = torch.randn(4, 6, 8)  # [B, L, D]
    targets = torch.randint(1, N_ITEMS + 1, (4, 6))  # [B, L]
    emb0 = torch.randn(N_ITEMS + 1, 8)  # [N + 1, D]
    a = sampled_softmax_loss(hidden0, targets, emb0, n_negatives=8, generator=torch.Generator().manual_seed(1))
    b = sampled_softmax_loss(hidden0, targets, emb0, n_negatives=8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and torch.isfinite(a)
    # fewer terms in the normaliser: never above the full softmax loss
    assert a <= full_softmax_loss(hidden0, targets, emb0) + 1e-6

    h, emb = hidden0.clone().requires_grad_(True), emb0.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([h, emb], lr=5e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss = sampled_softmax_loss(h, targets, emb, n_negatives=8, generator=gen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    # what matters is the full-catalog objective, which the samples must lower as well
    assert full_softmax_loss(h, targets, emb) < 0.5 * full_softmax_loss(hidden0, targets, emb0)


# ---------------------------------------------------------------- non-neural baselines

TOY = [
    [1, 2, 3, 4],
    [1, 2, 3, 5],
    [6, 2, 3, 4],
    [7, 8, 9],
    [7, 8, 9],
    [9, 10],
]


def test_covisitation_recommends_the_usual_follower():
    model = CoVisitation.fit(CoVisitationConfig(n_items=12, max_len=MAX_LEN, window=2, n_neighbours=3), TOY)
    scores = model.score_last(left_pad([[1, 2]]))  # [1, N + 1]
    assert torch.isneginf(scores[0, 0])
    assert int(scores[0, 1:].argmax()) + 1 == 3  # 2 is followed by 3 every time
    # after 3: item 4 twice, item 5 once
    after_three = model.score_last(left_pad([[3]]))[0]  # [N + 1]
    assert after_three[4] > after_three[5] > after_three[11]  # 11 never occurs: prior only
    # n_neighbours followers per item, strongest first: 2->3 (3 x 1/1), 2->4 (2 x 1/2), 2->5 (1/2)
    assert model.neighbour_ids.shape == (13, 3)
    assert model.neighbour_ids[2].tolist() == [3, 4, 5]


def test_covisitation_without_signal_ranks_by_popularity_deterministically():
    model = CoVisitation.fit(CoVisitationConfig(n_items=12, max_len=MAX_LEN), TOY)
    scores = model.score_last(left_pad([[11]]))[0]  # [N + 1], item 11 was never seen
    ranking = scores[1:].argsort(descending=True) + 1  # [N]
    # 2, 3 and 9 appear 3 times each; no other item does
    assert ranking[:3].tolist() == [2, 3, 9]
    assert len(set(scores[1:].tolist())) == 12  # a strict ranking


def test_sknn_recommends_what_similar_sequences_contain():
    model = SKNN.fit(SKNNConfig(n_items=12, max_len=MAX_LEN, k=3), TOY)
    assert model.config.n_sequences == len(TOY)
    scores = model.score_last(left_pad([[7, 8]]))[0]  # [N + 1]
    assert torch.isneginf(scores[0])
    # the only neighbours sharing anything are the two [7, 8, 9]: 9 is the new item they offer
    top = [int(i) for i in scores.argsort(descending=True)[:3]]
    assert set(top) == {7, 8, 9}
    assert scores[9] > scores[10]
    # recency: the newest input item decides which neighbours win
    newest_two = model.score_last(left_pad([[9, 2]]))[0]  # [N + 1]
    oldest_two = model.score_last(left_pad([[2, 9]]))[0]  # [N + 1]
    assert newest_two[3] > newest_two[10]  # the three sequences with 2 (and 3) are the neighbours
    assert oldest_two[10] > oldest_two[4]  # now the three sequences with 9 are


@pytest.mark.parametrize("name", ["popularity", "covisitation", "sknn", "repeat"])
def test_non_neural_models_round_trip_through_state_dict(name):
    _, model_cls = MODELS[name]
    config = make_config(name, n_items=12, max_len=MAX_LEN)
    fitted = model_cls.fit(config, TOY)
    assert not any(p.requires_grad for p in fitted.parameters())
    # as the loop does: the checkpoint stores asdict of the config it passed to fit
    restored = build_model(name, make_config(name, **asdict(config)))
    restored.load_state_dict(fitted.state_dict())
    x = left_pad([[1, 2], [9], [11], []])  # [4, 2], incl. unseen and empty histories
    a, b = fitted.score_last(x), restored.score_last(x)  # [4, N + 1] x2
    assert torch.equal(a, b)
    assert a.shape == (4, 13) and torch.isneginf(a[:, 0]).all() and torch.isfinite(a[:, 1:]).all()


def test_repeat_ranks_the_inputs_own_items_most_frequent_then_most_recent_first():
    _, model_cls = MODELS["repeat"]
    model = model_cls.fit(make_config("repeat", n_items=12, max_len=MAX_LEN), TOY)
    scores = model.score_last(left_pad([[5, 7, 5, 3, 7, 5, 11]]))[0]  # [N + 1]
    ranking = scores.argsort(descending=True).tolist()
    # 5 three times, 7 twice, then 11 (newer) before 3; then the training-popular items
    assert ranking[:4] == [5, 7, 11, 3]
    unseen = [i for i in ranking[4:] if i != 0]
    popularity = MODELS["popularity"][1].fit(make_config("popularity", n_items=12), TOY).score_last(left_pad([[1]]))[0]
    assert unseen == [i for i in popularity.argsort(descending=True).tolist() if i not in (0, 5, 7, 11, 3)]
