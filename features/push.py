"""Streaming freshness: append live events to users' online recent-item lists.

``push_user_events(settings, events)`` is what serving's ``POST /events`` calls. For every user
in ``events`` it reads the list stored online (feature view ``user_recent_items``), appends the
new events' items in ``(event_time, event_id)`` order, keeps the last ``settings.max_sequence_length``
and pushes the result through the Feast push source ``user_events_push`` (``PushMode.ONLINE``),
so the next recommendation for that user already sees them. The events themselves still reach the
lake through the raw logs; the nightly dbt build and materialization then replace the pushed list
with the warehouse's (the same list, when the log and the pushes agree).

Event times are bounded like ingestion's quarantine, against the server's clock: none later than
``settings.max_future_skew_minutes`` ahead, none older than ``settings.max_event_age_days``. A
pushed row is stamped with its newest event's time and the online store keeps the newest row, so
one event stamped years ahead would otherwise freeze the user's list against every later push
and materialization.

The API pushes through :func:`push_user_events_within`: one push thread, at most
``MAX_PENDING_PUSHES`` pushes waiting for it, each given up after ``settings.push_timeout_ms``
(:class:`PushRefused`), so a hung online store costs one thread and quick 503s, never a pile of
blocked request threads.

Command line, for a quick manual test::

    python -m features.push --user U --item I [--event-type view] [--event-time ISO]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import sys
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from features.online_reader import as_utc, entity_key
from features.store import (
    PROJECT,
    RECENT_ITEMS_FEATURE,
    TIMESTAMP_FIELD,
    USER_EVENTS_PUSH_SOURCE,
    USER_JOIN_KEY,
    USER_SEQUENCE_VIEW,
    feature_store,
)
from core.names import EVENT_TYPES
from core.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

# Read-modify-write of a user's list: pushes from one process are serialised. Two processes
# pushing for the same user at the same instant can lose one append (the next nightly
# materialization restores the full list from the log).
_PUSH_LOCK = threading.Lock()
_STORES: dict[tuple[str, str, str, str], "FeatureStore"] = {}
_STORES_LOCK = threading.Lock()
# Redis skips a write whose timestamp is not newer than the stored one, so a pushed row is
# always at least this much newer than the row it replaces.
_TICK = timedelta(microseconds=1)
# Pushes serialise on _PUSH_LOCK, so one thread does them all; requests beyond this many waiting
# for it are refused at once (503) rather than queued behind a hung store.
MAX_PENDING_PUSHES = 16


class PushRefused(RuntimeError):
    """The events were not (or not confirmably) pushed: the online store is busy or did not
    answer in time. The message is one line, for the API's 503."""


def _store_for(settings: Settings, project: str) -> "FeatureStore":
    """One FeatureStore per configuration and process: building one reads the registry."""
    key = (str(settings.home), settings.feast_online_store, settings.redis_connection_string, project)
    with _STORES_LOCK:
        if key not in _STORES:
            _STORES[key] = feature_store(settings, project=project)
        return _STORES[key]


def parse_events(
    settings: Settings, events: Sequence[Mapping[str, Any]], now: datetime | None = None
) -> list[dict[str, Any]]:
    """``events`` checked and normalised (UTC times, default type and time); raises ValueError
    naming the first bad event's index (``events[i]: ...``), one line."""
    now = now or datetime.now(timezone.utc)
    latest = now + timedelta(minutes=settings.max_future_skew_minutes)
    earliest = now - timedelta(days=settings.max_event_age_days)
    parsed = []
    for index, raw in enumerate(events):
        try:
            event = _parse_event(raw, now)
        except ValueError as exc:
            raise ValueError(f"events[{index}]: {exc}") from None
        when = event["event_time"]
        if when > latest:
            raise ValueError(
                f"events[{index}]: event_time {when.isoformat()} is more than "
                f"{settings.max_future_skew_minutes} minutes ahead of the server's clock "
                f"({now.isoformat(timespec='seconds')}); nothing was pushed")
        if when < earliest:
            raise ValueError(
                f"events[{index}]: event_time {when.isoformat()} is older than the "
                f"{settings.max_event_age_days}-day retention horizon "
                f"({earliest.isoformat(timespec='seconds')}); nothing was pushed")
        parsed.append(event)
    return parsed


def _parse_event(raw: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    user_id, item_id = raw.get("user_id"), raw.get("item_id")
    if not isinstance(user_id, str) or not user_id or not isinstance(item_id, str) or not item_id:
        raise ValueError(f"an event needs non-empty string user_id and item_id: {dict(raw)!r}")
    event_type = raw.get("event_type") or "view"
    if event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {EVENT_TYPES}, got {event_type!r}")
    when = raw.get("event_time")
    if when is None:
        when = now
    elif isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"event_time is not an ISO 8601 time: {when!r}") from None
    elif not isinstance(when, datetime):
        raise ValueError(f"event_time must be a datetime or an ISO 8601 string, got {when!r}")
    return {"user_id": user_id, "item_id": item_id, "event_type": event_type,
            "event_time": as_utc(when), "event_id": str(raw.get("event_id") or "")}


def read_recent_items(
    store: "FeatureStore", user_ids: Sequence[str]
) -> dict[str, tuple[datetime | None, list[str] | None]]:
    """``{user_id: (event_timestamp, recent_item_ids)}`` as stored online; (None, None) if none."""
    view = store.get_feature_view(USER_SEQUENCE_VIEW, allow_registry_cache=True)
    keys = [entity_key([USER_JOIN_KEY], [u]) for u in user_ids]
    rows = store._get_provider().online_read(
        config=store.config, table=view, entity_keys=keys, requested_features=[RECENT_ITEMS_FEATURE]
    )
    out: dict[str, tuple[datetime | None, list[str] | None]] = {}
    for user_id, (ts, values) in zip(user_ids, rows):
        value = (values or {}).get(RECENT_ITEMS_FEATURE)
        if value is None or value.WhichOneof("val") is None:
            out[user_id] = (as_utc(ts) if ts else None, None)
        else:
            out[user_id] = (as_utc(ts) if ts else None, list(value.string_list_val.val))
    return out


def push_user_events(
    settings: Settings,
    events: Sequence[Mapping[str, Any]],
    *,
    project: str = PROJECT,
    store: "FeatureStore | None" = None,
) -> dict[str, Any]:
    """Append ``events`` to their users' online recent-item lists; see the module docstring.

    ``events``: mappings with ``user_id`` and ``item_id`` (non-empty strings), optional
    ``event_type`` (one of ``EVENT_TYPES``, default ``view``), ``event_time`` (aware datetime
    or ISO 8601 string, naive = UTC; default now) and ``event_id`` (tie order). Every event
    type appends its item, repeats kept, as in the ``user_features`` mart.

    Returns ``{"users": n, "events": n, "recent_item_ids": {user_id: [...]},
    "event_timestamp": {user_id: iso}}`` with the lists as pushed. Raises ``ValueError`` for a
    malformed event or one outside the time bounds (:func:`parse_events`; nothing is pushed
    then). The pushed row's ``event_timestamp`` is the newest event's time, or 1 µs past the
    stored row's when that is not older (Redis keeps the newer).
    """
    parsed = parse_events(settings, events)
    return _push_parsed(settings, parsed, project=project, store=store)


def _push_parsed(
    settings: Settings,
    parsed: list[dict[str, Any]],
    *,
    project: str = PROJECT,
    store: "FeatureStore | None" = None,
) -> dict[str, Any]:
    if not parsed:
        return {"users": 0, "events": 0, "recent_item_ids": {}, "event_timestamp": {}}
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in parsed:
        by_user[e["user_id"]].append(e)
    k = settings.max_sequence_length
    store = store or _store_for(settings, project)

    import pandas as pd
    from feast.data_source import PushMode

    with _PUSH_LOCK:
        current = read_recent_items(store, list(by_user))
        rows = []
        for user_id, user_events in by_user.items():
            user_events.sort(key=lambda e: (e["event_time"], e["event_id"]))
            stored_ts, stored_items = current[user_id]
            items = (stored_items or []) + [e["item_id"] for e in user_events]
            ts = user_events[-1]["event_time"]
            if stored_ts is not None and ts <= stored_ts:
                ts = stored_ts + _TICK
            rows.append({USER_JOIN_KEY: user_id, TIMESTAMP_FIELD: ts,
                         RECENT_ITEMS_FEATURE: items[-k:] if k > 0 else []})
        frame = pd.DataFrame(rows)
        frame[TIMESTAMP_FIELD] = pd.to_datetime(frame[TIMESTAMP_FIELD], utc=True)
        store.push(USER_EVENTS_PUSH_SOURCE, frame, to=PushMode.ONLINE)
    return {
        "users": len(rows),
        "events": len(parsed),
        "recent_item_ids": {r[USER_JOIN_KEY]: r[RECENT_ITEMS_FEATURE] for r in rows},
        "event_timestamp": {r[USER_JOIN_KEY]: r[TIMESTAMP_FIELD].isoformat() for r in rows},
    }


class _PushQueue:
    """One push thread (started on first use) and a bound on the pushes waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.pending = 0

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        with self._lock:
            if self.pending >= MAX_PENDING_PUSHES:
                raise PushRefused(f"online store busy: {self.pending} pushes already waiting for it; "
                                  "nothing was pushed, retry later")
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="feature-push")
            self.pending += 1
        try:
            future = self._pool.submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)  # also on cancel: a dropped push stops counting
        return future

    def _done(self, _future) -> None:
        with self._lock:
            self.pending -= 1


_QUEUE = _PushQueue()


async def push_user_events_within(
    settings: Settings,
    events: Sequence[Mapping[str, Any]],
    *,
    store: "FeatureStore",
    project: str = PROJECT,
) -> dict[str, Any]:
    """:func:`push_user_events` for a request path, awaited on the caller's event loop.

    The events are checked here (``ValueError`` at once, nothing pushed); the push itself runs
    on the push thread and is given up after ``settings.push_timeout_ms``: :class:`PushRefused`
    then, and a push still waiting for the thread is dropped. One already talking to the store
    cannot be stopped (a thread cannot be); it ends at the store's own socket timeout, and may
    still land.
    """
    parsed = parse_events(settings, events)
    timeout_s = settings.push_timeout_ms / 1000.0
    future = _QUEUE.submit(_push_parsed, settings, parsed, project=project, store=store)
    deadline = asyncio.timeout(timeout_s)
    try:
        async with deadline:
            return await asyncio.wrap_future(future)
    except TimeoutError:
        if not deadline.expired():
            raise  # the store's own timeout error, not this deadline
        future.cancel()
        raise PushRefused(f"online store did not answer within {settings.push_timeout_ms:g} ms; "
                          "the push was given up (not confirmed)") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m features.push",
        description="Append one event to a user's online recent-item list (Settings from env).",
    )
    parser.add_argument("--user", required=True)
    parser.add_argument("--item", required=True)
    parser.add_argument("--event-type", default="view", choices=EVENT_TYPES)
    parser.add_argument("--event-time", default=None, help="ISO 8601, UTC when naive; default now")
    parser.add_argument("--project", default=PROJECT)
    args = parser.parse_args(argv)
    event = {"user_id": args.user, "item_id": args.item, "event_type": args.event_type}
    if args.event_time:
        event["event_time"] = args.event_time
    result = push_user_events(Settings.from_env(), [event], project=args.project)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
