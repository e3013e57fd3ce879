"""DIGINETICA (CIKM Cup 2016) item views, in two variants told apart by the first line
(``VARIANTS``); columns are found by name, case and underscores ignored:

* ``train-item-views``: the original ``;``-separated ``sessionId;userId;itemId;timeframe;eventdate``
  (the public sample spells it ``session_id;user_id;...``), with that header or without one
  (then in that order). ``eventdate`` is a day, ``YYYY-MM-DD``, taken as UTC;
* ``preprocessed TSV``: what the widely copied preprocessing scripts (STAMP's ``process_cikm.py``
  and its descendants) write, ``sessionId\\titemId\\ttimeframe\\tTime`` with a header, ``Time``
  the event day parsed to unix seconds (``1462752000.0``; in the script's local time zone, which
  the file does not say, so it is taken as it is).

Every row is a ``view``. ``timeframe`` is milliseconds since the session's start, and it is what
orders a session: rows are not in that order in the file, and ``eventdate`` moves to the next day
part-way through a session that runs past midnight. So a row's event time is its session's
earliest day (``eventdate`` or ``Time``) plus its ``timeframe``: ordering a session by time
orders it by ``timeframe``, and a session crossing midnight lasts minutes, not a day. A row whose
own day is not that earliest day keeps its day in ``extra`` (under the column's name).

Users: most sessions are anonymous (``userId`` is ``NA``; the preprocessed TSV has no user
column at all), and some log in part-way, so one session holds ``NA`` rows and rows of a user.
The platform keeps one user per log session, so the file is read twice: first (whole, whatever
the row limit) to learn each session's earliest day and logged-in users, then to convert.

* an ``NA`` row of a session with one logged-in user gets that user, ``extra`` says
  ``{"user_id_from": "same_session"}``;
* an ``NA`` row of a session nobody logged into gets the user ``session:<session_id>``, prefixed
  because session and user ids are both small integers and session 2 is not user 2, and
  ``extra`` says ``{"user_id_from": "session_id"}``;
* a session with rows of two different users (a shared device) keeps every row's own user (or
  the ``session:`` one) but no ``session_id``: its sessions come from the inactivity gap per
  user, and ``extra`` keeps ``{"source_session_id": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Callable, Iterator

from ingest.importers.canonical import (
    MAX_TIME_MS,
    EventIds,
    SourceRow,
    event_line,
    ms_from_date,
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
    optional_position,
    split_lines,
    unknown_variant,
    unmapped_fields,
)

NAME = "diginetica"
VARIANTS = {
    "train-item-views": "sessionId;userId;itemId;timeframe;eventdate, header optional, eventdate YYYY-MM-DD",
    "preprocessed TSV": "sessionId<TAB>itemId<TAB>timeframe<TAB>Time with header, Time unix seconds",
}
DESCRIPTION = (
    "DIGINETICA item views: sessionId;userId;itemId;timeframe;eventdate, or preprocessed TSV "
    "sessionId/itemId/timeframe/Time (unix s)"
)
EVENT_TYPE = "view"
ANONYMOUS_USER_PREFIX = "session:"
VIEWS_COLUMNS = ("sessionId", "userId", "itemId", "timeframe", "eventdate")
TSV_COLUMNS = ("sessionId", "itemId", "timeframe", "Time")


@dataclass(frozen=True)
class Layout:
    """Where a variant keeps what the importer reads, and how its day column reads."""

    delimiter: str
    has_header: bool  # False: the first line is a row, the columns in the documented order
    header: list[str]
    session: int
    item: int
    timeframe: int
    day: int  # eventdate or Time: the event's day
    user: int | None  # absent from the preprocessed TSV
    day_ms: Callable[[str], int | None]

    def mapped(self) -> list[int]:
        return [k for k in (self.session, self.item, self.timeframe, self.day, self.user) if k is not None]


@dataclass(frozen=True)
class SessionFacts:
    """What pass one learns about every session (one entry per session, not per row)."""

    start_day_ms: dict[str, int]  # the session's earliest usable day
    users: dict[str, frozenset[str]]  # user ids named in the session, where any is


def read_rows(source: Path) -> Iterator[SourceRow]:
    facts = session_facts(source)
    ids = EventIds(NAME)
    for record, layout in _records(source):
        yield _row(ids, record, layout, facts)


def _layout(source: Path, line: str) -> Layout:
    """The variant of a file, from its first line."""
    if ";" in line:
        header = header_fields(line, ";")
        if len(header) == len(VIEWS_COLUMNS) and ms_from_date(header[-1]) is not None:
            header, has_header = list(VIEWS_COLUMNS), False  # the original without its header line
        else:
            has_header = True
        delimiter, day_column, day_ms = ";", "eventdate", ms_from_date
        required = ("sessionId", "itemId", "timeframe", "eventdate")  # userId is optional
    elif "\t" in line:
        header, has_header = header_fields(line, "\t"), True
        delimiter, day_column, day_ms, required = "\t", "Time", ms_from_seconds, TSV_COLUMNS
    else:
        raise unknown_variant(source, NAME, line, VARIANTS)
    positions = column_positions(header, required, source, NAME, VARIANTS)
    return Layout(
        delimiter=delimiter,
        has_header=has_header,
        header=header,
        session=positions["sessionId"],
        item=positions["itemId"],
        timeframe=positions["timeframe"],
        day=positions[day_column],
        user=optional_position(header, "userId"),
        day_ms=day_ms,
    )


def _records(source: Path) -> Iterator[tuple[Record, Layout]]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, line = first
        layout = _layout(source, line)
        if layout.has_header:
            rows = split_lines(lines, layout.delimiter, line_number + 1)
        else:
            rows = split_lines(chain([line], lines), layout.delimiter, line_number)
        for record in rows:
            yield record, layout


def _fields(record: Record, layout: Layout) -> list[str] | None:
    fields = record.fields
    return fields if fields is not None and len(fields) == len(layout.header) else None


def session_facts(source: Path) -> SessionFacts:
    start_day_ms: dict[str, int] = {}
    users: dict[str, set[str]] = {}
    for record, layout in _records(source):
        fields = _fields(record, layout)
        if fields is None or (session := text_or_none(fields[layout.session])) is None:
            continue
        day_ms = layout.day_ms(fields[layout.day])
        if day_ms is not None and day_ms < start_day_ms.get(session, MAX_TIME_MS + 1):
            start_day_ms[session] = day_ms
        user = None if layout.user is None else text_or_none(fields[layout.user])
        if user is not None:
            users.setdefault(session, set()).add(user)
    return SessionFacts(start_day_ms, {session: frozenset(names) for session, names in users.items()})


def offset_ms(timeframe: str) -> int | None:
    """``timeframe`` as milliseconds; None when it is not a whole non-negative number."""
    try:
        value = int(timeframe)
    except ValueError:
        return None
    return value if value >= 0 else None


def _row(ids: EventIds, record: Record, layout: Layout, facts: SessionFacts) -> SourceRow:
    fields = _fields(record, layout)
    if fields is None:
        return SourceRow(record.line_number, (unparseable_line(ids, record.text),))
    session = text_or_none(fields[layout.session])
    user = None if layout.user is None else text_or_none(fields[layout.user])
    known = facts.users.get(session, frozenset()) if session is not None else frozenset()
    extra: dict[str, str] = unmapped_fields(layout.header, fields, layout.mapped())
    if user is None and session is not None:
        if len(known) == 1:
            (user,) = known
            extra["user_id_from"] = "same_session"
        else:
            user = f"{ANONYMOUS_USER_PREFIX}{session}"
            extra["user_id_from"] = "session_id"

    raw_day, raw_offset = fields[layout.day], fields[layout.timeframe]
    own_day_ms, offset = layout.day_ms(raw_day), offset_ms(raw_offset)
    time_ms = None
    if own_day_ms is not None and offset is not None:
        start_ms = facts.start_day_ms.get(session, own_day_ms) if session is not None else own_day_ms
        if start_ms + offset <= MAX_TIME_MS:
            time_ms = start_ms + offset
        if start_ms != own_day_ms:
            extra[layout.header[layout.day]] = raw_day
    if len(known) > 1 and session is not None:
        extra["source_session_id"] = session
        session = None
    line = event_line(
        ids,
        time_ms=time_ms,
        raw_time=f"{raw_day} +{raw_offset}ms",
        user_id=user,
        session_id=session,
        item_id=text_or_none(fields[layout.item]),
        event_type=EVENT_TYPE,
        extra=extra or None,
    )
    return SourceRow(record.line_number, (line,))
