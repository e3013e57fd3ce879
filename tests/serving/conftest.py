"""A real serving state for the API tests: a warehouse with the dbt marts' columns, features
exported and materialized into Feast, a model trained, registered and promoted in MLflow."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import duckdb
import pytest

from tests.warehouse_fixtures import SESSIONIZED_FROM_USER_SEQUENCES

from core.settings import Settings

RUN_DATE = date(2026, 11, 10)
N_ITEMS = 30
TINY_SASREC = {"d_model": 32, "n_heads": 2, "n_layers": 1, "dropout": 0.1}


def ring_user_sequences(n_users: int = 200, seed: int = 3) -> list[tuple[str, list[str], list[datetime]]]:
    """Users walk a ring of items (i -> i+1): a structure SASRec learns and popularity cannot."""
    rng = random.Random(seed)
    end = datetime(2026, 11, 10, 22, 0)
    rows = []
    for u in range(n_users):
        start, length = rng.randrange(N_ITEMS), rng.randint(8, 14)
        times = [end - timedelta(hours=9 * (length - k) + rng.uniform(0, 3)) for k in range(length)]
        items = [f"i{(start + k) % N_ITEMS:02d}" for k in range(length)]
        rows.append((f"u{u:03d}", items, times))
    return rows


def build_warehouse(settings: Settings) -> None:
    """The dbt marts training and Feast read, with the contract's columns."""
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    k = settings.max_sequence_length
    with duckdb.connect(str(settings.warehouse_path)) as con:
        con.execute("create table user_sequences (user_id varchar, item_ids varchar[], "
                    "event_times timestamp[], n_events bigint, first_event_time timestamp, "
                    "last_event_time timestamp)")
        con.executemany("insert into user_sequences values (?, ?, ?, len(?), list_min(?), list_max(?))",
                        [(u, i, t, i, t, t) for u, i, t in ring_user_sequences()])
        con.execute(SESSIONIZED_FROM_USER_SEQUENCES)
        con.execute(f"""
            create table user_features as
            select user_id, cast(last_event_time as date) as feature_date,
                   last_event_time as event_timestamp, item_ids[-{k}:] as recent_item_ids,
                   n_events as n_events_total, cast(1 as bigint) as n_sessions_total,
                   cast(0 as bigint) as n_purchases_total
            from user_sequences""")
        con.execute("""
            create table item_features as
            select item_id, cast(max(t) as date) as feature_date, max(t) as event_timestamp,
                   count(*) as n_events_1d, count(*) as n_events_7d, count(*) as n_users_7d
            from (select unnest(item_ids) as item_id, unnest(event_times) as t from user_sequences)
            group by item_id""")


def materialize_features(settings: Settings) -> None:
    from features.definitions import apply_feature_repo
    from features.export import export_feature_data
    from features.materialize import materialize

    export_feature_data(settings)
    apply_feature_repo(settings)
    end = datetime(2026, 11, 11, tzinfo=timezone.utc)
    materialize(settings, end - timedelta(days=30), end)


def train_and_promote(settings: Settings, model_name: str = "sasrec", epochs: int = 15,
                      model_config: dict | None = None, promote: bool = True) -> dict:
    from registry.promotion import apply_decision, decide_promotion
    from serving.smoke import serves_in_api_path
    from training.tracking import train_and_log

    candidate = train_and_log(settings, RUN_DATE, model_name=model_name, epochs=epochs,
                              model_config=model_config)
    if promote:
        decision = decide_promotion(settings, RUN_DATE, candidate, gate_passed=True, serving_check=serves_in_api_path)
        assert decision.promote, decision.checks
        apply_decision(settings, decision)
    return candidate


def make_settings(home, **overrides) -> Settings:
    """Serving settings for tests: no poller unless asked, a timeout a busy 2-core CI box meets."""
    base = Settings(home=home, max_sequence_length=20, champion_poll_seconds=0, feature_timeout_ms=2000,
                    push_timeout_ms=10_000)
    return base.replace(**overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server on a free loopback port (never the machine's shared one)."""

    def __init__(self, workdir):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> "RedisServer":
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--dbfilename", "dump.rdb"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture(scope="session")
def world() -> SimpleNamespace:
    return SimpleNamespace(
        RUN_DATE=RUN_DATE, TINY_SASREC=TINY_SASREC, ring_user_sequences=ring_user_sequences,
        build_warehouse=build_warehouse, materialize_features=materialize_features,
        train_and_promote=train_and_promote, settings=make_settings, RedisServer=RedisServer,
    )
