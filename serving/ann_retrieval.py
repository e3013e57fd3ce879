"""Catalog-scale answers: candidates from the champion's index, then exact scores and filters.

Scoring every item costs a matrix-vector product and a top-k over the whole catalog per
request; above ``RECSYS_ANN_MIN_CATALOG`` items that no longer fits a request's budget. A
champion whose model scores with item embeddings (``score == user vector . item row``) and
whose version carries the index built at promotion (:mod:`registry.ann_index`) is served by an
:class:`AnnRecommender`: the user's vector from the model's own forward pass, the
``RECSYS_ANN_CANDIDATES`` nearest items by inner product from the index (more when the filters
need room), those scored exactly with the checkpoint's embeddings, then the model's own
filters (padding, seen items, ``exclude``) and top-k. Everything else (popularity fallback,
vocabulary, evaluation) is the wrapped model's.

The wrapper is what :class:`serving.champion.Champion` swaps in as the model, so the index is
swapped with its version in the same assignment. :func:`with_index` never raises: a small
catalog, a model without embeddings, a missing, damaged or foreign index, or a check that fails
keeps exact scoring, with the reason logged and shown in ``/health`` (``retrieval_reason``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from core.settings import Settings

log = logging.getLogger(__name__)

EXACT, ANN = "exact", "ann"
# Stored vectors compared with the checkpoint's at load: the index must hold these embeddings.
CHECKED_ROWS = 32


class AnnRecommender:
    """A loaded model (``registry.versions.Recommender``) whose rankings come from its index."""

    retrieval = ANN

    def __init__(self, base, index, candidates: int, breadth: int):
        self.base = base
        self.index = index
        self.candidates = max(1, int(candidates))
        self.breadth = max(1, int(breadth))
        self._table = base.item_embeddings.numpy()  # [N + 1, D], the rows the model scores with

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes this class lacks: the model's own (name, vocabulary, ...).
        return getattr(self.base, name)

    def recommend(self, recent_item_ids: Sequence[str], k: int = 10,
                  exclude: Iterable[str] = ()) -> list[tuple[str, float]]:
        """As the model's ``recommend``, over the index's candidates."""
        if k <= 0:
            return []
        encoded = self.base.encode_history(recent_item_ids)
        if not encoded:  # the model's popularity answer
            return self.base.recommend(recent_item_ids, k, exclude)
        return self._rank([recent_item_ids], [encoded], [exclude], k)[0]

    def recommend_many(self, histories: Sequence[Sequence[str]], k: int = 10,
                       batch_size: int = 256) -> list[list[tuple[str, float]]]:
        """As the model's ``recommend_many``: one forward and one index search per batch."""
        out: list[list[tuple[str, float]]] = [[] for _ in histories]
        if k <= 0:
            return out
        encoded = [self.base.encode_history(h) for h in histories]
        known = [i for i, e in enumerate(encoded) if e]
        for i, history in enumerate(histories):
            if not encoded[i]:
                out[i] = self.base.recommend(history, k)
        for start in range(0, len(known), batch_size):
            rows = known[start:start + batch_size]
            ranked = self._rank([histories[i] for i in rows], [encoded[i] for i in rows], [()] * len(rows), k)
            for i, items in zip(rows, ranked):
                out[i] = items
        return out

    def _rank(self, histories: Sequence[Sequence[str]], encoded: Sequence[list[int]],
              excludes: Sequence[Iterable[str]], k: int) -> list[list[tuple[str, float]]]:
        # numpy, not torch, past the forward: a few hundred candidates per user, where each
        # torch call's fixed cost would outweigh its arithmetic.
        base = self.base
        vectors = base.user_vectors(base.input_batch(encoded)).numpy()  # [B, D]
        excluded = [base.excluded_indices(h, e) for h, e in zip(histories, excludes)]
        # Room for the filtered items, so k answers remain after filtering.
        n = max(self.candidates, k + max(len(e) for e in excluded))
        found = self.index.search(vectors, n, self.breadth)  # [B, C]
        rows = self._table[np.maximum(found, 0)]  # [B, C, D]
        # einsum's own loop, not BLAS: a BLAS call this small may wake its thread pool.
        scores = np.einsum("bcd,bd->bc", rows, vectors).astype(np.float64)  # [B, C]
        scores[found <= 0] = -np.inf  # padding, or fewer than C found
        for r, idx in enumerate(excluded):
            if idx:  # a set lookup per candidate: cheaper than np.isin's sorting at this size
                drop = set(idx)
                scores[r, [c for c, j in enumerate(found[r].tolist()) if j in drop]] = -np.inf
        top = min(k, scores.shape[1])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :top]  # [B, k]
        top_scores = np.take_along_axis(scores, order, axis=1).tolist()  # [B, k]
        top_idx = np.take_along_axis(found, order, axis=1).tolist()  # [B, k]
        item = base.vocab.item
        return [[(item(j), v) for v, j in zip(s, i) if v != -np.inf] for s, i in zip(top_scores, top_idx)]

    def smoke_test(self, k: int = 10) -> None:
        """The model's own smoke checks (finite, distinct answers), run on this path."""
        type(self.base).smoke_test(self, k)


def _check_against_model(model, index) -> None:
    """Raise AnnIndexUnusable unless the index holds this model's embeddings and the model's
    scores are user vector . item row (the identity the index's inner product relies on)."""
    from registry.ann_index import AnnIndexUnusable

    table = model.item_embeddings  # [N + 1, D]
    if (index.n_items, index.dim) != (table.shape[0] - 1, table.shape[1]):
        raise AnnIndexUnusable(f"the retrieval index holds {index.n_items} x {index.dim} vectors, "
                               f"the model {table.shape[0] - 1} x {table.shape[1]}")
    generator = torch.Generator().manual_seed(0)
    sample = torch.randint(1, table.shape[0], (CHECKED_ROWS,), generator=generator).tolist()
    if any(not torch.equal(torch.from_numpy(index.vector(i)), table[i]) for i in sample):
        raise AnnIndexUnusable("the retrieval index's vectors are not this checkpoint's item embeddings")
    encoded = model.encode_history(model.popular_item_ids[:3])
    x = model.input_batch([encoded])  # [1, L]
    exact = model.score(x)[0, 1:].float().cpu()  # [N]
    via = table[1:] @ model.user_vectors(x)[0]  # [N]
    tolerance = 1e-4 * max(1.0, float(exact.abs().max()))
    if not torch.allclose(via, exact, rtol=1e-4, atol=tolerance):
        raise AnnIndexUnusable(f"{model.model_name}'s scores are not an inner product of its user vector "
                               "and item embeddings: its index cannot rank its items")


def with_index(settings: Settings, model, folder: Path, checkpoint_sha256: str) -> tuple[Any, dict[str, Any]]:
    """``(model to serve, {"mode": "ann" | "exact", "reason": why exact or None})`` for the
    verified checkpoint ``checkpoint_sha256`` loaded as ``model`` from ``folder``."""
    from registry.ann_index import AnnIndex, AnnIndexUnusable

    n_items = len(model.item_ids)
    if n_items < settings.ann_min_catalog:
        return model, {"mode": EXACT, "reason": f"catalog of {n_items} items, below RECSYS_ANN_MIN_CATALOG "
                                                f"({settings.ann_min_catalog})"}
    if getattr(model, "item_embeddings", None) is None:
        reason = f"{model.model_name} scores without item embeddings"
        log.info("exact scoring for %s: %s", model.model_name, reason)
        return model, {"mode": EXACT, "reason": reason}
    try:
        index = AnnIndex.load(folder, settings, checkpoint_sha256)
        _check_against_model(model, index)
        if settings.serving_torch_threads:
            import faiss

            faiss.omp_set_num_threads(settings.serving_torch_threads)  # a batch's search, as its forward
        served = AnnRecommender(model, index, settings.ann_candidates, settings.ann_ef_search)
        served.smoke_test()
    except AnnIndexUnusable as exc:
        log.warning("exact scoring of %d items for %s: %s", n_items, model.model_name, exc)
        return model, {"mode": EXACT, "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - whatever broke, exact scoring still answers
        log.exception("exact scoring of %d items for %s: the retrieval index failed", n_items, model.model_name)
        return model, {"mode": EXACT, "reason": f"the retrieval index cannot be used ({type(exc).__name__})"}
    log.info("retrieval index of %d items for %s: %d candidates per request", n_items, model.model_name,
             served.candidates)
    return served, {"mode": ANN, "reason": None}
