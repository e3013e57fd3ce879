"""The bulk route writes Redis byte for byte as Feast does: the same rows materialized by Feast's
own ``FeatureStore.materialize`` / the platform's standard route into one Redis database and by
features.bulk_materialize into another give identical keys, hash fields, values and TTLs, and
``get_online_features`` reads identical features from both."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import Settings
from features import store as feature_ops
from features.bulk_materialize import BulkMaterializeConfig, bulk_materialize, bulk_views
from features.definitions import apply_feature_repo
from features.materialize import materialize

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
START, END = T0 - timedelta(days=1), T0 + timedelta(days=1)
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=timezone.utc)
REDIS = "127.0.0.1:6379"
DB_FEAST, DB_BULK = 14, 15
LONG_LIST = [f"item-{i:04d}-" + "x" * 90 for i in range(200)]  # a value over 16 KiB: 3-byte length

# user_id, event_timestamp, recent_item_ids, n_events_total, n_sessions_total, n_purchases_total
USERS = [
    ("u1", T0 + timedelta(hours=3), ["a", "b", "c"], 3, 2, 1),  # updated twice: this one wins
    ("u1", T0 + timedelta(hours=1), ["a"], 1, 1, 0),
    ("u1", START - timedelta(hours=1), ["old"], 9, 9, 9),  # before the window
    ("u2", T0 + timedelta(hours=2, microseconds=7), ["b"], 1, 1, None),
    ("u3", T0 + timedelta(hours=4), ["c", "d"], 2, 1, 0),
    ("u4", T0 + timedelta(hours=5), ["mart"], 1, 1, 0),
    ("u5", T0 + timedelta(minutes=1), LONG_LIST, 200, 20, 2),
    ("ü-é 名", T0 + timedelta(seconds=1), ["ü", "", "名"], 3, 1, 0),
    ("u7", T0 + timedelta(hours=6), None, None, None, None),
    ("u8", T0 + timedelta(hours=7), [], 0, 0, 0),
    ("u9", END + timedelta(hours=1), ["after"], 1, 1, 1),  # after the window
]
TIES = [  # one entity, one instant: the later file row wins (the standard route's rule)
    ("u6", T0 + timedelta(hours=8), ["first"], 1, 1, 1),
    ("u6", T0 + timedelta(hours=8), ["second"], 2, 2, 2),
]
# item_id, event_timestamp, n_events_1d, n_events_7d, n_users_7d
ITEMS = [
    ("i1", T0 + timedelta(hours=1), 1, 1, 1),
    ("i1", T0 + timedelta(hours=9), 5, 6, 3),
    ("i2", T0 + timedelta(hours=2), 2, 2, None),
    ("i3", START - timedelta(days=1), 7, 7, 7),
]


def _redis_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def write_export(settings: Settings, users: list[tuple], items: list[tuple]) -> None:
    ts = pa.timestamp("us", tz="UTC")
    settings.feature_data_dir.mkdir(parents=True, exist_ok=True)
    u = list(zip(*users))
    pq.write_table(pa.table({
        "user_id": pa.array(u[0], pa.string()), "feature_date": [t.date() for t in u[1]],
        "event_timestamp": pa.array(u[1], ts), "recent_item_ids": pa.array(u[2], pa.list_(pa.string())),
        "n_events_total": pa.array(u[3], pa.int64()), "n_sessions_total": pa.array(u[4], pa.int64()),
        "n_purchases_total": pa.array(u[5], pa.int64()),
    }), settings.feature_data_dir / feature_ops.USER_FEATURES_FILE)
    i = list(zip(*items))
    pq.write_table(pa.table({
        "item_id": pa.array(i[0], pa.string()), "feature_date": [t.date() for t in i[1]],
        "event_timestamp": pa.array(i[1], ts), "n_events_1d": pa.array(i[2], pa.int64()),
        "n_events_7d": pa.array(i[3], pa.int64()), "n_users_7d": pa.array(i[4], pa.int64()),
    }), settings.feature_data_dir / feature_ops.ITEM_FEATURES_FILE)
    # The static item-attribute view loads whole outside any interval (features.materialize),
    # on the standard route: empty here, so both sides compare the interval's rows only.
    pq.write_table(pa.table({
        "item_id": pa.array([], pa.string()), "event_timestamp": pa.array([], ts),
        "attribute_values": pa.array([], pa.list_(pa.string())),
        "n_attribute_values": pa.array([], pa.int64()),
    }), settings.feature_data_dir / feature_ops.ITEM_ATTRIBUTES_FILE)


@pytest.fixture
def two_dbs(tmp_path: Path):
    """(settings on db DB_FEAST, settings on db DB_BULK, project): one registry, two databases."""
    if not _redis_answers():
        pytest.skip("no Redis answering on 127.0.0.1:6379")
    import redis

    base = Settings(home=tmp_path / "home", feast_online_store="redis", max_event_age_days=36500)
    feast_side = base.replace(redis_connection_string=f"{REDIS},db={DB_FEAST}",
                              feast_materialize_route="standard")
    bulk_side = base.replace(redis_connection_string=f"{REDIS},db={DB_BULK}",
                             feast_materialize_route="bulk")
    project = f"recsys_bulk_{uuid.uuid4().hex[:12]}"
    yield feast_side, bulk_side, project
    for db in (DB_FEAST, DB_BULK):
        client = redis.Redis(host="127.0.0.1", port=6379, db=db)
        for key in list(client.scan_iter(match=f"*{project}")):
            client.delete(key)


def dump(settings: Settings, project: str) -> dict[bytes, tuple[dict[bytes, bytes], bool]]:
    """Every hash of ``project``: its fields and values, and whether it expires."""
    import redis

    db = int(settings.redis_connection_string.rsplit("db=", 1)[1])
    client = redis.Redis(host="127.0.0.1", port=6379, db=db)
    return {key: (client.hgetall(key), client.pttl(key) > 0)
            for key in client.scan_iter(match=f"*{project}")}


def online_features(settings: Settings, project: str) -> dict[str, dict]:
    """``get_online_features`` of every view's features for every entity of the export."""
    store = feature_ops.feature_store(settings, project=project)
    refs: dict[str, list[str]] = {}
    for view in store.list_feature_views():
        names = [f"{view.name}:{f.name}" for f in view.features]
        refs.setdefault(view.entity_columns[0].name, []).extend(names)
    entities = {"user_id": sorted({u[0] for u in USERS + TIES} | {"nobody"}),
                "item_id": sorted({i[0] for i in ITEMS} | {"nothing"})}
    return {key: store.get_online_features(features=sorted(refs[key]),
                                           entity_rows=[{key: v} for v in values]).to_dict()
            for key, values in entities.items()}


@pytest.mark.integration
def test_bulk_route_matches_feasts_own_materialize(two_dbs):
    feast_side, bulk_side, project = two_dbs
    write_export(feast_side, USERS, ITEMS)
    apply_feature_repo(feast_side, project=project)

    feature_ops.feature_store(feast_side, project=project).materialize(START, END)
    summary = materialize(bulk_side, START, END, project=project)

    expected, got = dump(feast_side, project), dump(bulk_side, project)
    assert len(expected) == 8 + 2  # users u1-u5, ü-é 名, u7 and u8; items i1 and i2
    assert got == expected
    assert summary["feature_views"]["user_activity"] == {
        "rows": 9, "entities": 8, "written": 8, "replaced_future": 0}
    assert summary["feature_views"]["item_popularity"]["entities"] == 2

    reads = online_features(bulk_side, project)
    assert reads == online_features(feast_side, project)
    row = dict(zip(reads["user_id"]["user_id"], reads["user_id"]["recent_item_ids"]))
    assert row["u1"] == ["a", "b", "c"] and row["u5"] == LONG_LIST and row["ü-é 名"] == ["ü", "", "名"]
    assert row["u7"] is None and row["u8"] == [] and row["nobody"] is None


def _prepare(settings: Settings, project: str) -> None:
    """The same online state before the run: last week's rows, then pushes (a newer list, one at
    the mart row's own instant with another value, one stamped in the year 2200)."""
    import pandas as pd
    from feast.data_source import PushMode

    materialize(settings.replace(feast_materialize_route="standard"),
                START - timedelta(days=7), START, project=project)
    store = feature_ops.feature_store(settings, project=project)
    frame = pd.DataFrame([
        {"user_id": "u2", "event_timestamp": T0 + timedelta(hours=9), "recent_item_ids": ["newer"]},
        {"user_id": "u4", "event_timestamp": T0 + timedelta(hours=5), "recent_item_ids": ["pushed"]},
        {"user_id": "u3", "event_timestamp": FAR_FUTURE, "recent_item_ids": ["attacker"]},
    ])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    store.push(feature_ops.USER_EVENTS_PUSH_SOURCE, frame, to=PushMode.ONLINE)


@pytest.mark.integration
@pytest.mark.parametrize("batch_rows", [2, 20_000])
def test_bulk_route_matches_the_standard_route_on_a_populated_store(two_dbs, batch_rows):
    feast_side, bulk_side, project = two_dbs
    write_export(feast_side, USERS + TIES, ITEMS)
    apply_feature_repo(feast_side, project=project)
    for side in (feast_side, bulk_side):
        _prepare(side, project)
    assert dump(bulk_side, project) == dump(feast_side, project)

    standard = materialize(feast_side, START, END, project=project)
    store = feature_ops.feature_store(bulk_side, project=project, redis_batch=True)
    trusted_until = datetime.now(timezone.utc) + timedelta(minutes=bulk_side.max_future_skew_minutes)
    interval_views = [view for view in store.list_feature_views() if view.ttl]  # as materialize does
    bulk = bulk_materialize(store, interval_views, START, END, trusted_until,
                            BulkMaterializeConfig(batch_rows=batch_rows))

    assert bulk == {name: standard["feature_views"][name] for name in bulk}
    assert set(bulk) == {"user_recent_items", "user_activity", "item_popularity"}
    assert bulk["user_recent_items"]["replaced_future"] == 1
    assert dump(bulk_side, project) == dump(feast_side, project)
    reads = online_features(bulk_side, project)
    assert reads == online_features(feast_side, project)
    row = dict(zip(reads["user_id"]["user_id"], reads["user_id"]["recent_item_ids"]))
    activity = dict(zip(reads["user_id"]["user_id"], reads["user_id"]["n_events_total"]))
    assert row["u2"] == ["newer"] and activity["u2"] == 1  # pushed list kept, activity written
    assert row["u4"] == ["pushed"]  # same instant: Feast's newer-wins leaves it
    assert row["u3"] == ["c", "d"]  # the row from the year 2200 is replaced
    assert row["u6"] == ["second"] and row["u1"] == ["a", "b", "c"]


@pytest.mark.integration
def test_bulk_route_writes_feasts_key_expiry(two_dbs):
    feast_side, bulk_side, project = two_dbs
    write_export(feast_side, USERS, ITEMS)
    apply_feature_repo(feast_side, project=project)
    stores = []
    for side in (feast_side, bulk_side):
        store = feature_ops.feature_store(side, project=project, redis_batch=True)
        store.config.online_store.key_ttl_seconds = 3600
        stores.append(store)

    stores[0].materialize(START, END)
    trusted_until = datetime.now(timezone.utc) + timedelta(hours=1)
    bulk_materialize(stores[1], [view for view in stores[1].list_feature_views() if view.ttl], START, END,
                     trusted_until,
                     BulkMaterializeConfig(batch_rows=3))

    expected = dump(feast_side, project)
    assert expected and all(expires for _, expires in expected.values())
    assert dump(bulk_side, project) == expected


def test_route_choice(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    write_export(settings, USERS, ITEMS)
    apply_feature_repo(settings)
    sqlite = feature_ops.feature_store(settings)
    views = sqlite.list_feature_views()
    assert bulk_views("auto", sqlite, views) == []  # SQLite: the standard route
    with pytest.raises(ValueError, match="not a single Redis"):
        bulk_views("bulk", sqlite, views)
    with pytest.raises(ValueError):
        Settings(feast_materialize_route="fast")
