"""Building canonical raw-event lines (docs/architecture.md) from converted source rows.

Every source row becomes at least one line. A row that cannot be converted is still written, in
a form ingestion is certain to quarantine, so the lake's quarantine holds it with a reason and
the reconciliation accounts for it; the importer never decides on its own to drop data.

* a field that is missing or unusable (no item, a timestamp that does not parse) is left out of
  the record and its raw value goes into ``extra``: ingestion's reason is
  ``missing_field:<name>``. A bad timestamp is left out rather than passed as text because text
  the importer could not read might still be ISO-8601 that ingestion accepts;
* an event type the format has no mapping for is written as ``<format>:<value>``, which is never
  a canonical type: ``unknown_event_type``;
* a row that does not even split into fields is written as ``<event_id>\\t<JSON string of the
  row>``, which is not a JSON object: ``unparseable``;
* an id the serving API could not be asked about (too long, a control character) is written as
  it is: ``invalid_id:<name>`` (``ingest.ids``).

The reason strings are those of ``ingest.schema`` (a test checks they agree). They are repeated
here because ``ingest.schema`` imports pyspark, and the import DAG's parse (which reads the
format registry) must stay free of it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from ingest.ids import first_invalid_id
from core.names import EVENT_TYPES, UNKNOWN_EVENT_TYPE, UNPARSEABLE

# Ingestion checks required fields in this order; the first missing one is the reason.
REQUIRED_FIELDS = ("event_id", "event_time", "user_id", "item_id", "event_type")
LINE_ENDS = "\r\n"
# An unparseable row keeps this much of its text: the quarantine stores 10,000 characters of a
# line (the event id is a digest of the whole row, so rows differing further on stay apart).
MAX_KEPT_ROW_CHARS = 8_000
ID_DIGEST_BYTES = 16
# How many ids back an identical row counts as a repeat rather than a re-delivery (EventIds).
REPEAT_WINDOW = 100_000

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAY_MS = 86_400_000
# Event times outside these bounds have no 4-digit-year ISO form (the canonical format) or are
# a negative epoch, which in these logs is always a broken value, never a 1960s click.
MIN_TIME_MS = 0
MAX_TIME_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc) - EPOCH) // timedelta(milliseconds=1)


def missing_field(name: str) -> str:
    return f"missing_field:{name}"


@dataclass(frozen=True, slots=True)
class CanonicalLine:
    """One line of the raw log, where it goes, and what ingestion will make of it."""

    text: str  # JSON (or, for an unparseable row, plain) text without the newline
    day: date | None  # arrival day = UTC date of the event time; None when the row has no usable time
    reason: str | None  # None: a valid event; else the quarantine reason ingestion will give it


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One record of the source file (header and blank lines excluded) and the lines it became."""

    line_number: int  # 1-based physical line where the record starts, as ``sed -n Np`` counts
    lines: tuple[CanonicalLine, ...]


class SourceFormatError(ValueError):
    """The source is not in the format it was imported as (wrong header, nothing convertible)."""


class EventIds:
    """Event ids from what a row says, not where it sits, for one source file.

    ``<format>:<32 hex digits>``: a BLAKE2b digest of the format and the row's content (for an
    event, the JSON of its canonical record without the id; for an unparseable row, its text).
    Importing the same rows again, from a copy, a renamed file or a ``.gz`` of it, gives the
    same ids, and ingestion keeps one event per id: an event that reaches the lake twice (two
    imports of one file, overlapping splits) is stored once, and re-ingesting a day after a
    re-import leaves every event's id as it was.

    Two rows with identical content are two events when both are in the file (a log records a
    double click as two lines), so the n-th repeat gets ``:<n>`` appended. Repeats are counted
    among the last ``window`` ids only, so memory stays bounded by the window, not the file:
    a row identical to one further back is taken for the same event delivered twice and
    collapses into it at ingestion. Real repeats sit next to each other (one session, one
    millisecond), well inside the window.
    """

    def __init__(self, format_name: str, window: int = REPEAT_WINDOW):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.format_name = format_name
        self.window = window
        self._counts: dict[bytes, int] = {}
        self._recent: deque[bytes] = deque()

    def for_record(self, record_json: str) -> str:
        return self._next("event", record_json)

    def for_text(self, text: str) -> str:
        return self._next("row", text)

    def _next(self, kind: str, content: str) -> str:
        hasher = hashlib.blake2b(digest_size=ID_DIGEST_BYTES)
        # surrogateescape: undecodable source bytes hash as themselves.
        hasher.update(f"{self.format_name}\0{kind}\0{content}".encode("utf-8", "surrogateescape"))
        digest = hasher.digest()
        repeat = self._counts.get(digest, 0)
        self._counts[digest] = repeat + 1
        self._recent.append(digest)
        if len(self._recent) > self.window:
            oldest = self._recent.popleft()
            if self._counts[oldest] == 1:
                del self._counts[oldest]
            else:
                self._counts[oldest] -= 1
        base = f"{self.format_name}:{digest.hex()}"
        return base if repeat == 0 else f"{base}:{repeat}"


def text_or_none(value: Any) -> str | None:
    """A source id as a string; blank, ``NA`` and JSON null mean "no value"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        value = int(value)
    text = str(value).strip()
    return None if text in ("", "NA", "NaN", "nan", "null", "None") else text


def ms_from_seconds(text: str) -> int | None:
    """Unix seconds, possibly fractional (``1396437466.94``), to milliseconds; None if unusable.

    Decimal, not float: a float rounds ``.94`` to ``.939999…``, and half-even rounding of exact
    decimals gives the same milliseconds on every machine.
    """
    try:
        seconds = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        return None
    if not seconds.is_finite():
        return None
    ms = int((seconds * 1000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return ms if MIN_TIME_MS <= ms <= MAX_TIME_MS else None


def ms_from_millis(value: Any) -> int | None:
    """Unix milliseconds from a JSON number or numeric text; None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        ms = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        ms = int(value)
    elif isinstance(value, str):
        try:
            ms = int(value.strip())
        except ValueError:
            return None
    else:
        return None
    return ms if MIN_TIME_MS <= ms <= MAX_TIME_MS else None


def ms_from_iso(text: str) -> int | None:
    """An ISO-8601 time with a zone (``2014-04-07T10:51:09.277Z``) to milliseconds; None if unusable."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None
    if parsed.tzinfo is None:
        # A time without a zone is ambiguous; the canonical format requires one.
        return None
    ms = (parsed - EPOCH) // timedelta(milliseconds=1)
    return ms if MIN_TIME_MS <= ms <= MAX_TIME_MS else None


def ms_from_date(text: str) -> int | None:
    """Midnight UTC of a ``YYYY-MM-DD`` date, in milliseconds; None if unusable."""
    try:
        day = date.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None
    if len(text.strip()) != 10:
        return None  # fromisoformat also takes 20160509; the format promises dashes
    return (day - EPOCH.date()).days * DAY_MS


def iso_time(time_ms: int) -> str:
    """``2026-11-20T10:15:03.123Z``: the canonical form, always with milliseconds and ``Z``."""
    moment = EPOCH + timedelta(milliseconds=time_ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def arrival_day(time_ms: int) -> date:
    return EPOCH.date() + timedelta(days=time_ms // DAY_MS)


def dumps(record: dict[str, Any]) -> str:
    # allow_nan=False: NaN is not JSON, and ingestion's strict parser would quarantine the line.
    return json.dumps(record, separators=(",", ":"), allow_nan=False)


def event_line(
    ids: EventIds,
    *,
    time_ms: int | None,
    user_id: str | None,
    item_id: str | None,
    event_type: str | None,
    raw_event_type: str | None = None,
    session_id: str | None = None,
    extra: dict[str, Any] | None = None,
    raw_time: Any = None,
) -> CanonicalLine:
    """One event in field order; whatever is unusable is left out so ingestion quarantines it.

    ``event_type`` is the canonical type the format maps the source value to, or None when the
    format has no mapping for ``raw_event_type``.
    """
    extra = dict(extra or {})
    record: dict[str, Any] = {}
    if time_ms is not None:
        record["event_time"] = iso_time(time_ms)
    elif raw_time is not None:
        extra["source_time"] = raw_time
    if user_id is not None:
        record["user_id"] = user_id
    if session_id is not None:
        record["session_id"] = session_id
    if item_id is not None:
        record["item_id"] = item_id
    if event_type is not None:
        record["event_type"] = event_type
    elif raw_event_type is not None:
        record["event_type"] = f"{ids.format_name}:{raw_event_type}"
    if extra:
        record["extra"] = extra

    # The id goes first in the line; the rest is the JSON it was computed from, written once.
    body = dumps(record)
    text = f'{{"event_id":{json.dumps(ids.for_record(body))}' + ("}" if body == "{}" else f",{body[1:]}")
    # The id is always there (it is not in ``record``): the first field that can be missing is next.
    reason = next((missing_field(name) for name in REQUIRED_FIELDS if name not in record and name != "event_id"), None)
    if reason is None:
        reason = first_invalid_id(record)
    if reason is None and record["event_type"] not in EVENT_TYPES:
        reason = UNKNOWN_EVENT_TYPE
    return CanonicalLine(text, None if time_ms is None else arrival_day(time_ms), reason)


def unparseable_line(ids: EventIds, raw_row: str) -> CanonicalLine:
    """A source row that did not split into fields, for the quarantine: its text (newlines and
    undecodable bytes escaped, at most ``MAX_KEPT_ROW_CHARS``) after its id."""
    text = raw_row.rstrip(LINE_ENDS)
    return CanonicalLine(f"{ids.for_text(text)}\t{json.dumps(text[:MAX_KEPT_ROW_CHARS])}", None, UNPARSEABLE)
