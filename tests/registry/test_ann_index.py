"""The retrieval index: its recall against exact scoring, its signed binding to one checkpoint,
and the promotion step that builds it beside the version's checkpoint."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from core.settings import Settings
from registry.ann_index import INDEX_FILE, META_FILE, AnnIndex, AnnIndexUnusable
from tests.registry.ann_versions import artifact_folder, index_meta, promote, register_checkpoint
from tests.registry_fixtures import registry_template, start_from_template  # noqa: F401 - fixture

SHA = "a" * 64


def clustered(n_items: int, dim: int = 64, seed: int = 0):
    from benchmarks.synthetic_catalog import clustered_embeddings

    return clustered_embeddings(n_items, dim, n_clusters=max(10, n_items // 500), seed=seed).numpy()


@pytest.mark.slow
def test_recall_at_10_against_exact_scoring_on_a_clustered_catalog():
    """50,000 clustered items, queries near the clusters (as a trained model's user vectors):
    the index's candidates, scored exactly, give the exact top 10 at least 98 % of the time."""
    settings = Settings()
    table = clustered(50_000)  # [N + 1, D]
    started = time.perf_counter()
    index = AnnIndex.build(table)
    build_s = time.perf_counter() - started
    rng = np.random.default_rng(1)
    anchors = rng.integers(1, table.shape[0], 300)
    queries = (table[anchors] + 0.5 * table[1:].std() * rng.standard_normal((300, table.shape[1]))).astype(np.float32)
    exact = np.argsort(-(queries @ table[1:].T), axis=1)[:, :10] + 1  # [Q, 10]
    found = index.search(queries, settings.ann_candidates, settings.ann_ef_search)  # [Q, C]
    rescored = np.take_along_axis(found, np.argsort(-np.einsum("qd,qcd->qc", queries, table[found]), axis=1), 1)
    recall = np.mean([len(set(a[:10]) & set(b)) / 10 for a, b in zip(rescored, exact)])
    assert recall >= 0.98, f"recall@10 {recall:.4f} (build {build_s:.1f} s)"
    assert (found >= 1).all() and (found <= 50_000).all()


def test_a_saved_index_loads_only_for_its_checkpoint_and_unaltered(tmp_path):
    settings = Settings(home=tmp_path / "home", decision_signing_key="k1")
    table = clustered(2_000, dim=16)
    index = AnnIndex.build(table)
    queries = table[[5, 50, 500]]
    before = index.search(queries, 20, 64)
    index.save(tmp_path / "v1", settings, SHA)

    loaded = AnnIndex.load(tmp_path / "v1", settings, SHA)
    assert (loaded.search(queries, 20, 64) == before).all()
    assert np.array_equal(loaded.vector(7), table[7])
    assert loaded.meta["checkpoint_sha256"] == SHA and loaded.meta["n_items"] == 2_000

    def refused(folder, why, settings=settings, digest=SHA):
        with pytest.raises(AnnIndexUnusable, match=why):
            AnnIndex.load(folder, settings, digest)

    refused(tmp_path / "v1", "another checkpoint", digest="b" * 64)
    refused(tmp_path / "v1", "signature", settings=settings.replace(decision_signing_key="k2"))
    refused(tmp_path / "nothing", "no retrieval index")

    damaged = tmp_path / "damaged"
    index.save(damaged, settings, SHA)
    data = bytearray((damaged / INDEX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / INDEX_FILE).write_bytes(bytes(data))
    refused(damaged, "damaged or replaced")

    edited = tmp_path / "edited"
    index.save(edited, settings, SHA)
    signed = json.loads((edited / META_FILE).read_text())
    signed["meta"]["checkpoint_sha256"] = "b" * 64
    (edited / META_FILE).write_text(json.dumps(signed))
    refused(edited, "signature", digest="b" * 64)

    (edited / META_FILE).write_text("{not json")
    refused(edited, "unreadable")


def test_promotion_builds_the_index_beside_the_checkpoint(tmp_path, registry_template):  # noqa: F811
    from benchmarks.synthetic_catalog import synthetic_checkpoint
    from registry.decision_record import read_record
    from training.tracking import mlflow_client

    settings = start_from_template(Settings(home=tmp_path / "recsys", ann_min_catalog=1_000), registry_template)
    version = register_checkpoint(settings, synthetic_checkpoint(1_500, dim=16, n_heads=2), tmp_path / "ck")
    decision = promote(settings, version)

    built = decision["retrieval_index"]
    assert built["built"] and built["n_items"] == 1_500 and built["dim"] == 16, built
    folder = artifact_folder(settings, version)
    meta = index_meta(folder)
    record = read_record(settings, mlflow_client(settings), version)
    assert meta["checkpoint_sha256"] == record["artifact_sha256"]
    assert AnnIndex.load(folder, settings, record["artifact_sha256"]).n_items == 1_500

    # Below the threshold no index is built, and the decision file says why.
    small = register_checkpoint(settings, synthetic_checkpoint(500, dim=16, n_heads=2, seed=1), tmp_path / "ck")
    skipped = promote(settings, small)["retrieval_index"]
    assert not skipped["built"] and "below RECSYS_ANN_MIN_CATALOG" in skipped["reason"]
    assert not (artifact_folder(settings, small) / INDEX_FILE).exists()
