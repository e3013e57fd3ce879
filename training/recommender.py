"""Any checkpoint -> an object that recommends items from a user's recent item ids.

Serving, the demo and the promotion step (which re-scores the champion) all go through here, so
a model is always fed the same way it was trained: consecutive duplicates collapsed, items
unknown to its vocabulary dropped, the last ``max_len`` items, left-padded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from training.data import EvalExample, ItemVocabulary
from training.evaluate import evaluate_examples
from training.models import build_model, make_config


class Recommender:
    def __init__(self, checkpoint: dict[str, Any], device: torch.device | str = "cpu"):
        self.model_name: str = checkpoint["model_name"]
        self.config = make_config(self.model_name, **checkpoint["config"])
        self.vocab = ItemVocabulary(checkpoint["item_ids"])
        self.popular_item_ids: list[str] = list(checkpoint["popular_item_ids"])
        self.popular_item_counts: list[int] = list(checkpoint.get("popular_item_counts", []))
        self.max_len: int = int(checkpoint["config"].get("max_len") or checkpoint["split"]["max_sequence_length"])
        self.metadata = {k: checkpoint.get(k) for k in ("metrics", "split", "train", "best_epoch")}
        # The seen-item rule the model was evaluated under is the one it serves with.
        self.exclude_seen: bool = bool((checkpoint.get("split") or {}).get("exclude_seen", True))
        self.device = torch.device(device)
        self.model = build_model(self.model_name, self.config)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.to(self.device).eval()

    @property
    def item_ids(self) -> list[str]:
        return self.vocab.item_ids

    def encode_history(self, recent_item_ids: Iterable[str]) -> list[int]:
        """The model's input indices for a raw history (time order, most recent last)."""
        collapsed: list[str] = []
        for item in recent_item_ids:
            if not collapsed or collapsed[-1] != item:
                collapsed.append(item)
        return self.vocab.encode(collapsed)[-self.max_len:]

    @torch.no_grad()
    def score(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` (left-padded indices) -> ``[B, N + 1]`` scores, fp32 or fp64."""
        return self.model.score_last(input_ids.to(self.device))  # [B, N + 1]

    def recommend(
        self, recent_item_ids: Sequence[str], k: int = 10, exclude: Iterable[str] = ()
    ) -> list[tuple[str, float]]:
        """Top ``k`` (item_id, score), best first; never an item of ``exclude``, nor of the
        history when the model's rule excludes seen items (``self.exclude_seen``).

        A history with no known item (all ids unknown to this model) gets the training-period
        most-popular items, scored by their training-period interaction counts.
        """
        if k <= 0:
            return []
        excluded = set(exclude) | (set(recent_item_ids) if self.exclude_seen else set())
        encoded = self.encode_history(recent_item_ids)
        if not encoded:
            counts = self.popular_item_counts or [0] * len(self.popular_item_ids)
            ranked = [(i, float(c)) for i, c in zip(self.popular_item_ids, counts) if i not in excluded]
            return ranked[:k]
        x = torch.tensor([encoded], dtype=torch.long)  # [1, L]
        scores = self.score(x)[0].double().cpu()  # [N + 1]
        scores[0] = float("-inf")
        excluded_idx = [self.vocab.index(i) for i in excluded if i in self.vocab]
        if excluded_idx:
            scores[torch.tensor(excluded_idx, dtype=torch.long)] = float("-inf")
        top_scores, top_idx = scores.topk(min(k, scores.numel()))  # [k], [k]
        return [
            (self.vocab.item(int(i)), float(s))
            for s, i in zip(top_scores.tolist(), top_idx.tolist())
            if s != float("-inf")
        ]

    def recommend_many(
        self, histories: Sequence[Sequence[str]], k: int = 10, batch_size: int = 256
    ) -> list[list[tuple[str, float]]]:
        """:meth:`recommend` for many histories at once: one forward pass per ``batch_size``."""
        out: list[list[tuple[str, float]] | None] = [None] * len(histories)
        encoded = [self.encode_history(h) for h in histories]
        known = [i for i, e in enumerate(encoded) if e]
        for i, history in enumerate(histories):
            if not encoded[i]:
                out[i] = self.recommend(history, k)  # popularity, as recommend() answers it
        for start in range(0, len(known), batch_size):
            rows = known[start:start + batch_size]
            width = max(len(encoded[i]) for i in rows)
            x = torch.zeros(len(rows), width, dtype=torch.long)  # [B, L], left-padded
            for r, i in enumerate(rows):
                x[r, width - len(encoded[i]):] = torch.tensor(encoded[i], dtype=torch.long)
            scores = self.score(x).double().cpu()  # [B, N + 1]
            scores[:, 0] = float("-inf")
            for r, i in enumerate(rows if self.exclude_seen else ()):
                seen = [self.vocab.index(item) for item in set(histories[i]) if item in self.vocab]
                if seen:
                    scores[r, torch.tensor(seen, dtype=torch.long)] = float("-inf")
            top_scores, top_idx = scores.topk(min(k, scores.shape[1]), dim=1)  # [B, k]
            for r, i in enumerate(rows):
                out[i] = [
                    (self.vocab.item(int(j)), float(v))
                    for v, j in zip(top_scores[r].tolist(), top_idx[r].tolist())
                    if v != float("-inf")
                ]
        return [o or [] for o in out]

    def smoke_test(self, k: int = 10) -> None:
        """Raise unless the model answers a real history with ``k`` finite, distinct items.

        Run on every load that could go live (promotion, the serving poller, rollback), so an
        artifact whose weights loaded but compute garbage (NaN) is refused like one that fails
        to unpickle.
        """
        import math

        if not self.popular_item_ids:
            raise ValueError("checkpoint has no popular items: the fallback would be empty")
        history = self.popular_item_ids[:3]
        ranked = self.recommend(history, k)
        if not ranked:
            raise ValueError("model returned no recommendation for a history of popular items")
        if not all(math.isfinite(score) for _, score in ranked):
            raise ValueError(f"model returned non-finite scores: {ranked[:3]}")
        if len({item for item, _ in ranked}) != len(ranked):
            raise ValueError("model returned duplicate items")

    def evaluate(self, examples: Sequence[EvalExample], k: int = 10, batch_size: int = 256,
                 exclude_seen: bool | None = None) -> dict[str, float]:
        """Metrics on raw examples, encoded with this model's own vocabulary (so a champion
        trained on an older catalog is scored fairly on a newer test window). ``exclude_seen``:
        the night's rule when re-scoring a champion beside a candidate; None = the model's own."""
        return evaluate_examples(
            self.score, examples, self.vocab, self.max_len, k=k, batch_size=batch_size, device=self.device,
            exclude_seen=self.exclude_seen if exclude_seen is None else exclude_seen,
        )


def load_checkpoint(checkpoint_path: str | Path) -> dict[str, Any]:
    # weights_only: a checkpoint is tensors and plain containers; never unpickle arbitrary code.
    return torch.load(Path(checkpoint_path), map_location="cpu", weights_only=True)


def load_recommender(checkpoint_path: str | Path, device: torch.device | str = "cpu") -> Recommender:
    return Recommender(load_checkpoint(checkpoint_path), device=device)
