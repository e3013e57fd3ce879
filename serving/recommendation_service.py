"""Answering recommendation requests: online features, the champion model, the fallbacks.

Kept apart from the routes so tests, the demo and the promotion smoke check call it without HTTP.

Robustness rules (a request never gets a 5xx once a champion is loaded):

* the Feast read runs on the event loop (Redis, natively async) or in a worker thread (SQLite,
  whose file lock would otherwise block the loop) and is given up after ``feature_timeout_ms``
  (``fallback_reason="feature_store_timeout"``); an error from it gives ``feature_store_error``;
* the timeout measures the store, not a busy loop: single-user forwards run on the loop one per
  loop pass (:func:`serving.overload.forward_turn`), so replies are read between two forwards; a
  threaded read that finished is used even when the loop noticed it after the deadline;
* a batch (read, forward, answers and its JSON) runs in a pool of ``serving_batch_workers``
  threads, off the event loop, so ``/health`` and single requests answer during a batch flood;
* a user without online features gets ``unknown_user``; one whose recent items are all unknown
  to the model ``no_known_items``; an exception from the model ``model_error``; every fallback
  answers the champion's training-period popular items (``source: "popularity"``), is logged
  and counted (``recsys_fallbacks_total{reason}``);
* the champion is swapped as one tuple, so a request sees one version, never a mix; a version
  that fails to load or to answer a smoke request is refused and the old one keeps serving.

Trust (the alias alone never makes a version live): a version is loaded only when its signed
decision record passed (or a person forced it) and names the digest of the very file loaded
(:func:`registry.decision_record.verify_servable`); anything else is refused, reported in
``/health`` (``champion_refused``) and ``/metrics``, and the current model keeps serving. Each
verified version is kept on local disk (:mod:`serving.last_good`); when the champion cannot be
loaded at start, that copy serves and ``/health`` says ``degraded`` until the registry's
champion loads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from typing import Any

from core.settings import Settings
from serving.answers import Recommendation, answer, has_known_items, model_answer, popularity_answer

log = logging.getLogger(__name__)

# A batch reads all its users in one Feast call, given this many times the single-read timeout.
BATCH_TIMEOUT_FACTOR = 10
_BATCH_POOL_LOCK = threading.Lock()


class NoChampion(RuntimeError):
    """No model carries the champion alias yet: the nightly DAG has never promoted one."""


class FeatureReadFailed(RuntimeError):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class RecommendationService:
    """Holds one Feast store and the champion; both are built once, not per request."""

    def __init__(self, settings: Settings, metrics=None):
        from features.store import feature_store
        from serving.champion import Champion
        from serving.metrics import ServingMetrics

        self.settings = settings
        self.metrics = metrics or ServingMetrics()
        self._store = feature_store(settings)
        # Feature reads run here so that a hung online store costs a thread, not the request.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="features")
        # The served model and the only way one gets there (a verified load): serving.champion.
        self.champion = Champion(settings, self.metrics, on_swap=self._forget_reader)
        self.refused = self.champion.refused  # version -> why it was refused
        self._precomputed = None
        self._reader = None
        self._async_loop = None  # the event loop the online store's async client belongs to
        if settings.serving_mode not in ("live", "precomputed"):
            raise ValueError(f"serving_mode must be 'live' or 'precomputed', got {settings.serving_mode!r}")
        if settings.serving_mode == "precomputed":
            from serving.precompute import open_store

            self._precomputed = open_store(settings, timeout_s=self.timeout_s)
        self.champion.start()
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
    def _state(self) -> tuple[Any, str | None]:
        """(model, version), swapped as one."""
        return self.champion.state

    @property
    def health(self) -> dict[str, Any]:
        """The ``/health`` body: a snapshot replaced on every change, so reading it never waits."""
        return self.champion.health

    def _forget_reader(self) -> None:
        self._reader = None  # re-resolve the feature views on the next read

    @property
    def model_version(self) -> str | None:
        return self._state[1]

    @property
    def model_name(self) -> str | None:
        model = self._state[0]
        return None if model is None else model.model_name

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        batch_pool = getattr(self, "_batch_pool", None)
        if batch_pool is not None:
            batch_pool.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------- champion

    def reload_champion(self, force: bool = False) -> dict[str, Any]:
        """Load the registry's current champion if it is not the one served and its signed
        decision record lets it serve; keep the current model otherwise. ``force`` retries a
        version refused before (see :meth:`serving.champion.Champion.reload`)."""
        return self.champion.reload(force=force)

    # ---------------------------------------------------------------- requests

    def _current(self):
        model, version = self._state
        if model is None:
            from serving.champion import NO_PROMOTION_YET

            reason = self.champion.health.get("reason") or NO_PROMOTION_YET
            raise NoChampion(reason if reason.startswith("no champion") else f"no champion model can be served: {reason}")
        return model, version

    def _read(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        # UserFeatureReader: read_user_features' result without Feast's per-request planning.
        # Built lazily, so an API started before the first ``apply``
        # answers fallbacks until the repo exists, and rebuilt when the champion changes (after a
        # nightly run that may have re-applied the views).
        return self._user_reader().read(user_ids)

    def _user_reader(self):
        reader = self._reader
        if reader is None:
            from features.online_reader import UserFeatureReader

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
        self._count_fallback(reason, user_id, detail)
        return popularity_answer(model, version, user_id, k, reason)

    def _count_fallback(self, reason: str, user_id: str, detail: str = "") -> None:
        self.metrics.fallbacks.labels(reason=reason).inc()
        if reason in ("unknown_user", "no_known_items"):  # what the data says, not a fault
            log.debug("fallback %s for user %r", reason, user_id)
        else:
            log.warning("fallback %s for user %r: %s", reason, user_id, detail)

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
        try:
            rec = answer(model, version, user_id, k, features)
        except Exception as exc:  # noqa: BLE001 - a model bug must not become a 5xx
            log.exception("model v%s failed for user %r", version, user_id)
            return self._fallback(model, version, user_id, k, "model_error", repr(exc))
        if rec.fallback:
            self._count_fallback(rec.fallback_reason, user_id)
        return rec

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
        found, error = self._read_within([user_id], self.timeout_s)
        return self._finish(model, version, user_id, k, None if found is None else found.get(user_id), error)

    def _read_within(self, user_ids: list[str], timeout_s: float):
        """(features by user, None) or (None, why): the read in the pool, given up after
        ``timeout_s`` (the thread stays with a hung store; the caller does not)."""
        future = self._pool.submit(self._read, user_ids)
        try:
            return future.result(timeout=timeout_s), None
        except concurrent.futures.TimeoutError:
            future.cancel()
            return None, FeatureReadFailed("feature_store_timeout", f"no answer within {timeout_s * 1000:.0f} ms")
        except Exception as exc:  # noqa: BLE001
            return None, FeatureReadFailed("feature_store_error", repr(exc))

    async def _aread(self, user_ids: list[str], timeout_s: float):
        reader = self._async_reader()
        future = None
        try:
            # asyncio.timeout, not wait_for: no extra task and loop iteration per request.
            async with asyncio.timeout(timeout_s):
                if reader is not None:  # on this loop: no thread hop
                    return await reader.aread(user_ids), None
                future = self._pool.submit(self._read, user_ids)
                return await asyncio.wrap_future(future), None
        except TimeoutError:
            if future is not None and future.done() and not future.cancelled():
                # The thread has the answer; only this loop, busy, saw it after the deadline.
                try:
                    return future.result(), None
                except Exception as exc:  # noqa: BLE001
                    return None, FeatureReadFailed("feature_store_error", repr(exc))
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
        if error is None and (features or {}).get("recent_item_ids"):
            # The forward runs on the event loop (cheaper than a thread hop for one user), in
            # turn: one per loop pass, so other requests' replies are read in between.
            from serving.overload import forward_turn

            await forward_turn()
        return self._finish(model, version, user_id, k, features, error)

    def _batch_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        pool = getattr(self, "_batch_pool", None)
        if pool is None:
            with _BATCH_POOL_LOCK:  # two test clients (two loops, two threads) may race here
                pool = getattr(self, "_batch_pool", None)
                if pool is None:
                    pool = self._batch_pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=max(1, self.settings.serving_batch_workers), thread_name_prefix="batch")
        return pool

    async def arecommend_many(self, user_ids: list[str], k: int) -> list[Recommendation]:
        """:meth:`recommend_many` in the batch pool: the event loop only waits for it."""
        self._current()  # NoChampion at once
        return await asyncio.wrap_future(self._batch_executor().submit(self.recommend_many, user_ids, k))

    async def arecommend_many_body(self, user_ids: list[str], k: int) -> bytes:
        """The batch route's JSON body, answers and encoding both in the batch pool."""
        from serving.overload import batch_body

        self._current()
        return await asyncio.wrap_future(self._batch_executor().submit(
            lambda: batch_body(self.recommend_many(user_ids, k))))

    def recommend_many(self, user_ids: list[str], k: int) -> list[Recommendation]:
        """Many users, blocking: one Feast read, one batched forward pass, per-user fallbacks."""
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
            found, error = self._read_within(todo, self.timeout_s * BATCH_TIMEOUT_FACTOR)
            if error is not None:
                out |= self._batch_fallback(model, version, todo, k, error.reason, str(error))
                todo = []
            histories = {}
            for user_id in todo:
                features = found.get(user_id)
                recent = list((features or {}).get("recent_item_ids") or [])
                if recent and has_known_items(model, recent):
                    histories[user_id] = recent
                else:  # a fallback, with its reason
                    out[user_id] = self._finish(model, version, user_id, k, features, None)
            if histories:
                try:
                    ranked = model.recommend_many(list(histories.values()), k)
                    for (user_id, recent), items in zip(histories.items(), ranked):
                        out[user_id] = model_answer(model, version, user_id, recent, items)
                except Exception as exc:  # noqa: BLE001
                    log.exception("model v%s failed on a batch of %d users", version, len(histories))
                    out |= self._batch_fallback(model, version, list(histories), k, "model_error", repr(exc))
        return [out[user_id] for user_id in user_ids]

    def _batch_fallback(self, model, version, user_ids: list[str], k: int, reason: str,
                        detail: str) -> dict[str, Recommendation]:
        """The same fallback for many users: counted for each, logged once."""
        self.metrics.fallbacks.labels(reason=reason).inc(len(user_ids))
        log.warning("fallback %s for a batch of %d users: %s", reason, len(user_ids), detail)
        return {user_id: popularity_answer(model, version, user_id, k, reason) for user_id in user_ids}
