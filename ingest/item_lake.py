"""The lake's item tables: what an import's ``--items`` file became, one Parquet file per format.

Layout (docs/architecture.md, "Lake"), beside ``events/`` and ``quarantine/``:

* ``lake/items/<format>.parquet``: ``source string`` (the format the events were imported as),
  ``item_id string, attribute string, value string, position int32`` (the importer's canonical
  long form, :mod:`ingest.importers.item_table`), rows in file order;
* ``lake/item_quarantine/<format>.parquet``: ``source string, record int64, item_id string
  (nullable), reason string, text string``: every row that could not be converted.

The item table goes straight from the import into the lake rather than through an arrival day:
it has no event time to arrive on, and the importer has already checked every row (the reasons
above), so there is nothing left for the Spark ingestion to decide. An import with ``--items``
replaces its format's two files (like a re-import replaces its format's raw files), each with one
``os.replace``, so a reader (dbt, training) sees the previous table or the new one, never a mix;
the same item file gives byte-identical files. An import without ``--items`` leaves them alone.
Several formats' tables sit side by side and dbt reads them all.

PyArrow is imported inside the functions: the importers' registry stays standard-library only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.importers.item_table import ItemTable
from ingest.publish import replace_parquet

ITEMS_FOLDER = "items"
ITEM_QUARANTINE_FOLDER = "item_quarantine"


def item_table_path(lake_dir: Path, format_name: str) -> Path:
    return Path(lake_dir) / ITEMS_FOLDER / f"{format_name}.parquet"


def item_quarantine_path(lake_dir: Path, format_name: str) -> Path:
    return Path(lake_dir) / ITEM_QUARANTINE_FOLDER / f"{format_name}.parquet"


def write_item_table(lake_dir: Path, format_name: str, table: ItemTable) -> dict[str, str]:
    """Replace ``format_name``'s item table and its quarantine in ``lake_dir``; returns both paths."""
    import pyarrow as pa

    rows = pa.table(
        {
            "source": pa.array([format_name] * len(table.rows), pa.string()),
            "item_id": pa.array([r.item_id for r in table.rows], pa.string()),
            "attribute": pa.array([r.attribute for r in table.rows], pa.string()),
            "value": pa.array([r.value for r in table.rows], pa.string()),
            "position": pa.array([r.position for r in table.rows], pa.int32()),
        }
    )
    rejected = pa.table(
        {
            "source": pa.array([format_name] * len(table.rejected), pa.string()),
            "record": pa.array([r.record for r in table.rejected], pa.int64()),
            "item_id": pa.array([_storable(r.item_id) for r in table.rejected], pa.string()),
            "reason": pa.array([r.reason for r in table.rejected], pa.string()),
            "text": pa.array([_storable(r.text) for r in table.rejected], pa.string()),
        }
    )
    # The quarantine first: a reader that finds the new table also finds its rejected rows.
    quarantine = item_quarantine_path(lake_dir, format_name)
    replace_parquet(quarantine, rejected)
    items = item_table_path(lake_dir, format_name)
    replace_parquet(items, rows)
    return {"path": str(items), "quarantine_path": str(quarantine)}


def _storable(text: str | None) -> str | None:
    """Text with undecodable source bytes (lone surrogates) escaped: Parquet strings are UTF-8."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8") if not text.isascii() else text
