"""Answering recommendation requests: online features, the champion model, the fallbacks.

Kept apart from the routes so tests, the demo and the promotion smoke check call it without HTTP.

Robustness rules (a request never gets a 5xx once a champion is loaded):

* the Feast read runs on the event loop (Redis, natively async) or in a worker thread (SQLite,
  whose file lock would otherwise block the loop) and is given up after ``feature_timeout_ms``
  (``fallback_reason="feature_store_timeout"``); an error from it gives ``feature_store_error``;
* a user without online features gets ``unknown_user``; an exception from the model
  ``model_error``; every fallback answers the champion's training-period popular items, is
  logged and counted (``recsys_fallbacks_total{reason}``);
* the champion is swapped as one tuple, so a request sees one version, never a mix; a version
  that fails to load or to answer a smoke request is refused and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

from pipeline.settings import Settings

log = logging.getLogger(__name__)

# A batch reads all its users in one Feast call, given this many times the single-read timeout.
BATCH_TIMEOUT_FACTOR = 10


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
        ``dataclasses.asdict`` (a deep copy) costs a tenth of a millisecond per answer."""
        return {
            "user_id": self.user_id, "items": self.items, "model_name": self.model_name,
            "model_version": self.model_version, "fallback": self.fallback,
            "fallback_reason": self.fallback_reason, "recent_item_ids": self.recent_item_ids,
            "source": self.source,
        }


class NoChampion(RuntimeError):
    """No model carries the champion alias yet: the nightly DAG has never promoted one."""


class FeatureReadFailed(RuntimeError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


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
    # The model applies its own seen-item rule (recorded with it at training time).
    return model_answer(model, version, user_id, recent, model.recommend(recent, k))


class RecommendationService:
    """Holds one Feast store and the champion; both are built once, not per request."""

    def __init__(self, settings: Settings, metrics=None):
        from features.store import feature_store
        from serving.metrics import ServingMetrics

        self.settings = settings
        self.metrics = metrics or ServingMetrics()
        self._store = feature_store(settings)
        # Feature reads run here so that a hung online store costs a thread, not the request.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="features")
        self._reload_lock = threading.Lock()
        self._state: tuple[Any, str | None] = (None, None)  # (model, version), swapped as one
        self.refused: dict[str, str] = {}  # version -> why it was refused
        self._precomputed = None
        self._reader = None
        self._async_loop = None  # the event loop the online store's async client belongs to
        if settings.serving_mode not in ("live", "precomputed"):
            raise ValueError(f"serving_mode must be 'live' or 'precomputed', got {settings.serving_mode!r}")
        if settings.serving_mode == "precomputed":
            from serving.precompute import open_store

            self._precomputed = open_store(settings, timeout_s=self.timeout_s)
        self.reload_champion()
        self._warm_up()

    @property
    def feature_store(self):
        """The Feast store this service reads; pushes of live events go through it too."""
        return self._store

    def _warm_up(self) -> None:
        """One untimed read before the first request: Feast loads its registry and opens the
        online store's connection on the first read, which takes far longer than the timeout."""
        try:
            self._read(["__warm_up__"])
        except Exception as exc:  # noqa: BLE001 - requests will fall back and say why
            log.warning("online store not readable at start: %s", exc)

    @property
    def timeout_s(self) -> float:
        return self.settings.feature_timeout_ms / 1000.0

    @property
    def model_version(self) -> str | None:
        return self._state[1]

    @property
    def model_name(self) -> str | None:
        model = self._state[0]
        return None if model is None else model.model_name

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- champion

    def reload_champion(self, force: bool = False) -> dict[str, Any]:
        """Load the registry's current champion if it is not the one served; keep the old one
        when there is none or it fails to load. ``force`` retries a version refused before."""
        from training.recommender import ModelLoadError, champion_version, load_registered_version

        with self._reload_lock:  # the poller and POST /admin/reload never load twice at once
            before = self.model_version
            try:
                target = champion_version(self.settings)
            except Exception as exc:  # noqa: BLE001 - registry unreachable: keep serving
                log.error("cannot read the champion alias: %s", exc)
                return {"model_version": before, "changed": False, "error": f"registry: {exc}"}
            if target is None:
                if before is None:
                    log.warning("no champion in the registry yet")
                return {"model_version": before, "changed": False, "error": None}
            if target == before:
                return {"model_version": before, "changed": False, "error": None}
            if target in self.refused and not force:
                return {"model_version": before, "changed": False, "error": self.refused[target]}
            try:
                model = load_registered_version(self.settings, target)  # fully, smoke-tested
            except ModelLoadError as exc:
                self.refused[target] = str(exc)
                self.metrics.reloads.labels(outcome="refused").inc()
                log.error("refused champion v%s, still serving v%s: %s", target, before, exc)
                return {"model_version": before, "changed": False, "error": str(exc)}
            self._state = (model, target)  # one assignment: atomic for every reader
            self._reader = None  # re-resolve the feature views on the next read
            self.refused.pop(target, None)
            self.metrics.reloads.labels(outcome="swapped").inc()
            self.metrics.serving(model.model_name, target)
            log.info("serving champion v%s (%s), was v%s", target, model.model_name, before)
            return {"model_version": target, "changed": True, "error": None, "previous_version": before}

    # ---------------------------------------------------------------- requests

    def _current(self):
        model, version = self._state
        if model is None:
            raise NoChampion("no champion model has been promoted yet; run the nightly DAG")
        return model, version

    def _read(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        # UserFeatureReader: read_user_features' result without Feast's per-request planning
        # (several ms per call). Built lazily, so an API started before the first ``apply``
        # answers fallbacks until the repo exists, and rebuilt when the champion changes (after a
        # nightly run that may have re-applied the views).
        return self._user_reader().read(user_ids)

    def _user_reader(self):
        reader = self._reader
        if reader is None:
            from features.store import UserFeatureReader

            reader = self._reader = UserFeatureReader(self._store)
        return reader

    def _async_reader(self):
        """The reader when this event loop can read natively (Redis): its async client belongs to
        the first loop that used it, so another loop (a second test client) takes the thread path."""
        try:
            reader = self._user_reader()
        except Exception:  # noqa: BLE001 - the thread path reports the error as a fallback
            return None
        if not reader.reads_async:
            return None
        loop = asyncio.get_running_loop()
        if self._async_loop is None:
            self._async_loop = loop
        return reader if self._async_loop is loop else None

    def _fallback(self, model, version, user_id: str, k: int, reason: str, detail: str = "") -> Recommendation:
        self.metrics.fallbacks.labels(reason=reason).inc()
        if reason == "unknown_user":
            log.debug("fallback %s for user %r", reason, user_id)
        else:
            log.warning("fallback %s for user %r: %s", reason, user_id, detail)
        return popularity_answer(model, version, user_id, k, reason)

    def _lookup_precomputed(self, version: str, user_id: str, k: int) -> list | None:
        if self._precomputed is None:
            return None
        try:
            stored = self._precomputed.get(version, user_id)
        except Exception as exc:  # noqa: BLE001 - the live path still answers
            self.metrics.precomputed.labels(outcome="error").inc()
            log.warning("precomputed store unreadable: %s", exc)
            return None
        if stored is None or len(stored) < k:
            self.metrics.precomputed.labels(outcome="miss").inc()
            return None
        self.metrics.precomputed.labels(outcome="hit").inc()
        return stored[:k]

    def _finish(self, model, version, user_id: str, k: int,
                features: dict[str, Any] | None, error: FeatureReadFailed | None) -> Recommendation:
        if error is not None:
            return self._fallback(model, version, user_id, k, error.reason, str(error))
        if not (features or {}).get("recent_item_ids"):
            return self._fallback(model, version, user_id, k, "unknown_user")
        try:
            return answer(model, version, user_id, k, features)
        except Exception as exc:  # noqa: BLE001 - a model bug must not become a 5xx
            log.exception("model v%s failed for user %r", version, user_id)
            return self._fallback(model, version, user_id, k, "model_error", repr(exc))

    def _precomputed_answer(self, model, version, user_id, k) -> Recommendation | None:
        stored = self._lookup_precomputed(version, user_id, k)
        if stored is None:
            return None
        rec = model_answer(model, version, user_id, [], [(i, s) for i, s in stored])
        rec.source = "precomputed"
        return rec

    def recommend(self, user_id: str, k: int) -> Recommendation:
        """Blocking form (tests, the demo, the promotion smoke check)."""
        model, version = self._current()
        pre = self._precomputed_answer(model, version, user_id, k)
        if pre is not None:
            return pre
        features, error = None, None
        future = self._pool.submit(self._read, [user_id])
        try:
            features = future.result(timeout=self.timeout_s).get(user_id)
        except concurrent.futures.TimeoutError:
            future.cancel()
            error = FeatureReadFailed("feature_store_timeout", f"no answer within {self.timeout_s * 1000:.0f} ms")
        except Exception as exc:  # noqa: BLE001
            error = FeatureReadFailed("feature_store_error", repr(exc))
        return self._finish(model, version, user_id, k, features, error)

    async def _aread(self, user_ids: list[str], timeout_s: float):
        reader = self._async_reader()
        future = None
        try:
            # asyncio.timeout, not wait_for: no extra task and loop iteration per request.
            async with asyncio.timeout(timeout_s):
                if reader is not None:  # on this loop: no thread hop (a fifth of a request's time)
                    return await reader.aread(user_ids), None
                future = self._pool.submit(self._read, user_ids)
                return await asyncio.wrap_future(future), None
        except TimeoutError:
            if future is not None:
                future.cancel()
            return None, FeatureReadFailed("feature_store_timeout", f"no answer within {timeout_s * 1000:.0f} ms")
        except Exception as exc:  # noqa: BLE001
            return None, FeatureReadFailed("feature_store_error", repr(exc))

    async def arecommend(self, user_id: str, k: int) -> Recommendation:
        model, version = self._current()
        pre = self._precomputed_answer(model, version, user_id, k)
        if pre is not None:
            return pre
        found, error = await self._aread([user_id], self.timeout_s)
        features = None if found is None else found.get(user_id)
        # The forward pass runs on the event loop: ~1 ms for the served models, cheaper than a
        # second thread hop on a small machine.
        return self._finish(model, version, user_id, k, features, error)

    async def arecommend_many(self, user_ids: list[str], k: int) -> list[Recommendation]:
        """Many users: one Feast read, one batched forward pass, per-user fallbacks."""
        model, version = self._current()
        out: dict[str, Recommendation] = {}
        todo = []
        for user_id in dict.fromkeys(user_ids):
            pre = self._precomputed_answer(model, version, user_id, k)
            if pre is not None:
                out[user_id] = pre
            else:
                todo.append(user_id)
        if todo:
            found, error = await self._aread(todo, self.timeout_s * BATCH_TIMEOUT_FACTOR)
            histories = {}
            for user_id in todo:
                features = None if found is None else found.get(user_id)
                recent = list((features or {}).get("recent_item_ids") or [])
                if error is not None or not recent:
                    out[user_id] = self._finish(model, version, user_id, k, features, error)
                else:
                    histories[user_id] = recent
            if histories:
                try:
                    ranked = model.recommend_many(list(histories.values()), k)
                    for (user_id, recent), items in zip(histories.items(), ranked):
                        out[user_id] = model_answer(model, version, user_id, recent, items)
                except Exception as exc:  # noqa: BLE001
                    log.exception("model v%s failed on a batch of %d users", version, len(histories))
                    for user_id in histories:
                        out[user_id] = self._fallback(model, version, user_id, k, "model_error", repr(exc))
        return [out[user_id] for user_id in user_ids]
