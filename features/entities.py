"""Feast entities: the keys every feature view of the repo is joined on."""

from feast import Entity, ValueType

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
