"""The offline feature data: the warehouse marts ``user_features``, ``item_features`` and
``dim_item_attributes`` copied to the Parquet files the Feast sources read
(``Settings.feature_data_dir``).

DuckDB and PyArrow are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from core.settings import Settings
from features.store import (
    ITEM_ATTRIBUTES_FILE,
    ITEM_FEATURES_FILE,
    STATIC_FEATURE_TIME,
    TIMESTAMP_FIELD,
    USER_FEATURES_FILE,
)

logger = logging.getLogger(__name__)

# Ids and counters are cast in SQL so that whatever integer width dbt produced (SUM gives
# HUGEINT) lands as the Int64 the feature views declare; rows are sorted so that exporting the
# same warehouse twice gives the same files.
_EXPORT_QUERIES = {
    "user_features": (
        USER_FEATURES_FILE,
        """
        SELECT CAST(user_id AS VARCHAR) AS user_id,
               CAST(feature_date AS DATE) AS feature_date,
               event_timestamp,
               CAST(recent_item_ids AS VARCHAR[]) AS recent_item_ids,
               CAST(n_events_total AS BIGINT) AS n_events_total,
               CAST(n_sessions_total AS BIGINT) AS n_sessions_total,
               CAST(n_purchases_total AS BIGINT) AS n_purchases_total
        FROM main.user_features
        ORDER BY user_id, event_timestamp
        """,
    ),
    "item_features": (
        ITEM_FEATURES_FILE,
        """
        SELECT CAST(item_id AS VARCHAR) AS item_id,
               CAST(feature_date AS DATE) AS feature_date,
               event_timestamp,
               CAST(n_events_1d AS BIGINT) AS n_events_1d,
               CAST(n_events_7d AS BIGINT) AS n_events_7d,
               CAST(n_users_7d AS BIGINT) AS n_users_7d
        FROM main.item_features
        ORDER BY item_id, event_timestamp
        """,
    ),
    # Attributes have no time of their own: every row is stamped STATIC_FEATURE_TIME (store.py).
    "item_attributes": (
        ITEM_ATTRIBUTES_FILE,
        f"""
        SELECT CAST(item_id AS VARCHAR) AS item_id,
               TIMESTAMP '{STATIC_FEATURE_TIME:%Y-%m-%d %H:%M:%S}' AS event_timestamp,
               CAST(attribute_values AS VARCHAR[]) AS attribute_values,
               CAST(n_attribute_values AS BIGINT) AS n_attribute_values
        FROM main.dim_item_attributes
        ORDER BY item_id
        """,
    ),
}
# Marts a warehouse built before they existed lacks: exported empty (with a warning), so the
# feature views over them still apply and materialize. Table -> a stand-in with its columns.
_OPTIONAL_TABLES = {
    "dim_item_attributes": "(SELECT NULL AS item_id, NULL AS attribute_values, NULL AS n_attribute_values "
                           "WHERE false)",
}


def export_feature_data(settings: Settings) -> dict[str, int]:
    """Copy the warehouse tables ``user_features``, ``item_features`` and ``dim_item_attributes``
    to Parquet (``dim_item_attributes`` empty when the warehouse has none).

    The files land in ``settings.feature_data_dir`` with ``event_timestamp`` as a UTC timestamp.
    Each file is replaced atomically, so a concurrent reader (materialization, training) sees
    either the previous export or this one. Returns the row count per table.
    """
    import duckdb

    from ingest.publish import replace_parquet

    if not settings.warehouse_path.is_file():
        raise FileNotFoundError(f"warehouse not found: {settings.warehouse_path} (run dbt first)")
    out_dir = settings.feature_data_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    counts: dict[str, int] = {}
    # Read-only: the export must never change the warehouse, and DuckDB lets several read-only
    # processes (this export, the quality gate) open the file at once.
    with contextlib.closing(duckdb.connect(str(settings.warehouse_path), read_only=True)) as con:
        for table_name, (file_name, query) in _EXPORT_QUERIES.items():
            for mart, stand_in in _OPTIONAL_TABLES.items():
                if f"main.{mart}" in query and not _has_table(con, mart):
                    logger.warning("the warehouse has no %s (built before it existed): exporting it empty", mart)
                    query = query.replace(f"main.{mart}", stand_in)
            table = con.sql(query).to_arrow_table()
            table = _with_utc_timestamp(table)
            target = out_dir / file_name
            replace_parquet(target, table)
            counts[table_name] = table.num_rows
            logger.info("exported %s: %d rows -> %s", table_name, table.num_rows, target)
    return counts


def _has_table(con: Any, name: str) -> bool:
    # fetchall: DuckDB refuses further work on a connection with a result left unread.
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'main' AND table_name = ?",
        [name]).fetchall()[0][0])


def _with_utc_timestamp(table: Any) -> Any:
    """Return ``table`` with ``event_timestamp`` as ``timestamp[us, UTC]`` and plain list fields.

    The lake and the marts keep UTC; a naive warehouse timestamp is therefore read as UTC and a
    zoned one converted, so Feast's point-in-time joins compare instants, not wall clocks.
    """
    import pyarrow as pa

    fields = []
    for field in table.schema:
        if field.name == TIMESTAMP_FIELD:
            if not pa.types.is_timestamp(field.type):
                raise TypeError(f"{TIMESTAMP_FIELD} must be a timestamp, got {field.type}")
            fields.append(pa.field(field.name, pa.timestamp("us", tz="UTC")))
        elif pa.types.is_list(field.type):
            # DuckDB names the list child after the column; Arrow's default `item` keeps the
            # file schema independent of the SQL alias.
            fields.append(pa.field(field.name, pa.list_(field.type.value_type)))
        else:
            fields.append(field)
    return table.cast(pa.schema(fields))
