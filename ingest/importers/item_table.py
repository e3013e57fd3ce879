"""Item tables (item side information) -> canonical attribute rows, bad rows kept with a reason.

Two layouts, told apart by the file's first character:

* the S3Rec ``*_item2attributes.json``: one JSON object ``{"item_id": [attribute, ...]}``. Its
  lists mix category and brand ids in one id space without naming them, so every value gets the
  attribute name ``attribute`` (``JSON_ATTRIBUTE``);
* a CSV (``,``, quoted fields allowed) or TSV (tab in the header) with a header naming an
  ``item_id`` column (matched like the event importers' columns: case and ``_`` ignored) and one
  column per attribute, ``item_id,category,brand``; a cell may hold several values separated by
  ``|``; an empty cell (or ``NA``, ``null``) is no value.

Canonical form, the long one: one row per item, attribute and value, with the value's
``position`` in the item's list (JSON order; for a CSV row, column order then cell order). Long
rather than one row per item with a list column: any set of attribute columns and multi-valued
cells fits one fixed schema, the grain (item, attribute, value) is a key dbt can test, and the
per-item list the models and the feature store read is one ordered aggregation away
(``dim_item_attributes``). A value listed twice for one item is kept once (its first position)
and counted in ``repeated_values``.

A row that cannot be converted is never dropped: it goes to the quarantine with its reason,
record number and text. Reasons: ``unparseable`` (a CSV row that does not split into fields,
undecodable bytes), ``wrong_field_count``, ``missing_field:item_id``, ``invalid_id:item_id`` (the
rule of ``ingest.ids``: an id the API could not be asked about), ``not_a_list`` (a JSON entry
whose value is not a list), ``invalid_value:<attribute>`` (a JSON element that is not a string
or integer, or a value that breaks the id rule) and ``duplicate_item`` (an item already read:
the first row wins). A row is accepted or quarantined whole, never half. A file that is not an
item table at all (no ``item_id`` column, not one JSON object, no row with a value) raises
:class:`SourceFormatError` before anything is written.

Only the standard library: the import DAG's parse reads the importer registry.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Iterable, Iterator

from ingest.ids import invalid_id, is_valid_id
from ingest.importers.canonical import MAX_KEPT_ROW_CHARS, SourceFormatError, missing_field, text_or_none
from ingest.importers.source_files import (
    Record,
    csv_records,
    first_line,
    header_fields,
    open_text,
    optional_position,
    split_lines,
    undecodable,
)
from core.names import UNPARSEABLE

JSON_ATTRIBUTE = "attribute"
ITEM_COLUMN = "item_id"
VALUE_SEPARATOR = "|"
# The models and the feature store read an item's values as "<attribute>:<value>" tokens
# (dim_item_attributes), so an attribute name must not hold the separator.
TOKEN_SEPARATOR = ":"

WRONG_FIELD_COUNT = "wrong_field_count"
NOT_A_LIST = "not_a_list"
DUPLICATE_ITEM = "duplicate_item"
MISSING_ITEM = missing_field(ITEM_COLUMN)
INVALID_ITEM = invalid_id(ITEM_COLUMN)


def invalid_value(attribute: str) -> str:
    return f"invalid_value:{attribute}"


@dataclass(frozen=True, slots=True)
class AttributeRow:
    item_id: str
    attribute: str
    value: str
    position: int  # 0-based place of the value in the item's list


@dataclass(frozen=True, slots=True)
class RejectedRow:
    record: int  # CSV/TSV: the 1-based line the row starts on; JSON: the entry's 1-based ordinal
    item_id: str | None  # as read, when the row had one
    reason: str
    text: str  # the row as in the file (JSON: the entry re-encoded), at most MAX_KEPT_ROW_CHARS


@dataclass
class ItemTable:
    layout: str  # "json", "csv" or "tsv"
    rows: list[AttributeRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)
    rows_read: int = 0
    items: int = 0  # items with at least one value
    items_without_attributes: int = 0  # accepted rows with no value (empty cells, an empty list)
    repeated_values: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)

    def rejected_reasons(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rejected:
            counts[row.reason] = counts.get(row.reason, 0) + 1
        return dict(sorted(counts.items()))

    def _reject(self, record: int, item_id: str | None, reason: str, text: str) -> None:
        self.rejected.append(RejectedRow(record, item_id, reason, text[:MAX_KEPT_ROW_CHARS]))

    def _accept(self, record: int, raw_item: Any, pairs: Iterable[tuple[str, str]], text: str) -> None:
        """One source row: its item id and (attribute, value) pairs, already split into values."""
        self.rows_read += 1
        item_id = raw_item if isinstance(raw_item, str) else None
        item_text = None if item_id is None else item_id.strip()
        if not item_text or text_or_none(item_text) is None:
            return self._reject(record, item_id, MISSING_ITEM, text)
        if undecodable(item_text):
            return self._reject(record, item_id, UNPARSEABLE, text)
        if not is_valid_id(item_text):
            return self._reject(record, item_id, INVALID_ITEM, text)
        if item_text in self._seen:
            return self._reject(record, item_text, DUPLICATE_ITEM, text)
        values: dict[tuple[str, str], None] = {}
        for attribute, value in pairs:
            if undecodable(value):
                return self._reject(record, item_text, UNPARSEABLE, text)
            if not is_valid_id(value):
                return self._reject(record, item_text, invalid_value(attribute), text)
            if (attribute, value) in values:
                self.repeated_values += 1
            values.setdefault((attribute, value))
        self._seen.add(item_text)
        if not values:
            self.items_without_attributes += 1
            return None
        self.items += 1
        self.rows.extend(AttributeRow(item_text, a, v, k) for k, (a, v) in enumerate(values))
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "rows_read": self.rows_read,
            "items": self.items,
            "attribute_values": len(self.rows),
            "items_without_attributes": self.items_without_attributes,
            "repeated_values": self.repeated_values,
            "rejected": len(self.rejected),
            "rejected_reasons": self.rejected_reasons(),
            "rejected_examples": [{"record": r.record, "reason": r.reason} for r in self.rejected[:10]],
        }


def read_item_table(source: Path) -> ItemTable:
    """Every row of the item table ``source`` (``.gz`` read as is), converted or quarantined."""
    source = Path(source)
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            raise SourceFormatError(f"{source} holds no item rows")
        line_number, line = first
        if line.lstrip("\ufeff \t").startswith("{"):
            table = _read_json(source, line.lstrip("\ufeff") + "".join(lines))
        else:
            table = _read_delimited(source, line_number, line, lines)
    if table.rows_read == 0:
        raise SourceFormatError(f"{source} holds no item rows")
    if not table.rows:
        raise SourceFormatError(
            f"{source}: none of {table.rows_read} item rows has an attribute value "
            f"(rejections: {table.rejected_reasons()}); is it an item table?")
    return table


# ---------------------------------------------------------------- JSON


class _Object(list):
    """A JSON object's (key, value) pairs in file order: a repeated key is a row of its own."""


def _plain(value: Any) -> Any:
    if isinstance(value, _Object):
        return {key: _plain(item) for key, item in value}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _json_value(value: Any) -> str | None:
    """A list element as an attribute value: a string or an integral number; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value == int(value)):
        return None
    return text_or_none(value)


def _read_json(source: Path, text: str) -> ItemTable:
    try:
        data = json.loads(text, object_pairs_hook=_Object)
    except ValueError as error:
        raise SourceFormatError(f"{source}: not a JSON item table: {error}") from None
    if not isinstance(data, _Object):
        raise SourceFormatError(f'{source}: a JSON item table is one object {{"item_id": [attribute, ...]}}')
    table = ItemTable("json")
    for ordinal, (key, value) in enumerate(data, start=1):
        entry = json.dumps({key: _plain(value)})  # ASCII: undecodable bytes stay visible
        if not isinstance(value, list) or isinstance(value, _Object):
            table.rows_read += 1
            table._reject(ordinal, key, NOT_A_LIST, entry)
            continue
        values = [_json_value(element) for element in value]
        if any(v is None for v in values):
            table.rows_read += 1
            table._reject(ordinal, key, invalid_value(JSON_ATTRIBUTE), entry)
            continue
        table._accept(ordinal, key, ((JSON_ATTRIBUTE, v) for v in values if v is not None), entry)
    return table


# ---------------------------------------------------------------- CSV / TSV


def _read_delimited(source: Path, line_number: int, header_line: str, lines: Iterator[str]) -> ItemTable:
    tsv = "\t" in header_line
    delimiter = "\t" if tsv else ","
    header = header_fields(header_line, delimiter)
    item_column = optional_position(header, ITEM_COLUMN)
    if item_column is None:
        raise SourceFormatError(f"{source}: not an item table: header {header} lacks an {ITEM_COLUMN} column")
    attributes = [(k, name) for k, name in enumerate(header) if k != item_column]
    names = [name for _, name in attributes]
    bad = [name for name in names if not name or TOKEN_SEPARATOR in name or not is_valid_id(name)]
    if bad or len(set(names)) != len(names):
        raise SourceFormatError(
            f"{source}: attribute columns need distinct, non-empty names without "
            f"{TOKEN_SEPARATOR!r}; header {header}")
    records = split_lines(lines, delimiter, line_number + 1) if tsv else csv_records(lines, line_number + 1)
    table = ItemTable("tsv" if tsv else "csv")
    for record in records:
        _delimited_row(table, record, len(header), item_column, attributes)
    return table


def _delimited_row(table: ItemTable, record: Record, width: int, item_column: int,
                   attributes: list[tuple[int, str]]) -> None:
    fields = record.fields
    if fields is None:
        table.rows_read += 1
        return table._reject(record.line_number, None, UNPARSEABLE, record.text)
    if len(fields) != width:
        table.rows_read += 1
        return table._reject(record.line_number, None, WRONG_FIELD_COUNT, record.text)
    pairs = chain.from_iterable(
        ((name, v) for part in fields[k].split(VALUE_SEPARATOR) if (v := text_or_none(part)) is not None)
        for k, name in attributes
    )
    return table._accept(record.line_number, fields[item_column], pairs, record.text)
