"""Most-popular baseline: the same ranking for everyone, from training-period interaction counts.

It is an ``nn.Module`` with the sequential models' interface (``score_last``) so the shared loop,
evaluator, checkpoint format and ``load_recommender`` treat it like any other model; it has no
trainable parameters, so the loop skips the optimisation epochs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PopularityConfig:
    n_items: int
    # Not used for scoring; it fixes how much history is excluded as "already seen", the same
    # window the sequential models get, so both are evaluated under the same protocol.
    max_len: int = 50


class PopularityModel(nn.Module):
    objective = "none"  # counted, not optimised

    def __init__(self, config: PopularityConfig):
        super().__init__()
        self.config = config
        # float64: counts + a tie-break fraction stay exact far beyond float32's 2**24.
        self.register_buffer("scores", torch.zeros(config.n_items + 1, dtype=torch.float64))  # [N + 1]

    @classmethod
    def from_counts(cls, config: PopularityConfig, counts: Counter) -> "PopularityModel":
        model = cls(config)
        model.scores.copy_(popularity_scores(counts, config.n_items))
        return model

    @classmethod
    def fit(cls, config: PopularityConfig, train_sequences: list[list[int]]) -> "PopularityModel":
        """The non-neural models' common constructor: counts over the encoded training sequences."""
        return cls.from_counts(config, Counter(i for seq in train_sequences for i in seq))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.score_last(input_ids)

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` -> ``[B, N + 1]`` scores, identical for every row."""
        return self.scores.unsqueeze(0).expand(input_ids.shape[0], -1).clone()  # [B, N + 1]


def popularity_scores(counts: Counter, n_items: int) -> torch.Tensor:
    """``count + a fraction in [0, 1)`` that breaks ties by the lower item index, so the ranking
    is strict and deterministic (a tie would otherwise be ranked by the evaluator's convention).
    Padding (index 0) gets -inf."""
    scores = torch.zeros(n_items + 1, dtype=torch.float64)  # [N + 1]
    for index, count in counts.items():
        scores[index] = float(count)
    tie_break = torch.arange(n_items + 1, 0, -1, dtype=torch.float64) / (n_items + 2)  # [N + 1]
    scores = scores + tie_break  # [N + 1]
    scores[0] = float("-inf")
    return scores


def top_items(counts: Counter, k: int = 100) -> list[tuple[int, int]]:
    """The ``k`` most frequent (index, count), count descending then index ascending."""
    return sorted(counts.items(), key=lambda ic: (-ic[1], ic[0]))[:k]
