"""Full-catalog next-item ranking metrics, for any scorer ``(input_ids [B, L]) -> scores [B, N+1]``.

Protocol (the same for every model, so numbers are comparable):
* every catalog item is ranked, no sampled negatives (sampled metrics can reorder models:
  Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020);
* padding is never ranked; the items of the example's input sequence are excluded from the
  ranking (as they are from served recommendations) unless ``exclude_seen=False``, the rule for a
  log with heavy repeat consumption (see :mod:`training.protocol`); under exclusion a target that
  is in the input counts as a miss;
* a target missing from the model's vocabulary counts as a miss;
* ties are broken against the target (rank = number of items scoring >= the target), so a model
  that scores everything equally gets no credit;
* ``mrr`` is the mean reciprocal rank over the FULL ranking (not MRR@10); ``mrr_at_K`` counts
  only ranks <= K (0 beyond);
* cutoffs: ``hr_at_K``, ``ndcg_at_K``, ``mrr_at_K`` for every K in ``ks`` (default 10, 20, 50)
  and the primary ``k``; ``coverage_at_k`` (share of the catalog appearing in at least one
  top-``k`` list) and, when training counts are given, ``popularity_bias_at_k`` for the primary
  ``k`` only;
* ``popularity_bias_at_k``: the mean, over examples and over the items of each top-``k`` list,
  of the item's training-popularity percentile ``(number of catalog items with a strictly lower
  training count) / N`` (0 = among the least popular, close to 1 = the most popular item). A
  most-popular recommender scores close to 1; a model that recommends the long tail scores lower.

Two models are compared on the same examples through :func:`ndcg_per_example` (each example's
NDCG@k under the same ranking) and :func:`paired_bootstrap` (an interval for the mean difference).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from training.data import EvalExample, ItemVocabulary, Split

Scorer = Callable[[torch.Tensor], torch.Tensor]

METRIC_NAMES = ("hr_at_10", "ndcg_at_10", "mrr", "coverage_at_10")
CUTOFFS = (10, 20, 50)


def left_pad(sequences: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    """``[B, L]`` long tensor, each row right-aligned (the most recent item last), 0-padded."""
    L = max(1, length if length is not None else max((len(s) for s in sequences), default=1))
    out = torch.zeros(len(sequences), L, dtype=torch.long)  # [B, L]
    for row, seq in enumerate(sequences):
        seq = list(seq)[-L:]
        if seq:
            out[row, L - len(seq):] = torch.tensor(seq, dtype=torch.long)
    return out


def encode_examples(
    examples: Sequence[EvalExample], vocab: ItemVocabulary, max_len: int
) -> tuple[list[list[int]], list[int]]:
    """Raw examples -> (inputs, targets) in ``vocab``'s indices (unknown input items dropped,
    unknown targets -> 0, i.e. a miss)."""
    inputs = [vocab.encode(ex.input_items)[-max_len:] for ex in examples]
    targets = [vocab.index(ex.target_item) for ex in examples]
    return inputs, targets


def popularity_percentiles(item_counts: Mapping[int, int] | torch.Tensor, n_items: int) -> torch.Tensor:
    """``[N + 1]`` float64: for each item index, the share of the N catalog items with a strictly
    lower training count (index 0, padding, gets 0). ``item_counts``: index -> count (a Counter)
    or a ``[N + 1]`` tensor of counts."""
    if isinstance(item_counts, torch.Tensor):
        counts = item_counts.to(torch.float64).flatten()[: n_items + 1].clone()  # [N + 1]
    else:
        counts = torch.zeros(n_items + 1, dtype=torch.float64)  # [N + 1]
        for index, count in item_counts.items():
            if 0 < index <= n_items:
                counts[index] = float(count)
    catalog = counts[1:].sort().values  # [N]
    lower = torch.searchsorted(catalog, counts, right=False).to(torch.float64)  # [N + 1]
    out = lower / max(n_items, 1)
    out[0] = 0.0
    return out


def _target_ranks(
    scorer: Scorer, batch_inputs: torch.Tensor, batch_targets: torch.Tensor, n_items: int,
    device: torch.device, exclude_seen: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One batch scored under the protocol: (masked scores ``[B, N + 1]``, the target's rank
    ``[B]`` (1 = best, ties against the target), whether the target is rankable ``[B]``)."""
    scores = scorer(batch_inputs).to(device)  # [B, N + 1]
    if scores.shape != (batch_inputs.shape[0], n_items + 1):
        raise ValueError(f"scorer returned {tuple(scores.shape)}, expected [B, {n_items + 1}]")
    scores = scores.clone()
    if exclude_seen:
        # Already-seen items are not candidates (the input's zeros hit column 0).
        scores.scatter_(1, batch_inputs, float("-inf"))  # [B, N + 1]
    scores[:, 0] = float("-inf")
    target_scores = scores.gather(1, batch_targets.clamp(min=0).unsqueeze(1))  # [B, 1]
    ranks = (scores >= target_scores).sum(dim=1).to(torch.float64)  # [B], 1 = best
    # Unknown (index 0) and seen targets sit at -inf; a NaN score ranks nowhere either.
    valid = (batch_targets > 0) & torch.isfinite(target_scores.squeeze(1))  # [B]
    return scores, ranks, valid


@torch.no_grad()
def evaluate(
    scorer: Scorer,
    inputs: Sequence[Sequence[int]],
    targets: Sequence[int],
    n_items: int,
    k: int = 10,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    ks: Sequence[int] = CUTOFFS,
    item_counts: Mapping[int, int] | torch.Tensor | None = None,
    exclude_seen: bool = True,
) -> dict[str, float]:
    """HR@K, NDCG@K, MRR@K for K in ``ks`` and ``k``, MRR (full ranking), catalog coverage of the
    top-``k`` lists and, with ``item_counts`` (training counts by index), their popularity bias.

    ``n_items`` is the scorer's catalog size N (scores have N + 1 columns, 0 = padding). One
    batched pass: each batch is scored once and every metric is read off the same ranks.
    """
    if len(inputs) != len(targets):
        raise ValueError("inputs and targets differ in length")
    if len(inputs) == 0:
        raise ValueError("no examples to evaluate")
    device = torch.device(device)
    cutoffs = sorted({int(c) for c in ks} | {int(k)})
    if cutoffs[0] < 1:
        raise ValueError("cutoffs must be >= 1")
    # Sums stay on the device: one host transfer at the end, not one per batch.
    hits = torch.zeros(len(cutoffs), dtype=torch.float64, device=device)  # [C]
    ndcg = torch.zeros(len(cutoffs), dtype=torch.float64, device=device)  # [C]
    rr_at = torch.zeros(len(cutoffs), dtype=torch.float64, device=device)  # [C]
    rr = torch.zeros((), dtype=torch.float64, device=device)
    bias = torch.zeros((), dtype=torch.float64, device=device)
    bias_n = torch.zeros((), dtype=torch.float64, device=device)
    cut = torch.tensor(cutoffs, dtype=torch.float64, device=device)  # [C]
    percentile = (
        popularity_percentiles(item_counts, n_items).to(device) if item_counts is not None else None
    )  # [N + 1]
    recommended = torch.zeros(n_items + 1, dtype=torch.bool, device=device)  # [N + 1]
    for start in range(0, len(inputs), batch_size):
        batch_inputs = left_pad(inputs[start:start + batch_size]).to(device)  # [B, L]
        batch_targets = torch.tensor(targets[start:start + batch_size], dtype=torch.long, device=device)  # [B]
        scores, ranks, valid = _target_ranks(scorer, batch_inputs, batch_targets, n_items, device, exclude_seen)
        in_top = valid.unsqueeze(1) & (ranks.unsqueeze(1) <= cut)  # [B, C]
        hits += in_top.sum(dim=0)
        gain = (1.0 / torch.log2(ranks + 1.0)).unsqueeze(1)  # [B, 1]
        ndcg += torch.where(in_top, gain, torch.zeros_like(gain)).sum(dim=0)
        recip = (1.0 / ranks.clamp(min=1.0)).unsqueeze(1)  # [B, 1]
        rr_at += torch.where(in_top, recip, torch.zeros_like(recip)).sum(dim=0)
        rr += torch.where(valid, recip.squeeze(1), torch.zeros_like(ranks)).sum()

        top_scores, top_items = scores.topk(min(k, n_items + 1), dim=1)  # [B, k], [B, k]
        finite = torch.isfinite(top_scores)  # [B, k]
        recommended[top_items[finite]] = True
        if percentile is not None:
            bias += torch.where(finite, percentile[top_items], torch.zeros_like(percentile[top_items])).sum()
            bias_n += finite.sum()
    n = len(inputs)
    recommended[0] = False
    hits_l, ndcg_l, rr_at_l = (hits / n).tolist(), (ndcg / n).tolist(), (rr_at / n).tolist()
    metrics: dict[str, float] = {}
    for i, c in enumerate(cutoffs):
        metrics[f"hr_at_{c}"] = hits_l[i]
        metrics[f"ndcg_at_{c}"] = ndcg_l[i]
    metrics["mrr"] = rr.item() / n
    for i, c in enumerate(cutoffs):
        metrics[f"mrr_at_{c}"] = rr_at_l[i]
    metrics[f"coverage_at_{k}"] = recommended.sum().item() / n_items if n_items else 0.0
    if percentile is not None:
        metrics[f"popularity_bias_at_{k}"] = (bias / bias_n.clamp(min=1)).item()
    return metrics


def evaluate_examples(
    scorer: Scorer,
    examples: Sequence[EvalExample],
    vocab: ItemVocabulary,
    max_len: int,
    k: int = 10,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    ks: Sequence[int] = CUTOFFS,
    item_counts: Mapping[int, int] | torch.Tensor | None = None,
    exclude_seen: bool = True,
) -> dict[str, float]:
    """``evaluate`` on raw examples, encoded with the scorer's own vocabulary."""
    inputs, targets = encode_examples(examples, vocab, max_len)
    metrics = evaluate(scorer, inputs, targets, vocab.n_items, k=k, batch_size=batch_size, device=device,
                       ks=ks, item_counts=item_counts, exclude_seen=exclude_seen)
    return metrics | {"n_examples": float(len(examples))}


def metrics_on_validation(model, split: Split, device: torch.device, batch_size: int) -> dict[str, float]:
    """``model``'s metrics on the split's validation examples (the only ones that select an
    epoch); the model is left in eval mode and scored in full precision."""
    model.eval()
    return evaluate_examples(model.score_last, split.val_examples, split.vocab, split.max_len, device=device,
                             batch_size=batch_size, exclude_seen=split.exclude_seen)


def metrics_on_test(
    model, split: Split, device: torch.device, batch_size: int
) -> tuple[dict[str, float], dict[str, float]]:
    """``model``'s ranking metrics on the split's test examples, and apart the diagnostics that are
    not ranking metrics (popularity bias), so the first equal what any Recommender computes."""
    scored = evaluate_examples(model.score_last, split.test_examples, split.vocab, split.max_len, device=device,
                               batch_size=batch_size, item_counts=split.train_item_counts,
                               exclude_seen=split.exclude_seen)
    extra = {k: v for k, v in scored.items() if k.startswith("popularity_bias_at_")}
    return {k: v for k, v in scored.items() if k not in extra}, extra


@torch.no_grad()
def ndcg_per_example(
    scorer: Scorer,
    inputs: Sequence[Sequence[int]],
    targets: Sequence[int],
    n_items: int,
    k: int = 10,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    exclude_seen: bool = True,
) -> torch.Tensor:
    """``[E]`` float64: each example's NDCG@k, in input order, ranked exactly as :func:`evaluate`
    ranks them (same seen-item rule, same ties), so its mean is ``evaluate``'s ``ndcg_at_k``.
    The terms a paired comparison of two models on the same examples needs."""
    if len(inputs) != len(targets):
        raise ValueError("inputs and targets differ in length")
    device = torch.device(device)
    out = torch.zeros(len(inputs), dtype=torch.float64)  # [E]
    for start in range(0, len(inputs), batch_size):
        batch_inputs = left_pad(inputs[start:start + batch_size]).to(device)  # [B, L]
        batch_targets = torch.tensor(targets[start:start + batch_size], dtype=torch.long, device=device)  # [B]
        _, ranks, valid = _target_ranks(scorer, batch_inputs, batch_targets, n_items, device, exclude_seen)
        gain = torch.where(valid & (ranks <= k), 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks))  # [B]
        out[start:start + len(batch_targets)] = gain.cpu()
    return out


def ndcg_per_example_on(
    scorer: Scorer,
    examples: Sequence[EvalExample],
    vocab: ItemVocabulary,
    max_len: int,
    k: int = 10,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    exclude_seen: bool = True,
) -> torch.Tensor:
    """:func:`ndcg_per_example` on raw examples, encoded with the scorer's own vocabulary."""
    inputs, targets = encode_examples(examples, vocab, max_len)
    return ndcg_per_example(scorer, inputs, targets, vocab.n_items, k=k, batch_size=batch_size,
                            device=device, exclude_seen=exclude_seen)


def paired_bootstrap(
    differences: Sequence[float] | torch.Tensor, samples: int, confidence: float, seed: int = 0,
) -> tuple[float, float, float]:
    """(mean, lower, upper): the mean of per-example differences and its two-sided percentile
    bootstrap interval at ``confidence``, from ``samples`` resamples of the examples drawn with a
    fixed ``seed`` (the same differences always give the same interval). All-equal differences
    give a zero-width interval at their value."""
    diffs = torch.as_tensor(differences, dtype=torch.float64).flatten()  # [E]
    n = diffs.numel()
    if n == 0:
        raise ValueError("no paired examples to compare")
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    generator = torch.Generator().manual_seed(int(seed))
    means = torch.empty(samples, dtype=torch.float64)  # [S]
    # Resampled in chunks: samples * E indices at once would not fit in memory for a big window.
    chunk = max(1, (1 << 22) // n)
    for start in range(0, samples, chunk):
        rows = min(chunk, samples - start)
        picks = torch.randint(n, (rows, n), generator=generator)  # [rows, E]
        means[start:start + rows] = diffs[picks].mean(dim=1)
    alpha = (1.0 - confidence) / 2.0
    lower, upper = torch.quantile(means, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)).tolist()
    return diffs.mean().item(), lower, upper


def repeat_share(examples: Sequence[EvalExample]) -> float:
    """Share of examples whose target is already in their input: the next items a model that
    excludes seen items can never get right."""
    if not examples:
        return 0.0
    return sum(ex.target_item in ex.input_items for ex in examples) / len(examples)
