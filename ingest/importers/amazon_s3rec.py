"""Amazon review sequences as the S3Rec / RecBole benchmarks ship them (``Beauty.txt``,
``Sports_and_Outdoors.txt``): one line per user, ``user item item ...`` separated by blanks, the
items in the order the user reviewed them; no header, no timestamps. The item side information
beside them (``Beauty_item2attributes.json``) is imported with ``--items``.

The file has no times, so they are synthesized, deterministically: consecutive items of a user
are one day and one minute apart, and every user's sequence is aligned at its END, so all users'
last items share one instant, their second-to-last items the instant a day and a minute before,
and so on. Item ``k`` (0-based) of a user with ``n`` items is at ``start_date`` 00:00 UTC plus
``p`` days and ``p`` minutes, ``p = L - n + k`` with ``L`` the longest sequence in the file (read
in a first pass), so the longest sequence starts at ``start_date`` 00:00 and every last item
is ``L - 1`` days and ``L - 1`` minutes after it. Why this layout: the platform's temporal split with its
default one-day windows (``training.data``: a window includes its start instant) then holds
exactly each user's last item in the test window and the one before in the validation window,
which is the leave-one-out protocol the published figures on these files use. Only the order
within a user is real; time gaps, time of day and which users share a day mean nothing (and the
30-minute inactivity gap makes every event a session of its own).

Every item is a ``view``: a review says the user interacted with the item, not what the funnel
step was (as for MovieLens ratings). A line with a user but no item does not split into an
interaction and goes to the quarantine as ``unparseable``.
"""

from __future__ import annotations

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
from ingest.importers.source_files import MAX_RECORD_CHARS, open_text, undecodable

NAME = "amazon_s3rec"
DESCRIPTION = "Amazon review sequences (S3Rec Beauty.txt: user item item ...; no timestamps: times synthesized)"
EVENT_TYPE = "view"
DEFAULT_START_DATE = date(2014, 1, 1)
# A day and a minute: more than the one-day window, so a window starting at an item's instant
# never also holds the next-older item (see the module docstring).
ITEM_SPACING_MS = DAY_MS + 60_000


def _fields(text: str) -> list[str] | None:
    """The line's user and items; None when it is not such a line (too long, undecodable, no item)."""
    if len(text) > MAX_RECORD_CHARS or undecodable(text):
        return None
    fields = text.split()
    return fields if len(fields) >= 2 else None


def longest_sequence(source: Path) -> int:
    """Items of the longest convertible line (the first pass); 0 for none."""
    longest = 0
    with open_text(source) as handle:
        for line in handle:
            fields = _fields(line.rstrip("\r\n"))
            if fields is not None:
                longest = max(longest, len(fields) - 1)
    return longest


def item_time_ms(start_date: date, longest: int, n_items: int, k: int) -> int:
    """Synthesized time of item ``k`` of a user with ``n_items`` items (see the module docstring)."""
    position = longest - n_items + k
    return (start_date - EPOCH.date()).days * DAY_MS + position * ITEM_SPACING_MS


def read_rows(source: Path, *, start_date: date = DEFAULT_START_DATE) -> Iterator[SourceRow]:
    longest = longest_sequence(source)
    ids = EventIds(NAME)
    with open_text(source) as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                continue  # a blank line holds no row
            fields = _fields(text)
            if fields is None:
                yield SourceRow(line_number, (unparseable_line(ids, text),))
                continue
            user, items = text_or_none(fields[0]), fields[1:]
            yield SourceRow(line_number, tuple(
                event_line(
                    ids,
                    time_ms=item_time_ms(start_date, longest, len(items), k),
                    user_id=user,
                    item_id=text_or_none(item),
                    event_type=EVENT_TYPE,
                )
                for k, item in enumerate(items)
            ))
