"""Prometheus metrics of the recommendation API, exposed at ``GET /metrics`` (text format).

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several apps in one
process (tests) never collide on metric names, and the default registry's process collectors do
not leak in.

* ``recsys_requests_total{endpoint, status}`` - answered requests by route template and status code;
* ``recsys_request_latency_seconds{endpoint}`` - histogram of the time spent in the app;
* ``recsys_fallbacks_total{reason}`` - users answered from popularity, by reason
  (``unknown_user``, ``feature_store_timeout``, ``feature_store_error``, ``model_error``);
* ``recsys_model_info{model_name, model_version}`` - 1 for the version being served;
* ``recsys_model_reloads_total{outcome}`` - champion reload attempts (``swapped``, ``refused``);
* ``recsys_precomputed_total{outcome}`` - precomputed-mode lookups (``hit``, ``miss``, ``error``).
"""

from __future__ import annotations

import warnings

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FALLBACK_REASONS = ("unknown_user", "feature_store_timeout", "feature_store_error", "model_error")
# Milliseconds matter here: the target is p99 <= 20 ms.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
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
        for outcome in ("swapped", "refused"):
            self.reloads.labels(outcome=outcome)
        self.precomputed = Counter("recsys_precomputed", "Precomputed-mode lookups by outcome",
                                   ["outcome"], registry=self.registry)

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

    def render(self) -> bytes:
        return generate_latest(self.registry)
