"""The synthetic log generator: determinism, counted defects and the planted structure."""

from __future__ import annotations

import gzip
import json
import re
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from ingest.generator import generate_logs, main
from core.names import EVENT_TYPES

START = date(2026, 11, 1)
ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
REQUIRED = ("event_id", "event_time", "user_id", "item_id", "event_type")


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.read().split("\n")[:-1]


def valid_record(line: str) -> dict | None:
    """The record if the line is an event ingestion accepts (as far as the generator plants)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or any(not isinstance(record.get(k), str) for k in REQUIRED):
        return None
    if record["event_type"] not in EVENT_TYPES or not ISO_TIME.match(record["event_time"]):
        return None
    try:
        datetime.fromisoformat(record["event_time"])
    except ValueError:
        return None
    return record


def without_paths(summary: dict) -> dict:
    days = {day: {k: v for k, v in counts.items() if k != "path"} for day, counts in summary["days"].items()}
    return {k: v for k, v in summary.items() if k != "raw_dir"} | {"days": days}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    summary = generate_logs(raw, START, days=7, n_users=800, n_items=200, seed=3,
                            defect_rate=0.02, corrupt_dates=[START + timedelta(days=5)])
    return raw, summary


@pytest.fixture(scope="module")
def records_by_day(generated: tuple[Path, dict]) -> dict[str, list[dict]]:
    """First copies of the valid events, per arrival day (duplicates removed)."""
    raw, summary = generated
    seen: set[str] = set()
    by_day: dict[str, list[dict]] = {}
    for day in sorted(summary["days"]):
        records = []
        for line in read_lines(Path(summary["days"][day]["path"])):
            record = valid_record(line)
            if record is not None and record["event_id"] not in seen:
                seen.add(record["event_id"])
                records.append(record)
        by_day[day] = records
    return by_day


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    args = dict(start_date=START, days=2, n_users=50, n_items=30, corrupt_dates=[START])
    first = generate_logs(tmp_path / "a", seed=7, **args)
    second = generate_logs(tmp_path / "b", seed=7, **args)
    other = generate_logs(tmp_path / "c", seed=8, **args)
    for day in ("2026-11-01", "2026-11-02"):
        name = f"{day}/events-00000.jsonl.gz"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()
    assert without_paths(first) == without_paths(second)


def test_plain_and_gzip_output_hold_the_same_lines(tmp_path: Path) -> None:
    generate_logs(tmp_path, START, 1, 40, 20, seed=1, gzip=True)
    packed = read_lines(tmp_path / "2026-11-01" / "events-00000.jsonl.gz")
    generate_logs(tmp_path, START, 1, 40, 20, seed=1, gzip=False)
    folder = tmp_path / "2026-11-01"
    # The earlier .gz is removed, or ingestion would read the day twice.
    assert sorted(p.name for p in folder.iterdir()) == ["events-00000.jsonl"]
    assert read_lines(folder / "events-00000.jsonl") == packed


def test_summary_counts_match_the_files(generated: tuple[Path, dict]) -> None:
    raw, summary = generated
    assert sorted(summary["days"]) == [(START + timedelta(days=k)).isoformat() for k in range(7)]
    seen: set[str] = set()
    for day in sorted(summary["days"]):
        counts = summary["days"][day]
        lines = read_lines(raw / day / "events-00000.jsonl.gz")
        assert len(lines) == counts["lines"]
        valid = [r for r in map(valid_record, lines) if r is not None]
        first_copies = []
        for record in valid:
            if record["event_id"] not in seen:
                seen.add(record["event_id"])
                first_copies.append(record)
        assert len(first_copies) == counts["events"]
        assert len(valid) - len(first_copies) == counts["duplicate_lines"]
        assert len(lines) - len(valid) == counts["quarantined_lines"] == sum(counts["quarantine_reasons"].values())
        late = [r for r in first_copies if r["event_time"][:10] < day]
        assert len(late) == counts["late_events"]
        assert all(r["event_time"][:10] >= (date.fromisoformat(day) - timedelta(days=2)).isoformat() for r in late)
    assert summary["lines"] == sum(d["lines"] for d in summary["days"].values())
    # Every planted kind shows up somewhere at this defect rate.
    assert summary["late_events"] > 0 and summary["duplicate_lines"] > 0
    reasons = Counter()
    for d in summary["days"].values():
        reasons.update(d["quarantine_reasons"])
    assert set(reasons) == {
        "unparseable", "missing_field:item_id", "missing_field:user_id", "unknown_event_type",
        "bad_type:event_time", "empty_line",
    }


def test_duplicates_reach_the_next_arrival_day_too(generated: tuple[Path, dict]) -> None:
    raw, summary = generated
    first_day_ids = {r["event_id"] for r in map(valid_record, read_lines(raw / "2026-11-01" / "events-00000.jsonl.gz")) if r}
    later_ids = {r["event_id"] for d in sorted(summary["days"])[1:]
                 for r in map(valid_record, read_lines(raw / d / "events-00000.jsonl.gz")) if r}
    assert first_day_ids & later_ids


def test_event_ids_are_unique_apart_from_resent_duplicates(generated: tuple[Path, dict]) -> None:
    raw, summary = generated
    lines_by_id: dict[str, set[str]] = defaultdict(set)
    for day in summary["days"]:
        for line in read_lines(raw / day / "events-00000.jsonl.gz"):
            record = valid_record(line)
            if record:
                lines_by_id[record["event_id"]].add(line)
    # A re-sent event is the very same line: one id never stands for two different events.
    assert all(len(lines) == 1 for lines in lines_by_id.values())


def test_corrupt_day_is_mostly_garbage_and_others_are_clean(generated: tuple[Path, dict]) -> None:
    _, summary = generated
    for day, counts in summary["days"].items():
        share = counts["quarantined_lines"] / counts["lines"]
        if day == "2026-11-06":
            assert counts["corrupt"] and 0.35 <= share <= 0.5
        else:
            assert not counts["corrupt"] and share < 0.05


def test_item_popularity_is_heavy_tailed(records_by_day: dict[str, list[dict]]) -> None:
    counts = Counter(r["item_id"] for records in records_by_day.values() for r in records)
    top_tenth = sum(n for _, n in counts.most_common(len(counts) // 10))
    assert top_tenth / sum(counts.values()) > 0.3


def test_sessions_are_separated_by_more_than_thirty_minutes(tmp_path: Path) -> None:
    # Without defects no event is missing, so no two in-session gaps merge into a longer one.
    summary = generate_logs(tmp_path, START, days=3, n_users=300, n_items=100, seed=2, defect_rate=0.0)
    by_user: dict[str, list[dict]] = defaultdict(list)
    for day in summary["days"].values():
        for line in read_lines(Path(day["path"])):
            record = json.loads(line)
            by_user[record["user_id"]].append(record)
    gaps, users_with_ids, session_users = [], 0, defaultdict(set)
    for user, records in by_user.items():
        records.sort(key=lambda r: r["event_time"])
        times = [datetime.fromisoformat(r["event_time"]) for r in records]
        gaps += [(b - a).total_seconds() for a, b in zip(times, times[1:])]
        users_with_ids += any("session_id" in r for r in records)
        for r in records:
            if "session_id" in r:
                session_users[r["session_id"]].add(user)
    # Inside a session events are at most ~11 minutes apart, sessions more than 30: nothing between.
    assert not [g for g in gaps if 11 * 60 < g <= 30 * 60]
    assert any(g > 30 * 60 for g in gaps) and all(g >= 0 for g in gaps)
    assert sorted(gaps)[len(gaps) // 2] < 5 * 60
    assert all(len(users) == 1 for users in session_users.values())
    assert 0.3 < users_with_ids / len(by_user) < 0.7


def test_users_are_active_on_some_days_only(records_by_day: dict[str, list[dict]]) -> None:
    active_days = defaultdict(set)
    for records in records_by_day.values():
        for r in records:
            active_days[r["user_id"]].add(r["event_time"][:10])
    n_days = Counter(len(days) for days in active_days.values())
    assert n_days[7] < len(active_days) / 2 and sum(n for k, n in n_days.items() if k <= 3) > 0


def test_event_types_follow_the_funnel(records_by_day: dict[str, list[dict]]) -> None:
    types = Counter(r["event_type"] for records in records_by_day.values() for r in records)
    assert types["view"] > types["click"] > types["add_to_cart"] > types["purchase"] > 0
    purchases = [r for records in records_by_day.values() for r in records if r["event_type"] == "purchase"]
    assert all(r["extra"]["price"] > 0 for r in purchases)


def test_next_item_is_predictable_from_the_current_one(records_by_day: dict[str, list[dict]]) -> None:
    """A first-order transition table beats popularity by far: the signal SASRec learns."""
    days = sorted(records_by_day)
    train_days, test_days = set(days[:5]), set(days[5:])

    def transitions(selected: set[str]) -> list[tuple[str, str]]:
        by_user: dict[str, list[dict]] = defaultdict(list)
        for day in selected:
            for r in records_by_day[day]:
                by_user[r["user_id"]].append(r)
        pairs = []
        for records in by_user.values():
            items = [r["item_id"] for r in sorted(records, key=lambda r: r["event_time"])]
            visits = [item for k, item in enumerate(items) if k == 0 or items[k - 1] != item]
            pairs += list(zip(visits, visits[1:]))
        return pairs

    train, test = transitions(train_days), transitions(test_days)
    following: dict[str, Counter] = defaultdict(Counter)
    for current, following_item in train:
        following[current][following_item] += 1
    popular = [item for item, _ in Counter(b for _, b in train).most_common(10)]
    markov_hits = sum(b in {x for x, _ in following[a].most_common(10)} for a, b in test) / len(test)
    popular_hits = sum(b in popular for _, b in test) / len(test)
    assert markov_hits > 2 * popular_hits
    assert markov_hits > 0.4


def test_two_thousand_users_for_a_week_take_seconds(tmp_path: Path) -> None:
    started = time.monotonic()
    summary = generate_logs(tmp_path, START, days=7, n_users=2000, n_items=500)
    assert time.monotonic() - started < 20
    assert 30_000 < summary["events"] < 50_000


def test_corrupt_date_outside_the_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        generate_logs(tmp_path, START, 2, 10, 10, corrupt_dates=[date(2026, 12, 1)])


def test_cli_writes_the_days_and_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--out", str(tmp_path), "--start", "2026-11-01", "--days", "2", "--users", "30",
                 "--items", "20", "--corrupt-date", "2026-11-02", "--seed", "5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["corrupt_dates"] == ["2026-11-02"] and summary["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2026-11-01", "2026-11-02"]
