"""Offline sources: the Parquet files ``store.export_feature_data`` writes from the warehouse.

Feast stores each source's path in the registry when the definitions are applied, so the data
directory has to be known while this module is imported. It comes from the environment variable
``RECSYS_FEATURE_DATA_DIR``: ``store.apply_feature_repo`` sets it from ``Settings`` before it
loads this module, and a shell running the ``feast`` CLI exports it (see feature_store.yaml).
Without it, the directory of ``Settings.from_env()`` is used, i.e. ``$RECSYS_HOME/feature_data``
or the repository's ``.recsys/feature_data``.
"""

import os
from pathlib import Path

from feast import FileSource, PushSource

from features.store import (
    FEATURE_DATA_DIR_ENV,
    ITEM_FEATURES_FILE,
    TIMESTAMP_FIELD,
    USER_EVENTS_PUSH_SOURCE,
    USER_FEATURES_FILE,
)
from core.settings import Settings


def _feature_data_dir() -> Path:
    configured = os.environ.get(FEATURE_DATA_DIR_ENV, "")
    if not configured:
        return Settings.from_env().feature_data_dir
    path = Path(configured).expanduser()
    # The CLI changes into features/ before importing this file, so a relative path would
    # silently point inside the source tree.
    if not path.is_absolute():
        raise ValueError(f"{FEATURE_DATA_DIR_ENV} must be an absolute path, got {configured!r}")
    return path


FEATURE_DATA_DIR = _feature_data_dir()

user_features_source = FileSource(
    name="user_features_source",
    path=str(FEATURE_DATA_DIR / USER_FEATURES_FILE),
    timestamp_field=TIMESTAMP_FIELD,
    description="dbt mart user_features: one row per user and active day.",
)

item_features_source = FileSource(
    name="item_features_source",
    path=str(FEATURE_DATA_DIR / ITEM_FEATURES_FILE),
    timestamp_field=TIMESTAMP_FIELD,
    description="dbt mart item_features: one row per item and active day.",
)

# Streaming freshness: features/push.py pushes a user's updated recent-item list here as events
# arrive (PushMode.ONLINE), so recommendations react within the session. History still comes from
# the batch source: the events reach the lake, dbt and the export the next night.
user_events_push_source = PushSource(
    name=USER_EVENTS_PUSH_SOURCE,
    batch_source=user_features_source,
    description="Recent-item lists recomputed from live events (features/push.py).",
)
