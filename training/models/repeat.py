"""Repeat baseline: "what you interacted with recently, most frequent first", then the popular items.

Logs with heavy repeat consumption (re-ordering groceries, re-opening the same product page
across sessions) make a large share of next items ones the user already has. A model that only
ranks new items misses all of those; this baseline ranks the input's own items first:

* every item of the input scores ``REPEAT_BASE + count in the input + recency``, where recency is
  ``position / (L + 1)`` of its newest occurrence (1 = oldest), so a more frequent item comes
  first and, among equally frequent ones, the more recent;
* every other item gets its training popularity, scaled below 1, so the list continues with the
  popular items (strict and deterministic: ties broken by the lower index).

Under seen-item exclusion (the evaluator and serving drop the input's items) it reduces to the
popularity ranking; it earns its place only when the night's rule keeps seen items rankable.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from training.models.baselines import popularity_scores

REPEAT_BASE = 10.0  # above any popularity score (which is scaled into [0, 1))


@dataclass
class RepeatConfig:
    n_items: int
    max_len: int = 50


class RepeatModel(nn.Module):
    objective = "none"

    def __init__(self, config: RepeatConfig):
        super().__init__()
        self.config = config
        self.register_buffer("prior", torch.zeros(config.n_items + 1, dtype=torch.float64))  # [N + 1]

    @classmethod
    def fit(cls, config: RepeatConfig, train_sequences: list[list[int]]) -> "RepeatModel":
        model = cls(config)
        prior = popularity_scores(Counter(i for seq in train_sequences for i in seq), config.n_items)  # [N + 1]
        finite = prior[1:]
        model.prior[1:] = finite / (finite.max().clamp(min=1.0) + 1.0)  # [N], in [0, 1)
        model.prior[0] = float("-inf")
        return model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.score_last(input_ids)

    @torch.no_grad()
    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded) -> ``[B, N + 1]`` float64 scores; column 0 is -inf."""
        input_ids = input_ids[:, -self.config.max_len:]  # [B, L]
        B, L = input_ids.shape
        scores = self.prior.to(input_ids.device).unsqueeze(0).expand(B, -1).clone()  # [B, N + 1]
        is_item = (input_ids != 0).to(torch.float64)  # [B, L]
        counts = torch.zeros_like(scores).scatter_add_(1, input_ids, is_item)  # [B, N + 1]
        position = torch.arange(1, L + 1, device=input_ids.device, dtype=torch.float64) / (L + 1)  # [L]
        recency = torch.zeros_like(scores).scatter_reduce_(
            1, input_ids, position.expand(B, -1) * is_item, reduce="amax")  # [B, N + 1]
        seen = counts > 0  # [B, N + 1]
        scores = torch.where(seen, REPEAT_BASE + counts + recency, scores)  # [B, N + 1]
        scores[:, 0] = float("-inf")
        return scores
