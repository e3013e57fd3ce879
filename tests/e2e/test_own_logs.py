"""A user's own log in, a served model out: small realistic logs of each shape through the real
stages (import -> Spark ingestion -> dbt sessions -> the gate -> Feast -> ``model=auto`` training
-> promotion -> the API), each ending in a promoted model that beats popularity and is served.

Shapes: a session-only log with anonymous users (DIGINETICA's ``;`` file), a log covering one day
(YOOCHOOSE clicks), a sparse log of returning users with heavy repeats and four behaviours
(Taobao), and a log with missing arrival days plus an outlier day (YOOCHOOSE). The logs carry a
learnable signal (items have usual followers; repeat users come back to their own items), so a
model that reads the sequence can beat the popular items on them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings

pytestmark = pytest.mark.slow

N_ITEMS = 150
START = datetime(2026, 10, 5, tzinfo=timezone.utc)


def follower(item: int) -> int:
    return (item * 7 + 3) % N_ITEMS


def chain_session(rng: random.Random, length: int) -> list[int]:
    """A session whose items mostly follow their usual follower (the signal to learn)."""
    items = [int(rng.paretovariate(1.2)) % N_ITEMS]
    while len(items) < length:
        items.append(follower(items[-1]) if rng.random() < 0.75 else rng.randrange(N_ITEMS))
    return items


def session_starts(rng: random.Random, days: list[int], per_day: int, hours: float = 24.0):
    for day in days:
        for _ in range(per_day):
            yield START + timedelta(days=day, hours=rng.uniform(0, hours - 1))


def write_diginetica(path: Path, rng: random.Random, days: list[int], per_day: int) -> Path:
    lines = ["session_id;user_id;item_id;timeframe;eventdate"]
    for number, start in enumerate(session_starts(rng, days, per_day)):
        frame = 0
        for item in chain_session(rng, rng.choice([1, 2, 3, 4, 5, 6, 8])):
            lines.append(f"{number + 1};NA;{item + 1000};{frame};{start.date().isoformat()}")
            frame += rng.randint(10_000, 90_000)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_yoochoose(path: Path, rng: random.Random, days: list[int], per_day: int, hours: float = 24.0) -> Path:
    lines = ["SessionId\tItemId\tTime"]
    for number, start in enumerate(session_starts(rng, days, per_day, hours)):
        t = start.timestamp()
        for item in chain_session(rng, rng.choice([1, 2, 3, 4, 5, 6, 8])):
            lines.append(f"{number + 1}\t{214_000_000 + item}\t{t:.3f}")
            t += rng.uniform(10, 90)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_taobao(path: Path, rng: random.Random, n_users: int, n_days: int) -> Path:
    """Returning users who mostly re-visit their own few items, in every behaviour."""
    lines = []
    for user in range(n_users):
        own = [rng.randrange(N_ITEMS) for _ in range(4)]
        for day in range(n_days):
            if rng.random() < 0.3:
                continue
            t = (START + timedelta(days=day, hours=rng.uniform(0, 22))).timestamp()
            for _ in range(rng.randint(2, 5)):
                item = rng.choice(own) if rng.random() < 0.7 else rng.randrange(N_ITEMS)
                behavior = rng.choices(["pv", "cart", "buy", "fav"], [0.8, 0.1, 0.05, 0.05])[0]
                lines.append(f"{user + 1},{item + 5000},{item % 9},{behavior},{int(t)}")
                t += rng.uniform(20, 300)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Night:
    settings: Settings
    imported: dict[str, Any]
    ingested: dict[str, Any]
    candidate: dict[str, Any]
    decision: dict[str, Any]
    answer: dict[str, Any]


def run_own_log(home: Path, format_name: str, source: Path, epochs: int = 4) -> Night:
    """What the README's "Bring your own log" section tells a user to run, stage by stage."""
    from fastapi.testclient import TestClient

    from ingest.importers import import_log
    from ingest.spark import spark_session
    from pipeline import stages
    from serving.app import create_app

    settings = Settings(home=home, spark_master="local[2]", spark_driver_memory="1g",
                        champion_poll_seconds=0.0)
    imported = import_log(format_name, source, settings.raw_dir)
    days = sorted(date.fromisoformat(d) for d in imported["arrival_days"])
    spark_session(settings).sparkContext.setLogLevel("ERROR")
    ingested = stages.ingest_events_range(settings, days[0], days[-1])
    last = days[-1]
    stages.build_sessions(settings, last)
    stages.check_quality(settings, last)
    stages.materialize_features(settings, last)
    candidate = stages.train_candidate(settings, last, "auto", epochs)
    decision = stages.evaluate_candidate(settings, last, candidate)
    applied = stages.promote_candidate(settings, last, decision)
    with TestClient(create_app(settings)) as client:
        user = _a_known_user(settings, candidate)
        answer = client.get(f"/recommendations/{user}", params={"k": 10}).json()
    return Night(settings, imported, ingested, candidate, applied, answer)


def _a_known_user(settings: Settings, candidate: dict[str, Any]) -> str:
    import duckdb

    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        return con.execute(
            "select user_id from user_sequences order by last_event_time desc, user_id limit 1").fetchone()[0]


def assert_promoted_and_served(night: Night) -> None:
    decision, candidate = night.decision, night.candidate
    assert decision["promote"], decision["reasons"]
    assert decision["champion_version_after"] == candidate["model_version"]
    assert candidate["metrics"]["ndcg_at_10"] > candidate["baseline_metrics"]["ndcg_at_10"]
    assert candidate["n_test_examples"] >= night.settings.min_eval_examples
    assert night.answer["model_version"] == candidate["model_version"]
    assert night.answer["fallback"] is False and len(night.answer["items"]) == 10


def test_session_only_log_with_anonymous_users_is_evaluated_per_session(tmp_path):
    source = write_diginetica(tmp_path / "train-item-views.csv", random.Random(1), list(range(6)), 260)
    night = run_own_log(tmp_path / "home", "diginetica", source)
    split = night.candidate["split"]
    assert split["protocol"] == "session", split["protocol_reason"]
    assert split["log_facts"]["returning_user_share"] < 0.2
    assert night.candidate["requested_model"] == "auto"
    assert {row["model"] for row in night.candidate["candidates"]} >= {"sknn", "covisitation", "gru4rec"}
    assert_promoted_and_served(night)


def test_one_day_log_gets_windows_that_fit_it(tmp_path):
    source = write_yoochoose(tmp_path / "clicks.tsv", random.Random(2), [0], 1500, hours=20)
    night = run_own_log(tmp_path / "home", "yoochoose", source)
    split = night.candidate["split"]
    assert split["protocol"] == "session" and split["test_days"] < 1, split
    assert "shrunk" in split["protocol_reason"]
    assert_promoted_and_served(night)


def test_repeat_heavy_log_keeps_seen_items_rankable_and_serves_them(tmp_path):
    source = write_taobao(tmp_path / "UserBehavior.csv", random.Random(3), n_users=450, n_days=7)
    night = run_own_log(tmp_path / "home", "taobao", source)
    split = night.candidate["split"]
    assert split["protocol"] == "user_temporal", split["protocol_reason"]
    assert split["repeat_share_val"] >= 0.05 and split["exclude_seen"] is False
    assert night.candidate["model_name"] == "repeat"
    assert_promoted_and_served(night)
    # The same rule in serving: the user's own recent items may be recommended again.
    recent = set(night.answer["recent_item_ids"])
    assert recent & {item["item_id"] for item in night.answer["items"]}


def test_log_with_missing_and_outlier_days_is_backfilled_over_its_gaps(tmp_path):
    rng = random.Random(4)
    source = write_yoochoose(tmp_path / "clicks.tsv", rng, [0, 1, 2, 4, 5, 7], 220)
    with open(source, "a") as out:  # a stray session three weeks earlier
        t = (START - timedelta(days=21)).timestamp()
        out.write(f"999999\t{214_000_001}\t{t:.3f}\n999999\t{214_000_002}\t{t + 30:.3f}\n")
    night = run_own_log(tmp_path / "home", "yoochoose", source)
    skipped = night.ingested["skipped_days"]
    assert "2026-10-08" in skipped and "2026-10-11" in skipped and len(skipped) == 29 - 7
    assert night.ingested["days"] == 7
    assert_promoted_and_served(night)
