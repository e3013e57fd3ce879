"""One user's answer: the champion's ranking for their recent items, or its training-period
popular items with the reason (``unknown_user``, ``no_known_items``, or the fault the service
met). The API, the batch path and the promotion smoke check build answers only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Recommendation:
    user_id: str
    items: list[dict[str, Any]]
    model_name: str
    model_version: str | None
    fallback: bool
    fallback_reason: str | None = None
    recent_item_ids: list[str] = field(default_factory=list)
    source: str = "model"  # "model", "precomputed" or "popularity"

    def to_dict(self) -> dict[str, Any]:
        """The response body. Shallow on purpose: ``items`` already hold plain dicts, and
        ``dataclasses.asdict`` would deep-copy them on every answer."""
        return {
            "user_id": self.user_id, "items": self.items, "model_name": self.model_name,
            "model_version": self.model_version, "fallback": self.fallback,
            "fallback_reason": self.fallback_reason, "recent_item_ids": self.recent_item_ids,
            "source": self.source,
        }


def popularity_answer(model, version: str | None, user_id: str, k: int, reason: str) -> Recommendation:
    items = [
        {"item_id": item_id, "score": None, "rank": rank}
        for rank, item_id in enumerate(model.popular_item_ids[:k], start=1)
    ]
    return Recommendation(user_id, items, model.model_name, version, fallback=True,
                          fallback_reason=reason, source="popularity")


def model_answer(model, version: str | None, user_id: str, recent: list[str],
                 ranked: Sequence[tuple[str, float]]) -> Recommendation:
    items = [
        {"item_id": item_id, "score": float(score), "rank": rank}
        for rank, (item_id, score) in enumerate(ranked, start=1)
    ]
    return Recommendation(user_id, items, model.model_name, version, fallback=False,
                          recent_item_ids=recent)


def answer(model, version: str | None, user_id: str, k: int, features: dict[str, Any] | None) -> Recommendation:
    """One user's answer from their online features (None: unknown); the single code path the
    API and the promotion smoke check share. Raises what the model raises."""
    recent = list((features or {}).get("recent_item_ids") or [])
    if not recent:
        return popularity_answer(model, version, user_id, k, "unknown_user")
    if not model.encode_history(recent):
        # The model would rank its popular items for this history: say so, not "model".
        rec = popularity_answer(model, version, user_id, k, "no_known_items")
        rec.recent_item_ids = recent
        return rec
    # The model applies its own seen-item rule (recorded with it at training time).
    return model_answer(model, version, user_id, recent, model.recommend(recent, k))


def has_known_items(model, recent: list[str]) -> bool:
    """Whether the model knows any of ``recent`` (false also when asking raised: :func:`answer`
    raises it again, and the user gets ``model_error``)."""
    try:
        return bool(model.encode_history(recent))
    except Exception:  # noqa: BLE001 - answer() raises it again and the user gets model_error
        return False
