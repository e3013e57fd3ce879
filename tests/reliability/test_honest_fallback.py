"""A known user whose recent items are all unknown to the served model (new catalogue items seen
live, not in the model's training data) gets the popular items labelled for what they are: a
fallback with ``fallback_reason: "no_known_items"`` and ``source: "popularity"``, counted in
``recsys_fallbacks_total``, never ``source: "model"``.

Real parts: a popularity model trained and promoted in MLflow, features materialized into Feast's
SQLite online store, the user's unknown items pushed through the Feast push path."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import build_warehouse, make_settings, materialize_features, train_and_promote


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("honest-fallback"))
    build_warehouse(settings)
    materialize_features(settings)
    train_and_promote(settings, "popularity", epochs=1)  # cheap; the labelling is model-agnostic
    return settings


def test_recent_items_all_unknown_to_the_model_are_a_labelled_popularity_fallback(served):
    from features.push import push_user_events

    user_id = "shopper-of-new-items"
    unknown_items = ["brand-new-item-a", "brand-new-item-b"]
    with TestClient(create_app(served)) as client:
        service = client.app.state.service
        model, _ = service._state
        assert not model.encode_history(unknown_items)  # the premise: none is in the vocabulary
        push_user_events(served, [{"user_id": user_id, "item_id": item} for item in unknown_items],
                         store=service.feature_store)

        single = client.get(f"/recommendations/{user_id}", params={"k": 5}).json()
        assert single["recent_item_ids"] == unknown_items  # a known user: the store has their items
        assert single["fallback"] is True
        assert single["fallback_reason"] == "no_known_items"
        assert single["source"] == "popularity"
        assert [i["item_id"] for i in single["items"]] == model.popular_item_ids[:5]
        assert all(i["score"] is None for i in single["items"])

        batch = client.post("/recommendations/batch", json={"user_ids": [user_id, "u000"], "k": 5}).json()
        unknown_answer, known_answer = batch["results"]
        assert (unknown_answer["fallback"], unknown_answer["fallback_reason"], unknown_answer["source"]) == (
            True, "no_known_items", "popularity")
        assert (known_answer["fallback"], known_answer["source"]) == (False, "model")

        metrics = client.get("/metrics").text
        counted = next(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith('recsys_fallbacks_total{reason="no_known_items"}'))
        assert counted == 2  # the single answer and the batch's
