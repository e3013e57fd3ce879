"""Offline sources: the Parquet files ``features.export`` writes from the warehouse.

Feast stores each source's path in the registry when the definitions are applied, so the sources
are built for one feature-data directory: ``features.definitions`` passes the one of the
Settings it applies, cli_definitions.py the one of ``Settings.from_env()`` for the ``feast`` CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from feast import FileSource, PushSource

from features.store import (
    ITEM_ATTRIBUTES_FILE,
    ITEM_FEATURES_FILE,
    TIMESTAMP_FIELD,
    USER_EVENTS_PUSH_SOURCE,
    USER_FEATURES_FILE,
)


class FeatureSources(NamedTuple):
    user_features: FileSource
    item_features: FileSource
    user_events_push: PushSource
    item_attributes: FileSource


def feature_sources(feature_data_dir: Path) -> FeatureSources:
    """The repo's sources reading the export in ``feature_data_dir``."""
    user_features = FileSource(
        name="user_features_source",
        path=str(feature_data_dir / USER_FEATURES_FILE),
        timestamp_field=TIMESTAMP_FIELD,
        description="dbt mart user_features: one row per user and active day.",
    )
    item_features = FileSource(
        name="item_features_source",
        path=str(feature_data_dir / ITEM_FEATURES_FILE),
        timestamp_field=TIMESTAMP_FIELD,
        description="dbt mart item_features: one row per item and active day.",
    )
    # Streaming freshness: features/push.py pushes a user's updated recent-item list here as
    # events arrive (PushMode.ONLINE), so recommendations react within the session. History still
    # comes from the batch source: the events reach the lake, dbt and the export the next night.
    user_events_push = PushSource(
        name=USER_EVENTS_PUSH_SOURCE,
        batch_source=user_features,
        description="Recent-item lists recomputed from live events (features/push.py).",
    )
    item_attributes = FileSource(
        name="item_attributes_source",
        path=str(feature_data_dir / ITEM_ATTRIBUTES_FILE),
        timestamp_field=TIMESTAMP_FIELD,
        description="dbt mart dim_item_attributes: one row per item with imported side information.",
    )
    return FeatureSources(user_features, item_features, user_events_push, item_attributes)
