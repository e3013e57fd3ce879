"""Synthetic interaction logs in the canonical raw format, one folder per arrival day.

The logs are made to exercise every later stage:

* item popularity follows a power law (Zipf, exponent ~1), so a popularity baseline is
  a reasonable but beatable opponent;
* items belong to taste clusters and every item has a few likely successor items (a sparse
  Markov chain), and users prefer one or two clusters: the next item depends on the current
  one, which a sequential model (SASRec) can learn and a popularity ranking cannot;
* users are active on some days only; their events form sessions separated by more than 30
  minutes of inactivity, with events seconds to minutes apart inside a session; half the users'
  clients send a session id;
* event types follow a funnel: every visit is a ``view``, some get a ``click``, fewer an
  ``add_to_cart`` and about half of those a ``purchase``;
* ingestion's defect handling is exercised by a ``defect_rate`` share of malformed lines,
  re-sent duplicates (same line, same or next arrival day) and late events (delivered one or two
  arrival days after they happened); ``corrupt_dates`` get ~40 % garbage lines so that the
  quality gate must stop on them.

Every planted defect is counted in the returned summary, per arrival day, with the quarantine
reason ingestion is expected to give it. A seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import gzip as gzip_module
import json
import math
import os
import random
from bisect import bisect
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ingest.schema import EMPTY_LINE, UNKNOWN_EVENT_TYPE, UNPARSEABLE, bad_type, missing_field
from core.names import EVENT_TYPES

VIEW, CLICK, ADD_TO_CART, PURCHASE = EVENT_TYPES
FILE_STEM = "events-00000"

DAY_MS = 86_400_000
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
# Sessions in the logs are separated by more than the 30-minute gap the sessionizer uses, and
# events inside one are never that far apart, so gap sessions and log session ids agree.
MIN_SESSION_GAP_MS = 31 * MINUTE_MS
MEAN_EXTRA_SESSION_GAP_MS = 90 * MINUTE_MS
MAX_IN_SESSION_GAP_MS = 10 * MINUTE_MS

ZIPF_EXPONENT = 1.0
ITEMS_PER_CLUSTER = 25
MAX_CLUSTERS = 40
SUCCESSOR_WEIGHTS = (0.5, 0.25, 0.15, 0.1)
# Next visit: a successor of the current item, else the user's taste, else anything popular.
P_FOLLOW_SUCCESSOR = 0.75
P_TASTE = 0.7
# Per visit: the probability that the session ends after it (mean ~5 visits per session).
P_END_SESSION = 0.2
# Funnel: P(click | view), P(add_to_cart | click), P(purchase | add_to_cart).
P_CLICK, P_ADD_TO_CART, P_PURCHASE = 0.35, 0.25, 0.5
P_CLIENT_SENDS_SESSION_ID = 0.5
CORRUPT_DAY_GARBAGE_SHARE = 0.4
# Share of the duplicates that are re-sent on the next arrival day rather than the same one.
P_DUPLICATE_NEXT_DAY = 0.3

MALFORMED_KINDS = (UNPARSEABLE, missing_field("item_id"), UNKNOWN_EVENT_TYPE, bad_type("event_time"))
GARBAGE_KINDS = (
    UNPARSEABLE,
    EMPTY_LINE,
    missing_field("user_id"),
    UNKNOWN_EVENT_TYPE,
    bad_type("event_time"),
)
UNKNOWN_TYPES = ("share", "hover", "wishlist", "bot_ping")
BAD_TIME_STRINGS = ("{d:%d/%m/%Y} 10:15:03", "not-a-time", "{d:%Y}-13-45T99:00:00Z", "yesterday")
REFERRERS = ("search", "home", "recommendation", "category")


@dataclass(frozen=True)
class _Catalog:
    item_ids: list[str]
    popularity_cum: list[float]
    cluster_members: list[list[int]]
    cluster_cum: list[list[float]]
    successors: list[list[int]]
    successor_cum: list[list[float]]
    prices: list[float]


@dataclass(frozen=True)
class _User:
    user_id: str
    activity: float
    clusters: tuple[int, ...]
    sends_session_id: bool


@dataclass
class _Event:
    time_ms: int  # since the epoch, UTC
    user: int
    session_id: str | None
    item: int
    event_type: str
    extra: dict[str, Any] | None


@dataclass
class _ArrivalDay:
    day: date
    corrupt: bool
    # (sort key in ms, tie-break sequence, line): the file is written in this order.
    lines: list[tuple[int, int, str]] = field(default_factory=list)
    events: int = 0
    late_events: int = 0
    duplicate_lines: int = 0
    quarantine_reasons: Counter = field(default_factory=Counter)

    def add(self, sort_key: int, line: str) -> None:
        self.lines.append((sort_key, len(self.lines), line))


def generate_logs(
    raw_dir: Path,
    start_date: date,
    days: int,
    n_users: int,
    n_items: int,
    events_per_user_per_day: float = 3.0,
    seed: int = 0,
    defect_rate: float = 0.01,
    corrupt_dates: Iterable[date] = (),
    gzip: bool = True,
) -> dict[str, Any]:
    """Write ``raw_dir/<YYYY-MM-DD>/events-00000.jsonl[.gz]`` for ``days`` arrival days.

    ``events_per_user_per_day`` is the mean over all users and days (inactive days included).
    Returns a summary: per arrival day (``days``, keyed by ISO date) the lines written, the
    valid unique events among them, late events, duplicate lines, the quarantine reasons
    ingestion should give the malformed lines, and whether the day is corrupt; plus totals.
    """
    if days < 1 or n_users < 1 or n_items < 1:
        raise ValueError("days, n_users and n_items must be at least 1")
    if events_per_user_per_day <= 0:
        raise ValueError("events_per_user_per_day must be positive")
    if not 0 <= defect_rate < 0.5:
        raise ValueError("defect_rate must be in [0, 0.5)")
    arrival_dates = [start_date + timedelta(days=k) for k in range(days)]
    corrupt = set(corrupt_dates)
    outside = sorted(d for d in corrupt if d not in arrival_dates)
    if outside:
        raise ValueError(f"corrupt dates outside the generated range: {[d.isoformat() for d in outside]}")

    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    catalog = _build_catalog(rng, n_items)
    users = _build_users(rng, n_users, len(catalog.cluster_members))
    arrivals = [_ArrivalDay(day=d, corrupt=d in corrupt) for d in arrival_dates]

    for k, day in enumerate(arrival_dates):
        events = _simulate_day(rng, np_rng, catalog, users, day, events_per_user_per_day)
        _deliver(rng, catalog, users, day, k, events, arrivals, defect_rate)
    for k, arrival in enumerate(arrivals):
        if arrival.corrupt:
            _add_garbage(rng, arrival, k)

    raw_dir = Path(raw_dir)
    day_summaries: dict[str, dict[str, Any]] = {}
    for arrival in arrivals:
        path = _write_day(raw_dir, arrival, gzip)
        day_summaries[arrival.day.isoformat()] = {
            "path": str(path),
            "lines": len(arrival.lines),
            "events": arrival.events,
            "late_events": arrival.late_events,
            "duplicate_lines": arrival.duplicate_lines,
            "quarantined_lines": sum(arrival.quarantine_reasons.values()),
            "quarantine_reasons": dict(sorted(arrival.quarantine_reasons.items())),
            "corrupt": arrival.corrupt,
        }
    totals = {
        key: sum(s[key] for s in day_summaries.values())
        for key in ("lines", "events", "late_events", "duplicate_lines", "quarantined_lines")
    }
    return {
        "raw_dir": str(raw_dir),
        "start_date": start_date.isoformat(),
        "n_days": days,
        "n_users": n_users,
        "n_items": n_items,
        "seed": seed,
        "corrupt_dates": sorted(d.isoformat() for d in corrupt),
        **totals,
        "days": day_summaries,
    }


# ---- the world: items, clusters, successors, users ----


def _build_catalog(rng: random.Random, n_items: int) -> _Catalog:
    width = max(5, len(str(n_items - 1)))
    item_ids = [f"i{k:0{width}d}" for k in range(n_items)]
    # Popularity rank is shuffled against the id so that ids carry no signal.
    ranks = list(range(n_items))
    rng.shuffle(ranks)
    popularity = [1.0 / (rank + 1) ** ZIPF_EXPONENT for rank in ranks]

    n_clusters = max(1, min(MAX_CLUSTERS, n_items // ITEMS_PER_CLUSTER))
    order = list(range(n_items))
    rng.shuffle(order)
    cluster_of = [0] * n_items
    cluster_members: list[list[int]] = [[] for _ in range(n_clusters)]
    for position, item in enumerate(order):
        cluster_of[item] = position % n_clusters
        cluster_members[position % n_clusters].append(item)
    for members in cluster_members:
        members.sort()
    cluster_cum = [list(accumulate(popularity[i] for i in members)) for members in cluster_members]

    # Successors come from the item's own cluster, weighted by sqrt-popularity: popular items are
    # reached more often, yet each item's successor set is specific to it.
    successors: list[list[int]] = []
    successor_cum: list[list[float]] = []
    for item in range(n_items):
        candidates = [i for i in cluster_members[cluster_of[item]] if i != item]
        chosen = _sample_without_replacement(
            rng, candidates, [math.sqrt(popularity[i]) for i in candidates], len(SUCCESSOR_WEIGHTS)
        )
        if chosen and n_clusters > 1 and rng.random() < 0.2:
            # An occasional cross-cluster link keeps the clusters from being closed worlds.
            other = rng.randrange(n_items)
            if other != item and other not in chosen:
                chosen[-1] = other
        successors.append(chosen)
        successor_cum.append(list(accumulate(SUCCESSOR_WEIGHTS[: len(chosen)])))
    prices = [round(math.exp(rng.gauss(3.0, 0.8)), 2) for _ in range(n_items)]
    return _Catalog(
        item_ids=item_ids,
        popularity_cum=list(accumulate(popularity)),
        cluster_members=cluster_members,
        cluster_cum=cluster_cum,
        successors=successors,
        successor_cum=successor_cum,
        prices=prices,
    )


def _sample_without_replacement(
    rng: random.Random, population: Sequence[int], weights: Sequence[float], k: int
) -> list[int]:
    pool, pool_weights = list(population), list(weights)
    chosen: list[int] = []
    while pool and len(chosen) < k:
        index = bisect(list(accumulate(pool_weights)), rng.random() * sum(pool_weights))
        index = min(index, len(pool) - 1)
        chosen.append(pool.pop(index))
        pool_weights.pop(index)
    return chosen


def _build_users(rng: random.Random, n_users: int, n_clusters: int) -> list[_User]:
    width = max(6, len(str(n_users - 1)))
    users = []
    for k in range(n_users):
        n_taste = 1 if rng.random() < 0.6 or n_clusters == 1 else 2
        users.append(
            _User(
                user_id=f"u{k:0{width}d}",
                activity=min(1.0, max(0.15, rng.betavariate(2.0, 2.5))),
                clusters=tuple(rng.sample(range(n_clusters), n_taste)),
                sends_session_id=rng.random() < P_CLIENT_SENDS_SESSION_ID,
            )
        )
    return users


# ---- one day of behaviour ----


def _simulate_day(
    rng: random.Random,
    np_rng: np.random.Generator,
    catalog: _Catalog,
    users: list[_User],
    day: date,
    events_per_user_per_day: float,
) -> list[_Event]:
    activity = np.array([u.activity for u in users])
    active = np_rng.random(len(users)) < activity
    # Mean events on an active day, so that the mean over all days is events_per_user_per_day.
    targets = np.maximum(1, np_rng.poisson(events_per_user_per_day / activity))
    day_start_ms = (day - date(1970, 1, 1)).days * DAY_MS
    day_last_ms = day_start_ms + DAY_MS - SECOND_MS
    events: list[_Event] = []
    for index in np.flatnonzero(active).tolist():
        _simulate_user_day(rng, catalog, users[index], index, int(targets[index]),
                           day_start_ms, day_last_ms, events)
    events.sort(key=lambda e: (e.time_ms, e.user))
    return events


def _simulate_user_day(
    rng: random.Random,
    catalog: _Catalog,
    user: _User,
    user_index: int,
    target: int,
    day_start_ms: int,
    day_last_ms: int,
    out: list[_Event],
) -> None:
    t = day_start_ms + rng.randrange(16 * 60 * MINUTE_MS)
    emitted = 0
    while emitted < target and t <= day_last_ms:
        session_id = f"{rng.getrandbits(64):016x}" if user.sends_session_id else None
        current: int | None = None
        while emitted < target and t <= day_last_ms:
            current = _next_item(rng, catalog, user, current)
            for event_type in _funnel(rng):
                out.append(_Event(t, user_index, session_id, current, event_type,
                                  _extra(rng, catalog, current, event_type)))
                emitted += 1
                if emitted >= target:
                    return
                t += rng.randrange(2 * SECOND_MS, 45 * SECOND_MS)
                if t > day_last_ms:
                    return
            if rng.random() < P_END_SESSION:
                break
            gap = int(math.exp(rng.gauss(math.log(40 * SECOND_MS), 1.0)))
            t += min(MAX_IN_SESSION_GAP_MS, max(3 * SECOND_MS, gap))
        t += MIN_SESSION_GAP_MS + int(rng.expovariate(1.0 / MEAN_EXTRA_SESSION_GAP_MS))


def _next_item(rng: random.Random, catalog: _Catalog, user: _User, current: int | None) -> int:
    if current is not None and catalog.successors[current] and rng.random() < P_FOLLOW_SUCCESSOR:
        return catalog.successors[current][_pick(rng, catalog.successor_cum[current])]
    if rng.random() < P_TASTE:
        cluster = user.clusters[rng.randrange(len(user.clusters))]
        return catalog.cluster_members[cluster][_pick(rng, catalog.cluster_cum[cluster])]
    return _pick(rng, catalog.popularity_cum)


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return min(bisect(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _funnel(rng: random.Random) -> list[str]:
    steps = [VIEW]
    for event_type, probability in ((CLICK, P_CLICK), (ADD_TO_CART, P_ADD_TO_CART), (PURCHASE, P_PURCHASE)):
        if rng.random() >= probability:
            break
        steps.append(event_type)
    return steps


def _extra(rng: random.Random, catalog: _Catalog, item: int, event_type: str) -> dict[str, Any] | None:
    if event_type in (ADD_TO_CART, PURCHASE):
        return {"price": catalog.prices[item], "quantity": 1 if rng.random() < 0.85 else 2}
    if event_type == CLICK:
        return {"position": rng.randrange(1, 21)}
    if rng.random() < 0.3:
        return {"referrer": REFERRERS[rng.randrange(len(REFERRERS))]}
    return None


# ---- delivery: lines per arrival day, with the planted defects ----


def _deliver(
    rng: random.Random,
    catalog: _Catalog,
    users: list[_User],
    day: date,
    day_index: int,
    events: list[_Event],
    arrivals: list[_ArrivalDay],
    defect_rate: float,
) -> None:
    last = len(arrivals) - 1
    day_start_ms = (day - date(1970, 1, 1)).days * DAY_MS
    for n, event in enumerate(events):
        record = _record(catalog, users, day, n, event)
        if rng.random() < defect_rate:
            kind = MALFORMED_KINDS[rng.randrange(len(MALFORMED_KINDS))]
            arrival = arrivals[day_index]
            arrival.add(event.time_ms, _malform(rng, record, kind, day))
            arrival.quarantine_reasons[kind] += 1
            continue
        line = _dumps(record)
        target = day_index
        if day_index < last and rng.random() < defect_rate:
            target = day_index + (2 if day_index + 2 <= last and rng.random() < 0.5 else 1)
        arrival = arrivals[target]
        if target == day_index:
            sort_key = event.time_ms
        else:
            # A late event shows up somewhere in its arrival day's file.
            sort_key = day_start_ms + (target - day_index) * DAY_MS + rng.randrange(DAY_MS)
            arrival.late_events += 1
        arrival.add(sort_key, line)
        arrival.events += 1
        if rng.random() < defect_rate:
            if target < last and rng.random() < P_DUPLICATE_NEXT_DAY:
                resend = arrivals[target + 1]
                resend.add(day_start_ms + (target + 1 - day_index) * DAY_MS + rng.randrange(DAY_MS), line)
            else:
                resend = arrival
                resend.add(sort_key + rng.randrange(SECOND_MS, 5 * MINUTE_MS), line)
            resend.duplicate_lines += 1


def _record(catalog: _Catalog, users: list[_User], day: date, n: int, event: _Event) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": f"e{day:%Y%m%d}-{n}",
        "event_time": _iso_time(event.time_ms),
        "user_id": users[event.user].user_id,
    }
    if event.session_id is not None:
        record["session_id"] = event.session_id
    record["item_id"] = catalog.item_ids[event.item]
    record["event_type"] = event.event_type
    if event.extra is not None:
        record["extra"] = event.extra
    return record


def _iso_time(time_ms: int) -> str:
    days, ms = divmod(time_ms, DAY_MS)
    seconds, millis = divmod(ms, SECOND_MS)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{date(1970, 1, 1) + timedelta(days=days):%Y-%m-%d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


def _malform(rng: random.Random, record: dict[str, Any], kind: str, day: date) -> str:
    """One malformed line of ``kind`` (a quarantine reason) made from a real event."""
    if kind == UNPARSEABLE:
        # A line cut short before its closing brace never parses as a JSON object.
        line = _dumps(record)
        return line[: rng.randrange(1, len(line) - 1)]
    broken = dict(record)
    if kind.startswith("missing_field:"):
        del broken[kind.split(":", 1)[1]]
    elif kind == UNKNOWN_EVENT_TYPE:
        broken["event_type"] = UNKNOWN_TYPES[rng.randrange(len(UNKNOWN_TYPES))]
    elif kind == bad_type("event_time"):
        broken["event_time"] = BAD_TIME_STRINGS[rng.randrange(len(BAD_TIME_STRINGS))].format(d=day)
    else:
        raise ValueError(f"no malformed line of kind {kind!r}")
    return _dumps(broken)


def _add_garbage(rng: random.Random, arrival: _ArrivalDay, day_index: int) -> None:
    """Make ~40 % of the day's lines garbage, as a broken client release would."""
    share = CORRUPT_DAY_GARBAGE_SHARE
    n_garbage = math.ceil(len(arrival.lines) * share / (1 - share)) or 1
    day_start_ms = (arrival.day - date(1970, 1, 1)).days * DAY_MS
    for n in range(n_garbage):
        kind = GARBAGE_KINDS[rng.randrange(len(GARBAGE_KINDS))]
        time_ms = day_start_ms + rng.randrange(DAY_MS)
        record: dict[str, Any] = {
            "event_id": f"g{arrival.day:%Y%m%d}-{n}",
            "event_time": _iso_time(time_ms),
            "user_id": f"u-garbage-{rng.randrange(1000)}",
            "item_id": f"i-garbage-{rng.randrange(1000)}",
            "event_type": VIEW,
        }
        if kind == UNPARSEABLE:
            line = f"~{rng.getrandbits(128):032x}<html>" if rng.random() < 0.5 else _dumps(record)[:-3]
        elif kind == EMPTY_LINE:
            line = ""
        elif kind == missing_field("user_id"):
            del record["user_id"]
            line = _dumps(record)
        elif kind == UNKNOWN_EVENT_TYPE:
            record["event_type"] = "bot_ping"
            line = _dumps(record)
        else:
            # A client that switched to epoch milliseconds: a number, not an ISO string.
            record["event_time"] = time_ms
            line = _dumps(record)
        arrival.add(time_ms, line)
        arrival.quarantine_reasons[kind] += 1


def _write_day(raw_dir: Path, arrival: _ArrivalDay, gzip: bool) -> Path:
    folder = raw_dir / arrival.day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    plain, packed = folder / f"{FILE_STEM}.jsonl", folder / f"{FILE_STEM}.jsonl.gz"
    path, stale = (packed, plain) if gzip else (plain, packed)
    # A previous run with the other compression would otherwise be ingested twice.
    stale.unlink(missing_ok=True)
    arrival.lines.sort()
    payload = "".join(line + "\n" for _, _, line in arrival.lines).encode("utf-8")
    temporary = folder / f".{path.name}.tmp"
    with open(temporary, "wb") as handle:
        if gzip:
            # mtime=0 and no file name in the header: same seed, same bytes.
            with gzip_module.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as packed_handle:
                packed_handle.write(payload)
        else:
            handle.write(payload)
    os.replace(temporary, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic raw interaction logs.")
    parser.add_argument("--out", type=Path, required=True, help="raw folder (one sub-folder per day)")
    parser.add_argument("--start", type=date.fromisoformat, required=True, help="first arrival day")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--events-per-user-per-day", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--defect-rate", type=float, default=0.01)
    parser.add_argument("--corrupt-date", type=date.fromisoformat, action="append", default=[],
                        help="arrival day that gets ~40%% garbage lines (repeatable)")
    parser.add_argument("--no-gzip", action="store_true", help="write plain .jsonl files")
    args = parser.parse_args(argv)
    summary = generate_logs(
        args.out, args.start, args.days, args.users, args.items,
        events_per_user_per_day=args.events_per_user_per_day,
        seed=args.seed,
        defect_rate=args.defect_rate,
        corrupt_dates=args.corrupt_date,
        gzip=not args.no_gzip,
    )
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
