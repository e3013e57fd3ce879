"""Offline, point-in-time user sequences: a user's last K items strictly before a time.

This is the reference the online feature is held to (``user_recent_items`` as of "now") and
what a training example may see: for a prediction at ``t`` only events with ``event_time < t``
count, never one at or after ``t``. Events are ordered by ``(event_time, event_id)``, the order
of the dbt marts (``int_events_sessionized``, ``user_features.recent_item_ids``).

Times are compared as UTC instants: naive datetimes are read as UTC (the lake's convention).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from core.settings import Settings


@dataclass(frozen=True)
class Event:
    user_id: str
    event_time: datetime  # UTC, aware
    event_id: str
    item_id: str


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def _as_event(e: Event | Mapping[str, Any]) -> Event:
    if isinstance(e, Event):
        return Event(e.user_id, _utc(e.event_time), e.event_id, e.item_id)
    t = e["event_time"]
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    return Event(str(e["user_id"]), _utc(t), str(e.get("event_id", "")), str(e["item_id"]))


class SequenceIndex:
    """Every user's events sorted once; each as-of lookup is then a binary search."""

    def __init__(self, events: Iterable[Event | Mapping[str, Any]]):
        by_user: dict[str, list[Event]] = defaultdict(list)
        for e in map(_as_event, events):
            by_user[e.user_id].append(e)
        self._times: dict[str, list[datetime]] = {}
        self._items: dict[str, list[str]] = {}
        for user_id, user_events in by_user.items():
            user_events.sort(key=lambda e: (e.event_time, e.event_id))
            self._times[user_id] = [e.event_time for e in user_events]
            self._items[user_id] = [e.item_id for e in user_events]

    @property
    def user_ids(self) -> list[str]:
        return sorted(self._times)

    def last_k_before(self, user_id: str, as_of: datetime, k: int) -> list[str]:
        """The user's last ``k`` items with ``event_time < as_of``, oldest first."""
        if k <= 0:
            return []
        times = self._times.get(user_id)
        if not times:
            return []
        # bisect_left: the first event at or after as_of is excluded, and so is everything later
        end = bisect_left(times, _utc(as_of))
        return self._items[user_id][max(0, end - k):end]


def last_k_items_as_of(
    events: Iterable[Event | Mapping[str, Any]],
    as_of_times: Sequence[tuple[str, datetime]],
    k: int,
) -> list[list[str]]:
    """For each ``(user_id, as_of)``, the user's last ``k`` items strictly before ``as_of``.

    ``events`` are :class:`Event` or mappings with ``user_id``, ``event_time``, ``item_id`` and
    (for the tie order) ``event_id``. The result is aligned with ``as_of_times``; a user with
    no earlier event gets ``[]``.
    """
    index = SequenceIndex(events)
    return [index.last_k_before(user_id, as_of, k) for user_id, as_of in as_of_times]


def user_sequences_as_of(
    events: Iterable[Event | Mapping[str, Any]], as_of: datetime, k: int
) -> dict[str, list[str]]:
    """Every user's last ``k`` items strictly before one time (users without any: left out)."""
    index = SequenceIndex(events)
    out = {u: index.last_k_before(u, as_of, k) for u in index.user_ids}
    return {u: items for u, items in out.items() if items}


def load_events(settings: Settings) -> list[Event]:
    """The warehouse's sessionized events (read-only), the input of the builders above."""
    import duckdb

    if not settings.warehouse_path.is_file():
        raise FileNotFoundError(f"no warehouse at {settings.warehouse_path}; run the dbt stage first")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            "SELECT CAST(user_id AS VARCHAR), CAST(event_time AS TIMESTAMP), "
            "CAST(event_id AS VARCHAR), CAST(item_id AS VARCHAR) FROM int_events_sessionized"
        ).fetchall()
    return [Event(u, _utc(t), e, i) for u, t, e, i in rows]
