"""Full-catalog next-item ranking metrics, for any scorer ``(input_ids [B, L]) -> scores [B, N+1]``.

Protocol (the same for every model, so numbers are comparable):
* every catalog item is ranked, no sampled negatives (sampled metrics can reorder models:
  Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD 2020);
* padding and the items of the example's input sequence are excluded from the ranking, as they
  are from served recommendations; a target that is in the input therefore counts as a miss;
* a target missing from the model's vocabulary counts as a miss;
* ties are broken against the target (rank = number of items scoring >= the target), so a model
  that scores everything equally gets no credit;
* ``mrr`` is the mean reciprocal rank over the FULL ranking (not MRR@10).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from training.data import EvalExample, ItemVocabulary

Scorer = Callable[[torch.Tensor], torch.Tensor]

METRIC_NAMES = ("hr_at_10", "ndcg_at_10", "mrr", "coverage_at_10")


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


@torch.no_grad()
def evaluate(
    scorer: Scorer,
    inputs: Sequence[Sequence[int]],
    targets: Sequence[int],
    n_items: int,
    k: int = 10,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """HR@k, NDCG@k, MRR (full ranking) and catalog coverage of the top-k lists.

    ``n_items`` is the scorer's catalog size N (scores have N + 1 columns, 0 = padding).
    """
    if len(inputs) != len(targets):
        raise ValueError("inputs and targets differ in length")
    if len(inputs) == 0:
        raise ValueError("no examples to evaluate")
    device = torch.device(device)
    hits = ndcg = rr = 0.0
    recommended = torch.zeros(n_items + 1, dtype=torch.bool, device=device)  # [N + 1]
    for start in range(0, len(inputs), batch_size):
        batch_inputs = left_pad(inputs[start:start + batch_size]).to(device)  # [B, L]
        batch_targets = torch.tensor(targets[start:start + batch_size], dtype=torch.long, device=device)  # [B]
        scores = scorer(batch_inputs).to(device)  # [B, N + 1]
        if scores.shape != (batch_inputs.shape[0], n_items + 1):
            raise ValueError(f"scorer returned {tuple(scores.shape)}, expected [B, {n_items + 1}]")
        scores = scores.clone()
        # Padding and already-seen items are not candidates (the input's zeros hit column 0).
        scores.scatter_(1, batch_inputs, float("-inf"))  # [B, N + 1]
        scores[:, 0] = float("-inf")

        target_scores = scores.gather(1, batch_targets.clamp(min=0).unsqueeze(1))  # [B, 1]
        ranks = (scores >= target_scores).sum(dim=1).to(torch.float64)  # [B], 1 = best
        # Unknown (index 0) and seen targets sit at -inf; a NaN score ranks nowhere either.
        valid = (batch_targets > 0) & torch.isfinite(target_scores.squeeze(1))  # [B]
        in_top = valid & (ranks <= k)  # [B]
        hits += in_top.sum().item()
        ndcg += torch.where(in_top, 1.0 / torch.log2(ranks + 1.0), torch.zeros_like(ranks)).sum().item()
        rr += torch.where(valid, 1.0 / ranks.clamp(min=1.0), torch.zeros_like(ranks)).sum().item()

        top_scores, top_items = scores.topk(min(k, n_items + 1), dim=1)  # [B, k], [B, k]
        recommended[top_items[torch.isfinite(top_scores)]] = True
    n = len(inputs)
    recommended[0] = False
    return {
        f"hr_at_{k}": hits / n,
        f"ndcg_at_{k}": ndcg / n,
        "mrr": rr / n,
        f"coverage_at_{k}": recommended.sum().item() / n_items if n_items else 0.0,
    }


def evaluate_examples(
    scorer: Scorer,
    examples: Sequence[EvalExample],
    vocab: ItemVocabulary,
    max_len: int,
    k: int = 10,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``evaluate`` on raw examples, encoded with the scorer's own vocabulary."""
    inputs, targets = encode_examples(examples, vocab, max_len)
    metrics = evaluate(scorer, inputs, targets, vocab.n_items, k=k, batch_size=batch_size, device=device)
    return metrics | {"n_examples": float(len(examples))}


def all_finite(metrics: dict[str, float]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in metrics.values())
