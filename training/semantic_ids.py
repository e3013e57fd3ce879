"""Semantic ids for generative retrieval (TIGER, Rajput et al., NeurIPS 2023): every catalog item
gets a short tuple of codes, so that items that are alike share a code prefix.

TIGER embeds each item's text with a sentence encoder and quantises the embeddings with an
RQ-VAE. Here the item vector is built from what the data sets have, and quantised with residual
k-means (RQ-KMeans), which needs no training of its own:

* content: the item's attribute ids (category, brand, ...) as a TF-IDF weighted multi-hot row,
  projected to ``attribute_dim`` dimensions by truncated SVD (LSA), so shared rare attributes weigh
  more than shared common ones;
* behaviour: an item-item co-visitation matrix of the training sequences (pairs at most
  ``cooc_window`` steps apart, weighted by 1 / distance), symmetrically degree-normalised and
  factorised by truncated SVD into ``cooc_dim`` dimensions (rows ``U * sqrt(S)``);
* each block is L2-normalised per item and the two are concatenated, so neither dominates by
  scale. An item with no attributes (or never seen in training) has a zero block there.

``levels`` rounds of k-means with ``codebook_size`` centroids, each on the residual the previous
rounds left, give ``levels`` codes per item. Items whose code tuples coincide are told apart by
one more code, ``0, 1, 2, ...`` within the group, most trained-on item first (TIGER's collision
token).
Only training data is read (the training sequences and the attribute table), so the ids never
depend on validation or test targets. Deterministic for a seed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.utils.extmath import randomized_svd

from training.item_side import ItemAttributes


@dataclass(frozen=True)
class SemanticIdConfig:
    codebook_size: int = 256  # centroids per level (TIGER: 256)
    levels: int = 3  # k-means levels; the collision code comes on top
    attribute_dim: int = 32  # LSA dimensions of the attribute block
    cooc_dim: int = 32  # SVD dimensions of the co-visitation block
    cooc_window: int = 3  # pairs at most this many steps apart co-occur
    kmeans_iters: int = 100  # Lloyd iterations per level (upper bound)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.codebook_size < 2 or self.levels < 1:
            raise ValueError("codebook_size must be >= 2 and levels >= 1")
        if self.attribute_dim < 0 or self.cooc_dim < 0 or self.attribute_dim + self.cooc_dim == 0:
            raise ValueError("attribute_dim and cooc_dim are >= 0, not both 0")
        if self.cooc_window < 1:
            raise ValueError("cooc_window must be >= 1")


@dataclass(frozen=True)
class SemanticIds:
    codes: torch.Tensor  # [N + 1, levels + 1] long; row 0 (padding) all 0; last column: collision code
    max_group: int  # items in the largest group sharing the first ``levels`` codes

    @property
    def collision_share(self) -> float:
        """Share of items whose ``levels`` codes alone do not identify them."""
        rows = self.codes[1:]
        if rows.shape[0] == 0:
            return 0.0
        _, inverse, counts = torch.unique(rows[:, :-1], dim=0, return_inverse=True, return_counts=True)
        return float((counts[inverse] > 1).float().mean())


def cooccurrence_matrix(sequences: Sequence[Sequence[int]], n_items: int, window: int) -> sp.csr_matrix:
    """``[N + 1, N + 1]`` symmetric sparse co-visitation weights: every pair of items at most
    ``window`` steps apart in a training sequence adds ``1 / distance``; an item paired with
    itself (a repeat) adds nothing."""
    flat = np.fromiter((i for seq in sequences for i in seq), dtype=np.int64)
    owner = np.repeat(np.arange(len(sequences)), [len(seq) for seq in sequences])
    rows, cols, weights = [], [], []
    for distance in range(1, window + 1):
        a, b = flat[:-distance], flat[distance:]
        keep = (owner[:-distance] == owner[distance:]) & (a != b)
        rows.append(a[keep])
        cols.append(b[keep])
        weights.append(np.full(int(keep.sum()), 1.0 / distance))
    r, c, w = (np.concatenate(parts) if parts else np.zeros(0) for parts in (rows, cols, weights))
    upper = sp.coo_matrix((w, (r, c)), shape=(n_items + 1, n_items + 1)).tocsr()
    return (upper + upper.T).tocsr()


def _l2_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def behaviour_block(sequences: Sequence[Sequence[int]], n_items: int, dim: int, window: int,
                    seed: int) -> np.ndarray:
    """``[N + 1, dim]`` co-visitation embeddings (zero rows for items never co-visited)."""
    cooc = cooccurrence_matrix(sequences, n_items, window)
    degree = np.asarray(cooc.sum(axis=1)).ravel()  # [N + 1]
    scale = sp.diags(np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0))
    normalised = scale @ cooc @ scale  # D^-1/2 C D^-1/2: popular items do not dominate
    rank = min(dim, n_items - 1)
    out = np.zeros((n_items + 1, dim))
    if rank < 1 or normalised.nnz == 0:
        return out
    u, s, _ = randomized_svd(normalised, rank, random_state=seed)
    out[:, :rank] = u * np.sqrt(s)
    return _l2_rows(out)


def content_block(attributes: ItemAttributes | None, n_items: int, dim: int, seed: int) -> np.ndarray:
    """``[N + 1, dim]`` LSA of the TF-IDF attribute rows (zero rows without attributes)."""
    out = np.zeros((n_items + 1, dim))
    if attributes is None or attributes.n_attributes == 0 or dim == 0:
        return out
    table = attributes.table.numpy()  # [N + 1, A]
    item, slot = np.nonzero(table)
    counts = sp.csr_matrix((np.ones(len(item)), (item, table[item, slot])),
                           shape=(n_items + 1, attributes.n_attributes + 1))
    tfidf = TfidfTransformer().fit_transform(counts)  # rows L2-normalised
    rank = min(dim, attributes.n_attributes)  # < the n_attributes + 1 columns, as SVD needs
    out[:, :rank] = TruncatedSVD(rank, random_state=seed).fit_transform(tfidf)
    return _l2_rows(out)


def item_vectors(sequences: Sequence[Sequence[int]], n_items: int, attributes: ItemAttributes | None,
                 config: SemanticIdConfig) -> np.ndarray:
    """``[N + 1, attribute_dim + cooc_dim]``: the content block beside the behaviour block."""
    blocks = [content_block(attributes, n_items, config.attribute_dim, config.seed),
              behaviour_block(sequences, n_items, config.cooc_dim, config.cooc_window, config.seed)]
    return np.concatenate(blocks, axis=1)


def residual_kmeans(vectors: np.ndarray, codebook_size: int, levels: int, seed: int,
                    max_iter: int = 100) -> np.ndarray:
    """``[M, levels]`` codes: level l clusters what levels < l left unexplained."""
    residual = vectors.astype(np.float64, copy=True)
    codes = np.zeros((len(vectors), levels), dtype=np.int64)
    for level in range(levels):
        k = min(codebook_size, len(np.unique(residual.round(12), axis=0)))
        if k < 2:  # nothing left to tell apart: the collision code does the rest
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            km = KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed + level).fit(residual)
        codes[:, level] = km.labels_
        residual -= km.cluster_centers_[km.labels_]
    return codes


def resolve_collisions(codes: np.ndarray, counts: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Append a code numbering the items of each group of equal code tuples ``0, 1, ...``: the
    most frequent (``counts``, training interactions per row) first, then in row order, so that
    the code a decoder most often has to emit is the same one in every group.
    Returns (``[M, levels + 1]``, size of the largest group)."""
    m = len(codes)
    if m == 0:
        return np.zeros((0, codes.shape[1] + 1), dtype=np.int64), 0
    counts = np.zeros(m) if counts is None else np.asarray(counts, dtype=np.float64)
    # np.lexsort sorts by its last key first: the code columns, then popularity, then row.
    order = np.lexsort((np.arange(m), -counts, *codes.T[::-1]))
    ordered = codes[order]
    starts = np.ones(m, dtype=bool)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(m), 0))
    rank = np.empty(m, dtype=np.int64)
    rank[order] = np.arange(m) - group_start
    return np.concatenate([codes, rank[:, None]], axis=1), int(rank.max()) + 1


def semantic_ids(sequences: Sequence[Sequence[int]], n_items: int, attributes: ItemAttributes | None = None,
                 config: SemanticIdConfig | None = None) -> SemanticIds:
    """Codes ``[N + 1, levels + 1]`` for the items ``1..n_items`` of a split's vocabulary from its
    training ``sequences`` and (optionally) its attribute table; row 0 is padding."""
    config = config or SemanticIdConfig()
    if n_items < 1:
        raise ValueError("an empty catalog has no semantic ids")
    vectors = item_vectors(sequences, n_items, attributes, config)[1:]  # [N, F], padding row dropped
    counts = np.bincount(np.fromiter((i for seq in sequences for i in seq), dtype=np.int64),
                         minlength=n_items + 1)[1:n_items + 1]  # [N]
    codes, max_group = resolve_collisions(
        residual_kmeans(vectors, config.codebook_size, config.levels, config.seed, config.kmeans_iters), counts)
    out = torch.zeros(n_items + 1, config.levels + 1, dtype=torch.long)  # [N + 1, levels + 1]
    out[1:] = torch.from_numpy(codes)
    return SemanticIds(codes=out, max_group=max_group)
