"""DIGINETICA (CIKM Cup 2016) item views: ``;``-separated
``session_id;user_id;item_id;timeframe;eventdate`` with a header (columns found by name).

Every row is a ``view``. The event time is ``eventdate`` (the session's day, ``YYYY-MM-DD``,
taken as UTC) plus ``timeframe`` milliseconds (time since the session's start).

Users: most sessions are anonymous (``user_id`` is ``NA``), and some log in part-way, so one
session holds ``NA`` rows and rows of a user. The platform keeps one user per log session, so the
file is read twice: first (whole, whatever the row limit) to learn each session's logged-in
users, then to convert.

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

from pathlib import Path
from typing import Iterator

from ingest.importers.canonical import (
    SourceRow,
    event_id,
    event_line,
    ms_from_date,
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

NAME = "diginetica"
DESCRIPTION = "DIGINETICA item views: session_id;user_id;item_id;timeframe;eventdate with header"
EVENT_TYPE = "view"
COLUMNS = ("session_id", "user_id", "item_id", "timeframe", "eventdate")
DELIMITER = ";"
ANONYMOUS_USER_PREFIX = "session:"


def read_rows(source: Path) -> Iterator[SourceRow]:
    session_users = logged_in_users(source)
    for record, header, positions in _records(source):
        yield _row(source, record, header, positions, session_users)


def _records(source: Path) -> Iterator[tuple[Record, list[str], dict[str, int]]]:
    with open_text(source) as handle:
        lines = iter(handle)
        first = first_line(lines)
        if first is None:
            return
        line_number, header_line = first
        header = header_fields(header_line, DELIMITER)
        positions = column_positions(header, COLUMNS, source, NAME)
        for record in split_lines(lines, DELIMITER, line_number + 1):
            yield record, header, positions


def logged_in_users(source: Path) -> dict[str, frozenset[str]]:
    """Session id -> the user ids its rows name, for sessions where any row names one.

    Holds one entry per logged-in session (not per row), small next to the file.
    """
    users: dict[str, set[str]] = {}
    for record, header, positions in _records(source):
        fields = record.fields
        if fields is None or len(fields) != len(header):
            continue
        session = text_or_none(fields[positions["session_id"]])
        user = text_or_none(fields[positions["user_id"]])
        if session is not None and user is not None:
            users.setdefault(session, set()).add(user)
    return {session: frozenset(names) for session, names in users.items()}


def event_time_ms(eventdate: str, timeframe: str) -> int | None:
    day_ms = ms_from_date(eventdate)
    try:
        offset_ms = int(timeframe)
    except ValueError:
        return None
    if day_ms is None or offset_ms < 0:
        return None
    return day_ms + offset_ms


def _row(
    source: Path,
    record: Record,
    header: list[str],
    positions: dict[str, int],
    session_users: dict[str, frozenset[str]],
) -> SourceRow:
    eid = event_id(NAME, source, record.line_number)
    fields = record.fields
    if fields is None or len(fields) != len(header):
        return SourceRow(record.line_number, (unparseable_line(eid, record.text),))
    session = text_or_none(fields[positions["session_id"]])
    user = text_or_none(fields[positions["user_id"]])
    known = session_users.get(session, frozenset()) if session is not None else frozenset()
    extra = unmapped_fields(header, fields, positions.values())
    if user is None and session is not None:
        if len(known) == 1:
            (user,) = known
            extra["user_id_from"] = "same_session"
        else:
            user = f"{ANONYMOUS_USER_PREFIX}{session}"
            extra["user_id_from"] = "session_id"
    if len(known) > 1:
        extra["source_session_id"] = session
        session = None
    eventdate, timeframe = fields[positions["eventdate"]], fields[positions["timeframe"]]
    line = event_line(
        format_name=NAME,
        event_id=eid,
        time_ms=event_time_ms(eventdate, timeframe),
        raw_time=f"{eventdate} +{timeframe}ms",
        user_id=user,
        session_id=session,
        item_id=text_or_none(fields[positions["item_id"]]),
        event_type=EVENT_TYPE,
        extra=extra or None,
    )
    return SourceRow(record.line_number, (line,))
