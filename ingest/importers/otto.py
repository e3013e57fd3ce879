"""OTTO (Kaggle 2022, CC-BY-4.0) session logs: one JSON object per line,
``{"session": int, "events": [{"aid": int, "ts": unix ms, "type": "clicks"|"carts"|"orders"}]}``.

``clicks``/``carts``/``orders`` become ``click``/``add_to_cart``/``purchase``. OTTO has no user
ids: the session is both user and session. One source row holds a whole session; every event
becomes its own line, with its own id (from its content, see ``canonical.EventIds``: the same
event twice in a session, which OTTO has, stays two events); a row that is not such an object at
all becomes one unparseable line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ingest.importers.canonical import (
    CanonicalLine,
    EventIds,
    SourceRow,
    event_line,
    ms_from_millis,
    text_or_none,
    unparseable_line,
)
from ingest.importers.source_files import open_text, undecodable

NAME = "otto"
DESCRIPTION = 'OTTO JSON lines {"session", "events": [{"aid", "ts" (ms), "type": clicks|carts|orders}]}'
EVENT_TYPES = {"clicks": "click", "carts": "add_to_cart", "orders": "purchase"}


def read_rows(source: Path) -> Iterator[SourceRow]:
    ids = EventIds(NAME)
    with open_text(source) as handle:
        for line_number, text in enumerate(handle, start=1):
            if text.strip():
                yield _row(ids, line_number, text)


def _reject_constant(name: str) -> None:
    # NaN and Infinity are not JSON; Python's parser accepts them, the canonical writer cannot.
    raise ValueError(f"not JSON: {name}")


def _row(ids: EventIds, line_number: int, text: str) -> SourceRow:
    try:
        session_row = None if undecodable(text) else json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        session_row = None
    if (
        not isinstance(session_row, dict)
        or not isinstance(session_row.get("events"), list)
        or not session_row["events"]
    ):
        return SourceRow(line_number, (unparseable_line(ids, text),))
    session = text_or_none(session_row.get("session"))
    session_extra = {key: value for key, value in session_row.items() if key not in ("session", "events")}
    lines = tuple(
        _event(ids, session, session_extra, event) for event in session_row["events"]
    )
    return SourceRow(line_number, lines)


def _event(ids: EventIds, session: str | None, session_extra: dict[str, Any], event: Any) -> CanonicalLine:
    if not isinstance(event, dict):
        return unparseable_line(ids, json.dumps(event))
    raw_type = event.get("type")
    raw_type_text = None if raw_type is None else str(raw_type)
    extra = session_extra | {key: value for key, value in event.items() if key not in ("aid", "ts", "type")}
    return event_line(
        ids,
        time_ms=ms_from_millis(event.get("ts")),
        raw_time=event.get("ts"),
        user_id=session,
        session_id=session,
        item_id=text_or_none(event.get("aid")),
        event_type=EVENT_TYPES.get(raw_type_text) if raw_type_text is not None else None,
        raw_event_type=raw_type_text,
        extra=extra or None,
    )
