"""Feature views over the exported warehouse marts (contract: docs/architecture.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from feast import FeatureView, Field
from feast.types import Array, Int64, String

from features.data_sources import FeatureSources
from features.entities import FeatureEntities
from features.store import ITEM_ATTRIBUTES_VIEW

# A user's features stay valid for a quarter: long enough that occasional shoppers still get
# personalised results; a user silent for longer gets none and serving falls back to popular items.
USER_TTL = timedelta(days=90)
# Item popularity is a 7-day window in the mart; a row older than that describes a stale week.
ITEM_TTL = timedelta(days=7)
# Item attributes (category, brand) describe the item, not a moment: no expiry (Feast's ttl 0).
# Their rows carry features.store.STATIC_FEATURE_TIME, and materialization loads such a view whole.
STATIC_TTL = timedelta(0)


class FeatureViews(NamedTuple):
    user_recent_items: FeatureView
    user_activity: FeatureView
    item_popularity: FeatureView
    item_attributes: FeatureView


def feature_views(entities: FeatureEntities, sources: FeatureSources) -> FeatureViews:
    """The repo's feature views of ``entities``, reading ``sources``."""
    user_recent_items = FeatureView(
        name="user_recent_items",
        entities=[entities.user],
        ttl=USER_TTL,
        schema=[
            Field(name="user_id", dtype=String),
            Field(
                name="recent_item_ids",
                dtype=Array(String),
                description="The user's last K items (time order), the sequence model's input.",
            ),
        ],
        # A push source over the mart's batch source: history and materialization read the batch
        # source; features/push.py updates the online list between nightly runs.
        source=sources.user_events_push,
        online=True,
        description="Latest item sequence of each user.",
    )
    user_activity = FeatureView(
        name="user_activity",
        entities=[entities.user],
        ttl=USER_TTL,
        schema=[
            Field(name="user_id", dtype=String),
            Field(name="n_events_total", dtype=Int64, description="Events of the user so far."),
            Field(name="n_sessions_total", dtype=Int64, description="Sessions of the user so far."),
            Field(name="n_purchases_total", dtype=Int64,
                  description="Purchases of the user so far."),
        ],
        source=sources.user_features,
        online=True,
        description="Cumulative activity counters of each user.",
    )
    item_popularity = FeatureView(
        name="item_popularity",
        entities=[entities.item],
        ttl=ITEM_TTL,
        schema=[
            Field(name="item_id", dtype=String),
            Field(name="n_events_1d", dtype=Int64, description="Events on the item that day."),
            Field(name="n_events_7d", dtype=Int64, description="Events on the item in 7 days."),
            Field(name="n_users_7d", dtype=Int64,
                  description="Distinct users of the item in 7 days."),
        ],
        source=sources.item_features,
        online=True,
        description="Recent popularity counters of each item.",
    )
    item_attributes = FeatureView(
        name=ITEM_ATTRIBUTES_VIEW,
        entities=[entities.item],
        ttl=STATIC_TTL,
        schema=[
            Field(name="item_id", dtype=String),
            Field(
                name="attribute_values",
                dtype=Array(String),
                description="The item's side information as <attribute>:<value> strings, source order.",
            ),
            Field(name="n_attribute_values", dtype=Int64, description="Length of attribute_values."),
        ],
        source=sources.item_attributes,
        online=True,
        description="Imported item side information (the importers' --items table).",
    )
    return FeatureViews(user_recent_items, user_activity, item_popularity, item_attributes)
