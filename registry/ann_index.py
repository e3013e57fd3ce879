"""A model version's approximate nearest-neighbour index over its item embeddings.

Above a catalog size (``RECSYS_ANN_MIN_CATALOG``) scoring every item for every request costs
more than a request may take, so serving takes its candidates from this index and scores only
those exactly (:mod:`serving.ann_retrieval`). The index is built once, at promotion, from the
checkpoint the decision was made on (:mod:`registry.ann_publish`), and stored beside that
checkpoint in the version's artifact folder: it travels, is kept and is swapped with the version.

Library: faiss-cpu (``IndexHNSWFlat``, inner product). Chosen over usearch and hnswlib because
it ships binary wheels for every CPython (hnswlib publishes only a source archive, last released
in 2023, so it needs a compiler wherever it is installed), it is the reference library for this
search and actively released, the same package also holds exact indexes to compare with, and
its search releases the interpreter lock (a batch thread searching does not stall the event
loop). An HNSW graph needs no training pass (no clustering to redo per version) and a batch-1
query visits a few hundred items instead of the catalog; the full vectors kept in the graph let
serving check the index against the checkpoint's own embeddings.

Trust. A swapped index could only change which items are candidates (they are scored exactly
by the model afterwards), but that is enough to choose what users see, so an index is used only
when it is the one the pipeline built for this very checkpoint: ``ann_index.json`` holds the
index file's SHA-256 and the checkpoint's, signed with the decision records' key
(:func:`registry.decision_record.signing_key`). The file is hashed before faiss parses it, so a
damaged file is refused, never read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from core.settings import Settings

INDEX_FILE = "ann_index.faiss"
META_FILE = "ann_index.json"
FILES = (INDEX_FILE, META_FILE)
FORMAT = 1
KIND = "faiss.IndexHNSWFlat/inner_product"


class AnnIndexUnusable(RuntimeError):
    """There is no index, or it is not the one built for this checkpoint; the message says why
    (one line, shown in ``/health``; paths and library messages go to the log)."""


@dataclass(frozen=True)
class AnnConfig:
    """How the graph is built: more links per item and a wider search while inserting give a
    better recall for a bigger index and a longer build."""

    links: int = 32  # HNSW's M: neighbours per item on the upper levels, twice that on level 0
    build_search: int = 100  # efConstruction


@contextmanager
def _faiss_threads(n: int | None) -> Iterator[None]:
    """faiss's OpenMP thread count is process-wide: set for one call, then put back."""
    import faiss

    before = faiss.omp_get_max_threads()
    if n:
        faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _canonical(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def _sign(settings: Settings, meta: dict[str, Any], *, create_key: bool) -> str:
    from registry.decision_record import signing_key

    key = signing_key(settings, create=create_key)
    return hmac.new(key, _canonical(meta).encode(), hashlib.sha256).hexdigest()


class AnnIndex:
    """Items ``1..N`` of a vocabulary (row 0, padding, is never a candidate) in an HNSW graph."""

    def __init__(self, index, meta: dict[str, Any]):
        self._index = index
        self.meta = meta

    @property
    def n_items(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @classmethod
    def build(cls, embeddings: np.ndarray, config: AnnConfig = AnnConfig(),
              threads: int | None = None) -> "AnnIndex":
        """``embeddings [N + 1, D]`` (row 0 = padding) -> the index of rows ``1..N``; ``threads``:
        faiss's OpenMP threads while inserting (None: as many as the machine has)."""
        import faiss

        table = np.ascontiguousarray(embeddings[1:], dtype=np.float32)  # [N, D]
        if table.ndim != 2 or table.shape[0] == 0:
            raise ValueError(f"need item embeddings [N + 1, D] with N >= 1, got {embeddings.shape}")
        started = time.perf_counter()
        index = faiss.IndexHNSWFlat(table.shape[1], config.links, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.build_search
        with _faiss_threads(threads):
            index.add(table)
        meta = {"format": FORMAT, "kind": KIND, "faiss": faiss.__version__, "n_items": int(table.shape[0]),
                "dim": int(table.shape[1]), **asdict(config),
                "build_seconds": round(time.perf_counter() - started, 3)}
        return cls(index, meta)

    def search(self, vectors: np.ndarray, n: int, breadth: int) -> np.ndarray:
        """``vectors [B, D]`` -> ``[B, n]`` vocabulary indices of the best inner products, best
        first; -1 where the graph found fewer. ``breadth``: efSearch (raised to ``n``)."""
        import faiss

        n = min(n, self.n_items)
        queries = np.ascontiguousarray(vectors, dtype=np.float32)  # [B, D]
        params = faiss.SearchParametersHNSW(efSearch=max(breadth, n))
        _, labels = self._index.search(queries, n, params=params)  # [B, n], item row - 1
        return np.where(labels >= 0, labels + 1, -1)  # [B, n]

    def vector(self, item_index: int) -> np.ndarray:
        """The stored embedding of vocabulary index ``item_index`` (>= 1): ``[D]``."""
        return self._index.reconstruct(int(item_index) - 1)

    def save(self, folder: Path, settings: Settings, checkpoint_sha256: str) -> list[Path]:
        """Write the index and its signed description (bound to ``checkpoint_sha256``) into
        ``folder``; returns both paths, the index first (the description marks it complete)."""
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = folder / INDEX_FILE, folder / META_FILE
        faiss.write_index(self._index, str(index_path))
        meta = self.meta | {
            "checkpoint_sha256": checkpoint_sha256, "index_sha256": file_digest(index_path),
            "index_bytes": index_path.stat().st_size,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        signed = {"meta": meta, "signature": _sign(settings, meta, create_key=True)}
        meta_path.write_text(json.dumps(signed, indent=2, sort_keys=True))
        self.meta = meta
        return [index_path, meta_path]

    @classmethod
    def load(cls, folder: Path, settings: Settings, checkpoint_sha256: str) -> "AnnIndex":
        """The index in ``folder`` when its signed description names ``checkpoint_sha256`` and
        the file's digest; raises :class:`AnnIndexUnusable` otherwise."""
        import faiss

        index_path, meta_path = folder / INDEX_FILE, folder / META_FILE
        if not meta_path.exists() or not index_path.exists():
            missing = META_FILE if not meta_path.exists() else INDEX_FILE
            raise AnnIndexUnusable(f"no retrieval index beside the checkpoint ({missing} missing)")
        try:
            signed = json.loads(meta_path.read_text())
            meta, signature = dict(signed["meta"]), str(signed["signature"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AnnIndexUnusable(f"the retrieval index's description is unreadable ({type(exc).__name__})") from exc
        try:
            expected = _sign(settings, meta, create_key=False)
        except Exception as exc:  # noqa: BLE001 - DecisionRefused: no key to check with
            raise AnnIndexUnusable(f"the retrieval index cannot be checked: {exc}") from exc
        if not hmac.compare_digest(signature, expected):
            raise AnnIndexUnusable("the retrieval index's signature does not match (written outside the pipeline)")
        if meta.get("format") != FORMAT or meta.get("kind") != KIND:
            raise AnnIndexUnusable(f"the retrieval index is {meta.get('kind')} format {meta.get('format')}, "
                                   f"not {KIND} format {FORMAT}")
        if meta.get("checkpoint_sha256") != checkpoint_sha256:
            raise AnnIndexUnusable("the retrieval index was built for another checkpoint "
                                   f"({str(meta.get('checkpoint_sha256'))[:12]}, not {checkpoint_sha256[:12]})")
        digest = file_digest(index_path)
        if digest != meta.get("index_sha256"):
            raise AnnIndexUnusable(f"the retrieval index file's digest {digest[:12]} is not the built one "
                                   f"{str(meta.get('index_sha256'))[:12]} (damaged or replaced)")
        index = faiss.read_index(str(index_path))
        if (index.ntotal, index.d) != (meta.get("n_items"), meta.get("dim")):
            raise AnnIndexUnusable(f"the retrieval index holds {index.ntotal} x {index.d}, "
                                   f"its description says {meta.get('n_items')} x {meta.get('dim')}")
        return cls(index, meta)
