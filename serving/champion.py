"""The model serving holds, and the only way one gets there: a verified load.

The registry's ``champion`` alias says which version to serve; the version's signed decision
record says whether it may. :meth:`Champion.reload` downloads the alias's version, copies the
checkpoint into a private folder, checks that copy against the record
(:func:`registry.decision_record.verify_servable`: a record exists, is signed with the platform's
key, passed or was forced by a person, and names this file's SHA-256), then loads and
smoke-tests that same copy and swaps it in. A refused version is reported (``champion_refused``
in ``/health``, ``recsys_champion_refused{version}`` and ``recsys_model_reloads_total{outcome=
"refused"}``) and the current model keeps serving.

Every version loaded this way is kept as the last good copy (:mod:`serving.last_good`). At start,
when the champion cannot be loaded (registry unreachable or silent, no alias, alias on a broken
or refused version), that copy serves and the status is ``degraded`` until the poller loads the
registry's champion.

Status (``/health``): ``ok`` - serving the version the alias points at; ``degraded`` - serving,
but not the champion (the last good copy, or the previous model while the alias points at a
version that cannot serve); ``no_model`` - nothing to serve.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable

from core.settings import Settings

log = logging.getLogger(__name__)

# At start the registry gets at least this long (or one poll interval, if longer) before the last
# good copy serves: an unreachable MLflow server is retried with backoff for minutes. The attempt
# goes on in the background and swaps the champion in if it succeeds.
START_WAIT_S = 60.0
NO_PROMOTION_YET = "no champion model has been promoted yet; run the nightly DAG"


class RegistryUnavailable(RuntimeError):
    """The registry or its artifact store did not answer; retried on the next poll."""


class Champion:
    def __init__(self, settings: Settings, metrics, on_swap: Callable[[], None] = lambda: None):
        from serving.last_good import LastGood

        self.settings = settings
        self.metrics = metrics
        self.on_swap = on_swap
        self.last_good = LastGood(settings)
        self.state: tuple[Any, str | None] = (None, None)  # (model, version), swapped as one
        # How the served model ranks: {"mode": "ann" | "exact", "reason"} (serving.ann_retrieval);
        # the index is part of the model object, so it is swapped with it.
        self.retrieval: dict[str, Any] = {"mode": None, "reason": None}
        self.source: str | None = None  # "registry" or "last_good"
        self.refused: dict[str, str] = {}  # version -> why it was refused
        self._refused_tags: dict[str, Any] = {}  # version -> its record tags when refused
        # Why the served model is not the registry's champion (None: it is): {version, reason,
        # refused}. Replaced whole, never mutated, so a reader sees one consistent value.
        self.problem: dict[str, Any] | None = None
        self._last_good_reason: str | None = None
        self._last_good_error: str | None = None
        self._reload_lock = threading.Lock()  # the poller and /admin/reload never load twice at once
        self._swap_lock = threading.RLock()  # state, source, problem and health change together
        self.health: dict[str, Any] = {}
        self._publish()

    # ---------------------------------------------------------------- start

    def start(self) -> None:
        """The registry's champion; when it cannot serve, the last good local copy."""
        def attempt() -> None:
            try:
                self.reload()
            except Exception as exc:  # noqa: BLE001 - logged; the copy below still serves
                log.exception("loading the champion at start failed")
                self._set_problem(None, f"loading the champion failed ({type(exc).__name__})")

        thread = threading.Thread(target=attempt, name="champion-start", daemon=True)
        thread.start()
        wait_s = max(START_WAIT_S, self.settings.champion_poll_seconds)
        thread.join(wait_s)
        if self.state[0] is not None:
            return
        problem = self.problem
        if thread.is_alive():
            reason = f"the registry did not answer within {wait_s:g} s at start"
        else:
            reason = problem["reason"] if problem else NO_PROMOTION_YET
        self._serve_last_good(reason)

    def _serve_last_good(self, reason: str) -> None:
        from serving.last_good import LastGoodUnusable

        try:
            model, version = self.last_good.load()
            model, retrieval = self._with_index(model, self.last_good.link, self.last_good.recorded_digest())
        except LastGoodUnusable as exc:
            if reason == NO_PROMOTION_YET:  # a new installation: nothing was ever served
                log.warning("nothing to serve yet: %s", reason)
                return
            log.error("nothing to serve (%s); %s", reason, exc)
            with self._swap_lock:
                self._last_good_error = str(exc)
                self._publish()
            return
        with self._swap_lock:
            if self.state[0] is not None:
                return  # the registry answered meanwhile: its champion wins
            self._last_good_reason = reason
            self._install(model, version, "last_good", retrieval)
        self.metrics.reloads.labels(outcome="last_good").inc()
        log.warning("serving the last good copy of v%s: %s", version, reason)

    # ---------------------------------------------------------------- reload

    def reload(self, force: bool = False) -> dict[str, Any]:
        """Load the registry's current champion if it is not the one served and its record lets
        it serve; keep the current model otherwise. ``force`` retries a version refused before
        (the poller retries one only when its record tags changed)."""
        from registry.decision_record import DecisionRefused
        from registry.versions import ModelLoadError, champion_version
        from registry.versions import mlflow_client

        name = self.settings.registered_model_name
        with self._reload_lock:
            before = self.state[1]
            kept = {"model_version": before, "changed": False, "error": None}
            try:
                client = mlflow_client(self.settings)
                target = champion_version(self.settings, client)
            except Exception as exc:  # noqa: BLE001 - registry unreachable: keep serving
                log.error("cannot read the champion alias: %s", exc)
                if self.source != "registry":  # while serving the champion, a blip changes nothing
                    self._set_problem(None, f"registry unreachable ({type(exc).__name__})")
                return kept | {"error": f"registry: {exc}"}
            if target is None:
                if before is None:
                    log.warning("no champion in the registry yet")
                self._set_problem(None, NO_PROMOTION_YET if before is None
                                  else f"the registry has no {self.settings.champion_alias!r} alias")
                return kept
            if target == before and self.source == "registry":
                self._set_problem(None, None)
                return kept
            if target in self.refused and not force:
                if self._record_tags(client, target) == self._refused_tags.get(target):
                    return kept | {"error": self.refused[target]}
                log.info("v%s's decision record changed since it was refused: checking it again", target)
            try:
                model, staged, record, tags, retrieval = self._load_verified(client, target)
            except RegistryUnavailable as exc:
                log.error("champion v%s not loaded, still serving v%s: %s", target, before, exc)
                self._set_problem(target, str(exc))
                return kept | {"error": str(exc)}
            except (DecisionRefused, ModelLoadError) as exc:
                # Counted and reported before the refusal is remembered: a reader that sees
                # the version in ``refused`` also sees it in the metrics.
                self.metrics.reloads.labels(outcome="refused").inc()
                self._set_problem(target, str(exc), refused=True)
                self.refused[target] = str(exc)
                self._refused_tags[target] = self._record_tags(client, target)
                log.error("refused champion v%s (%s), still serving v%s: %s", target, name, before, exc)
                return kept | {"error": str(exc)}
            with self._swap_lock:
                self.problem = None
                self._install(model, target, "registry", retrieval)
            self.refused.pop(target, None)
            self._refused_tags.pop(target, None)
            self.metrics.reloads.labels(outcome="swapped").inc()
            log.info("serving champion v%s (%s), was v%s", target, model.model_name, before)
            self._keep(staged, target, record, tags)
            return {"model_version": target, "changed": True, "error": None, "previous_version": before}

    def _load_verified(self, client, version: str):
        """``(model, staged copy, record, tags, retrieval)``: the checkpoint (and its retrieval
        index) is copied once, and the copy is what is checked against the record and loaded."""
        from registry.decision_record import RECORD_TAG, verify_servable
        from registry.versions import ModelLoadError, download_registered_checkpoint, load_recommender

        name = self.settings.registered_model_name
        staged = self.last_good.stage()
        try:
            # The messages raised here are shown in /health: no address, path or library
            # message (those are logged).
            try:
                checkpoint = staged.take(download_registered_checkpoint(self.settings, version, client))
            except Exception as exc:  # noqa: BLE001 - the store's own errors: retry next poll
                log.error("downloading %s v%s failed: %s: %s", name, version, type(exc).__name__, exc)
                raise RegistryUnavailable(f"{name} v{version} could not be downloaded "
                                          f"({type(exc).__name__})") from exc
            record = verify_servable(self.settings, client, version, checkpoint)
            try:
                model = load_recommender(checkpoint)
                model.smoke_test()
            except Exception as exc:  # noqa: BLE001 - whatever broke, this version cannot serve
                log.error("loading %s v%s failed: %s: %s", name, version, type(exc).__name__, exc)
                raise ModelLoadError(f"{name} v{version} cannot be loaded ({type(exc).__name__})") from exc
            model, retrieval = self._with_index(model, checkpoint.parent, record["artifact_sha256"])
            tags = client.get_model_version(name, version).tags or {}
        except BaseException:  # DecisionRefused and ModelLoadError included: nothing is kept
            staged.discard()
            raise
        if json.loads(tags.get(RECORD_TAG) or "null") != record:
            tags = None  # the record changed after the check: keep no copy of this load
        return model, staged, record, tags, retrieval

    def _with_index(self, model, folder, checkpoint_sha256: str):
        """``(model, retrieval)``: above the catalog threshold, the model with its version's
        retrieval index; exact scoring (and why) otherwise. Never raises."""
        from serving.ann_retrieval import with_index

        return with_index(self.settings, model, folder, checkpoint_sha256)

    def _keep(self, staged, version: str, record: dict[str, Any], tags: dict[str, str] | None) -> None:
        """Make this load the last good copy; failing to (a full disk) never stops serving."""
        try:
            if tags is None or self.last_good.holds(version, record["artifact_sha256"]):
                staged.discard()
                return
            staged.keep(version, tags)
            self.metrics.last_good_saves.labels(outcome="saved").inc()
        except Exception as exc:  # noqa: BLE001
            staged.discard()
            self.metrics.last_good_saves.labels(outcome="failed").inc()
            log.error("could not keep v%s as the last good copy: %s", version, exc)

    def _record_tags(self, client, version: str) -> Any:
        from registry.decision_record import RECORD_TAG, SIGNATURE_TAG

        try:
            tags = client.get_model_version(self.settings.registered_model_name, version).tags or {}
        except Exception:  # noqa: BLE001 - unknown: differs from any stored value, so retried
            return object()
        return tags.get(RECORD_TAG), tags.get(SIGNATURE_TAG)

    # ---------------------------------------------------------------- state

    def _install(self, model, version: str, source: str, retrieval: dict[str, Any]) -> None:
        with self._swap_lock:
            self.state = (model, version)  # one assignment: atomic for every reader
            self.source = source
            self.retrieval = retrieval
            self.on_swap()
            self.metrics.serving(model.model_name, version)
            self._publish()

    def _set_problem(self, version: str | None, reason: str | None, refused: bool = False) -> None:
        with self._swap_lock:
            self.problem = None if reason is None else {"version": version, "reason": reason, "refused": refused}
            self._publish()

    def _publish(self) -> None:
        """Recompute the health snapshot and the status gauges (``/health`` reads the snapshot
        only, so it never waits on a load)."""
        model, version = self.state
        problem = self.problem
        if model is None:
            status = "no_model"
            reason = (problem or {}).get("reason") or NO_PROMOTION_YET
            if self._last_good_error:
                reason = f"{reason}; {self._last_good_error}"
        elif problem is not None:
            status, reason = "degraded", problem["reason"]
        elif self.source != "registry":
            status, reason = "degraded", self._last_good_reason
        else:
            status, reason = "ok", None
        refused = ({"version": problem["version"], "reason": problem["reason"]}
                   if problem and problem["refused"] else None)
        self.health = {
            "status": status, "model_name": None if model is None else model.model_name,
            "model_version": version, "served_from": self.source if model is not None else None,
            "reason": reason, "champion_refused": refused,
            "retrieval": None if model is None else self.retrieval["mode"],
            "retrieval_reason": None if model is None else self.retrieval["reason"],
        }
        self.metrics.status(status, None if refused is None else refused["version"])
