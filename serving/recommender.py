"""Answering one recommendation request: online features, the champion model, the fallback.

Kept apart from the routes so tests and the demo call it without HTTP.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from pipeline.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Recommendation:
    user_id: str
    items: list[dict[str, Any]]
    model_name: str
    model_version: str | None
    fallback: bool
    fallback_reason: str | None = None
    recent_item_ids: list[str] = field(default_factory=list)


class NoChampion(RuntimeError):
    """No model carries the champion alias yet: the nightly DAG has never promoted one."""


class RecommendationService:
    """Holds one Feast store and the champion; both are built once, not per request."""

    def __init__(self, settings: Settings):
        from features.store import feature_store

        self.settings = settings
        self._store = feature_store(settings)
        self._lock = threading.Lock()
        self._model = None
        self._version: str | None = None
        self.reload_champion()

    @property
    def model_version(self) -> str | None:
        return self._version

    @property
    def model_name(self) -> str | None:
        return None if self._model is None else self._model.model_name

    def reload_champion(self) -> str | None:
        """Load the registry's current champion; keep the old one if none is there."""
        from training.recommender import load_champion

        loaded = load_champion(self.settings)
        if loaded is None:
            log.warning("no champion in the registry yet")
            return self._version
        model, version = loaded
        with self._lock:  # swap both together so a request never sees a mixed pair
            self._model, self._version = model, str(version)
        log.info("serving champion version %s (%s)", version, model.model_name)
        return self._version

    def recommend(self, user_id: str, k: int) -> Recommendation:
        from features.store import read_user_features

        with self._lock:
            model, version = self._model, self._version
        if model is None:
            raise NoChampion("no champion model has been promoted yet; run the nightly DAG")

        features = read_user_features(self._store, [user_id]).get(user_id)
        recent = list((features or {}).get("recent_item_ids") or [])
        if not recent:
            items = [
                {"item_id": item_id, "score": None, "rank": rank}
                for rank, item_id in enumerate(model.popular_item_ids[:k], start=1)
            ]
            return Recommendation(
                user_id, items, model.model_name, version, fallback=True,
                fallback_reason="unknown_user",
            )
        ranked = model.recommend(recent, k, exclude=set(recent))
        items = [
            {"item_id": item_id, "score": float(score), "rank": rank}
            for rank, (item_id, score) in enumerate(ranked, start=1)
        ]
        return Recommendation(
            user_id, items, model.model_name, version, fallback=False, recent_item_ids=recent
        )
