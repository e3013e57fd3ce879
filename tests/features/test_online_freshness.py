"""Point-in-time sequences and the online store's freshness: the offline builder never sees the
future, materialization never rolls a user back and never shows a half-written row to a reader,
and pushed events extend the online list at once, on SQLite and on Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_feature_store import (  # noqa: E402
    DAY0,
    DAY3,
    U1_LATEST,
    _redis_answers,
    build_warehouse,
)

from features import store as feature_ops  # noqa: E402
from features.definitions import apply_feature_repo  # noqa: E402
from features.export import export_feature_data  # noqa: E402
from features.materialize import materialize  # noqa: E402
from features.online_reader import (  # noqa: E402
    UserFeatureReader,
    read_user_features,
    read_user_features_direct,
)
from features.push import push_user_events, read_recent_items  # noqa: E402
from features.sequences import Event, last_k_items_as_of, user_sequences_as_of  # noqa: E402
from core.settings import REPO_ROOT, Settings  # noqa: E402
from training.data import UserSequence, temporal_split  # noqa: E402

K = 3
T = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- offline point-in-time builder


def test_last_k_items_never_include_events_at_or_after_the_prediction_time():
    events = [
        Event("u1", T - timedelta(hours=3), "e1", "i1"),
        Event("u1", T - timedelta(hours=2), "e2", "i2"),
        Event("u1", T - timedelta(seconds=1), "e4", "i4"),
        Event("u1", T - timedelta(seconds=1), "e3", "i3"),  # same instant: e3 before e4
        Event("u1", T, "at", "AT_PREDICTION_TIME"),  # planted: exactly at t
        Event("u1", T + timedelta(microseconds=1), "f1", "FUTURE"),  # planted: just after t
        Event("u2", T + timedelta(days=1), "g1", "FUTURE"),
    ]
    got = last_k_items_as_of(events, [("u1", T), ("u1", T + timedelta(seconds=1)), ("u2", T),
                                      ("nobody", T), ("u1", T - timedelta(hours=2))], k=K)
    assert got[0] == ["i2", "i3", "i4"]
    assert got[1] == ["i4", "AT_PREDICTION_TIME", "FUTURE"]  # a later t sees them
    assert got[2] == [] and got[3] == []
    assert got[4] == ["i1"]  # the event at 10:00 is at t itself: excluded
    for items in (got[0], got[2], got[4]):
        assert "FUTURE" not in items and "AT_PREDICTION_TIME" not in items
    # naive times are UTC; mappings work as well as Events
    as_dicts = [{"user_id": e.user_id, "event_time": e.event_time.replace(tzinfo=None),
                 "event_id": e.event_id, "item_id": e.item_id} for e in events]
    assert last_k_items_as_of(as_dicts, [("u1", T.replace(tzinfo=None))], k=K) == [got[0]]
    assert user_sequences_as_of(events, T, k=2) == {"u1": ["i3", "i4"]}


def test_training_split_inputs_are_strictly_before_the_split_time():
    day = timedelta(days=1)
    end = datetime(2026, 11, 20, 12, 0)  # naive UTC, as training.data holds times
    test_start, val_start = end - day, end - 2 * day
    sequences = [
        # an event exactly at val_start / test_start is a target, never an input
        UserSequence("u1", ("a", "b", "c", "d", "e"),
                     (val_start - 2 * day, val_start - day, val_start, test_start, end)),
        UserSequence("u2", ("a", "x", "y"), (val_start - day, test_start, end)),
    ]
    split = temporal_split(sequences, max_len=K)
    assert (split.val_start, split.test_start) == (val_start, test_start)
    by_user = {(e.user_id, "val"): e for e in split.val_examples}
    by_user.update({(e.user_id, "test"): e for e in split.test_examples})
    assert by_user[("u1", "val")].input_items == ("a", "b")
    assert by_user[("u1", "val")].target_item == "c"
    assert by_user[("u1", "test")].input_items == ("a", "b", "c")
    assert by_user[("u1", "test")].target_item == "d"
    assert by_user[("u2", "test")].input_items == ("a",)
    assert by_user[("u2", "test")].target_item == "x"
    # each input equals the PIT builder's list strictly before the window start
    events = [Event(s.user_id, t, str(i), item) for s in sequences
              for i, (item, t) in enumerate(zip(s.item_ids, s.event_times))]
    for (user_id, window), example in by_user.items():
        start = val_start if window == "val" else test_start
        assert list(example.input_items) == last_k_items_as_of(events, [(user_id, start)], K)[0]
    assert split.vocab.item_ids == ["a", "b"]  # only events before val_start


# ---------------------------------------------------------------- online store, both kinds


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def online(request, tmp_path):
    """(settings, project) with the feature repo applied, on SQLite or a real Redis."""
    if request.param == "redis":
        if not _redis_answers():
            pytest.skip("no Redis answering on 127.0.0.1:6379")
        settings = Settings(home=tmp_path / "home", max_sequence_length=K,
                            feast_online_store="redis", redis_connection_string="127.0.0.1:6379")
        project = f"recsys_fresh_{uuid.uuid4().hex[:12]}"
    else:
        settings = Settings(home=tmp_path / "home", max_sequence_length=K)
        project = feature_ops.PROJECT
    # The fixture's events are from a fixed past week: pushes of them must pass the age bound.
    settings = settings.replace(max_event_age_days=36500)
    build_warehouse(settings)
    export_feature_data(settings)
    apply_feature_repo(settings, project=project)
    yield settings, project
    if request.param == "redis":
        import redis

        feature_ops.feature_store(settings, project=project).teardown()
        client = redis.Redis(host="127.0.0.1", port=6379)
        assert not list(client.scan_iter(match=f"*{project}"))


def _u1_items(settings, project):
    store = feature_ops.feature_store(settings, project=project)
    return read_user_features(store, ["u1"])["u1"]["recent_item_ids"]


def test_rerunning_an_older_interval_does_not_roll_back(online):
    settings, project = online
    materialize(settings, DAY0, DAY3, project=project)
    assert _u1_items(settings, project) == ["i1", "i2", "i3"]
    # last week's run again, after this week's: u1's older row must not come back
    again = materialize(settings, DAY0, U1_LATEST, project=project)
    assert again["feature_views"]["user_recent_items"] == {
        "rows": 2, "entities": 2, "written": 1, "replaced_future": 0
    }
    assert _u1_items(settings, project) == ["i1", "i2", "i3"]
    store = feature_ops.feature_store(settings, project=project)
    assert read_recent_items(store, ["u1"])["u1"] == (U1_LATEST, ["i1", "i2", "i3"])
    # the same interval twice is idempotent
    materialize(settings, DAY0, DAY3, project=project)
    assert _u1_items(settings, project) == ["i1", "i2", "i3"]


def test_readers_see_old_or_new_rows_while_materialization_runs(online):
    settings, project = online
    materialize(settings, DAY0, U1_LATEST, project=project)
    old, new = ["i1", "i2"], ["i1", "i2", "i3"]
    reader = feature_ops.feature_store(settings, project=project)
    seen, errors, stop = [], [], threading.Event()

    def read_loop():
        while not stop.is_set():
            try:
                features = read_user_features(reader, ["u1", "u2"])
                u1, u2 = features["u1"], features["u2"]
                seen.append(u1["recent_item_ids"])
                # complete rows of each view: old or new, never missing or mixed within a view
                # (the two views are written one after the other, so they may be a run apart)
                assert (u1["n_events_total"], u1["n_sessions_total"]) in ((2, 1), (3, 2))
                assert u2["recent_item_ids"] == ["i2"] and u2["n_events_total"] == 1
            except Exception as exc:  # noqa: BLE001 - any failure of a read is the finding
                errors.append(repr(exc))

    thread = threading.Thread(target=read_loop, daemon=True)
    thread.start()
    try:
        for _ in range(3):
            materialize(settings, DAY0, DAY3, project=project)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors[:3]
    assert seen and all(items in (old, new) for items in seen)
    assert seen[-1] == new


def test_pushed_events_extend_the_online_list_at_once(online):
    settings, project = online
    materialize(settings, DAY0, DAY3, project=project)
    kwargs = {"project": project}
    pushed = push_user_events(settings, [
        {"user_id": "u1", "item_id": "i4", "event_type": "click",
         "event_time": U1_LATEST + timedelta(minutes=2)},
        {"user_id": "u1", "item_id": "i5", "event_time": (U1_LATEST + timedelta(minutes=1)).isoformat()},
        {"user_id": "new-user", "item_id": "i7"},
    ], **kwargs)
    assert pushed["users"] == 2 and pushed["events"] == 3
    # appended in event-time order, last K kept
    assert pushed["recent_item_ids"] == {"u1": ["i3", "i5", "i4"], "new-user": ["i7"]}
    store = feature_ops.feature_store(settings, project=project)
    features = read_user_features(store, ["u1", "new-user"])
    assert features["u1"]["recent_item_ids"] == ["i3", "i5", "i4"]
    assert features["u1"]["n_events_total"] == 3  # the activity view is not touched
    assert features["new-user"]["recent_item_ids"] == ["i7"]

    # an event older than the stored row is still appended (its row gets a newer timestamp)
    late = push_user_events(settings, [{"user_id": "u1", "item_id": "i6", "event_time": DAY0}], **kwargs)
    assert late["recent_item_ids"]["u1"] == ["i5", "i4", "i6"]
    assert _u1_items(settings, project) == ["i5", "i4", "i6"]
    # last night's materialization re-run does not undo the fresher pushed list
    materialize(settings, DAY0, DAY3, project=project)
    assert _u1_items(settings, project) == ["i5", "i4", "i6"]

    with pytest.raises(ValueError, match="event_type"):
        push_user_events(settings, [{"user_id": "u1", "item_id": "i1", "event_type": "like"}], **kwargs)
    with pytest.raises(ValueError, match="user_id and item_id"):
        push_user_events(settings, [{"user_id": "", "item_id": "i1"}], **kwargs)
    assert push_user_events(settings, [], **kwargs)["users"] == 0


def test_push_cli(tmp_path):
    settings = Settings(home=tmp_path / "home", max_sequence_length=K)
    build_warehouse(settings)
    export_feature_data(settings)
    apply_feature_repo(settings)
    materialize(settings, DAY0, DAY3)
    env = {"PATH": "/usr/bin:/bin", "RECSYS_HOME": str(settings.home), "RECSYS_MAX_SEQUENCE_LENGTH": str(K)}
    done = subprocess.run(
        [sys.executable, "-m", "features.push", "--user", "u2", "--item", "i9", "--event-type", "purchase"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"u2": [' in done.stdout
    assert read_user_features(settings, ["u2"])["u2"]["recent_item_ids"] == ["i2", "i9"]


def test_direct_read_path_matches_get_online_features(online):
    settings, project = online
    materialize(settings, DAY0, DAY3, project=project)
    store = feature_ops.feature_store(settings, project=project)
    users = ["u1", "nobody", "u2", "u1"]
    assert read_user_features_direct(store, users) == read_user_features(store, users)
    reader = UserFeatureReader(store)
    assert reader.read(users) == read_user_features(store, users)
    assert read_user_features_direct(store, []) == {}
    # Redis reads natively on the event loop too (the API's path there); same answer.
    assert reader.reads_async == (settings.feast_online_store == "redis")
    if reader.reads_async:
        assert asyncio.run(reader.aread(users)) == read_user_features(store, users)
