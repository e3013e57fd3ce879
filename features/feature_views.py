"""Feature views over the exported warehouse marts (contract: docs/architecture.md)."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Array, Int64, String

# Modules, not their objects: `feast apply` scans the attributes of this file, and importing the
# entities and sources by name would make it see them a second time under another module.
from features import data_sources, entities

# A user's features stay valid for a quarter: long enough that occasional shoppers still get
# personalised results; a user silent for longer gets none and serving falls back to popular items.
USER_TTL = timedelta(days=90)
# Item popularity is a 7-day window in the mart; a row older than that describes a stale week.
ITEM_TTL = timedelta(days=7)

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
    source=data_sources.user_events_push_source,
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
        Field(name="n_purchases_total", dtype=Int64, description="Purchases of the user so far."),
    ],
    source=data_sources.user_features_source,
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
        Field(name="n_users_7d", dtype=Int64, description="Distinct users of the item in 7 days."),
    ],
    source=data_sources.item_features_source,
    online=True,
    description="Recent popularity counters of each item.",
)
