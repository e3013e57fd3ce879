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

    def input_batch(self, encoded: Sequence[Sequence[int]]) -> torch.Tensor:
        """Encoded histories (see :meth:`encode_history`, none empty) -> ``[B, L]``, left-padded."""
        width = max(len(e) for e in encoded)
        x = torch.zeros(len(encoded), width, dtype=torch.long)  # [B, L], left-padded
        for r, e in enumerate(encoded):
            x[r, width - len(e):] = torch.tensor(list(e), dtype=torch.long)
        return x

    def excluded_indices(self, history: Iterable[str], exclude: Iterable[str] = ()) -> list[int]:
        """Vocabulary indices a ranking for ``history`` must never show: ``exclude``, and the
        history itself when the model's rule excludes seen items."""
        excluded = set(exclude) | (set(history) if self.exclude_seen else set())
        return [self.vocab.index(i) for i in excluded if i in self.vocab]

    @property
    def item_embeddings(self) -> torch.Tensor | None:
        """The scoring matrix ``[N + 1, D]`` (an item's score is <user vector, its row>), computed
        once; None for models that score otherwise (popularity, co-visitation, ...). Retrieval
        indexes are built from it and candidates re-scored with it."""
        if not hasattr(self, "_item_embeddings"):
            with torch.no_grad():
                table = getattr(self.model, "output_embeddings", None)
                self._item_embeddings = None if table is None else table.detach().float().cpu().contiguous()
        return self._item_embeddings

    @torch.no_grad()
    def user_vectors(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``input_ids [B, L]`` -> the hidden states ``[B, D]`` that :meth:`score` multiplies with
        :attr:`item_embeddings` (``score == user_vectors @ item_embeddings.T`` but column 0).
        Callers check that identity on a probe before trusting it for a new architecture."""
        x = input_ids.to(self.device)
        if getattr(self.model, "objective", None) == "masked":
            # As the masked models' score_last: read at a [MASK] after the newest item, the
            # oldest step dropped when the input is already max_len long.
            keep = x if x.shape[1] < self.config.max_len else x[:, 1:]  # [B, L']
            mask = torch.full((x.shape[0], 1), self.model.mask_token, dtype=x.dtype, device=x.device)  # [B, 1]
            x = torch.cat([keep, mask], dim=1)  # [B, L' + 1]
        return self.model.forward(x)[:, -1, :].float().cpu()  # [B, D]

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
        encoded = self.encode_history(recent_item_ids)
        if not encoded:
            excluded = set(exclude) | (set(recent_item_ids) if self.exclude_seen else set())
            counts = self.popular_item_counts or [0] * len(self.popular_item_ids)
            ranked = [(i, float(c)) for i, c in zip(self.popular_item_ids, counts) if i not in excluded]
            return ranked[:k]
        x = torch.tensor([encoded], dtype=torch.long)  # [1, L]
        scores = self.score(x)[0].double().cpu()  # [N + 1]
        scores[0] = float("-inf")
        excluded_idx = self.excluded_indices(recent_item_ids, exclude)
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
            x = self.input_batch([encoded[i] for i in rows])  # [B, L]
            scores = self.score(x).double().cpu()  # [B, N + 1]
            scores[:, 0] = float("-inf")
            for r, i in enumerate(rows if self.exclude_seen else ()):
                seen = self.excluded_indices(histories[i])
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
