"""The full-catalog evaluator on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from training.data import EvalExample, ItemVocabulary
from training.evaluate import evaluate, evaluate_examples

N_ITEMS = 5


def fixed_scorer(table: list[list[float]]):
    """Scores per row of the batch, in the order examples are given (one batch)."""

    def score(input_ids: torch.Tensor) -> torch.Tensor:
        assert input_ids.shape[0] == len(table)
        return torch.tensor(table, dtype=torch.float32)  # [B, N + 1]

    return score


def test_metrics_match_a_hand_computed_example():
    scores = [
        # pad  i1    i2   i3   i4   i5
        [0.0, 10.0, 9.0, 8.0, 7.0, 1.0],  # input [1]: i1 excluded -> i2 rank 1, target i3 rank 2
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # input [5, 4]: excluded -> target i3 rank 1
        [0.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # target i2 is in the input: a miss
        [0.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # target unknown to the vocabulary (0): a miss
    ]
    inputs = [[1], [5, 4], [2, 3], [1]]
    targets = [3, 3, 2, 0]
    m = evaluate(fixed_scorer(scores), inputs, targets, N_ITEMS, k=10)
    assert m["hr_at_10"] == pytest.approx(2 / 4)
    assert m["ndcg_at_10"] == pytest.approx((1 / math.log2(3) + 1.0) / 4)
    assert m["mrr"] == pytest.approx((1 / 2 + 1.0) / 4)
    # With 5 items and k = 10 each list holds every non-excluded item: all 5 items appear.
    assert m["coverage_at_10"] == pytest.approx(1.0)


def test_cutoff_and_coverage_with_small_k():
    scores = [
        [0.0, 10.0, 9.0, 8.0, 7.0, 1.0],  # no input item excluded among the top: top-2 = i1, i2
        [0.0, 10.0, 9.0, 8.0, 7.0, 1.0],  # input [1]: top-2 = i2, i3; target i4 rank 3
    ]
    m = evaluate(fixed_scorer(scores), [[5], [1]], [2, 4], N_ITEMS, k=2)
    assert m["hr_at_2"] == pytest.approx(1 / 2)  # only the first example hits within 2
    assert m["ndcg_at_2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 3) / 2)  # MRR is over the full ranking
    assert m["coverage_at_2"] == pytest.approx(3 / 5)  # {i1, i2, i3}


def test_seen_items_are_excluded_even_when_scored_highest():
    # The model's top item is the one the user just saw; without exclusion the target is rank 2.
    scores = [[0.0, 100.0, 50.0, 1.0, 1.0, 1.0]]
    m = evaluate(fixed_scorer(scores), [[1]], [2], N_ITEMS, k=1)
    assert m["hr_at_1"] == 1.0 and m["ndcg_at_1"] == 1.0 and m["mrr"] == 1.0


def test_ties_count_against_the_target():
    constant = [[0.0] + [1.0] * N_ITEMS]
    m = evaluate(fixed_scorer(constant), [[1]], [3], N_ITEMS, k=3)
    # 4 candidates left, all tied: the target is ranked last (4th), outside the top 3.
    assert m["hr_at_3"] == 0.0 and m["mrr"] == pytest.approx(1 / 4)


def test_batching_does_not_change_metrics():
    torch.manual_seed(0)
    n_items = 60
    table = torch.randn(n_items + 1, n_items + 1)  # [N + 1, N + 1], one score row per last item

    def scorer(input_ids: torch.Tensor) -> torch.Tensor:
        return table[input_ids[:, -1]]  # [B, N + 1], depends only on the row's own input

    inputs = [[i, (i % 7) + 1] for i in range(1, 51)]
    targets = [(i * 3) % n_items + 1 for i in range(50)]
    one_by_one = evaluate(scorer, inputs, targets, n_items, batch_size=1)
    all_at_once = evaluate(scorer, inputs, targets, n_items, batch_size=256)
    assert one_by_one == pytest.approx(all_at_once)


def test_raw_examples_are_encoded_with_the_scorers_vocabulary():
    vocab = ItemVocabulary(["a", "b", "c", "d", "e"])
    examples = [
        EvalExample("u1", ("a", "zzz"), "c"),  # "zzz" unknown: dropped from the input
        EvalExample("u2", ("b",), "new_item"),  # unknown target: a miss
    ]
    seen: list[torch.Tensor] = []

    def scorer(input_ids: torch.Tensor) -> torch.Tensor:
        seen.append(input_ids.clone())
        return torch.tensor([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]] * input_ids.shape[0])  # [B, N + 1]

    m = evaluate_examples(scorer, examples, vocab, max_len=3)
    assert seen[0].tolist() == [[1], [2]]
    assert m["n_examples"] == 2
    # u1: a excluded -> b rank 1, c rank 2; u2: miss.
    assert m["hr_at_10"] == pytest.approx(1 / 2)
    assert m["mrr"] == pytest.approx((1 / 2) / 2)


def test_cutoffs_10_20_50_and_mrr_at_k_by_hand():
    # 60 items; the scorer ranks items by index descending (item 60 best). Inputs exclude nothing
    # relevant (item 1 is last anyway). Targets land at known ranks: 5, 15, 40 and 55.
    n_items = 60

    def scorer(input_ids: torch.Tensor) -> torch.Tensor:
        row = torch.cat([torch.tensor([0.0]), torch.arange(1, n_items + 1, dtype=torch.float32)])
        return row.repeat(input_ids.shape[0], 1)  # [B, N + 1]

    inputs = [[1]] * 4  # item 1 excluded: it ranks last, so ranks of the others are unchanged
    ranks = [5, 15, 40, 55]
    targets = [n_items + 1 - r for r in ranks]
    m = evaluate(scorer, inputs, targets, n_items)

    def ndcg(cut):
        return sum(1 / math.log2(r + 1) for r in ranks if r <= cut) / 4

    def mrr(cut):
        return sum(1 / r for r in ranks if r <= cut) / 4

    assert m["hr_at_10"] == pytest.approx(1 / 4)
    assert m["hr_at_20"] == pytest.approx(2 / 4)
    assert m["hr_at_50"] == pytest.approx(3 / 4)
    for cut in (10, 20, 50):
        assert m[f"ndcg_at_{cut}"] == pytest.approx(ndcg(cut))
        assert m[f"mrr_at_{cut}"] == pytest.approx(mrr(cut))
    assert m["mrr"] == pytest.approx(mrr(10**9))  # the full ranking: rank 55 counts too
    assert m["coverage_at_10"] == pytest.approx(10 / 60)  # the same 10 items for everyone
    assert "popularity_bias_at_10" not in m  # only with training counts


def test_popularity_bias_is_the_mean_percentile_of_recommended_items():
    from collections import Counter

    from training.evaluate import popularity_percentiles

    counts = Counter({1: 10, 2: 5, 3: 5, 4: 1})  # item 5 never seen in training
    pct = popularity_percentiles(counts, 5)
    # Share of the 5 catalog items with a strictly lower count.
    assert pct.tolist() == pytest.approx([0.0, 4 / 5, 2 / 5, 2 / 5, 1 / 5, 0.0])
    scores = [[0.0, 5.0, 4.0, 3.0, 2.0, 1.0]]  # top-2 after excluding input item 2: items 1, 3
    m = evaluate(fixed_scorer(scores), [[2]], [3], 5, k=2, item_counts=counts)
    assert m["popularity_bias_at_2"] == pytest.approx((4 / 5 + 2 / 5) / 2)
