"""Amazon-M2 (KDD Cup 2023) sessions: CSV ``prev_items,next_item,locale`` with a header
(``next_item`` is absent in the test files). ``prev_items`` is a numpy-printed list,
``['B09W9FND7K' 'B09JSPLN1M']``, which long sessions wrap over several lines inside the quoted
CSV field.

The data has no timestamps and no user ids, so both are synthesized, deterministically:

* one CSV row is one session; its user and session id is the row's 0-based index among the data
  rows (the index pandas gives it, which is how the data set's users refer to sessions);
* sessions are laid out from ``start_date`` (00:00 UTC), ``SESSIONS_PER_DAY`` per day, evenly
  spaced through the day in file order; a session's items are one minute apart, the
  ``prev_items`` in order and then ``next_item``. A late session may run past midnight into the
  next arrival day. Only the order inside a session is real: time gaps, time of day and which
  sessions share a day mean nothing.

Every item is a ``view`` (the data set records product views). ``extra`` holds ``locale`` and,
on the last event, ``{"next_item": true}``, so the prediction target of the original task can
be recovered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    DAY_MS,
    EPOCH,
    EventIds,
    SourceRow,
    event_line,
    text_or_none,
    unparseable_line,
)
from ingest.importers.source_files import (
    Record,
    column_positions,
    csv_records,
    first_line,
    header_fields,
    open_text,
    optional_position,
    unmapped_fields,
)

NAME = "amazon_m2"
DESCRIPTION = "Amazon-M2 sessions CSV prev_items,next_item,locale (no timestamps: times synthesized)"
EVENT_TYPE = "view"
REQUIRED_COLUMNS = ("prev_items",)
DEFAULT_START_DATE = date(2023, 1, 1)
SESSIONS_PER_DAY = 10_000
SESSION_SPACING_MS = DAY_MS // SESSIONS_PER_DAY
ITEM_SPACING_MS = 60_000
QUOTED_ID = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def parse_item_list(text: str) -> list[str] | None:
    """The ids of a numpy-printed list, in order; None when the text is not such a list."""
    body = text.strip()
    if not (body.startswith("[") and body.endswith("]")):
        return None
    body = body[1:-1]
    # Anything left between the quoted ids other than blanks and line breaks is not a list.
    if QUOTED_ID.sub("", body).strip(" \t\r\n,"):
        return None
    items = [single or double for single, double in QUOTED_ID.findall(body)]
    return items if all(item.strip() for item in items) else None


def session_start_ms(start_date: date, session_index: int) -> int:
    day, slot = divmod(session_index, SESSIONS_PER_DAY)
    return (start_date - EPOCH.date()).days * DAY_MS + day * DAY_MS + slot * SESSION_SPACING_MS


def read_rows(source: Path, *, start_date: date = DEFAULT_START_DATE) -> Iterator[SourceRow]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, header_line = first
        header = header_fields(header_line, ",")
        columns = Columns(
            prev_items=column_positions(header, REQUIRED_COLUMNS, source, NAME)["prev_items"],
            next_item=optional_position(header, "next_item"),
            locale=optional_position(header, "locale"),
        )
        ids = EventIds(NAME)
        for session_index, record in enumerate(csv_records(lines, line_number + 1)):
            yield _row(ids, record, session_index, start_date, header, columns)


@dataclass(frozen=True)
class Columns:
    prev_items: int
    next_item: int | None  # absent in the test files
    locale: int | None

    def mapped(self) -> list[int]:
        return [k for k in (self.prev_items, self.next_item, self.locale) if k is not None]


def _row(
    ids: EventIds, record: Record, session_index: int, start_date: date, header: list[str], columns: Columns
) -> SourceRow:
    fields = record.fields
    items, target = None, None
    if fields is not None and len(fields) == len(header):
        items = parse_item_list(fields[columns.prev_items])
        if items is not None and columns.next_item is not None:
            target = text_or_none(fields[columns.next_item])
            if target is not None:
                items = [*items, target]
    if not items:
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    session = str(session_index)
    session_extra: dict[str, object] = unmapped_fields(header, fields, columns.mapped())
    if columns.locale is not None and (locale := text_or_none(fields[columns.locale])) is not None:
        session_extra["locale"] = locale
    start_ms = session_start_ms(start_date, session_index)
    lines = []
    for position, item in enumerate(items):
        extra = dict(session_extra)
        if target is not None and position == len(items) - 1:
            extra["next_item"] = True
        lines.append(
            event_line(
                ids,
                time_ms=start_ms + position * ITEM_SPACING_MS,
                user_id=session,
                session_id=session,
                item_id=item,
                event_type=EVENT_TYPE,
                extra=extra,
            )
        )
    return SourceRow(record.line_number, tuple(lines))
