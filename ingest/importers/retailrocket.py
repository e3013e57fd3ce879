"""Retailrocket e-commerce events (``events.csv``): ``timestamp,visitorid,event,itemid,transactionid``
with a header (columns found by name), ``timestamp`` in unix milliseconds.

``view``/``addtocart``/``transaction`` become ``view``/``add_to_cart``/``purchase``; the
visitor is the user. ``transactionid`` (set on purchases) goes into ``extra``. The log has no
sessions: they come from the inactivity gap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    EventIds,
    SourceRow,
    event_line,
    ms_from_millis,
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

NAME = "retailrocket"
DESCRIPTION = "Retailrocket events.csv: timestamp (ms),visitorid,event(view|addtocart|transaction),itemid,transactionid"
EVENT_TYPES = {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"}
COLUMNS = ("timestamp", "visitorid", "event", "itemid", "transactionid")


def read_rows(source: Path) -> Iterator[SourceRow]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, header_line = first
        header = header_fields(header_line, ",")
        positions = column_positions(header, COLUMNS, source, NAME)
        ids = EventIds(NAME)
        for record in split_lines(lines, ",", line_number + 1):
            yield _row(ids, record, header, positions)


def _row(ids: EventIds, record: Record, header: list[str], positions: dict[str, int]) -> SourceRow:
    fields = record.fields
    if fields is None or len(fields) != len(header):
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    raw_time = fields[positions["timestamp"]]
    raw_type = fields[positions["event"]]
    transaction = text_or_none(fields[positions["transactionid"]])
    extra = unmapped_fields(header, fields, positions.values())
    if transaction is not None:
        extra["transaction_id"] = transaction
    line = event_line(
        ids,
        time_ms=ms_from_millis(raw_time),
        raw_time=raw_time,
        user_id=text_or_none(fields[positions["visitorid"]]),
        item_id=text_or_none(fields[positions["itemid"]]),
        event_type=EVENT_TYPES.get(raw_type),
        raw_event_type=raw_type or None,
        extra=extra,
    )
    return SourceRow(record.line_number, (line,))
