"""Serving with Redis as the online store survives Redis going away and recovers when it is back.

Uses a private ``redis-server`` on a free port (never the machine's shared Redis); skipped when
the binary is absent."""

from __future__ import annotations

import shutil

import pytest
import redis
from fastapi.testclient import TestClient

from serving.app import create_app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server binary not installed"),
]


@pytest.fixture(scope="module")
def redis_world(tmp_path_factory, world):
    home = tmp_path_factory.mktemp("redis-serving")
    server = world.RedisServer(home).start()
    settings = world.settings(home, feast_online_store="redis",
                              redis_connection_string=f"127.0.0.1:{server.port}",
                              feature_timeout_ms=500)
    world.build_warehouse(settings)
    world.materialize_features(settings)
    # The popularity model: cheap to train, and promotable when there is no better champion.
    world.train_and_promote(settings, "popularity", epochs=1)
    yield settings, server
    server.stop()


def test_redis_stop_gives_fallbacks_and_restart_recovers(redis_world):
    settings, server = redis_world
    with TestClient(create_app(settings)) as client:
        live = client.get("/recommendations/u000", params={"k": 5}).json()
        assert live["fallback"] is False and live["model_name"] == "popularity"

        redis.Redis(port=server.port).save()  # the restarted server reloads this snapshot
        server.stop()
        for _ in range(3):
            response = client.get("/recommendations/u000", params={"k": 5})
            assert response.status_code == 200
            body = response.json()
            assert body["fallback"] is True
            assert body["fallback_reason"] in ("feature_store_error", "feature_store_timeout")
            assert len(body["items"]) == 5
        batch = client.post("/recommendations/batch", json={"user_ids": ["u000", "u001"]})
        assert batch.status_code == 200 and all(r["fallback"] for r in batch.json()["results"])
        counted = {
            line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("recsys_fallbacks_total{")
        }
        assert counted["feature_store_error"] + counted["feature_store_timeout"] >= 5  # 3 + a batch of 2

        server.start()
        recovered = client.get("/recommendations/u000", params={"k": 5}).json()
        assert recovered["fallback"] is False
        assert [i["item_id"] for i in recovered["items"]] == [i["item_id"] for i in live["items"]]


def test_precomputed_lists_in_redis(redis_world):
    import dataclasses

    from serving.precompute import RedisPrecomputed, precompute

    settings, server = redis_world
    summary = precompute(settings, k=10)
    assert summary["store"] == "redis" and summary["written"] == 200
    assert RedisPrecomputed(settings).versions() == [summary["model_version"]]
    with TestClient(create_app(settings.replace(serving_mode="precomputed"))) as client:
        body = client.get("/recommendations/u003", params={"k": 10}).json()
        assert body["source"] == "precomputed" and len(body["items"]) == 10
