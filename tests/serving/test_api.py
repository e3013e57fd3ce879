"""The recommendation API on real parts: a SASRec trained and promoted in MLflow, features
materialized into Feast's SQLite online store. Covers answers, the unknown-user fallback and
input errors."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import duckdb
import pytest
from fastapi.testclient import TestClient

from pipeline.settings import Settings
from serving.app import MAX_K, create_app

RUN_DATE = date(2026, 11, 10)
N_ITEMS = 30


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


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Settings:
    from features.store import apply_feature_repo, export_feature_data, materialize
    from training.promote import apply_decision, decide_promotion
    from training.train import train_and_log

    settings = Settings(home=tmp_path_factory.mktemp("serving"), max_sequence_length=20)
    build_warehouse(settings)
    export_feature_data(settings)
    apply_feature_repo(settings)
    end = datetime(2026, 11, 11, tzinfo=timezone.utc)
    materialize(settings, end - timedelta(days=30), end)
    candidate = train_and_log(settings, RUN_DATE, model_name="sasrec", epochs=15)
    decision = decide_promotion(settings, RUN_DATE, candidate, gate_passed=True)
    assert decision.promote, decision
    apply_decision(settings, decision)
    return settings


@pytest.fixture(scope="module")
def client(served):
    with TestClient(create_app(served)) as client:
        yield client


def test_health_names_the_champion(client):
    assert client.get("/health").json() == {"status": "ok", "model_name": "sasrec", "model_version": "1"}


def test_known_user_gets_unseen_items_from_the_champion(client, served):
    user_id, items, _ = ring_user_sequences()[0]
    body = client.get(f"/recommendations/{user_id}", params={"k": 5}).json()
    assert body["fallback"] is False and body["model_version"] == "1"
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


def test_without_a_champion_the_api_says_so(tmp_path):
    settings = Settings(home=tmp_path / "empty")
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").json()["status"] == "no_model"
        response = client.get("/recommendations/u000")
        assert response.status_code == 503 and "no champion" in response.json()["detail"]
