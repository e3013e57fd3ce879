"""The repo's Feast objects for one feature-data directory, and their registration.

:func:`feature_definitions` builds the entities, sources, views and services the way the
``feast`` CLI finds them in cli_definitions.py, for any directory; :func:`apply_feature_repo`
registers them for a Settings with ``FeatureStore.apply``, as ``feast apply`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from core.settings import Settings
from features.store import PROJECT, feature_store

if TYPE_CHECKING:
    from features.entities import FeatureEntities
    from features.data_sources import FeatureSources
    from features.feature_services import FeatureServices
    from features.feature_views import FeatureViews

# How apply_feature_repo names each kind of object in its result.
_KIND_LABELS = {
    "entities": "entity",
    "data_sources": "data_source",
    "feature_views": "feature_view",
    "feature_services": "feature_service",
}


class FeatureDefinitions(NamedTuple):
    entities: FeatureEntities
    data_sources: FeatureSources
    feature_views: FeatureViews
    feature_services: FeatureServices

    def objects(self) -> list[Any]:
        return [*self.entities, *self.data_sources, *self.feature_views, *self.feature_services]


def feature_definitions(feature_data_dir: Path) -> FeatureDefinitions:
    """Every object of the repo, the sources reading the export in ``feature_data_dir``.

    New objects on each call: Feast's apply stamps the objects it registers with the registry's
    times, and the sources hold their directory, so no object is shared between two Settings.
    """
    # Here rather than at the top: the definition modules import Feast, which takes seconds,
    # and callers that only import this module (DAG parsing) should not pay for it.
    from features.data_sources import feature_sources
    from features.entities import feature_entities
    from features.feature_services import feature_services
    from features.feature_views import feature_views

    entities = feature_entities()
    sources = feature_sources(feature_data_dir)
    views = feature_views(entities, sources)
    return FeatureDefinitions(
        entities=entities,
        data_sources=sources,
        feature_views=views,
        feature_services=feature_services(views),
    )


def apply_feature_repo(settings: Settings, *, project: str = PROJECT) -> list[str]:
    """Register the repo's definitions for ``settings``, as ``feast apply`` does; idempotent.

    Objects of the project no longer defined are deleted with their online tables, as the CLI
    deletes them; a source whose export is missing or lacks its timestamp is logged as the CLI
    logs it. Returns the registered objects as ``"<kind>:<name>"``, sorted.
    """
    definitions = feature_definitions(settings.feature_data_dir)
    store = feature_store(settings, project=project, redis_batch=True)
    for view in definitions.feature_views:
        view.batch_source.validate(store.config)

    registered = {
        "data_sources": store.list_data_sources(),
        "entities": store.list_entities(),
        "feature_views": store.list_all_feature_views(),
        "feature_services": store.list_feature_services(),
    }
    defined = {kind: {o.name for o in objects} for kind, objects in definitions._asdict().items()}
    stale = [o for kind, objects in registered.items() for o in objects
             if o.name not in defined[kind]]
    store.apply(definitions.objects(), objects_to_delete=stale, partial=False)

    return sorted(f"{_KIND_LABELS[kind]}:{name}" for kind, names in defined.items() for name in names)
