"""YOOCHOOSE (RecSys Challenge 2015) click logs.

Two shapes of the same log are read, told apart by the first line:

* the session-rec / GRU4Rec preprocessed TSV ``SessionId\\tItemId\\tTime`` with a header (columns
  found by name, any further column kept in ``extra``), ``Time`` in unix seconds with a fraction
  (``1396437466.94``);
* the original ``yoochoose-clicks.dat``: ``session,timestamp,item,category`` without a header,
  ``timestamp`` ISO-8601 in UTC (``2014-04-07T10:51:09.277Z``); ``category`` goes into ``extra``.

Every row is a ``click``: the log records clicks on items (item page visits) and calls them that;
purchases are a separate file (``yoochoose-buys.dat``), not read here. The log has no user ids,
so the session id is the user id as well as the session id.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from itertools import chain
from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    SourceRow,
    event_id,
    event_line,
    ms_from_iso,
    ms_from_seconds,
    text_or_none,
    unparseable_line,
)
from ingest.importers.source_files import (
    Record,
    column_positions,
    first_line,
    header_fields,
    open_text,
    split_lines,
    unmapped_fields,
)

NAME = "yoochoose"
DESCRIPTION = "YOOCHOOSE clicks: TSV SessionId/ItemId/Time (unix s) with header, or clicks.dat session,ISO time,item,category"
EVENT_TYPE = "click"
TSV_COLUMNS = ("SessionId", "ItemId", "Time")
CLICKS_FIELDS = 4  # session, timestamp, item, category


def read_rows(source: Path) -> Iterator[SourceRow]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, line = first
        if "\t" in line:
            header = header_fields(line, "\t")
            if all(_is_number(field) for field in header):
                # No header line: the columns are in the documented order.
                header = list(TSV_COLUMNS)
                records = split_lines(chain([line], lines), "\t", line_number)
            else:
                records = split_lines(lines, "\t", line_number + 1)
            positions = column_positions(header, TSV_COLUMNS, source, NAME)
            for record in records:
                yield _tsv_row(source, record, header, positions)
        else:
            for record in split_lines(chain([line], lines), ",", line_number):
                yield _clicks_row(source, record)


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


def _tsv_row(source: Path, record: Record, header: list[str], positions: dict[str, int]) -> SourceRow:
    eid = event_id(NAME, source, record.line_number)
    fields = record.fields
    if fields is None or len(fields) != len(header):
        return SourceRow(record.line_number, (unparseable_line(eid, record.text),))
    session = text_or_none(fields[positions["SessionId"]])
    raw_time = fields[positions["Time"]]
    line = event_line(
        format_name=NAME,
        event_id=eid,
        time_ms=ms_from_seconds(raw_time),
        raw_time=raw_time,
        user_id=session,
        session_id=session,
        item_id=text_or_none(fields[positions["ItemId"]]),
        event_type=EVENT_TYPE,
        extra=unmapped_fields(header, fields, positions.values()),
    )
    return SourceRow(record.line_number, (line,))


def _clicks_row(source: Path, record: Record) -> SourceRow:
    eid = event_id(NAME, source, record.line_number)
    fields = record.fields
    if fields is None or len(fields) != CLICKS_FIELDS:
        return SourceRow(record.line_number, (unparseable_line(eid, record.text),))
    session_text, raw_time, item_text, category = fields
    session = text_or_none(session_text)
    line = event_line(
        format_name=NAME,
        event_id=eid,
        time_ms=ms_from_iso(raw_time),
        raw_time=raw_time,
        user_id=session,
        session_id=session,
        item_id=text_or_none(item_text),
        event_type=EVENT_TYPE,
        # "S" marks a special offer, "0" a missing category, numbers are categories or brands.
        extra={"category": category} if category else None,
    )
    return SourceRow(record.line_number, (line,))
