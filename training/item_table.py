"""The lake's item table, as the warehouse holds it, for the models that use side information.

``load_item_attribute_mapping(settings)`` reads the dbt mart ``dim_item_attributes`` (built from
``lake/items/*.parquet``, which the importers' ``--items`` write) from the same DuckDB warehouse
the nightly split reads ``user_sequences`` from (``training.data.read_warehouse``), and returns
``{item_id: [attribute value, ...]}`` for :meth:`training.item_side.ItemAttributes.from_mapping`.

Values are the mart's ``<attribute>:<value>`` strings (``attribute:12`` for the S3Rec JSON,
``brand:acme`` for a CSV column ``brand``), in source order: a brand and a category that happen
to share an id stay two attributes. For the S3Rec JSON this gives the same table as
``training.item_side.read_item_attributes_json`` on the file itself: every string carries the
same prefix, so the sorted order, and with it each attribute's index, is unchanged.

Attributes have no time: an item table is a snapshot, read whole whatever the split's ``as_of``.
"""

from __future__ import annotations

from core.settings import Settings
from training.data import read_warehouse

ITEM_ATTRIBUTES_TABLE = "dim_item_attributes"


def load_item_attribute_mapping(settings: Settings) -> dict[str, list[str]]:
    """``{item_id: [attribute value, ...]}`` of every item in the warehouse's item table; empty
    when no import had one. Raises FileNotFoundError without a warehouse and LookupError when the
    warehouse was built before the mart existed (run the sessions stage)."""
    present = read_warehouse(
        settings,
        f"SELECT count(*) FROM information_schema.tables "
        f"WHERE table_schema = 'main' AND table_name = '{ITEM_ATTRIBUTES_TABLE}'",
    )
    if not present[0][0]:
        raise LookupError(f"the warehouse {settings.warehouse_path} has no {ITEM_ATTRIBUTES_TABLE}; "
                          "run the sessions (dbt) stage first")
    rows = read_warehouse(
        settings,
        f"""
        SELECT CAST(item_id AS VARCHAR), CAST(attribute_values AS VARCHAR[])
        FROM {ITEM_ATTRIBUTES_TABLE}
        ORDER BY item_id
        """,
    )
    return {item_id: list(values) for item_id, values in rows}
