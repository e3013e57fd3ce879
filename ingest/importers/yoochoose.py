"""YOOCHOOSE (RecSys Challenge 2015) click and buy logs.

Three variants, told apart by the first line (``VARIANTS``):

* ``clicks TSV``: the session-rec / GRU4Rec preprocessed clicks ``SessionId\\tItemId\\tTime``
  with a header (columns found by name, any further column kept in ``extra``) or without one
  (then exactly those three columns in that order), ``Time`` in unix seconds with a fraction
  (``1396437466.94``). Every row is a ``click``;
* ``clicks.dat``: the original ``yoochoose-clicks.dat`` (and ``yoochoose-test.dat``),
  ``session,timestamp,item,category`` without a header, ``timestamp`` ISO-8601 in UTC
  (``2014-04-07T10:51:09.277Z``). Every row is a ``click``; ``category`` goes into ``extra``;
* ``buys.dat``: the original ``yoochoose-buys.dat``, ``session,timestamp,item,price,quantity``
  without a header. Every row is a ``purchase``; ``price`` and ``quantity`` go into ``extra``
  (integers, as the log writes them; a value that is not one is kept as its text).

The log has no user ids, so the session id is the user id as well as the session id. A file
that matches none of the variants is refused with one line naming them. DIGINETICA's
preprocessed TSV has ``SessionId``/``ItemId``/``Time`` columns too (plus ``timeframe``, the
offset that orders a session), so it is refused by name: read as clicks it would lose its order
and its event type.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from itertools import chain
from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    EventIds,
    SourceFormatError,
    SourceRow,
    event_line,
    ms_from_iso,
    ms_from_seconds,
    text_or_none,
    unparseable_line,
)
from ingest.importers.source_files import (
    Record,
    column_key,
    column_positions,
    first_line,
    header_fields,
    open_text,
    split_lines,
    supported_variants,
    unknown_variant,
    unmapped_fields,
)

NAME = "yoochoose"
VARIANTS = {
    "clicks TSV": "SessionId<TAB>ItemId<TAB>Time, unix seconds, with or without that header",
    "clicks.dat": "session,timestamp,item,category without header, ISO-8601 timestamp",
    "buys.dat": "session,timestamp,item,price,quantity without header -> purchase",
}
DESCRIPTION = (
    "YOOCHOOSE clicks TSV SessionId/ItemId/Time (unix s), clicks.dat session,ISO time,item,category, "
    "or buys.dat session,ISO time,item,price,quantity"
)
TSV_COLUMNS = ("SessionId", "ItemId", "Time")
CLICK, PURCHASE = "click", "purchase"
CLICKS_FIELDS = 4  # session, timestamp, item, category
BUYS_FIELDS = 5  # session, timestamp, item, price, quantity
# The first line of a .dat file: the timestamp field must at least start like the log's times.
ISO_START = re.compile(r"^\d{4}-\d{2}-\d{2}T")
# A column only DIGINETICA's preprocessed TSV has (see the module docstring).
DIGINETICA_COLUMN = "timeframe"
INTEGER = re.compile(r"-?\d+")


def read_rows(source: Path) -> Iterator[SourceRow]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, line = first
        ids = EventIds(NAME)
        if "\t" in line:
            header = header_fields(line, "\t")
            if all(_is_number(field) for field in header):
                if len(header) != len(TSV_COLUMNS):
                    raise unknown_variant(source, NAME, line, VARIANTS)
                # No header line: the columns are in the documented order.
                header = list(TSV_COLUMNS)
                records = split_lines(chain([line], lines), "\t", line_number)
            else:
                if DIGINETICA_COLUMN in {column_key(name) for name in header}:
                    raise SourceFormatError(
                        f"{source}: header {header} is DIGINETICA's preprocessed TSV (it has a timeframe "
                        f"column), not YOOCHOOSE: import it as diginetica; {supported_variants(NAME, VARIANTS)}"
                    )
                records = split_lines(lines, "\t", line_number + 1)
            positions = column_positions(header, TSV_COLUMNS, source, NAME, VARIANTS)
            for record in records:
                yield _tsv_row(ids, record, header, positions)
            return
        fields = [field.strip() for field in line.split(",")]
        if len(fields) not in (CLICKS_FIELDS, BUYS_FIELDS) or not ISO_START.match(fields[1]):
            raise unknown_variant(source, NAME, line, VARIANTS)
        convert = _clicks_row if len(fields) == CLICKS_FIELDS else _buys_row
        for record in split_lines(chain([line], lines), ",", line_number):
            yield convert(ids, record)


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


def _tsv_row(ids: EventIds, record: Record, header: list[str], positions: dict[str, int]) -> SourceRow:
    fields = record.fields
    if fields is None or len(fields) != len(header):
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    session = text_or_none(fields[positions["SessionId"]])
    raw_time = fields[positions["Time"]]
    line = event_line(
        ids,
        time_ms=ms_from_seconds(raw_time),
        raw_time=raw_time,
        user_id=session,
        session_id=session,
        item_id=text_or_none(fields[positions["ItemId"]]),
        event_type=CLICK,
        extra=unmapped_fields(header, fields, positions.values()),
    )
    return SourceRow(record.line_number, (line,))


def _dat_row(
    ids: EventIds, line_number: int, fields: list[str], event_type: str, extra: dict[str, int | str]
) -> SourceRow:
    """A row of ``clicks.dat`` or ``buys.dat``: session, ISO time and item first, then ``extra``."""
    session_text, raw_time, item_text = fields[:3]
    session = text_or_none(session_text)
    line = event_line(
        ids,
        time_ms=ms_from_iso(raw_time),
        raw_time=raw_time,
        user_id=session,
        session_id=session,
        item_id=text_or_none(item_text),
        event_type=event_type,
        extra=extra or None,
    )
    return SourceRow(line_number, (line,))


def _clicks_row(ids: EventIds, record: Record) -> SourceRow:
    fields = record.fields
    if fields is None or len(fields) != CLICKS_FIELDS:
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    category = fields[3]
    # "S" marks a special offer, "0" a missing category, numbers are categories or brands.
    return _dat_row(ids, record.line_number, fields, CLICK, {"category": category} if category else {})


def _buys_row(ids: EventIds, record: Record) -> SourceRow:
    fields = record.fields
    if fields is None or len(fields) != BUYS_FIELDS:
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    price, quantity = fields[3:]
    extra = {name: _integer_or_text(value) for name, value in (("price", price), ("quantity", quantity)) if value}
    return _dat_row(ids, record.line_number, fields, PURCHASE, extra)


def _integer_or_text(text: str) -> int | str:
    return int(text) if INTEGER.fullmatch(text) else text
