"""Synthetic interaction logs in the canonical raw format, one folder per arrival day.

The logs are made to exercise every later stage. The events come from
``ingest.synthetic_world`` (power-law popularity, taste clusters and successor items, sessions,
a funnel of event types); this module delivers them as arrival days:

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
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ingest.schema import EMPTY_LINE, UNKNOWN_EVENT_TYPE, UNPARSEABLE, bad_type, missing_field
from ingest.synthetic_world import (
    DAY_MS,
    MINUTE_MS,
    SECOND_MS,
    VIEW,
    Catalog,
    Event,
    User,
    build_catalog,
    build_users,
    simulate_day,
)

FILE_STEM = "events-00000"

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
    catalog = build_catalog(rng, n_items)
    users = build_users(rng, n_users, len(catalog.cluster_members))
    arrivals = [_ArrivalDay(day=d, corrupt=d in corrupt) for d in arrival_dates]

    for k, day in enumerate(arrival_dates):
        events = simulate_day(rng, np_rng, catalog, users, day, events_per_user_per_day)
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


# ---- delivery: lines per arrival day, with the planted defects ----


def _deliver(
    rng: random.Random,
    catalog: Catalog,
    users: list[User],
    day: date,
    day_index: int,
    events: list[Event],
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


def _record(catalog: Catalog, users: list[User], day: date, n: int, event: Event) -> dict[str, Any]:
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
