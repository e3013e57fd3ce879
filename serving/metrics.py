"""Prometheus metrics of the recommendation API, exposed at ``GET /metrics`` (text format).

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several apps in one
process (tests) never collide on metric names, and the default registry's process collectors do
not leak in. Their values are kept in memory even after Feast switched prometheus_client to its
file-backed multiprocess mode (see :func:`_in_memory_values`).

* ``recsys_requests_total{endpoint, status}`` - answered requests by route template and status code;
* ``recsys_request_latency_seconds{endpoint}`` - histogram of the time spent in the app;
* ``recsys_fallbacks_total{reason}`` - users answered from popularity, by reason
  (``unknown_user``, ``no_known_items``, ``feature_store_timeout``, ``feature_store_error``,
  ``model_error``);
* ``recsys_shed_requests_total{endpoint}`` - requests refused with 429 because too many were in
  flight (serving.overload);
* ``recsys_requests_in_flight`` - requests being answered now (those the shedding counts);
* ``recsys_model_info{model_name, model_version}`` - 1 for the version being served;
* ``recsys_model_reloads_total{outcome}`` - champion reload attempts (``swapped``, ``refused``;
  ``last_good``: the local copy of the last verified version loaded at start);
* ``recsys_serving_status{status}`` - 1 for the current ``/health`` status (``ok``, ``degraded``,
  ``no_model``), 0 for the others;
* ``recsys_champion_refused{version}`` - 1 while the champion alias points at this version and
  serving refused it (no, failed, unsigned or forged decision record; replaced or broken artifact);
* ``recsys_last_good_saves_total{outcome}`` - keeping a verified version as the local copy
  (``saved``, ``failed``: the copy on disk is older than the model served);
* ``recsys_precomputed_total{outcome}`` - precomputed-mode lookups (``hit``, ``miss``, ``error``).
"""

from __future__ import annotations

import warnings

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values

FALLBACK_REASONS = ("unknown_user", "no_known_items", "feature_store_timeout", "feature_store_error",
                    "model_error")
SERVING_STATUSES = ("ok", "degraded", "no_model")
# Milliseconds matter here: the target is p99 <= 20 ms.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


def _in_memory_values() -> None:
    """Keep metric values in this process's memory.

    Importing ``feast.metrics`` before prometheus_client (Feast does so lazily, inside
    materialize and ``get_online_features``) sets ``PROMETHEUS_MULTIPROC_DIR`` for Feast's
    gunicorn feature server, and prometheus_client then backs every metric of the process with
    files keyed by metric name: two apps in one process would count into each other's
    ``recsys_model_reloads_total``. The API exports its own registry per app and never runs
    Feast's feature server, so the plain in-memory values are the right ones here.
    """
    if prometheus_values.ValueClass is not prometheus_values.MutexValue:
        prometheus_values.ValueClass = prometheus_values.MutexValue


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        _in_memory_values()
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_requests", "Answered HTTP requests", ["endpoint", "status"],
                                registry=self.registry)
        self.latency = Histogram("recsys_request_latency_seconds", "Time spent answering a request",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.fallbacks = Counter("recsys_fallbacks", "Users answered from popularity, by reason",
                                 ["reason"], registry=self.registry)
        for reason in FALLBACK_REASONS:  # present at 0 from the start, so rates are defined
            self.fallbacks.labels(reason=reason)
        self.model_info = Gauge("recsys_model_info", "The model version being served (value 1)",
                                ["model_name", "model_version"], registry=self.registry)
        self.reloads = Counter("recsys_model_reloads", "Champion reload attempts by outcome",
                               ["outcome"], registry=self.registry)
        for outcome in ("swapped", "refused", "last_good"):
            self.reloads.labels(outcome=outcome)
        self.serving_status = Gauge("recsys_serving_status", "The /health status (value 1 for the current one)",
                                    ["status"], registry=self.registry)
        self.champion_refused = Gauge("recsys_champion_refused",
                                      "1 for the champion alias's version while serving refuses it",
                                      ["version"], registry=self.registry)
        self.last_good_saves = Counter("recsys_last_good_saves", "Verified versions kept on local disk, by outcome",
                                       ["outcome"], registry=self.registry)
        for outcome in ("saved", "failed"):
            self.last_good_saves.labels(outcome=outcome)
        self.precomputed = Counter("recsys_precomputed", "Precomputed-mode lookups by outcome",
                                   ["outcome"], registry=self.registry)
        self.shed = Counter("recsys_shed_requests", "Requests refused with 429: too many in flight",
                            ["endpoint"], registry=self.registry)
        for endpoint in ("/recommendations/{user_id}", "/recommendations/batch"):
            self.shed.labels(endpoint=endpoint)  # present at 0, so rates are defined
        self.in_flight = Gauge("recsys_requests_in_flight", "Requests being answered now (shedding counts these)",
                               registry=self.registry)

    def serving(self, model_name: str | None, model_version: str | None) -> None:
        previous = getattr(self, "_served", None)
        if previous is not None:
            with warnings.catch_warnings():  # "not implemented in multi-process mode": not used here
                warnings.simplefilter("ignore", UserWarning)
                self.model_info.remove(*previous)
        self._served = None
        if model_version is not None:
            self._served = (model_name or "", model_version)
            self.model_info.labels(*self._served).set(1)

    def status(self, status: str, refused_version: str | None) -> None:
        """Set the status gauges (called with the ``/health`` snapshot, under its lock)."""
        for name in SERVING_STATUSES:
            self.serving_status.labels(status=name).set(1 if name == status else 0)
        previous = getattr(self, "_refused_version", None)
        if previous is not None and previous != refused_version:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.champion_refused.remove(previous)
        self._refused_version = refused_version
        if refused_version is not None:
            self.champion_refused.labels(version=refused_version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
