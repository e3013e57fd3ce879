"""MovieLens ratings, in the three shapes GroupLens ships them (told apart by the first line):

* ``ratings.dat`` (1M, 10M): ``user::movie::rating::timestamp``, no header;
* ``ratings.csv`` (20M, 25M, 32M, latest): ``userId,movieId,rating,timestamp`` with a header
  (columns found by name);
* ``u.data`` (100K): ``user<TAB>item<TAB>rating<TAB>timestamp``, no header.

``timestamp`` is unix seconds. A rating is an interaction with the movie, so every row is a
``view``; the rating itself (a number) goes into ``extra``. Ratings have no sessions: they come
from the inactivity gap (a user rating a batch of movies in one sitting forms one session).
"""

from __future__ import annotations

import math
from itertools import chain
from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    EventIds,
    SourceRow,
    event_line,
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

NAME = "movielens"
DESCRIPTION = "MovieLens ratings.dat user::movie::rating::ts, ratings.csv userId,movieId,rating,timestamp, or u.data"
EVENT_TYPE = "view"
CSV_COLUMNS = ("userId", "movieId", "rating", "timestamp")


def read_rows(source: Path) -> Iterator[SourceRow]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, line = first
        if "::" in line:
            records = split_lines(chain([line], lines), "::", line_number)
            header = list(CSV_COLUMNS)
        elif "\t" in line:
            records = split_lines(chain([line], lines), "\t", line_number)
            header = list(CSV_COLUMNS)
        else:
            header = header_fields(line, ",")
            records = split_lines(lines, ",", line_number + 1)
        positions = column_positions(header, CSV_COLUMNS, source, NAME)
        ids = EventIds(NAME)
        for record in records:
            yield _row(ids, record, header, positions)


def _rating(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _row(ids: EventIds, record: Record, header: list[str], positions: dict[str, int]) -> SourceRow:
    fields = record.fields
    rating = None if fields is None or len(fields) != len(header) else _rating(fields[positions["rating"]])
    if rating is None:
        # The rating is part of what a row says; without it the row is not a MovieLens rating.
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    raw_time = fields[positions["timestamp"]]
    line = event_line(
        ids,
        time_ms=ms_from_seconds(raw_time),
        raw_time=raw_time,
        user_id=text_or_none(fields[positions["userId"]]),
        item_id=text_or_none(fields[positions["movieId"]]),
        event_type=EVENT_TYPE,
        extra=unmapped_fields(header, fields, positions.values()) | {"rating": rating},
    )
    return SourceRow(record.line_number, (line,))
