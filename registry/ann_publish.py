"""Build a promoted version's retrieval index and store it beside its checkpoint.

Called by :func:`registry.promotion.apply_decision` before the champion alias moves, so serving
never finds the alias on a large-catalog version whose index is still being built. The index is
built from the very checkpoint the decision was made on (its SHA-256 is checked first) and
uploaded into the version's own artifact folder, where
:func:`registry.versions.download_registered_checkpoint` fetches it with the checkpoint.

Never fatal: a version without an index still serves (serving scores every item and says why),
so a failed build is logged and reported in the decision file, and the promotion goes on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from core.settings import Settings
from registry.ann_index import AnnConfig, AnnIndex, AnnIndexUnusable

log = logging.getLogger(__name__)


def publish_index(settings: Settings, client, version: str, checkpoint_sha256: str,
                  config: AnnConfig = AnnConfig()) -> dict[str, Any]:
    """Build and store ``version``'s index when its catalog reaches ``ann_min_catalog`` and the
    model scores with item embeddings. Returns what happened (``built``, ``reason``, figures)."""
    from registry.decision_record import artifact_digest
    from registry.versions import download_registered_checkpoint, load_recommender

    checkpoint = download_registered_checkpoint(settings, version, client)
    digest = artifact_digest(checkpoint)
    if digest != checkpoint_sha256:
        return {"built": False, "reason": f"the checkpoint changed since the decision ({digest[:12]})"}
    model = load_recommender(checkpoint)
    n_items = len(model.item_ids)
    if n_items < settings.ann_min_catalog:
        return {"built": False, "reason": f"catalog of {n_items} items, below RECSYS_ANN_MIN_CATALOG "
                                          f"({settings.ann_min_catalog}): serving scores every item"}
    embeddings = model.item_embeddings
    if embeddings is None:
        return {"built": False, "reason": f"{model.model_name} scores without item embeddings"}
    try:
        existing = AnnIndex.load(checkpoint.parent, settings, checkpoint_sha256)
        return {"built": False, "reason": "already built for this checkpoint", **_figures(existing)}
    except AnnIndexUnusable:
        pass  # none yet (or a broken one): build
    index = AnnIndex.build(embeddings.numpy(), config)
    del model, embeddings  # the index holds its own copy of the vectors
    settings.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="ann-", dir=settings.models_dir))
    try:
        paths = index.save(staging, settings, checkpoint_sha256)
        _upload(settings, client, version, paths)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("retrieval index of v%s: %d items, %.1f s, %.1f MiB", version, index.n_items,
             index.meta["build_seconds"], index.meta["index_bytes"] / 2**20)
    return {"built": True, "reason": None, **_figures(index)}


def _figures(index: AnnIndex) -> dict[str, Any]:
    meta = index.meta
    return {key: meta.get(key) for key in ("n_items", "dim", "links", "build_search", "build_seconds",
                                           "index_bytes", "index_sha256")}


def _upload(settings: Settings, client, version: str, paths: list[Path]) -> None:
    """Into the version's artifact folder, the index first: its description, written last, is
    what makes a reader consider it."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    location = client.get_model_version_download_uri(settings.registered_model_name, str(version))
    repository = get_artifact_repository(location, tracking_uri=settings.mlflow_uri)
    for path in paths:
        repository.log_artifact(str(path))


def try_publish_index(settings: Settings, client, version: str, checkpoint_sha256: str) -> dict[str, Any]:
    """:func:`publish_index`, its failure logged and returned instead of raised."""
    try:
        return publish_index(settings, client, version, checkpoint_sha256)
    except Exception as exc:  # noqa: BLE001 - the version still serves, by exact scoring
        log.exception("the retrieval index of v%s was not built", version)
        return {"built": False, "reason": f"build failed: {type(exc).__name__}: {exc}"}
