"""Serving from the retrieval index: the same answers as exact scoring when the candidates cover
the catalog, exact scoring (with the reason logged) whenever the index cannot be trusted, and
the index loaded and swapped with its model version."""

from __future__ import annotations

import logging
import shutil

import pytest

from core.settings import Settings
from registry.ann_index import INDEX_FILE, META_FILE, AnnIndex
from serving.ann_retrieval import ANN, EXACT, AnnRecommender, with_index
from tests.registry.ann_versions import artifact_folder, promote, register_checkpoint
from tests.registry_fixtures import registry_template, start_from_template  # noqa: F401 - fixture

N_ITEMS = 300


def recommender(n_items: int = N_ITEMS, seed: int = 0, model_name: str = "sasrec", **kw):
    from benchmarks.synthetic_catalog import synthetic_checkpoint
    from training.recommender import Recommender

    return Recommender(synthetic_checkpoint(n_items, dim=16, seed=seed, model_name=model_name, **kw))


def same_ranking(got, want) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("model_name,extra", [
    ("sasrec", {"n_heads": 2}), ("sasrec", {"n_heads": 2, "exclude_seen": False}),
    ("bert4rec", {"n_heads": 2}), ("gru4rec", {}), ("hstu", {"n_heads": 2}),
])
def test_answers_equal_exact_scoring_when_the_candidates_cover_the_catalog(model_name, extra):
    from benchmarks.synthetic_catalog import histories

    model = recommender(model_name=model_name, **extra)
    served = AnnRecommender(model, AnnIndex.build(model.item_embeddings.numpy()), candidates=N_ITEMS, breadth=64)
    users = histories(40, N_ITEMS, seed=3)
    for history in users:
        same_ranking(served.recommend(history, 10), model.recommend(history, 10))
    excluded = [users[0][-1], model.recommend(users[0], 1)[0][0]]
    same_ranking(served.recommend(users[0], 10, exclude=excluded), model.recommend(users[0], 10, exclude=excluded))
    assert not {i for i, _ in served.recommend(users[0], 10, exclude=excluded)} & set(excluded)
    if model.exclude_seen:
        assert not {i for i, _ in served.recommend(users[1], 20)} & set(users[1])
    batch = users[:12] + [["unknown_item"]]
    for got, want in zip(served.recommend_many(batch, 10, batch_size=5), model.recommend_many(batch, 10)):
        same_ranking(got, want)
    assert served.recommend(["unknown_item"], 5) == model.recommend(["unknown_item"], 5)  # popularity
    assert served.model_name == model_name and served.popular_item_ids == model.popular_item_ids
    served.smoke_test()


def test_exact_scoring_with_a_logged_reason_when_the_index_cannot_serve(tmp_path, caplog):
    from benchmarks.synthetic_catalog import synthetic_checkpoint
    from training.recommender import Recommender

    settings = Settings(home=tmp_path / "home", ann_min_catalog=100, decision_signing_key="k")
    model = recommender(n_items=N_ITEMS)
    AnnIndex.build(model.item_embeddings.numpy()).save(tmp_path / "good", settings, "a" * 64)

    def served(folder, digest="a" * 64, use=model, min_catalog=100):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="serving.ann_retrieval"):
            out, retrieval = with_index(settings.replace(ann_min_catalog=min_catalog), use, folder, digest)
        return out, retrieval

    out, retrieval = served(tmp_path / "good")
    assert isinstance(out, AnnRecommender) and retrieval == {"mode": ANN, "reason": None}

    def exact(folder, why, **kw):
        out, retrieval = served(folder, **kw)
        assert out is kw.get("use", model) and retrieval["mode"] == EXACT and why in retrieval["reason"], retrieval
        assert why in caplog.text or retrieval["reason"].startswith("catalog of"), caplog.text
        assert out.recommend(["item_0000001"], 5)  # still answers, exactly
        return retrieval

    exact(tmp_path / "good", "below RECSYS_ANN_MIN_CATALOG", min_catalog=N_ITEMS + 1)
    exact(tmp_path / "missing", "no retrieval index")
    exact(tmp_path / "good", "another checkpoint", digest="b" * 64)
    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "good", damaged)
    (damaged / INDEX_FILE).write_bytes((damaged / INDEX_FILE).read_bytes()[:1000])
    exact(damaged, "damaged or replaced")
    (damaged / META_FILE).write_bytes(b"\x00garbage")
    exact(damaged, "unreadable")
    other = recommender(n_items=N_ITEMS, seed=5)  # same shape, other embeddings
    exact(tmp_path / "good", "not this checkpoint's item embeddings", use=other)

    from training.models import build_model, make_config

    checkpoint = synthetic_checkpoint(N_ITEMS, dim=16, n_heads=2)
    config = make_config("popularity", n_items=N_ITEMS)
    popularity = Recommender(checkpoint | {"model_name": "popularity", "config": {"n_items": N_ITEMS},
                                           "state_dict": build_model("popularity", config).state_dict()})
    exact(tmp_path / "good", "scores without item embeddings", use=popularity)


def test_the_index_is_loaded_and_swapped_with_its_model_version(tmp_path, registry_template):  # noqa: F811
    from benchmarks.synthetic_catalog import histories, synthetic_checkpoint
    from serving.champion import Champion
    from serving.metrics import ServingMetrics

    settings = start_from_template(Settings(
        home=tmp_path / "recsys", ann_min_catalog=1_000, ann_candidates=50, champion_poll_seconds=0,
        decision_signing_key="test-signing-key"), registry_template)
    v1 = register_checkpoint(settings, synthetic_checkpoint(1_200, dim=16, n_heads=2, seed=1), tmp_path / "ck")
    v2 = register_checkpoint(settings, synthetic_checkpoint(1_200, dim=16, n_heads=2, seed=2), tmp_path / "ck")
    promote(settings, v1)
    champion = Champion(settings, ServingMetrics())
    assert champion.reload()["changed"]
    first, version = champion.state
    assert version == v1 and isinstance(first, AnnRecommender), champion.health
    assert champion.health["retrieval"] == ANN and champion.health["retrieval_reason"] is None
    history = histories(1, 1_200, seed=4)[0]
    assert first.recommend(history, 10)

    promote(settings, v2)
    assert champion.reload()["changed"]
    second, version = champion.state
    assert version == v2 and isinstance(second, AnnRecommender) and second.index is not first.index
    assert second.index.meta["checkpoint_sha256"] != first.index.meta["checkpoint_sha256"]
    assert second.recommend(history, 10) != first.recommend(history, 10)
    # The last good copy keeps the index with the checkpoint, and serves with it.
    kept = settings.last_good_dir
    assert (kept / INDEX_FILE).is_file() and (kept / META_FILE).is_file()
    restarted = Champion(settings, ServingMetrics())
    restarted._serve_last_good("registry unreachable (test)")
    assert isinstance(restarted.state[0], AnnRecommender) and restarted.state[1] == v2
    assert restarted.health["status"] == "degraded" and restarted.health["retrieval"] == ANN

    # A damaged index in the registry: the version serves by exact scoring and /health says why.
    v3 = register_checkpoint(settings, synthetic_checkpoint(1_200, dim=16, n_heads=2, seed=3), tmp_path / "ck")
    promote(settings, v3)
    index_file = artifact_folder(settings, v3) / INDEX_FILE
    index_file.write_bytes(index_file.read_bytes()[:-10])
    assert champion.reload()["changed"]
    third, version = champion.state
    assert version == v3 and not isinstance(third, AnnRecommender)
    assert champion.health["retrieval"] == EXACT and "damaged" in champion.health["retrieval_reason"]
    assert third.recommend(history, 10)
