"""The SQLite online store file replaced while a store holds it open (moved into place by
another process's re-materialization, or deleted and written anew by an operator): the
long-lived store (serving's) reads the new file and pushes into it, without a restart. It used to
read the deleted file and fail every push with "attempt to write a readonly database"."""

from __future__ import annotations

import os
import shutil

import pytest

from features import store as feature_ops
from features.online_reader import UserFeatureReader
from features.push import push_user_events, read_recent_items
from tests.reliability.events_host import materialized


@pytest.mark.parametrize("how", ["moved_into_place", "deleted_and_written_anew"])
def test_a_live_store_follows_a_replaced_sqlite_file(tmp_path, how):
    settings = materialized(tmp_path / "home")
    live = feature_ops.feature_store(settings)  # built once and kept, as serving does
    reader = UserFeatureReader(live)
    assert reader.read(["u1"])["u1"]["recent_item_ids"] == ["i1", "i2", "i3"]

    # Another process prepares the next file: a copy of the store with u1's list changed.
    other = settings.replace(home=tmp_path / "other")
    shutil.copytree(settings.feast_dir, other.feast_dir)
    push_user_events(other, [{"user_id": "u1", "item_id": "i9"}], store=feature_ops.feature_store(other))
    next_file = other.feast_dir / "online_store.db"
    path = settings.feast_dir / "online_store.db"
    if how == "moved_into_place":
        os.replace(next_file, path)
    else:
        path.unlink()
        shutil.copyfile(next_file, path)

    assert reader.read(["u1"])["u1"]["recent_item_ids"] == ["i2", "i3", "i9"]
    pushed = push_user_events(settings, [{"user_id": "u2", "item_id": "i7"}], store=live)
    assert pushed["recent_item_ids"] == {"u2": ["i2", "i7"]}
    # the push landed in the file now at the path (a store opened afresh sees it)
    fresh = feature_ops.feature_store(settings)
    assert read_recent_items(fresh, ["u2"])["u2"][1] == ["i2", "i7"]
