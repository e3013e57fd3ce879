"""The recommendation API on real parts: a SASRec trained and promoted in MLflow, features
materialized into Feast's SQLite online store. Covers answers, every fallback, the batch route,
metrics, precompute mode, input errors and a schemathesis fuzz run (no 5xx on any input)."""

from __future__ import annotations

import time

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings as hypothesis_settings

from core.settings import Settings
from serving.app import MAX_BATCH_USERS, MAX_K, create_app


@pytest.fixture(scope="module")
def served(tmp_path_factory, world) -> Settings:
    settings = world.settings(tmp_path_factory.mktemp("serving"))
    world.build_warehouse(settings)
    world.materialize_features(settings)
    world.train_and_promote(settings, "sasrec", epochs=15)
    return settings


@pytest.fixture(scope="module")
def app(served):
    app = create_app(served)
    with TestClient(app):  # runs the lifespan: app.state.service stays set afterwards
        yield app


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture
def service(app):
    return app.state.service


def test_health_names_the_champion(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model_name": "sasrec", "model_version": "1",
                               "served_from": "registry", "reason": None, "champion_refused": None,
                               "retrieval": "exact",
                               "retrieval_reason": "catalog of 30 items, below RECSYS_ANN_MIN_CATALOG (100000)"}


def test_known_user_gets_unseen_items_from_the_champion(client, served, world):
    user_id, items, _ = world.ring_user_sequences()[0]
    body = client.get(f"/recommendations/{user_id}", params={"k": 5}).json()
    assert body["fallback"] is False and body["model_version"] == "1" and body["source"] == "model"
    assert body["recent_item_ids"] == items[-served.max_sequence_length:]
    recommended = [i["item_id"] for i in body["items"]]
    assert len(recommended) == 5 and not set(recommended) & set(items)
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_unknown_user_gets_popular_items_marked_as_fallback(client):
    body = client.get("/recommendations/never-seen-user", params={"k": 7}).json()
    assert body["fallback"] is True and body["fallback_reason"] == "unknown_user"
    assert [i["rank"] for i in body["items"]] == list(range(1, 8))


@pytest.mark.parametrize("k", ["ten", "0", str(MAX_K + 1), "-3", "1.5"])
def test_bad_k_is_a_clear_4xx(client, k):
    response = client.get("/recommendations/u000", params={"k": k})
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["query", "k"] and detail["msg"]


def test_slow_online_store_answers_popularity_in_time(client, service, monkeypatch):
    def slow_read(user_ids):
        time.sleep(1.0)
        return {}

    monkeypatch.setattr(service, "settings", service.settings.replace(feature_timeout_ms=50))
    monkeypatch.setattr(service, "_read", slow_read)
    started = time.perf_counter()
    response = client.get("/recommendations/u000", params={"k": 5})
    assert time.perf_counter() - started < 0.8
    body = response.json()
    assert response.status_code == 200
    assert body["fallback"] is True and body["fallback_reason"] == "feature_store_timeout"
    assert len(body["items"]) == 5


def test_broken_online_store_or_model_still_answers(client, service, monkeypatch):
    def broken_read(user_ids):
        raise ConnectionError("online store down")

    with monkeypatch.context() as m:
        m.setattr(service, "_read", broken_read)
        body = client.get("/recommendations/u000").json()
        assert body["fallback_reason"] == "feature_store_error" and len(body["items"]) == 10
        batch = client.post("/recommendations/batch", json={"user_ids": ["u000", "u001"]}).json()
        assert {r["fallback_reason"] for r in batch["results"]} == {"feature_store_error"}

    model, _ = service._state

    def broken_model(*args, **kwargs):
        raise RuntimeError("model bug")

    monkeypatch.setattr(model, "recommend", broken_model)
    monkeypatch.setattr(model, "recommend_many", broken_model)
    response = client.get("/recommendations/u000")
    assert response.status_code == 200 and response.json()["fallback_reason"] == "model_error"
    batch = client.post("/recommendations/batch", json={"user_ids": ["u000"], "k": 3}).json()
    assert batch["results"][0]["fallback_reason"] == "model_error"


def test_batch_answers_like_single_requests(client):
    ids = ["u000", "u001", "nobody", "u000"]
    body = client.post("/recommendations/batch", json={"user_ids": ids, "k": 5}).json()
    assert [r["user_id"] for r in body["results"]] == ids
    for user_id, result in zip(ids, body["results"]):
        single = client.get(f"/recommendations/{user_id}", params={"k": 5}).json()
        assert [i["item_id"] for i in result["items"]] == [i["item_id"] for i in single["items"]]
        assert result["fallback"] == single["fallback"]
        for a, b in zip(result["items"], single["items"]):
            assert a["score"] == pytest.approx(b["score"], rel=1e-5) if b["score"] is not None else a["score"] is None


@pytest.mark.parametrize("payload", [
    {"user_ids": []},
    {"user_ids": [f"u{i}" for i in range(MAX_BATCH_USERS + 1)]},
    {"user_ids": ["u000"], "k": 0},
    {"user_ids": ["u000"], "k": MAX_K + 1},
    {"user_ids": [""]},
    {"user_ids": ["x" * 257]},
    {"user_ids": ["u000"], "unexpected": 1},
    {"user_ids": "u000"},
    {},
])
def test_batch_limits_are_4xx(client, payload):
    assert client.post("/recommendations/batch", json=payload).status_code == 422


def test_batch_accepts_the_maximum(client):
    ids = [f"u{i:03d}" for i in range(MAX_BATCH_USERS)]
    body = client.post("/recommendations/batch", json={"user_ids": ids, "k": 3}).json()
    assert len(body["results"]) == MAX_BATCH_USERS
    assert sum(not r["fallback"] for r in body["results"]) == 200  # the 200 known users


def test_openapi_states_the_limits(client):
    schema = client.get("/openapi.json").json()
    batch = schema["components"]["schemas"]["BatchRequest"]
    assert batch["additionalProperties"] is False
    assert batch["properties"]["user_ids"]["maxItems"] == MAX_BATCH_USERS
    assert batch["properties"]["k"]["maximum"] == MAX_K
    for path, method in (("/recommendations/{user_id}", "get"), ("/recommendations/batch", "post")):
        assert "429" in schema["paths"][path][method]["responses"]  # shed under overload


def test_metrics_expose_requests_latency_fallbacks_and_model(client):
    client.get("/recommendations/u001")
    client.get("/recommendations/nobody-at-all")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'recsys_requests_total{endpoint="/recommendations/{user_id}",status="200"}' in text
    assert 'recsys_request_latency_seconds_bucket{endpoint="/recommendations/{user_id}",le="0.02"}' in text
    assert 'recsys_fallbacks_total{reason="unknown_user"}' in text
    assert 'recsys_fallbacks_total{reason="feature_store_timeout"}' in text
    assert 'recsys_fallbacks_total{reason="no_known_items"}' in text
    assert 'recsys_shed_requests_total{endpoint="/recommendations/batch"}' in text
    assert "recsys_requests_in_flight" in text
    assert 'recsys_model_info{model_name="sasrec",model_version="1"} 1.0' in text


def test_precomputed_mode_serves_stored_lists_and_falls_back_to_live(served, client):
    from serving.precompute import precompute

    summary = precompute(served, k=20)
    assert summary["model_version"] == "1" and summary["written"] == 200
    precomputed = served.replace(serving_mode="precomputed")
    with TestClient(create_app(precomputed)) as pre:
        body = pre.get("/recommendations/u002", params={"k": 5}).json()
        live = client.get("/recommendations/u002", params={"k": 5}).json()
        assert body["source"] == "precomputed" and body["fallback"] is False
        assert [i["item_id"] for i in body["items"]] == [i["item_id"] for i in live["items"]]
        longer = pre.get("/recommendations/u002", params={"k": 50}).json()  # > stored: live
        assert longer["source"] == "model"
        unknown = pre.get("/recommendations/nobody").json()
        assert unknown["fallback_reason"] == "unknown_user"
        assert 'recsys_precomputed_total{outcome="hit"}' in pre.get("/metrics").text


def test_without_a_champion_the_api_says_so(tmp_path, world):
    settings = world.settings(tmp_path / "empty")
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "no_model"
        response = client.get("/recommendations/u000")
        assert response.status_code == 503 and "no champion" in response.json()["detail"]


def test_pushed_events_reach_the_next_recommendation(client, world):
    # A user the nightly run never saw starts with the popularity fallback; one pushed event
    # makes the very next answer personal, without waiting for the nightly materialization.
    user_id = "live-session-user"
    assert client.get(f"/recommendations/{user_id}").json()["fallback_reason"] == "unknown_user"
    _, items, _ = world.ring_user_sequences()[0]
    pushed = client.post("/events", json={"events": [{"user_id": user_id, "item_id": items[0]}]})
    assert pushed.status_code == 200 and pushed.json()["recent_item_ids"] == {user_id: [items[0]]}
    body = client.get(f"/recommendations/{user_id}").json()
    assert body["fallback"] is False and body["recent_item_ids"] == [items[0]]
    assert items[0] not in [i["item_id"] for i in body["items"]]


@pytest.mark.parametrize("payload", [
    {"events": []},
    {"events": [{"user_id": "u", "item_id": "i", "event_type": "teleport"}]},
    {"events": [{"user_id": "", "item_id": "i"}]},
    {"events": [{"user_id": "u", "item_id": "i", "colour": "red"}]},
])
def test_malformed_events_are_refused(client, payload):
    assert client.post("/events", json=payload).status_code == 422


def test_admin_reload_needs_the_token_when_one_is_set(client, service, served, monkeypatch):
    assert client.post("/admin/reload").status_code == 200  # no token configured: open (local default)
    monkeypatch.setattr(service, "settings", served.replace(admin_token="s3cret"))
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200 and answer.json()["model_version"] == "1"


# The schema is built at import (schemathesis parametrizes at collection); the app only needs
# its service set before the first call, which the fixture below does with the module's service.
FUZZ_APP = create_app()
fuzzed = schemathesis.openapi.from_asgi("/openapi.json", FUZZ_APP)


@pytest.fixture
def fuzz_app(app):
    FUZZ_APP.state.service = app.state.service
    return FUZZ_APP


@fuzzed.parametrize()
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_no_5xx_on_any_input(case, fuzz_app):
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
