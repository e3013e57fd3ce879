"""Feast entities: the keys every feature view of the repo is joined on."""

from __future__ import annotations

from typing import NamedTuple

from feast import Entity, ValueType


class FeatureEntities(NamedTuple):
    user: Entity
    item: Entity


def feature_entities() -> FeatureEntities:
    """The repo's entities, new objects on each call (Feast's apply stamps the ones it registers)."""
    # Ids stay the original strings of the logs (see docs/architecture.md), so no integer keys.
    user = Entity(
        name="user",
        join_keys=["user_id"],
        value_type=ValueType.STRING,
        description="A user of the shop, keyed by the user_id of the event logs.",
    )
    item = Entity(
        name="item",
        join_keys=["item_id"],
        value_type=ValueType.STRING,
        description="A catalogue item, keyed by the item_id of the event logs.",
    )
    return FeatureEntities(user, item)
