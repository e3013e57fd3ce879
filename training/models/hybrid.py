"""Hybrid: SASRec (with item side information) blended with item co-visitation.

The two make different mistakes: co-visitation is sharp on the frequent "bought X, then Y"
transitions and blind beyond its neighbour lists, SASRec generalises across the whole catalog
and the whole history but smooths the sharp transitions away. The blend is a mixture of their
next-item distributions::

    p(i) = (1 - blend) * softmax(SASRec logits)_i + blend * covisitation(i) / sum(covisitation)

SASRec is trained by the shared loop exactly like ``sasrec`` (its epochs chosen on validation,
the co-visitation part a fitted buffer that nothing optimises); then ``calibrate`` picks
``blend`` on the validation examples: the best of the coarse ``blend_grid``, refined by steps of
``blend_refine`` to either side (the validation curve is flat near its top and its peak falls
between the coarse points), and the chosen weight is saved in the checkpoint's config. The test
examples are never seen by either choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from training.models.covisitation import CoVisitation, CoVisitationConfig
from training.models.sasrec import SASRec, SASRecConfig

BLEND_GRID = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75)
BLEND_REFINE = (0.05, 0.025)  # after the grid: the best weight +- each step in turn


@dataclass
class HybridConfig(SASRecConfig):
    window: int = 5  # co-visitation: follow-ups within this many steps count
    n_neighbours: int = 100  # co-visitation: followers kept per item
    n_recent: int = 5  # co-visitation: newest input items that vote
    # Weight of co-visitation's distribution. While training it is the configured value (0 by
    # default: epochs are chosen on SASRec alone); afterwards the calibrated weight (see calibrate).
    blend: float = 0.0
    blend_grid: tuple[float, ...] = BLEND_GRID  # empty: keep ``blend`` as configured
    blend_refine: tuple[float, ...] = BLEND_REFINE  # empty: the grid's best as it is


class Hybrid(SASRec):
    objective = "next_item"

    def __init__(self, config: HybridConfig):
        super().__init__(config)
        self.covisitation = CoVisitation(self._covisitation_config(config))

    @staticmethod
    def _covisitation_config(config: HybridConfig) -> CoVisitationConfig:
        return CoVisitationConfig(n_items=config.n_items, max_len=config.max_len, window=config.window,
                                  n_neighbours=config.n_neighbours, n_recent=config.n_recent)

    @classmethod
    def from_split(cls, config: HybridConfig, split) -> "Hybrid":
        model = super().from_split(config, split)
        fitted = CoVisitation.fit(cls._covisitation_config(config), split.train_sequences)
        model.covisitation.load_state_dict(fitted.state_dict())
        return model

    def score_last(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` -> ``[B, N + 1]`` mixture probabilities (SASRec's logits when
        ``blend`` is 0); column 0 is -inf."""
        logits = super().score_last(input_ids)  # [B, N + 1]
        blend = float(self.config.blend)
        if blend <= 0.0:
            return logits
        sequence = torch.softmax(logits.double(), dim=-1)  # [B, N + 1], column 0 -> 0
        covisits = self.covisitation.score_last(input_ids).clamp(min=0.0)  # [B, N + 1], -inf -> 0
        covisits = covisits / covisits.sum(dim=-1, keepdim=True).clamp(min=1e-300)  # [B, N + 1]
        mixed = (1.0 - blend) * sequence + blend * covisits  # [B, N + 1]
        mixed[:, 0] = float("-inf")
        return mixed

    def calibrate(self, validate: Callable[[], dict[str, float]], metric: str,
                  known: dict[str, float] | None = None) -> dict[str, float] | None:
        """Choose ``blend`` by the validation ``metric``: the best of ``blend_grid``, then the
        best of it and its neighbours at +- each ``blend_refine`` step in turn (kept in [0, 1]);
        the chosen weight's validation metrics (None with an empty grid). Ties go to the smaller
        weight. ``known``: the validation metrics at the current ``blend`` (the loop's, for the
        selected epoch), so that point is not validated twice."""
        current = float(self.config.blend)
        scores: dict[float, dict[str, float]] = {}

        def score(blend: float) -> None:
            blend = round(min(max(float(blend), 0.0), 1.0), 6)
            if blend not in scores:
                self.config.blend = blend
                scores[blend] = known if known is not None and blend == current else validate()

        def best_blend() -> float:
            return max(scores, key=lambda blend: (scores[blend][metric], -blend))

        for blend in self.config.blend_grid:
            score(blend)
        if not scores:
            return None
        for step in self.config.blend_refine:
            centre = best_blend()
            score(centre - step)
            score(centre + step)
        self.config.blend = best_blend()
        return scores[self.config.blend]
