"""Feature poisoning through the push path: an event stamped far in the future used to stamp the
user's online row there, and materialization (which never rolls a user back) then skipped that
row for good. Now ``POST /events`` refuses event times outside the bounds, and materialization
overwrites an online row stamped later than now + the allowed skew, on SQLite and on Redis."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from features import store as feature_ops
from features.materialize import materialize
from features.push import read_recent_items
from tests.features.test_feature_store import _redis_answers
from tests.reliability.events_host import DAY0, DAY3, U1_LATEST, events_app, materialized

FAR_FUTURE = datetime(2200, 1, 1, tzinfo=timezone.utc)


def test_event_times_out_of_bounds_are_refused_and_nothing_is_pushed(tmp_path):
    settings = materialized(tmp_path / "home")
    store = feature_ops.feature_store(settings)
    before = read_recent_items(store, ["u1"])["u1"]
    with TestClient(events_app(settings, store)) as client:
        for index, event_time in ((1, FAR_FUTURE.isoformat()), (0, "2001-01-01T00:00:00Z")):
            events = [{"user_id": "u1", "item_id": "i8"}, {"user_id": "u1", "item_id": "i9"}]
            events[index]["event_time"] = event_time
            refused = client.post("/events", json={"events": events})
            assert refused.status_code == 422
            reason = refused.json()["detail"]
            assert isinstance(reason, str) and "\n" not in reason and f"events[{index}]" in reason
    assert read_recent_items(store, ["u1"])["u1"] == before  # neither event of either call landed


def _poison(store, user_id: str) -> None:
    """What an unchecked push did: the user's list stamped in the year 2200 (Feast's own push)."""
    import pandas as pd
    from feast.data_source import PushMode

    frame = pd.DataFrame([{feature_ops.USER_JOIN_KEY: user_id, feature_ops.TIMESTAMP_FIELD: FAR_FUTURE,
                           feature_ops.RECENT_ITEMS_FEATURE: ["attacker", "chosen"]}])
    frame[feature_ops.TIMESTAMP_FIELD] = pd.to_datetime(frame[feature_ops.TIMESTAMP_FIELD], utc=True)
    store.push(feature_ops.USER_EVENTS_PUSH_SOURCE, frame, to=PushMode.ONLINE)


@pytest.mark.parametrize("online_store", ["sqlite", pytest.param("redis", marks=pytest.mark.integration)])
def test_materialization_overwrites_a_row_stamped_in_the_future(tmp_path, online_store):
    if online_store == "redis":
        if not _redis_answers():
            pytest.skip("no Redis answering on 127.0.0.1:6379")
        project = f"recsys_poison_{uuid.uuid4().hex[:12]}"
        overrides = {"feast_online_store": "redis", "redis_connection_string": "127.0.0.1:6379"}
    else:
        project, overrides = feature_ops.PROJECT, {}
    settings = materialized(tmp_path / "home", project, **overrides)
    store = feature_ops.feature_store(settings, project=project)
    try:
        _poison(store, "u1")
        assert read_recent_items(store, ["u1"])["u1"] == (FAR_FUTURE, ["attacker", "chosen"])

        summary = materialize(settings, DAY0, DAY3, project=project)
        assert read_recent_items(store, ["u1"])["u1"] == (U1_LATEST, ["i1", "i2", "i3"])
        assert summary["feature_views"]["user_recent_items"]["replaced_future"] == 1
        # a trusted, newer row still wins over an older interval (no roll-back)
        assert materialize(settings, DAY0, U1_LATEST, project=project)[
            "feature_views"]["user_recent_items"]["replaced_future"] == 0
        assert read_recent_items(store, ["u1"])["u1"] == (U1_LATEST, ["i1", "i2", "i3"])
    finally:
        if online_store == "redis":
            store.teardown()
