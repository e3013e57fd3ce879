"""The feature side of ``POST /events`` for the reliability tests.

The small warehouse of tests/features applied (and materialized) into a real Feast online store,
and an API app whose service holds what the ``/events`` route reads: the settings and a real
feature store. The route needs nothing else of :class:`serving.recommendation_service.RecommendationService`
(no model, no MLflow registry), and building the whole service would cost most of these tests'
time.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from features import store as feature_ops
from features.definitions import apply_feature_repo
from features.export import export_feature_data
from features.materialize import materialize
from core.settings import Settings
from tests.features.test_feature_store import DAY0, DAY3, U1_LATEST, build_warehouse

__all__ = ["DAY0", "DAY3", "U1_LATEST", "EventsOnlyService", "applied", "events_app", "materialized"]

K = 3


def applied(home: Path, project: str = feature_ops.PROJECT, **overrides: Any) -> Settings:
    """Settings on ``home`` with the warehouse exported and the feature repo applied."""
    settings = Settings(home=home, max_sequence_length=K).replace(**overrides)
    build_warehouse(settings)
    export_feature_data(settings)
    apply_feature_repo(settings, project=project)
    return settings


def materialized(home: Path, project: str = feature_ops.PROJECT, **overrides: Any) -> Settings:
    """:func:`applied`, and the fixture week materialized online (u1: i1, i2, i3 at U1_LATEST)."""
    settings = applied(home, project, **overrides)
    materialize(settings, DAY0, DAY3, project=project)
    return settings


@dataclasses.dataclass
class EventsOnlyService:
    settings: Settings
    feature_store: Any
    metrics: Any = None

    def __post_init__(self) -> None:
        from serving.metrics import ServingMetrics

        self.metrics = self.metrics or ServingMetrics()


def events_app(settings: Settings, store: Any | None = None) -> FastAPI:
    """The real app with a service set by the caller (its lifespan then leaves it alone)."""
    from serving.app import create_app

    app = create_app(settings)
    app.state.service = EventsOnlyService(settings, store or feature_ops.feature_store(settings))
    return app
