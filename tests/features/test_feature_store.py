"""The Feast repo on real stores: export, apply, materialize, online and point-in-time reads."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features import store as feature_ops
from features.definitions import apply_feature_repo
from features.export import export_feature_data
from features.materialize import materialize
from features.online_reader import read_user_features
from core.settings import REPO_ROOT, Settings

DAY0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
DAY1 = DAY0 + timedelta(days=1)
DAY2 = DAY0 + timedelta(days=2)
DAY3 = DAY0 + timedelta(days=3)
U1_LATEST = DAY2 + timedelta(hours=9)

USER_ROWS = [
    # user_id, event_timestamp (UTC), recent_item_ids, n_events, n_sessions, n_purchases
    ("u1", DAY0 + timedelta(hours=10), ["i1", "i2"], 2, 1, 0),
    ("u2", DAY1 + timedelta(hours=12), ["i2"], 1, 1, 0),
    ("u1", U1_LATEST, ["i1", "i2", "i3"], 3, 2, 1),
]
ITEM_ROWS = [
    # item_id, event_timestamp (UTC), n_events_1d, n_events_7d, n_users_7d
    ("i1", DAY0 + timedelta(hours=10), 2, 2, 1),
    ("i2", DAY1 + timedelta(hours=12), 2, 4, 2),
    ("i3", U1_LATEST, 1, 1, 1),
]


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]::VARCHAR[]"


def build_warehouse(settings: Settings) -> None:
    """The two marts as dbt leaves them: users with a naive UTC timestamp, items zoned."""
    settings.home.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.warehouse_path))
    try:
        con.execute(
            "CREATE TABLE user_features (user_id VARCHAR, feature_date DATE, "
            "event_timestamp TIMESTAMP, recent_item_ids VARCHAR[], n_events_total BIGINT, "
            "n_sessions_total BIGINT, n_purchases_total HUGEINT)"
        )
        for user_id, ts, items, n_events, n_sessions, n_purchases in USER_ROWS:
            con.execute(
                f"INSERT INTO user_features VALUES ('{user_id}', DATE '{ts:%Y-%m-%d}', "
                f"TIMESTAMP '{ts:%Y-%m-%d %H:%M:%S}', {_sql_list(items)}, "
                f"{n_events}, {n_sessions}, {n_purchases})"
            )
        con.execute(
            "CREATE TABLE item_features (item_id VARCHAR, feature_date DATE, "
            "event_timestamp TIMESTAMPTZ, n_events_1d INTEGER, n_events_7d BIGINT, "
            "n_users_7d BIGINT)"
        )
        for item_id, ts, n_1d, n_7d, n_users in ITEM_ROWS:
            # Written with a +02:00 offset: the export must convert, not copy the wall clock.
            local = ts.astimezone(timezone(timedelta(hours=2)))
            con.execute(
                f"INSERT INTO item_features VALUES ('{item_id}', DATE '{ts:%Y-%m-%d}', "
                f"TIMESTAMPTZ '{local:%Y-%m-%d %H:%M:%S%z}', {n_1d}, {n_7d}, {n_users})"
            )
    finally:
        con.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    s = Settings(home=tmp_path / "home")
    build_warehouse(s)
    return s


@pytest.fixture
def applied(settings: Settings) -> Settings:
    export_feature_data(settings)
    apply_feature_repo(settings)
    return settings


# ---------------------------------------------------------------- export


def test_export_writes_contract_parquet_atomically(settings: Settings) -> None:
    # A warehouse without dim_item_attributes (built by hand here) exports it empty.
    assert export_feature_data(settings) == {"user_features": 3, "item_features": 3, "item_attributes": 0}

    users = pq.read_table(settings.feature_data_dir / feature_ops.USER_FEATURES_FILE)
    assert users.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert users.schema.field("recent_item_ids").type == pa.list_(pa.string())
    assert users.schema.field("n_purchases_total").type == pa.int64()
    assert sorted(
        (r["user_id"], r["event_timestamp"], r["recent_item_ids"]) for r in users.to_pylist()
    ) == sorted((u, ts, items) for u, ts, items, *_ in USER_ROWS)

    items = pq.read_table(settings.feature_data_dir / feature_ops.ITEM_FEATURES_FILE)
    assert items.schema.field("event_timestamp").type == pa.timestamp("us", tz="UTC")
    assert items.schema.field("n_events_1d").type == pa.int64()
    assert {r["item_id"]: r["event_timestamp"] for r in items.to_pylist()} == {
        item_id: ts for item_id, ts, *_ in ITEM_ROWS
    }

    con = duckdb.connect(str(settings.warehouse_path))
    con.execute("DELETE FROM user_features WHERE user_id = 'u2'")
    con.close()
    assert export_feature_data(settings)["user_features"] == 2
    assert pq.read_table(settings.feature_data_dir / feature_ops.USER_FEATURES_FILE).num_rows == 2
    assert sorted(p.name for p in settings.feature_data_dir.iterdir()) == [
        feature_ops.ITEM_ATTRIBUTES_FILE,
        feature_ops.ITEM_FEATURES_FILE,
        feature_ops.USER_FEATURES_FILE,
    ]


def test_export_without_warehouse_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="warehouse"):
        export_feature_data(Settings(home=tmp_path))


# ---------------------------------------------------------------- configuration


def test_repo_config_switches_online_store_by_setting(tmp_path: Path) -> None:
    sqlite = feature_ops.repo_config(Settings(home=tmp_path))
    assert sqlite.online_store.type == "sqlite"
    assert Path(sqlite.online_store.path) == tmp_path / "feast" / "online_store.db"

    redis = feature_ops.repo_config(
        Settings(home=tmp_path, feast_online_store="redis", redis_connection_string="h:1,db=3")
    )
    assert redis.online_store.type == "redis"
    # bounded sockets, no client retries (features/online_store.py): the request path's default
    assert redis.online_store.connection_string == (
        "h:1,db=3,socket_timeout=1,socket_connect_timeout=1,retry=null")
    assert redis.registry.path == sqlite.registry.path

    with pytest.raises(ValueError, match="feast_online_store"):
        feature_ops.repo_config(Settings(home=tmp_path, feast_online_store="dynamo"))


def test_yaml_for_the_cli_matches_store_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feast.repo_config import load_repo_config

    settings = Settings(home=tmp_path)
    for name, value in feature_ops.feast_cli_env(settings).items():
        monkeypatch.setenv(name, value)
    from_yaml = load_repo_config(feature_ops.REPO_DIR, feature_ops.REPO_DIR / "feature_store.yaml")
    from_settings = feature_ops.repo_config(settings)

    assert from_yaml.project == from_settings.project == feature_ops.PROJECT
    assert from_yaml.provider == from_settings.provider
    assert from_yaml.registry.path == from_settings.registry.path
    assert from_yaml.offline_store.type == from_settings.offline_store.type
    assert from_yaml.online_store.type == from_settings.online_store.type
    assert from_yaml.online_store.path == from_settings.online_store.path
    assert (
        from_yaml.entity_key_serialization_version
        == from_settings.entity_key_serialization_version
    )


# ---------------------------------------------------------------- apply


def test_apply_registers_the_repo_idempotently(settings: Settings, tmp_path: Path) -> None:
    export_feature_data(settings)
    environment = dict(os.environ)

    # Another home first, in the same process: its sources must not leak into this one.
    apply_feature_repo(Settings(home=tmp_path / "other"))
    first = apply_feature_repo(settings)
    second = apply_feature_repo(settings)
    assert first == second == [
        "data_source:item_attributes_source",
        "data_source:item_features_source",
        "data_source:user_events_push",
        "data_source:user_features_source",
        "entity:item",
        "entity:user",
        "feature_service:recommendation_features",
        "feature_view:item_attributes",
        "feature_view:item_popularity",
        "feature_view:user_activity",
        "feature_view:user_recent_items",
    ]
    # The Settings given say where the data is; the process environment is left as it was.
    assert dict(os.environ) == environment

    store = feature_ops.feature_store(settings)
    views = {view.name: view for view in store.list_feature_views()}
    assert set(views) == {"user_recent_items", "user_activity", "item_popularity", "item_attributes"}
    # Sources point at this home's export although another home was applied before.
    for name in ("user_activity", "user_recent_items"):
        assert views[name].batch_source.path == str(
            settings.feature_data_dir / feature_ops.USER_FEATURES_FILE
        )
    assert views["item_popularity"].batch_source.path == str(
        settings.feature_data_dir / feature_ops.ITEM_FEATURES_FILE
    )
    assert views["user_recent_items"].ttl == timedelta(days=90)
    assert views["item_popularity"].ttl == timedelta(days=7)
    assert [f.name for f in views["user_recent_items"].features] == ["recent_item_ids"]
    assert str(views["user_recent_items"].features[0].dtype) == "Array(String)"
    service = store.get_feature_service(feature_ops.FEATURE_SERVICE)
    assert sorted(p.name for p in service.feature_view_projections) == [
        "user_activity",
        "user_recent_items",
    ]


def test_apply_deletes_what_the_repo_no_longer_defines(applied: Settings) -> None:
    import contextlib
    import sqlite3

    from feast import FeatureService, FeatureView, Field
    from feast.types import Int64

    # What an older version of the repo registered and this one no longer defines.
    store = feature_ops.feature_store(applied)
    activity = store.get_feature_view("user_activity")
    obsolete = FeatureView(
        name="obsolete_view", entities=[store.get_entity("user")], ttl=timedelta(days=1),
        schema=[Field(name="n_events_total", dtype=Int64)], source=activity.batch_source,
    )
    store.apply([obsolete, FeatureService(name="obsolete_service", features=[obsolete])])
    online = applied.feast_dir / "online_store.db"

    def tables() -> set[str]:
        with contextlib.closing(sqlite3.connect(online)) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    assert "recsys_obsolete_view" in tables()

    apply_feature_repo(applied)
    store = feature_ops.feature_store(applied)
    assert {v.name for v in store.list_feature_views()} == {
        "user_recent_items", "user_activity", "item_popularity", "item_attributes"}
    assert [s.name for s in store.list_feature_services()] == [feature_ops.FEATURE_SERVICE]
    assert "recsys_obsolete_view" not in tables()
    assert "recsys_user_activity" in tables()


# ---------------------------------------------------------------- materialize and read


def test_sqlite_online_roundtrip(applied: Settings) -> None:
    summary = materialize(applied, DAY0, DAY3)
    assert summary["online_store"] == "sqlite"
    assert summary["feature_views"]["user_recent_items"] == {
        "rows": 3, "entities": 2, "written": 2, "replaced_future": 0
    }
    assert summary["feature_views"]["item_popularity"] == {
        "rows": 3, "entities": 3, "written": 3, "replaced_future": 0
    }
    assert (applied.feast_dir / "online_store.db").is_file()

    store = feature_ops.feature_store(applied)
    features = read_user_features(store, ["u1", "nobody", "u2", "u1"])
    assert list(features) == ["u1", "nobody", "u2"]
    assert features["u1"] == {
        "recent_item_ids": ["i1", "i2", "i3"],
        "n_events_total": 3,
        "n_sessions_total": 2,
        "n_purchases_total": 1,
    }
    assert features["u2"]["recent_item_ids"] == ["i2"]
    assert features["nobody"] is None
    # The Settings variant builds its own store and reads the same rows.
    assert read_user_features(applied, ["u2"]) == {"u2": features["u2"]}
    assert read_user_features(store, []) == {}


def test_materialize_interval_is_half_open(applied: Settings) -> None:
    store = feature_ops.feature_store(applied)

    # u1's later row lies exactly on the end of the interval: not part of it.
    summary = materialize(applied, DAY0, U1_LATEST)
    assert summary["feature_views"]["user_recent_items"] == {
        "rows": 2, "entities": 2, "written": 2, "replaced_future": 0
    }
    assert summary["feature_views"]["item_popularity"] == {
        "rows": 2, "entities": 2, "written": 2, "replaced_future": 0
    }
    assert read_user_features(store, ["u1"])["u1"]["recent_item_ids"] == ["i1", "i2"]
    items = store.get_online_features(
        features=["item_popularity:n_events_7d"], entity_rows=[{"item_id": "i3"}]
    ).to_dict()
    assert items["n_events_7d"] == [None]

    materialize(applied, U1_LATEST, DAY3)
    features = read_user_features(store, ["u1"])
    assert features["u1"]["recent_item_ids"] == ["i1", "i2", "i3"]
    assert features["u1"]["n_events_total"] == 3


def test_materialize_rejects_ambiguous_intervals(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ValueError, match="timezone-aware"):
        materialize(settings, datetime(2026, 11, 1), DAY1)
    with pytest.raises(ValueError, match="empty interval"):
        materialize(settings, DAY1, DAY1)


def test_historical_features_are_point_in_time(applied: Settings) -> None:
    import pandas as pd

    store = feature_ops.feature_store(applied)
    entity_df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "nobody"],
            "event_timestamp": [DAY1, U1_LATEST, DAY0, DAY1],
            "request": ["u1-before-latest", "u1-at-latest", "u2-before-any", "unknown"],
        }
    )
    df = store.get_historical_features(
        entity_df=entity_df,
        features=store.get_feature_service(feature_ops.FEATURE_SERVICE),
    ).to_df()
    rows = {r["request"]: r for r in df.to_dict("records")}

    assert list(rows["u1-before-latest"]["recent_item_ids"]) == ["i1", "i2"]
    assert rows["u1-before-latest"]["n_events_total"] == 2
    assert list(rows["u1-at-latest"]["recent_item_ids"]) == ["i1", "i2", "i3"]
    assert rows["unknown"]["recent_item_ids"] is None
    # u2's only row comes after the request. Feast's file store drops such a request row
    # instead of returning it with empty features; either way its future must not leak.
    if "u2-before-any" in rows:
        assert rows["u2-before-any"]["recent_item_ids"] is None


# ---------------------------------------------------------------- Redis


def _redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.mark.integration
def test_redis_online_roundtrip(tmp_path: Path) -> None:
    if not _redis_answers():
        pytest.skip("no Redis answering on 127.0.0.1:6379")
    import redis

    settings = Settings(
        home=tmp_path / "home",
        feast_online_store="redis",
        redis_connection_string="127.0.0.1:6379",
    )
    build_warehouse(settings)
    # Feast suffixes every Redis key with the project, so a project of its own keeps this test
    # apart from parallel runs and from a deployment's `recsys` keys on the same server.
    project = f"recsys_test_{uuid.uuid4().hex[:12]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    pattern = f"*{project}"

    export_feature_data(settings)
    apply_feature_repo(settings, project=project)
    store = feature_ops.feature_store(settings, project=project)
    try:
        summary = materialize(settings, DAY0, U1_LATEST, project=project)
        assert summary["online_store"] == "redis"
        assert sum(1 for _ in client.scan_iter(match=pattern)) == 2 + 2  # users + items
        assert not (settings.feast_dir / "online_store.db").exists()

        features = read_user_features(store, ["u1", "u2", "nobody"])
        assert features["u1"]["recent_item_ids"] == ["i1", "i2"]
        assert features["u2"]["n_events_total"] == 1
        assert features["nobody"] is None

        materialize(settings, U1_LATEST, DAY3, project=project)
        features = read_user_features(settings, ["u1"], project=project)
        assert features["u1"]["recent_item_ids"] == ["i1", "i2", "i3"]
    finally:
        store.teardown()
    assert not list(client.scan_iter(match=pattern))


# ---------------------------------------------------------------- feast CLI


def _feast_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    feast = Path(sys.executable).with_name("feast")
    if not feast.exists():
        pytest.skip(f"feast CLI not installed next to {sys.executable}")
    return subprocess.run(
        [str(feast), "-c", str(feature_ops.REPO_DIR), *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.slow
def test_feast_cli_shares_the_repo_with_store(settings: Settings) -> None:
    export_feature_data(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSYS_")}
    env["RECSYS_HOME"] = str(settings.home)
    # The environment the yaml documents: `python -m features.store env` as shell exports.
    printed = subprocess.run(
        [sys.executable, "-m", "features.store", "env"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    assert env[feature_ops.FEAST_DIR_ENV] == str(settings.feast_dir)

    applied = _feast_cli(["apply"], env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    store = feature_ops.feature_store(settings)
    assert {v.name for v in store.list_feature_views()} == {
        "user_recent_items",
        "user_activity",
        "item_popularity",
        "item_attributes",
    }

    # What store.py registers is what the CLI would: its plan finds nothing to change.
    apply_feature_repo(settings)
    plan = _feast_cli(["plan"], env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "No changes to registry" in plan.stdout, plan.stdout
    assert "No changes to infrastructure" in plan.stdout, plan.stdout
